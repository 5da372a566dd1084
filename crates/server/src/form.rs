//! `application/x-www-form-urlencoded` bodies (RFC 7662 requests) and percent-decoding.

use std::borrow::Cow;

/// Decodes one form-encoded name or value: `+` is a space, `%XX` a byte; the result must be
/// UTF-8. `None` for a malformed escape or invalid UTF-8. Text with nothing to decode (a token
/// is base64url and dots) is borrowed as it is.
pub fn decode(text: &[u8]) -> Option<Cow<'_, str>> {
    if memchr::memchr2(b'%', b'+', text).is_none() {
        return std::str::from_utf8(text).ok().map(Cow::Borrowed);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Why a form body was refused: always the sender's fault.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormError {
    /// A bad escape, text that is not UTF-8 once decoded, or more than [`MAX_PARAMS`]
    /// parameters.
    Malformed,
    /// A parameter that may appear once appeared again (RFC 6749 section 3.1).
    Repeated(String),
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormError::Malformed => f.write_str("a malformed form body"),
            FormError::Repeated(name) => write!(f, "the form parameter {name:?} appears twice"),
        }
    }
}

impl std::error::Error for FormError {}

/// Most parameters a form may carry (RFC 7662 requests need two): bounds the duplicate check.
const MAX_PARAMS: usize = 16;

/// One parameter, name and value, borrowed from the body where nothing was decoded.
pub type Param<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The parameters of a form body, each name at most once, at most [`MAX_PARAMS`].
pub fn parse(body: &[u8]) -> Result<Vec<Param<'_>>, FormError> {
    parse_repeating(body, &[])
}

/// As [`parse`], except that the names in `repeatable` may appear more than once (RFC 8707's
/// `resource`).
pub fn parse_repeating<'a>(
    body: &'a [u8],
    repeatable: &[&str],
) -> Result<Vec<Param<'a>>, FormError> {
    let mut params: Vec<Param<'_>> = Vec::new();
    // Split with memchr: a body is mostly one long token, not worth a byte-by-byte scan.
    let mut rest = body;
    while !rest.is_empty() {
        let (pair, after) = match memchr::memchr(b'&', rest) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &b""[..]),
        };
        rest = after;
        if pair.is_empty() {
            continue;
        }
        if params.len() == MAX_PARAMS {
            return Err(FormError::Malformed);
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name).ok_or(FormError::Malformed)?;
        let value = decode(value).ok_or(FormError::Malformed)?;
        if !repeatable.contains(&&*name) && params.iter().any(|(n, _)| *n == name) {
            return Err(FormError::Repeated(name.into_owned()));
        }
        params.push((name, value));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse(b"token=a.b.c&token_type_hint=access_token").unwrap(),
            [
                (Cow::Borrowed("token"), Cow::Borrowed("a.b.c")),
                ("token_type_hint".into(), "access_token".into())
            ]
        );
        assert_eq!(
            parse(b"a=%41+b&&c").unwrap(),
            [
                (Cow::Borrowed("a"), Cow::Owned("A b".to_string())),
                ("c".into(), "".into())
            ]
        );
        assert_eq!(
            parse(b"token=1&token=2"),
            Err(FormError::Repeated("token".into()))
        );
        assert_eq!(parse(b"a=%4"), Err(FormError::Malformed));
        assert_eq!(parse(b"a=%zz"), Err(FormError::Malformed));
        assert_eq!(parse(b"a=%+1"), Err(FormError::Malformed));
        assert_eq!(parse(b"a=%ff"), Err(FormError::Malformed));
        assert!(parse(b"").unwrap().is_empty());
        assert_eq!(
            parse_repeating(b"resource=a&resource=b&x=1", &["resource"])
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            parse_repeating(b"resource=a&x=1&x=2", &["resource"]),
            Err(FormError::Repeated("x".into()))
        );
        let many: Vec<String> = (0..17).map(|i| format!("p{i}=x")).collect();
        assert_eq!(parse(many.join("&").as_bytes()), Err(FormError::Malformed));
    }
}
