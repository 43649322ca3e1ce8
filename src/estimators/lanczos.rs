//! Top-k eigenpairs of a symmetric operator known only through products (the Hessian
//! through HVPs): Lanczos with full reorthogonalisation, grown until the k leading Ritz
//! pairs have converged, optionally warm-started from the previous eigenvectors (a
//! refresh every few iterations then costs a handful of products instead of a dense
//! D × D Hessian rebuilt from D HVPs). Also the engine of stochastic Lanczos quadrature.

use crate::linalg::{axpy, dot, symmetric_eigen, Eigenpairs};
use crate::{Error, Result};
use nalgebra::DMatrix;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

#[derive(Clone, Debug)]
pub struct LanczosOptions {
    /// Eigenpairs wanted.
    pub k: usize,
    /// Most operator products allowed.
    pub max_products: usize,
    /// A Ritz pair has converged when its residual ‖A·w − θ·w‖ ≤ tol·|θ_1|.
    pub tol: f64,
    /// Seed of the random part of the start vector.
    pub seed: u64,
    /// Ritz pairs returned beyond the k converged ones (not held to `tol`): guards for a
    /// later warm start.
    pub extra: usize,
    /// Norm of the random part of a warm start vector (the old eigenvectors have norm
    /// one each).
    pub warm_noise: f64,
}

impl LanczosOptions {
    pub fn new(k: usize) -> Self {
        LanczosOptions {
            k,
            max_products: (6 * k).max(60),
            tol: 1e-8,
            seed: 0,
            extra: 0,
            warm_noise: 1e-3,
        }
    }
}

/// What a Lanczos run found, and what it cost.
#[derive(Clone, Debug)]
pub struct LanczosResult {
    pub pairs: Eigenpairs,
    /// Operator products used.
    pub products: usize,
    /// Largest residual among the k returned pairs, relative to |θ_1|.
    pub max_residual: f64,
}

/// The Krylov basis (orthonormal columns) and tridiagonal coefficients of `steps`
/// Lanczos steps from `start`, with full reorthogonalisation. Stops early on an
/// invariant subspace.
pub struct Krylov {
    pub basis: Vec<Vec<f64>>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
}

impl Krylov {
    pub fn new(start: &[f64]) -> Result<Self> {
        let n = dot(start, start).sqrt();
        if !(n.is_finite() && n > 0.0) {
            return Err(Error::Numerics(
                "Lanczos: start vector is zero or not finite".into(),
            ));
        }
        Ok(Krylov {
            basis: vec![start.iter().map(|x| x / n).collect()],
            alpha: vec![],
            beta: vec![],
        })
    }

    /// One more step; false when the Krylov space stopped growing.
    pub fn step(&mut self, apply: &mut impl FnMut(&[f64]) -> Result<Vec<f64>>) -> Result<bool> {
        let j = self.alpha.len();
        let q = &self.basis[j];
        let mut w = apply(q)?;
        if w.len() != q.len() || w.iter().any(|x| !x.is_finite()) {
            return Err(Error::Numerics(
                "Lanczos: operator returned a wrong-sized or non-finite vector".into(),
            ));
        }
        let a = dot(q, &w);
        self.alpha.push(a);
        // Full reorthogonalisation, twice ("twice is enough"), against every basis vector.
        for _ in 0..2 {
            for b in &self.basis {
                let c = dot(b, &w);
                axpy(-c, b, &mut w);
            }
        }
        let norm = dot(&w, &w).sqrt();
        let scale = self
            .alpha
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(f64::MIN_POSITIVE);
        if norm <= 1e-12 * scale || self.basis.len() == q.len() {
            return Ok(false);
        }
        self.beta.push(norm);
        self.basis.push(w.iter().map(|x| x / norm).collect());
        Ok(true)
    }

    /// Eigenpairs of the tridiagonal T (Ritz values and vectors in the T basis).
    pub fn ritz(&self) -> Eigenpairs {
        let m = self.alpha.len();
        let mut t = DMatrix::zeros(m, m);
        for i in 0..m {
            t[(i, i)] = self.alpha[i];
            if i + 1 < m {
                t[(i, i + 1)] = self.beta[i];
                t[(i + 1, i)] = self.beta[i];
            }
        }
        symmetric_eigen(t)
    }
}

/// The `k` algebraically largest eigenpairs of the symmetric operator `apply` on R^dim.
/// `warm` (e.g. the previous refresh's eigenvectors) seeds the start vector.
pub fn top_eigenpairs(
    dim: usize,
    mut apply: impl FnMut(&[f64]) -> Result<Vec<f64>>,
    options: &LanczosOptions,
    warm: Option<&Eigenpairs>,
) -> Result<LanczosResult> {
    let k = options.k.min(dim);
    let mut rng = ChaCha12Rng::seed_from_u64(options.seed);
    let mut start: Vec<f64> = (0..dim)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect();
    if let Some(w) = warm.filter(|w| w.vectors.iter().all(|v| v.len() == dim)) {
        // Mostly the old eigenvectors, plus a little of everything else so that new
        // directions can still enter.
        let n0 = dot(&start, &start).sqrt();
        start.iter_mut().for_each(|x| *x *= options.warm_noise / n0);
        for v in &w.vectors {
            axpy(1.0, v, &mut start);
        }
    }
    let mut krylov = Krylov::new(&start)?;
    let mut products = 0;
    loop {
        let grew = krylov.step(&mut apply)?;
        products += 1;
        let m = krylov.alpha.len();
        // Every step once there are k + 2 Ritz pairs, while T is small: its dense
        // eigendecomposition (O(m³)) then costs well under a product; checking every
        // fourth step took two products more a refresh on average (docs/BENCHMARKS.md).
        let check = !grew
            || m >= k + 2 && (m <= 100 || (m - k).is_multiple_of(4))
            || products >= options.max_products;
        if !check {
            continue;
        }
        let ritz = krylov.ritz();
        let last_beta = krylov.beta.get(m - 1).copied().unwrap_or(0.0);
        let top = ritz
            .values
            .first()
            .map_or(1.0, |v| v.abs())
            .max(f64::MIN_POSITIVE);
        let kk = k.min(ritz.len());
        // Residual of Ritz pair j: |β_m · s_{m,j}| (last component of its T-eigenvector).
        let residuals: Vec<f64> = (0..kk)
            .map(|j| {
                if grew {
                    (last_beta * ritz.vectors[j][m - 1]).abs() / top
                } else {
                    0.0
                }
            })
            .collect();
        let worst = residuals.iter().fold(0.0f64, |a, &b| a.max(b));
        if kk == k && worst <= options.tol || !grew || products >= options.max_products {
            if kk < k && grew {
                return Err(Error::Numerics(format!(
                    "Lanczos: {products} products gave only {kk} of {k} eigenpairs"
                )));
            }
            let returned = (kk + options.extra).min(ritz.len());
            let vectors = (0..returned)
                .map(|j| {
                    let mut v = vec![0.0; dim];
                    for (c, q) in ritz.vectors[j].iter().zip(&krylov.basis) {
                        axpy(*c, q, &mut v);
                    }
                    v
                })
                .collect();
            return Ok(LanczosResult {
                pairs: Eigenpairs {
                    values: ritz.values[..returned].to_vec(),
                    vectors,
                },
                products,
                max_residual: worst,
            });
        }
    }
}
