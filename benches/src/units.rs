//! How the reports write times and rates: three significant digits, in the unit that fits.

/// The divisor and unit for a time in nanoseconds.
pub fn time_unit(ns: f64) -> (f64, &'static str) {
    if ns < 1e3 {
        (1.0, "ns")
    } else if ns < 1e6 {
        (1e3, "µs")
    } else if ns < 1e9 {
        (1e6, "ms")
    } else {
        (1e9, "s")
    }
}

/// Decimals that show three significant digits of `x` (at least 1, below 1000).
pub fn decimals(x: f64) -> usize {
    if x < 10.0 {
        2
    } else if x < 100.0 {
        1
    } else {
        0
    }
}

/// `1.84 µs`, `444 ns`, `1.35 ms`.
pub fn time(ns: f64) -> String {
    let (divisor, unit) = time_unit(ns);
    let x = ns / divisor;
    format!("{x:.p$} {unit}", p = decimals(x))
}

/// `2.25 M/s`, `543.5 k/s`, `741/s`.
pub fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}

/// `1.84 µs (543.5 k/s)`: a time per operation and the rate it gives.
pub fn time_and_rate(ns: f64) -> String {
    format!("{} ({})", time(ns), rate(1e9 / ns))
}
