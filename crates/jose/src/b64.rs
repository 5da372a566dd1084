//! Strict base64url (RFC 4648 section 5) as JWS requires (RFC 7515 section 2): the URL-safe
//! alphabet only, no padding, no whitespace or line breaks, and unused trailing bits zero, so
//! that every byte string has exactly one accepted encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Marks a byte outside the alphabet. Sextets are below 64, so bit 7 of the OR of every
/// looked-up value says whether any byte was invalid.
const INVALID: u8 = 0xFF;

/// The sextet of each byte. One 256-byte table: four cache lines, which stay resident even
/// after an RSA or ECDSA verification has swept the cache.
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

#[inline(always)]
fn quad(q: &[u8]) -> (u32, u8) {
    let (a, b, c, d) = (
        DECODE[q[0] as usize],
        DECODE[q[1] as usize],
        DECODE[q[2] as usize],
        DECODE[q[3] as usize],
    );
    let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
    (n, a | b | c | d)
}

/// Decodes `input`, or `None` if it is not strict unpadded base64url.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decode_append(input, &mut out)?;
    Some(out)
}

/// Decodes `input` and appends the bytes to `out`; on failure `out` is left as it was.
///
/// Table-driven and branch-free per quad: the hot path of every verification decodes three
/// segments, and the general-purpose engine's set-up costs more than the work on inputs this
/// short. The `base64` crate's strict engine is the reference it is tested against.
pub fn decode_append(input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let tail_len = input.len() % 4;
    if tail_len == 1 {
        return None; // six bits cannot make a byte
    }
    let (quads, tail) = input.split_at(input.len() - tail_len);
    let start = out.len();
    let body_len = quads.len() / 4 * 3;
    let len = body_len + tail_len.saturating_sub(1);
    // Two bytes of slack let each pair of quads land with one 8-byte store.
    out.resize(start + len + 2, 0);
    let buf = &mut out[start..];
    let mut seen = 0u8;
    let mut at = 0;
    let mut pairs = quads.chunks_exact(8);
    for q in &mut pairs {
        let (a, sa) = quad(&q[..4]);
        let (b, sb) = quad(&q[4..]);
        seen |= sa | sb;
        let word = u64::from(a) << 40 | u64::from(b) << 16;
        buf[at..at + 8].copy_from_slice(&word.to_be_bytes());
        at += 6;
    }
    if let [_, _, _, _] = *pairs.remainder() {
        let (n, s) = quad(pairs.remainder());
        seen |= s;
        buf[at..at + 4].copy_from_slice(&(n << 8).to_be_bytes());
        at += 3;
    }
    let rest = &mut buf[at..];
    // The last two or three characters carry one or two bytes; the bits left over must be zero
    // so that each byte string has exactly one encoding.
    let mut n = 0u32;
    for &ch in tail {
        let v = DECODE[ch as usize];
        seen |= v;
        n = n << 6 | u32::from(v & 0x3F);
    }
    let leftover = match tail_len {
        2 => {
            rest[0] = (n >> 4) as u8;
            n & 0xF
        }
        3 => {
            rest[0] = (n >> 10) as u8;
            rest[1] = (n >> 2) as u8;
            n & 0x3
        }
        _ => 0,
    };
    if seen & 0x80 != 0 || leftover != 0 {
        out.truncate(start);
        return None;
    }
    out.truncate(start + len);
    Some(())
}

/// Encodes `bytes` as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub fn encode_append(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// An upper bound on the decoded length of `encoded_len` base64url characters.
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

    /// Differential test against the `base64` crate's strict URL_SAFE_NO_PAD engine.
    #[test]
    fn agrees_with_the_reference_engine() {
        let invalid = b"=+/ .\n\xff\x00";
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..100_000 {
            let len = (next() % 41) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| match next() % 64 {
                    0 => invalid[(next() % invalid.len() as u64) as usize],
                    _ => ALPHABET[(next() % 64) as usize],
                })
                .collect();
            assert_eq!(
                decode(&input),
                URL_SAFE_NO_PAD.decode(&input).ok(),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(151) ^ 0xA5).collect();
            let encoded = encode(&bytes);
            assert_eq!(decode(encoded.as_bytes()), Some(bytes));
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
