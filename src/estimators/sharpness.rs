//! Expected sharpness E_{ν~N(0,δ²I)}[L(θ+ν)] − L(θ) by Monte Carlo (METHOD.md §3). The
//! authors' released code averages |L(θ+ν) − L(θ)|; `absolute` gives that reading.

use super::trace::Estimate;
use crate::objective::Objective;
use crate::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;

pub fn expected_sharpness<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    delta: f64,
    samples: usize,
    absolute: bool,
    seed: u64,
) -> Result<Estimate> {
    let base = objective.loss(theta)?;
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut shifted = theta.to_vec();
    let rises = (0..samples.max(1))
        .map(|_| {
            for (s, t) in shifted.iter_mut().zip(theta) {
                let z: f64 = rng.sample(StandardNormal);
                *s = t + delta * z;
            }
            let rise = objective.loss(&shifted)? - base;
            Ok(if absolute { rise.abs() } else { rise })
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(Estimate::from_samples(&rises))
}
