//! The in-process engine's verification rate, the baseline for `/v1/verify` over HTTP: N
//! workers with the cache off, fed batches of distinct tokens by several concurrent callers
//! (as concurrent HTTP requests would), for a fixed time. Prints one line:
//! `engine-rate alg=ES256 workers=2 batch=64 tokens_per_s=NNNN`.
//!
//!   engine-rate [--alg ES256] [--workers N] [--batch 64] [--seconds 5] [--callers 8]

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{CacheConfig, Engine, EngineConfig};
use jose::Algorithm;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |name: &str, default: usize| -> usize {
        arg(&args, name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
        })
    };
    let alg_name = arg(&args, "--alg").unwrap_or_else(|| "ES256".into());
    let alg = Algorithm::from_name(&alg_name).expect("--alg: a JWS algorithm");
    let workers = number(
        "--workers",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let batch = number("--batch", 64);
    let seconds = number("--seconds", 5);
    let callers = number("--callers", 8);

    let signer = benches::Signer::generate(alg);
    let now = benches::now();
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..1024)
            .map(|i| {
                let claims =
                    benches::access_token_claims(now).replace("8f14e45f", &format!("{i:08x}"));
                signer.token(&claims)
            })
            .collect(),
    );
    // crypto_mb as the daemon loads it by default, so that /v1/verify is compared with the
    // same engine.
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crypto/lib");
    let multibuffer = multibuffer::MultiBuffer::load(&multibuffer::Source::Auto {
        folder: Some(folder),
    })
    .ok()
    .map(Arc::new);
    eprintln!(
        "engine-rate: multibuffer {}",
        if multibuffer.is_some() {
            "active"
        } else {
            "not used"
        }
    );
    // The cache off: every verification is done.
    let engine: Engine = Engine::start_with(
        EngineConfig {
            workers,
            pin: true,
            queue_per_worker: 4096,
            batch: 64,
            cache: CacheConfig {
                ttl: 0,
                negative_ttl: 0,
                ..CacheConfig::default()
            },
        },
        benches::issuers(signer.key_set()),
        multibuffer,
    );
    let handle = engine.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let verified = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let elapsed = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..callers {
            let (handle, tokens) = (handle.clone(), Arc::clone(&tokens));
            let (verified, measuring, stop) = (
                Arc::clone(&verified),
                Arc::clone(&measuring),
                Arc::clone(&stop),
            );
            tasks.spawn(async move {
                let mut at = caller * batch;
                while !stop.load(Ordering::Relaxed) {
                    let chunk: Vec<&[u8]> = (0..batch)
                        .map(|i| tokens[(at + i) % tokens.len()].as_bytes())
                        .collect();
                    at += batch;
                    let results = handle.verify_batch(&chunk, now).await;
                    assert!(results.iter().all(Result::is_ok), "every token verifies");
                    if measuring.load(Ordering::Relaxed) {
                        verified.fetch_add(results.len() as u64, Ordering::Relaxed);
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
        measuring.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        while tasks.join_next().await.is_some() {}
        elapsed
    });
    let rate = verified.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    println!("engine-rate alg={alg} workers={workers} batch={batch} tokens_per_s={rate:.0}");
}
