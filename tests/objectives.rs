//! Objectives against independent oracles: central finite differences for gradients,
//! Hessians and per-sample gradients; direct sums for closed forms; the toy's data
//! statistics against METHOD.md §4.1's Cov(x) = 0.02·H_s⁻¹.

mod common;

use common::*;
use nalgebra::{DMatrix, DVector};
use noiselab::estimators::covariance::GradientCovariance;
use noiselab::linalg::GradientMatrix;
use noiselab::models::quadratic::Quadratic;
use noiselab::models::toy2d::Toy2d;
use noiselab::objective::Objective;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::f64::consts::FRAC_PI_4;

const EPS: f64 = 1e-6;

fn fd_gradient(f: impl Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[i] += EPS;
            m[i] -= EPS;
            (f(&p) - f(&m)) / (2.0 * EPS)
        })
        .collect()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    let scale = b.iter().fold(1.0f64, |s, x| s.max(x.abs()));
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {a:?} vs {b:?}");
    }
}

fn toy(seed: u64, n: usize) -> Toy2d {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    Toy2d::new(Toy2d::draw_samples(n, 0.01, FRAC_PI_4, &mut rng), FRAC_PI_4)
}

/// Points well inside one basin for every sample, where the min is smooth.
const TOY_POINTS: [[f64; 2]; 4] = [[1.0, 1.0], [1.03, 0.98], [-0.9, -1.1], [-1.3, -0.4]];

#[test]
fn toy_gradient_hessian_and_per_sample_gradients_match_finite_differences() {
    let obj = toy(1, 100);
    for w in TOY_POINTS {
        let loss = |x: &[f64]| obj.loss(x).unwrap();
        let (_, g) = obj.loss_and_gradient(&w).unwrap();
        assert_close(&g, &fd_gradient(loss, &w), 1e-6, "toy gradient");

        let h = obj.hessian(&w).unwrap();
        for j in 0..2 {
            let col = fd_gradient(|x: &[f64]| obj.loss_and_gradient(x).unwrap().1[j], &w);
            assert_close(&[h[(0, j)], h[(1, j)]], &col, 1e-6, "toy Hessian");
        }
        // HVP agrees with the dense Hessian.
        let v = [0.3, -1.2];
        let hv = obj.hvp(&w, &v).unwrap();
        let dense = &h * DVector::from_column_slice(&v);
        assert_close(&hv, dense.as_slice(), 1e-12, "toy HVP");

        // Per-sample gradients and their covariance Σ (Eq. 1) from finite differences.
        let per_sample = obj.per_sample_gradients(&w).unwrap();
        let fd_rows: Vec<Vec<f64>> = obj
            .samples()
            .iter()
            .map(|x| fd_gradient(|p: &[f64]| obj.sample_loss_grad(p, x).0, &w))
            .collect();
        for (k, row) in fd_rows.iter().enumerate() {
            assert_close(per_sample.row(k), row, 1e-6, "toy per-sample gradient");
        }
        let sigma = GradientCovariance::per_sample(per_sample).unwrap().dense();
        let oracle = dense_covariance(&fd_rows);
        let scale = oracle.abs().max();
        assert!((sigma - oracle).abs().max() <= 1e-5 * scale);
    }
}

#[test]
fn toy_basins_have_the_documented_curvatures() {
    let obj = toy(2, 50);
    let sharp = obj.hessian(&[1.0, 1.0]).unwrap().symmetric_eigen();
    let mut l: Vec<f64> = sharp.eigenvalues.iter().copied().collect();
    l.sort_by(f64::total_cmp);
    assert!(
        (l[0] - 20.0).abs() < 1e-9 && (l[1] - 200.0).abs() < 1e-9,
        "{l:?}"
    );
    let flat = obj.hessian(&[-1.0, -1.0]).unwrap();
    assert!((flat - DMatrix::identity(2, 2) * 2.0).abs().max() < 1e-12);
    // The default Hessian of the seam (D HVPs) agrees with the toy's own.
    struct ViaHvp<'a>(&'a Toy2d);
    impl Objective for ViaHvp<'_> {
        fn dim(&self) -> usize {
            2
        }
        fn num_samples(&self) -> usize {
            self.0.num_samples()
        }
        fn loss_and_gradient(&self, t: &[f64]) -> noiselab::Result<(f64, Vec<f64>)> {
            self.0.loss_and_gradient(t)
        }
        fn batch_gradients(
            &self,
            t: &[f64],
            i: &[usize],
            b: usize,
        ) -> noiselab::Result<GradientMatrix> {
            self.0.batch_gradients(t, i, b)
        }
        fn hvp(&self, t: &[f64], v: &[f64]) -> noiselab::Result<Vec<f64>> {
            self.0.hvp(t, v)
        }
    }
    let w = [1.01, 0.99];
    assert!(
        (ViaHvp(&obj).hessian(&w).unwrap() - obj.hessian(&w).unwrap())
            .abs()
            .max()
            < 1e-12
    );
}

#[test]
fn toy_data_spread_is_the_inverse_sharp_curvature() {
    // Cov(x) = 0.02·H_s⁻¹ (METHOD.md §4.1), so at the sharp minimum Σ ≈ 0.02·H_s.
    let n = 50_000;
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    let xs: Vec<Vec<f64>> = Toy2d::draw_samples(n, 0.01, FRAC_PI_4, &mut rng)
        .iter()
        .map(|x| x.to_vec())
        .collect();
    let obj = Toy2d::new(vec![[0.0, 0.0]], FRAC_PI_4);
    let target = obj.sharp_hessian().try_inverse().unwrap() * 0.02;
    // Entry-wise standard error of a Gaussian sample covariance: √((C_ii·C_jj + C_ij²)/n).
    let cov = dense_covariance(&xs);
    for i in 0..2 {
        for j in 0..2 {
            let se = ((target[(i, i)] * target[(j, j)] + target[(i, j)].powi(2)) / n as f64).sqrt();
            assert!(
                (cov[(i, j)] - target[(i, j)]).abs() <= Z * se,
                "Cov(x)[{i}{j}]"
            );
        }
    }
}

#[test]
fn toy_minibatch_gradients_are_means_of_per_sample_gradients() {
    let obj = toy(4, 30);
    let w = [1.02, 0.97];
    let per = obj.per_sample_gradients(&w).unwrap();
    let idx: Vec<usize> = (0..30).rev().collect();
    let batches = obj.batch_gradients(&w, &idx, 10).unwrap();
    for k in 0..3 {
        let mut mean = [0.0; 2];
        for &i in &idx[k * 10..(k + 1) * 10] {
            mean[0] += per.row(i)[0] / 10.0;
            mean[1] += per.row(i)[1] / 10.0;
        }
        assert_close(batches.row(k), &mean, 1e-12, "batch gradient");
    }
    assert!(obj.batch_gradients(&w, &idx, 7).is_err());
    assert!(obj.batch_gradients(&w, &[0, 99], 1).is_err());
}

#[test]
fn quadratic_closed_form_matches_direct_sums_and_finite_differences() {
    let d = 5;
    let h = random_spd(d, 0.2, 4.0, 31);
    let centers = random_vectors(17, d, 1.0, 32);
    let obj = Quadratic::new(h.clone(), centers.clone());
    let theta = vec![0.1, -0.4, 0.8, 0.0, 1.5];
    let direct: f64 = centers
        .iter()
        .map(|c| {
            let r = DVector::from_iterator(d, theta.iter().zip(c).map(|(t, x)| t - x));
            0.5 * (r.transpose() * &h * &r)[(0, 0)]
        })
        .sum::<f64>()
        / centers.len() as f64;
    let (loss, grad) = obj.loss_and_gradient(&theta).unwrap();
    assert!((loss - direct).abs() < 1e-12 * direct.abs().max(1.0));
    assert_close(
        &grad,
        &fd_gradient(|x| obj.loss(x).unwrap(), &theta),
        1e-6,
        "quadratic gradient",
    );
    let per = obj.per_sample_gradients(&theta).unwrap();
    let mean = per.mean();
    assert_close(&mean, &grad, 1e-12, "mean of per-sample gradients");
}
