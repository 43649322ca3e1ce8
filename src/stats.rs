//! Statistics over independent runs (seeds): mean, standard deviation and Student-t
//! confidence intervals, paired differences, and the exact sign test. Quantiles and
//! binomial tails come from `statrs`. Definitions: docs/METHOD.md §7.

use serde::Serialize;
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, StudentsT};

/// The confidence level of every interval `compare` reports.
pub const LEVEL: f64 = 0.95;

/// n values: mean, sample standard deviation (n − 1) and the two-sided `level` Student-t
/// interval of the mean, mean ± t(1 − α/2, n − 1)·sd/√n (NaN bounds for n < 2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Summary {
    pub fn of(values: &[f64], level: f64) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Summary {
                n,
                mean,
                sd: f64::NAN,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
            });
        }
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
        let half = t_quantile(0.5 + level / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt();
        Some(Summary {
            n,
            mean,
            sd,
            ci_low: mean - half,
            ci_high: mean + half,
        })
    }

    /// Half the interval's width (NaN without one).
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// The exact two-sided sign test of "the median difference is 0": positive and
/// negative differences (exact zeros are ties, left out), and
/// p = min(1, 2·P(X ≤ min(n₊, n₋))) for X ~ Binomial(n₊ + n₋, ½).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignTest {
    pub positive: usize,
    pub negative: usize,
    pub ties: usize,
    pub p_value: f64,
}

impl SignTest {
    pub fn of(differences: &[f64]) -> SignTest {
        let positive = differences.iter().filter(|&&d| d > 0.0).count();
        let negative = differences.iter().filter(|&&d| d < 0.0).count();
        let ties = differences.len() - positive - negative;
        let n = (positive + negative) as u64;
        let p_value = if n == 0 {
            1.0
        } else {
            let tail = Binomial::new(0.5, n)
                .map(|b| b.cdf(positive.min(negative) as u64))
                .unwrap_or(f64::NAN);
            (2.0 * tail).min(1.0)
        };
        SignTest {
            positive,
            negative,
            ties,
            p_value,
        }
    }
}

/// Paired differences x − baseline over the seeds both have: their summary (the
/// paired t interval) and the sign test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Paired {
    pub difference: Summary,
    pub sign: SignTest,
}

impl Paired {
    pub fn of(differences: &[f64], level: f64) -> Option<Paired> {
        Some(Paired {
            difference: Summary::of(differences, level)?,
            sign: SignTest::of(differences),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn t_quantiles_match_closed_forms() {
        // df = 1 is Cauchy: t = tan(π(p − ½)); df = 2: t = (2p − 1)/√(2p(1 − p)).
        for p in [0.6, 0.9, 0.975, 0.995] {
            let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
            assert!((t_quantile(p, 1.0) - cauchy).abs() < 1e-8 * cauchy.abs().max(1.0));
            let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
            assert!((t_quantile(p, 2.0) - two).abs() < 1e-8 * two.abs().max(1.0));
        }
        // Other df: the quantile's CDF, integrated here from the density by Simpson's
        // rule (the normalising Γ ratio by its half-integer recurrence), is p.
        for df in [3u32, 4, 9, 29, 99] {
            let t = t_quantile(0.975, f64::from(df));
            let cdf = 0.5 + simpson(|x| t_density(x, df), 0.0, t, 20_000);
            assert!((cdf - 0.975).abs() < 1e-9, "df {df}: t {t}, CDF {cdf}");
        }
    }

    /// Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) (1 + x²/ν)^(−(ν+1)/2).
    fn t_density(x: f64, df: u32) -> f64 {
        // Γ(a + 1) = a Γ(a), from Γ(1) = 1 and Γ(½) = √π.
        let gamma_half = |k: u32| -> f64 {
            // Γ(k/2)
            let (mut g, mut a) = if k.is_multiple_of(2) {
                (1.0, 1.0)
            } else {
                (std::f64::consts::PI.sqrt(), 0.5)
            };
            while a < f64::from(k) / 2.0 {
                g *= a;
                a += 1.0;
            }
            g
        };
        let nu = f64::from(df);
        gamma_half(df + 1) / ((nu * std::f64::consts::PI).sqrt() * gamma_half(df))
            * (1.0 + x * x / nu).powf(-(nu + 1.0) / 2.0)
    }

    fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
        let h = (b - a) / n as f64;
        let inner: f64 = (1..n)
            .map(|i| f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 })
            .sum();
        (f(a) + f(b) + inner) * h / 3.0
    }

    #[test]
    fn summary_by_hand() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-15);
        let sd = (5.0f64 / 3.0).sqrt();
        assert!((s.sd - sd).abs() < 1e-14);
        let half = t_quantile(0.975, 3.0) * sd / 2.0;
        assert!((s.half_width() - half).abs() < 1e-12);
        assert!(Summary::of(&[], 0.95).is_none());
        assert!(Summary::of(&[3.0], 0.95).unwrap().ci_low.is_nan());
    }

    /// The interval covers the true mean in 95 % of repeated experiments: 4,000
    /// experiments of n = 5 normal draws, coverage within 4 standard errors of 0.95.
    #[test]
    fn t_interval_coverage() {
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(7);
        let normal = Normal::new(3.0, 2.0).unwrap();
        let trials = 4000;
        let covered = (0..trials)
            .filter(|_| {
                let xs: Vec<f64> = (0..5).map(|_| normal.sample(&mut rng)).collect();
                let s = Summary::of(&xs, LEVEL).unwrap();
                s.ci_low <= 3.0 && 3.0 <= s.ci_high
            })
            .count();
        let rate = covered as f64 / trials as f64;
        let se = (LEVEL * (1.0 - LEVEL) / trials as f64).sqrt();
        assert!((rate - LEVEL).abs() < 4.0 * se, "coverage {rate}");
    }

    /// Against enumeration of every sign pattern under the null.
    #[test]
    fn sign_test_by_enumeration() {
        for n in 1..=12usize {
            for k in 0..=n {
                let d: Vec<f64> = (0..n).map(|i| if i < k { 1.0 } else { -1.0 }).collect();
                let t = SignTest::of(&d);
                let observed = k.min(n - k);
                let extreme = (0u32..1 << n)
                    .filter(|m| {
                        let pos = m.count_ones() as usize;
                        pos.min(n - pos) <= observed
                    })
                    .count();
                let exact = extreme as f64 / f64::from(1u32 << n);
                assert!((t.p_value - exact).abs() < 1e-12, "n {n} k {k}");
            }
        }
        let t = SignTest::of(&[0.0, 1.0, -2.0, 3.0]);
        assert_eq!((t.positive, t.negative, t.ties), (2, 1, 1));
        assert_eq!(SignTest::of(&[0.0]).p_value, 1.0);
    }
}
