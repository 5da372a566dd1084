//! DPoP server nonces (RFC 9449 section 8), stateless: a nonce is a time slot and an HMAC over
//! it and the issuing daemon's identity, under a key drawn at random when the daemon starts.
//! A nonce is good at the daemon that gave it out, for its slot and the next one, and nowhere
//! else: a proof carrying one can only be accepted there, so that daemon's own replay cache
//! decides it exactly. A restart draws a new key, so the proofs of before (whose replay records
//! went with the old process) carry nonces that are no longer good.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// Bytes of the MAC kept in a nonce: 128 bits.
const TAG_BYTES: usize = 16;
/// A nonce's bytes: the slot (8, big-endian) and the tag; 32 characters of base64url.
const NONCE_BYTES: usize = 8 + TAG_BYTES;
/// What the MAC covers before the daemon and the slot: nonces are good for nothing else.
const CONTEXT: &[u8] = b"tessera dpop nonce v1\0";

/// What a presented nonce is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Given out by this daemon in the current slot.
    Current,
    /// Given out by this daemon in the slot before: still good, and the answer should carry
    /// the current nonce so that the client moves on before it lapses.
    Previous,
    /// Not this daemon's, malformed, or older: the client needs a fresh one.
    Refused,
}

/// This daemon's nonces.
pub struct Nonces {
    key: hmac::Key,
    daemon: [u8; 16],
    slot_s: i64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("slot_s", &self.slot_s)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    /// Nonces of a new daemon identity, with slots of `slot_s` seconds (a nonce then lasts
    /// from `slot_s` to twice that), under a fresh random key.
    pub fn generate(slot_s: i64) -> Nonces {
        let rng = SystemRandom::new();
        let mut secret = [0u8; 32];
        let mut daemon = [0u8; 16];
        // aws-lc-rs's system random source fails only when the OS has none: nothing can run then.
        if rng.fill(&mut secret).is_err() || rng.fill(&mut daemon).is_err() {
            panic!("the system random source failed");
        }
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            daemon,
            slot_s: slot_s.max(1),
        }
    }

    fn slot(&self, now: i64) -> i64 {
        now.div_euclid(self.slot_s)
    }

    fn tag(&self, slot: i64) -> [u8; TAG_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(&self.daemon);
        ctx.update(&slot.to_be_bytes());
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&ctx.sign().as_ref()[..TAG_BYTES]);
        tag
    }

    /// The nonce of the slot `now` falls in.
    pub fn issue(&self, now: i64) -> String {
        let slot = self.slot(now);
        let mut bytes = [0u8; NONCE_BYTES];
        bytes[..8].copy_from_slice(&slot.to_be_bytes());
        bytes[8..].copy_from_slice(&self.tag(slot));
        jose::b64::encode(&bytes)
    }

    /// Whether `nonce`, from a proof, is one of this daemon's that is still good at `now`.
    pub fn check(&self, nonce: &str, now: i64) -> Verdict {
        let mut bytes = [0u8; NONCE_BYTES];
        match jose::b64::decode(nonce.as_bytes()) {
            Some(decoded) if decoded.len() == NONCE_BYTES => bytes.copy_from_slice(&decoded),
            _ => return Verdict::Refused,
        }
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&bytes[..8]);
        let slot = i64::from_be_bytes(slot);
        let current = self.slot(now);
        let verdict = if slot == current {
            Verdict::Current
        } else if slot == current - 1 {
            Verdict::Previous
        } else {
            return Verdict::Refused;
        };
        // Constant time: the tag is the secret part.
        let expected = self.tag(slot);
        let differ = expected
            .iter()
            .zip(&bytes[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ == 0 {
            verdict
        } else {
            Verdict::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_nonce_is_good_for_its_slot_and_the_next_at_the_daemon_that_gave_it() {
        let nonces = Nonces::generate(60);
        let slot_start = NOW - NOW.rem_euclid(60);
        let nonce = nonces.issue(slot_start);
        assert_eq!(nonce.len(), 32);
        // Nonce syntax (RFC 9449 section 8.1): NQCHAR, here base64url.
        assert!(nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(nonces.issue(slot_start + 59), nonce, "one per slot");
        assert_eq!(nonces.check(&nonce, slot_start), Verdict::Current);
        assert_eq!(nonces.check(&nonce, slot_start + 59), Verdict::Current);
        assert_eq!(nonces.check(&nonce, slot_start + 60), Verdict::Previous);
        assert_eq!(nonces.check(&nonce, slot_start + 119), Verdict::Previous);
        assert_eq!(nonces.check(&nonce, slot_start + 120), Verdict::Refused);
        // Not before it was given out either.
        assert_eq!(nonces.check(&nonce, slot_start - 1), Verdict::Refused);
        assert_ne!(nonces.issue(slot_start + 60), nonce);
    }

    #[test]
    fn another_daemons_or_a_forged_or_malformed_nonce_is_refused() {
        let (a, b) = (Nonces::generate(60), Nonces::generate(60));
        let nonce = a.issue(NOW);
        assert_eq!(b.check(&nonce, NOW), Verdict::Refused, "another daemon's");
        // Every bit of the tag counts, and the slot is covered by it.
        let bytes = jose::b64::decode(nonce.as_bytes()).expect("base64url");
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 1;
            let forged = jose::b64::encode(&forged);
            assert_ne!(a.check(&forged, NOW), Verdict::Current, "byte {i}");
            assert_ne!(a.check(&forged, NOW + 60), Verdict::Previous, "byte {i}");
        }
        for malformed in [
            "",
            "a",
            &nonce[..31],
            &format!("{nonce}A"),
            "not base64url!",
        ] {
            assert_eq!(a.check(malformed, NOW), Verdict::Refused, "{malformed:?}");
        }
    }
}
