//! What a batched signature backend needs of the JWS algorithms: the input its primitive takes
//! for one prepared token ([`Lane`]), and the checks of what the primitive returns, in pure
//! Rust. The backend itself (a vectorised library loaded at run time) lives outside this crate;
//! every rule of the single path holds here too:
//!
//! - the key is the one [`jws::Prepared`] chose, pinned to the header's algorithm;
//! - RS256/384/512: the public operation `s^e mod n`, then a comparison of the whole result with
//!   the one EMSA-PKCS1-v1_5 encoding of the digest (DigestInfo with NULL parameters) that
//!   verification accepts ([`pkcs1_v1_5_matches`]), over every byte whatever the first
//!   difference;
//! - PS256/384/512: the public operation, then EMSA-PSS verification with MGF1 over the same
//!   hash and a salt as long as the hash, as RFC 7518 section 3.5 requires ([`pss_matches`]);
//! - ES256/ES384: the signature is `r ‖ s` of the curve's size, with `0 < r < n` and
//!   `0 < s < n` checked here, before the backend sees them; the backend gets the digest;
//! - EdDSA: a 64-byte signature whose `S` is below the group order (no malleable encodings),
//!   over the signing input itself.
//!
//! Anything else (HMAC, ES512, an exponent or modulus size the backend lacks) has no lane and
//! stays on the single path, which refuses what is malformed.

use aws_lc_rs::digest;

use crate::{jws, Algorithm, Family, PublicJwk};

/// The hash of an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn of(alg: Algorithm) -> Option<Hash> {
        match alg {
            Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => Some(Hash::Sha256),
            Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => Some(Hash::Sha384),
            Algorithm::RS512 | Algorithm::PS512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    /// The digest of `message`.
    pub fn digest(self, message: &[u8]) -> Digest {
        Digest::new(digest::digest(self.algorithm(), message))
    }

    /// The DER prefix of a DigestInfo with this hash (RFC 8017 section 9.2, note 1).
    fn digest_info(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// A message digest (at most 64 bytes).
#[derive(Clone)]
pub struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    fn new(d: digest::Digest) -> Digest {
        let mut bytes = [0u8; 64];
        let len = d.as_ref().len().min(64);
        bytes[..len].copy_from_slice(&d.as_ref()[..len]);
        Digest { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// This digest modulo `n`, a big-endian number as long as the digest (so the digest is
    /// below 2n and one subtraction is enough).
    fn reduce(&mut self, n: &[u8]) {
        let d = &mut self.bytes[..self.len];
        if n.len() != d.len() || &*d < n {
            return;
        }
        let mut borrow = 0u16;
        for (x, &m) in d.iter_mut().zip(n).rev() {
            let v = u16::from(*x)
                .wrapping_sub(u16::from(m))
                .wrapping_sub(borrow);
            *x = v as u8;
            borrow = (v >> 8) & 1;
        }
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(..)")
    }
}

/// How the result of an RSA public operation must read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaEncoding {
    /// EMSA-PKCS1-v1_5 (RS256/384/512).
    Pkcs1(Hash),
    /// EMSA-PSS with MGF1 and a salt of the hash's length (PS256/384/512).
    Pss(Hash),
}

impl RsaEncoding {
    /// Whether `em`, the public operation's result on a signature over `message` (big-endian,
    /// as long as the modulus of `modulus_bits` bits), is this encoding of its digest.
    pub fn matches(self, em: &[u8], modulus_bits: usize, message: &[u8]) -> bool {
        match self {
            RsaEncoding::Pkcs1(hash) => pkcs1_v1_5_matches(em, hash, &hash.digest(message)),
            RsaEncoding::Pss(hash) => pss_matches(em, modulus_bits, hash, &hash.digest(message)),
        }
    }
}

/// The elliptic curves of the ECDSA lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// The size of a coordinate, a scalar and each half of a signature, in bytes.
    pub const fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// The group order `n`, big-endian.
    pub const fn order(self) -> &'static [u8] {
        match self {
            Curve::P256 => &P256_ORDER,
            Curve::P384 => &P384_ORDER,
        }
    }
}

const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// The order of the Ed25519 group, little-endian as `S` is encoded (RFC 8032 section 5.1:
/// `L`).
pub const ED25519_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// What a batched backend computes for one token.
#[derive(Debug)]
pub enum Lane<'a> {
    /// `signature^exponent mod modulus` (all big-endian; the signature as long as the modulus
    /// and below it), whose result must then read as `encoding` of `message`, the signing
    /// input ([`RsaEncoding::matches`]).
    Rsa {
        modulus: &'a [u8],
        exponent: &'a [u8],
        signature: &'a [u8],
        encoding: RsaEncoding,
        message: &'a [u8],
    },
    /// ECDSA verification of `r`, `s` (big-endian, in range) over `digest` with the public
    /// point `x`, `y` (big-endian coordinates). The digest is taken modulo the group order
    /// already, as ECDSA uses it ([`ecdsa_digest`]).
    Ecdsa {
        curve: Curve,
        x: &'a [u8],
        y: &'a [u8],
        r: &'a [u8],
        s: &'a [u8],
        digest: Digest,
    },
    /// Ed25519 verification of a 64-byte `signature` (`R ‖ S`, `S` below the group order) over
    /// `message` with the 32-byte `public` key.
    Ed25519 {
        public: &'a [u8],
        signature: &'a [u8],
        message: &'a [u8],
    },
}

/// Why a prepared token has no lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoLane {
    /// The algorithm has no batched form here (HMAC, ES512): the single path verifies it.
    Algorithm,
    /// The signature cannot verify (wrong length, out of range): refused without any
    /// arithmetic, as the single path would refuse it.
    Refused,
}

/// The lane for `prepared`'s signature check.
pub fn lane<'a>(prepared: &'a jws::Prepared<'_>) -> Result<Lane<'a>, NoLane> {
    let alg = prepared.alg();
    let signature = prepared.signature();
    let message = prepared.signing_input();
    match (alg.family(), prepared.key().public()) {
        (Family::RsaPkcs1 | Family::RsaPss, Some(PublicJwk::Rsa { n, e })) => {
            let hash = Hash::of(alg).ok_or(NoLane::Algorithm)?;
            let encoding = if alg.family() == Family::RsaPss {
                RsaEncoding::Pss(hash)
            } else {
                RsaEncoding::Pkcs1(hash)
            };
            // n has no leading zero octet (checked when the key was parsed).
            if signature.len() != n.len() || !less_than(signature, n) {
                return Err(NoLane::Refused);
            }
            Ok(Lane::Rsa {
                modulus: n,
                exponent: e,
                signature,
                encoding,
                message,
            })
        }
        (Family::Ecdsa, Some(PublicJwk::Ec { x, y, .. })) => {
            let curve = match alg {
                Algorithm::ES256 => Curve::P256,
                Algorithm::ES384 => Curve::P384,
                _ => return Err(NoLane::Algorithm),
            };
            let len = curve.size();
            if signature.len() != 2 * len || x.len() != len || y.len() != len {
                return Err(NoLane::Refused);
            }
            let (r, s) = signature.split_at(len);
            let in_range = |v: &[u8]| v.iter().any(|&b| b != 0) && less_than(v, curve.order());
            if !in_range(r) || !in_range(s) {
                return Err(NoLane::Refused);
            }
            Ok(Lane::Ecdsa {
                curve,
                x,
                y,
                r,
                s,
                digest: ecdsa_digest(curve, message),
            })
        }
        (Family::EdDsa, Some(PublicJwk::Ed25519 { x })) => {
            if signature.len() != 64 || x.len() != 32 {
                return Err(NoLane::Refused);
            }
            let mut s = [0u8; 32];
            s.copy_from_slice(&signature[32..]);
            s.reverse();
            let mut order = ED25519_ORDER;
            order.reverse();
            if !less_than(&s, &order) {
                return Err(NoLane::Refused);
            }
            Ok(Lane::Ed25519 {
                public: x,
                signature,
                message,
            })
        }
        _ => Err(NoLane::Algorithm),
    }
}

/// The digest of `message` as ECDSA on `curve` uses it: hashed with the curve's hash of the
/// JWS algorithm (SHA-256 for P-256, SHA-384 for P-384) and taken modulo the group order
/// (SEC 1 section 4.1.4; a backend may refuse a digest at or above it).
pub fn ecdsa_digest(curve: Curve, message: &[u8]) -> Digest {
    let hash = match curve {
        Curve::P256 => Hash::Sha256,
        Curve::P384 => Hash::Sha384,
    };
    let mut digest = hash.digest(message);
    digest.reduce(curve.order());
    digest
}

/// `a < b` for big-endian numbers of the same length.
fn less_than(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    a.len() == b.len() && a < b
}

/// Equality of two byte strings over every byte, whatever the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `em` is `00 01 FF … FF 00 ‖ DigestInfo(hash) ‖ digest` at the length of `em`
/// (RFC 8017 section 9.2; the padding at least 8 bytes).
pub fn pkcs1_v1_5_matches(em: &[u8], hash: Hash, digest: &Digest) -> bool {
    let prefix = hash.digest_info();
    let t_len = prefix.len() + digest.as_bytes().len();
    if em.len() < t_len + 11 {
        return false;
    }
    let pad = em.len() - t_len - 3;
    let mut expected = Vec::with_capacity(em.len());
    expected.extend_from_slice(&[0x00, 0x01]);
    expected.resize(2 + pad, 0xff);
    expected.push(0x00);
    expected.extend_from_slice(prefix);
    expected.extend_from_slice(digest.as_bytes());
    same(em, &expected)
}

/// MGF1 (RFC 8017 appendix B.2.1) with `hash` over `seed`, XORed into `out`.
fn mgf1_xor(hash: Hash, seed: &[u8], out: &mut [u8]) {
    let alg = hash.algorithm();
    for (counter, chunk) in out.chunks_mut(alg.output_len()).enumerate() {
        let mut ctx = digest::Context::new(alg);
        ctx.update(seed);
        // At most a few hundred chunks: the counter fits 32 bits.
        ctx.update(&(counter as u32).to_be_bytes());
        for (o, m) in chunk.iter_mut().zip(ctx.finish().as_ref()) {
            *o ^= m;
        }
    }
}

/// EMSA-PSS verification (RFC 8017 section 9.1.2) of `em`, the public operation's result as
/// long as the modulus (`modulus_bits` bits), with MGF1 over `hash` and a salt as long as the
/// hash.
pub fn pss_matches(em: &[u8], modulus_bits: usize, hash: Hash, digest: &Digest) -> bool {
    let h_len = hash.algorithm().output_len();
    let s_len = h_len;
    let em_bits = modulus_bits.saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    // The result is as long as the modulus; EM is its last em_len bytes, and what comes
    // before them (one byte when em_bits is a multiple of 8) must be zero.
    if em.len() < em_len || em[..em.len() - em_len].iter().any(|&b| b != 0) {
        return false;
    }
    let em = &em[em.len() - em_len..];
    if em_len < h_len + s_len + 2 || em[em_len - 1] != 0xbc {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - h_len - 1);
    let h = &rest[..h_len];
    let top_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(top_bits as u32).unwrap_or(0);
    if masked_db[0] & !top_mask != 0 {
        return false;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(hash, h, &mut db);
    db[0] &= top_mask;
    let zeros = em_len - h_len - s_len - 2;
    if db[..zeros].iter().any(|&b| b != 0) || db[zeros] != 0x01 {
        return false;
    }
    let salt = &db[db.len() - s_len..];
    let mut ctx = digest::Context::new(hash.algorithm());
    ctx.update(&[0u8; 8]);
    ctx.update(digest.as_bytes());
    ctx.update(salt);
    same(ctx.finish().as_ref(), h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_the_curves() {
        // n - 1 is in range, n is not.
        let mut below = P256_ORDER;
        below[31] -= 1;
        assert!(less_than(&below, &P256_ORDER));
        assert!(!less_than(&P256_ORDER, &P256_ORDER));
        assert_eq!(P384_ORDER.len(), Curve::P384.size());
        assert_eq!(ED25519_ORDER[31], 0x10);
    }

    #[test]
    fn ecdsa_digests_are_taken_modulo_the_order() {
        let n = Curve::P256.order();
        let mut at_n = Hash::Sha256.digest(b"");
        at_n.bytes[..32].copy_from_slice(n);
        at_n.reduce(n);
        assert_eq!(at_n.as_bytes(), &[0u8; 32]);
        let mut above = Hash::Sha256.digest(b"");
        above.bytes[..32].copy_from_slice(&[0xff; 32]);
        above.reduce(n);
        // 2^256 - 1 - n
        assert_eq!(&above.as_bytes()[..4], &[0, 0, 0, 0]);
        assert_eq!(above.as_bytes()[31], 0xff - 0x51);
        let below = Hash::Sha256.digest(b"message");
        let mut same = below.clone();
        same.reduce(n);
        assert_eq!(same.as_bytes(), below.as_bytes());
    }

    #[test]
    fn pkcs1_encoding_is_exact() {
        let digest = Hash::Sha256.digest(b"message");
        let mut em = vec![0x00, 0x01];
        em.resize(256 - 19 - 32 - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(Hash::Sha256.digest_info());
        em.extend_from_slice(digest.as_bytes());
        assert_eq!(em.len(), 256);
        assert!(pkcs1_v1_5_matches(&em, Hash::Sha256, &digest));
        for i in 0..em.len() {
            let mut bad = em.clone();
            bad[i] ^= 0x01;
            assert!(!pkcs1_v1_5_matches(&bad, Hash::Sha256, &digest), "byte {i}");
        }
        assert!(!pkcs1_v1_5_matches(&em, Hash::Sha384, &digest));
        assert!(!pkcs1_v1_5_matches(&em[..40], Hash::Sha256, &digest));
    }

    #[test]
    fn pss_refuses_short_and_malformed_encodings() {
        let digest = Hash::Sha256.digest(b"message");
        assert!(!pss_matches(&[], 2048, Hash::Sha256, &digest));
        assert!(!pss_matches(&[0xbc; 256], 2048, Hash::Sha256, &digest));
        assert!(!pss_matches(&[0u8; 10], 80, Hash::Sha256, &digest));
    }
}
