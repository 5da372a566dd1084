//! A throwaway SoftHSM token for the signing benchmarks: its directory, configuration and PINs,
//! and one key per algorithm.

use std::path::{Path, PathBuf};

use jose::{Algorithm, SigningInput};
use pkcs11::{Hsm, HsmConfig, KeyInfo, KeySpec, KeyState, Pin};

pub const MODULE: &str = HsmConfig::SOFTHSM_MODULE;
const LABEL: &str = "tessera-bench";
/// The algorithms the signing benchmarks compare.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

/// A SoftHSM token directory of this process, with its configuration and PIN files.
#[derive(Debug)]
pub struct TokenDir {
    dir: PathBuf,
}

impl TokenDir {
    /// A fresh directory; the caller must point `SOFTHSM2_CONF` at [`TokenDir::path`]`("softhsm2.conf")`
    /// before anything touches PKCS#11.
    pub fn create(name: &str) -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM is missing ({MODULE}): run hsm/install.sh (or apt-get install softhsm2)"
        );
        let dir = std::env::temp_dir().join(format!("tessera-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).expect("create the token directory");
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("store").display()
            ),
        )
        .expect("write softhsm2.conf");
        // PIN files must be the owner's alone (mode 0600), or they are refused.
        for (name, pin) in [
            ("pin", "bench-pin-1234\n"),
            ("so-pin", "bench-so-pin-5678\n"),
        ] {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(name))
                .and_then(|mut f| f.write_all(pin.as_bytes()))
                .expect("write a PIN file");
        }
        TokenDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TokenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token with one active key per algorithm of [`ALGORITHMS`].
pub fn open_token(token: &TokenDir) -> (Hsm, Vec<KeyInfo>) {
    let module = Path::new(MODULE);
    let pin = Pin::from_file(&token.path("pin")).expect("read the PIN file");
    let so_pin = Pin::from_file(&token.path("so-pin")).expect("read the SO PIN file");
    Hsm::init_token(module, LABEL, &so_pin, &pin).expect("initialise the SoftHSM token");
    let mut config = HsmConfig::new(module, LABEL, pin);
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
