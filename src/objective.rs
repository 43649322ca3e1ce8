//! The `Objective` seam: what every model offers the engine and the estimators.
//!
//! θ is one flat `f64` vector (METHOD.md §1) in the model's documented parameter order. The
//! closed-form toy computes in f64 directly; network objectives may compute in f32
//! internally and convert at this boundary (D·8 bytes per call, small next to a
//! forward/backward pass).

use crate::linalg::GradientMatrix;
use crate::Result;
use nalgebra::DMatrix;
use std::ops::Range;

pub trait Objective: Send + Sync {
    /// Number of parameters D.
    fn dim(&self) -> usize;

    /// Number of training samples N.
    fn num_samples(&self) -> usize;

    /// Full-batch loss L(θ) and gradient g0(θ) (METHOD.md §1).
    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)>;

    /// L(θ) alone.
    fn loss(&self, theta: &[f64]) -> Result<f64> {
        Ok(self.loss_and_gradient(theta)?.0)
    }

    /// Mean loss of the consecutive training samples `samples` at θ: what the per-batch
    /// sharpness estimator evaluates, each batch at its own perturbed θ (METHOD.md §3).
    /// Objectives that can only evaluate all their data answer for the whole range.
    fn batch_loss(&self, theta: &[f64], samples: Range<usize>) -> Result<f64> {
        if samples == (0..self.num_samples()) {
            return self.loss(theta);
        }
        Err(crate::Error::Numerics(format!(
            "this objective evaluates its loss over all {} samples only, not samples {}..{}",
            self.num_samples(),
            samples.start,
            samples.end
        )))
    }

    /// Mean gradients of consecutive batches: row k is g_B for
    /// B = `indices[k·batch_size .. (k+1)·batch_size]`. `indices.len()` must be a multiple
    /// of `batch_size`. Per-sample gradients are batches of one.
    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix>;

    /// The N × D per-sample gradient matrix (rows g_i).
    fn per_sample_gradients(&self, theta: &[f64]) -> Result<GradientMatrix> {
        let all: Vec<usize> = (0..self.num_samples()).collect();
        self.batch_gradients(theta, &all, 1)
    }

    /// Hessian-vector product H(θ)·v.
    fn hvp(&self, theta: &[f64], v: &[f64]) -> Result<Vec<f64>>;

    /// H(θ)·v for every v of a block. Models that can share work between directions
    /// (one forward pass, wider matrix products) override this; the default is one HVP
    /// each.
    fn hvp_block(&self, theta: &[f64], vs: &[&[f64]]) -> Result<Vec<Vec<f64>>> {
        vs.iter().map(|v| self.hvp(theta, v)).collect()
    }

    /// vᵀ·H(θ)·v for every v of a block: what trace estimators need (Tr(HΣ),
    /// Hutchinson). The default takes the block's HVPs.
    fn hessian_quadratic_forms(&self, theta: &[f64], vs: &[&[f64]]) -> Result<Vec<f64>> {
        Ok(self
            .hvp_block(theta, vs)?
            .iter()
            .zip(vs)
            .map(|(hv, v)| crate::linalg::dot(hv, v))
            .collect())
    }

    /// Relative residual at which Lanczos calls a Ritz pair of H converged: what the
    /// HVPs' arithmetic can resolve (f64 by default; f32 networks say 1e-5).
    fn hvp_tolerance(&self) -> f64 {
        1e-8
    }

    /// Dense Hessian. The default builds it column by column from D HVPs and
    /// symmetrises it: only sensible for small D (the toy, test oracles).
    fn hessian(&self, theta: &[f64]) -> Result<DMatrix<f64>> {
        let d = self.dim();
        let mut h = DMatrix::zeros(d, d);
        let mut e = vec![0.0; d];
        for j in 0..d {
            e[j] = 1.0;
            let col = self.hvp(theta, &e)?;
            e[j] = 0.0;
            h.column_mut(j).copy_from_slice(&col);
        }
        Ok(0.5 * (&h + h.transpose()))
    }
}

/// Checks that a flat vector (θ, an HVP direction) has the model's D entries, with an
/// error naming the model and both lengths.
pub fn check_len(model: &str, what: &str, len: usize, dim: usize) -> Result<()> {
    if len != dim {
        return Err(crate::Error::Numerics(format!(
            "{model}: {what} has {len} entries, expected D = {dim}"
        )));
    }
    Ok(())
}

/// Checks the contract of [`Objective::batch_gradients`] so every implementation
/// reports a bad request the same way.
pub fn check_batches(indices: &[usize], batch_size: usize, num_samples: usize) -> Result<()> {
    if batch_size == 0 || !indices.len().is_multiple_of(batch_size) {
        return Err(crate::Error::Numerics(format!(
            "batch_gradients: {} indices do not split into batches of {batch_size}",
            indices.len()
        )));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= num_samples) {
        return Err(crate::Error::Numerics(format!(
            "batch_gradients: sample index {bad} out of range (N = {num_samples})"
        )));
    }
    Ok(())
}

/// Checks that `samples` is a non-empty range of the N training samples, with an error
/// naming both.
pub fn check_range(samples: Range<usize>, num_samples: usize) -> Result<()> {
    if samples.is_empty() || samples.end > num_samples {
        return Err(crate::Error::Numerics(format!(
            "batch_loss: samples {}..{} are not a non-empty part of the N = {num_samples} samples",
            samples.start, samples.end
        )));
    }
    Ok(())
}
