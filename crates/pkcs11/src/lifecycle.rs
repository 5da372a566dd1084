//! Key lifecycle: *pending* (published, not signing), *active* (signs), *retired* (published
//! until every token it signed has expired, then *expired*: kept on the token, no longer
//! published).
//!
//! The state lives on the token, in the `CKA_LABEL` of each key pair
//! (`tessera alg=ES256 state=active since=1767225600`), and so does its timing, the [`Policy`]
//! (a data object, `publish_delay=900 retention=86400`), so the CLI and the daemon see the same
//! lifecycle and it survives restarts with nothing beside the token. All transitions are pure
//! functions of the labels, the policy and the clock, in [`plan`]: a transition takes effect
//! when it falls due, whether or not anything writes it then, so reading the keys at some time
//! needs no write, and every reader computes the same states.

use std::fmt;

use jose::Algorithm;

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
    Retired,
}

impl KeyState {
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// What the label of a key pair records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub alg: Algorithm,
    pub state: KeyState,
    /// When the key entered `state`, seconds since the Unix epoch.
    pub since: i64,
}

impl Lifecycle {
    const PREFIX: &'static str = "tessera ";

    pub fn label(&self) -> String {
        format!(
            "{}alg={} state={} since={}",
            Lifecycle::PREFIX,
            self.alg,
            self.state.name(),
            self.since
        )
    }

    /// Parses a label written by [`Lifecycle::label`]; `None` for other objects.
    pub fn parse(label: &str) -> Option<Self> {
        let rest = label.strip_prefix(Lifecycle::PREFIX)?;
        let (mut alg, mut state, mut since) = (None, None, None);
        for field in rest.split(' ') {
            match field.split_once('=')? {
                ("alg", v) => alg = Algorithm::from_name(v),
                ("state", "pending") => state = Some(KeyState::Pending),
                ("state", "active") => state = Some(KeyState::Active),
                ("state", "retired") => state = Some(KeyState::Retired),
                ("since", v) => since = v.parse().ok(),
                _ => return None,
            }
        }
        Some(Lifecycle {
            alg: alg?,
            state: state?,
            since: since?,
        })
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Timing of the lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How long a pending key is published before it may sign: at least the cache lifetime of
    /// the verifiers' JWKS copies, so that none meets an unknown `kid`.
    pub publish_delay: i64,
    /// How long a retired key stays published: at least the longest token lifetime.
    pub retention: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            publish_delay: 15 * 60,
            retention: 24 * 3600,
        }
    }
}

impl Policy {
    /// The policy as the token's data object stores it.
    pub fn value(&self) -> String {
        format!(
            "publish_delay={} retention={}",
            self.publish_delay, self.retention
        )
    }

    /// Parses a value written by [`Policy::value`]; `None` when malformed or out of range (a
    /// negative delay, a retention under one second).
    pub fn parse(value: &str) -> Option<Self> {
        let (mut publish_delay, mut retention) = (None, None);
        for field in value.split(' ') {
            match field.split_once('=')? {
                ("publish_delay", v) if publish_delay.is_none() => publish_delay = v.parse().ok(),
                ("retention", v) if retention.is_none() => retention = v.parse().ok(),
                _ => return None,
            }
        }
        let policy = Policy {
            publish_delay: publish_delay?,
            retention: retention?,
        };
        (policy.publish_delay >= 0 && policy.retention > 0).then_some(policy)
    }

    /// Whether a key in `life` belongs in the published JWKS at `now`.
    pub fn published(&self, life: &Lifecycle, now: i64) -> bool {
        match life.state {
            KeyState::Pending | KeyState::Active => true,
            KeyState::Retired => now < life.since.saturating_add(self.retention),
        }
    }
}

/// The label changes due at `now`: for each algorithm, the newest pending key that has been
/// published for `publish_delay` becomes active, and the key it replaces is retired, both as of
/// the moment the delay ran out, not `now`: the result does not depend on when it is computed,
/// and applying it (writing it to the token) changes no state that any reader sees.
pub fn plan(keys: &[Lifecycle], policy: &Policy, now: i64) -> Vec<(usize, Lifecycle)> {
    let mut changes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let ripe = key.since.saturating_add(policy.publish_delay);
        if key.state != KeyState::Pending || now < ripe {
            continue;
        }
        // Only the newest ripe pending key of its algorithm is promoted.
        let newer_ripe = keys.iter().any(|k| {
            k.alg == key.alg
                && k.state == KeyState::Pending
                && now >= k.since.saturating_add(policy.publish_delay)
                && k.since > key.since
        });
        if newer_ripe {
            continue;
        }
        for (j, other) in keys.iter().enumerate() {
            if other.alg == key.alg && other.state == KeyState::Active {
                changes.push((
                    j,
                    Lifecycle {
                        state: KeyState::Retired,
                        // Not before it became active (made so after the pending key).
                        since: ripe.max(other.since),
                        ..*other
                    },
                ));
            }
        }
        changes.push((
            i,
            Lifecycle {
                state: KeyState::Active,
                since: ripe,
                ..*key
            },
        ));
    }
    changes
}

/// The keys' lifecycles as they stand at `now`: `keys` with the changes of [`plan`] applied.
pub fn at(keys: &[Lifecycle], policy: &Policy, now: i64) -> Vec<Lifecycle> {
    let mut lives = keys.to_vec();
    for (i, life) in plan(keys, policy, now) {
        lives[i] = life;
    }
    lives
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(alg: Algorithm, state: KeyState, since: i64) -> Lifecycle {
        Lifecycle { alg, state, since }
    }

    #[test]
    fn labels_round_trip() {
        let l = life(Algorithm::PS256, KeyState::Retired, 1_767_225_600);
        assert_eq!(
            l.label(),
            "tessera alg=PS256 state=retired since=1767225600"
        );
        assert_eq!(Lifecycle::parse(&l.label()), Some(l));
        for other in [
            "",
            "my key",
            "tessera alg=none state=active since=1",
            "tessera alg=ES256",
        ] {
            assert_eq!(Lifecycle::parse(other), None, "{other}");
        }
    }

    #[test]
    fn pending_keys_wait_for_the_publish_delay() {
        let policy = Policy {
            publish_delay: 600,
            retention: 3600,
        };
        let keys = [
            life(Algorithm::ES256, KeyState::Active, 0),
            life(Algorithm::ES256, KeyState::Pending, 1000),
            life(Algorithm::RS256, KeyState::Active, 0),
        ];
        assert!(plan(&keys, &policy, 1599).is_empty());
        let changes = plan(&keys, &policy, 1600);
        assert_eq!(
            changes,
            [
                (0, life(Algorithm::ES256, KeyState::Retired, 1600)),
                (1, life(Algorithm::ES256, KeyState::Active, 1600)),
            ]
        );
        assert!(policy.published(&changes[0].1, 1600 + 3599));
        assert!(!policy.published(&changes[0].1, 1600 + 3600));
    }

    #[test]
    fn only_the_newest_ripe_pending_key_is_promoted() {
        let policy = Policy {
            publish_delay: 10,
            retention: 10,
        };
        let keys = [
            life(Algorithm::EdDSA, KeyState::Pending, 0),
            life(Algorithm::EdDSA, KeyState::Pending, 5),
        ];
        assert_eq!(
            plan(&keys, &policy, 100),
            [(1, life(Algorithm::EdDSA, KeyState::Active, 15))]
        );
    }

    #[test]
    fn reading_the_states_later_gives_the_same_transitions() {
        let policy = Policy::default();
        let keys = [
            life(Algorithm::ES256, KeyState::Active, 0),
            life(Algorithm::ES256, KeyState::Pending, 1000),
        ];
        let due = plan(&keys, &policy, 1900);
        // Regression: looked at in 2033, the rotation was dated 2033.
        assert_eq!(plan(&keys, &policy, 2_000_000_000), due);
        assert_eq!(
            at(&keys, &policy, 2_000_000_000),
            [
                life(Algorithm::ES256, KeyState::Retired, 1900),
                life(Algorithm::ES256, KeyState::Active, 1900),
            ]
        );
        assert!(!policy.published(&at(&keys, &policy, 1900 + 86_400)[0], 1900 + 86_400));
        // Applied, the plan has nothing more to do.
        assert!(plan(&at(&keys, &policy, 1900), &policy, 2_000_000_000).is_empty());
    }

    #[test]
    fn policies_round_trip() {
        let policy = Policy {
            publish_delay: 0,
            retention: 3600,
        };
        assert_eq!(policy.value(), "publish_delay=0 retention=3600");
        assert_eq!(Policy::parse(&policy.value()), Some(policy));
        for bad in [
            "",
            "publish_delay=1",
            "publish_delay=-1 retention=5",
            "publish_delay=1 retention=0",
            "publish_delay=1 retention=5 retention=6",
            "publish_delay=1 retention=5 x=1",
            "publish_delay=1  retention=5",
        ] {
            assert_eq!(Policy::parse(bad), None, "{bad}");
        }
    }
}
