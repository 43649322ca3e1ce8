//! Every noise's empirical covariance over ≥ 10⁴ draws matches its target (METHOD.md §2,
//! §5), and E‖n‖² its norm-matched value. Targets are built independently: Σ in closed
//! form from the quadratic's data (Σ = H·S·H), eigenpairs from nalgebra.

mod common;

use common::*;
use nalgebra::{DMatrix, DVector};
use noiselab::config::NoiseConfig;
use noiselab::dynamics::{DynamicsKind, Magnitude, NoiseModel};
use noiselab::estimators::AtPoint;
use noiselab::models::quadratic::Quadratic;
use noiselab::objective::Objective;

const DRAWS: usize = 20_000;
const D: usize = 4;
const N: usize = 40;
const M: usize = 5;
const ETA: f64 = 0.1;

struct Setup {
    objective: Quadratic,
    theta: Vec<f64>,
    /// Σ of Eq. 1, in closed form: H·S·H with S the 1/N covariance of the centres.
    sigma: DMatrix<f64>,
    h: DMatrix<f64>,
}

fn setup() -> Setup {
    let h = random_spd(D, 0.3, 5.0, 11);
    let centers = random_vectors(N, D, 1.0, 12);
    let s = dense_covariance(&centers);
    let sigma = &h * s * &h;
    Setup {
        objective: Quadratic::new(h.clone(), centers),
        theta: vec![0.3, -0.2, 0.1, 0.5],
        sigma,
        h,
    }
}

fn top_k(m: &DMatrix<f64>, k: usize) -> DMatrix<f64> {
    let eig = m.clone().symmetric_eigen();
    let mut idx: Vec<usize> = (0..m.nrows()).collect();
    idx.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let mut out = DMatrix::zeros(m.nrows(), m.nrows());
    for &j in idx.iter().take(k) {
        let u: DVector<f64> = eig.eigenvectors.column(j).into();
        out += eig.eigenvalues[j] * &u * u.transpose();
    }
    out
}

fn noise_config() -> NoiseConfig {
    let mut c = NoiseConfig {
        batch_size: M,
        ..NoiseConfig::default()
    };
    // One refresh for the whole test: the factor is fixed, draws are fresh.
    c.gld_dynamic.refresh = usize::MAX;
    c.gld_diag.refresh = usize::MAX;
    c.gld_leading.refresh = usize::MAX;
    c.gld_leading.k = 2;
    c.gld_hessian.refresh = usize::MAX;
    c.gld_hessian.k = 2;
    c.gld_eig1.refresh = usize::MAX;
    c.gld_const.sigma = 0.03;
    c
}

/// n_t draws of `kind` at the setup's θ; SGD's n = η(g0 − g_B).
fn draws(setup: &Setup, config: &NoiseConfig, kind: DynamicsKind) -> Vec<Vec<f64>> {
    let mut noise = NoiseModel::new(config.spec(kind, ETA), 5, 0);
    let g0 = setup.objective.loss_and_gradient(&setup.theta).unwrap().1;
    (0..DRAWS)
        .map(|t| {
            let mut at = AtPoint::new(&setup.objective, &setup.theta);
            let direction = noise.descent_direction(&mut at).unwrap();
            match noise.sample(t, &mut at).unwrap() {
                Some(n) => n,
                None => g0
                    .iter()
                    .zip(&direction)
                    .map(|(g, d)| ETA * (g - d))
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn every_noise_matches_its_target_covariance_norm_matched_to_sgd() {
    let s = setup();
    let config = noise_config();
    let c_m = &s.sigma / M as f64;
    let eta2 = ETA * ETA;
    let matched = |shape: DMatrix<f64>| shape.clone() * (eta2 * c_m.trace() / shape.trace());
    let targets = [
        (
            DynamicsKind::GldConst,
            DMatrix::identity(D, D) * 0.03f64.powi(2),
        ),
        (DynamicsKind::GldDynamic, matched(DMatrix::identity(D, D))),
        (
            DynamicsKind::GldDiag,
            matched(DMatrix::from_diagonal(&c_m.diagonal())),
        ),
        // Not rescaled: SGD's own noise restricted to its top-2 directions.
        (DynamicsKind::GldLeading, top_k(&c_m, 2) * eta2),
        (DynamicsKind::GldHessian, matched(top_k(&s.h, 2))),
        (DynamicsKind::GldEig1, matched(top_k(&s.h, 1))),
        // Batches drawn without replacement: finite-population factor (N − m)/(N − 1).
        (
            DynamicsKind::Sgd,
            &c_m * (eta2 * (N - M) as f64 / (N - 1) as f64),
        ),
    ];
    for (kind, target) in targets {
        assert_second_moments(&draws(&s, &config, kind), &target, kind.key());
    }
    // GD: no noise at all.
    assert!(draws(&s, &config, DynamicsKind::Gd)
        .iter()
        .flatten()
        .all(|&x| x == 0.0));
}

fn assert_expected_sq_norm(draws: &[Vec<f64>], target: f64, kind: DynamicsKind) {
    let sq: Vec<f64> = draws
        .iter()
        .map(|n| n.iter().map(|x| x * x).sum())
        .collect();
    let (m, se) = mean_se(&sq);
    assert!(
        (m - target).abs() <= Z * se,
        "{kind}: E‖n‖² {m} vs {target} ± {}",
        Z * se
    );
}

#[test]
fn norm_matched_noises_share_sgds_expected_squared_norm() {
    let s = setup();
    let config = noise_config();
    let target = ETA * ETA * s.sigma.trace() / M as f64;
    for kind in [
        DynamicsKind::GldDynamic,
        DynamicsKind::GldDiag,
        DynamicsKind::GldHessian,
        DynamicsKind::GldEig1,
    ] {
        assert_expected_sq_norm(&draws(&s, &config, kind), target, kind);
    }
}

#[test]
fn fixed_magnitude_mode_gives_every_gld_noise_the_same_norm() {
    let s = setup();
    let mut config = noise_config();
    config.magnitude = Magnitude::Fixed;
    config.total_variance = Some(0.01);
    for &kind in DynamicsKind::langevin() {
        assert_expected_sq_norm(&draws(&s, &config, kind), 0.01, kind);
    }
}

#[test]
fn gradient_units_scale_fixed_magnitudes_by_eta_only() {
    // θ ← θ − η(g0 + ε): GLD const's parameter noise is η·σ; matched noise is unchanged.
    let s = setup();
    let mut config = noise_config();
    config.units = noiselab::dynamics::Units::Gradient;
    let c = draws(&s, &config, DynamicsKind::GldConst);
    assert_second_moments(
        &c,
        &(DMatrix::identity(D, D) * (ETA * 0.03).powi(2)),
        "gld_const (gradient units)",
    );
    let c_m = &s.sigma / M as f64;
    let target = DMatrix::identity(D, D) * (ETA * ETA * c_m.trace() / D as f64);
    assert_second_moments(
        &draws(&s, &config, DynamicsKind::GldDynamic),
        &target,
        "gld_dynamic (gradient units)",
    );
}
