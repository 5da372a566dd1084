//! `tessera verify` and `tessera jws verify`: the verification contract of PRODUCT.md.
//!
//! Valid: exit 0 and `{"valid": true, "header": {...}, "claims": {...}}` (or `"payload"`).
//! Invalid: exit 1 and `{"valid": false, "error": CODE, "detail": TEXT}`.
//! Usage or configuration error: exit 2 and a message on stderr.
//! With `-` (or no token), tokens are read from stdin one per line, one verdict line each;
//! input without a token (empty, or blank lines only) is a usage error.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use jose::{json, KeySet, Limits, Validation};

/// The largest key set file read, in bytes.
const MAX_JWKS_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct JwsVerifyArgs {
    /// JWK Set file with the verification keys.
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// The token, or `-` to read tokens from stdin, one per line.
    #[arg(value_name = "TOKEN | -", default_value = "-")]
    token: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    jws: JwsVerifyArgs,
    /// Required issuer (`iss`, exact match). Not checked when absent.
    #[arg(long, value_name = "ISS")]
    iss: Option<String>,
    /// Accepted audience (`aud`, exact match); repeat for several. Not checked when absent.
    #[arg(long, value_name = "AUD")]
    aud: Vec<String>,
    /// Required token type (`typ`), e.g. `at+jwt` (RFC 9068).
    #[arg(long, value_name = "TYP")]
    typ: Option<String>,
    /// The longest lifetime accepted, in seconds: `exp - iat`, or `exp - now` without `iat`.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    max_lifetime: Option<u64>,
    /// Clock skew tolerated on exp, nbf and iat, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = Validation::DEFAULT_LEEWAY)]
    leeway: u64,
    /// Verify as if the time were this (seconds since the Unix epoch).
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    now: Option<i64>,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = load_keys(&args.jws.jwks)?;
    let mut validation = Validation::default();
    validation.issuer = args.iss;
    validation.audiences = args.aud;
    validation.typ = args.typ;
    validation.max_lifetime = args.max_lifetime;
    validation.leeway = args.leeway;
    let now = match args.now {
        Some(now) => now,
        None => unix_now()?,
    };
    run(
        &args.jws.token,
        &validation.limits,
        |token, out| match jose::jwt::verify(token, &keys, &validation, now) {
            Ok(jwt) => write_valid(
                out,
                jwt.header_json(),
                "claims",
                &json::minify(jwt.claims_json()),
            ),
            Err(err) => write_invalid(out, &err),
        },
    )
}

pub fn jws_verify(args: JwsVerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = load_keys(&args.jwks)?;
    let limits = Limits::default();
    run(&args.token, &limits, |token, out| {
        match jose::jws::verify(token, &keys, &limits) {
            Ok(jws) => {
                // The payload segment was strict base64url, so re-encoding gives it back.
                let payload = format!("\"{}\"", jose::b64::encode(jws.payload()));
                write_valid(out, jws.header_json(), "payload", &payload)
            }
            Err(err) => write_invalid(out, &err),
        }
    })
}

/// Verifies the token argument, or each line of stdin for `-`, printing one verdict per token.
/// `check` writes the verdict and says whether the token was valid.
fn run(
    token: &str,
    limits: &Limits,
    mut check: impl FnMut(&[u8], &mut dyn Write) -> io::Result<bool>,
) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut all_valid = true;
    if token != "-" {
        all_valid = check(token.as_bytes(), &mut out)?;
    } else {
        let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
        let mut line = Vec::new();
        // Blank lines are no tokens: their verdicts wait for the first token, so that input
        // with none (an empty file) is an error, not "all valid".
        let (mut any_token, mut blanks) = (false, 0usize);
        while let Some(len) = read_line(&mut input, &mut line, limits.max_token_len)? {
            if line.iter().all(u8::is_ascii_whitespace) && len <= limits.max_token_len {
                if !any_token {
                    blanks += 1;
                    continue;
                }
            } else if !any_token {
                any_token = true;
                for _ in 0..blanks {
                    all_valid &= check(b"", &mut out)?;
                }
            }
            let valid = if len > limits.max_token_len {
                write_invalid(
                    &mut out,
                    &jose::Error::TooLarge {
                        len,
                        limit: limits.max_token_len,
                    },
                )?
            } else {
                check(&line, &mut out)?
            };
            all_valid &= valid;
            // Stream verdicts: flush whenever the next read could block.
            if !input.buffer().contains(&b'\n') {
                out.flush()?;
            }
        }
        if !any_token {
            bail!("no token on stdin (empty input or blank lines only)");
        }
    }
    out.flush()?;
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads one line (without its `\n` or `\r\n`) into `line`, keeping at most `max` bytes of it.
/// Returns the line's full length, or `None` at the end of input.
fn read_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    line.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let keep = chunk.len().min((max + 1).saturating_sub(line.len()));
        line.extend_from_slice(&chunk[..keep]);
        len += chunk.len();
        let consumed = done.unwrap_or(chunk.len());
        input.consume(consumed);
        if done.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') && len <= max + 1 {
        line.pop();
        len -= 1;
    }
    Ok(Some(len))
}

fn write_valid(out: &mut dyn Write, header: &str, name: &str, value: &str) -> io::Result<bool> {
    writeln!(
        out,
        "{{\"valid\":true,\"header\":{},\"{name}\":{value}}}",
        json::minify(header)
    )?;
    Ok(true)
}

fn write_invalid(out: &mut dyn Write, err: &jose::Error) -> io::Result<bool> {
    let mut detail = String::new();
    json::write_str(&mut detail, &err.to_string());
    writeln!(
        out,
        "{{\"valid\":false,\"error\":\"{}\",\"detail\":{detail}}}",
        err.code()
    )?;
    Ok(false)
}

fn load_keys(path: &Path) -> anyhow::Result<KeySet> {
    let file = File::open(path).with_context(|| format!("--jwks {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("--jwks {}", path.display()))?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        bail!(
            "--jwks {}: key set larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        );
    }
    let jwks = KeySet::from_jwks(&bytes).with_context(|| format!("--jwks {}", path.display()))?;
    for skipped in &jwks.skipped {
        let kid = skipped.kid.as_deref().unwrap_or("-");
        eprintln!(
            "tessera: warning: --jwks {}: key {} (kid {kid}) skipped: {}",
            path.display(),
            skipped.index,
            skipped.reason
        );
    }
    if jwks.keys.is_empty() {
        bail!("--jwks {}: no usable verification keys", path.display());
    }
    Ok(jwks.keys)
}

/// The wall clock (`server::unix_time`), an error before 1970 rather than 0.
pub(crate) fn unix_now() -> anyhow::Result<i64> {
    server::unix_time().context("system clock is before 1970")
}

#[cfg(test)]
mod tests {
    use super::read_line;

    #[test]
    fn reads_bounded_lines() {
        let mut input = &b"abc\r\ndef\n\nlonglonglong\nlast"[..];
        let mut line = Vec::new();
        let mut seen = Vec::new();
        while let Some(len) = read_line(&mut input, &mut line, 6).unwrap() {
            seen.push((len, String::from_utf8(line.clone()).unwrap()));
        }
        assert_eq!(
            seen,
            [
                (3, "abc".into()),
                (3, "def".into()),
                (0, "".into()),
                (12, "longlon".into()),
                (4, "last".into()),
            ]
        );
    }
}
