//! What the token is asked to sign for each algorithm, and the form of what it answers.

use std::fmt;
use std::marker::PhantomData;

use aws_lc_rs::digest;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use jose::Algorithm;

use crate::error::{ck, HsmError};

/// The mechanism that signs for `alg`: PKCS #1 v1.5 or PSS (SHA-256, MGF1-SHA-256, 32-byte
/// salt) with SHA-256, pure EdDSA, or for ECDSA `CKM_ECDSA` over a digest made in software
/// ([`prehash`]), which returns `r‖s`.
pub(crate) fn mechanism(alg: Algorithm) -> Result<Mechanism<'static>, HsmError> {
    Ok(match alg {
        Algorithm::ES256 | Algorithm::ES384 => Mechanism::Ecdsa,
        Algorithm::RS256 => Mechanism::Sha256RsaPkcs,
        Algorithm::PS256 => Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32u64.into(),
        }),
        Algorithm::EdDSA => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        other => return Err(HsmError::Unsupported(format!("signing with {other}"))),
    })
}

/// The hash made in software before `C_Sign`, for the mechanisms that sign a digest: SoftHSM
/// has no `CKM_ECDSA_SHA256`.
pub(crate) fn prehash(alg: Algorithm) -> Option<&'static digest::Algorithm> {
    match alg {
        Algorithm::ES256 => Some(&digest::SHA256),
        Algorithm::ES384 => Some(&digest::SHA384),
        _ => None,
    }
}

/// One `C_Sign` of `data` with the private key `private`.
pub(crate) fn sign(
    session: &Session,
    mechanism: &Mechanism<'_>,
    private: ObjectHandle,
    data: &[u8],
) -> Result<Vec<u8>, HsmError> {
    session.sign(mechanism, private, data).map_err(ck("C_Sign"))
}

/// `signature` as the token returned it for `alg`, checked to be in JWS form: fixed-length
/// `r‖s` for ECDSA, 64 bytes for EdDSA.
pub(crate) fn jws_form(alg: Algorithm, signature: Vec<u8>) -> Result<Vec<u8>, HsmError> {
    let expected = match alg {
        Algorithm::ES256 => Some(64),
        Algorithm::ES384 => Some(96),
        Algorithm::EdDSA => Some(64),
        _ => None,
    };
    if expected.is_some_and(|n| n != signature.len()) {
        return Err(HsmError::Token(format!(
            "{alg} signature of {} bytes",
            signature.len()
        )));
    }
    Ok(signature)
}

/// One key and one session of its own, signing with the mechanism `Hsm::sign` uses: one
/// `C_Sign` per call and nothing else (no pool, no reconnection, no retry, no check of the
/// answer). The baseline the signing benchmarks measure `Hsm::sign` against; made by
/// `Hsm::raw_signer`, and closed before the `Hsm` that made it.
pub struct RawSigner<'hsm> {
    session: Session,
    private: ObjectHandle,
    mechanism: Mechanism<'static>,
    prehash: Option<&'static digest::Algorithm>,
    /// Borrows the `Hsm`, so that the session closes before the module finalises.
    _hsm: PhantomData<&'hsm ()>,
}

impl RawSigner<'_> {
    pub(crate) fn new(
        alg: Algorithm,
        mechanism: Mechanism<'static>,
        session: Session,
        private: ObjectHandle,
    ) -> Self {
        RawSigner {
            session,
            private,
            mechanism,
            prehash: prehash(alg),
            _hsm: PhantomData,
        }
    }

    /// What the token is asked to sign for `message`: the message, or for ECDSA its digest.
    pub fn input(&self, message: &[u8]) -> Vec<u8> {
        match self.prehash {
            Some(hash) => digest::digest(hash, message).as_ref().to_vec(),
            None => message.to_vec(),
        }
    }

    /// One `C_Sign` over `input` (from [`RawSigner::input`]).
    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, HsmError> {
        sign(&self.session, &self.mechanism, self.private, input)
    }
}

impl fmt::Debug for RawSigner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSigner").finish_non_exhaustive()
    }
}
