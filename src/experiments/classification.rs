//! The image-classification protocol of SPEC §4.3–§4.4, one code for its datasets:
//! FashionMNIST with LeNet (Figs. 3–6: 1,200 training images of which 200 carry a wrong
//! label) and CIFAR-10 with VGG11 (Fig. 7: the clean training set). Phase 1 runs GD to a
//! sharp minimum θ_GD (measured every `gd_metrics_every` iterations: Fig. 4's GD curve
//! before the dashed line), phase 2 every configured dynamics side by side from θ_GD,
//! measured every `metrics_every` iterations: train/test loss and accuracy, expected
//! sharpness and, with `curvature_metrics`, Tr(HΣ), Tr(HΣ̄), their ratio, â, ‖g0‖ and
//! SGD's noise norm. Iterations are counted from the start of phase 1 as in the paper's
//! figures: phase 2 starts at iteration `gd_iterations`.
//!
//! The network runs on the hand-written CPU kernels (`models/native.rs`). θ_GD is written
//! to `theta_gd.f64` in the run directory (raw little-endian f64, θ order) and a later run
//! can start from it (`<section>.theta_gd`); which training images were picked and
//! which were relabelled goes to `corrupted.json`.

use super::{end_trajectory, report_end};
use crate::config::{Cifar10, Config, FashionMnist, ImageConfig, ImageDataset, Precision};
use crate::data::{cifar, idx, ImageSet, Split};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::estimators::sharpness::expected_sharpness;
use crate::estimators::trace::hutchinson;
use crate::estimators::AtPoint;
use crate::events::{Event, EventSender, Metric};
use crate::kernels::Float;
use crate::models::native::NativeClassifier;
use crate::models::network::Architecture;
use crate::models::{lenet, vgg11};
use crate::objective::Objective;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A dataset and the network the protocol trains on it.
pub trait Dataset: ImageDataset {
    /// The network's parameter count D.
    const PARAMETERS: usize;
    fn architecture() -> Result<Architecture>;
    /// One split from `dir`, with a note of the files it came from.
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)>;
    fn settings(config: &Config) -> ImageConfig<Self>;
}

impl Dataset for FashionMnist {
    const PARAMETERS: usize = lenet::PARAMETERS;
    fn architecture() -> Result<Architecture> {
        lenet::architecture()
    }
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)> {
        Ok((
            idx::read_split(dir, split, limit)?,
            dir.display().to_string(),
        ))
    }
    fn settings(config: &Config) -> ImageConfig<Self> {
        config.fashion_mnist()
    }
}

impl Dataset for Cifar10 {
    const PARAMETERS: usize = vgg11::PARAMETERS;
    fn architecture() -> Result<Architecture> {
        vgg11::architecture()
    }
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)> {
        let (set, files) = cifar::read_split(dir, split, limit)?;
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if split == Split::Train && files.len() < cifar::TRAINING_BATCHES.len() {
            names.push(format!(
                "the official training set has all {} batches",
                cifar::TRAINING_BATCHES.len()
            ));
        }
        Ok((set, format!("{} ({})", dir.display(), names.join(", "))))
    }
    fn settings(config: &Config) -> ImageConfig<Self> {
        config.cifar10()
    }
}

/// Every metric this protocol can report, in display order.
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

/// The metrics a run of this config reports.
pub fn metrics(curvature: bool) -> Vec<Metric> {
    METRICS
        .into_iter()
        .filter(|m| curvature || BASIC_METRICS.contains(m))
        .collect()
}

/// What every measurement has, curvature or not.
const BASIC_METRICS: [Metric; 6] = [
    Metric::TestAccuracy,
    Metric::Sharpness,
    Metric::TrainAccuracy,
    Metric::Loss,
    Metric::TestLoss,
    Metric::GradientNorm,
];

/// One trajectory per dynamics, all from θ_GD (GD's also holds phase 1).
pub fn labels() -> Vec<String> {
    vec!["from θ_GD".into()]
}

/// The run's images: the (partly relabelled) training set and the clean test set.
pub struct Data {
    pub train: ImageSet,
    pub test: ImageSet,
    /// Indices into the official training set of the picked images.
    pub picked: Vec<usize>,
    /// (position in `train`, true label, assigned wrong label)
    pub corrupted: Vec<(usize, u8, u8)>,
    /// Where the images came from, for the log.
    pub sources: (String, String),
}

/// Picks `train_samples` training images by the run's seed (all of them, in order, when
/// 0) and gives `corrupted` of them a uniformly drawn wrong label.
pub fn load_data<D: Dataset>(config: &Config) -> Result<Data> {
    let cfg = D::settings(config);
    let dir = Path::new(&cfg.data_dir);
    let (full, train_source) = D::read(dir, Split::Train, None)?;
    let n = cfg.training_images(full.len());
    let key = ImageConfig::<D>::key;
    if full.len() < n.max(2) || cfg.corrupted > n {
        return Err(Error::data(
            dir,
            format!(
                "{} training images; {} = {} and {} = {} ask for more",
                full.len(),
                key("train_samples"),
                cfg.train_samples,
                key("corrupted"),
                cfg.corrupted
            ),
        ));
    }
    // With the whole set (train_samples = 0) the batch size is checked against the data:
    // the config's own check, on the number of images found.
    crate::config::check_batch_size(config, n, &key("train_samples")).map_err(
        |(key, problem)| Error::data(dir, format!("{n} training images here; {key}: {problem}")),
    )?;
    let mut rng = rng::stream(config.seed, 0, Purpose::Data);
    let picked = if cfg.train_samples == 0 {
        (0..n).collect()
    } else {
        sample(&mut rng, full.len(), n).into_vec()
    };
    let mut train = full.select(&picked);
    let classes = train.classes as u8;
    let mut corrupted: Vec<(usize, u8, u8)> = sample(&mut rng, n, cfg.corrupted)
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
    let (test, test_source) = D::read(
        dir,
        Split::Test,
        (cfg.test_samples > 0).then_some(cfg.test_samples),
    )?;
    Ok(Data {
        train,
        test,
        picked,
        corrupted,
        sources: (train_source, test_source),
    })
}

/// What a run reads from disk and the memory it will need, checked before it starts:
/// the data, a θ_GD file's size when one is given, and Σ's gradient matrices.
pub fn preflight<D: Dataset>(config: &Config) -> Result<()> {
    let data = load_data::<D>(config)?;
    let cfg = D::settings(config);
    if let Some(path) = &cfg.theta_gd {
        read_theta_gd::<D>(path)?;
    }
    check_memory::<D>(config, data.train.len(), available_memory())
}

/// `MemAvailable` of /proc/meminfo, if it can be read.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Σ is held as K gradients of D parameters in f64 (K = N per-sample gradients, or N/m
/// minibatch gradients), one per dynamics that uses it at a time; refuses a run that
/// cannot fit rather than letting the kernel kill it hours in.
pub fn check_memory<D: Dataset>(config: &Config, n: usize, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let cfg = D::settings(config);
    let rows = match config.noise.covariance {
        crate::dynamics::CovarianceSource::PerSample => n,
        crate::dynamics::CovarianceSource::Minibatches => n / config.noise.batch_size,
    };
    let per_matrix = (rows * D::PARAMETERS * 8) as u64;
    let holders = config
        .dynamics
        .iter()
        .filter(|&&k| {
            cfg.curvature_metrics
                || !matches!(
                    k,
                    DynamicsKind::Gd | DynamicsKind::Sgd | DynamicsKind::GldConst
                )
        })
        .count() as u64;
    let needed = per_matrix * holders;
    if needed <= available {
        return Ok(());
    }
    let gb = |b: u64| b as f64 / 1e9;
    Err(Error::Config(crate::config::ConfigError {
        source: format!("experiment \"{}\"", D::SECTION),
        key: Some("noise.covariance".into()),
        problem: format!(
            "Σ from {rows} gradients of {} parameters takes {:.1} GB (f64) and {holders} dynamics \
             can hold one at once: {:.1} GB, but {:.1} GB of memory is available. Use \
             noise.covariance = \"minibatches\" with a larger noise.batch_size, fewer \
             {}.train_samples, fewer dynamics{}",
            D::PARAMETERS,
            gb(per_matrix),
            gb(needed),
            gb(available),
            D::SECTION,
            if cfg.curvature_metrics {
                format!(", or {}.curvature_metrics = false", D::SECTION)
            } else {
                String::new()
            }
        ),
    }))
}

/// A `theta_gd.f64` file: D little-endian f64, all finite.
fn read_theta_gd<D: Dataset>(path: &str) -> Result<Vec<f64>> {
    let dim = D::PARAMETERS;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() != 8 * dim {
        return Err(Error::data(
            path,
            format!(
                "a θ_GD file of this network ({}) holds {dim} f64 ({} bytes), found {} bytes",
                D::SECTION,
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

/// What one measurement needs besides the point.
struct Measure<'a, T: Float, D: Dataset> {
    model: &'a NativeClassifier<T>,
    data: &'a Data,
    cfg: &'a ImageConfig<D>,
}

impl<T: Float, D: Dataset> Measure<'_, T, D> {
    /// Loss, accuracies, sharpness and ‖g0‖ at the point `at`; with curvature metrics
    /// also Tr(HΣ), Tr(HΣ̄), their ratio, â and the noise norm. Σ is the noise covariance
    /// the dynamics use (shared with them through the point's cache; drawn from the
    /// measurement stream otherwise).
    fn at<R: Rng>(
        &self,
        at: &mut AtPoint<'_, NativeClassifier<T>>,
        noise: &NoiseModel,
        rng: &mut R,
    ) -> Result<Vec<(Metric, f64)>> {
        let (model, cfg) = (self.model, self.cfg);
        let theta = at.theta();
        let (loss, g) = at.loss_and_gradient()?;
        let grad_norm = crate::linalg::norm_sq(g).sqrt();
        let train = model.evaluate(theta, &self.data.train)?;
        let test = model.evaluate(theta, &self.data.test)?;
        let sharp = expected_sharpness(
            model,
            theta,
            cfg.sharpness_delta,
            cfg.sharpness_samples,
            cfg.sharpness_abs,
            rng.random(),
        )?;
        let mut values = vec![
            (Metric::TestAccuracy, test.accuracy),
            (Metric::Sharpness, sharp.value),
            (Metric::TrainAccuracy, train.accuracy),
            (Metric::Loss, loss),
            (Metric::TestLoss, test.loss),
            (Metric::GradientNorm, grad_norm),
        ];
        if !cfg.curvature_metrics {
            return Ok(values);
        }
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
        values.extend([
            (Metric::TrHSigma, tr_h_sigma),
            (Metric::TrHSigmaIso, iso),
            (Metric::IsotropyRatio, tr_h_sigma / iso),
            (Metric::ProjectionCoefficient, a_hat),
            (Metric::NoiseNorm, sigma.trace().sqrt()),
        ]);
        // Display order.
        values.sort_by_key(|(m, _)| METRICS.iter().position(|x| x == m));
        Ok(values)
    }
}

fn publish(events: &EventSender, kind: DynamicsKind, iteration: usize, values: Vec<(Metric, f64)>) {
    events.send(Event::Metrics {
        dynamics: kind,
        replicate: 0,
        iteration: iteration as u64,
        values,
    })
}

/// θ_GD: read from `<section>.theta_gd`, or phase 1 (GD from PyTorch's default
/// initialisation, published as GD's iterations before `gd_iterations`), written to
/// `theta_gd.f64` in the run directory.
fn theta_gd<T: Float, D: Dataset>(
    config: &Config,
    measure: &Measure<'_, T, D>,
    events: &EventSender,
    stop: &AtomicBool,
    run_dir: &Path,
) -> Result<Vec<f64>> {
    let (model, cfg) = (measure.model, measure.cfg);
    if let Some(path) = &cfg.theta_gd {
        let theta = read_theta_gd::<D>(path)?;
        events.log(None, format!("θ_GD read from {path}"));
        return Ok(theta);
    }
    let mut theta = model
        .arch()
        .init_theta(&mut rng::stream(config.seed, 1, Purpose::Data));
    // Phase 1's own streams (replicate 1), so that phase 2 draws the same whether or
    // not phase 1 was measured or run at all.
    let noise = NoiseModel::new(
        config.noise.spec(DynamicsKind::Gd, cfg.gd_eta),
        config.seed,
        1,
    );
    let mut measure_rng = rng::stream(config.seed, 1, Purpose::Measurements(DynamicsKind::Gd));
    // Progress every 5 % of the phase, and at least every 10 s (VGG11 on CPU).
    let every = (cfg.gd_iterations / 20).max(1);
    let mut last_log = std::time::Instant::now();
    for t in 0..cfg.gd_iterations {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        if cfg.gd_metrics_every > 0 && t % cfg.gd_metrics_every == 0 {
            let mut at = AtPoint::new(model, &theta);
            publish(
                events,
                DynamicsKind::Gd,
                t,
                measure.at(&mut at, &noise, &mut measure_rng)?,
            );
        }
        let (loss, g) = model.loss_and_gradient(&theta)?;
        if t % every == 0 || last_log.elapsed().as_secs() >= 10 {
            last_log = std::time::Instant::now();
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
                "GD phase diverged at iteration {t} (parameter {bad}); lower {}.gd_eta",
                D::SECTION
            )));
        }
    }
    // On the training set itself: θ_GD should fit the wrong labels too.
    let eval = model.evaluate(&theta, &measure.data.train)?;
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
/// as GD's Hessian spectrum at the iteration where every dynamics starts.
fn hessian_spectrum<T: Float, D: Dataset>(
    cfg: &ImageConfig<D>,
    model: &NativeClassifier<T>,
    theta: &[f64],
    events: &EventSender,
) -> Result<()> {
    let k = cfg.hessian_spectrum.min(model.dim());
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
        iteration: cfg.gd_iterations as u64,
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

/// One dynamics from θ_GD, publishing its measurements at iterations counted from the
/// start of phase 1.
fn run_one<T: Float, D: Dataset>(
    config: &Config,
    kind: DynamicsKind,
    measure: &Measure<'_, T, D>,
    theta0: &[f64],
    events: &EventSender,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = measure.cfg;
    let offset = cfg.gd_iterations;
    let mut noise = NoiseModel::new(config.noise.spec(kind, cfg.eta), config.seed, 0);
    let mut measure_rng = rng::stream(config.seed, 0, Purpose::Measurements(kind));
    let mut end = engine::run(
        measure.model,
        theta0.to_vec(),
        cfg.eta,
        cfg.iterations,
        &mut noise,
        |t, at, noise| {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Stopped);
            }
            if t % cfg.metrics_every == 0 {
                publish(
                    events,
                    kind,
                    offset + t,
                    measure.at(at, noise, &mut measure_rng)?,
                );
            }
            Ok(())
        },
    )?;
    if let Some(d) = &mut end.diverged {
        d.iteration += offset;
    }
    end_trajectory(events, kind, 0, &end, |theta| {
        let mut at = AtPoint::new(measure.model, theta);
        publish(
            events,
            kind,
            offset + cfg.iterations,
            measure.at(&mut at, &noise, &mut measure_rng)?,
        );
        Ok(())
    })
}

fn run_with<T: Float, D: Dataset>(
    config: &Config,
    data: &Data,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
    run_dir: &Path,
) -> Result<usize> {
    let cfg = D::settings(config);
    let model = NativeClassifier::<T>::new(D::architecture()?, &data.train)?;
    let measure = Measure {
        model: &model,
        data,
        cfg: &cfg,
    };
    let theta0 = theta_gd(config, &measure, events, stop, run_dir)?;
    hessian_spectrum(&cfg, &model, &theta0, events)?;
    let failed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for &kind in config.dynamics.iter().filter(|&&k| !skip.contains(&(k, 0))) {
            let (measure, theta0, failed) = (&measure, &theta0, &failed);
            scope.spawn(move || {
                let result = run_one(config, kind, measure, theta0, events, stop);
                report_end(events, kind, result, stop, failed);
            });
        }
    });
    Ok(failed.into_inner())
}

/// Phase 1 then one worker per dynamics, all side by side (their kernel calls share
/// rayon's one pool, so they never oversubscribe the cores).
pub fn run_live<D: Dataset>(
    config: &Config,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
    run_dir: &Path,
) -> Result<usize> {
    let data = load_data::<D>(config)?;
    events.log(
        None,
        format!(
            "data: {} training images ({} relabelled wrongly) from {}; {} test images from {}",
            data.train.len(),
            data.corrupted.len(),
            data.sources.0,
            data.test.len(),
            data.sources.1
        ),
    );
    write_corrupted(&data, run_dir)?;
    match D::settings(config).precision {
        Precision::F32 => run_with::<f32, D>(config, &data, events, stop, skip, run_dir),
        Precision::F64 => run_with::<f64, D>(config, &data, events, stop, skip, run_dir),
    }
}
