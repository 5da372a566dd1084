//! What each worker thread records during a run, merged into one at the end. Recording does not
//! allocate: every histogram and counter exists before the first request.

use hdrhistogram::Histogram;

use loadtest::report::{Second, Summary};

/// The largest latency recorded, microseconds (60 s); longer ones count as this.
pub const MAX_US: u64 = 60_000_000;

/// Why a request got no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// Reading or writing failed, or the connection closed before the answer was complete.
    Io,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The answer was not HTTP/1.1 this parser accepts.
    Protocol,
    /// An answer whose status contradicts what the request should get.
    UnexpectedStatus,
    /// The expected status with the wrong body: an `active` verdict that contradicts the token
    /// (introspection, batch verify), or no `access_token` (the token endpoint).
    UnexpectedAnswer,
    /// Open loop: due in the measured window but never sent, every connection being busy.
    NotSent,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::UnexpectedStatus,
        ErrorKind::UnexpectedAnswer,
        ErrorKind::NotSent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol",
            ErrorKind::UnexpectedStatus => "unexpected_status",
            ErrorKind::UnexpectedAnswer => "unexpected_answer",
            ErrorKind::NotSent => "not_sent",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A latency histogram: 1 µs to 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3)
        .expect("valid bounds: 1 <= low, high >= 2 * low, sigfig <= 5")
}

/// The per-second histograms: 2 significant digits are plenty for a timeline.
fn second_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_US, 2)
        .expect("valid bounds: 1 <= low, high >= 2 * low, sigfig <= 5")
}

/// One second of the measured window.
#[derive(Clone, Debug)]
pub struct SecondStats {
    pub requests: u64,
    pub errors: u64,
    pub max: u64,
    pub latency: Histogram<u32>,
}

/// Everything one thread measured. Only requests whose (intended) start lies in the measured
/// window count.
#[derive(Clone, Debug)]
pub struct Recorder {
    pub latency: Histogram<u64>,
    pub min: u64,
    pub max: u64,
    pub requests: u64,
    /// Answers by status, 100..=599.
    pub statuses: Box<[u64; 600]>,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub seconds: Vec<SecondStats>,
    /// Answers and errors since the start, warm-up included (for the progress line).
    pub all_answers: u64,
    pub all_errors: u64,
    /// TCP connections opened.
    pub connects: u64,
    /// Open loop: requests that found every connection busy at their intended start.
    pub late: u64,
    /// Open loop: sends that woke more than 2 ms after their due time (a busy harness thread).
    pub slow_wakes: u64,
}

impl Recorder {
    /// A recorder for a window of `seconds` seconds (rounded up).
    pub fn new(seconds: usize) -> Self {
        Recorder {
            latency: histogram(),
            min: u64::MAX,
            max: 0,
            requests: 0,
            statuses: Box::new([0; 600]),
            errors: [0; ErrorKind::ALL.len()],
            seconds: (0..seconds.max(1))
                .map(|_| SecondStats {
                    requests: 0,
                    errors: 0,
                    max: 0,
                    latency: second_histogram(),
                })
                .collect(),
            all_answers: 0,
            all_errors: 0,
            connects: 0,
            late: 0,
            slow_wakes: 0,
        }
    }

    fn second(&mut self, at: usize) -> &mut SecondStats {
        let last = self.seconds.len() - 1;
        &mut self.seconds[at.min(last)]
    }

    /// An answer with `status`, `latency_us` after its start; `second` is the window second it
    /// started in, `None` during the warm-up.
    pub fn answer(&mut self, second: Option<usize>, status: u16, latency_us: u64) {
        self.all_answers += 1;
        let Some(at) = second else { return };
        let us = latency_us.min(MAX_US);
        self.requests += 1;
        self.latency.saturating_record(us);
        self.min = self.min.min(us);
        self.max = self.max.max(us);
        if let Some(n) = self.statuses.get_mut(usize::from(status)) {
            *n += 1;
        }
        let s = self.second(at);
        s.requests += 1;
        s.max = s.max.max(us);
        s.latency.saturating_record(us);
    }

    pub fn error(&mut self, second: Option<usize>, kind: ErrorKind) {
        self.all_errors += 1;
        let Some(at) = second else { return };
        self.errors[kind.index()] += 1;
        self.second(at).errors += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.requests += other.requests;
        for (a, b) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.requests += b.requests;
            a.errors += b.errors;
            a.max = a.max.max(b.max);
            let _ = a.latency.add(&b.latency);
        }
        self.all_answers += other.all_answers;
        self.all_errors += other.all_errors;
        self.connects += other.connects;
        self.late += other.late;
        self.slow_wakes += other.slow_wakes;
    }

    pub fn summary(&self) -> Summary {
        if self.requests == 0 {
            return Summary::default();
        }
        let q = |q: f64| self.latency.value_at_quantile(q).min(self.max);
        Summary {
            min: self.min,
            mean: self.latency.mean(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: self.max,
        }
    }

    /// Percentiles 0, 10, ..., 90, 95, 99, 99.9, 99.99, 99.999, 100 with their latency.
    pub fn distribution(&self) -> Vec<(f64, u64)> {
        if self.requests == 0 {
            return Vec::new();
        }
        let mut points: Vec<f64> = (0..10).map(|i| f64::from(i) * 10.0).collect();
        points.extend([95.0, 99.0, 99.9, 99.99, 99.999, 100.0]);
        points
            .into_iter()
            .map(|p| {
                let us = match p {
                    0.0 => self.min,
                    100.0 => self.max,
                    p => self.latency.value_at_quantile(p / 100.0).min(self.max),
                };
                (p, us)
            })
            .collect()
    }

    pub fn timeline(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let q = |q: f64| {
                    if s.requests == 0 {
                        0
                    } else {
                        s.latency.value_at_quantile(q).min(s.max)
                    }
                };
                Second {
                    t: i as f64,
                    requests: s.requests,
                    errors: s.errors,
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                    max_us: s.max,
                }
            })
            .collect()
    }

    pub fn statuses(&self) -> Vec<(String, u64)> {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(status, &n)| (status.to_string(), n))
            .collect()
    }

    pub fn errors(&self) -> Vec<(String, u64)> {
        ErrorKind::ALL
            .iter()
            .filter(|k| self.errors[k.index()] > 0)
            .map(|k| (k.name().to_string(), self.errors[k.index()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_the_window_and_merges() {
        let mut a = Recorder::new(2);
        a.answer(None, 200, 5);
        a.answer(Some(0), 200, 100);
        a.answer(Some(1), 401, 300);
        a.error(Some(1), ErrorKind::Io);
        a.error(None, ErrorKind::Io);
        let mut b = Recorder::new(2);
        b.answer(Some(7), 200, 200);
        b.error(Some(0), ErrorKind::UnexpectedStatus);
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(a.all_answers, 4);
        assert_eq!(a.statuses(), vec![("200".into(), 2), ("401".into(), 1)]);
        assert_eq!(
            a.errors(),
            vec![("io".into(), 1), ("unexpected_status".into(), 1)]
        );
        let s = a.summary();
        assert_eq!((s.min, s.max), (100, 300));
        let t = a.timeline();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].requests, t[0].errors), (1, 1));
        // Second 7 is past the end: it counts in the last second.
        assert_eq!((t[1].requests, t[1].errors, t[1].max_us), (2, 1, 300));
        let d = a.distribution();
        assert_eq!(d.first(), Some(&(0.0, 100)));
        assert_eq!(d.last(), Some(&(100.0, 300)));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn latencies_beyond_60_s_saturate() {
        let mut a = Recorder::new(1);
        a.answer(Some(0), 200, 100 * MAX_US);
        assert_eq!(a.summary().max, MAX_US);
    }
}
