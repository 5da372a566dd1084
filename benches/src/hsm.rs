//! A throwaway SoftHSM token for the signing benchmarks (its folder is the testkit's): one key
//! per algorithm.

use std::path::Path;

use jose::{Algorithm, SigningInput};
use pkcs11::{Hsm, HsmConfig, KeyInfo, KeySpec, KeyState, Pin};

pub const MODULE: &str = HsmConfig::SOFTHSM_MODULE;
/// The label of the benchmarks' token.
pub const LABEL: &str = "tessera-bench";
/// The algorithms the signing benchmarks compare.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

/// Initialises the token `label` in the SoftHSM folder `dir` (its `pin` and `so-pin` files, as
/// the testkit's `SoftHsm::folder` writes them) with one active key per algorithm of
/// [`ALGORITHMS`].
pub fn open_token(dir: &Path, label: &str) -> (Hsm, Vec<KeyInfo>) {
    let module = Path::new(MODULE);
    let pin = Pin::from_file(&dir.join("pin")).expect("read the PIN file");
    let so_pin = Pin::from_file(&dir.join("so-pin")).expect("read the SO PIN file");
    Hsm::init_token(module, label, &so_pin, &pin).expect("initialise the SoftHSM token");
    let mut config = HsmConfig::new(module, label, pin);
    config.sessions = 2;
    let hsm = Hsm::open(&config).expect("open the SoftHSM token");
    let keys = ALGORITHMS
        .iter()
        .map(|&alg| {
            let spec = KeySpec::new(alg).expect("HSM key spec");
            hsm.generate(spec, KeyState::Active, 0)
                .unwrap_or_else(|e| panic!("generate a {alg} key: {e}"))
        })
        .collect();
    (hsm, keys)
}

/// A realistic JWT signing input for `key`: `{"alg":..,"kid":..,"typ":"JWT"}` over the
/// claims of an access token (about 200 bytes).
pub fn signing_input(key: &KeyInfo) -> SigningInput {
    let header = jose::jws::header_json(key.life.alg, Some(&key.kid), Some("JWT"));
    let claims = crate::access_token_claims(crate::now());
    SigningInput::new(header.as_bytes(), claims.as_bytes())
}

/// Panics unless `signature` over `input` verifies with `key`'s public half.
pub fn assert_verifies(key: &KeyInfo, input: &SigningInput, signature: &[u8], who: &str) {
    let alg = key.life.alg;
    let verifying = jose::VerifyingKey::from_public(alg, &key.public, Some(&key.kid))
        .unwrap_or_else(|e| panic!("{alg}: the key's public half is refused: {e}"));
    let keys = jose::KeySet::new(vec![verifying]).expect("a set of one key");
    let token = input.clone().into_compact(signature);
    let jws = jose::jws::verify(&token, &keys, &jose::Limits::default())
        .unwrap_or_else(|e| panic!("{alg}: {who} signature does not verify: {e:?}"));
    assert_eq!(jws.alg(), alg);
}
