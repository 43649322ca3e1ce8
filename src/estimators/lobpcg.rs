//! Top-k eigenpairs of a symmetric operator from *block* products: LOBPCG (locally
//! optimal block preconditioned conjugate gradient, without a preconditioner), warm-started
//! from the previous refresh's eigenvectors (METHOD.md §6). Each iteration applies the
//! operator to the residuals of the pairs that have not converged, all in one block
//! product (`Objective::hvp_block`: one R-operator pass for the whole block), and takes
//! the best k-dimensional subspace of [X, W, P] (the current block, those residuals and
//! the previous step) by Rayleigh–Ritz. Converged pairs stay in the block but get no more
//! products ("soft locking").
//!
//! The convergence test is the same as [`super::lanczos`]'s: a pair is accepted when its
//! residual ‖A·x − θ·x‖ ≤ tol·|θ_1|, here computed from the block's images (linear
//! combinations of products), not estimated from a recurrence.

use super::lanczos::{LanczosOptions, LanczosResult};
use crate::linalg::{axpy, dot, norm_sq, symmetric_eigen, Eigenpairs};
use crate::{Error, Result};
use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// Vectors carried beyond the k wanted: pair i converges at a rate set by its gap to
/// the first eigenvalue *outside* the block, so a few guards speed up the k-th.
fn guards(k: usize) -> usize {
    (k / 4).max(2)
}

/// Orthonormal vectors with their operator images (`images[i]` = A·`vectors[i]`, or
/// empty while not yet computed).
#[derive(Default)]
struct Block {
    vectors: Vec<Vec<f64>>,
    images: Vec<Vec<f64>>,
}

impl Block {
    fn len(&self) -> usize {
        self.vectors.len()
    }

    /// Makes `candidates` orthonormal to `against` (all of whose images are known) and
    /// to each other, applying the same combinations to their images when known.
    /// Candidates that are (numerically) in the span already are dropped.
    fn orthonormalized(mut self, against: &[&Block]) -> Block {
        let mut out = Block::default();
        let with_images = !self.images.is_empty();
        for (i, mut v) in std::mem::take(&mut self.vectors).into_iter().enumerate() {
            let mut image = with_images.then(|| std::mem::take(&mut self.images[i]));
            let before = norm_sq(&v).sqrt();
            if !(before.is_finite() && before > 0.0) {
                continue;
            }
            // Twice is enough (Gram–Schmidt with reorthogonalisation).
            for _ in 0..2 {
                for basis in against.iter().copied().chain(std::iter::once(&out)) {
                    for (q, aq) in basis.vectors.iter().zip(&basis.images) {
                        let c = dot(q, &v);
                        axpy(-c, q, &mut v);
                        if let Some(image) = image.as_mut() {
                            axpy(-c, aq, image);
                        }
                    }
                    if basis.images.is_empty() {
                        for q in &basis.vectors {
                            let c = dot(q, &v);
                            axpy(-c, q, &mut v);
                        }
                    }
                }
            }
            let after = norm_sq(&v).sqrt();
            if after <= 1e-10 * before {
                continue;
            }
            v.iter_mut().for_each(|x| *x /= after);
            out.vectors.push(v);
            if let Some(mut image) = image {
                image.iter_mut().for_each(|x| *x /= after);
                out.images.push(image);
            }
        }
        out
    }
}

/// Applies the operator to a block and checks what comes back.
fn images(
    apply: &mut impl FnMut(&[&[f64]]) -> Result<Vec<Vec<f64>>>,
    vectors: &[Vec<f64>],
) -> Result<Vec<Vec<f64>>> {
    let refs: Vec<&[f64]> = vectors.iter().map(Vec::as_slice).collect();
    let out = apply(&refs)?;
    if out.len() != vectors.len()
        || out
            .iter()
            .any(|v| v.len() != vectors[0].len() || v.iter().any(|x| !x.is_finite()))
    {
        return Err(Error::Numerics(
            "LOBPCG: operator returned a wrong-sized or non-finite block".into(),
        ));
    }
    Ok(out)
}

/// Σ_j c_j·vectors[j] for each column of `coefficients` (rows `offset..` of it).
fn combine(parts: &[&[Vec<f64>]], coefficients: &DMatrix<f64>, columns: usize) -> Vec<Vec<f64>> {
    let all: Vec<&Vec<f64>> = parts.iter().flat_map(|p| p.iter()).collect();
    let dim = all.first().map_or(0, |v| v.len());
    let skip = coefficients.nrows() - all.len();
    (0..columns)
        .map(|col| {
            let mut out = vec![0.0; dim];
            for (row, v) in all.iter().enumerate() {
                axpy(coefficients[(skip + row, col)], v, &mut out);
            }
            out
        })
        .collect()
}

fn rademacher(rng: &mut ChaCha12Rng, dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

/// The `k` algebraically largest eigenpairs of the symmetric operator `apply` (a block
/// product) on R^dim. `warm` (the previous refresh's eigenvectors) starts the block.
pub fn top_eigenpairs(
    dim: usize,
    mut apply: impl FnMut(&[&[f64]]) -> Result<Vec<Vec<f64>>>,
    options: &LanczosOptions,
    warm: Option<&Eigenpairs>,
) -> Result<LanczosResult> {
    let k = options.k.min(dim);
    let m = (k + guards(k)).min(dim);
    let mut rng = ChaCha12Rng::seed_from_u64(options.seed);
    let mut start: Vec<Vec<f64>> = warm
        .map(|w| {
            w.vectors
                .iter()
                .filter(|v| v.len() == dim)
                .take(m)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut x = Block::default();
    for _ in 0..3 {
        let need = m - x.len();
        let mut candidates: Vec<Vec<f64>> = start.drain(..).take(need).collect();
        while candidates.len() < need {
            candidates.push(rademacher(&mut rng, dim));
        }
        let more = Block {
            vectors: candidates,
            images: vec![],
        }
        .orthonormalized(&[&x]);
        x.vectors.extend(more.vectors);
        if x.len() >= m {
            break;
        }
    }
    if x.len() < m {
        return Err(Error::Numerics(format!(
            "LOBPCG: could not build {m} independent start vectors in dimension {dim}"
        )));
    }
    x.images = images(&mut apply, &x.vectors)?;
    let mut products = x.len();
    let (mut w, mut p) = (Block::default(), Block::default());
    loop {
        // Rayleigh–Ritz on span[X, W, P] (orthonormal, images known).
        let basis: Vec<&Block> = [&x, &w, &p].into_iter().filter(|b| b.len() > 0).collect();
        let vectors: Vec<&Vec<f64>> = basis.iter().flat_map(|b| b.vectors.iter()).collect();
        let imgs: Vec<&Vec<f64>> = basis.iter().flat_map(|b| b.images.iter()).collect();
        let s = vectors.len();
        let gram = DMatrix::from_fn(s, s, |i, j| {
            0.5 * (dot(vectors[i], imgs[j]) + dot(vectors[j], imgs[i]))
        });
        let ritz = symmetric_eigen(gram);
        let coefficients = DMatrix::from_fn(s, m, |i, j| ritz.vectors[j][i]);
        let parts: Vec<&[Vec<f64>]> = basis.iter().map(|b| b.vectors.as_slice()).collect();
        let image_parts: Vec<&[Vec<f64>]> = basis.iter().map(|b| b.images.as_slice()).collect();
        let new_x = Block {
            vectors: combine(&parts, &coefficients, m),
            images: combine(&image_parts, &coefficients, m),
        };
        // The step: the new block's components outside the old X.
        let new_p = (basis.len() > 1).then(|| Block {
            vectors: combine(&parts[1..], &coefficients, m),
            images: combine(&image_parts[1..], &coefficients, m),
        });
        let top = ritz.values[0].abs().max(f64::MIN_POSITIVE);
        let residuals: Vec<Vec<f64>> = (0..k)
            .map(|i| {
                let mut r = new_x.images[i].clone();
                axpy(-ritz.values[i], &new_x.vectors[i], &mut r);
                r
            })
            .collect();
        let norms: Vec<f64> = residuals.iter().map(|r| norm_sq(r).sqrt() / top).collect();
        let worst = norms.iter().fold(0.0f64, |a, &b| a.max(b));
        x = new_x;
        let result = |x: &Block| LanczosResult {
            pairs: Eigenpairs {
                values: ritz.values[..k].to_vec(),
                vectors: x.vectors[..k].to_vec(),
            },
            products,
            max_residual: worst,
        };
        if worst <= options.tol || products >= options.max_products {
            return Ok(result(&x));
        }
        p = new_p.map(|p| p.orthonormalized(&[&x])).unwrap_or_default();
        let active: Vec<Vec<f64>> = residuals
            .into_iter()
            .zip(&norms)
            .filter(|(_, &n)| n > options.tol)
            .map(|(r, _)| r)
            .take(options.max_products - products)
            .collect();
        w = Block {
            vectors: active,
            images: vec![],
        }
        .orthonormalized(&[&x, &p]);
        if w.len() == 0 {
            // Residuals inside the current space: nothing new to learn.
            return Ok(result(&x));
        }
        w.images = images(&mut apply, &w.vectors)?;
        products += w.len();
    }
}
