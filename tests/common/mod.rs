//! Shared helpers for the statistical tests: tolerances come from the sample size.
#![allow(dead_code)]

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;

/// The paper's names of the toy preset's six dynamics, in config order.
pub const TOY_LABELS: [&str; 6] = [
    "GD",
    "GLD const",
    "GLD diag",
    "GLD leading",
    "GLD Hessian",
    "GLD 1st eigvec(H)",
];

/// Their config keys, in the same order.
pub const TOY_KEYS: [&str; 6] = [
    "gd",
    "gld_const",
    "gld_diag",
    "gld_leading",
    "gld_hessian",
    "gld_eig1",
];

/// How many standard errors a statistical assertion allows (P(|Z| > 5) ≈ 6e-7).
pub const Z: f64 = 5.0;

/// Mean and standard error of the mean of `xs`.
pub fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Checks that the second moments E[n nᵀ] of zero-mean draws match `target` entry by
/// entry, each within Z standard errors estimated from the draws themselves, and that
/// E‖n‖² matches Tr(target) the same way.
pub fn assert_second_moments(draws: &[Vec<f64>], target: &DMatrix<f64>, what: &str) {
    let d = target.nrows();
    for i in 0..d {
        for j in 0..=i {
            let prods: Vec<f64> = draws.iter().map(|n| n[i] * n[j]).collect();
            let (m, se) = mean_se(&prods);
            let tol = Z * se + 1e-12 * target.abs().max();
            assert!(
                (m - target[(i, j)]).abs() <= tol,
                "{what}: E[n{i} n{j}] = {m:.6e}, target {:.6e}, tolerance {tol:.3e} ({} draws)",
                target[(i, j)],
                draws.len()
            );
        }
    }
    let sq: Vec<f64> = draws
        .iter()
        .map(|n| n.iter().map(|x| x * x).sum())
        .collect();
    let (m, se) = mean_se(&sq);
    let tol = Z * se + 1e-12 * target.trace().abs();
    assert!(
        (m - target.trace()).abs() <= tol,
        "{what}: E‖n‖² = {m:.6e}, target {:.6e}, tolerance {tol:.3e}",
        target.trace()
    );
}

/// A random symmetric positive-definite matrix with eigenvalues in [lo, hi].
pub fn random_spd(d: usize, lo: f64, hi: f64, seed: u64) -> DMatrix<f64> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let a = DMatrix::from_fn(d, d, |_, _| rng.sample::<f64, _>(StandardNormal));
    let q = a.qr().q();
    let eig: Vec<f64> = (0..d)
        .map(|i| lo + (hi - lo) * i as f64 / (d.max(2) - 1) as f64)
        .collect();
    &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(eig)) * q.transpose()
}

pub fn random_vectors(n: usize, d: usize, scale: f64, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
                .collect()
        })
        .collect()
}

/// The sample covariance (1/N, around the mean) of `xs`, computed densely.
pub fn dense_covariance(xs: &[Vec<f64>]) -> DMatrix<f64> {
    let d = xs[0].len();
    let n = xs.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|i| xs.iter().map(|x| x[i]).sum::<f64>() / n)
        .collect();
    DMatrix::from_fn(d, d, |i, j| {
        xs.iter()
            .map(|x| (x[i] - mean[i]) * (x[j] - mean[j]))
            .sum::<f64>()
            / n
    })
}

/// Eigenvalues of a symmetric matrix by nalgebra, largest first: the dense oracle.
pub fn sorted_eigenvalues(m: &DMatrix<f64>) -> Vec<f64> {
    let mut v: Vec<f64> = m
        .clone()
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .copied()
        .collect();
    v.sort_by(|a, b| b.total_cmp(a));
    v
}

/// The real data subsets beside the repository (`../shared/data`, see its README).
pub fn shared_data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// ‖a − b‖ / ‖b‖.
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

/// The noiselab binary with `args`, its output captured.
pub fn noiselab(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .output()
        .expect("noiselab runs")
}

/// Its stdout, after checking it succeeded (else both streams in the panic).
pub fn noiselab_ok(args: &[&str]) -> String {
    let out = noiselab(args);
    assert!(
        out.status.success(),
        "noiselab {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Its stdout as JSON.
pub fn noiselab_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&noiselab_ok(args)).expect("JSON")
}

pub fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
