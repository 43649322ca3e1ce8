//! The escaping indicators of METHOD.md §3 from shared pieces: Tr(HΣ) from the centred
//! gradients and HVPs, the isotropic reference Tr(HΣ̄) = Tr H·Tr Σ / D, and the
//! projection coefficient â = (u1ᵀΣu1·Tr H)/(λ1·Tr Σ) (Eq. 12, Fig. 3b).

use super::covariance::GradientCovariance;
use crate::Result;

/// Tr(HΣ) = factor·Σ_k a_kᵀ H a_k: one HVP per centred gradient (METHOD.md §3).
pub fn tr_h_sigma(
    sigma: &GradientCovariance,
    hvp: impl FnMut(&[f64]) -> Result<Vec<f64>>,
) -> Result<f64> {
    sigma.tr_h(hvp)
}

/// Tr(HΣ̄), Σ̄ = (Tr Σ / D)·I.
pub fn tr_h_sigma_iso(tr_h: f64, tr_sigma: f64, dim: usize) -> f64 {
    tr_h * tr_sigma / dim as f64
}

/// â = (u1ᵀΣu1 · Tr H)/(λ1 · Tr Σ): how much of Σ lies along H's top eigenvector,
/// relative to the curvature's spread (METHOD.md §3). An isotropic Σ gives Tr H/(λ1·D).
pub fn projection_coefficient(
    sigma: &GradientCovariance,
    u1: &[f64],
    lambda1: f64,
    tr_h: f64,
) -> f64 {
    sigma.quad_form(u1) * tr_h / (lambda1 * sigma.trace())
}
