//! The FashionMNIST protocol of SPEC §4.3 (Figs. 3–6): LeNet on 1,200 training images of
//! which 200 carry a wrong label, GD to a sharp minimum θ_GD that memorises them (phase
//! 1), then every configured dynamics side by side from θ_GD (phase 2), measured every
//! `metrics_every` iterations: train/test loss and accuracy, expected sharpness, Tr(HΣ),
//! Tr(HΣ̄), their ratio, â, ‖g0‖ and SGD's noise norm.
//!
//! The network runs on the hand-written CPU kernels (`models/native.rs`). θ_GD is written
//! to `theta_gd.f64` in the run directory (raw little-endian f64, θ order) and a later run
//! can start from it (`fashion_mnist.theta_gd`); which training images were picked and
//! which were relabelled goes to `corrupted.json`.

use super::{end_trajectory, report_end};
use crate::config::{Config, FashionMnistConfig, Precision};
use crate::data::{idx, ImageSet};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::estimators::sharpness::expected_sharpness;
use crate::estimators::trace::hutchinson;
use crate::estimators::AtPoint;
use crate::events::{Event, EventSender, Metric};
use crate::kernels::Float;
use crate::models::lenet;
use crate::models::native::NativeClassifier;
use crate::objective::Objective;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The metrics this experiment reports, in display order.
pub const METRICS: [Metric; 11] = [
    Metric::TestAccuracy,
    Metric::Sharpness,
    Metric::TrainAccuracy,
    Metric::Loss,
    Metric::TestLoss,
    Metric::TrHSigma,
    Metric::TrHSigmaIso,
    Metric::IsotropyRatio,
    Metric::ProjectionCoefficient,
    Metric::GradientNorm,
    Metric::NoiseNorm,
];

/// One trajectory per dynamics, all from θ_GD.
pub fn labels() -> Vec<String> {
    vec!["from θ_GD".into()]
}

/// The run's images: the corrupted training set and the clean test set.
pub struct Data {
    pub train: ImageSet,
    pub test: ImageSet,
    /// Indices into the official training set of the picked images.
    pub picked: Vec<usize>,
    /// (position in `train`, true label, assigned wrong label)
    pub corrupted: Vec<(usize, u8, u8)>,
}

/// Picks `train_samples` training images by the run's seed and gives `corrupted` of
/// them a uniformly drawn wrong label.
pub fn load_data(config: &Config) -> Result<Data> {
    let cfg = config.fashion_mnist();
    let dir = Path::new(&cfg.data_dir);
    let full = idx::read_split(dir, idx::Split::Train, None)?;
    if full.len() < cfg.train_samples {
        return Err(Error::data(
            dir,
            format!(
                "{} training images, fashion_mnist.train_samples = {} asks for more",
                full.len(),
                cfg.train_samples
            ),
        ));
    }
    let mut rng = rng::stream(config.seed, 0, Purpose::Data);
    let picked = sample(&mut rng, full.len(), cfg.train_samples).into_vec();
    let mut train = full.select(&picked);
    let classes = train.classes as u8;
    let mut corrupted: Vec<(usize, u8, u8)> = sample(&mut rng, cfg.train_samples, cfg.corrupted)
        .into_iter()
        .map(|i| {
            let truth = train.labels[i];
            let wrong = (truth + rng.random_range(1..classes)) % classes;
            (i, truth, wrong)
        })
        .collect();
    corrupted.sort_unstable();
    for &(i, _, wrong) in &corrupted {
        train.labels[i] = wrong;
    }
    let test = idx::read_split(
        dir,
        idx::Split::Test,
        (cfg.test_samples > 0).then_some(cfg.test_samples),
    )?;
    Ok(Data {
        train,
        test,
        picked,
        corrupted,
    })
}

/// What a run reads from disk, checked before it starts: the data, and a θ_GD file's
/// size when one is given.
pub fn preflight(config: &Config) -> Result<()> {
    load_data(config)?;
    if let Some(path) = &config.fashion_mnist().theta_gd {
        read_theta_gd(path, lenet::PARAMETERS)?;
    }
    Ok(())
}

/// A `theta_gd.f64` file: `dim` little-endian f64, all finite.
fn read_theta_gd(path: &str, dim: usize) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() != 8 * dim {
        return Err(Error::data(
            path,
            format!(
                "a θ_GD file of LeNet holds {dim} f64 ({} bytes), found {} bytes",
                8 * dim,
                bytes.len()
            ),
        ));
    }
    let theta: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if let Some(bad) = theta.iter().find(|x| !x.is_finite()) {
        return Err(Error::data(path, format!("θ_GD holds {bad}")));
    }
    Ok(theta)
}

/// Loss, accuracies, sharpness, Tr(HΣ), Tr(HΣ̄), their ratio, â, ‖g0‖ and the noise
/// norm at the point `at`. Σ is the noise covariance the dynamics use (shared with them
/// through the point's cache; drawn from the measurement stream otherwise).
fn measure<T: Float, R: Rng>(
    model: &NativeClassifier<T>,
    data: &Data,
    at: &mut AtPoint<'_, NativeClassifier<T>>,
    noise: &NoiseModel,
    cfg: &FashionMnistConfig,
    rng: &mut R,
) -> Result<Vec<(Metric, f64)>> {
    let theta = at.theta();
    let (loss, g) = at.loss_and_gradient()?;
    let grad_norm = crate::linalg::norm_sq(g).sqrt();
    let train = model.evaluate(theta, &data.train)?;
    let test = model.evaluate(theta, &data.test)?;
    let sharp = expected_sharpness(
        model,
        theta,
        cfg.sharpness_delta,
        cfg.sharpness_samples,
        cfg.sharpness_abs,
        rng.random(),
    )?;
    let spec = noise.spec();
    let sigma = at
        .noise_covariance(spec.covariance, spec.batch_size, rng)?
        .clone();
    let tr_h_sigma = sigma.tr_h(|v| model.hvp(theta, v))?;
    let dim = model.dim();
    let tr_h = hutchinson(dim, |v| model.hvp(theta, v), cfg.trace_probes, rng.random())?;
    let iso = crate::estimators::indicators::tr_h_sigma_iso(tr_h.value, sigma.trace(), dim);
    let top = at.hessian_top(1, None)?;
    let a_hat = crate::estimators::indicators::projection_coefficient(
        &sigma,
        &top.vectors[0],
        top.values[0],
        tr_h.value,
    );
    Ok(vec![
        (Metric::TestAccuracy, test.accuracy),
        (Metric::Sharpness, sharp.value),
        (Metric::TrainAccuracy, train.accuracy),
        (Metric::Loss, loss),
        (Metric::TestLoss, test.loss),
        (Metric::TrHSigma, tr_h_sigma),
        (Metric::TrHSigmaIso, iso),
        (Metric::IsotropyRatio, tr_h_sigma / iso),
        (Metric::ProjectionCoefficient, a_hat),
        (Metric::GradientNorm, grad_norm),
        (Metric::NoiseNorm, sigma.trace().sqrt()),
    ])
}

/// θ_GD: read from `fashion_mnist.theta_gd`, or phase 1 (GD from PyTorch's default
/// initialisation), written to `theta_gd.f64` in the run directory.
fn theta_gd<T: Float>(
    config: &Config,
    model: &NativeClassifier<T>,
    train: &ImageSet,
    events: &EventSender,
    stop: &AtomicBool,
    run_dir: &Path,
) -> Result<Vec<f64>> {
    let cfg = config.fashion_mnist();
    let dim = model.dim();
    if let Some(path) = &cfg.theta_gd {
        let theta = read_theta_gd(path, dim)?;
        events.log(None, format!("θ_GD read from {path}"));
        return Ok(theta);
    }
    let mut theta = model
        .arch()
        .init_theta(&mut rng::stream(config.seed, 1, Purpose::Data));
    let every = (cfg.gd_iterations / 20).max(1);
    for t in 0..cfg.gd_iterations {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        let (loss, g) = model.loss_and_gradient(&theta)?;
        if t % every == 0 {
            events.log(
                None,
                format!(
                    "GD phase: iteration {t}/{}, loss {loss:.4}",
                    cfg.gd_iterations
                ),
            );
        }
        crate::linalg::axpy(-cfg.gd_eta, &g, &mut theta);
        if let Some(bad) = theta.iter().find(|x| !x.is_finite()) {
            return Err(Error::Numerics(format!(
                "GD phase diverged at iteration {t} (parameter {bad}); lower fashion_mnist.gd_eta"
            )));
        }
    }
    // On the corrupted training set itself: θ_GD should fit the wrong labels too.
    let eval = model.evaluate(&theta, train)?;
    events.log(
        None,
        format!(
            "GD phase done: θ_GD after {} iterations, training loss {:.4}, accuracy {:.4}",
            cfg.gd_iterations, eval.loss, eval.accuracy
        ),
    );
    let bytes: Vec<u8> = theta.iter().flat_map(|x| x.to_le_bytes()).collect();
    let path = run_dir.join("theta_gd.f64");
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    Ok(theta)
}

/// Fig. 3a: the top `hessian_spectrum` eigenvalues of H at θ_GD by Lanczos, published
/// as GD's Hessian spectrum at iteration 0 (where every dynamics starts).
fn hessian_spectrum<T: Float>(
    config: &Config,
    model: &NativeClassifier<T>,
    theta: &[f64],
    events: &EventSender,
) -> Result<()> {
    let k = config.fashion_mnist().hessian_spectrum.min(model.dim());
    if k == 0 {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let options = crate::estimators::lanczos::LanczosOptions {
        tol: model.hvp_tolerance(),
        max_products: 3 * k + 20,
        ..crate::estimators::lanczos::LanczosOptions::new(k)
    };
    let found = crate::estimators::lanczos::top_eigenpairs(
        model.dim(),
        |v| model.hvp(theta, v),
        &options,
        None,
    )?;
    let values = found.pairs.values;
    events.log(
        None,
        format!(
            "Hessian at θ_GD: top {} eigenvalues by Lanczos ({} HVPs, {:.0} s, max residual {:.1e}): λ1 = {:.4e}, λ{} = {:.4e}",
            values.len(),
            found.products,
            start.elapsed().as_secs_f64(),
            found.max_residual,
            values.first().copied().unwrap_or(f64::NAN),
            values.len(),
            values.last().copied().unwrap_or(f64::NAN)
        ),
    );
    events.send(Event::Spectrum {
        dynamics: DynamicsKind::Gd,
        replicate: 0,
        iteration: 0,
        of: crate::events::SpectrumOf::Hessian,
        values,
    });
    Ok(())
}

fn write_corrupted(data: &Data, run_dir: &Path) -> Result<()> {
    let json = serde_json::json!({
        "picked_training_indices": data.picked,
        "corrupted": data.corrupted.iter().map(|&(i, t, w)| serde_json::json!({
            "position": i, "training_index": data.picked[i], "true_label": t, "assigned_label": w
        })).collect::<Vec<_>>(),
    });
    let path = run_dir.join("corrupted.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| Error::io(&path, e))
}

/// One dynamics from θ_GD, publishing its measurements.
fn run_one<T: Float>(
    config: &Config,
    kind: DynamicsKind,
    model: &NativeClassifier<T>,
    data: &Data,
    theta0: &[f64],
    events: &EventSender,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = config.fashion_mnist();
    let mut noise = NoiseModel::new(config.noise.spec(kind, cfg.eta), config.seed, 0);
    let mut measure_rng = rng::stream(config.seed, 0, Purpose::Measurements(kind));
    let publish = |iteration: usize, values: Vec<(Metric, f64)>| {
        events.send(Event::Metrics {
            dynamics: kind,
            replicate: 0,
            iteration: iteration as u64,
            values,
        })
    };
    let end = engine::run(
        model,
        theta0.to_vec(),
        cfg.eta,
        cfg.iterations,
        &mut noise,
        |t, at, noise| {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Stopped);
            }
            if t % cfg.metrics_every == 0 {
                publish(t, measure(model, data, at, noise, &cfg, &mut measure_rng)?);
            }
            Ok(())
        },
    )?;
    end_trajectory(events, kind, 0, &end, |theta| {
        let mut at = AtPoint::new(model, theta);
        publish(
            cfg.iterations,
            measure(model, data, &mut at, &noise, &cfg, &mut measure_rng)?,
        );
        Ok(())
    })
}

fn run_with<T: Float>(
    config: &Config,
    data: &Data,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
    run_dir: &Path,
) -> Result<usize> {
    let model = NativeClassifier::<T>::new(lenet::architecture()?, &data.train)?;
    let theta0 = theta_gd(config, &model, &data.train, events, stop, run_dir)?;
    hessian_spectrum(config, &model, &theta0, events)?;
    let failed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for &kind in config.dynamics.iter().filter(|&&k| !skip.contains(&(k, 0))) {
            let (model, theta0, failed) = (&model, &theta0, &failed);
            scope.spawn(move || {
                let result = run_one(config, kind, model, data, theta0, events, stop);
                report_end(events, kind, result, stop, failed);
            });
        }
    });
    Ok(failed.into_inner())
}

/// Phase 1 then one worker per dynamics, all side by side (their kernel calls share
/// rayon's one pool, so they never oversubscribe the cores).
pub fn run_live(
    config: &Config,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
    run_dir: &Path,
) -> Result<usize> {
    let data = load_data(config)?;
    events.log(
        None,
        format!(
            "data: {} training images ({} relabelled wrongly), {} test images",
            data.train.len(),
            data.corrupted.len(),
            data.test.len()
        ),
    );
    write_corrupted(&data, run_dir)?;
    match config.fashion_mnist().precision {
        Precision::F32 => run_with::<f32>(config, &data, events, stop, skip, run_dir),
        Precision::F64 => run_with::<f64>(config, &data, events, stop, skip, run_dir),
    }
}
