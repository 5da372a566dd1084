//! The load loop. Worker threads, each with its own current-thread tokio runtime and optionally
//! pinned to a core, drive their share of the connections through [`Lane`]s: one request in
//! flight per lane. Under HTTP/1.1 a lane is a keep-alive [`http1::Connection`] sending
//! pre-encoded request bytes; under HTTP/2 ([`http2`](crate::http2)) a connection carries
//! `--streams` lanes.
//!
//! Closed loop: each lane sends its next request as soon as the answer came.
//! Open loop: each thread owns an arrival schedule at its share of the rate (request `k` is due
//! at `start + phase + k × interval`); whichever lane is free takes the next due request.
//! Latency counts from the request's intended start when it had to wait for a free lane,
//! so a stalled server is charged for every request that should have started meanwhile
//! (no coordinated omission). A lane that is free early sleeps until the due time and the
//! latency counts from when it actually sent (the timer has millisecond granularity; that wait
//! is the harness's, not the server's).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::time::Sleep;

use crate::http2;
use crate::scenario::{Expect, Request};
use crate::stats::{self, ErrorKind, Recorder};
use loadtest::http1::{self, Answer};

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive: one request in flight per connection.
    Http1,
    /// HTTP/2 with prior knowledge over cleartext TCP: `streams` requests in flight per
    /// connection.
    Http2 { streams: usize },
}

/// A validated run.
#[derive(Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub requests: Vec<Request>,
    pub protocol: Protocol,
    /// Open loop: requests per second over all threads. `None`: closed loop.
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    /// Cores to pin the worker threads to, round robin; empty: no pinning.
    pub cpus: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// A progress line on stderr every second.
    pub progress: bool,
}

/// The run's clock: warm-up from `start`, measured window from `window` to `end`.
#[derive(Clone, Copy, Debug)]
struct Clock {
    start: Instant,
    window: Instant,
    end: Instant,
}

impl Clock {
    /// The window second `t` falls in; `None` during the warm-up.
    fn second(&self, t: Instant) -> Option<usize> {
        t.checked_duration_since(self.window)
            .map(|d| d.as_secs() as usize)
    }
}

/// What a worker publishes every second for the progress line.
#[derive(Debug)]
struct Snapshot {
    answers: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// What the load loops need of a protocol: a lane carries one request at a time, over a
/// connection of its own (HTTP/1.1) or as one of the streams of a shared connection (HTTP/2).
pub trait Lane: Sized + 'static {
    /// A request made ready for this protocol before the run.
    type Request: Send + Sync + 'static;

    /// The lanes of one thread, for its `connections` connections.
    fn lanes(plan: &Plan, connections: usize) -> Vec<Self>;

    /// The answer `request` should get.
    fn expect(request: &Self::Request) -> Expect;

    /// Opens the connection before the schedule starts; a failure is left for the first
    /// request to find and count.
    async fn connect_early(&mut self);

    /// Sends `request` and waits for its whole answer, within the timeout from `start`. A
    /// connection that failed is replaced before the next request.
    async fn exchange(
        &mut self,
        request: &Self::Request,
        start: Instant,
    ) -> Result<Answer, ErrorKind>;

    /// Whether this lane opened a new connection since the last call.
    fn take_connected(&mut self) -> bool;
}

/// When the run was interrupted (Ctrl-C), if it was: the lanes send nothing more, the
/// requests in flight finish, and the window ends there.
static STOPPED_AT: OnceLock<Instant> = OnceLock::new();

/// Installs the Ctrl-C handling for this process: the first ends the run early (its report is
/// still written, for the part of the window it covered), a second exits at once (130).
pub fn stop_on_ctrl_c() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    // Installed before returning, so that no early Ctrl-C takes the default action.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("load-signals".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut interrupts =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                interrupts.recv().await;
                let _ = STOPPED_AT.set(Instant::now());
                eprintln!(
                    "tessera-loadtest: interrupted: finishing the requests in flight \
                     (Ctrl-C again to quit without a report)"
                );
                interrupts.recv().await;
                std::process::exit(130);
            });
        })
        .context("starting the signal thread")?;
    ready_rx
        .recv()
        .context("the signal thread ended")?
        .context("handling SIGINT")
}

/// Whether the run was interrupted.
fn stopped() -> bool {
    STOPPED_AT.get().is_some()
}

/// Where the measured window ends: at `end`, or where the run was interrupted if before it.
fn window_end(end: Instant) -> Instant {
    STOPPED_AT.get().map_or(end, |&at| at.min(end))
}

/// What a run measured.
#[derive(Debug)]
pub struct Measured {
    pub recorded: Recorder,
    /// The measured window: the whole `--duration`, or less when interrupted (zero when that
    /// happened during the warm-up).
    pub window: Duration,
    pub interrupted: bool,
}

/// Runs `plan` and returns the merged measurements.
pub fn run(mut plan: Plan) -> anyhow::Result<Measured> {
    let requests = std::mem::take(&mut plan.requests);
    match plan.protocol {
        Protocol::Http1 => drive::<Connection>(plan, requests.into()),
        Protocol::Http2 { .. } => {
            let requests = requests
                .into_iter()
                .map(|r| http2::Request::prepare(&r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            drive::<http2::Stream>(plan, requests.into())
        }
    }
}

fn drive<L: Lane>(plan: Plan, requests: Arc<[L::Request]>) -> anyhow::Result<Measured> {
    let plan = Arc::new(plan);
    let cores = pick_cores(&plan.cpus)?;
    let seconds = plan.duration.as_secs_f64().ceil().max(1.0) as usize;
    let snapshots: Arc<Vec<Mutex<Snapshot>>> = Arc::new(
        (0..plan.threads)
            .map(|_| {
                Mutex::new(Snapshot {
                    answers: 0,
                    errors: 0,
                    latency: stats::histogram(),
                })
            })
            .collect(),
    );
    // Time for the threads to start and connect before the schedule begins.
    let start = Instant::now() + Duration::from_millis(100);
    let window = start + plan.warmup;
    let clock = Clock {
        start,
        window,
        end: window + plan.duration,
    };
    let mut workers = Vec::with_capacity(plan.threads);
    for t in 0..plan.threads {
        let connections =
            plan.connections / plan.threads + usize::from(t < plan.connections % plan.threads);
        let core = (!cores.is_empty()).then(|| cores[t % cores.len()]);
        let plan = Arc::clone(&plan);
        let requests = Arc::clone(&requests);
        let snapshots = Arc::clone(&snapshots);
        let worker = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        eprintln!(
                            "tessera-loadtest: could not pin thread {t} to CPU {}",
                            core.id
                        );
                    }
                }
                worker::<L>(
                    &plan,
                    requests,
                    t,
                    connections,
                    clock,
                    seconds,
                    &snapshots[t],
                )
            })
            .context("starting a worker thread")?;
        workers.push(worker);
    }
    if plan.progress {
        progress(&plan, clock, &workers, &snapshots);
    }
    let mut total = Recorder::new(seconds);
    for worker in workers {
        let recorder = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        total.merge(&recorder);
    }
    let end = window_end(clock.end);
    Ok(Measured {
        recorded: total,
        window: end.saturating_duration_since(clock.window),
        interrupted: end < clock.end,
    })
}

fn pick_cores(cpus: &[usize]) -> anyhow::Result<Vec<core_affinity::CoreId>> {
    if cpus.is_empty() {
        return Ok(Vec::new());
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    cpus.iter()
        .map(|&id| {
            available
                .iter()
                .find(|c| c.id == id)
                .copied()
                .with_context(|| {
                    let ids: Vec<String> = available.iter().map(|c| c.id.to_string()).collect();
                    format!(
                        "--cpus: CPU {id} is not available to this process (available: {})",
                        ids.join(",")
                    )
                })
        })
        .collect()
}

/// One line per second on stderr until the workers are done.
fn progress(
    plan: &Plan,
    clock: Clock,
    workers: &[std::thread::JoinHandle<anyhow::Result<Recorder>>],
    snapshots: &[Mutex<Snapshot>],
) {
    let mut merged = stats::histogram();
    let (mut last_answers, mut last_errors) = (0u64, 0u64);
    let mut last_at = clock.start;
    for tick in 1u32.. {
        // Shortly after the workers published second `tick`.
        let at = clock.start + Duration::from_secs(u64::from(tick)) + Duration::from_millis(150);
        while Instant::now() < at {
            if workers.iter().all(|w| w.is_finished()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(at - Instant::now()));
        }
        merged.reset();
        let (mut answers, mut errors) = (0u64, 0u64);
        for slot in snapshots {
            let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            answers += slot.answers;
            errors += slot.errors;
            let _ = merged.add(&slot.latency);
        }
        let now = Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let rate = (answers - last_answers) as f64 / secs;
        let new_errors = errors - last_errors;
        (last_answers, last_errors, last_at) = (answers, errors, now);
        let published = Duration::from_secs(u64::from(tick));
        let phase = if published <= plan.warmup {
            "warm-up".to_string()
        } else if published < plan.warmup + plan.duration + Duration::from_secs(1) {
            let p99 = if merged.is_empty() {
                "-".to_string()
            } else {
                crate::output::micros(merged.value_at_quantile(0.99))
            };
            format!("p99 so far {p99}")
        } else {
            "finishing".to_string()
        };
        let of = match plan.rate {
            Some(r) => format!(" (asked {r:.0})"),
            None => String::new(),
        };
        eprintln!(
            "[{tick:>4}s] {rate:>10.0} req/s{of}  errors {new_errors:<6} {phase}",
            tick = tick,
        );
    }
}

/// State shared by the lanes of one thread.
struct Ctx<R> {
    plan: Arc<Plan>,
    requests: Arc<[R]>,
    clock: Clock,
    rec: RefCell<Recorder>,
    /// The next request to send (index into `requests`).
    next: Cell<usize>,
    /// Open loop: the next arrival in this thread's schedule.
    ticket: Cell<u64>,
    /// Open loop: nanoseconds between arrivals on this thread, and this thread's offset.
    interval_ns: f64,
    phase_ns: f64,
}

impl<R> Ctx<R> {
    fn request(&self) -> &R {
        let i = self.next.get();
        self.next.set(if i + 1 == self.requests.len() {
            0
        } else {
            i + 1
        });
        &self.requests[i]
    }

    fn due(&self, ticket: u64) -> Instant {
        let ns = self.phase_ns + ticket as f64 * self.interval_ns;
        self.clock.start + Duration::from_nanos(ns as u64)
    }

    fn record(
        &self,
        second: Option<usize>,
        from: Instant,
        result: Result<Answer, ErrorKind>,
        expect: Expect,
    ) {
        let mut rec = self.rec.borrow_mut();
        match result {
            Ok(answer) => {
                let us = Instant::now().saturating_duration_since(from).as_micros();
                rec.answer(second, answer.status, u64::try_from(us).unwrap_or(u64::MAX));
                if let Some(kind) = verdict(expect, &answer) {
                    rec.error(second, kind);
                }
            }
            Err(kind) => rec.error(second, kind),
        }
    }
}

/// Whether `answer` contradicts what was expected.
fn verdict(expect: Expect, answer: &Answer) -> Option<ErrorKind> {
    if answer.status != expect.status {
        return Some(ErrorKind::UnexpectedStatus);
    }
    if let Some(verdicts) = expect.verdicts {
        return (answer.verdicts() != Some(verdicts)).then_some(ErrorKind::UnexpectedAnswer);
    }
    let said = |needle: &[u8]| {
        answer
            .body_prefix()
            .windows(needle.len())
            .any(|w| w == needle)
    };
    if let Some(needle) = expect.contains {
        if !said(needle) {
            return Some(ErrorKind::UnexpectedAnswer);
        }
    }
    let active = expect.active?;
    let ok = if active {
        said(b"\"active\":true")
    } else {
        said(b"\"active\":false")
    };
    (!ok).then_some(ErrorKind::UnexpectedAnswer)
}

fn worker<L: Lane>(
    plan: &Arc<Plan>,
    requests: Arc<[L::Request]>,
    thread: usize,
    connections: usize,
    clock: Clock,
    seconds: usize,
    snapshot: &Mutex<Snapshot>,
) -> anyhow::Result<Recorder> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a worker runtime")?;
    let (interval_ns, phase_ns) = match plan.rate {
        Some(rate) => {
            let interval = 1e9 * plan.threads as f64 / rate;
            (interval, interval * thread as f64 / plan.threads as f64)
        }
        None => (0.0, 0.0),
    };
    let ctx = Rc::new(Ctx {
        plan: Arc::clone(plan),
        next: Cell::new(thread * requests.len() / plan.threads),
        requests,
        clock,
        rec: RefCell::new(Recorder::new(seconds)),
        ticket: Cell::new(0),
        interval_ns,
        phase_ns,
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let lanes = L::lanes(plan, connections);
        let mut tasks = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let ctx = Rc::clone(&ctx);
            tasks.push(tokio::task::spawn_local(async move {
                if ctx.plan.rate.is_some() {
                    open_loop(&ctx, lane).await;
                } else {
                    closed_loop(&ctx, lane).await;
                }
            }));
        }
        let all = async {
            for task in tasks {
                task.await.context("a connection task failed")?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            result = all => result,
            () = publish_every_second(&ctx, snapshot) => Ok(()),
        }
    })?;
    // Open loop: the arrivals due in the window (up to an interruption) that no connection got
    // to.
    if plan.rate.is_some() {
        let end = window_end(clock.end);
        let mut rec = ctx.rec.borrow_mut();
        let mut ticket = ctx.ticket.get();
        loop {
            let due = ctx.due(ticket);
            if due >= end {
                break;
            }
            if due >= clock.window {
                rec.error(clock.second(due), ErrorKind::NotSent);
            }
            ticket += 1;
        }
    }
    // The connection tasks are done: this is the last reference.
    let rec = match Rc::try_unwrap(ctx) {
        Ok(ctx) => ctx.rec.into_inner(),
        Err(ctx) => ctx.rec.borrow().clone(),
    };
    Ok(rec)
}

/// Copies the thread's counts and histogram to `slot` every second, for the progress line.
async fn publish_every_second<R>(ctx: &Ctx<R>, slot: &Mutex<Snapshot>) {
    let mut at = ctx.clock.start;
    loop {
        at += Duration::from_secs(1);
        tokio::time::sleep_until(at.into()).await;
        let rec = ctx.rec.borrow();
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.answers = rec.all_answers;
        slot.errors = rec.all_errors;
        slot.latency.reset();
        let _ = slot.latency.add(&rec.latency);
    }
}

/// Counts a connection the lane opened.
fn count_connect<L: Lane>(ctx: &Ctx<L::Request>, lane: &mut L) {
    if lane.take_connected() {
        ctx.rec.borrow_mut().connects += 1;
    }
}

async fn closed_loop<L: Lane>(ctx: &Ctx<L::Request>, mut conn: L) {
    conn.connect_early().await;
    count_connect(ctx, &mut conn);
    tokio::time::sleep_until(ctx.clock.start.into()).await;
    loop {
        let start = Instant::now();
        if start >= ctx.clock.end || stopped() {
            break;
        }
        let request = ctx.request();
        let result = conn.exchange(request, start).await;
        count_connect(ctx, &mut conn);
        ctx.record(ctx.clock.second(start), start, result, L::expect(request));
        if result == Err(ErrorKind::Connect) {
            // Do not spin against a server that refuses connections.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn open_loop<L: Lane>(ctx: &Ctx<L::Request>, mut conn: L) {
    conn.connect_early().await;
    count_connect(ctx, &mut conn);
    let mut pacer = Box::pin(tokio::time::sleep_until(ctx.clock.start.into()));
    loop {
        let ticket = ctx.ticket.get();
        let due = ctx.due(ticket);
        let now = Instant::now();
        // Arrivals due after the window, or still waiting when it closed, are not sent.
        if due >= ctx.clock.end || now >= ctx.clock.end || stopped() {
            break;
        }
        ctx.ticket.set(ticket + 1);
        let second = ctx.clock.second(due);
        let from = if due > now {
            pacer.as_mut().reset(due.into());
            pacer.as_mut().await;
            let woke = Instant::now();
            if second.is_some() && woke.duration_since(due) > Duration::from_millis(2) {
                ctx.rec.borrow_mut().slow_wakes += 1;
            }
            woke
        } else {
            // No lane was free when it was due: the wait is the server's.
            if second.is_some() {
                ctx.rec.borrow_mut().late += 1;
            }
            due
        };
        let request = ctx.request();
        let result = conn.exchange(request, Instant::now()).await;
        count_connect(ctx, &mut conn);
        ctx.record(second, from, result, L::expect(request));
    }
}

/// One keep-alive connection with its watchdog, reopened after an error or a
/// `Connection: close`.
struct Connection {
    addr: SocketAddr,
    timeout: Duration,
    http: http1::Connection,
    /// Fires at or after the current request's deadline; moved forward lazily (at most a few
    /// times per timeout), so that most requests do not touch the timer wheel.
    watchdog: Pin<Box<Sleep>>,
    connected: bool,
}

impl Connection {
    fn new(addr: SocketAddr, timeout: Duration) -> Self {
        Connection {
            addr,
            timeout,
            http: http1::Connection::new(),
            watchdog: Box::pin(tokio::time::sleep(timeout)),
            connected: false,
        }
    }
}

impl Lane for Connection {
    type Request = Request;

    fn lanes(plan: &Plan, connections: usize) -> Vec<Self> {
        (0..connections)
            .map(|_| Connection::new(plan.addr, plan.timeout))
            .collect()
    }

    fn expect(request: &Request) -> Expect {
        request.expect
    }

    fn take_connected(&mut self) -> bool {
        std::mem::take(&mut self.connected)
    }

    async fn connect_early(&mut self) {
        let connect = tokio::time::timeout(self.timeout, self.http.connect(self.addr));
        if let Ok(Ok(())) = connect.await {
            self.connected = true;
        }
    }

    async fn exchange(&mut self, request: &Request, start: Instant) -> Result<Answer, ErrorKind> {
        let count = request.expect.verdicts.is_some();
        let request = &*request.bytes;
        let (deadline, timeout) = (start + self.timeout, self.timeout);
        let had_stream = self.http.is_open();
        let Connection {
            addr,
            http,
            watchdog,
            connected,
            ..
        } = self;
        let opened = Cell::new(false);
        let result = {
            let io = async {
                if !http.is_open() {
                    http.connect(*addr).await.map_err(|_| ErrorKind::Connect)?;
                    opened.set(true);
                }
                http.exchange(request, count).await.map_err(|e| match e {
                    http1::ExchangeError::NotConnected => ErrorKind::Connect,
                    http1::ExchangeError::Protocol(_) => ErrorKind::Protocol,
                    _ => ErrorKind::Io,
                })
            };
            watched(io, watchdog, deadline, timeout, || {
                had_stream || opened.get()
            })
            .await
        };
        *connected |= opened.get();
        if result.is_err() {
            // Also after a timeout, which left the exchange half done.
            http.close();
        }
        result
    }
}

/// Runs `io` until it ends or `deadline` passes: then `Timeout`, or `Connect` while `connected()`
/// says no connection was there or opened. `watchdog` is a lane's one timer, moved forward
/// lazily (to the deadline plus an eighth of `timeout`) rather than re-armed per request.
pub async fn watched<T>(
    io: impl Future<Output = Result<T, ErrorKind>>,
    watchdog: &mut Pin<Box<Sleep>>,
    deadline: Instant,
    timeout: Duration,
    connected: impl Fn() -> bool,
) -> Result<T, ErrorKind> {
    let slack = timeout / 8;
    if watchdog.deadline().into_std() < deadline {
        watchdog.as_mut().reset((deadline + slack).into());
    }
    let mut io = pin!(io);
    loop {
        tokio::select! {
            biased;
            result = &mut io => return result,
            () = watchdog.as_mut() => {
                if Instant::now() >= deadline {
                    return Err(if connected() { ErrorKind::Timeout } else { ErrorKind::Connect });
                }
                watchdog.as_mut().reset((deadline + slack).into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadtest::http1::{Parser, Verdicts};

    fn answer(raw: &[u8]) -> Answer {
        let mut p = Parser::new();
        p.advance(raw).unwrap();
        p.answer().unwrap()
    }

    #[test]
    fn verdicts() {
        let ok = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"active\":true}");
        let inactive = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"active\":false}");
        let refused = answer(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(verdict(Expect::OK, &ok), None);
        assert_eq!(
            verdict(Expect::OK, &refused),
            Some(ErrorKind::UnexpectedStatus)
        );
        let e401 = Expect {
            status: 401,
            ..Expect::OK
        };
        assert_eq!(verdict(e401, &refused), None);
        let active = |a| Expect {
            active: Some(a),
            ..Expect::OK
        };
        assert_eq!(verdict(active(true), &ok), None);
        assert_eq!(verdict(active(false), &inactive), None);
        assert_eq!(
            verdict(active(true), &inactive),
            Some(ErrorKind::UnexpectedAnswer)
        );
        assert_eq!(
            verdict(active(false), &ok),
            Some(ErrorKind::UnexpectedAnswer)
        );
        // The token endpoint: an access token in the first body bytes.
        let issued = answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 52\r\n\r\n\
              {\"access_token\":\"a.b.c\",\"token_type\":\"Bearer\",\"x\":1}",
        );
        let token = Expect {
            contains: Some(crate::scenario::ACCESS_TOKEN),
            ..Expect::OK
        };
        assert_eq!(verdict(token, &issued), None);
        assert_eq!(verdict(token, &ok), Some(ErrorKind::UnexpectedAnswer));
        assert_eq!(verdict(token, &refused), Some(ErrorKind::UnexpectedStatus));
    }

    /// A batch answer, chunked, its verdicts split across chunks and pieces (and a stray `{`
    /// right before one).
    #[test]
    fn batch_verdicts_are_counted_across_pieces() {
        let body = b"{\"results\":[{\"active\":true,\"claims\":{\"a\":{\"b\":1}}},{{\"active\":false,\"error\":\"x\"},{\"active\":true,\"claims\":{}}]}";
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(5) {
            raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            raw.extend_from_slice(piece);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let expect = |active, inactive| Expect {
            verdicts: Some(Verdicts { active, inactive }),
            ..Expect::OK
        };
        // Fed to the parser a few bytes at a time.
        for step in [1, 3, 64, raw.len()] {
            let mut p = Parser::new();
            p.reset(true);
            // As a socket would: `end` grows by `step`; unused bytes are offered again.
            let (mut at, mut end) = (0, 0);
            while p.answer().is_none() {
                assert!(end < raw.len(), "the answer did not complete");
                end = (end + step).min(raw.len());
                at += p.advance(&raw[at..end]).unwrap();
            }
            let answer = p.answer().unwrap();
            assert_eq!(
                answer.verdicts(),
                Some(Verdicts {
                    active: 2,
                    inactive: 1
                })
            );
            assert_eq!(verdict(expect(2, 1), &answer), None);
            assert_eq!(
                verdict(expect(3, 0), &answer),
                Some(ErrorKind::UnexpectedAnswer)
            );
        }
        // Not counted unless asked for: a batch expectation then fails.
        assert_eq!(answer(&raw).verdicts(), None);
        assert_eq!(
            verdict(expect(2, 1), &answer(&raw)),
            Some(ErrorKind::UnexpectedAnswer)
        );
    }
}
