//! Hessian eigenpairs. For now the dense path (D small enough for a D×D matrix: the
//! toy, test oracles); HVP-based Lanczos for networks plugs in behind the same function.

use crate::linalg::{symmetric_eigen, Eigenpairs};
use crate::objective::Objective;
use crate::Result;

/// The `k` algebraically largest eigenpairs of H(θ).
pub fn top_eigenpairs<O: Objective + ?Sized>(
    objective: &O,
    theta: &[f64],
    k: usize,
) -> Result<Eigenpairs> {
    Ok(symmetric_eigen(objective.hessian(theta)?).truncate(k))
}
