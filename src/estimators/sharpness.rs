//! Expected sharpness E_{ν~N(0,δ²I)}[L(θ+ν)] − L(θ) by Monte Carlo (METHOD.md §3), with
//! four estimators of the same expectation that differ in variance per loss evaluation
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
//! - `per_batch`: the control variate batch by batch, each batch of consecutive samples
//!   at its own ν (see [`per_batch`]): the one that also helps at a minimum.
//!
//! The plain estimator takes M evaluations. `antithetic` and `control_variate` stop as
//! soon as their standard error is at most what the plain estimator's would be with M
//! evaluations at this θ (its per-sample spread comes free from the same draws: every
//! evaluation is a plain sample too), after at least [`MIN_EVALUATIONS`] and at most M:
//! where they cancel much (away from a minimum) they stop early, where they cannot (at a
//! minimum, where the spread comes from the even higher-order terms) they cost what the
//! plain one does. `per_batch` plans its passes for the same goal from a short pilot.
//!
//! The authors' released code averages |L(θ+ν) − L(θ)|; `absolute` gives that reading
//! (plain or antithetic: |rise| is not linear in ν, so no control variate applies).

use super::trace::{sample_variance, Estimate};
use crate::linalg::dot;
use crate::objective::Objective;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// How the Monte-Carlo average is formed; none spends more than M loss evaluations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharpnessEstimator {
    Plain,
    Antithetic,
    #[default]
    ControlVariate,
    PerBatch,
}

impl SharpnessEstimator {
    pub const ALL: [SharpnessEstimator; 4] = [
        SharpnessEstimator::Plain,
        SharpnessEstimator::Antithetic,
        SharpnessEstimator::ControlVariate,
        SharpnessEstimator::PerBatch,
    ];

    pub fn key(self) -> &'static str {
        match self {
            SharpnessEstimator::Plain => "plain",
            SharpnessEstimator::Antithetic => "antithetic",
            SharpnessEstimator::ControlVariate => "control_variate",
            SharpnessEstimator::PerBatch => "per_batch",
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
    /// Consecutive training samples per batch of the `per_batch` estimator.
    pub batch_size: usize,
    pub seed: u64,
}

/// The estimate at θ; `gradient` is g0(θ), needed by the control variate only.
pub fn expected_sharpness<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    gradient: Option<&[f64]>,
    options: &SharpnessOptions,
) -> Result<Estimate> {
    if options.estimator == SharpnessEstimator::PerBatch {
        return per_batch(objective, theta, options);
    }
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
        SharpnessEstimator::ControlVariate if options.absolute => return Err(signed_only()),
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

fn signed_only() -> Error {
    Error::Numerics(
        "expected sharpness: the control variate applies to the signed rise only (sharpness_abs = false)".into(),
    )
}

/// Shared-ν passes of the `per_batch` estimator that measure the plain estimator's spread
/// (and each batch's own) before it decides how many passes it needs.
pub fn pilot_passes(samples: usize) -> usize {
    (samples / 4).clamp(2, 30)
}

/// Passes the `per_batch` estimator adds at a time while its SE is above the goal.
const TOP_UP_PASSES: usize = 10;

/// What the `per_batch` estimator may hold of its batch gradients (N/b rows of D, f64).
pub const BATCH_GRADIENT_BYTES: usize = 1 << 30;

/// Bytes of the `per_batch` estimator's batch gradients: ⌈N/b⌉ rows of D in f64.
pub fn batch_gradient_bytes(num_samples: usize, batch_size: usize, dim: usize) -> usize {
    num_samples.div_ceil(batch_size.max(1)) * dim * std::mem::size_of::<f64>()
}

/// `per_batch`: the training set in consecutive batches of `batch_size`, each batch k at
/// its own ν_k in every pass, minus its own first-order term g_kᵀν_k (g_k: the batch's
/// mean gradient at θ): a pass is Σ_k (n_k/N)·(L_k(θ+ν_k) − L_k(θ) − g_kᵀν_k), whose mean
/// is E[L(θ+ν)] − L(θ) by linearity, at the cost of one loss evaluation. With one ν for
/// all samples (the other estimators) a ν that raises every sample's loss moves the whole
/// average; independent ν_k average those moves out, so a pass's variance is
/// Σ_k (n_k/N)²·Var_k instead of the full double sum over batch pairs (METHOD.md §3).
///
/// The plain spread the stopping goal needs is not visible in independent draws, so the
/// first [`pilot_passes`] share one ν across batches: they give the plain variance V and
/// each batch's Var_k, hence how many independent passes P match the plain SE with M
/// evaluations (P = ⌈M·Σ_k (n_k/N)²·Var_k / V⌉, within [pilot, M − pilot]). The estimate
/// is the mean of those P passes (fixed in advance, so its SE is not biased by stopping
/// on it); the pilot only sets P.
fn per_batch<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    options: &SharpnessOptions,
) -> Result<Estimate> {
    if options.absolute {
        return Err(signed_only());
    }
    let (n, dim) = (objective.num_samples(), objective.dim());
    let size = options.batch_size.clamp(1, n.max(1));
    let batches: Vec<Range<usize>> = (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect();
    let bytes = batch_gradient_bytes(n, size, dim);
    if bytes > BATCH_GRADIENT_BYTES {
        return Err(Error::Numerics(format!(
            "expected sharpness (per_batch): {} batch gradients of D = {dim} take {:.1} GB, over the {:.1} GB allowed; use control_variate or larger batches",
            batches.len(),
            bytes as f64 / 1e9,
            BATCH_GRADIENT_BYTES as f64 / 1e9
        )));
    }
    let whole = n / size * size;
    let mut gradients: Vec<Vec<f64>> = Vec::with_capacity(batches.len());
    if whole > 0 {
        let all: Vec<usize> = (0..whole).collect();
        let g = objective.batch_gradients(theta, &all, size)?;
        gradients.extend((0..g.rows()).map(|k| g.row(k).to_vec()));
    }
    if whole < n {
        let rest: Vec<usize> = (whole..n).collect();
        gradients.push(
            objective
                .batch_gradients(theta, &rest, rest.len())?
                .row(0)
                .to_vec(),
        );
    }
    let share: Vec<f64> = batches.iter().map(|b| b.len() as f64 / n as f64).collect();
    let account = crate::cpu::current();
    let base = batches
        .par_iter()
        .map(|b| crate::cpu::charging(&account, || objective.batch_loss(theta, b.clone())))
        .collect::<Result<Vec<f64>>>()?;
    // Every batch's (rise, first-order term) in pass `pass`; ν from its own ChaCha stream
    // (one for the whole pass when `shared`), so the result does not depend on threads.
    let one_pass = |pass: usize, shared: bool| -> Result<Vec<(f64, f64)>> {
        batches
            .par_iter()
            .enumerate()
            .map(|(k, b)| {
                let _charged = crate::cpu::Charged::to(&account);
                let mut rng = ChaCha12Rng::seed_from_u64(options.seed);
                let lane = if shared { u32::MAX as u64 } else { k as u64 };
                rng.set_stream(((pass as u64) << 32) | lane);
                let nu: Vec<f64> = (0..dim)
                    .map(|_| options.delta * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                let shifted: Vec<f64> = theta.iter().zip(&nu).map(|(t, v)| t + v).collect();
                let rise = objective.batch_loss(&shifted, b.clone())? - base[k];
                Ok((rise, dot(&gradients[k], &nu)))
            })
            .collect()
    };
    let samples = options.samples.max(2);
    let pilot = pilot_passes(samples);
    let mut plain = Vec::with_capacity(pilot);
    let mut corrected = vec![Vec::with_capacity(pilot); batches.len()];
    for pass in 0..pilot {
        let rises = one_pass(pass, true)?;
        plain.push(rises.iter().zip(&share).map(|((r, _), w)| w * r).sum());
        for (c, (r, first)) in corrected.iter_mut().zip(&rises) {
            c.push(r - first);
        }
    }
    let plain_var = sample_variance(&plain);
    let independent_var: f64 = corrected
        .iter()
        .zip(&share)
        .map(|(c, w)| w * w * sample_variance(c))
        .sum();
    let most = samples.saturating_sub(pilot).max(pilot);
    let planned = if plain_var > 0.0 {
        (samples as f64 * independent_var / plain_var).ceil() as usize
    } else {
        pilot
    }
    .clamp(pilot, most);
    let pass_value = |pass: usize| -> Result<f64> {
        Ok(one_pass(pass, false)?
            .iter()
            .zip(&share)
            .map(|((r, first), w)| w * (r - first))
            .sum())
    };
    let mut values = (pilot..pilot + planned)
        .map(pass_value)
        .collect::<Result<Vec<f64>>>()?;
    // The plan comes from the pilot's variances, themselves estimates: passes are added
    // while the SE is still above the goal (at most M evaluations in all).
    let goal = (plain_var / samples as f64).sqrt();
    while values.len() < most && Estimate::from_samples(&values).stderr > goal {
        let next = pilot + values.len();
        for pass in next..(next + TOP_UP_PASSES).min(pilot + most) {
            values.push(pass_value(pass)?);
        }
    }
    Ok(Estimate::from_samples(&values))
}
