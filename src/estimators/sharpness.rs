//! Expected sharpness E_{ν~N(0,δ²I)}[L(θ+ν)] − L(θ) by Monte Carlo (METHOD.md §3), with
//! three estimators of the same expectation that differ in variance per loss evaluation
//! (METHOD.md §3, "Variance of the sharpness estimate"):
//!
//! - `plain`: (1/M)·Σ_j L(θ+ν_j) − L(θ). Its variance is dominated by the first-order
//!   term gᵀν, whose variance δ²‖g‖² dwarfs the quantity measured (≈ δ²·Tr H / 2).
//! - `antithetic`: M/2 pairs (ν, −ν), ½(L(θ+ν) + L(θ−ν)) − L(θ): every odd-order term
//!   of the Taylor expansion cancels exactly in each pair.
//! - `control_variate`: L(θ+ν_j) − L(θ) − gᵀν_j with the full-batch gradient g at θ
//!   (E[gᵀν] = 0, so the mean is unchanged): the first-order term is removed from every
//!   sample, one loss evaluation each — half the variance per evaluation of `antithetic`
//!   when third-order terms are small, which is what δ = 0.01 gives.
//!
//! The plain estimator takes M evaluations. The other two stop as soon as their standard
//! error is at most what the plain estimator's would be with M evaluations at this θ
//! (its per-sample spread comes free from the same draws: every evaluation is a plain
//! sample too), after at least [`MIN_EVALUATIONS`] and at most M: where they cancel
//! much (away from a minimum) they stop early, where they cannot (at a minimum, where
//! the spread comes from the even higher-order terms) they cost what the plain one does.
//!
//! The authors' released code averages |L(θ+ν) − L(θ)|; `absolute` gives that reading
//! (plain or antithetic: |rise| is not linear in ν, so no control variate applies).

use super::trace::Estimate;
use crate::linalg::dot;
use crate::objective::Objective;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// How the Monte-Carlo average is formed; every kind spends M loss evaluations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharpnessEstimator {
    Plain,
    Antithetic,
    #[default]
    ControlVariate,
}

impl SharpnessEstimator {
    pub const ALL: [SharpnessEstimator; 3] = [
        SharpnessEstimator::Plain,
        SharpnessEstimator::Antithetic,
        SharpnessEstimator::ControlVariate,
    ];

    pub fn key(self) -> &'static str {
        match self {
            SharpnessEstimator::Plain => "plain",
            SharpnessEstimator::Antithetic => "antithetic",
            SharpnessEstimator::ControlVariate => "control_variate",
        }
    }
}

/// Fewest loss evaluations before the variance-reduced estimators may stop.
pub const MIN_EVALUATIONS: usize = 100;

/// Draws of ν between two stopping checks (an antithetic draw is two evaluations).
const CHECK_EVERY: usize = 50;

/// What the estimate is of and how it is formed.
#[derive(Clone, Copy, Debug)]
pub struct SharpnessOptions {
    pub delta: f64,
    /// Loss evaluations M of the plain estimator, whose standard error the others match
    /// (and whose cost they never exceed).
    pub samples: usize,
    pub absolute: bool,
    pub estimator: SharpnessEstimator,
    pub seed: u64,
}

/// The estimate at θ; `gradient` is g0(θ), needed by the control variate only.
pub fn expected_sharpness<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    gradient: Option<&[f64]>,
    options: &SharpnessOptions,
) -> Result<Estimate> {
    let base = objective.loss(theta)?;
    let mut rng = ChaCha12Rng::seed_from_u64(options.seed);
    let mut nu = vec![0.0; theta.len()];
    let mut shifted = theta.to_vec();
    let mut rise = |nu: &[f64], sign: f64| -> Result<f64> {
        for ((s, t), n) in shifted.iter_mut().zip(theta).zip(nu) {
            *s = t + sign * n;
        }
        let rise = objective.loss(&shifted)? - base;
        Ok(if options.absolute { rise.abs() } else { rise })
    };
    let mut draw = |nu: &mut [f64]| {
        for n in nu.iter_mut() {
            *n = options.delta * rng.sample::<f64, _>(StandardNormal);
        }
    };
    let samples = options.samples.max(2);
    if options.estimator == SharpnessEstimator::Plain {
        let values = (0..samples)
            .map(|_| {
                draw(&mut nu);
                rise(&nu, 1.0)
            })
            .collect::<Result<Vec<f64>>>()?;
        return Ok(Estimate::from_samples(&values));
    }
    let gradient = match options.estimator {
        SharpnessEstimator::ControlVariate if options.absolute => {
            return Err(Error::Numerics(
                "expected sharpness: the control variate applies to the signed rise only (sharpness_abs = false)".into(),
            ))
        }
        SharpnessEstimator::ControlVariate => Some(gradient.ok_or_else(|| {
            Error::Numerics("expected sharpness: the control variate needs g0(θ)".into())
        })?),
        _ => None,
    };
    // `values`: the estimator's samples; `plain`: every evaluation as a plain sample.
    let (mut values, mut plain) = (Vec::new(), Vec::new());
    loop {
        for _ in 0..CHECK_EVERY {
            draw(&mut nu);
            let up = rise(&nu, 1.0)?;
            plain.push(up);
            match gradient {
                Some(g) => values.push(up - dot(g, &nu)),
                None => {
                    let down = rise(&nu, -1.0)?;
                    plain.push(down);
                    values.push(0.5 * (up + down));
                }
            }
            if plain.len() >= samples {
                break;
            }
        }
        let done = plain.len() >= samples
            || plain.len() >= MIN_EVALUATIONS.min(samples) && {
                let matched = Estimate::from_samples(&plain).stderr
                    * (plain.len() as f64 / samples as f64).sqrt();
                Estimate::from_samples(&values).stderr <= matched
            };
        if done {
            break;
        }
    }
    Ok(Estimate::from_samples(&values))
}
