//! ℓ_i(θ) = ½ (θ − x_i)ᵀ H (θ − x_i): the quadratic of METHOD.md §3/§5 with per-sample
//! structure. Its per-sample gradients are H(θ − x_i), so Σ = H·S·H with S the
//! covariance of the x_i: every estimator has a closed form to be tested against.

use crate::linalg::{axpy, dot, GradientMatrix};
use crate::objective::{check_batches, check_range, Objective};
use crate::Result;
use nalgebra::{DMatrix, DVector};
use std::ops::Range;

#[derive(Clone, Debug)]
pub struct Quadratic {
    hessian: DMatrix<f64>,
    centers: Vec<Vec<f64>>,
    /// x̄ and (1/N)·Σ ½(x_i − x̄)ᵀH(x_i − x̄): L(θ) = ½(θ − x̄)ᵀH(θ − x̄) + spread.
    mean: Vec<f64>,
    spread: f64,
}

impl Quadratic {
    /// `hessian` must be symmetric; `centers` are the x_i (at least one).
    pub fn new(hessian: DMatrix<f64>, centers: Vec<Vec<f64>>) -> Self {
        assert!(hessian.is_square() && !centers.is_empty());
        assert!(centers.iter().all(|c| c.len() == hessian.nrows()));
        let n = centers.len() as f64;
        let mut mean = vec![0.0; hessian.nrows()];
        for c in &centers {
            axpy(1.0 / n, c, &mut mean);
        }
        let mut q = Quadratic {
            hessian,
            centers,
            mean,
            spread: 0.0,
        };
        q.spread = q
            .centers
            .iter()
            .map(|c| {
                let mut r = c.clone();
                axpy(-1.0, &q.mean, &mut r);
                0.5 * dot(&r, &q.h_times(&r)) / n
            })
            .sum();
        q
    }

    /// L(θ) = ½ θᵀHθ: one sample at the origin.
    pub fn centered(hessian: DMatrix<f64>) -> Self {
        let d = hessian.nrows();
        Self::new(hessian, vec![vec![0.0; d]])
    }

    pub fn hessian_matrix(&self) -> &DMatrix<f64> {
        &self.hessian
    }

    fn h_times(&self, v: &[f64]) -> Vec<f64> {
        (&self.hessian * DVector::from_column_slice(v))
            .iter()
            .copied()
            .collect()
    }

    fn sample_gradient(&self, theta: &[f64], i: usize) -> Vec<f64> {
        let mut r = theta.to_vec();
        axpy(-1.0, &self.centers[i], &mut r);
        self.h_times(&r)
    }
}

impl Objective for Quadratic {
    fn dim(&self) -> usize {
        self.hessian.nrows()
    }

    fn num_samples(&self) -> usize {
        self.centers.len()
    }

    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let mut r = theta.to_vec();
        axpy(-1.0, &self.mean, &mut r);
        let grad = self.h_times(&r);
        Ok((0.5 * dot(&r, &grad) + self.spread, grad))
    }

    fn batch_loss(&self, theta: &[f64], samples: Range<usize>) -> Result<f64> {
        check_range(samples.clone(), self.num_samples())?;
        let total: f64 = self.centers[samples.clone()]
            .iter()
            .map(|c| {
                let mut r = theta.to_vec();
                axpy(-1.0, c, &mut r);
                0.5 * dot(&r, &self.h_times(&r))
            })
            .sum();
        Ok(total / samples.len() as f64)
    }

    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        check_batches(indices, batch_size, self.num_samples())?;
        let mut out = GradientMatrix::zeros(indices.len() / batch_size, self.dim());
        for (k, batch) in indices.chunks_exact(batch_size).enumerate() {
            for &i in batch {
                axpy(
                    1.0 / batch_size as f64,
                    &self.sample_gradient(theta, i),
                    out.row_mut(k),
                );
            }
        }
        Ok(out)
    }

    fn hvp(&self, _theta: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        Ok(self.h_times(v))
    }

    fn hessian(&self, _theta: &[f64]) -> Result<DMatrix<f64>> {
        Ok(self.hessian.clone())
    }
}
