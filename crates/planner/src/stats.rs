//! Statistics over measurements, shared by the calibration and the benchmarks' reports.

/// The median of `values` (the mean of the middle two for an even count); `None` for none.
/// NaNs sort last (`f64::total_cmp`).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A figure measured until it held still.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settled {
    /// The mean of the two consecutive estimates that agreed, or, where none did within the
    /// cap, the median of every usable estimate.
    pub value: f64,
    /// Half the distance between those two estimates (half the range of every usable estimate
    /// where none agreed): the figure is `value ± spread`.
    pub spread: f64,
    /// Estimates taken, unusable ones included.
    pub repeats: u32,
    /// Whether two consecutive estimates agreed within the tolerance.
    pub agreed: bool,
}

/// Why [`settle`] gave up.
#[derive(Debug, PartialEq)]
pub enum SettleError<E> {
    /// The measurement itself failed.
    Measure(E),
    /// Every one of `repeats` estimates was zero, negative or not finite.
    Unusable { repeats: u32, last: f64 },
}

/// Takes estimates with `measure` until two consecutive usable ones (positive and finite)
/// differ by at most `tolerance` of their mean, `max_repeats` estimates at most (at least 2).
/// An unusable estimate is noise: it is dropped, the pair starts again, and it counts towards
/// the cap.
pub fn settle<E>(
    tolerance: f64,
    max_repeats: u32,
    mut measure: impl FnMut() -> Result<f64, E>,
) -> Result<Settled, SettleError<E>> {
    let max_repeats = max_repeats.max(2);
    let mut usable = Vec::new();
    let mut previous: Option<f64> = None;
    let mut last = f64::NAN;
    for repeats in 1..=max_repeats {
        let x = measure().map_err(SettleError::Measure)?;
        last = x;
        if !(x.is_finite() && x > 0.0) {
            previous = None;
            continue;
        }
        usable.push(x);
        if let Some(p) = previous {
            let mean = (x + p) / 2.0;
            if (x - p).abs() <= tolerance * mean {
                return Ok(Settled {
                    value: mean,
                    spread: (x - p).abs() / 2.0,
                    repeats,
                    agreed: true,
                });
            }
        }
        previous = Some(x);
    }
    let Some(value) = median(&usable) else {
        return Err(SettleError::Unusable {
            repeats: max_repeats,
            last,
        });
    };
    let (lo, hi) = usable
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    Ok(Settled {
        value,
        // One usable estimate: nothing to compare it with; as uncertain as the tolerance
        // allows at least.
        spread: ((hi - lo) / 2.0).max(tolerance * value),
        repeats: max_repeats,
        agreed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    /// A measuring closure that returns `values` in turn.
    fn fake(values: &[f64]) -> impl FnMut() -> Result<f64, ()> + '_ {
        let mut i = 0;
        move || {
            let v = values[i.min(values.len() - 1)];
            i += 1;
            Ok(v)
        }
    }

    #[test]
    fn two_agreeing_estimates_settle_a_figure() {
        let s = settle(0.05, 5, fake(&[100.0, 102.0])).unwrap();
        assert_eq!(
            (s.value, s.spread, s.repeats, s.agreed),
            (101.0, 1.0, 2, true)
        );
        // Drifting, then steady: the last two.
        let s = settle(0.05, 5, fake(&[100.0, 130.0, 120.0, 121.0])).unwrap();
        assert_eq!(
            (s.value, s.spread, s.repeats, s.agreed),
            (120.5, 0.5, 4, true)
        );
    }

    #[test]
    fn an_unsteady_figure_reports_its_whole_range() {
        let s = settle(0.05, 4, fake(&[100.0, 130.0, 90.0, 120.0])).unwrap();
        assert!(!s.agreed);
        assert_eq!(s.repeats, 4);
        assert_eq!(s.value, 110.0);
        assert_eq!(s.spread, 20.0);
    }

    #[test]
    fn negative_and_non_finite_estimates_are_measured_again() {
        // Noise between two usable estimates breaks the pair: 50 and 51 agree only after it.
        let s = settle(0.05, 5, fake(&[50.0, -3.0, 51.0, 50.5])).unwrap();
        assert_eq!((s.value, s.repeats, s.agreed), (50.75, 4, true));
        let s = settle(0.05, 5, fake(&[f64::NAN, 10.0, 10.0])).unwrap();
        assert_eq!((s.value, s.spread, s.repeats), (10.0, 0.0, 3));
        // One usable estimate among noise: kept, with the tolerance as its spread.
        let s = settle(0.05, 3, fake(&[-1.0, 40.0, f64::INFINITY])).unwrap();
        assert!(!s.agreed);
        assert_eq!(s.value, 40.0);
        assert!((s.spread - 2.0).abs() < 1e-12);
        // Nothing usable: an error, never a figure.
        assert!(matches!(
            settle(0.05, 3, fake(&[-12.11, 0.0, -4.0])),
            Err(SettleError::Unusable { repeats: 3, last }) if last == -4.0
        ));
        assert_eq!(
            settle(0.05, 3, || Err::<f64, _>("broken")),
            Err(SettleError::Measure("broken"))
        );
    }
}
