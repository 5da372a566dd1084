//! Remote key sets against a local HTTP server that counts fetches, serves errors, rotates keys
//! and stalls.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{RemoteConfig, RemoteError, RemoteKeySet};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the server answers, changeable while it runs.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    cache_control: Option<String>,
    delay: Duration,
}

struct Server {
    url: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

fn jwks(kids: &[&str]) -> String {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| {
            format!(r#"{{"kty":"oct","alg":"HS256","kid":"{kid}","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}}"#)
        })
        .collect();
    format!("{{\"keys\":[{}]}}", keys.join(","))
}

async fn serve(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let answer = Arc::new(Mutex::new(answer));
    let hits = Arc::new(AtomicUsize::new(0));
    let (a, h) = (Arc::clone(&answer), Arc::clone(&hits));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (a, h) = (Arc::clone(&a), Arc::clone(&h));
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (a, h) = (Arc::clone(&a), Arc::clone(&h));
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let answer = a.lock().expect("answer").clone();
                        tokio::time::sleep(answer.delay).await;
                        let mut response = Response::builder().status(answer.status);
                        if let Some(cc) = &answer.cache_control {
                            response = response.header("cache-control", cc);
                        }
                        Ok::<_, Infallible>(
                            response
                                .body(Full::new(Bytes::from(answer.body)))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { url, answer, hits }
}

fn ok(kids: &[&str]) -> Answer {
    Answer {
        status: 200,
        body: jwks(kids),
        cache_control: None,
        delay: Duration::ZERO,
    }
}

fn config(url: &str) -> RemoteConfig {
    let mut c = RemoteConfig::new(url);
    c.cooldown = Duration::from_millis(300);
    c.timeout = Duration::from_millis(500);
    c.min_max_age = Duration::ZERO;
    c
}

fn kids(set: &RemoteKeySet) -> Vec<String> {
    set.keys()
        .iter()
        .filter_map(|k| k.kid().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_floods_cost_one_fetch_per_cooldown() {
    let server = serve(ok(&["k1"])).await;
    let set = Arc::new(
        RemoteKeySet::new(config(&server.url))
            .await
            .expect("first fetch"),
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    assert_eq!(kids(&set), ["k1"]);

    // The issuer rotates; a flood of tokens with the new kid arrives at once.
    *server.answer.lock().unwrap() = ok(&["k1", "k2"]);
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let set = Arc::clone(&set);
            tokio::spawn(async move { set.unknown_kid().await })
        })
        .collect();
    for task in flood {
        task.await.expect("task");
    }
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "the flood shares one fetch"
    );
    assert_eq!(kids(&set), ["k1", "k2"]);
    // Within the cool-down, more unknown kids fetch nothing.
    assert!(!set.unknown_kid().await);
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // After it, one more fetch.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(set.unknown_kid().await);
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refreshes_keep_the_stale_keys() {
    let mut answer = ok(&["k1"]);
    answer.cache_control = Some("max-age=0".into());
    let server = serve(answer).await;
    let set = RemoteKeySet::new(config(&server.url))
        .await
        .expect("first fetch");
    assert!(set.is_stale(), "max-age=0 makes it stale at once");
    for (status, body) in [
        (500, jwks(&["k9"])),
        (200, "{not json".to_string()),
        (404, String::new()),
    ] {
        *server.answer.lock().unwrap() = Answer {
            status,
            body,
            cache_control: None,
            delay: Duration::ZERO,
        };
        assert!(set.refresh().await.is_err());
        assert_eq!(kids(&set), ["k1"], "stale keys stay after a failed refresh");
    }
    assert_eq!((set.fetches(), set.failures()), (4, 3));
    // A good answer with a max-age makes it fresh again; refresh then fetches nothing.
    let mut good = ok(&["k2"]);
    good.cache_control = Some("public, max-age=3600".into());
    *server.answer.lock().unwrap() = good;
    set.refresh().await.expect("refresh");
    assert_eq!(kids(&set), ["k2"]);
    let hits = server.hits.load(Ordering::SeqCst);
    set.refresh().await.expect("fresh: nothing to do");
    assert_eq!(server.hits.load(Ordering::SeqCst), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_bounded_in_size_and_time() {
    let mut big = ok(&["k1"]);
    big.body = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    let server = serve(big).await;
    assert_eq!(
        RemoteKeySet::new(config(&server.url)).await.err(),
        Some(RemoteError::TooLarge)
    );

    let mut slow = ok(&["k1"]);
    slow.delay = Duration::from_secs(5);
    let server = serve(slow).await;
    let start = Instant::now();
    let err = RemoteKeySet::new(config(&server.url)).await.err();
    assert!(matches!(err, Some(RemoteError::Fetch(_))), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // Plain HTTP to a non-loopback host is refused before any connection.
    let err = RemoteKeySet::new(RemoteConfig::new("http://192.0.2.1/jwks.json"))
        .await
        .err();
    assert!(matches!(err, Some(RemoteError::Url(_))), "{err:?}");
}

/// The secret of every key `jwks` serves (`k` above, decoded).
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn hs256(kid: &str, iss: &str) -> String {
    hs256_with(SECRET, Some(kid), iss)
}

/// An issuer bound to no audience and no algorithm list.
fn spec(iss: &str) -> engine::IssuerSpec {
    engine::IssuerSpec {
        issuer: iss.into(),
        ..engine::IssuerSpec::default()
    }
}

/// An engine with one unpinned worker.
fn one_worker(issuers: &Arc<engine::Issuers>) -> engine::Engine {
    let config = engine::EngineConfig {
        workers: 1,
        pin: false,
        ..engine::EngineConfig::default()
    };
    engine::Engine::start(config, Arc::clone(issuers))
}

/// Through the engine: an issuer whose keys come from a jwks_uri rotates; a token with the new
/// kid triggers one refetch and verifies; a key that leaves the set takes its cached tokens
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_follow_their_remote_key_sets() {
    use engine::{EngineError, Issuers, KeySource};
    let server = serve(ok(&["k1"])).await;
    let remote = Arc::new(RemoteKeySet::new(config(&server.url)).await.expect("fetch"));
    let iss = "https://issuer.example";
    let issuers = Arc::new(
        Issuers::new(vec![(spec(iss), KeySource::Remote(Arc::clone(&remote)))]).expect("issuers"),
    );
    let engine = one_worker(&issuers);
    let handle = engine.handle();
    let now = 1_800_000_000;
    let old = hs256("k1", iss);
    handle
        .verify(old.as_bytes(), now)
        .await
        .expect("k1 verifies");
    assert_eq!(handle.cache().stats().entries, 1);

    // Unknown kid before the rotation is published: one fetch, still unknown.
    let new = hs256("k2", iss);
    let r = handle.verify(new.as_bytes(), now).await;
    assert_eq!(r.err(), Some(EngineError::Invalid("unknown_key")));
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    // The issuer rotates: k2 added, k1 removed. After the cool-down the next unknown kid fetches.
    *server.answer.lock().unwrap() = ok(&["k2"]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    handle
        .verify(new.as_bytes(), now)
        .await
        .expect("k2 verifies after refetch");
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    // k1 left the set: its cached token is gone, and it no longer verifies.
    let r = handle.verify(old.as_bytes(), now).await;
    assert_eq!(r.err(), Some(EngineError::Invalid("unknown_key")));
    assert_eq!(
        handle.cache().stats().entries,
        1,
        "only k2's token is cached"
    );
}

/// Regression: a remote issuer that started publishing a `kid` another issuer uses had its
/// refreshed sets refused at every sync (and a restart failed). Now each issuer's set is applied
/// on its own and the `kid` is looked up within the issuer a token claims: both issuers' tokens
/// verify with their own keys, and neither key verifies the other's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_kid_another_issuer_uses_is_applied_and_kept_apart() {
    use engine::{EngineError, Issuers, KeySource};
    let (secret_a, secret_b) = (b"A".repeat(32), b"B".repeat(32));
    let server = serve(ok(&["k1"])).await;
    let remote = Arc::new(RemoteKeySet::new(config(&server.url)).await.expect("fetch"));
    let (a_iss, b_iss) = ("https://a.example", "https://b.example");
    let issuers = Arc::new(
        Issuers::new(vec![
            (
                spec(a_iss),
                KeySource::Jwks(oct_jwks("kA", &secret_a).into_bytes()),
            ),
            (spec(b_iss), KeySource::Remote(Arc::clone(&remote))),
        ])
        .expect("issuers"),
    );
    let engine = one_worker(&issuers);
    let handle = engine.handle();
    let now = 1_800_000_000;
    // B rotates to a key it calls kA; the first B token naming kA refetches B's set.
    server.answer.lock().unwrap().body = oct_jwks("kA", &secret_b);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let verdict = |secret: &[u8], iss: &str| {
        let token = hs256_with(secret, Some("kA"), iss);
        let handle = handle.clone();
        async move { handle.verify(token.as_bytes(), now).await.map(|_| ()) }
    };
    assert_eq!(
        verdict(&secret_b, b_iss).await,
        Ok(()),
        "B's new key is applied"
    );
    assert_eq!(kids(&remote), ["kA"]);
    assert_eq!(verdict(&secret_a, a_iss).await, Ok(()), "A keeps its kA");
    assert_eq!(
        verdict(&secret_a, b_iss).await,
        Err(EngineError::Invalid("bad_signature"))
    );
    assert_eq!(
        verdict(&secret_b, a_iss).await,
        Err(EngineError::Invalid("bad_signature"))
    );
    // A token naming an unknown kid of A does not make B refetch.
    let hits = server.hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let stranger = hs256_with(&secret_a, Some("nope"), a_iss);
    let r = handle.verify(stranger.as_bytes(), now).await;
    assert_eq!(r.err(), Some(EngineError::Invalid("unknown_key")));
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        hits,
        "B was not fetched"
    );
}

/// Regression: one key tessera cannot use (RSA under 2048 bits, private members, a `kid` twice,
/// an entry that is not an object) made the whole refreshed document refused, and the old keys
/// stayed trusted. Now the document is applied without those keys, which are listed with their
/// reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_unusable_published_keys_are_left_out_not_the_set() {
    let weak_rsa = format!(
        r#"{{"kty":"RSA","alg":"RS256","kid":"weak","n":"{}","e":"AQAB"}}"#,
        jose::b64::encode(&[0xc5; 128])
    );
    let private_ec = r#"{"kty":"EC","crv":"P-256","kid":"private","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cLNjCBpHo8bSs-mQsg6Pt4"}"#;
    let good = r#"{"kty":"oct","alg":"HS256","kid":"good","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}"#;
    let twin = r#"{"kty":"oct","alg":"HS256","kid":"twin","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}"#;
    let body = format!(
        r#"{{"keys":[{weak_rsa},{private_ec},{good},{twin},{twin},{{"kty":"XYZ","kid":"odd"}},7]}}"#
    );
    let server = serve(Answer { body, ..ok(&[]) }).await;
    let set = RemoteKeySet::new(config(&server.url))
        .await
        .expect("a document with unusable keys is still a key set");
    assert_eq!(kids(&set), ["good"]);
    let skipped: Vec<(usize, String)> = set
        .skipped()
        .iter()
        .map(|s| (s.index, s.reason.to_string()))
        .collect();
    let indexes: Vec<usize> = skipped.iter().map(|s| s.0).collect();
    assert_eq!(indexes, [0, 1, 3, 4, 5, 6], "{skipped:?}");
    assert!(skipped[0].1.contains("weak"), "{skipped:?}");
    assert!(skipped[1].1.contains("private"), "{skipped:?}");
    assert!(skipped[2].1.contains("same kid"), "{skipped:?}");
    assert!(skipped[4].1.contains("XYZ"), "{skipped:?}");
    // A broken document is still refused as a whole, and the keys in force stay.
    server.answer.lock().unwrap().body = "{\"keys\":[".into();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(set.unknown_kid().await);
    assert_eq!(kids(&set), ["good"]);
}

/// Keys kept while refreshes fail are dropped once refreshes have failed for longer than
/// `max_stale` (fail closed): the issuer's tokens, cached verdicts included, are refused until
/// a fetch succeeds, and then verify again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_expire_after_max_stale() {
    use engine::{EngineError, Issuers, KeySource};
    let mut answer = ok(&["k1"]);
    answer.cache_control = Some("max-age=0".into());
    let server = serve(answer).await;
    let mut cfg = config(&server.url);
    cfg.max_stale = Duration::from_millis(400);
    let remote = Arc::new(RemoteKeySet::new(cfg).await.expect("fetch"));
    let iss = "https://issuer.example";
    let issuers = Arc::new(
        Issuers::new(vec![(spec(iss), KeySource::Remote(Arc::clone(&remote)))]).expect("issuers"),
    );
    let engine = one_worker(&issuers);
    let handle = engine.handle();
    let now = 1_800_000_000;
    let token = hs256("k1", iss);
    let verdict = || async { handle.verify(token.as_bytes(), now).await.map(|_| ()) };
    assert_eq!(verdict().await, Ok(()));
    assert_eq!(issuers.states().next().map(|s| s.status()), Some("keys"));

    server.answer.lock().unwrap().status = 503;
    handle.refresh().await;
    assert!(remote.failing_for().is_some());
    assert_eq!(kids(&remote), ["k1"], "stale keys are kept for a while");
    assert_eq!(verdict().await, Ok(()));
    assert_eq!(issuers.states().next().map(|s| s.status()), Some("stale"));

    tokio::time::sleep(Duration::from_millis(450)).await;
    let applied = handle.refresh().await;
    assert_eq!(applied.len(), 1, "the empty set is applied");
    assert_eq!(remote.expirations(), 1);
    assert!(remote.keys().is_empty());
    assert_eq!(issuers.states().next().map(|s| s.status()), Some("no_keys"));
    assert_eq!(
        verdict().await,
        Err(EngineError::Invalid("unknown_key")),
        "the cached verdict went with the keys"
    );

    server.answer.lock().unwrap().status = 200;
    handle.refresh().await;
    assert_eq!(kids(&remote), ["k1"]);
    assert!(remote.failing_for().is_none());
    assert_eq!(verdict().await, Ok(()), "a good fetch brings the keys back");
}

/// In the background, with no request asking: a remote set is refetched when its
/// `Cache-Control` age runs out, and a local set's replacement reaches verification; the
/// cached tokens of keys that left die with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_sets_are_kept_fresh_in_the_background() {
    use engine::{EngineError, Issuers, KeySource, LocalKeySet};
    let mut answer = ok(&["r1"]);
    answer.cache_control = Some("max-age=1".into());
    let server = serve(answer).await;
    let remote = Arc::new(RemoteKeySet::new(config(&server.url)).await.expect("fetch"));
    let local_keys = |kid: &str| {
        jose::KeySet::from_jwks(jwks(&[kid]).as_bytes())
            .expect("jwks")
            .keys
    };
    let local = Arc::new(LocalKeySet::new(local_keys("l1")));
    let (r_iss, l_iss) = ("https://remote.example", "https://local.example");
    let issuers = Arc::new(
        Issuers::new(vec![
            (spec(r_iss), KeySource::Remote(Arc::clone(&remote))),
            (spec(l_iss), KeySource::Local(Arc::clone(&local))),
        ])
        .expect("issuers"),
    );
    let engine = one_worker(&issuers);
    let handle = engine.handle();
    let now = 1_800_000_000;
    let verify = |token: String| {
        let handle = handle.clone();
        async move { handle.verify(token.as_bytes(), now).await.map(|_| ()) }
    };
    verify(hs256("r1", r_iss)).await.expect("r1");
    verify(hs256("l1", l_iss)).await.expect("l1");
    assert_eq!(handle.cache().stats().entries, 2);

    let refresher = handle.keep_fresh(Duration::from_millis(50), ());
    *server.answer.lock().unwrap() = ok(&["r2"]);
    local.set(local_keys("l2"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while remote.fetches() < 2 || handle.cache().stats().entries > 0 {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    assert_eq!(kids(&remote), ["r2"]);
    // Nothing asked for r2 or l2, yet both verify without a fetch; r1 and l1 are gone.
    let hits = server.hits.load(Ordering::SeqCst);
    verify(hs256("r2", r_iss)).await.expect("r2");
    verify(hs256("l2", l_iss)).await.expect("l2");
    assert_eq!(server.hits.load(Ordering::SeqCst), hits);
    assert_eq!(
        verify(hs256("l1", l_iss)).await,
        Err(EngineError::Invalid("unknown_key"))
    );
}

fn hs256_with(secret: &[u8], kid: Option<&str>, iss: &str) -> String {
    let key = jose::SigningKey::hmac(jose::Algorithm::HS256, secret).expect("HMAC key");
    let header = jose::jws::header_json(jose::Algorithm::HS256, kid, None);
    let claims = format!(r#"{{"iss":"{iss}","exp":4000000000}}"#);
    key.token(&header, &claims).expect("sign")
}

fn oct_jwks(kid: &str, secret: &[u8]) -> String {
    format!(
        r#"{{"keys":[{{"kty":"oct","alg":"HS256","kid":"{kid}","k":"{}"}}]}}"#,
        jose::b64::encode(secret)
    )
}

/// Regression: cached verdicts outlived the key that reached them when the key was replaced
/// under the same kid, or when the token carried no kid at all (eviction went by kid name).
/// Now every entry of an issuer whose keys change is evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_key_takes_every_verdict_of_its_issuer_with_it() {
    use engine::{EngineError, Issuers, KeySource};
    let (old, new) = (
        b"old-secret-0123456789abcdef01234",
        b"new-secret-0123456789abcdef01234",
    );
    let mut answer = ok(&[]);
    answer.body = oct_jwks("k1", old);
    let server = serve(answer).await;
    let remote = Arc::new(RemoteKeySet::new(config(&server.url)).await.expect("fetch"));
    let iss = "https://issuer.example";
    let issuers = Arc::new(
        Issuers::new(vec![(spec(iss), KeySource::Remote(Arc::clone(&remote)))]).expect("issuers"),
    );
    let engine = one_worker(&issuers);
    let handle = engine.handle();
    let now = 1_800_000_000;
    let with_kid = hs256_with(old, Some("k1"), iss);
    let without_kid = hs256_with(old, None, iss);
    for token in [&with_kid, &without_kid] {
        handle
            .verify(token.as_bytes(), now)
            .await
            .expect("verifies with the old key");
    }
    assert_eq!(handle.cache().stats().entries, 2);

    // The issuer replaces k1's material; an unknown kid after the cool-down refetches.
    server.answer.lock().unwrap().body = oct_jwks("k1", new);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe = hs256_with(new, Some("unknown"), iss);
    let _ = handle.verify(probe.as_bytes(), now).await;
    for token in [&with_kid, &without_kid] {
        assert_eq!(
            handle.verify(token.as_bytes(), now).await.err(),
            Some(EngineError::Invalid("bad_signature")),
            "a verdict of the replaced key survived"
        );
    }
    handle
        .verify(hs256_with(new, Some("k1"), iss).as_bytes(), now)
        .await
        .expect("the new key verifies");
}
