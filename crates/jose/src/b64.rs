//! Strict base64url (RFC 4648 section 5) as JWS requires (RFC 7515 section 2): the URL-safe
//! alphabet only, no padding, no whitespace or line breaks, and unused trailing bits zero, so
//! that every byte string has exactly one accepted encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes `input`, or `None` if it is not strict unpadded base64url.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Decodes `input` and appends the bytes to `out`; on failure `out` is left as it was.
pub fn decode_append(input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    match URL_SAFE_NO_PAD.decode_vec(input, out) {
        Ok(()) => Some(()),
        Err(_) => {
            out.truncate(start);
            None
        }
    }
}

/// Encodes `bytes` as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub fn encode_append(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// An upper bound on the decoded length of `encoded_len` base64 characters.
pub(crate) const fn decoded_len_bound(encoded_len: usize) -> usize {
    encoded_len / 4 * 3 + 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            assert_eq!(decode(encode(&bytes).as_bytes()), Some(bytes));
        }
    }

    #[test]
    fn refuses_everything_but_the_strict_form() {
        assert_eq!(decode(b"AQID").as_deref(), Some(&[1u8, 2, 3][..]));
        for bad in [
            &b"AQI="[..], // padding
            b"AQ==",
            b"AQI D", // whitespace
            b"AQI\nD",
            b"AQ+/", // standard alphabet
            b"AQJ",  // unused bits set (the canonical form is AQI)
            b"AR",   // unused bits set (canonical AQ)
            b"A",    // impossible length
            b"AQI\0",
            "AQÏ".as_bytes(),
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn failed_append_leaves_buffer_unchanged() {
        let mut out = b"keep".to_vec();
        assert!(decode_append(b"A=", &mut out).is_none());
        assert_eq!(out, b"keep");
        assert!(decode_append(b"AQID", &mut out).is_some());
        assert_eq!(out, b"keep\x01\x02\x03");
    }
}
