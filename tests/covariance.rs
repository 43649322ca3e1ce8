//! The Gram trick (K×K) against the dense D×D covariance, and Σ's readings
//! (trace, diagonal, quadratic forms, Tr(HΣ)) against dense linear algebra.

mod common;

use common::*;
use nalgebra::DVector;
use noiselab::estimators::covariance::GradientCovariance;
use noiselab::linalg::GradientMatrix;

fn check_against_dense(rows: usize, d: usize, per_sample: bool) {
    let g = random_vectors(rows, d, 1.0, (rows * 100 + d) as u64);
    let cov = if per_sample {
        GradientCovariance::per_sample(GradientMatrix::from_rows(&g)).unwrap()
    } else {
        GradientCovariance::minibatches(GradientMatrix::from_rows(&g)).unwrap()
    };
    let dense = dense_covariance(&g)
        * if per_sample {
            1.0
        } else {
            rows as f64 / (rows - 1) as f64
        };
    let scale = dense.abs().max();
    assert!((cov.trace() - dense.trace()).abs() < 1e-10 * scale * d as f64);
    for (i, v) in cov.diagonal().iter().enumerate() {
        assert!((v - dense[(i, i)]).abs() < 1e-10 * scale);
    }
    let v: Vec<f64> = (0..d).map(|i| (i as f64 * 0.7).sin()).collect();
    let dv = DVector::from_column_slice(&v);
    assert!(
        (cov.quad_form(&v) - (dv.transpose() * &dense * &dv)[(0, 0)]).abs()
            < 1e-9 * scale * d as f64
    );
    let h = random_spd(d, 0.1, 2.0, 5);
    let tr = cov
        .tr_h(|x| Ok((&h * DVector::from_column_slice(x)).as_slice().to_vec()))
        .unwrap();
    assert!((tr - (&h * &dense).trace()).abs() < 1e-9 * scale * d as f64);

    // Eigenpairs: values against nalgebra's dense solver, vectors as eigenvectors of the dense matrix.
    let k = 5.min(rows - 1).min(d);
    let pairs = cov.top_eigenpairs(k);
    assert_eq!(pairs.len(), k);
    let oracle = common::sorted_eigenvalues(&dense);
    for (j, (c, w)) in pairs.values.iter().zip(&pairs.vectors).enumerate() {
        assert!(
            (c - oracle[j]).abs() < 1e-9 * oracle[0],
            "λ{j}: {c} vs {}",
            oracle[j]
        );
        let w = DVector::from_column_slice(w);
        let residual = (&dense * &w - &w * *c).norm();
        assert!(
            residual < 1e-8 * oracle[0],
            "eigenvector {j} residual {residual}"
        );
        assert!((w.norm() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn dense_path_when_dimension_is_small() {
    check_against_dense(50, 6, true);
    check_against_dense(50, 6, false);
}

#[test]
fn gram_path_when_dimension_exceeds_sample_count() {
    check_against_dense(12, 300, true);
    check_against_dense(12, 300, false);
}

#[test]
fn rank_is_at_most_the_number_of_centred_gradients() {
    let g = random_vectors(4, 50, 1.0, 9);
    let cov = GradientCovariance::per_sample(GradientMatrix::from_rows(&g)).unwrap();
    // 4 gradients centred on their mean span at most 3 directions.
    assert_eq!(cov.top_eigenpairs(10).len(), 3);
}

#[test]
fn minibatch_covariance_needs_two_batches() {
    let g = random_vectors(1, 5, 1.0, 1);
    let err = GradientCovariance::minibatches(GradientMatrix::from_rows(&g)).unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
}
