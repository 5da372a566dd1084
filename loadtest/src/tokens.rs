//! The tokens a run sends: signed here from a key directory (a mix of algorithms, a number of
//! distinct tokens, a share made invalid on purpose), or read from a file.

use std::path::Path;

use anyhow::{bail, Context as _};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use jose::Algorithm;

use jose::SigningKey;

/// What a token is expected to get from the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Expired,
    BadSignature,
    WrongAudience,
    /// Marked invalid in a `--tokens` file, for a reason the harness does not know.
    Invalid,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Expired => "expired",
            Kind::BadSignature => "bad_signature",
            Kind::WrongAudience => "wrong_audience",
            Kind::Invalid => "invalid",
        }
    }

    pub fn is_valid(self) -> bool {
        self == Kind::Valid
    }
}

#[derive(Clone)]
pub struct Token {
    pub text: String,
    pub kind: Kind,
}

impl std::fmt::Debug for Token {
    // A token is a credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// How to make the tokens.
#[derive(Clone, Debug)]
pub struct Spec {
    pub iss: String,
    pub aud: Option<String>,
    pub scope: String,
    /// Algorithm and weight (any positive numbers; shares are weight / sum).
    pub mix: Vec<(Algorithm, f64)>,
    pub distinct: usize,
    /// Percent of the distinct tokens made invalid.
    pub invalid_pct: f64,
    /// Lifetime in seconds.
    pub ttl: u64,
}

/// The audience a `wrong_audience` token carries.
pub const WRONG_AUDIENCE: &str = "urn:tessera-loadtest:wrong-audience";

/// How many of `n` items each weight gets (largest remainder, so they add up to `n`).
pub fn apportion(n: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| n as f64 * w / sum).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n - counts.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

/// Indices into `counts`, each `counts[i]` times, spread as evenly as possible (smooth weighted
/// round robin).
fn interleave(counts: &[usize]) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let mut current = vec![0i64; counts.len()];
    let mut out = Vec::with_capacity(total);
    for _ in 0..total {
        for (c, &n) in current.iter_mut().zip(counts) {
            *c += n as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .unwrap_or((0, &0));
        current[best] -= total as i64;
        out.push(best);
    }
    out
}

/// The plan for each distinct token: its algorithm (index into the mix) and kind.
pub fn layout(spec: &Spec) -> anyhow::Result<Vec<(usize, Kind)>> {
    let n = spec.distinct;
    if n == 0 {
        bail!("--distinct must be at least 1");
    }
    let weights: Vec<f64> = spec.mix.iter().map(|(_, w)| *w).collect();
    let counts = apportion(n, &weights);
    for ((alg, _), count) in spec.mix.iter().zip(&counts) {
        if *count == 0 {
            bail!(
                "--distinct {n} leaves no token for {} in the mix: raise --distinct (at least {} for every algorithm to get one)",
                alg.name(),
                spec.mix.len()
            );
        }
    }
    let invalid = (n as f64 * spec.invalid_pct / 100.0).round() as usize;
    if spec.invalid_pct > 0.0 && invalid == 0 {
        bail!(
            "--invalid {} of --distinct {n} rounds to no invalid token: raise --distinct",
            spec.invalid_pct
        );
    }
    let mut kinds = vec![Kind::Expired, Kind::BadSignature];
    if spec.aud.is_some() {
        kinds.push(Kind::WrongAudience);
    }
    // Each algorithm gets its share of the invalid tokens, spread evenly over its own tokens,
    // with the kinds in rotation (started at a different kind for each algorithm).
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let invalid_per_alg = apportion(invalid, &shares);
    let mut seen = vec![0usize; counts.len()];
    let mut invalid_seen = vec![0usize; counts.len()];
    Ok(interleave(&counts)
        .into_iter()
        .map(|alg| {
            let (j, count, bad) = (seen[alg], counts[alg], invalid_per_alg[alg]);
            seen[alg] += 1;
            let kind = if (j + 1) * bad / count > j * bad / count {
                let k = kinds[(alg + invalid_seen[alg]) % kinds.len()];
                invalid_seen[alg] += 1;
                k
            } else {
                Kind::Valid
            };
            (alg, kind)
        })
        .collect())
}

/// Signs the tokens of `spec` with `keys` (one per algorithm of the mix, same order) at time
/// `now`, on up to `threads` threads.
pub fn generate(
    spec: &Spec,
    keys: &[SigningKey],
    now: u64,
    threads: usize,
) -> anyhow::Result<Vec<Token>> {
    let layout = layout(spec)?;
    let mut nonce = [0u8; 6];
    SystemRandom::new()
        .fill(&mut nonce)
        .ok()
        .context("no randomness for the token ids")?;
    let nonce = jose::b64::encode(&nonce);
    let headers: Vec<String> = keys.iter().map(|k| k.header_json(Some("at+jwt"))).collect();
    let sign_one = |i: usize, (alg, kind): (usize, Kind)| -> anyhow::Result<Token> {
        let (iat, exp) = match kind {
            Kind::Expired => (now - 7200, now - 3600),
            _ => (now, now + spec.ttl),
        };
        let aud = match kind {
            Kind::WrongAudience => Some(WRONG_AUDIENCE),
            _ => spec.aud.as_deref(),
        };
        let mut claims = String::with_capacity(200);
        claims.push_str("{\"iss\":");
        jose::json::write_str(&mut claims, &spec.iss);
        claims.push_str(&format!(",\"sub\":\"loadtest-{i}\""));
        if let Some(aud) = aud {
            claims.push_str(",\"aud\":");
            jose::json::write_str(&mut claims, aud);
        }
        claims.push_str(",\"scope\":");
        jose::json::write_str(&mut claims, &spec.scope);
        claims.push_str(&format!(
            ",\"iat\":{iat},\"exp\":{exp},\"jti\":\"{nonce}-{i}\"}}"
        ));
        let mut text = keys[alg].token(&headers[alg], &claims)?;
        if kind == Kind::BadSignature {
            // Change the signature's first character: the signature no longer matches.
            let at = text.rfind('.').map_or(0, |dot| dot + 1);
            let replacement = if text.as_bytes().get(at) == Some(&b'A') {
                "B"
            } else {
                "A"
            };
            text.replace_range(at..at + 1, replacement);
        }
        Ok(Token { text, kind })
    };
    let threads = threads.clamp(1, layout.len());
    let per = layout.len().div_ceil(threads);
    let parts: Vec<anyhow::Result<Vec<Token>>> = std::thread::scope(|s| {
        let handles: Vec<_> = layout
            .chunks(per)
            .enumerate()
            .map(|(c, chunk)| {
                let sign_one = &sign_one;
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(j, &plan)| sign_one(c * per + j, plan))
                        .collect::<anyhow::Result<Vec<Token>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a signing thread panicked")))
            })
            .collect()
    });
    let mut tokens = Vec::with_capacity(layout.len());
    for part in parts {
        tokens.extend(part?);
    }
    Ok(tokens)
}

/// Tokens from a file: one per line, optionally followed by whitespace and `valid` (the
/// default) or any other word, which marks the token as expected to be refused. Empty lines and
/// lines starting with `#` are skipped.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<Token>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let token = words.next().unwrap_or_default();
        let kind = match words.next() {
            None | Some("valid") => Kind::Valid,
            Some(_) => Kind::Invalid,
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "{} line {}: a token must be printable ASCII without spaces",
                path.display(),
                number + 1
            );
        }
        tokens.push(Token {
            text: token.to_string(),
            kind,
        });
    }
    if tokens.is_empty() {
        bail!("{} holds no token", path.display());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mix: &[(Algorithm, f64)], distinct: usize, invalid_pct: f64) -> Spec {
        Spec {
            iss: "https://issuer.example".into(),
            aud: Some("api://orders".into()),
            scope: "loadtest".into(),
            mix: mix.to_vec(),
            distinct,
            invalid_pct,
            ttl: 600,
        }
    }

    #[test]
    fn apportion_adds_up() {
        assert_eq!(apportion(10, &[50.0, 30.0, 20.0]), vec![5, 3, 2]);
        assert_eq!(apportion(3, &[50.0, 30.0, 20.0]), vec![1, 1, 1]);
        assert_eq!(apportion(2, &[50.0, 30.0, 20.0]), vec![1, 1, 0]);
        assert_eq!(apportion(7, &[1.0, 1.0, 1.0]), vec![3, 2, 2]);
        assert_eq!(apportion(1, &[100.0]), vec![1]);
    }

    #[test]
    fn interleave_spreads_evenly() {
        assert_eq!(interleave(&[2, 1]), vec![0, 1, 0]);
        let seq = interleave(&[5, 3, 2]);
        assert_eq!(seq.len(), 10);
        assert_eq!(seq.iter().filter(|&&i| i == 2).count(), 2);
    }

    #[test]
    fn layout_holds_the_shares_and_rotates_invalid_kinds() {
        let mix = [(Algorithm::ES256, 50.0), (Algorithm::EdDSA, 50.0)];
        let l = layout(&spec(&mix, 100, 30.0)).unwrap();
        assert_eq!(l.len(), 100);
        assert_eq!(l.iter().filter(|(a, _)| *a == 0).count(), 50);
        let invalid: Vec<Kind> = l
            .iter()
            .map(|(_, k)| *k)
            .filter(|k| !k.is_valid())
            .collect();
        assert_eq!(invalid.len(), 30);
        for kind in [Kind::Expired, Kind::BadSignature, Kind::WrongAudience] {
            assert_eq!(invalid.iter().filter(|&&k| k == kind).count(), 10);
        }
        assert!(layout(&spec(&mix, 1, 0.0)).is_err());
        assert!(layout(&spec(&mix[..1], 1, 10.0)).is_err());
        assert!(layout(&spec(&mix[..1], 0, 0.0)).is_err());
    }
}
