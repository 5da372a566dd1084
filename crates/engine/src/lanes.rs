//! Verifying many tokens at once. Each token is checked up to its signature
//! (`jose::jwt::prepare`); where crypto_mb is loaded, the signatures of one kind (RSA of one
//! modulus size, P-256, P-384, Ed25519) are verified eight at a time, keys mixed freely across
//! lanes; the rest one by one with aws-lc-rs; then each token is finished (payload, claims)
//! with its own verdict. A group too small to pay for a call goes to the single path: a
//! vectorised call costs the same whether one lane is filled or eight.

use jose::batch::{self, Lane, NoLane, RsaEncoding};
use jose::{Error, Jwt, KeySet, Validation};
use multibuffer::{Curve, EcKey, EcdsaLane, Ed25519Lane, MultiBuffer, RsaKey, LANES};

/// One token to verify, with what it is verified against.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    pub token: &'a [u8],
    pub keys: &'a KeySet,
    pub validation: &'a Validation,
}

/// The kinds of vectorised call, as [`Tally`] and the metrics name them.
pub const KINDS: [&str; 6] = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "ed25519"];

/// What the vectorised backend did in one [`verify_all`]: calls made and lanes filled, per
/// kind ([`KINDS`] order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: [u64; 6],
    pub lanes: [u64; 6],
}

impl Tally {
    fn count(&mut self, kind: Kind, lanes: usize) {
        let i = kind.index();
        self.calls[i] += 1;
        self.lanes[i] += lanes as u64;
    }
}

/// The kinds of signature one vectorised call takes together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa(u32),
    Ecdsa(Curve),
    Ed25519,
}

impl Kind {
    /// Its place in [`KINDS`].
    const fn index(self) -> usize {
        match self {
            Kind::Rsa(2048) => 0,
            Kind::Rsa(3072) => 1,
            Kind::Rsa(_) => 2,
            Kind::Ecdsa(Curve::P256) => 3,
            Kind::Ecdsa(Curve::P384) => 4,
            Kind::Ed25519 => 5,
        }
    }

    /// The fewest lanes for which one 8-lane call beats verifying them one by one: the single
    /// path's time over the call's, per lane, measured on one Zen 4 core with AVX-512 IFMA
    /// (RSA-2048 public operation 3.2× aws-lc-rs RS256, P-256 2.5×, Ed25519 3.3×; see
    /// docs/BENCHMARKS.md).
    const fn min_lanes(self) -> usize {
        match self {
            Kind::Rsa(_) => 3,
            Kind::Ecdsa(_) => 4,
            Kind::Ed25519 => 3,
        }
    }
}

/// A token's signature check in the form its vectorised call takes.
enum Slot<'a> {
    Rsa {
        key: RsaKey,
        signature: &'a [u8],
        encoding: RsaEncoding,
        message: &'a [u8],
    },
    Ecdsa {
        key: EcKey,
        lane: Lane<'a>,
    },
    Ed25519 {
        public: &'a [u8; 32],
        signature: &'a [u8; 64],
        message: &'a [u8],
    },
}

impl Slot<'_> {
    fn kind(&self) -> Kind {
        match self {
            Slot::Rsa { key, .. } => Kind::Rsa(key.bits()),
            Slot::Ecdsa { key, .. } => Kind::Ecdsa(key.curve()),
            Slot::Ed25519 { .. } => Kind::Ed25519,
        }
    }
}

/// The slot of `lane`, if the library takes it.
fn slot(lane: Lane<'_>) -> Option<Slot<'_>> {
    match lane {
        Lane::Rsa {
            modulus,
            exponent,
            signature,
            encoding,
            message,
        } => Some(Slot::Rsa {
            key: RsaKey::new(modulus, exponent)?,
            signature,
            encoding,
            message,
        }),
        Lane::Ecdsa { curve, x, y, .. } => {
            let curve = match curve {
                batch::Curve::P256 => Curve::P256,
                batch::Curve::P384 => Curve::P384,
            };
            Some(Slot::Ecdsa {
                key: EcKey::new(curve, x, y)?,
                lane,
            })
        }
        Lane::Ed25519 {
            public,
            signature,
            message,
        } => Some(Slot::Ed25519 {
            public: public.try_into().ok()?,
            signature: signature.try_into().ok()?,
            message,
        }),
    }
}

/// Verifies one call's worth of slots of `kind` (at most [`LANES`]); `None` if the library
/// refused the call (a bug: the slots were checked), so that the single path decides.
fn call(mb: &MultiBuffer, kind: Kind, slots: &[&Slot<'_>]) -> Option<Vec<bool>> {
    match kind {
        Kind::Rsa(bits) => {
            let lanes: Vec<(&RsaKey, &[u8])> = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Rsa { key, signature, .. } => Some((key, *signature)),
                    _ => None,
                })
                .collect();
            let mut out = [[0u8; 512]; LANES];
            let done = mb.rsa_public(bits, &lanes, &mut out).ok()?;
            let len = bits as usize / 8;
            Some(
                slots
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match s {
                        Slot::Rsa {
                            encoding, message, ..
                        } => done.ok(i) && encoding.matches(&out[i][..len], bits as usize, message),
                        _ => false,
                    })
                    .collect(),
            )
        }
        Kind::Ecdsa(curve) => {
            let lanes: Vec<EcdsaLane<'_>> = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Ecdsa {
                        key,
                        lane: Lane::Ecdsa { r, s, digest, .. },
                    } => Some(EcdsaLane {
                        key,
                        r,
                        s,
                        digest: digest.as_bytes(),
                    }),
                    _ => None,
                })
                .collect();
            let done = mb.ecdsa_verify(curve, &lanes).ok()?;
            Some((0..slots.len()).map(|i| done.ok(i)).collect())
        }
        Kind::Ed25519 => {
            let lanes: Vec<Ed25519Lane<'_>> = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Ed25519 {
                        public,
                        signature,
                        message,
                    } => Some(Ed25519Lane {
                        public,
                        signature,
                        message,
                    }),
                    _ => None,
                })
                .collect();
            let done = mb.ed25519_verify(&lanes).ok()?;
            Some((0..slots.len()).map(|i| done.ok(i)).collect())
        }
    }
}

/// Verifies every token of `tokens` at `now`, each verdict its own and the same as
/// `jose::jwt::verify` gives; with `mb`, groups of signatures of one kind go through it.
pub fn verify_all(
    mb: Option<&MultiBuffer>,
    tokens: &[Signed<'_>],
    now: i64,
    tally: &mut Tally,
) -> Vec<Result<Jwt, Error>> {
    let prepared: Vec<Result<jose::jwt::Prepared<'_>, Error>> = tokens
        .iter()
        .map(|t| jose::jwt::prepare(t.token, t.keys, t.validation))
        .collect();
    let mut verdicts: Vec<Option<bool>> = vec![None; prepared.len()];
    if let Some(mb) = mb {
        vectorised(mb, &prepared, &mut verdicts, tally);
    }
    prepared
        .into_iter()
        .zip(verdicts)
        .map(|(p, verdict)| {
            let p = p?;
            let valid = verdict.unwrap_or_else(|| {
                let jws = p.jws();
                jws.key()
                    .verify(jws.signing_input(), jws.signature())
                    .is_ok()
            });
            p.finish(valid, now)
        })
        .collect()
}

/// Fills `verdicts` for the prepared tokens the library verifies, or that a lane refuses
/// before any arithmetic.
fn vectorised(
    mb: &MultiBuffer,
    prepared: &[Result<jose::jwt::Prepared<'_>, Error>],
    verdicts: &mut [Option<bool>],
    tally: &mut Tally,
) {
    let mut slots: Vec<(usize, Slot<'_>)> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let Ok(p) = p else { continue };
        match batch::lane(p.jws()) {
            Err(NoLane::Refused) => verdicts[i] = Some(false),
            Err(NoLane::Algorithm) => {}
            Ok(lane) => {
                if let Some(slot) = slot(lane) {
                    slots.push((i, slot));
                }
            }
        }
    }
    // A batch holds few kinds; group them in the order they first appear.
    let mut kinds: Vec<Kind> = Vec::new();
    for (_, s) in &slots {
        if !kinds.contains(&s.kind()) {
            kinds.push(s.kind());
        }
    }
    for kind in kinds {
        let group: Vec<&(usize, Slot<'_>)> =
            slots.iter().filter(|(_, s)| s.kind() == kind).collect();
        for chunk in group.chunks(LANES) {
            if chunk.len() < kind.min_lanes() {
                continue;
            }
            let lane_slots: Vec<&Slot<'_>> = chunk.iter().map(|(_, s)| s).collect();
            let Some(results) = call(mb, kind, &lane_slots) else {
                continue;
            };
            tally.count(kind, chunk.len());
            for ((i, _), ok) in chunk.iter().zip(results) {
                verdicts[*i] = Some(ok);
            }
        }
    }
}
