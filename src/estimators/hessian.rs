//! Hessian eigenpairs: a dense eigendecomposition while D is small (the toy, test
//! oracles), Lanczos on HVPs above that, warm-started from the previous refresh.

use super::lanczos::{self, LanczosOptions};
use crate::linalg::{symmetric_eigen, Eigenpairs};
use crate::objective::Objective;
use crate::Result;

/// Largest D for which the dense path (D HVPs or a closed-form Hessian) is used.
pub const DENSE_LIMIT: usize = 256;

/// The `k` algebraically largest eigenpairs of H(θ); `warm`, the previous eigenvectors,
/// speeds Lanczos up.
pub fn top_eigenpairs<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    k: usize,
    warm: Option<&Eigenpairs>,
) -> Result<Eigenpairs> {
    let d = objective.dim();
    if d <= DENSE_LIMIT {
        return Ok(symmetric_eigen(objective.hessian(theta)?).truncate(k));
    }
    let options = LanczosOptions {
        tol: objective.hvp_tolerance(),
        ..LanczosOptions::new(k)
    };
    Ok(lanczos::top_eigenpairs(d, |v| objective.hvp(theta, v), &options, warm)?.pairs)
}
