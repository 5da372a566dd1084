//! The end-of-run table on stdout.

use std::fmt::Write as _;

use loadtest::report::Report;

/// A latency for people: µs below a millisecond, then ms, then s.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

/// The protocol for people: `HTTP/1.1`, or `HTTP/2` with its streams per connection.
pub fn protocol(report: &Report) -> String {
    match (report.protocol.as_str(), report.streams) {
        ("http1", _) => "HTTP/1.1".to_string(),
        ("http2", Some(1)) => "HTTP/2 with 1 stream per connection".to_string(),
        ("http2", Some(n)) => format!("HTTP/2 with {n} streams per connection"),
        ("http2", None) => "HTTP/2".to_string(),
        (other, _) => other.to_string(),
    }
}

/// The table printed at the end of a run.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let r = report;
    let _ = writeln!(out, "{} → {}", r.scenario, r.target);
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(
        out,
        "{mode}, {} connection{} on {} thread{}, {}, {} measured after {} warm-up",
        r.connections,
        if r.connections == 1 { "" } else { "s" },
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        protocol(r),
        seconds(r.duration_s),
        seconds(r.warmup_s)
    );
    if r.distinct > 0 {
        let mix: Vec<String> = r
            .mix
            .iter()
            .map(|(alg, pct)| format!("{alg} {pct:.0}%"))
            .collect();
        let mut line = format!("tokens: {} distinct", r.distinct);
        if !mix.is_empty() {
            let _ = write!(line, " ({})", mix.join(", "));
        }
        if r.invalid_pct > 0.0 {
            let _ = write!(line, ", {:.1}% invalid", r.invalid_pct);
        }
        if let Some(batch) = r.batch {
            let _ = write!(line, ", {batch} per request");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "requests     {}", r.requests);
    let _ = writeln!(out, "throughput   {:.1} req/s", r.throughput);
    let list = |pairs: &[(String, u64)]| -> String {
        if pairs.is_empty() {
            "none".to_string()
        } else {
            pairs
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join("   ")
        }
    };
    let _ = writeln!(out, "statuses     {}", list(&r.statuses));
    let _ = writeln!(out, "errors       {}", list(&r.errors));
    let _ = writeln!(out);
    if r.requests == 0 {
        let _ = writeln!(out, "latency      no answers");
        return out;
    }
    let l = &r.latency_us;
    let cells = [
        ("min", micros(l.min)),
        ("mean", micros(l.mean.round() as u64)),
        ("p50", micros(l.p50)),
        ("p90", micros(l.p90)),
        ("p99", micros(l.p99)),
        ("p99.9", micros(l.p999)),
        ("max", micros(l.max)),
    ];
    let width = cells
        .iter()
        .map(|(_, v)| v.chars().count())
        .max()
        .unwrap_or(0)
        .max(6)
        + 2;
    let mut names = String::from("latency      ");
    let mut values = String::from("             ");
    for (name, value) in &cells {
        let _ = write!(names, "{name:<width$}");
        let _ = write!(values, "{value:<width$}");
    }
    let _ = writeln!(out, "{}", names.trim_end());
    let _ = writeln!(out, "{}", values.trim_end());
    if r.mode == "open" {
        let _ = writeln!(
            out,
            "(open loop: latency counts from each request's intended start)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(micros(999), "999 µs");
        assert_eq!(micros(1_500), "1.50 ms");
        assert_eq!(micros(2_000_000), "2.00 s");
    }

    #[test]
    fn table_mentions_what_matters() {
        let report = Report {
            scenario: "authz".into(),
            target: "http://127.0.0.1:1/v1/authz".into(),
            mode: "closed".into(),
            connections: 4,
            threads: 2,
            protocol: "http1".into(),
            duration_s: 1.0,
            warmup_s: 0.5,
            distinct: 10,
            mix: vec![("ES256".into(), 100.0)],
            invalid_pct: 10.0,
            requests: 42,
            statuses: vec![("200".into(), 38), ("401".into(), 4)],
            ..Report::default()
        };
        let t = table(&report);
        assert!(t.contains(
            "closed loop, 4 connections on 2 threads, HTTP/1.1, 1 s measured after 0.5 s warm-up"
        ));
        assert!(t.contains("tokens: 10 distinct (ES256 100%), 10.0% invalid"));
        assert!(t.contains("200: 38   401: 4"));
        assert!(t.contains("errors       none"));
        let h2 = Report {
            protocol: "http2".into(),
            streams: Some(8),
            ..report
        };
        assert!(table(&h2).contains(
            "closed loop, 4 connections on 2 threads, HTTP/2 with 8 streams per connection, 1 s"
        ));
    }
}
