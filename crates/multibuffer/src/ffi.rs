//! The only unsafe code of this crate: opening the library, resolving its symbols, and the
//! calls. Every pointer handed over is built here from slices whose lengths the safe wrappers
//! in `lib.rs` checked against what each call reads or writes.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, CStr};
use std::path::Path;
use std::ptr;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

use crate::LoadError;

/// `mbx_status`: 4 bits per lane, 0 where the lane succeeded.
pub(crate) type Status = u32;

#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    target_cpu: [c_char; 4],
    name: *const c_char,
    build_date: *const c_char,
    str_version: *const c_char,
}

/// One RSA lane: the signature, where its result goes, the modulus words.
pub(crate) type RsaLane<'a> = Option<(&'a [u8], &'a mut [u8], &'a [u64])>;
/// One ECDSA lane: `r`, `s`, the digest, the key's `x` and `y` words.
pub(crate) type EcdsaLane<'a> = Option<(&'a [u8], &'a [u8], &'a [u8], &'a [u64], &'a [u64])>;
/// One Ed25519 lane: the signature, the message, the public key.
pub(crate) type Ed25519Lane<'a> = Option<(&'a [u8; 64], &'a [u8], &'a [u8; 32])>;

/// An opaque `mbx_RSA_Method`.
#[repr(C)]
pub(crate) struct RsaMethod {
    _private: [u8; 0],
}

type IsApplicable = unsafe extern "C" fn(u64) -> c_int;
type GetVersion = unsafe extern "C" fn() -> *const Version;
type RsaMethodOf = unsafe extern "C" fn(c_int) -> *const RsaMethod;
type RsaBufSize = unsafe extern "C" fn(*const RsaMethod) -> c_int;
type RsaPublic = unsafe extern "C" fn(
    *const *const u8,
    *const *mut u8,
    *const *const u64,
    c_int,
    *const RsaMethod,
    *mut u8,
) -> Status;
type EcdsaVerify = unsafe extern "C" fn(
    *const *const u8,
    *const *const u8,
    *const *const u8,
    *const *const u64,
    *const *const u64,
    *const *const u64,
    *mut u8,
) -> Status;
type Ed25519Verify = unsafe extern "C" fn(
    *const *const [u8; 32],
    *const *const [u8; 32],
    *const *const u8,
    *const u32,
    *const *const [u8; 32],
) -> Status;

/// The opened library and the entry points this crate calls.
pub(crate) struct Functions {
    rsa_method: RsaMethodOf,
    rsa_buf_size: RsaBufSize,
    rsa_public: RsaPublic,
    p256_verify: EcdsaVerify,
    p384_verify: EcdsaVerify,
    ed25519_verify: Ed25519Verify,
    /// Keeps the code above mapped; the runtime libraries it needs too.
    _libraries: Vec<Library>,
}

// SAFETY: the fields are plain function pointers into a library that stays loaded while
// `_libraries` lives, and handles that libloading documents as Send and Sync. crypto_mb's
// functions keep no state between calls (every buffer is the caller's), so calls from several
// threads at once are sound.
unsafe impl Send for Functions {}
// SAFETY: as for Send.
unsafe impl Sync for Functions {}

/// What libcrypto_mb.so needs that is not on the system's library path when it comes from
/// Intel's wheels: loaded first from the same folder when present there, so that the dynamic
/// linker finds them by their names.
const RUNTIME: [&str; 4] = ["libintlc.so.5", "libimf.so", "libsvml.so", "libirng.so"];

fn open(path: &Path) -> Result<Library, String> {
    // SAFETY: opening runs the library's initialisers. crypto_mb's (and Intel's runtime's)
    // only set up their own tables; the caller chose to trust this file by naming it.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())
}

/// Resolves `name` in `library` as a function of type `T`.
///
/// # Safety
/// `T` must be the function's true C signature.
unsafe fn symbol<T: Copy>(library: &Library, name: &'static str) -> Result<T, LoadError> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    // SAFETY: the caller vouches for the type; the pointer is copied out and used only while
    // the library stays loaded (see `Functions`).
    unsafe { library.get::<T>(&bytes) }
        .map(|s| *s)
        .map_err(|_| LoadError::Symbol(name))
}

/// Opens `path` (loading the Intel runtime beside it first), checks that this CPU can run it,
/// and resolves every entry point. Returns the functions and the library's version string.
pub(crate) fn load(path: &Path) -> Result<(Functions, String), LoadError> {
    let mut libraries = Vec::new();
    if let Some(dir) = path.parent() {
        for name in RUNTIME {
            let beside = dir.join(name);
            if beside.exists() {
                libraries.push(open(&beside).map_err(|error| LoadError::Open {
                    path: beside.clone(),
                    error,
                })?);
            }
        }
    }
    let library = open(path).map_err(|error| LoadError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    // SAFETY: the signatures are those of crypto_mb's headers (cpu_features.h, version.h,
    // rsa.h, ec_nistp256.h, ec_nistp384.h, ed25519.h, interface 13); all take and return plain
    // integers and pointers, with the C calling convention on Linux.
    let (applicable, version, functions) = unsafe {
        let applicable: IsApplicable = symbol(&library, "mbx_is_crypto_mb_applicable")?;
        let version: GetVersion = symbol(&library, "mbx_getversion")?;
        let functions = Functions {
            rsa_method: symbol(&library, "mbx_RSA_pub65537_Method")?,
            rsa_buf_size: symbol(&library, "mbx_RSA_Method_BufSize")?,
            rsa_public: symbol(&library, "mbx_rsa_public_mb8")?,
            p256_verify: symbol(&library, "mbx_nistp256_ecdsa_verify_mb8")?,
            p384_verify: symbol(&library, "mbx_nistp384_ecdsa_verify_mb8")?,
            ed25519_verify: symbol(&library, "mbx_ed25519_verify_mb8")?,
            _libraries: Vec::new(),
        };
        (applicable, version, functions)
    };
    // SAFETY: takes a feature mask by value (0: this CPU's features) and returns an int.
    if unsafe { applicable(0) } != 1 {
        return Err(LoadError::NotApplicable);
    }
    // SAFETY: returns a pointer to a static struct of the library (or null), whose strings
    // are NUL-terminated static strings.
    let version = unsafe {
        version().as_ref().map_or_else(String::new, |v| {
            if v.str_version.is_null() {
                format!("{}.{}.{}", v.major, v.minor, v.patch)
            } else {
                CStr::from_ptr(v.str_version).to_string_lossy().into_owned()
            }
        })
    };
    libraries.push(library);
    Ok((
        Functions {
            _libraries: libraries,
            ..functions
        },
        version,
    ))
}

/// Points every empty lane (null in `first`) at the first filled one, in each of `arrays`, so
/// that the library never reads a null lane; their verdicts are ignored. `None` when no lane
/// is filled.
macro_rules! fill_empty {
    ($first:expr, $($array:expr),+) => {{
        let first = $first;
        match first.iter().position(|p| !p.is_null()) {
            None => None,
            Some(k) => {
                #[allow(clippy::needless_range_loop)]
                for i in 0..8 {
                    if first[i].is_null() {
                        $( $array[i] = $array[k]; )+
                    }
                }
                Some(())
            }
        }
    }};
}

impl Functions {
    /// The scratch size of the RSA public operation with e = 65537 for `bits`; `None` when the
    /// library has no method for that size.
    pub(crate) fn rsa_scratch_len(&self, bits: u32) -> Option<usize> {
        let bits = c_int::try_from(bits).ok()?;
        // SAFETY: takes an int, returns a pointer to a static method table or null.
        let method = unsafe { (self.rsa_method)(bits) };
        if method.is_null() {
            return None;
        }
        // SAFETY: `method` is the library's own, non-null.
        let size = unsafe { (self.rsa_buf_size)(method) };
        usize::try_from(size).ok()
    }

    /// `to[i] = from[i]^65537 mod n[i]` for the lanes that are `Some`; the status of the others
    /// means nothing.
    ///
    /// Each `from`/`to` is `bits / 8` bytes, each `n` `bits / 64` words, `scratch` at least
    /// [`Functions::rsa_scratch_len`] bytes and 64-byte aligned: the caller checked all of it.
    pub(crate) fn rsa_public(
        &self,
        bits: u32,
        lanes: &mut [RsaLane<'_>; 8],
        scratch: &mut [u8],
    ) -> Status {
        let Ok(bits_int) = c_int::try_from(bits) else {
            return u32::MAX;
        };
        let mut from = [ptr::null::<u8>(); 8];
        let mut to = [ptr::null_mut::<u8>(); 8];
        let mut n = [ptr::null::<u64>(); 8];
        for (i, lane) in lanes.iter_mut().enumerate() {
            if let Some((f, t, m)) = lane {
                debug_assert!(f.len() * 8 == bits as usize && t.len() == f.len());
                debug_assert!(m.len() * 64 == bits as usize);
                from[i] = f.as_ptr();
                to[i] = t.as_mut_ptr();
                n[i] = m.as_ptr();
            }
        }
        let empty = from.map(|p| p.is_null());
        if fill_empty!(from, from, n).is_none() {
            return u32::MAX;
        }
        // An empty lane reads the first lane's input and writes to its own place: one buffer
        // per empty lane, so that no two lanes write the same bytes.
        let mut spare = [[0u8; 512]; 8];
        for (i, place) in spare.iter_mut().enumerate() {
            if empty[i] {
                to[i] = place.as_mut_ptr();
            }
        }
        // SAFETY: takes an int, returns a static method table or null.
        let method = unsafe { (self.rsa_method)(bits_int) };
        if method.is_null() {
            return u32::MAX;
        }
        // SAFETY: every pointer covers what the call reads or writes for `bits` (checked by
        // the caller, at most 4096 bits: 512 bytes for the spare outputs). The slices and
        // `spare` outlive the call.
        unsafe {
            (self.rsa_public)(
                from.as_ptr(),
                to.as_ptr(),
                n.as_ptr(),
                bits_int,
                method,
                scratch.as_mut_ptr(),
            )
        }
    }

    /// ECDSA verification on P-256 (`words` = 4) or P-384 (`words` = 6) for the lanes that
    /// are `Some((r, s, digest, x, y))`: `r`, `s`, `digest` of 8 × `words` bytes, `x`, `y` of
    /// `words` words, checked by the caller.
    pub(crate) fn ecdsa_verify(&self, words: usize, lanes: &[EcdsaLane<'_>; 8]) -> Status {
        let verify = match words {
            4 => self.p256_verify,
            6 => self.p384_verify,
            _ => return u32::MAX,
        };
        let (mut r, mut s, mut m) = ([ptr::null::<u8>(); 8], [ptr::null(); 8], [ptr::null(); 8]);
        let (mut x, mut y) = ([ptr::null::<u64>(); 8], [ptr::null(); 8]);
        for (i, lane) in lanes.iter().enumerate() {
            if let Some((lr, ls, lm, lx, ly)) = lane {
                debug_assert!(lr.len() == words * 8 && ls.len() == words * 8);
                debug_assert!(lm.len() == words * 8 && lx.len() == words && ly.len() == words);
                (r[i], s[i], m[i]) = (lr.as_ptr(), ls.as_ptr(), lm.as_ptr());
                (x[i], y[i]) = (lx.as_ptr(), ly.as_ptr());
            }
        }
        if fill_empty!(r, r, s, m, x, y).is_none() {
            return u32::MAX;
        }
        // SAFETY: every pointer covers the curve's size (checked by the caller); the affine
        // form takes a null z array (an array of null pointers fails every lane) and a null
        // scratch buffer. Nothing is written but the status.
        unsafe {
            verify(
                r.as_ptr(),
                s.as_ptr(),
                m.as_ptr(),
                x.as_ptr(),
                y.as_ptr(),
                ptr::null(),
                ptr::null_mut(),
            )
        }
    }

    /// Ed25519 verification for the lanes that are `Some((signature, message, public))`.
    pub(crate) fn ed25519_verify(&self, lanes: &[Ed25519Lane<'_>; 8]) -> Status {
        let (mut r, mut s) = ([ptr::null::<[u8; 32]>(); 8], [ptr::null::<[u8; 32]>(); 8]);
        let (mut m, mut len, mut key) = ([ptr::null::<u8>(); 8], [0u32; 8], [ptr::null(); 8]);
        for (i, lane) in lanes.iter().enumerate() {
            if let Some((signature, message, public)) = lane {
                let Ok(l) = u32::try_from(message.len()) else {
                    continue;
                };
                let (Ok(first), Ok(second)) = (
                    <&[u8; 32]>::try_from(&signature[..32]),
                    <&[u8; 32]>::try_from(&signature[32..]),
                ) else {
                    continue;
                };
                (r[i], s[i]) = (first as *const [u8; 32], second as *const [u8; 32]);
                (m[i], len[i], key[i]) = (message.as_ptr(), l, *public as *const [u8; 32]);
            }
        }
        if fill_empty!(r, r, s, m, len, key).is_none() {
            return u32::MAX;
        }
        // SAFETY: each lane points at 32-byte halves of a 64-byte signature, a message of
        // `len[i]` bytes and a 32-byte key, all outliving the call.
        unsafe {
            (self.ed25519_verify)(
                r.as_ptr(),
                s.as_ptr(),
                m.as_ptr(),
                len.as_ptr(),
                key.as_ptr(),
            )
        }
    }
}
