//! Gradient covariance from a set of gradients (METHOD.md §1 Eq. 1, §2 "Estimating Σ_t").
//!
//! C = factor · Σ_k a_k a_kᵀ with a_k = g_k − ḡ the centred rows. Everything is read
//! off the centred rows without forming a D×D matrix when D is large: the trace and
//! diagonal are sums of squares, the top eigenpairs come from the K×K Gram matrix
//! (eigenvectors w = Aᵀe/‖Aᵀe‖), and Tr(HC) = factor·Σ_k a_kᵀ H a_k.

use crate::linalg::{dot, symmetric_eigen, Eigenpairs, GradientMatrix};
use crate::{Error, Result};
use nalgebra::DMatrix;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug)]
pub struct GradientCovariance {
    /// Shared, so that Σ and Σ/m are one matrix.
    centered: Arc<GradientMatrix>,
    factor: f64,
    /// AᵀA, formed at most once (small D only) and shared by the scaled copies.
    gram_dense: Arc<OnceLock<DMatrix<f64>>>,
    /// The mean of the gradient rows (g0 when they are the per-sample gradients or the
    /// batch gradients of an exact partition).
    mean: Arc<Vec<f64>>,
}

impl GradientCovariance {
    /// Σ of Eq. 1 from the N per-sample gradients: centred on their mean (= g0), 1/N.
    pub fn per_sample(mut gradients: GradientMatrix) -> Result<Self> {
        let n = gradients.rows();
        if n < 1 {
            return Err(Error::Numerics(
                "per-sample covariance of no gradients".into(),
            ));
        }
        let mean = gradients.mean();
        gradients.center(&mean);
        Ok(GradientCovariance {
            centered: Arc::new(gradients),
            gram_dense: Arc::default(),
            factor: 1.0 / n as f64,
            mean: Arc::new(mean),
        })
    }

    /// The minibatch-noise covariance Σ/m from the K minibatch gradients of a partition
    /// of the training set (METHOD.md §2): centred on their mean (= g0), 1/(K − 1).
    pub fn minibatches(mut gradients: GradientMatrix) -> Result<Self> {
        let k = gradients.rows();
        if k < 2 {
            return Err(Error::Numerics(format!(
                "minibatch covariance needs at least 2 batch gradients, got {k}"
            )));
        }
        let mean = gradients.mean();
        gradients.center(&mean);
        Ok(GradientCovariance {
            centered: Arc::new(gradients),
            gram_dense: Arc::default(),
            factor: 1.0 / (k - 1) as f64,
            mean: Arc::new(mean),
        })
    }

    /// The same covariance multiplied by `s` (e.g. Σ → Σ/m).
    pub fn scaled(mut self, s: f64) -> Self {
        self.factor *= s;
        self
    }

    pub fn dim(&self) -> usize {
        self.centered.dim()
    }

    /// The mean of the gradients it was estimated from.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Number of gradients it was estimated from.
    pub fn sample_count(&self) -> usize {
        self.centered.rows()
    }

    pub fn trace(&self) -> f64 {
        self.factor * self.centered.iter_rows().map(|a| dot(a, a)).sum::<f64>()
    }

    pub fn diagonal(&self) -> Vec<f64> {
        let mut d = vec![0.0; self.dim()];
        for a in self.centered.iter_rows() {
            for (di, ai) in d.iter_mut().zip(a) {
                *di += self.factor * ai * ai;
            }
        }
        d
    }

    /// vᵀ C v
    pub fn quad_form(&self, v: &[f64]) -> f64 {
        self.factor
            * self
                .centered
                .iter_rows()
                .map(|a| dot(a, v).powi(2))
                .sum::<f64>()
    }

    /// Tr(H C) = factor · Σ_k a_kᵀ H a_k, with H given by its products (METHOD.md §3).
    pub fn tr_h(&self, mut hvp: impl FnMut(&[f64]) -> Result<Vec<f64>>) -> Result<f64> {
        self.tr_h_block(|vs| vs.iter().map(|v| Ok(dot(v, &hvp(v)?))).collect())
    }

    /// Tr(H C) from H's quadratic forms vᵀHv of a block of vectors (all K centred rows
    /// in one call: `Objective::hessian_quadratic_forms`).
    pub fn tr_h_block(
        &self,
        mut quadratic_forms: impl FnMut(&[&[f64]]) -> Result<Vec<f64>>,
    ) -> Result<f64> {
        let rows: Vec<&[f64]> = self.centered.iter_rows().collect();
        let forms = quadratic_forms(&rows)?;
        if forms.len() != rows.len() {
            return Err(Error::Numerics(format!(
                "Tr(HC): {} quadratic forms for {} rows",
                forms.len(),
                rows.len()
            )));
        }
        Ok(self.factor * forms.iter().sum::<f64>())
    }

    /// Tr(H C) for a dense H (small D): Σ_ij H_ij·C_ij.
    pub fn tr_h_dense(&self, h: &DMatrix<f64>) -> f64 {
        self.dense().component_mul(h).sum()
    }

    /// Dense D×D matrix (small D only).
    pub fn dense(&self) -> DMatrix<f64> {
        self.gram_dense.get_or_init(|| {
            let d = self.dim();
            // Column-major lower triangle accumulated row by row, then mirrored.
            let mut c = vec![0.0; d * d];
            for a in self.centered.iter_rows() {
                for j in 0..d {
                    let aj = a[j];
                    let col = &mut c[j * d..(j + 1) * d];
                    for i in j..d {
                        col[i] += a[i] * aj;
                    }
                }
            }
            for j in 0..d {
                for i in j + 1..d {
                    c[i * d + j] = c[j * d + i];
                }
            }
            DMatrix::from_vec(d, d, c)
        }) * self.factor
    }

    /// The `k` leading eigenpairs with positive eigenvalue. Dense D×D when D ≤ K,
    /// otherwise through the K×K Gram matrix factor·A·Aᵀ, which shares its non-zero
    /// eigenvalues with C.
    pub fn top_eigenpairs(&self, k: usize) -> Eigenpairs {
        let (rows, d) = (self.centered.rows(), self.dim());
        let pairs = if d <= rows {
            symmetric_eigen(self.dense())
        } else {
            let mut gram = DMatrix::zeros(rows, rows);
            let rows_vec: Vec<&[f64]> = self.centered.iter_rows().collect();
            for i in 0..rows {
                for j in 0..=i {
                    let g = self.factor * dot(rows_vec[i], rows_vec[j]);
                    gram[(i, j)] = g;
                    gram[(j, i)] = g;
                }
            }
            let small = symmetric_eigen(gram);
            let mut vectors = Vec::with_capacity(small.len());
            for e in &small.vectors {
                let mut w = vec![0.0; d];
                for (a, ek) in rows_vec.iter().zip(e) {
                    crate::linalg::axpy(*ek, a, &mut w);
                }
                let n = dot(&w, &w).sqrt();
                w.iter_mut().for_each(|x| *x /= n.max(f64::MIN_POSITIVE));
                vectors.push(w);
            }
            Eigenpairs {
                values: small.values,
                vectors,
            }
        };
        // Keep only the numerically positive part of the spectrum.
        let cutoff = pairs.values.first().copied().unwrap_or(0.0).max(0.0) * 1e-12;
        let keep = pairs.values.iter().take_while(|&&v| v > cutoff).count();
        pairs.truncate(keep.min(k))
    }
}
