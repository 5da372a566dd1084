//! The path of a forwarded request as a backend will most likely read it: route rules are
//! matched against this reading, never against the raw spelling.
//!
//! The decoder is written out: `percent-encoding` decodes every escape and passes a malformed
//! one (`%zz`, a lone `%`) through as text, where this one decodes only unreserved characters,
//! keeps the other escapes (upper-cased) and refuses malformed ones.

use std::borrow::Cow;

/// The path as a backend will most likely read it, so that route rules cannot be dodged by
/// spelling: query and fragment dropped, `%XX` of unreserved characters decoded (other escapes
/// kept, upper-cased), characters beyond ASCII written as the `%XX` of their UTF-8 bytes (so
/// `/café` and `/caf%c3%a9` read alike), `.` and `..` segments resolved, repeated slashes
/// merged. The result is ASCII. `None` for what has no single reading: an encoded `/`, `\` or
/// NUL, a raw backslash, a bad escape, or a path that does not start with `/`.
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
    let mut normal = !path.contains('%') && path.is_ascii();
    while let (true, Some(segment)) = (normal, segments.next()) {
        let last = segments.peek().is_none();
        normal = !matches!(segment, "." | "..") && (last || !segment.is_empty());
    }
    if normal {
        return Some(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len() + 8);
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
        } else if bytes[i].is_ascii() {
            decoded.push(char::from(bytes[i]));
            i += 1;
        } else {
            // A byte of a character beyond ASCII, as its escape: one spelling for both.
            decoded.push_str(&format!("%{:02X}", bytes[i]));
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
    use proptest::prelude::*;

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
            // Regression: a character beyond ASCII was read byte by byte as Latin-1 once the
            // path needed decoding (`/café/%61` read as `/cafÃ©/a`), so a rule for `/café`
            // missed it. Raw and escaped, it now has one spelling.
            ("/café", "/caf%C3%A9"),
            ("/café/%61", "/caf%C3%A9/a"),
            ("/caf%C3%A9/a", "/caf%C3%A9/a"),
            ("/日本/../x", "/x"),
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

    // ---- properties, over URIs made of the pieces the normaliser treats specially ----

    /// Spellings with a meaning of their own: separators, dot segments, escapes (good, bad,
    /// refused), query and fragment, path parameters, absolute URIs.
    static PIECES: [&str; 28] = [
        "/",
        "//",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%5C",
        "%00",
        "%3b",
        "%61",
        "%7e",
        "%41",
        "%25",
        "%c3%a9",
        "%",
        "%z",
        "%4",
        "?",
        "#",
        ";",
        "\\",
        "http://h",
        "HTTPS://h.example",
        ":",
        "a",
        "-",
        "~",
    ];

    /// A URI as a gateway could forward it: the pieces above, any printable ASCII, and now and
    /// then a character beyond ASCII (a request target may carry raw UTF-8).
    fn uri() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            8 => proptest::sample::select(&PIECES[..]).prop_map(str::to_owned),
            8 => (0x20u8..0x7f).prop_map(|b| char::from(b).to_string()),
            1 => proptest::sample::select(&["é", "ß", "日", "😀"][..]).prop_map(str::to_owned),
        ];
        let uri = proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat());
        // Most of them paths: anything else is refused at once.
        prop_oneof![
            1 => uri.clone(),
            3 => uri.prop_map(|uri| format!("/{uri}")),
        ]
    }

    fn is_unreserved(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
    }

    /// `uri` with the unreserved characters that `encode` picks written as `%XX` (escapes
    /// already there left alone), in upper or lower case.
    fn respell(uri: &str, encode: &[bool], upper: bool) -> String {
        // The scheme of an absolute URI is no path: left as it is.
        let encode = if uri.starts_with('/') { encode } else { &[] };
        let mut out = Vec::with_capacity(3 * uri.len());
        let mut escape = 0;
        for (i, b) in uri.bytes().enumerate() {
            if escape > 0 {
                escape -= 1;
                out.push(b);
            } else if b == b'%' {
                escape = 2;
                out.push(b);
            } else if is_unreserved(b) && encode.get(i).copied().unwrap_or(false) {
                let escaped = if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                };
                out.extend_from_slice(escaped.as_bytes());
            } else {
                out.push(b);
            }
        }
        // Only ASCII bytes were replaced, by ASCII: still UTF-8.
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    proptest! {
        #[test]
        fn a_normal_path_normalises_to_itself(uri in uri()) {
            if let Some(normal) = normalize_path(&uri) {
                let again = normalize_path(&normal);
                prop_assert_eq!(again.as_deref(), Some(&*normal));
            }
        }

        #[test]
        fn a_normal_path_has_one_spelling(uri in uri()) {
            if let Some(normal) = normalize_path(&uri) {
                prop_assert!(normal.starts_with('/'), "{}", normal);
                prop_assert!(normal.is_ascii(), "{}", normal);
                for bad in ["//", "/./", "/../", "\0"] {
                    prop_assert!(!normal.contains(bad), "{}", normal);
                }
                prop_assert!(!normal.ends_with("/.") && !normal.ends_with("/.."), "{}", normal);
                for (i, _) in normal.match_indices('%') {
                    let hex = normal.get(i + 1..i + 3).unwrap_or("");
                    let byte = u8::from_str_radix(hex, 16);
                    prop_assert!(byte.is_ok(), "bad escape in {}", normal);
                    let byte = byte.unwrap_or(0);
                    prop_assert!(byte != 0 && !is_unreserved(byte), "{}", normal);
                }
            }
        }

        #[test]
        fn respelling_unreserved_characters_changes_nothing(
            path in uri(),
            encode in proptest::collection::vec(any::<bool>(), 256),
            upper in any::<bool>(),
        ) {
            let respelled = respell(&path, &encode, upper);
            prop_assert_eq!(normalize_path(&path), normalize_path(&respelled), "{}", respelled);
        }
    }
}
