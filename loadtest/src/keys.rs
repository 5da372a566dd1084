//! The harness's own signing keys: one per algorithm, made with aws-lc-rs. `keys --out DIR`
//! writes the private keys (PKCS#8 DER, mode 0600) and the public JWKS that the daemon is told to
//! trust; load runs read the private keys back and sign their tokens with them.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use jose::{Algorithm, PublicJwk};

/// The algorithms the harness signs with, and the file each one's private key lives in.
pub const ALGORITHMS: [(Algorithm, &str); 4] = [
    (Algorithm::RS256, "rs256.pk8"),
    (Algorithm::ES256, "es256.pk8"),
    (Algorithm::EdDSA, "eddsa.pk8"),
    (Algorithm::HS256, "hs256.key"),
];

/// The file name of `alg`'s private key in a key directory.
pub fn file_name(alg: Algorithm) -> Option<&'static str> {
    ALGORITHMS
        .iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, name)| *name)
}

/// The name of the public key set in a key directory.
pub const JWKS: &str = "jwks.json";

/// A private key and its `kid` (the RFC 7638 thumbprint of the public key; HS256: of the
/// secret's SHA-256).
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    material: Material,
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(Box<aws_lc_rs::hmac::Key>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key for `alg`, with its private form as it is stored on disk.
    pub fn generate(alg: Algorithm) -> anyhow::Result<(SigningKey, Vec<u8>)> {
        let stored = match alg {
            Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
                .ok()
                .and_then(|k| k.as_der().ok())
                .map(|d| d.as_ref().to_vec()),
            Algorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .ok()
                .and_then(|k| k.to_pkcs8v1().ok())
                .map(|d| d.as_ref().to_vec()),
            Algorithm::EdDSA => Ed25519KeyPair::generate()
                .ok()
                .and_then(|k| k.to_pkcs8().ok())
                .map(|d| d.as_ref().to_vec()),
            Algorithm::HS256 => {
                let mut secret = vec![0u8; 32];
                SystemRandom::new().fill(&mut secret).ok().map(|()| secret)
            }
            other => bail!("the harness does not sign {}", other.name()),
        };
        let stored = stored.with_context(|| format!("generating a {} key", alg.name()))?;
        let key = SigningKey::from_stored(alg, &stored)?;
        Ok((key, stored))
    }

    /// A key from its stored form: PKCS#8 DER, or the raw secret for HS256.
    pub fn from_stored(alg: Algorithm, stored: &[u8]) -> anyhow::Result<SigningKey> {
        let refused = |e: aws_lc_rs::error::KeyRejected| {
            anyhow::anyhow!("not a {} PKCS#8 key: {e}", alg.name())
        };
        let (material, public) = match alg {
            Algorithm::RS256 => {
                let key = RsaKeyPair::from_pkcs8(stored).map_err(refused)?;
                let c = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
                let public = PublicJwk::Rsa {
                    n: strip_zeros(c.n),
                    e: strip_zeros(c.e),
                };
                (Material::Rsa(key), Some(public))
            }
            Algorithm::ES256 => {
                let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, stored)
                    .map_err(refused)?;
                let public = PublicJwk::ec_from_point(alg, key.public_key().as_ref())
                    .context("the P-256 public key is not an uncompressed point")?;
                (Material::Ec(key), Some(public))
            }
            Algorithm::EdDSA => {
                let key = Ed25519KeyPair::from_pkcs8(stored).map_err(refused)?;
                let public = PublicJwk::Ed25519 {
                    x: key.public_key().as_ref().to_vec(),
                };
                (Material::Ed(key), Some(public))
            }
            Algorithm::HS256 => {
                if stored.len() < 32 {
                    bail!("an HS256 secret needs at least 32 bytes");
                }
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, stored);
                (Material::Hmac(Box::new(key)), None)
            }
            other => bail!("the harness does not sign {}", other.name()),
        };
        let kid = match &public {
            Some(public) => public.thumbprint(),
            None => {
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, stored);
                jose::b64::encode(&d.as_ref()[..16])
            }
        };
        Ok(SigningKey { alg, kid, material })
    }

    /// The JWK the daemon verifies this key's tokens with. For HS256 that is the secret itself.
    pub fn jwk(&self, stored: &[u8]) -> String {
        match &self.material {
            Material::Rsa(key) => {
                let c = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
                PublicJwk::Rsa {
                    n: strip_zeros(c.n),
                    e: strip_zeros(c.e),
                }
                .to_json(&self.kid, self.alg)
            }
            Material::Ec(key) => PublicJwk::ec_from_point(self.alg, key.public_key().as_ref())
                .map(|p| p.to_json(&self.kid, self.alg))
                .unwrap_or_default(),
            Material::Ed(key) => PublicJwk::Ed25519 {
                x: key.public_key().as_ref().to_vec(),
            }
            .to_json(&self.kid, self.alg),
            Material::Hmac(_) => {
                let mut out = String::from("{\"kty\":\"oct\",\"kid\":");
                jose::json::write_str(&mut out, &self.kid);
                out.push_str(",\"alg\":\"HS256\",\"use\":\"sig\",\"k\":\"");
                out.push_str(&jose::b64::encode(stored));
                out.push_str("\"}");
                out
            }
        }
    }

    /// A compact JWS of `header_json` and `payload`.
    pub fn sign(&self, header_json: &str, payload: &str) -> anyhow::Result<String> {
        let input = jose::SigningInput::new(header_json.as_bytes(), payload.as_bytes());
        let signature = match &self.material {
            Material::Rsa(key) => {
                let mut sig = vec![0u8; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .ok()
                .context("RS256 signing failed")?;
                sig
            }
            Material::Ec(key) => key
                .sign(&SystemRandom::new(), input.as_bytes())
                .ok()
                .context("ES256 signing failed")?
                .as_ref()
                .to_vec(),
            Material::Ed(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
            Material::Hmac(key) => aws_lc_rs::hmac::sign(key, input.as_bytes())
                .as_ref()
                .to_vec(),
        };
        Ok(input.into_compact(&signature))
    }
}

/// base64urlUInt wants the fewest octets.
fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros.min(v.len().saturating_sub(1)));
    v
}

/// `keys --out DIR`: one key per algorithm in `algs`, the private keys and `jwks.json` in `dir`.
/// Refuses to replace an existing key set unless `force`.
pub fn create(dir: &Path, algs: &[Algorithm], force: bool) -> anyhow::Result<Vec<SigningKey>> {
    let jwks_path = dir.join(JWKS);
    if jwks_path.exists() && !force {
        bail!(
            "{} exists: keep using that key set, or pass --force to replace it",
            jwks_path.display()
        );
    }
    create_dir(dir)?;
    let mut keys = Vec::new();
    let mut jwks = String::from("{\"keys\":[");
    for (i, &alg) in algs.iter().enumerate() {
        let (key, stored) = SigningKey::generate(alg)?;
        let name = file_name(alg).context("no file name for the algorithm")?;
        write_private(&dir.join(name), &stored)?;
        if i > 0 {
            jwks.push(',');
        }
        jwks.push_str(&key.jwk(&stored));
        keys.push(key);
    }
    jwks.push_str("]}\n");
    // A set with an HS256 secret is a secret too.
    if algs.contains(&Algorithm::HS256) {
        write_private(&jwks_path, jwks.as_bytes())?;
    } else {
        write_file(&jwks_path, jwks.as_bytes(), 0o644)?;
    }
    Ok(keys)
}

/// The keys for `algs` from a directory that `create` wrote.
pub fn load(dir: &Path, algs: &[Algorithm]) -> anyhow::Result<Vec<SigningKey>> {
    algs.iter()
        .map(|&alg| {
            let name = file_name(alg)
                .with_context(|| format!("the harness does not sign {}", alg.name()))?;
            let path = dir.join(name);
            let stored = std::fs::read(&path).with_context(|| {
                format!(
                    "reading {} (create a key set with: tessera-loadtest keys --out {}{})",
                    path.display(),
                    dir.display(),
                    if alg == Algorithm::HS256 {
                        " --hs256"
                    } else {
                        ""
                    }
                )
            })?;
            SigningKey::from_stored(alg, &stored).with_context(|| format!("{}", path.display()))
        })
        .collect()
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, 0o600)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, created with
/// `mode`, then renamed over the target.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        path.with_file_name(name)
    };
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_what_its_jwk_verifies() {
        for (alg, _) in ALGORITHMS {
            let (key, stored) = SigningKey::generate(alg).unwrap();
            let again = SigningKey::from_stored(alg, &stored).unwrap();
            assert_eq!(again.kid, key.kid);
            let jwks = format!("{{\"keys\":[{}]}}", key.jwk(&stored));
            let set = jose::KeySet::from_jwks(jwks.as_bytes()).unwrap();
            assert!(set.skipped.is_empty(), "{alg:?}: {:?}", set.skipped);
            let header = jose::jws::header_json(alg, Some(&key.kid), Some("at+jwt"));
            let token = again.sign(&header, r#"{"exp":4000000000}"#).unwrap();
            let jwt = jose::jwt::verify(&token, &set.keys, &jose::Validation::default(), 0)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(jwt.alg(), alg);
        }
    }

    #[test]
    fn strip_zeros_keeps_one_octet() {
        assert_eq!(strip_zeros(vec![0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(strip_zeros(vec![0]), vec![0]);
        assert_eq!(strip_zeros(vec![]), Vec::<u8>::new());
    }
}
