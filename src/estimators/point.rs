//! Everything estimated at one θ, computed at most once and shared by the noise of a
//! dynamics and by its metrics.

use super::covariance::GradientCovariance;
use super::hessian;
use crate::dynamics::CovarianceSource;
use crate::linalg::Eigenpairs;
use crate::objective::Objective;
use crate::{Error, Result};
use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use rand::Rng;

pub struct AtPoint<'a, O: Objective + ?Sized> {
    objective: &'a O,
    theta: &'a [f64],
    loss_gradient: Option<(f64, Vec<f64>)>,
    sigma: Option<GradientCovariance>,
    noise_covariance: Option<GradientCovariance>,
    /// Whether `noise_covariance` came from batches partitioning all N samples: then
    /// their mean gradient is g0 (METHOD.md §2).
    covariance_partitions_all: bool,
    hessian: Option<DMatrix<f64>>,
    hessian_eigen: Option<Eigenpairs>,
}

impl<'a, O: Objective + ?Sized> AtPoint<'a, O> {
    pub fn new(objective: &'a O, theta: &'a [f64]) -> Self {
        AtPoint {
            objective,
            theta,
            loss_gradient: None,
            sigma: None,
            noise_covariance: None,
            covariance_partitions_all: false,
            hessian: None,
            hessian_eigen: None,
        }
    }

    pub fn objective(&self) -> &'a O {
        self.objective
    }

    pub fn theta(&self) -> &'a [f64] {
        self.theta
    }

    /// L(θ) and g0(θ).
    pub fn loss_and_gradient(&mut self) -> Result<(f64, &[f64])> {
        if self.loss_gradient.is_none() {
            self.loss_gradient = Some(self.objective.loss_and_gradient(self.theta)?);
        }
        let (l, g) = self.loss_gradient.as_ref().expect("just computed");
        Ok((*l, g))
    }

    /// g0(θ) without the loss: the mean of gradients already computed here when they
    /// cover every sample once (Σ's per-sample rows, or the batch rows of an exact
    /// partition: GLD dynamic and diag estimate those every iteration), else a full pass.
    pub fn gradient(&mut self) -> Result<&[f64]> {
        let from_rows = self.loss_gradient.is_none()
            && (self.sigma.is_some()
                || self.noise_covariance.is_some() && self.covariance_partitions_all);
        if !from_rows {
            return Ok(self.loss_and_gradient()?.1);
        }
        let rows = self
            .sigma
            .as_ref()
            .or(self.noise_covariance.as_ref())
            .expect("checked above");
        Ok(rows.mean())
    }

    /// Σ of Eq. 1, from the N per-sample gradients.
    pub fn sigma(&mut self) -> Result<&GradientCovariance> {
        if self.sigma.is_none() {
            self.sigma = Some(GradientCovariance::per_sample(
                self.objective.per_sample_gradients(self.theta)?,
            )?);
        }
        Ok(self.sigma.as_ref().expect("just computed"))
    }

    /// The minibatch-noise covariance C_m ≈ Σ/m (covariance of g_B − g0, METHOD.md §2):
    /// from per-sample gradients (Σ of Eq. 1, divided by m) or from the K = ⌊N/m⌋
    /// minibatch gradients of a fresh random partition (1/(K − 1)).
    pub fn noise_covariance<R: Rng + ?Sized>(
        &mut self,
        source: CovarianceSource,
        batch_size: usize,
        rng: &mut R,
    ) -> Result<&GradientCovariance> {
        if self.noise_covariance.is_none() {
            let cov = match source {
                CovarianceSource::PerSample => {
                    self.sigma()?.clone().scaled(1.0 / batch_size as f64)
                }
                CovarianceSource::Minibatches => {
                    let n = self.objective.num_samples();
                    let k = n / batch_size;
                    if k < 2 {
                        return Err(Error::Numerics(format!(
                            "minibatch covariance: N = {n} samples give {k} batches of {batch_size}; need at least 2"
                        )));
                    }
                    let mut order: Vec<usize> = (0..n).collect();
                    order.shuffle(rng);
                    order.truncate(k * batch_size);
                    self.covariance_partitions_all = k * batch_size == n;
                    GradientCovariance::minibatches(
                        self.objective
                            .batch_gradients(self.theta, &order, batch_size)?,
                    )?
                }
            };
            self.noise_covariance = Some(cov);
        }
        Ok(self.noise_covariance.as_ref().expect("just computed"))
    }

    pub fn hessian(&mut self) -> Result<&DMatrix<f64>> {
        if self.hessian.is_none() {
            self.hessian = Some(self.objective.hessian(self.theta)?);
        }
        Ok(self.hessian.as_ref().expect("just computed"))
    }

    /// The `k` largest Hessian eigenpairs; `warm` (the previous ones) seeds Lanczos.
    pub fn hessian_top(&mut self, k: usize, warm: Option<&Eigenpairs>) -> Result<Eigenpairs> {
        if self.hessian_eigen.as_ref().is_none_or(|e| e.len() < k) {
            let pairs = match &self.hessian {
                Some(h) => crate::linalg::symmetric_eigen(h.clone()).truncate(k),
                None => hessian::top_eigenpairs(self.objective, self.theta, k, warm)?,
            };
            self.hessian_eigen = Some(pairs);
        }
        Ok(self
            .hessian_eigen
            .clone()
            .expect("just computed")
            .truncate(k))
    }
}
