//! The daemon's service in this process, and a lean HTTP/1.1 load generator to measure it (on
//! the load harness's client, `loadtest::http1`).
//!
//! The service runs as `tessera serve` runs it (`server::App::start`, then `server::run` on
//! the runtime's main thread), with one runtime worker and one engine worker, every thread of
//! it pinned to one core when there are several: its CPU time is read per thread, so the load
//! generator's own CPU (on the other cores) is never counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use core_affinity::CoreId;
use loadtest::http1::{Answer, Connection, ExchangeError};

use crate::cpu::Clock;
use crate::stats::median;

/// Why the service could not be started or measured.
#[non_exhaustive]
#[derive(Debug)]
pub enum LoadError {
    /// This process could not start a thread or a runtime (`what`): the machine's limits.
    Spawn {
        what: &'static str,
        error: std::io::Error,
    },
    /// No loopback port to listen on: the machine's.
    Bind(std::io::Error),
    /// The listener has no address: the machine's.
    Address(std::io::Error),
    /// The service refused its configuration or could not open what it serves.
    Start(server::StartError),
    /// The service's thread ended before it listened: a bug (a panic) in the service.
    Ended,
    /// Nothing to send: a bug in the caller.
    NoRequests,
    /// The service answered nothing while measured: overloaded or stuck.
    Unanswered,
    /// The service's port refused the connection.
    Connect {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// An exchange failed: the connection broke, or the answer was not HTTP/1.1 as the
    /// harness's client reads it (the service's fault), or it took over 10 s.
    Exchange(loadtest::http1::ExchangeError),
    /// No answer within 10 s.
    Timeout,
    /// The service answered with another status than 200.
    Status(u16),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Spawn { what, error } => write!(f, "{what}: {error}"),
            LoadError::Bind(e) => write!(f, "binding 127.0.0.1:0: {e}"),
            LoadError::Address(e) => write!(f, "{e}"),
            LoadError::Start(e) => write!(f, "{e}"),
            LoadError::Ended => f.write_str("the server thread ended before it listened"),
            LoadError::NoRequests => f.write_str("no requests to send"),
            LoadError::Unanswered => f.write_str("no request was answered in the measured window"),
            LoadError::Connect { addr, error } => write!(f, "connecting to {addr}: {error}"),
            LoadError::Exchange(e) => write!(f, "{e}"),
            LoadError::Timeout => f.write_str("no answer within 10 s"),
            LoadError::Status(status) => write!(f, "the server answered {status}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Names of the service's threads (runtime and blocking pool) and of the engine's workers.
pub const SERVER_THREADS: [&str; 2] = ["tcal-server", engine::EngineConfig::THREAD_PREFIX];

/// The service, running on its own thread until dropped.
pub struct Server {
    addr: SocketAddr,
    engine: server::Verifier,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the service for `config` on 127.0.0.1, an ephemeral port, pinned to `core`.
    pub fn start(config: server::Config, core: Option<CoreId>) -> Result<Server, LoadError> {
        type Ready = Result<(SocketAddr, server::Verifier), LoadError>;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(SERVER_THREADS[0].into())
            .spawn(move || {
                // Threads inherit their creator's affinity: the runtime's and the engine's too.
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .thread_name(SERVER_THREADS[0])
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(LoadError::Spawn {
                            what: "starting the runtime",
                            error: e,
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(LoadError::Bind(e)));
                            return;
                        }
                    };
                    let addr = match listener.local_addr() {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = ready_tx.send(Err(LoadError::Address(e)));
                            return;
                        }
                    };
                    let app = match server::App::start(&config, format!("http://{addr}")).await {
                        Ok(app) => app,
                        Err(e) => {
                            let _ = ready_tx.send(Err(LoadError::Start(e)));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((addr, app.engine.clone())));
                    server::run(listener, app, async {
                        let _ = stop_rx.await;
                    })
                    .await;
                });
            })
            .map_err(|error| LoadError::Spawn {
                what: "starting the server thread",
                error,
            })?;
        let (addr, engine) = ready_rx.recv().map_err(|_| LoadError::Ended)??;
        Ok(Server {
            addr,
            engine,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine's batches so far, the jobs they held, and the jobs verified in vectorised
    /// calls.
    pub fn batching(&self) -> (u64, u64, u64) {
        let s = self.engine.stats();
        let lanes = s.lanes.iter().map(|(_, _, lanes)| lanes).sum();
        (s.batches, s.batched_jobs, lanes)
    }

    /// Verified-token cache hits and verdicts so far.
    pub fn verdicts(&self) -> (u64, u64) {
        let s = self.engine.stats();
        (s.cache_hits, s.valid + s.invalid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one measurement saw. The window is cut into short intervals and each figure is the
/// median over them, so that a burst of other work on the machine moves it less.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The service's CPU microseconds per request answered.
    pub us_per_request: f64,
    /// The service's CPU time over elapsed time: 1.0 is one core kept busy.
    pub busy: f64,
}

/// Intervals per measured window, and the shortest interval.
const INTERVALS: u32 = 10;
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How to load the service.
#[derive(Clone, Debug)]
pub struct Load {
    pub connections: usize,
    /// Pin one client thread to each of these cores (one unpinned thread if empty).
    pub client_cores: Vec<CoreId>,
    pub clock: Clock,
}

struct Shared {
    requests: Vec<Box<[u8]>>,
    next: AtomicUsize,
    done: AtomicU64,
    stop: AtomicBool,
    failure: Mutex<Option<LoadError>>,
}

impl Shared {
    fn fail(&self, why: LoadError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(why);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The first failure, taken: whoever sees it first reports it.
    fn failure(&self) -> Option<LoadError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Load {
    /// Sends `requests` in turn (one sequence shared by every connection), keep-alive, each
    /// connection with one request in flight, for `warmup` then `window`; every answer must be
    /// 200. Returns what the window saw.
    pub fn run(
        &self,
        addr: SocketAddr,
        requests: Vec<Box<[u8]>>,
        warmup: Duration,
        window: Duration,
    ) -> Result<Sample, LoadError> {
        if requests.is_empty() {
            return Err(LoadError::NoRequests);
        }
        let shared = Arc::new(Shared {
            requests,
            next: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
        });
        let cores: Vec<Option<CoreId>> = if self.client_cores.is_empty() {
            vec![None]
        } else {
            self.client_cores.iter().copied().map(Some).collect()
        };
        let threads = cores.len().min(self.connections.max(1));
        let mut handles = Vec::with_capacity(threads);
        for (t, core) in cores.into_iter().take(threads).enumerate() {
            let shared = Arc::clone(&shared);
            let connections =
                self.connections / threads + usize::from(t < self.connections % threads);
            let handle = std::thread::Builder::new()
                .name(format!("tcal-client-{t}"))
                .spawn(move || client_thread(addr, core, connections, &shared))
                .map_err(|error| LoadError::Spawn {
                    what: "starting a client thread",
                    error,
                })?;
            handles.push(handle);
        }
        let result = self.measure(&shared, warmup, window);
        shared.stop.store(true, Ordering::SeqCst);
        for handle in handles {
            let _ = handle.join();
        }
        if let Some(why) = shared.failure() {
            return Err(why);
        }
        result
    }

    fn measure(
        &self,
        shared: &Shared,
        warmup: Duration,
        window: Duration,
    ) -> Result<Sample, LoadError> {
        std::thread::sleep(warmup);
        if let Some(why) = shared.failure() {
            return Err(why);
        }
        let intervals =
            INTERVALS.min((window.as_millis() / MIN_INTERVAL.as_millis()).max(1) as u32);
        let step = window / intervals;
        let point = || {
            (
                self.clock.threads(&SERVER_THREADS),
                shared.done.load(Ordering::SeqCst),
                Instant::now(),
            )
        };
        let mut last = point();
        let (mut costs, mut busy, mut requests) = (Vec::new(), Vec::new(), 0);
        for _ in 0..intervals {
            std::thread::sleep(step);
            let next = point();
            let ns = next.0.since(&last.0) as f64;
            let n = next.1 - last.1;
            let wall = next.2.duration_since(last.2).as_secs_f64();
            if n > 0 {
                costs.push(ns / 1e3 / n as f64);
                busy.push(ns / 1e9 / wall.max(1e-9));
            }
            requests += n;
            last = next;
        }
        if requests == 0 {
            return Err(LoadError::Unanswered);
        }
        Ok(Sample {
            us_per_request: median(&costs).unwrap_or(f64::NAN),
            busy: median(&busy).unwrap_or(f64::NAN),
        })
    }
}

fn client_thread(addr: SocketAddr, core: Option<CoreId>, connections: usize, shared: &Arc<Shared>) {
    if let Some(core) = core {
        core_affinity::set_for_current(core);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            return shared.fail(LoadError::Spawn {
                what: "client runtime",
                error,
            })
        }
    };
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let shared = Arc::clone(shared);
                tokio::spawn(async move {
                    if let Err(why) = connection(addr, &shared).await {
                        shared.fail(why);
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
}

async fn connection(addr: SocketAddr, shared: &Shared) -> Result<(), LoadError> {
    let mut http = Connection::new();
    http.connect(addr)
        .await
        .map_err(|error| LoadError::Connect { addr, error })?;
    while !shared.stop.load(Ordering::Relaxed) {
        let i = shared.next.fetch_add(1, Ordering::Relaxed) % shared.requests.len();
        let answer = http
            .exchange(&shared.requests[i], false)
            .await
            .map_err(LoadError::Exchange)?;
        if answer.status != 200 {
            return Err(LoadError::Status(answer.status));
        }
        if !http.is_open() {
            return Err(LoadError::Exchange(ExchangeError::Closed));
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// One request on a fresh connection, answered in full within 10 s: the answer, its batch
/// verdicts counted. For checks before a measurement.
pub fn request_once(addr: SocketAddr, request: &[u8]) -> Result<Answer, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| LoadError::Spawn {
            what: "a runtime for one request",
            error,
        })?;
    runtime.block_on(async {
        let exchange = async {
            let mut http = Connection::new();
            http.connect(addr)
                .await
                .map_err(|error| LoadError::Connect { addr, error })?;
            http.exchange(request, true)
                .await
                .map_err(LoadError::Exchange)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| LoadError::Timeout)?
    })
}
