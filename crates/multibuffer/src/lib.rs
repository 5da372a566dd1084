//! Intel's crypto_mb, loaded at run time: 8-lane AVX-512 IFMA implementations of the RSA public
//! operation (e = 65537; 2048, 3072 and 4096-bit moduli), ECDSA verification on P-256 and
//! P-384, and Ed25519 verification, behind a safe API.
//!
//! The library is never linked: [`MultiBuffer::load`] opens it (`dlopen`) and refuses it unless
//! it says it can run on this CPU (`mbx_is_crypto_mb_applicable`), so one binary runs on every
//! machine and callers keep their single path where it is missing. Each call takes up to
//! [`LANES`] independent lanes, each with its own key, and returns the verdict of each lane
//! ([`Lanes`]). Inputs are checked here against what the library reads; what the library
//! cannot take (another exponent or modulus size, a wrong length) has no lane.
//!
//! The only unsafe code is in `ffi.rs`; this crate and `pkcs11` are the only ones with FFI.

#![deny(unsafe_code)]

mod ffi;

use std::fmt;
use std::path::{Path, PathBuf};

/// Lanes per call.
pub const LANES: usize = 8;

/// The names tried on the system's library path, newest interface first.
pub const SYSTEM_NAMES: [&str; 4] = [
    "libcrypto_mb.so",
    "libcrypto_mb.so.13",
    "libcrypto_mb.so.12",
    "libcrypto_mb.so.11",
];

/// The environment variable that names the library for [`Source::Auto`].
pub const ENV: &str = "TESSERA_CRYPTO_MB";

/// Where to find the library.
#[derive(Clone, Debug)]
pub enum Source {
    /// [`ENV`] if set, else `libcrypto_mb.so` in `folder` (where the project's
    /// `crypto/install.sh` puts it), else [`SYSTEM_NAMES`] on the system's library path.
    Auto { folder: Option<PathBuf> },
    /// This file only.
    Path(PathBuf),
}

/// Why the library is not used.
#[non_exhaustive]
#[derive(Debug)]
pub enum LoadError {
    /// Nothing to load at any of these places: the operator has not installed it.
    NotFound { tried: Vec<String> },
    /// The file would not load (missing dependencies, not a shared library): the
    /// installation's fault.
    Open { path: PathBuf, error: String },
    /// The library lacks a function this crate calls: an older or different build.
    Symbol(&'static str),
    /// The library runs only with AVX-512 IFMA, which this CPU lacks: nobody's fault.
    NotApplicable,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotFound { tried } => {
                write!(f, "libcrypto_mb.so not found (tried {})", tried.join(", "))
            }
            LoadError::Open { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::Symbol(name) => write!(f, "the library has no {name}: another build"),
            LoadError::NotApplicable => f.write_str("this CPU lacks avx512ifma"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The verdicts of one call, one bit per lane: set where the lane succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lanes(u8);

impl Lanes {
    /// From an `mbx_status` (4 bits per lane, 0 for success), for the `filled` first lanes.
    fn from_status(status: u32, filled: usize) -> Lanes {
        let mut ok = 0u8;
        for i in 0..filled.min(LANES) {
            if (status >> (4 * i)) & 0xf == 0 {
                ok |= 1 << i;
            }
        }
        Lanes(ok)
    }

    /// Whether lane `i` succeeded.
    pub fn ok(self, i: usize) -> bool {
        i < LANES && self.0 & (1 << i) != 0
    }

    /// How many lanes succeeded.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

/// Why a call did not run.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneError {
    /// No lanes, or more than [`LANES`]: the caller's.
    Count(usize),
    /// Lane `i`'s input does not have the lengths of the call (another modulus or curve
    /// size, a signature of the wrong length): the caller's.
    Shape(usize),
}

impl fmt::Display for LaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaneError::Count(n) => write!(f, "{n} lanes: 1 to {LANES} per call"),
            LaneError::Shape(i) => write!(f, "lane {i} does not fit the call"),
        }
    }
}

impl std::error::Error for LaneError {}

/// An RSA public key crypto_mb takes: e = 65537 and a modulus of exactly 2048, 3072 or 4096
/// bits, held as the library wants it (little-endian 64-bit words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaKey {
    bits: u32,
    words: Box<[u64]>,
}

impl RsaKey {
    /// From the big-endian modulus and exponent; `None` for anything the library lacks.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Option<RsaKey> {
        let exponent = exponent.iter().skip_while(|&&b| b == 0).copied();
        if !exponent.eq([0x01, 0x00, 0x01]) {
            return None;
        }
        let n = strip(modulus);
        let bits = (n.len() * 8).checked_sub(n.first()?.leading_zeros() as usize)?;
        if !matches!(bits, 2048 | 3072 | 4096) {
            return None;
        }
        Some(RsaKey {
            bits: bits as u32,
            words: le_words(n, bits / 64),
        })
    }

    /// The modulus's size in bits: 2048, 3072 or 4096.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    fn len(&self) -> usize {
        self.bits as usize / 8
    }
}

/// The curves of [`EcKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// Bytes of a coordinate, a scalar, a digest.
    pub const fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// An ECDSA public key as crypto_mb takes it (affine coordinates, little-endian words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcKey {
    curve: Curve,
    x: Box<[u64]>,
    y: Box<[u64]>,
}

impl EcKey {
    /// From big-endian affine coordinates of the curve's size. The point is not checked to be
    /// on the curve: callers take keys that a full parser accepted.
    pub fn new(curve: Curve, x: &[u8], y: &[u8]) -> Option<EcKey> {
        let size = curve.size();
        if x.len() != size || y.len() != size {
            return None;
        }
        Some(EcKey {
            curve,
            x: le_words(x, size / 8),
            y: le_words(y, size / 8),
        })
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }
}

/// One lane of [`MultiBuffer::ecdsa_verify`]: `r`, `s` and the message digest big-endian, each
/// of the curve's size, with `0 < r, s < n` checked and the digest taken modulo `n` by the
/// caller (`jose::batch` does both). crypto_mb refuses a digest at or above `n`, which ECDSA
/// reduces instead, and so would refuse valid signatures (Wycheproof P-256 #90).
#[derive(Clone, Copy, Debug)]
pub struct EcdsaLane<'a> {
    pub key: &'a EcKey,
    pub r: &'a [u8],
    pub s: &'a [u8],
    pub digest: &'a [u8],
}

/// One lane of [`MultiBuffer::ed25519_verify`].
#[derive(Clone, Copy, Debug)]
pub struct Ed25519Lane<'a> {
    pub public: &'a [u8; 32],
    pub signature: &'a [u8; 64],
    pub message: &'a [u8],
}

/// crypto_mb, loaded and usable on this CPU.
pub struct MultiBuffer {
    functions: ffi::Functions,
    path: PathBuf,
    version: String,
}

impl fmt::Debug for MultiBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiBuffer")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl MultiBuffer {
    /// Loads the library from `source` and checks that this CPU can run it.
    pub fn load(source: &Source) -> Result<MultiBuffer, LoadError> {
        let candidates: Vec<PathBuf> = match source {
            Source::Path(path) => vec![path.clone()],
            Source::Auto { folder } => match std::env::var_os(ENV) {
                Some(path) => vec![PathBuf::from(path)],
                None => folder
                    .iter()
                    .map(|f| f.join(SYSTEM_NAMES[0]))
                    .chain(SYSTEM_NAMES.iter().map(PathBuf::from))
                    .collect(),
            },
        };
        let mut tried = Vec::new();
        for path in candidates {
            // A bare name is looked up on the library path; a path must exist.
            let bare = path.components().count() == 1;
            if !bare && !path.exists() {
                tried.push(path.display().to_string());
                continue;
            }
            match ffi::load(&path) {
                Ok((functions, version)) => {
                    return Ok(MultiBuffer {
                        functions,
                        path,
                        version,
                    })
                }
                Err(LoadError::Open { .. }) if bare => tried.push(path.display().to_string()),
                Err(e) => return Err(e),
            }
        }
        Err(LoadError::NotFound { tried })
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The library's own version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `signature^65537 mod n` for each lane's key, into `out[i]` (big-endian, as long as the
    /// modulus). Every lane's key has `bits`; each signature is as long as its modulus and
    /// below it, else that lane fails without the call reading it.
    pub fn rsa_public(
        &self,
        bits: u32,
        lanes: &[(&RsaKey, &[u8])],
        out: &mut [[u8; 512]; LANES],
    ) -> Result<Lanes, LaneError> {
        if lanes.is_empty() || lanes.len() > LANES {
            return Err(LaneError::Count(lanes.len()));
        }
        let scratch_len = self
            .functions
            .rsa_scratch_len(bits)
            .ok_or(LaneError::Shape(0))?;
        let mut usable = [false; LANES];
        for (i, (key, signature)) in lanes.iter().enumerate() {
            if key.bits != bits {
                return Err(LaneError::Shape(i));
            }
            usable[i] = signature.len() == key.len() && below(signature, &key.words);
        }
        // 64-byte aligned scratch.
        let mut scratch = vec![0u8; scratch_len + 64];
        let offset = scratch.as_ptr().align_offset(64).min(64);
        let scratch = &mut scratch[offset..offset + scratch_len];
        let mut call: [ffi::RsaLane<'_>; LANES] = Default::default();
        let mut filled = 0;
        for ((i, place), slot) in out.iter_mut().enumerate().zip(call.iter_mut()) {
            if i < lanes.len() && usable[i] {
                let (key, signature) = lanes[i];
                *slot = Some((signature, &mut place[..key.len()], &key.words[..]));
                filled += 1;
            }
        }
        if filled == 0 {
            return Ok(Lanes::default());
        }
        let status = self.functions.rsa_public(bits, &mut call, scratch);
        let mut lanes_ok = Lanes::from_status(status, lanes.len());
        for (i, usable) in usable.iter().enumerate() {
            if !usable {
                lanes_ok.0 &= !(1 << i);
            }
        }
        Ok(lanes_ok)
    }

    /// ECDSA verification of each lane; every lane's key on `curve`.
    pub fn ecdsa_verify(&self, curve: Curve, lanes: &[EcdsaLane<'_>]) -> Result<Lanes, LaneError> {
        if lanes.is_empty() || lanes.len() > LANES {
            return Err(LaneError::Count(lanes.len()));
        }
        let size = curve.size();
        let mut call: [ffi::EcdsaLane<'_>; LANES] = [None; LANES];
        for (i, lane) in lanes.iter().enumerate() {
            let fits = lane.key.curve == curve
                && lane.r.len() == size
                && lane.s.len() == size
                && lane.digest.len() == size;
            if !fits {
                return Err(LaneError::Shape(i));
            }
            call[i] = Some((lane.r, lane.s, lane.digest, &lane.key.x, &lane.key.y));
        }
        let status = self.functions.ecdsa_verify(size / 8, &call);
        Ok(Lanes::from_status(status, lanes.len()))
    }

    /// Ed25519 verification of each lane.
    pub fn ed25519_verify(&self, lanes: &[Ed25519Lane<'_>]) -> Result<Lanes, LaneError> {
        if lanes.is_empty() || lanes.len() > LANES {
            return Err(LaneError::Count(lanes.len()));
        }
        let mut call: [ffi::Ed25519Lane<'_>; LANES] = [None; LANES];
        for (i, lane) in lanes.iter().enumerate() {
            if u32::try_from(lane.message.len()).is_err() {
                return Err(LaneError::Shape(i));
            }
            call[i] = Some((lane.signature, lane.message, lane.public));
        }
        let status = self.functions.ed25519_verify(&call);
        Ok(Lanes::from_status(status, lanes.len()))
    }
}

/// `bytes` without leading zero octets.
fn strip(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[zeros..]
}

/// A big-endian number as `words` little-endian 64-bit words (it fits: checked by callers).
fn le_words(be: &[u8], words: usize) -> Box<[u64]> {
    let mut out = vec![0u64; words];
    for (i, &b) in be.iter().rev().enumerate() {
        if let Some(w) = out.get_mut(i / 8) {
            *w |= u64::from(b) << (8 * (i % 8));
        }
    }
    out.into_boxed_slice()
}

/// `be < n` for a big-endian `be` as long as `n` (little-endian words) in bytes.
fn below(be: &[u8], n: &[u64]) -> bool {
    let n_be: Vec<u8> = n.iter().rev().flat_map(|w| w.to_be_bytes()).collect();
    be.len() == n_be.len() && be < &n_be[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_little_endian() {
        let be: Vec<u8> = (1..=16).collect();
        let w = le_words(&be, 2);
        assert_eq!(w[0], 0x090a_0b0c_0d0e_0f10);
        assert_eq!(w[1], 0x0102_0304_0506_0708);
        assert!(below(&[0x01; 16], &w));
        assert!(!below(&be, &w));
    }

    #[test]
    fn status_nibbles_are_lanes() {
        let lanes = Lanes::from_status(0x0000_8000, 8);
        assert!(lanes.ok(0) && lanes.ok(2) && !lanes.ok(3) && lanes.ok(7));
        assert_eq!(lanes.count(), 7);
        // Lanes beyond those filled never count.
        assert_eq!(Lanes::from_status(0, 3).count(), 3);
        assert_eq!(Lanes::from_status(0x8888_8888, 8).count(), 0);
    }

    #[test]
    fn keys_the_library_lacks_have_none() {
        let mut n = vec![0xff; 256];
        assert!(RsaKey::new(&n, &[1, 0, 1]).is_some());
        assert!(RsaKey::new(&n, &[3]).is_none());
        n[0] = 0x7f; // 2047 bits
        assert!(RsaKey::new(&n, &[1, 0, 1]).is_none());
        assert!(RsaKey::new(&[0xff; 128], &[1, 0, 1]).is_none());
        assert!(EcKey::new(Curve::P256, &[1; 32], &[1; 31]).is_none());
    }
}
