//! The covariance shape a Gaussian noise is drawn from, before scaling.

use crate::linalg::{dot, Eigenpairs};
use nalgebra::DMatrix;
use rand::Rng;
use rand_distr::StandardNormal;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NoiseShape {
    /// N(0, I_D)
    Isotropic { dim: usize },
    /// N(0, diag(d))
    Diagonal(Vec<f64>),
    /// N(0, Σ_j c_j w_j w_jᵀ), sampled as z = Σ_j √c_j·ξ_j·w_j (METHOD.md §2): never a D×D matrix.
    LowRank(Eigenpairs),
}

impl NoiseShape {
    /// A low-rank shape from eigenpairs; negative eigenvalues (a Hessian away from a
    /// minimum) cannot be a covariance and are clamped to zero.
    pub fn low_rank(mut pairs: Eigenpairs) -> Self {
        pairs.values.iter_mut().for_each(|c| *c = c.max(0.0));
        NoiseShape::LowRank(pairs)
    }

    pub fn dim(&self) -> Option<usize> {
        match self {
            NoiseShape::Isotropic { dim } => Some(*dim),
            NoiseShape::Diagonal(d) => Some(d.len()),
            NoiseShape::LowRank(p) => p.vectors.first().map(Vec::len),
        }
    }

    /// Tr C = E‖z‖².
    pub fn trace(&self) -> f64 {
        match self {
            NoiseShape::Isotropic { dim } => *dim as f64,
            NoiseShape::Diagonal(d) => d.iter().sum(),
            NoiseShape::LowRank(p) => p.values.iter().sum(),
        }
    }

    /// out ← out + scale·z, z ~ N(0, C).
    pub fn add_sample<R: Rng + ?Sized>(&self, scale: f64, rng: &mut R, out: &mut [f64]) {
        match self {
            NoiseShape::Isotropic { .. } => {
                for o in out.iter_mut() {
                    let xi: f64 = rng.sample(StandardNormal);
                    *o += scale * xi;
                }
            }
            NoiseShape::Diagonal(d) => {
                for (o, di) in out.iter_mut().zip(d) {
                    let xi: f64 = rng.sample(StandardNormal);
                    *o += scale * di.sqrt() * xi;
                }
            }
            NoiseShape::LowRank(p) => {
                for (c, w) in p.values.iter().zip(&p.vectors) {
                    let xi: f64 = rng.sample(StandardNormal);
                    crate::linalg::axpy(scale * c.sqrt() * xi, w, out);
                }
            }
        }
    }

    /// Tr(H C) for a dense H (METHOD.md §3's indicator for this noise's shape).
    pub fn tr_h(&self, h: &DMatrix<f64>) -> f64 {
        match self {
            NoiseShape::Isotropic { .. } => h.trace(),
            NoiseShape::Diagonal(d) => d.iter().enumerate().map(|(i, di)| di * h[(i, i)]).sum(),
            NoiseShape::LowRank(p) => p
                .values
                .iter()
                .zip(&p.vectors)
                .map(|(c, w)| {
                    let hw = h * nalgebra::DVector::from_column_slice(w);
                    c * dot(w, hw.as_slice())
                })
                .sum(),
        }
    }

    /// C as a dense matrix (small D: tests, the toy).
    pub fn dense(&self, dim: usize) -> DMatrix<f64> {
        match self {
            NoiseShape::Isotropic { .. } => DMatrix::identity(dim, dim),
            NoiseShape::Diagonal(d) => {
                DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(d))
            }
            NoiseShape::LowRank(p) => p.dense(dim),
        }
    }
}
