//! The M/M/c queue: Poisson arrivals at rate λ, `c` servers each answering at rate μ, one
//! queue. Here a server is a core and a customer a request.
//!
//! - Erlang C, the probability that a request waits: `C(c, a)` with offered load `a = λ/μ`.
//! - The waiting time: 0 with probability `1 - C`, otherwise exponential with rate `cμ - λ`, so
//!   `P(W > t) = C · exp(-(cμ - λ) t)`.

use std::cmp::Ordering;

/// Erlang C: the probability that an arrival waits, for `servers` servers and an offered load
/// of `offered` = λ/μ erlangs. 1 when the queue is unstable (`offered >= servers`).
pub fn erlang_c(servers: u32, offered: f64) -> f64 {
    let c = f64::from(servers);
    // NaN compares as not less: unstable.
    if servers == 0 || offered.partial_cmp(&c) != Some(Ordering::Less) {
        return 1.0;
    }
    if offered <= 0.0 {
        return 0.0;
    }
    // Erlang B by its recurrence (stable for thousands of servers), then C from B.
    let mut b = 1.0;
    for k in 1..=servers {
        b = offered * b / (f64::from(k) + offered * b);
    }
    let rho = offered / c;
    b / (1.0 - rho * (1.0 - b))
}

/// The waiting time (before service starts) not exceeded by a share `quantile` of requests, in
/// the time unit of the rates. Infinite when the queue is unstable.
pub fn wait_quantile(servers: u32, arrival_rate: f64, service_rate: f64, quantile: f64) -> f64 {
    let capacity = f64::from(servers) * service_rate;
    if arrival_rate.partial_cmp(&capacity) != Some(Ordering::Less) {
        return f64::INFINITY;
    }
    let waits = erlang_c(servers, arrival_rate / service_rate);
    let tail = 1.0 - quantile;
    if waits <= tail {
        return 0.0;
    }
    (waits / tail).ln() / (capacity - arrival_rate)
}

/// The response-time quantile as the planner reports it: the waiting-time quantile plus the
/// mean service time. Requests of one kind take nearly the same CPU time each, so the service
/// time is added as a constant rather than with the long exponential tail M/M/c assumes for it.
pub fn response_quantile(servers: u32, arrival_rate: f64, service_rate: f64, quantile: f64) -> f64 {
    wait_quantile(servers, arrival_rate, service_rate, quantile) + 1.0 / service_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn erlang_c_matches_known_values() {
        // M/M/1: the probability of waiting is the utilisation.
        for rho in [0.1, 0.5, 0.9, 0.99] {
            assert!(close(erlang_c(1, rho), rho, 1e-12), "{rho}");
        }
        // M/M/2 at ρ: 2ρ² / (1 + ρ).
        for rho in [0.25, 0.5, 0.8] {
            let expected = 2.0 * rho * rho / (1.0 + rho);
            assert!(close(erlang_c(2, 2.0 * rho), expected, 1e-12), "{rho}");
        }
        // Tabulated (four digits): 10 servers at 8 erlangs, 5 at 4.
        assert!(
            close(erlang_c(10, 8.0), 0.4092, 5e-5),
            "{}",
            erlang_c(10, 8.0)
        );
        assert!(
            close(erlang_c(5, 4.0), 0.5541, 5e-5),
            "{}",
            erlang_c(5, 4.0)
        );
        // The textbook sum, term by term, where it does not overflow.
        for (servers, offered) in [(3, 2.5), (20, 15.0), (50, 45.0), (100, 60.0)] {
            let expected = direct(servers, offered);
            let got = erlang_c(servers, offered);
            assert!(
                close(got, expected, 1e-9),
                "{servers} {offered}: {got} {expected}"
            );
        }
    }

    /// C(c, a) = (aᶜ/c!)·c/(c-a) / (Σₖ₌₀..c₋₁ aᵏ/k! + (aᶜ/c!)·c/(c-a)).
    fn direct(servers: u32, offered: f64) -> f64 {
        let mut term = 1.0;
        let mut sum = 0.0;
        for k in 0..servers {
            sum += term;
            term *= offered / f64::from(k + 1);
        }
        let c = f64::from(servers);
        let last = term * c / (c - offered);
        last / (sum + last)
    }

    #[test]
    fn erlang_c_edges() {
        assert_eq!(erlang_c(4, 0.0), 0.0);
        assert_eq!(erlang_c(4, 4.0), 1.0);
        assert_eq!(erlang_c(4, 5.0), 1.0);
        assert_eq!(erlang_c(0, 1.0), 1.0);
        assert_eq!(erlang_c(4, f64::NAN), 1.0);
        // Thousands of servers neither overflow nor lose the answer.
        let c = erlang_c(5000, 4900.0);
        assert!(c > 0.0 && c < 1.0, "{c}");
    }

    #[test]
    fn erlang_c_grows_with_load_and_falls_with_servers() {
        let mut last = 0.0;
        for tenth in 1..20 {
            let c = erlang_c(2, f64::from(tenth) / 10.0);
            assert!(c > last);
            last = c;
        }
        let mut last = 1.0;
        for servers in 2..40 {
            let c = erlang_c(servers, 1.5);
            assert!(c < last);
            last = c;
        }
    }

    #[test]
    fn the_waiting_tail_solves_its_own_equation() {
        // M/M/1, λ = 0.9, μ = 1: P(W > t) = 0.9 e^{-0.1 t} = 0.01 at t = 10 ln 90.
        let t = wait_quantile(1, 0.9, 1.0, 0.99);
        assert!(close(t, 10.0 * 90f64.ln(), 1e-9), "{t}");
        // Waiting probability under 1 %: no wait at the 99th percentile.
        assert_eq!(wait_quantile(8, 1.0, 1.0, 0.99), 0.0);
        assert_eq!(wait_quantile(2, 2.0, 1.0, 0.99), f64::INFINITY);
        // The response adds the mean service time.
        assert!(close(response_quantile(8, 1.0, 4.0, 0.99), 0.25, 1e-12));
    }

    #[test]
    fn latency_grows_with_load_and_falls_with_cores() {
        let mut last = 0.0;
        for load in [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99] {
            let p99 = response_quantile(4, 4.0 * load, 1.0, 0.99);
            assert!(p99 >= last, "{load}");
            last = p99;
        }
        let mut last = f64::INFINITY;
        for servers in 4..12 {
            let p99 = response_quantile(servers, 3.5, 1.0, 0.99);
            assert!(p99 <= last, "{servers}");
            last = p99;
        }
    }
}
