//! A DPoP proof accepted on its request (RFC 9449 sections 4.3, 8, 9 and 11.1), the same at
//! `/v1/authz` and at `/token`: the stateless checks ([`oauth::dpop::check`]), then this
//! daemon's nonce when nonces are on, then the replay check, in this daemon's memory or in the
//! store. Each endpoint answers the failures in its own form.

use oauth::dpop::{Checked, Expected};
use oauth::nonce::Verdict;

use crate::app::App;
use crate::config::ReplayCheck;
use crate::dpop::Remembered;

use super::verdict::{fingerprint, log_refusal};

/// A proof that passed every check, and was remembered.
#[derive(Debug)]
pub struct Accepted {
    pub checked: Checked,
    /// A nonce for the answer to carry (`DPoP-Nonce`): the current one, when the proof's is
    /// of the slot before and will lapse.
    pub next_nonce: Option<String>,
}

/// Why a proof was not accepted.
#[derive(Debug)]
pub enum Failure {
    /// It fails a check, or was accepted before (`invalid_dpop_proof`).
    Invalid,
    /// It lacks a nonce of this daemon's that is still good (`use_dpop_nonce`), with the
    /// nonce to use.
    UseNonce(String),
    /// No room to remember it (503).
    Full,
    /// The store did not answer (503): fail closed.
    Unavailable,
}

/// Checks `proof` against `expected` and remembers it; `token` names the request in logs
/// (a fingerprint, never the token).
pub async fn accept(
    app: &App,
    proof: &str,
    expected: &Expected<'_>,
    token: &[u8],
) -> Result<Accepted, Failure> {
    let accepted = check(app, proof, expected, token)?;
    remember(app, &accepted.checked, expected, token).await?;
    Ok(accepted)
}

/// The checks that need no I/O: the proof itself, then this daemon's nonce. What passes is
/// not yet remembered: [`remember`] it before acting on it.
pub fn check(
    app: &App,
    proof: &str,
    expected: &Expected<'_>,
    token: &[u8],
) -> Result<Accepted, Failure> {
    let checked = oauth::dpop::check(proof, expected).map_err(|refused| {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(token = %fingerprint(token), cause = %refused, "DPoP proof refused");
        }
        Failure::Invalid
    })?;
    let now = expected.now;
    let mut next_nonce = None;
    if let Some(nonces) = &app.authz.nonces {
        let verdict = checked
            .nonce
            .as_deref()
            .map_or(Verdict::Refused, |n| nonces.check(n, now));
        match verdict {
            Verdict::Current => {}
            Verdict::Previous => next_nonce = Some(nonces.issue(now)),
            Verdict::Refused => return Err(Failure::UseNonce(nonces.issue(now))),
        }
    }
    Ok(Accepted {
        checked,
        next_nonce,
    })
}

/// The replay check: `checked` remembered, here or in the store, unless some proof with its
/// key and `jti` was accepted before (then [`Failure::Invalid`]).
pub async fn remember(
    app: &App,
    checked: &Checked,
    expected: &Expected<'_>,
    token: &[u8],
) -> Result<(), Failure> {
    let now = expected.now;
    // Past its window the iat check refuses it: it need not be remembered longer.
    let until = checked.iat + expected.window_s;
    let first = match app.authz.config.dpop.replays {
        ReplayCheck::Local => {
            match app
                .authz
                .replays
                .remember(&checked.jkt, &checked.jti, until, now)
            {
                Remembered::First => true,
                Remembered::Replayed => false,
                Remembered::Full => {
                    tracing::warn!(
                        "DPoP proof refused: no room to remember it ([authz.dpop] max_remembered)"
                    );
                    return Err(Failure::Full);
                }
            }
        }
        ReplayCheck::Store => {
            let key = crate::dpop::proof_key(&checked.jkt, &checked.jti);
            app.revocations
                .store()
                .remember_proof(&key, until)
                .await
                .map_err(|e| {
                    tracing::error!(cause = %e, "DPoP proof not recorded in the store");
                    Failure::Unavailable
                })?
        }
    };
    if !first {
        log_refusal(token, "dpop_proof_replayed");
        return Err(Failure::Invalid);
    }
    Ok(())
}
