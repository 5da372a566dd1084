//! The harness's own signing keys: one per algorithm, jose's `SigningKey`. `keys --out DIR`
//! writes the private keys (PKCS#8 DER, mode 0600) and the public JWKS that the daemon is told to
//! trust; load runs read the private keys back and sign their tokens with them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use jose::{Algorithm, SigningKey};

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

/// A fresh key for `alg`, with its `kid` (see [`from_stored`]) and its private form as it is
/// stored on disk.
pub fn generate(alg: Algorithm) -> anyhow::Result<(SigningKey, Vec<u8>)> {
    supported(alg)?;
    let (_, stored) = SigningKey::generate_stored(alg)
        .with_context(|| format!("generating a {} key", alg.name()))?;
    let key = from_stored(alg, &stored)?;
    Ok((key, stored))
}

/// A key from its stored form (PKCS#8 DER, or the raw secret for HS256), with its `kid`: the
/// RFC 7638 thumbprint of the public key; for HS256, of the secret's SHA-256.
pub fn from_stored(alg: Algorithm, stored: &[u8]) -> anyhow::Result<SigningKey> {
    supported(alg)?;
    if alg == Algorithm::HS256 && stored.len() < 32 {
        bail!("an HS256 secret needs at least 32 bytes");
    }
    let key = SigningKey::from_stored(alg, stored)
        .map_err(|e| anyhow::anyhow!("not a {} PKCS#8 key: {e}", alg.name()))?;
    let kid = match key.public() {
        Some(public) => public.thumbprint(),
        None => {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, stored);
            jose::b64::encode(&d.as_ref()[..16])
        }
    };
    Ok(key.with_kid(kid))
}

fn supported(alg: Algorithm) -> anyhow::Result<()> {
    if file_name(alg).is_none() {
        bail!("the harness does not sign {}", alg.name());
    }
    Ok(())
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
        let (key, stored) = generate(alg)?;
        let name = file_name(alg).context("no file name for the algorithm")?;
        write_private(&dir.join(name), &stored)?;
        if i > 0 {
            jwks.push(',');
        }
        jwks.push_str(&key.jwk());
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
            from_stored(alg, &stored).with_context(|| format!("{}", path.display()))
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
            let (key, stored) = generate(alg).unwrap();
            let again = from_stored(alg, &stored).unwrap();
            assert_eq!(again.kid(), key.kid());
            let jwks = format!("{{\"keys\":[{}]}}", key.jwk());
            let set = jose::KeySet::from_jwks(jwks.as_bytes()).unwrap();
            assert!(set.skipped.is_empty(), "{alg:?}: {:?}", set.skipped);
            let header = again.header_json(Some("at+jwt"));
            let token = again.token(&header, r#"{"exp":4000000000}"#).unwrap();
            let jwt = jose::jwt::verify(&token, &set.keys, &jose::Validation::default(), 0)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(jwt.alg(), alg);
        }
    }

    #[test]
    fn the_kid_is_the_thumbprint_or_the_secret_digest() {
        let (key, _) = generate(Algorithm::ES256).unwrap();
        assert_eq!(key.kid(), key.public().map(|p| p.thumbprint()).as_deref());
        let secret = [7u8; 32];
        let key = from_stored(Algorithm::HS256, &secret).unwrap();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &secret);
        assert_eq!(
            key.kid(),
            Some(jose::b64::encode(&d.as_ref()[..16]).as_str())
        );
        assert!(from_stored(Algorithm::HS256, &secret[..31]).is_err());
        assert!(generate(Algorithm::PS256).is_err());
    }
}
