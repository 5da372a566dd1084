//! Properties over hostile input: arbitrary bytes never panic, any change to a valid token is
//! refused, and JSON-shaped garbage in the header never panics (and is never accepted where a
//! standard JSON parser would disagree about what it says).

mod common;

use std::sync::OnceLock;

use common::*;
use jose::{b64, jws, jwt, Algorithm, KeySet, Limits, Validation, VerifyingKey};
use proptest::prelude::*;
use proptest::sample::{select, Index};

struct Fixture {
    es: Signer,
    hs: Signer,
    keys: KeySet,
    /// A valid ES256 token and a valid HS256 token.
    tokens: [String; 2],
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let es = Signer::es256();
        let hs = Signer::hs256();
        let keys = key_set_of(&[(&es, "es"), (&hs, "hs")]);
        let payload = claims(r#""iss":"https://issuer.example","aud":"api""#);
        let tokens = [es.jwt(Some("es"), &payload), hs.jwt(Some("hs"), &payload)];
        Fixture {
            es,
            hs,
            keys,
            tokens,
        }
    })
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(256);
    // Never write regression files into the source tree.
    config.failure_persistence = None;
    config
}

/// Runs both verifiers; they may refuse, but must not panic, and must agree on signature-level
/// refusals.
fn verify_both(token: &[u8]) -> (bool, bool) {
    let keys = &fixture().keys;
    let as_jws = jws::verify(token, keys, &Limits::default());
    let as_jwt = jwt::verify(token, keys, &Validation::default(), NOW);
    // Reporting a refusal must not panic either.
    for err in [as_jws.as_ref().err(), as_jwt.as_ref().err()]
        .into_iter()
        .flatten()
    {
        assert!(!err.code().is_empty() && !err.to_string().is_empty());
    }
    // jwt::verify adds header policy (cty) and claims checks; it is never more lenient.
    if as_jws.is_err() {
        assert!(as_jwt.is_err(), "jwt accepted what jws refused");
    }
    (as_jws.is_ok(), as_jwt.is_ok())
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Delete(Index),
    Insert(Index, u8),
    Duplicate(Index),
    Replace(Index, u8),
    SwapSegments(usize, usize),
}

const TOKEN_BYTES: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n";

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![select(TOKEN_BYTES), any::<u8>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Duplicate),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
    ]
}

fn apply(token: &mut Vec<u8>, m: &Mutation) {
    if token.is_empty() {
        if let Mutation::Insert(_, b) = m {
            token.push(*b);
        }
        return;
    }
    match m {
        Mutation::Flip(i, bit) => {
            let i = i.index(token.len());
            token[i] ^= 1 << bit;
        }
        Mutation::Delete(i) => {
            token.remove(i.index(token.len()));
        }
        Mutation::Insert(i, b) => token.insert(i.index(token.len() + 1), *b),
        Mutation::Duplicate(i) => {
            let i = i.index(token.len());
            token.insert(i, token[i]);
        }
        Mutation::Replace(i, b) => {
            let i = i.index(token.len());
            token[i] = *b;
        }
        Mutation::SwapSegments(a, b) => {
            let mut segments: Vec<Vec<u8>> =
                token.split(|&c| c == b'.').map(<[u8]>::to_vec).collect();
            if *a < segments.len() && *b < segments.len() {
                segments.swap(*a, *b);
                *token = segments.join(&b'.');
            }
        }
    }
}

/// Characters that make JSON-shaped headers.
const JSONISH: &[char] = &[
    '{', '}', '[', ']', '"', ':', ',', '\\', ' ', 'u', '0', 'a', 'e', 'l', 't', 'k', 'i', 'd', 'n',
    'o', 'H', 'S', '2', '5', '6', 'E',
];

fn jsonish(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(select(JSONISH), 0..max).prop_map(|cs| cs.into_iter().collect())
}

/// JSON-ish string contents: no bare quotes; whole escapes as well as single characters, and
/// now and then a broken one, so that both escape decoding and its refusals are exercised.
fn stringish(max: usize) -> impl Strategy<Value = String> {
    let mut good: Vec<String> = JSONISH
        .iter()
        .filter(|&&c| c != '"' && c != '\\')
        .map(|c| c.to_string())
        .collect();
    for escape in [
        r"\u0061",
        r"\u006c",
        r"\u0067",
        r"\u0000",
        r"\n",
        r"\/",
        r#"\""#,
        r"\\",
        r"\ud83d\ude00",
        r"\u00e9",
        "é",
        "\u{1F600}",
    ] {
        good.push(escape.to_string());
    }
    let bad: Vec<String> = [r"\", r"\ud800", r"\udc00", r"\u00", r"\x", "\u{1}"]
        .map(String::from)
        .to_vec();
    let unit = prop_oneof![20 => select(good), 1 => select(bad)];
    prop::collection::vec(unit, 0..max).prop_map(|us| us.concat())
}

/// A header text: pure JSON-ish noise, or noise inside a plausible header.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        jsonish(200),
        jsonish(120).prop_map(|s| format!(r#"{{"alg":"HS256",{s}}}"#)),
        jsonish(120).prop_map(|s| format!(r#"{{"alg":"HS256","kid":"hs"{s}}}"#)),
        jsonish(120).prop_map(|s| format!(r#"{{"alg":"ES256","kid":{s}}}"#)),
        jsonish(120).prop_map(|s| format!(r#"{{"alg":"HS256","crit":[{s}]}}"#)),
        jsonish(120).prop_map(|s| format!(r#"{{{s}"alg":"HS256"}}"#)),
        // Noise confined to a member name and a string value: often well-formed, so the
        // accepting path (escape decoding, duplicate names) is exercised too.
        (stringish(40), stringish(40))
            .prop_map(|(n, v)| { format!(r#"{{"alg":"HS256","kid":"hs","{n}":"{v}"}}"#) }),
        (stringish(40), stringish(40))
            .prop_map(|(n, v)| { format!(r#"{{"{n}":"{v}","alg":"HS256","kid":"hs"}}"#) }),
    ]
}

/// If jose accepted a header, a standard JSON parser must read it as an object whose `alg` is
/// the algorithm jose reports.
fn agrees_with_serde(header: &str, alg: Algorithm) {
    let value: serde_json::Value = serde_json::from_str(header)
        .unwrap_or_else(|e| panic!("jose accepted a header serde_json refuses: {header:?}: {e}"));
    assert_eq!(
        value.get("alg").and_then(|a| a.as_str()),
        Some(alg.name()),
        "{header:?}"
    );
}

#[test]
fn fixture_tokens_verify() {
    let f = fixture();
    for token in &f.tokens {
        assert_eq!(verify_both(token.as_bytes()), (true, true), "{token}");
    }
    assert_eq!(f.es.alg(), Algorithm::ES256);
    assert_eq!(f.hs.alg(), Algorithm::HS256);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let (jws_ok, jwt_ok) = verify_both(&bytes);
        prop_assert!(!jws_ok && !jwt_ok);
    }

    #[test]
    fn random_token_alphabet_never_panics(
        bytes in prop::collection::vec(select(TOKEN_BYTES), 0..2000)
    ) {
        let (jws_ok, jwt_ok) = verify_both(&bytes);
        prop_assert!(!jws_ok && !jwt_ok);
    }

    #[test]
    fn random_segments_never_panic(
        header in prop::collection::vec(any::<u8>(), 0..300),
        payload in prop::collection::vec(any::<u8>(), 0..300),
        signature in prop::collection::vec(any::<u8>(), 0..140),
    ) {
        let token = format!(
            "{}.{}.{}",
            b64::encode(&header),
            b64::encode(&payload),
            b64::encode(&signature)
        );
        let (jws_ok, jwt_ok) = verify_both(token.as_bytes());
        prop_assert!(!jws_ok && !jwt_ok);
    }

    #[test]
    fn mutated_tokens_are_refused(
        which in 0usize..2,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let original = &fixture().tokens[which];
        let mut token = original.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut token, m);
        }
        let (jws_ok, jwt_ok) = verify_both(&token);
        if token == original.as_bytes() {
            prop_assert!(jws_ok && jwt_ok);
        } else {
            prop_assert!(
                !jws_ok && !jwt_ok,
                "mutated token verified: {:?}",
                String::from_utf8_lossy(&token)
            );
        }
    }

    #[test]
    fn jsonish_headers_never_panic(header in header_text(), signed in prop::bool::weighted(0.75)) {
        let f = fixture();
        let payload = claims("");
        let token = if signed {
            // Signed with the HS256 key, so that only the header can be at fault.
            f.hs.token(&header, &payload)
        } else {
            let stolen = f.tokens[1].rsplit('.').next().unwrap_or_default().to_owned();
            format!("{}.{}.{stolen}", b64::encode(header.as_bytes()), b64::encode(payload.as_bytes()))
        };
        let keys = &f.keys;
        if let Ok(jws) = jws::verify(&token, keys, &Limits::default()) {
            agrees_with_serde(jws.header_json(), jws.alg());
        }
        if let Ok(jwt) = jwt::verify(&token, keys, &Validation::default(), NOW) {
            agrees_with_serde(jwt.header_json(), jwt.alg());
        }
    }

    #[test]
    fn jsonish_key_sets_never_panic(
        noise in jsonish(200),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let f = fixture();
        let _ = KeySet::from_jwks(noise.as_bytes());
        let _ = KeySet::from_jwks(&bytes);
        let _ = VerifyingKey::from_jwk(noise.as_bytes());
        let _ = VerifyingKey::from_jwk(&bytes);
        // Noise spliced into a real key.
        let jwk = f.es.jwk(Some("es"));
        let spliced = format!("{},{noise}}}", &jwk[..jwk.len() - 1]);
        let _ = VerifyingKey::from_jwk(spliced.as_bytes());
        let _ = KeySet::from_jwks(format!(r#"{{"keys":[{spliced}]}}"#).as_bytes());
    }
}
