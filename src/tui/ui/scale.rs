//! Honest sparklines: ratatui's `Sparkline` takes `u64`, so floats are mapped onto
//! 1..=100 over the min–max of the window shown (log10 for metrics that span decades,
//! when all values are positive), and the real min / max / last are printed beside it.

/// A series scaled for a sparkline of a given width.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaled {
    pub bars: Vec<u64>,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub log: bool,
}

/// Highest bar value; the sparkline's `max`.
pub const TOP: u64 = 100;

/// Averages `values` into at most `width` consecutive buckets, then scales the bucket
/// means. `None` when there is nothing finite to show.
pub fn scale(values: &[f64], width: usize, prefer_log: bool) -> Option<Scaled> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || width == 0 {
        return None;
    }
    let buckets = finite.len().min(width);
    let means: Vec<f64> = (0..buckets)
        .map(|b| {
            let lo = b * finite.len() / buckets;
            let hi = ((b + 1) * finite.len() / buckets).max(lo + 1);
            finite[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
        })
        .collect();
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log = prefer_log && min > 0.0;
    let t = |v: f64| if log { v.log10() } else { v };
    let (lo, hi) = (
        means.iter().copied().map(t).fold(f64::INFINITY, f64::min),
        means
            .iter()
            .copied()
            .map(t)
            .fold(f64::NEG_INFINITY, f64::max),
    );
    let bars = means
        .iter()
        .map(|&m| {
            // Differences at rounding level are not a signal: show a flat line.
            if hi - lo > 1e-9 * hi.abs().max(lo.abs()) {
                1 + ((t(m) - lo) / (hi - lo) * (TOP - 1) as f64).round() as u64
            } else {
                TOP / 2
            }
        })
        .collect();
    Some(Scaled {
        bars,
        min,
        max,
        last: *finite.last().expect("non-empty"),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_maps_min_and_max_to_the_ends() {
        let s = scale(&[2.0, 4.0, 6.0], 10, false).unwrap();
        assert_eq!(s.bars, vec![1, 51, 100]);
        assert_eq!((s.min, s.max, s.last, s.log), (2.0, 6.0, 6.0, false));
    }

    #[test]
    fn log_scale_spreads_decades_evenly() {
        let s = scale(&[1e-3, 1e-2, 1e-1, 1.0], 4, true).unwrap();
        assert!(s.log);
        assert_eq!(s.bars, vec![1, 34, 67, 100]);
    }

    #[test]
    fn zeros_or_negatives_fall_back_to_linear() {
        assert!(!scale(&[0.0, 1.0, 10.0], 4, true).unwrap().log);
        assert!(!scale(&[-1.0, 1.0], 4, true).unwrap().log);
    }

    #[test]
    fn buckets_average_and_constant_series_sit_in_the_middle() {
        let s = scale(&[1.0, 3.0, 5.0, 7.0], 2, false).unwrap();
        assert_eq!(s.bars, vec![1, 100]); // bucket means 2 and 6
        assert_eq!(s.max, 7.0); // the real max, not the bucket max
        assert_eq!(scale(&[3.0; 5], 3, false).unwrap().bars, vec![50; 3]);
    }

    #[test]
    fn rounding_noise_is_flat() {
        let s = scale(&[800.0, 800.0 * (1.0 + 1e-14), 800.0], 3, true).unwrap();
        assert_eq!(s.bars, vec![TOP / 2; 3]);
    }

    #[test]
    fn non_finite_values_are_skipped_and_empty_is_none() {
        let s = scale(&[f64::NAN, 1.0, f64::INFINITY, 2.0], 5, false).unwrap();
        assert_eq!((s.min, s.max, s.last), (1.0, 2.0, 2.0));
        assert!(scale(&[f64::NAN], 5, false).is_none());
        assert!(scale(&[], 5, false).is_none());
    }
}
