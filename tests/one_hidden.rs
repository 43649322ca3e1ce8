//! The one-hidden-layer network (METHOD.md §4.2) against independent oracles: finite
//! differences of its loss and gradient, per-sample gradients from single-sample passes,
//! and the dense covariance of those gradients.

mod common;

use noiselab::estimators::covariance::GradientCovariance;
use noiselab::models::one_hidden::{OneHidden, OutputLoss, OutputWeights, SeparableData};
use noiselab::objective::Objective;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

fn setup(n: usize, width: usize, seed: u64) -> (SeparableData, OneHidden, Vec<f64>) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let data = SeparableData::draw(n, 0.1, &mut rng);
    let model = OneHidden::new(&data, width).unwrap();
    let theta = OneHidden::init_theta(width, &mut rng);
    (data, model, theta)
}

fn fd(f: impl Fn(&[f64]) -> f64, x: &[f64], dir: &[f64], eps: f64) -> f64 {
    let p: Vec<f64> = x.iter().zip(dir).map(|(a, d)| a + eps * d).collect();
    let m: Vec<f64> = x.iter().zip(dir).map(|(a, d)| a - eps * d).collect();
    (f(&p) - f(&m)) / (2.0 * eps)
}

#[test]
fn data_are_separable_with_the_margin() {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let d = SeparableData::draw(500, 0.1, &mut rng);
    assert_eq!(d.x.len(), 500);
    assert!(d.y.iter().all(|&y| y == 1.0 || y == -1.0));
    assert!(d.y.iter().any(|&y| y > 0.0) && d.y.iter().any(|&y| y < 0.0));
    assert!(d.x.iter().flatten().all(|v| (-1.0..1.0).contains(v)));
}

#[test]
fn gradient_matches_finite_differences() {
    let (_, model, theta) = setup(200, 16, 2);
    assert_eq!(model.dim(), 48);
    let (_, g) = model.loss_and_gradient(&theta).unwrap();
    for i in 0..model.dim() {
        let mut e = vec![0.0; model.dim()];
        e[i] = 1.0;
        let num = fd(|t| model.loss(t).unwrap(), &theta, &e, 1e-6);
        assert!(
            (g[i] - num).abs() <= 1e-7 * (1.0 + num.abs()),
            "∂L/∂θ{i}: {} vs {num}",
            g[i]
        );
    }
}

#[test]
fn batched_per_sample_gradients_equal_single_sample_passes() {
    let (data, model, theta) = setup(60, 12, 3);
    let per = model.per_sample_gradients(&theta).unwrap();
    for i in [0, 7, 31, 59] {
        let one = SeparableData {
            x: vec![data.x[i]],
            y: vec![data.y[i]],
        };
        let single = OneHidden::new(&one, 12).unwrap();
        let (_, g) = single.loss_and_gradient(&theta).unwrap();
        for (a, b) in per.row(i).iter().zip(&g) {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
                "sample {i}: {a} vs {b}"
            );
        }
    }
    // Their mean is the full gradient; minibatch rows are means of their samples.
    let (_, g0) = model.loss_and_gradient(&theta).unwrap();
    for (a, b) in per.mean().iter().zip(&g0) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
    }
    let idx: Vec<usize> = (0..60).rev().collect();
    let batches = model.batch_gradients(&theta, &idx, 20).unwrap();
    for k in 0..3 {
        for c in 0..model.dim() {
            let mean: f64 = idx[k * 20..(k + 1) * 20]
                .iter()
                .map(|&i| per.row(i)[c])
                .sum::<f64>()
                / 20.0;
            assert!((batches.row(k)[c] - mean).abs() <= 1e-12 * (1.0 + mean.abs()));
        }
    }
}

#[test]
fn hvp_matches_finite_differences_of_the_gradient_and_is_symmetric() {
    let (_, model, theta) = setup(150, 10, 4);
    let dirs = common::random_vectors(3, model.dim(), 1.0, 5);
    for v in &dirs {
        let hv = model.hvp(&theta, v).unwrap();
        for (i, hvi) in hv.iter().enumerate() {
            // Inside one linear piece of the relu network, the gradient is smooth.
            let num = fd(
                |t| model.loss_and_gradient(t).unwrap().1[i],
                &theta,
                v,
                1e-7,
            );
            assert!(
                (hvi - num).abs() <= 1e-5 * (1.0 + num.abs()),
                "(Hv)_{i}: {hvi} vs {num}"
            );
        }
    }
    let (a, b) = (&dirs[0], &dirs[1]);
    let (ha, hb) = (model.hvp(&theta, a).unwrap(), model.hvp(&theta, b).unwrap());
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    assert!((dot(b, &ha) - dot(a, &hb)).abs() <= 1e-12 * dot(a, &ha).abs().max(1.0));
    assert!(
        dot(a, &ha) >= 0.0,
        "the logistic Gauss–Newton Hessian is PSD"
    );
}

#[test]
fn gram_trick_eigenpairs_of_real_gradients_match_the_dense_covariance() {
    // D = 3·40 = 120 > K = 30 minibatch gradients: the Gram path.
    let (_, model, theta) = setup(300, 40, 6);
    let idx: Vec<usize> = (0..300).collect();
    let g = model.batch_gradients(&theta, &idx, 10).unwrap();
    let rows: Vec<Vec<f64>> = g.iter_rows().map(|r| r.to_vec()).collect();
    let cov = GradientCovariance::minibatches(g).unwrap();
    let dense = common::dense_covariance(&rows) * (30.0 / 29.0);
    let oracle = common::sorted_eigenvalues(&dense);
    let pairs = cov.top_eigenpairs(10);
    for (j, (c, w)) in pairs.values.iter().zip(&pairs.vectors).enumerate() {
        assert!((c - oracle[j]).abs() <= 1e-9 * oracle[0], "λ{j}");
        let w = nalgebra::DVector::from_column_slice(w);
        assert!((&dense * &w - &w * *c).norm() <= 1e-8 * oracle[0]);
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let (data, model, theta) = setup(10, 4, 7);
    assert!(model.loss_and_gradient(&theta[..5]).is_err());
    assert!(model.hvp(&theta, &[1.0; 3]).is_err());
    assert!(model.batch_gradients(&theta, &[0, 99], 1).is_err());
    assert!(OneHidden::new(&data, 0).is_err());
}

/// The released recipe's variant (METHOD.md §4.2): [−2, 2]² points labelled 1[x₁ ≥ x₂], unit
/// output weights, squared loss of the clipped output. Gradient and HVP against finite
/// differences (the clip and the relus are piecewise linear: the Gauss–Newton form is
/// exact away from their kinks).
#[test]
fn released_recipe_variant_matches_finite_differences() {
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let data = SeparableData::draw_diagonal(120, &mut rng);
    assert!(data.x.iter().flatten().all(|v| (-2.0..2.0).contains(v)));
    assert!(data
        .x
        .iter()
        .zip(&data.y)
        .all(|(p, &y)| (p[0] >= p[1]) == (y > 0.0)));
    let model = OneHidden::with(&data, 8, OutputWeights::Unit, OutputLoss::ClippedSquared).unwrap();
    // Small weights keep most outputs inside the clipping range, so both pieces show.
    let theta: Vec<f64> = OneHidden::init_theta(8, &mut rng)
        .iter()
        .map(|t| 0.3 * t)
        .collect();
    let (_, g) = model.loss_and_gradient(&theta).unwrap();
    assert!(g.iter().any(|x| x.abs() > 1e-6));
    let v = &common::random_vectors(1, model.dim(), 1.0, 2)[0];
    let hv = model.hvp(&theta, v).unwrap();
    for i in 0..model.dim() {
        let mut e = vec![0.0; model.dim()];
        e[i] = 1.0;
        let num = fd(|t| model.loss(t).unwrap(), &theta, &e, 1e-6);
        assert!(
            (g[i] - num).abs() <= 1e-7 * (1.0 + num.abs()),
            "∂L/∂θ{i}: {} vs {num}",
            g[i]
        );
        let num = fd(
            |t| model.loss_and_gradient(t).unwrap().1[i],
            &theta,
            v,
            1e-7,
        );
        assert!(
            (hv[i] - num).abs() <= 1e-5 * (1.0 + num.abs()),
            "(Hv)_{i}: {} vs {num}",
            hv[i]
        );
    }
}
