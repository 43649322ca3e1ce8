//! Tr H by Hutchinson's estimator and the spectral density of H by stochastic Lanczos
//! quadrature (SLQ), both from Rademacher probes and operator products only.

use super::lanczos::Krylov;
use crate::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

/// An estimate with its standard error and the number of samples behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub stderr: f64,
    pub samples: usize,
}

impl Estimate {
    pub fn from_samples(xs: &[f64]) -> Self {
        let n = xs.len() as f64;
        Estimate {
            value: xs.iter().sum::<f64>() / n,
            stderr: (sample_variance(xs) / n).sqrt(),
            samples: xs.len(),
        }
    }
}

/// Unbiased sample variance (1/(n − 1)); NaN for fewer than two values.
pub fn sample_variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
}

fn rademacher(rng: &mut ChaCha12Rng, dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

/// Tr A ≈ mean over `probes` Rademacher vectors z of zᵀ·A·z.
pub fn hutchinson(
    dim: usize,
    mut apply: impl FnMut(&[f64]) -> Result<Vec<f64>>,
    probes: usize,
    seed: u64,
) -> Result<Estimate> {
    hutchinson_block(
        dim,
        |zs| {
            zs.iter()
                .map(|z| Ok(crate::linalg::dot(z, &apply(z)?)))
                .collect()
        },
        probes,
        seed,
    )
}

/// Probes drawn and evaluated at once by [`hutchinson_block`].
const PROBE_BLOCK: usize = 16;

/// [`hutchinson`] from A's quadratic forms zᵀAz of blocks of probes (the same probes, in
/// the same order, as `hutchinson` with the same seed).
pub fn hutchinson_block(
    dim: usize,
    mut quadratic_forms: impl FnMut(&[&[f64]]) -> Result<Vec<f64>>,
    probes: usize,
    seed: u64,
) -> Result<Estimate> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let probes = probes.max(1);
    let mut samples = Vec::with_capacity(probes);
    while samples.len() < probes {
        let block: Vec<Vec<f64>> = (0..PROBE_BLOCK.min(probes - samples.len()))
            .map(|_| rademacher(&mut rng, dim))
            .collect();
        let refs: Vec<&[f64]> = block.iter().map(Vec::as_slice).collect();
        let forms = quadratic_forms(&refs)?;
        if forms.len() != refs.len() {
            return Err(crate::Error::Numerics(format!(
                "Hutchinson: {} quadratic forms for {} probes",
                forms.len(),
                refs.len()
            )));
        }
        samples.extend(forms);
    }
    Ok(Estimate::from_samples(&samples))
}

/// A spectral density as Gauss quadrature: nodes (Ritz values) and weights summing to
/// one, averaged over probes. ∫ f dμ ≈ Σ_i w_i f(λ_i) ≈ (1/D)·Tr f(A).
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralDensity {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
    pub probes: usize,
    pub steps: usize,
}

impl SpectralDensity {
    /// ∫ f dμ.
    pub fn integrate(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(x, w)| w * f(*x))
            .sum()
    }

    /// The density smoothed by Gaussians of width `sigma`, at `x`.
    pub fn smoothed(&self, x: f64, sigma: f64) -> f64 {
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        self.integrate(|l| c * (-0.5 * ((x - l) / sigma).powi(2)).exp())
    }
}

/// Stochastic Lanczos quadrature with `probes` Rademacher probes of `steps` Lanczos
/// steps each (Ubaru, Chen & Saad 2017; the method PyHessian uses for Fig. 3a-style
/// densities). For one probe v it is exact for polynomials up to degree 2·steps − 1:
/// Σ_i w_i λ_i^p = vᵀA^p v / vᵀv.
pub fn slq(
    dim: usize,
    mut apply: impl FnMut(&[f64]) -> Result<Vec<f64>>,
    probes: usize,
    steps: usize,
    seed: u64,
) -> Result<SpectralDensity> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let probes = probes.max(1);
    let (mut nodes, mut weights) = (vec![], vec![]);
    for _ in 0..probes {
        let z = rademacher(&mut rng, dim);
        let mut k = Krylov::new(&z)?;
        for _ in 0..steps.max(1) {
            if !k.step(&mut apply)? {
                break;
            }
        }
        let ritz = k.ritz();
        for (v, e) in ritz.values.iter().zip(&ritz.vectors) {
            nodes.push(*v);
            weights.push(e[0] * e[0] / probes as f64);
        }
    }
    Ok(SpectralDensity {
        nodes,
        weights,
        probes,
        steps,
    })
}
