//! METHOD.md §3 / Prop. 2: for dθ = −Hθ dt + Σ^½ dW started at the minimum,
//! E[L_t − L_0] = ¼·Tr((I − e^{−2Ht})·Σ). The engine's own update loop (θ − η·g0 + n with
//! Cov n = η·Σ, an Euler–Maruyama step of length η) must reproduce it.

mod common;

use common::*;
use nalgebra::DMatrix;
use noiselab::config::NoiseConfig;
use noiselab::dynamics::{DynamicsKind, Magnitude, NoiseModel};
use noiselab::engine;
use noiselab::models::quadratic::Quadratic;
use noiselab::objective::Objective;

#[test]
fn engine_reproduces_the_ou_closed_form() {
    let d = 3;
    let eta = 0.01;
    let steps = 150; // t = 1.5
    let replicates = 4000;
    let h = random_spd(d, 0.5, 3.0, 21);
    // Centres x_i = H⁻¹ y_i make the per-sample gradients H(θ − x_i) = Hθ − y_i, so
    // Σ = Cov(y) whatever θ is: constant noise, as the OU process needs.
    let ys = random_vectors(200, d, 0.7, 22);
    let h_inv = h.clone().try_inverse().unwrap();
    let centers: Vec<Vec<f64>> = ys
        .iter()
        .map(|y| {
            (&h_inv * nalgebra::DVector::from_column_slice(y))
                .as_slice()
                .to_vec()
        })
        .collect();
    let sigma = dense_covariance(&ys);
    let objective = Quadratic::new(h.clone(), centers.clone());
    let n = centers.len() as f64;
    let minimum: Vec<f64> = (0..d)
        .map(|i| centers.iter().map(|c| c[i]).sum::<f64>() / n)
        .collect();
    let l0 = objective.loss(&minimum).unwrap();

    // GLD leading with k = D is N(0, Σ) in shape; fixed magnitude E‖n‖² = η·Tr Σ
    // makes Cov n = η·Σ exactly.
    let mut config = NoiseConfig {
        magnitude: Magnitude::Fixed,
        total_variance: Some(eta * sigma.trace()),
        ..NoiseConfig::default()
    };
    config.gld_leading.k = d;
    // Σ is the same at every θ here: one factorisation per trajectory is exact.
    config.gld_leading.refresh = usize::MAX;
    let spec = config.spec(DynamicsKind::GldLeading, eta);

    let rises: Vec<f64> = (0..replicates)
        .map(|r| {
            let mut noise = NoiseModel::new(spec.clone(), 3, r as u64);
            let end = engine::run(&objective, minimum.clone(), steps, &mut noise, |_, _, _| {
                Ok(())
            })
            .unwrap();
            objective.loss(&end.theta).unwrap() - l0
        })
        .collect();
    let (simulated, se) = mean_se(&rises);

    // Continuous closed form.
    let t = eta * steps as f64;
    let eig = h.clone().symmetric_eigen();
    let q = &eig.eigenvectors;
    let decay = DMatrix::from_diagonal(&eig.eigenvalues.map(|l| 1.0 - (-2.0 * l * t).exp()));
    let closed = 0.25 * (q * decay * q.transpose() * &sigma).trace();

    // Exact moments of the discrete recursion P ← (I − ηH)P(I − ηH) + ηΣ bound the
    // discretisation error of a step of length η.
    let a = DMatrix::identity(d, d) - &h * eta;
    let mut p = DMatrix::zeros(d, d);
    for _ in 0..steps {
        p = &a * p * &a + &sigma * eta;
    }
    let discrete = 0.5 * (&h * p).trace();
    let bias = (discrete - closed).abs();
    assert!(
        bias < 0.05 * closed,
        "step too coarse: discrete {discrete} vs closed {closed}"
    );
    assert!(
        (simulated - discrete).abs() <= Z * se,
        "simulated {simulated} vs exact discrete {discrete} ± {}",
        Z * se
    );
    assert!(
        (simulated - closed).abs() <= Z * se + bias,
        "simulated {simulated} vs closed form {closed} ± {} (+ bias {bias})",
        Z * se
    );
    // And the short-time slope (t/2)·Tr(HΣ) is the right order (Prop. 2).
    let slope = 0.5 * 0.01 * (&h * &sigma).trace();
    let early = 0.25
        * (q * DMatrix::from_diagonal(&eig.eigenvalues.map(|l| 1.0 - (-2.0 * l * 0.01).exp()))
            * q.transpose()
            * &sigma)
            .trace();
    assert!((early - slope).abs() < 0.05 * slope);
}
