//! All eight dynamics on LeNet with real FashionMNIST images through the engine: they
//! run, stay finite, are reproducible, and the norm-matched noises carry SGD's E‖n‖².

mod common;

use candle_core::{DType, Device};
use common::shared_data;
use noiselab::config::NoiseConfig;
use noiselab::data::idx;
use noiselab::dynamics::{CovarianceSource, DynamicsKind, NoiseModel, Units};
use noiselab::engine;
use noiselab::models::classifier::Classifier;
use noiselab::models::lenet;
use noiselab::models::network::Network;
use noiselab::objective::Objective;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

const ETA: f64 = 0.07;

fn lenet_model(n: usize) -> Classifier {
    let data = idx::read_split(
        &shared_data("fashion-mnist-subset"),
        idx::Split::Train,
        Some(n),
    )
    .unwrap();
    let net = Network::new(lenet::architecture().unwrap(), DType::F32, Device::Cpu).unwrap();
    Classifier::new(net, &data).unwrap()
}

/// The released code's conventions (METHOD.md §4.3), with small k and refresh so the test is
/// quick.
fn noise_config(covariance: CovarianceSource, units: Units) -> NoiseConfig {
    let mut c = NoiseConfig {
        covariance,
        units,
        batch_size: 10,
        ..NoiseConfig::default()
    };
    c.gld_leading.k = 4;
    c.gld_leading.refresh = 2;
    c.gld_hessian.k = 4;
    c.gld_hessian.refresh = 2;
    c.gld_eig1.refresh = 2;
    c
}

#[test]
fn every_dynamics_runs_on_lenet_and_is_reproducible() {
    let model = lenet_model(40);
    let theta0 = model
        .network()
        .arch
        .init_theta(&mut ChaCha12Rng::seed_from_u64(1));
    let config = noise_config(CovarianceSource::Minibatches, Units::Gradient);
    let l0 = model.loss(&theta0).unwrap();
    let mut finals = Vec::new();
    for kind in DynamicsKind::ALL {
        let run = || {
            let mut noise = NoiseModel::new(config.spec(kind, ETA), 7, 0);
            engine::run(&model, theta0.clone(), 3, &mut noise, |_, _, _| Ok(())).unwrap()
        };
        let a = run();
        assert!(a.diverged.is_none(), "{kind:?}: {:?}", a.diverged);
        assert_eq!(a.iterations, 3);
        assert!(a.theta.iter().all(|x| x.is_finite()));
        assert_ne!(a.theta, theta0, "{kind:?} moved");
        let b = run();
        assert_eq!(a.theta, b.theta, "{kind:?}: same seeds, same trajectory");
        if kind == DynamicsKind::Gd {
            assert!(model.loss(&a.theta).unwrap() < l0, "GD descends");
        }
        finals.push(a.theta);
    }
    for i in 0..finals.len() {
        for j in i + 1..finals.len() {
            assert_ne!(finals[i], finals[j], "dynamics {i} and {j} differ");
        }
    }
}

/// Eq. 5–6 on a network: GLD dynamic, diag, Hessian and 1st eigvec draw noise with
/// E‖n‖² = η²·Tr(Σ)/m, SGD's own (exact Σ from per-sample gradients).
#[test]
fn norm_matched_noises_carry_sgds_variance_on_lenet() {
    let model = lenet_model(60);
    let theta = model
        .network()
        .arch
        .init_theta(&mut ChaCha12Rng::seed_from_u64(2));
    let config = noise_config(CovarianceSource::PerSample, Units::Parameter);
    let at_point = |kind| {
        let mut noise = NoiseModel::new(config.spec(kind, ETA), 3, 0);
        let mut at = noiselab::estimators::AtPoint::new(&model, &theta);
        noise.sample(0, &mut at).unwrap();
        noise.expected_sq_norm(&mut at).unwrap()
    };
    let sgd = at_point(DynamicsKind::Sgd);
    assert!(sgd > 0.0);
    for kind in [
        DynamicsKind::GldDynamic,
        DynamicsKind::GldDiag,
        DynamicsKind::GldHessian,
        DynamicsKind::GldEig1,
    ] {
        let e = at_point(kind);
        assert!(
            (e - sgd).abs() <= 1e-9 * sgd,
            "{kind:?}: E‖n‖² = {e} vs SGD's {sgd}"
        );
    }
}
