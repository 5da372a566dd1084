//! The path of a forwarded request as a backend will most likely read it: route rules are
//! matched against this reading, never against the raw spelling.

use std::borrow::Cow;

/// The path as a backend will most likely read it, so that route rules cannot be dodged by
/// spelling: query and fragment dropped, `%XX` of unreserved characters decoded (other escapes
/// kept, upper-cased), `.` and `..` segments resolved, repeated slashes merged. `None` for
/// what has no single reading: an encoded `/`, `\` or NUL, a raw backslash, a bad escape, or a
/// path that does not start with `/`.
pub fn normalize_path(uri: &str) -> Option<Cow<'_, str>> {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    // An absolute URI (`http://host/path`) as some gateways send it: only at the start.
    let path = match ["https://", "http://"].iter().find(|scheme| {
        path.as_bytes()
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
    }) {
        Some(scheme) => {
            let rest = &path[scheme.len()..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => path,
    };
    // A backslash or a `;` (path parameters, which some servers strip before routing: Tomcat
    // reads `/public/..;/admin` as `/admin`) has no single reading.
    if !path.starts_with('/') || path.contains(['\\', ';']) {
        return None;
    }
    // Most paths are already normal: no escape, no empty, `.` or `..` segment but the last.
    let mut segments = path.split('/').skip(1).peekable();
    let mut normal = !path.contains('%');
    while let (true, Some(segment)) = (normal, segments.next()) {
        let last = segments.peek().is_none();
        normal = !matches!(segment, "." | "..") && (last || !segment.is_empty());
    }
    if normal {
        return Some(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            match byte {
                b'/' | b'\\' | b';' | 0 => return None,
                b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                    decoded.push(char::from(b));
                }
                b => decoded.push_str(&format!("%{b:02X}")),
            }
            i += 3;
        } else {
            decoded.push(char::from(bytes[i]));
            i += 1;
        }
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn paths_are_read_as_backends_read_them() {
        let n = normalize_path;
        for (raw, normal) in [
            ("/orders/7?x=1", "/orders/7"),
            ("/%61dmin", "/admin"),
            ("/%61dmin/users", "/admin/users"),
            ("/orders/../admin", "/admin"),
            ("/orders/%2e%2e/admin", "/admin"),
            ("/./admin", "/admin"),
            ("//admin//x", "/admin/x"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/", "/"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("http://gw.example/admin?q", "/admin"),
            ("HTTPS://gw.example/admin", "/admin"),
            // `://` inside a path is a path, not a new authority.
            ("/admin/a://b/public", "/admin/a:/b/public"),
            ("/x#frag", "/x"),
            // Already normal (returned as they are) and nearly so.
            ("/orders/7", "/orders/7"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..b/.c", "/a/..b/.c"),
        ] {
            assert_eq!(n(raw).as_deref(), Some(normal), "{raw}");
        }
        for refused in [
            "admin",
            "/a%+1",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%",
            "/a%zz",
            "",
            "/public/..;/admin",
            "/a%3bb",
        ] {
            assert_eq!(n(refused), None, "{refused}");
        }
    }
}
