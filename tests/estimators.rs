//! Curvature estimators against dense oracles: Lanczos top-k against a full
//! eigendecomposition, Hutchinson and SLQ against exact traces and moments within their
//! sampling error, expected sharpness against its closed form on a quadratic, and the
//! projection coefficient at its two extremes.

mod common;

use common::*;
use nalgebra::{DMatrix, DVector};
use noiselab::estimators::covariance::GradientCovariance;
use noiselab::estimators::indicators::projection_coefficient;
use noiselab::estimators::lanczos::{self, Krylov, LanczosOptions};
use noiselab::estimators::lobpcg;
use noiselab::estimators::sharpness::{
    expected_sharpness, pilot_passes, SharpnessEstimator, SharpnessOptions,
};
use noiselab::estimators::trace::{hutchinson, slq};
use noiselab::linalg::GradientMatrix;
use noiselab::models::quadratic::Quadratic;
use noiselab::objective::Objective;
use rand::SeedableRng;

/// A Hessian-like symmetric matrix: a few large eigenvalues, a bulk near zero, some
/// negative ones.
fn hessian_like(d: usize, seed: u64) -> (DMatrix<f64>, Vec<f64>) {
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let a = DMatrix::from_fn(d, d, |_, _| {
        rand::Rng::sample::<f64, _>(&mut rng, rand_distr::StandardNormal)
    });
    let q = a.qr().q();
    let eig: Vec<f64> = (0..d)
        .map(|i| match i {
            0..=29 => 50.0 * 0.8f64.powi(i as i32),
            _ if i % 7 == 0 => -0.05 * (i as f64 / d as f64),
            _ => 0.01 * (i as f64 / d as f64),
        })
        .collect();
    let m = &q * DMatrix::from_diagonal(&DVector::from_vec(eig.clone())) * q.transpose();
    (0.5 * (&m + m.transpose()), eig)
}

fn apply(m: &DMatrix<f64>) -> impl FnMut(&[f64]) -> noiselab::Result<Vec<f64>> + '_ {
    move |v| Ok((m * DVector::from_column_slice(v)).as_slice().to_vec())
}

/// One refresh later (`h` changed a little), a solver warm-started from `previous` takes
/// fewer products than cold, and both find the same eigenvalues; (cold, warm) products.
fn after_a_small_change(
    h: &DMatrix<f64>,
    previous: &noiselab::linalg::Eigenpairs,
    solve: impl Fn(&DMatrix<f64>, Option<&noiselab::linalg::Eigenpairs>) -> lanczos::LanczosResult,
) -> (usize, usize) {
    let (e, _) = hessian_like(h.nrows(), 2);
    let h2 = h + e * 1e-4;
    let cold = solve(&h2, None);
    let warm = solve(&h2, Some(previous));
    assert!(
        warm.products < cold.products,
        "warm {} vs cold {}",
        warm.products,
        cold.products
    );
    for j in 0..cold.pairs.len() {
        assert!(
            (warm.pairs.values[j] - cold.pairs.values[j]).abs()
                <= 1e-6 * cold.pairs.values[j].abs()
        );
    }
    (cold.products, warm.products)
}

/// The 20 largest eigenpairs of `h` by its dense eigendecomposition agree with `pairs`:
/// eigenvalues to 1e-6 relative, eigenvectors to |cos| > 1 − 1e-6.
fn assert_top_20_of(h: &DMatrix<f64>, pairs: &noiselab::linalg::Eigenpairs) {
    let oracle = h.clone().symmetric_eigen();
    let mut idx: Vec<usize> = (0..h.nrows()).collect();
    idx.sort_by(|&a, &b| oracle.eigenvalues[b].total_cmp(&oracle.eigenvalues[a]));
    for (j, &i) in idx.iter().take(20).enumerate() {
        let exact = oracle.eigenvalues[i];
        let got = pairs.values[j];
        assert!(
            (got - exact).abs() <= 1e-6 * exact.abs(),
            "λ{j}: {got} vs {exact}"
        );
        let u: DVector<f64> = oracle.eigenvectors.column(i).into();
        let cos = u.dot(&DVector::from_column_slice(&pairs.vectors[j])).abs();
        assert!(cos > 1.0 - 1e-6, "eigenvector {j}: |cos| = {cos}");
    }
}

/// LOBPCG on block products: the same 20 eigenpairs as the dense oracle, to its residual
/// tolerance, cold and warm-started (the warm start from the previous operator's
/// eigenvectors takes fewer products).
#[test]
fn lobpcg_top_20_matches_the_dense_oracle() {
    let d = 400;
    let (h, _) = hessian_like(d, 1);
    let block = |m: &DMatrix<f64>| {
        let m = m.clone();
        move |vs: &[&[f64]]| -> noiselab::Result<Vec<Vec<f64>>> {
            Ok(vs
                .iter()
                .map(|v| (&m * DVector::from_column_slice(v)).as_slice().to_vec())
                .collect())
        }
    };
    let opts = LanczosOptions {
        max_products: 2000,
        ..LanczosOptions::new(20)
    };
    let r = lobpcg::top_eigenpairs(d, block(&h), &opts, None).unwrap();
    assert!(r.max_residual <= opts.tol, "residual {:e}", r.max_residual);
    assert_top_20_of(&h, &r.pairs);
    let (cold, warm) = after_a_small_change(&h, &r.pairs, |m, warm| {
        lobpcg::top_eigenpairs(d, block(m), &opts, warm).unwrap()
    });
    eprintln!("LOBPCG top-20 of D = {d}: {} products cold; after a small change {cold} cold vs {warm} warm", r.products);
}

#[test]
fn lanczos_top_20_matches_the_dense_oracle_with_few_products() {
    let d = 400;
    let (h, _) = hessian_like(d, 1);
    let opts = LanczosOptions::new(20);
    let r = lanczos::top_eigenpairs(d, apply(&h), &opts, None).unwrap();
    assert_eq!(r.pairs.len(), 20);
    assert_top_20_of(&h, &r.pairs);
    assert!(
        r.products < 150,
        "{} products for 20 eigenpairs of a {d}×{d} operator",
        r.products
    );

    // A small change (one refresh later) with a warm start costs fewer products.
    let (cold, warm) = after_a_small_change(&h, &r.pairs, |m, warm| {
        lanczos::top_eigenpairs(d, apply(m), &opts, warm).unwrap()
    });
    eprintln!(
        "top-20 of D = {d}: {} products cold; after a small change {cold} cold vs {warm} warm",
        r.products
    );
}

/// `extra` returns guard Ritz pairs beyond the k converged ones, in order below them,
/// without changing the k; `warm_noise` = 0 starts from the old eigenvectors alone.
#[test]
fn lanczos_returns_guard_pairs_and_takes_a_noiseless_warm_start() {
    let d = 400;
    let (h, _) = hessian_like(d, 1);
    let plain = lanczos::top_eigenpairs(d, apply(&h), &LanczosOptions::new(20), None).unwrap();
    let opts = LanczosOptions {
        extra: 4,
        ..LanczosOptions::new(20)
    };
    let r = lanczos::top_eigenpairs(d, apply(&h), &opts, None).unwrap();
    assert_eq!(r.products, plain.products, "the same stopping rule");
    assert_eq!((r.pairs.values.len(), r.pairs.vectors.len()), (24, 24));
    assert_eq!(r.pairs.values[..20], plain.pairs.values[..]);
    assert_top_20_of(&h, &r.pairs);
    assert!(
        r.pairs.values.windows(2).all(|w| w[0] >= w[1]),
        "descending"
    );
    // Guards are Ritz values of H: inside its spectrum, below the 20th.
    let smallest = h.clone().symmetric_eigen().eigenvalues.min();
    assert!(r.pairs.values[20..]
        .iter()
        .all(|&v| v >= smallest - 1e-9 && v <= r.pairs.values[19]));
    let noiseless = LanczosOptions {
        warm_noise: 0.0,
        ..LanczosOptions::new(20)
    };
    let warm = lanczos::top_eigenpairs(d, apply(&h), &noiseless, Some(&r.pairs)).unwrap();
    assert_top_20_of(&h, &warm.pairs);
}

#[test]
fn lanczos_handles_tiny_and_degenerate_operators() {
    let h = DMatrix::from_diagonal(&DVector::from_vec(vec![3.0, 3.0, 1.0]));
    let r = lanczos::top_eigenpairs(3, apply(&h), &LanczosOptions::new(2), None).unwrap();
    assert!((r.pairs.values[0] - 3.0).abs() < 1e-12);
    let zero = DMatrix::<f64>::zeros(4, 4);
    assert!(lanczos::top_eigenpairs(4, apply(&zero), &LanczosOptions::new(1), None).is_ok());
    let bad = |_: &[f64]| Ok(vec![f64::NAN; 4]);
    assert!(lanczos::top_eigenpairs(4, bad, &LanczosOptions::new(1), None).is_err());
}

#[test]
fn hutchinson_trace_within_its_sampling_error() {
    let d = 200;
    let (h, eig) = hessian_like(d, 3);
    let exact: f64 = eig.iter().sum();
    let probes = 400;
    let est = hutchinson(d, apply(&h), probes, 7).unwrap();
    // Var(zᵀHz) = 2·Σ_{i≠j} H_ij² for Rademacher z.
    let off: f64 = (0..d)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| h[(i, j)].powi(2))
        .sum();
    let se = (2.0 * off / probes as f64).sqrt();
    assert!(
        (est.value - exact).abs() <= Z * se,
        "{} vs {exact} ± {}",
        est.value,
        Z * se
    );
    assert!(
        (est.stderr / se - 1.0).abs() < 0.3,
        "reported s.e. {} vs true {se}",
        est.stderr
    );
    assert_eq!(est.samples, probes);
}

#[test]
fn lanczos_quadrature_is_exact_for_low_degree_polynomials() {
    let d = 120;
    let (h, _) = hessian_like(d, 4);
    let z: Vec<f64> = (0..d)
        .map(|i| if (i * 7 + 3) % 5 < 2 { 1.0 } else { -1.0 })
        .collect();
    let steps = 12;
    let mut k = Krylov::new(&z).unwrap();
    let mut f = apply(&h);
    for _ in 0..steps {
        k.step(&mut f).unwrap();
    }
    let ritz = k.ritz();
    let zv = DVector::from_column_slice(&z);
    let mut hp = zv.clone();
    for p in 0..(2 * steps) {
        let exact = zv.dot(&hp) / zv.dot(&zv);
        let quad: f64 = ritz
            .values
            .iter()
            .zip(&ritz.vectors)
            .map(|(l, e)| e[0] * e[0] * l.powi(p))
            .sum();
        let scale = h.norm().powi(p).max(1.0);
        assert!(
            (quad - exact).abs() <= 1e-8 * scale,
            "degree {p}: {quad} vs {exact}"
        );
        hp = &h * hp;
    }
}

#[test]
fn slq_density_has_the_right_moments() {
    let d = 150;
    let (h, eig) = hessian_like(d, 5);
    let probes = 64;
    let density = slq(d, apply(&h), probes, 30, 9).unwrap();
    assert!(
        (density.integrate(|_| 1.0) - 1.0).abs() < 1e-10,
        "weights sum to one"
    );
    let exact_mean = eig.iter().sum::<f64>() / d as f64;
    let off: f64 = (0..d)
        .flat_map(|i| (0..d).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| h[(i, j)].powi(2))
        .sum();
    let se = (2.0 * off / probes as f64).sqrt() / d as f64;
    let got = density.integrate(|l| l);
    assert!(
        (got - exact_mean).abs() <= Z * se,
        "{got} vs {exact_mean} ± {}",
        Z * se
    );
    // Its support reaches the top eigenvalue (Ritz values converge there first).
    let top = density
        .nodes
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    assert!((top - 50.0).abs() < 1e-6 * 50.0, "{top}");
    assert!(density.smoothed(50.0, 1.0) > 0.0);
}

#[test]
fn expected_sharpness_matches_half_delta_squared_trace_h() {
    // For a quadratic, E[L(θ+ν)] − L(θ) = (δ²/2)·Tr H at every θ (E[gᵀν] = 0), for every
    // estimator; their per-sample variances have closed forms too: the plain rise
    // gᵀν + ½νᵀHν has δ²‖g‖² + δ⁴·Tr(H²)/2, while an antithetic pair and the control
    // variate both leave ½νᵀHν alone, δ⁴·Tr(H²)/2 (ν ~ N(0, δ²I)). A per-batch pass
    // leaves Σ_k (n_k/N)·½ν_kᵀHν_k (every sample's Hessian is H) with independent ν_k:
    // Σ_k (n_k/N)²·δ⁴·Tr(H²)/2, here batches of 3, 3, 3 and 1 of the 10 samples.
    let d = 30;
    let h = random_spd(d, 0.5, 20.0, 6);
    let obj = Quadratic::new(h.clone(), random_vectors(10, d, 1.0, 7));
    let delta = 0.01;
    let exact = 0.5 * delta * delta * h.trace();
    let theta = vec![0.3; d];
    let (_, g) = obj.loss_and_gradient(&theta).unwrap();
    let quadratic_var = delta.powi(4) * (&h * &h).trace() / 2.0;
    let plain_var = delta * delta * g.iter().map(|x| x * x).sum::<f64>() + quadratic_var;
    let m = 4000;
    let options = |estimator, absolute| SharpnessOptions {
        delta,
        samples: m,
        absolute,
        estimator,
        batch_size: 3,
        seed: 3,
    };
    for (estimator, per_sample_var) in [
        (SharpnessEstimator::Plain, plain_var),
        (SharpnessEstimator::Antithetic, quadratic_var),
        (SharpnessEstimator::ControlVariate, quadratic_var),
        (SharpnessEstimator::PerBatch, 0.28 * quadratic_var),
    ] {
        // The variance-reduced estimators stop after 100 evaluations here (antithetic:
        // 50 pairs; per batch: 30 passes after its 30-pass pilot): independent runs pool
        // to ≥ 2000 samples, as the plain one's 4000.
        let runs = match estimator {
            SharpnessEstimator::Plain => 1,
            SharpnessEstimator::ControlVariate => 20,
            SharpnessEstimator::Antithetic => 40,
            SharpnessEstimator::PerBatch => 70,
        };
        let (mut var, mut n) = (0.0, 0);
        for seed in 0..runs {
            let e = expected_sharpness(
                &obj,
                &theta,
                Some(&g),
                &SharpnessOptions {
                    seed,
                    ..options(estimator, false)
                },
            )
            .unwrap();
            assert!(
                (e.value - exact).abs() <= Z * e.stderr,
                "{estimator:?}: {} vs {exact} ± {}",
                e.value,
                Z * e.stderr
            );
            var += e.stderr.powi(2) * e.samples as f64 * e.samples as f64;
            n += e.samples;
        }
        // The sample variance of n ≥ 2000 draws of a quadratic form in Gaussians is
        // within 30 % of the truth (its relative SE is √((κ − 1)/n) ≤ 0.09 for the
        // kurtosis κ ≤ 15 of a χ²₁-like sum).
        let var = var / n as f64;
        assert!(n >= 2000, "{estimator:?}: {n} samples");
        assert!(
            (var / per_sample_var - 1.0).abs() < 0.3,
            "{estimator:?}: per-sample variance {var:e}, closed form {per_sample_var:e}"
        );
    }
    // The variance-reduced estimators stop once their SE is at most the plain one's with
    // M evaluations (closed form above; 20 % slack for the SE estimate's own noise),
    // here after the fewest evaluations allowed.
    let plain_se = (plain_var / m as f64).sqrt();
    for estimator in [
        SharpnessEstimator::Antithetic,
        SharpnessEstimator::ControlVariate,
        SharpnessEstimator::PerBatch,
    ] {
        let e = expected_sharpness(&obj, &theta, Some(&g), &options(estimator, false)).unwrap();
        let evaluations = match estimator {
            SharpnessEstimator::Antithetic => 2 * e.samples,
            SharpnessEstimator::PerBatch => pilot_passes(m) + e.samples,
            _ => e.samples,
        };
        assert!(
            e.stderr <= 1.2 * plain_se,
            "{estimator:?}: {e:?} vs {plain_se:e}"
        );
        assert!(
            evaluations <= noiselab::estimators::sharpness::MIN_EVALUATIONS + 100,
            "{estimator:?} used {evaluations} evaluations"
        );
    }
    let absolute = expected_sharpness(
        &obj,
        &theta,
        None,
        &options(SharpnessEstimator::Plain, true),
    )
    .unwrap();
    assert!(
        absolute.value > exact,
        "|rise| averages above the signed rise away from a minimum"
    );
    for estimator in [
        SharpnessEstimator::ControlVariate,
        SharpnessEstimator::PerBatch,
    ] {
        let err = expected_sharpness(&obj, &theta, Some(&g), &options(estimator, true))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signed rise"), "{err}");
    }
    let err = expected_sharpness(
        &obj,
        &theta,
        None,
        &options(SharpnessEstimator::ControlVariate, false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("g0"), "{err}");
}

#[test]
fn projection_coefficient_spans_isotropic_to_aligned() {
    let d = 8;
    let h = random_spd(d, 0.5, 6.0, 8);
    let eig = h.clone().symmetric_eigen();
    let i1 = (0..d)
        .max_by(|&a, &b| eig.eigenvalues[a].total_cmp(&eig.eigenvalues[b]))
        .unwrap();
    let (l1, u1): (f64, Vec<f64>) = (
        eig.eigenvalues[i1],
        eig.eigenvectors.column(i1).iter().copied().collect(),
    );
    let tr_h = h.trace();
    // Gradients ±c·u1: Σ = c²·u1u1ᵀ (all along u1) → â = Tr H/λ1.
    let aligned = GradientMatrix::from_rows(&[
        u1.iter().map(|x| 2.0 * x).collect(),
        u1.iter().map(|x| -2.0 * x).collect(),
    ]);
    let a = projection_coefficient(
        &GradientCovariance::per_sample(aligned).unwrap(),
        &u1,
        l1,
        tr_h,
    );
    assert!((a - tr_h / l1).abs() < 1e-12 * a);
    // Gradients ±c·e_i for every i: Σ ∝ I → â = Tr H/(λ1·D).
    let rows: Vec<Vec<f64>> = (0..2 * d)
        .map(|r| {
            (0..d)
                .map(|i| {
                    if i == r / 2 {
                        if r % 2 == 0 {
                            1.0
                        } else {
                            -1.0
                        }
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let a = projection_coefficient(
        &GradientCovariance::per_sample(GradientMatrix::from_rows(&rows)).unwrap(),
        &u1,
        l1,
        tr_h,
    );
    assert!((a - tr_h / (l1 * d as f64)).abs() < 1e-12 * a);
}

#[test]
fn large_objectives_take_the_lanczos_path_and_agree_with_dense() {
    use noiselab::estimators::hessian::{top_eigenpairs, DENSE_LIMIT};
    let d = DENSE_LIMIT + 44;
    let (h, _) = hessian_like(d, 10);
    let obj = Quadratic::centered(h.clone());
    let theta = vec![0.0; d];
    let got = top_eigenpairs(&obj, &theta, 5, None).unwrap();
    let dense = noiselab::linalg::symmetric_eigen(h).truncate(5);
    for j in 0..5 {
        assert!((got.values[j] - dense.values[j]).abs() <= 1e-6 * dense.values[j].abs());
        let cos: f64 = got.vectors[j]
            .iter()
            .zip(&dense.vectors[j])
            .map(|(a, b)| a * b)
            .sum();
        assert!(cos.abs() > 1.0 - 1e-6);
    }
}
