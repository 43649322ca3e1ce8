//! The image-classification protocol of docs/METHOD.md §4.3–§4.4, one code for its datasets:
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

use super::{costliest_first, partial, HealthWatch, Say, Section, Tracker};
use crate::config::{at_least, check, positive, Config, Invalid};
use crate::data::{ImageSet, Split};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine::{self, Start};
use crate::estimators::sharpness::{
    batch_gradient_bytes, expected_sharpness, SharpnessEstimator, SharpnessOptions,
    BATCH_GRADIENT_BYTES,
};
use crate::estimators::trace::hutchinson_block;
use crate::estimators::AtPoint;
use crate::events::{Event, Metric, RunStatus, SpectrumOf};
use crate::experiment::{Experiment, Outline, RunContext};
use crate::models::classifier::{Classifier, ImageModel};
use crate::models::native::NativeClassifier;
use crate::models::network::Architecture;
use crate::record::state::RecordState;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// A dataset and the network the protocol trains on it: what differs between the
/// experiments that share this protocol (`fashion_mnist.rs`, `cifar10.rs`).
pub trait Dataset: Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The experiment key and config section.
    const SECTION: &'static str;
    /// Images in the official training set.
    const TRAINING_SET: usize;
    /// The network's parameter count D.
    const PARAMETERS: usize;
    fn defaults() -> ImageConfig<Self>;
    fn architecture() -> Result<Architecture>;
    /// One split from `dir`, with a note of the files it came from.
    fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<(ImageSet, String)>;
}

/// The image-classification protocol of METHOD.md §4.3–§4.4, shared by its datasets: GD to a
/// sharp minimum θ_GD on a training set (some of it relabelled wrongly), then every
/// dynamics from θ_GD. `D` names the dataset: its config section and its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct ImageConfig<D: Dataset> {
    /// Directory with the dataset's official files.
    pub data_dir: String,
    /// Training images drawn from the training set by the run's seed (0 = all of it) …
    pub train_samples: usize,
    /// … of which this many get a random wrong label.
    pub corrupted: usize,
    /// Test images (the first ones of the test set); 0 = all of it.
    pub test_samples: usize,
    /// Phase 1: GD step and iterations to θ_GD.
    pub gd_eta: f64,
    pub gd_iterations: usize,
    /// Measure phase 1 every this many iterations (0 = not at all): Fig. 4's GD curve
    /// before θ_GD.
    pub gd_metrics_every: usize,
    /// A θ_GD file (`theta_gd.f64` of an earlier run) to start from instead of phase 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theta_gd: Option<String>,
    /// Phase 2: the dynamics' step and iterations.
    pub eta: f64,
    pub iterations: usize,
    /// Measure every this many iterations of phase 2 (and at its end).
    pub metrics_every: usize,
    /// Expected sharpness: Monte Carlo samples M, perturbation δ, |rise| as the released
    /// code does (`abs`) or the signed rise.
    pub sharpness_samples: usize,
    pub sharpness_delta: f64,
    pub sharpness_abs: bool,
    /// How the M perturbed losses are combined (METHOD.md §3): `control_variate` (the
    /// presets), `antithetic` or `plain`. A config without the key means `plain`, what
    /// every run recorded before the key existed used.
    #[serde(default = "plain_sharpness")]
    pub sharpness_estimator: SharpnessEstimator,
    /// Consecutive training images per batch of the `per_batch` estimator, each batch at
    /// its own ν in every pass (METHOD.md §3).
    pub sharpness_batch_size: usize,
    /// Also measure Tr(HΣ), Tr(HΣ̄), their ratio, â and Tr H (K + trace_probes + Lanczos
    /// Hessian-vector products per measurement); Fig. 7 needs none of them.
    pub curvature_metrics: bool,
    /// Hutchinson probes for Tr H.
    pub trace_probes: usize,
    /// Top Hessian eigenvalues computed at θ_GD (Fig. 3a; Lanczos); 0 skips them.
    pub hessian_spectrum: usize,
    /// `f32` or `f64` arithmetic in the network.
    pub precision: Precision,
    #[serde(skip)]
    pub dataset: PhantomData<D>,
}

fn plain_sharpness() -> SharpnessEstimator {
    SharpnessEstimator::Plain
}

impl<D: Dataset> Default for ImageConfig<D> {
    fn default() -> Self {
        D::defaults()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    F64,
}

impl Precision {
    /// The candle dtype of this precision (the candle classifier on candle-cpu / CUDA).
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F64 => candle_core::DType::F64,
        }
    }
}

impl<D: Dataset> ImageConfig<D> {
    /// `section.name`, for error messages.
    pub(crate) fn key(name: &str) -> String {
        format!("{}.{name}", D::SECTION)
    }

    fn check(&self, config: &Config) -> std::result::Result<(), Invalid> {
        let key = Self::key;
        check(
            self.train_samples == 0 || (2..=D::TRAINING_SET).contains(&self.train_samples),
            &key("train_samples"),
            self.train_samples,
            &format!(
                "0 (the whole training set) or 2 to {} (the training set's size)",
                D::TRAINING_SET
            ),
        )?;
        // The training set's size when all of it is used is checked against the data.
        let n = self.training_images(D::TRAINING_SET);
        check(
            self.corrupted <= n,
            &key("corrupted"),
            self.corrupted,
            &format!("at most the {n} training images"),
        )?;
        positive(&key("gd_eta"), self.gd_eta)?;
        positive(&key("eta"), self.eta)?;
        at_least(&key("iterations"), self.iterations, 1)?;
        at_least(&key("metrics_every"), self.metrics_every, 1)?;
        at_least(&key("sharpness_samples"), self.sharpness_samples, 2)?;
        positive(&key("sharpness_delta"), self.sharpness_delta)?;
        check(
            !(self.sharpness_abs
                && matches!(
                    self.sharpness_estimator,
                    SharpnessEstimator::ControlVariate | SharpnessEstimator::PerBatch
                )),
            &key("sharpness_estimator"),
            self.sharpness_estimator.key(),
            "plain or antithetic with sharpness_abs = true (the gradient control variates apply to the signed rise only)",
        )?;
        // Larger than the training set is one batch of all of it (plain control variate).
        at_least(&key("sharpness_batch_size"), self.sharpness_batch_size, 1)?;
        let bytes = batch_gradient_bytes(n, self.sharpness_batch_size, D::PARAMETERS);
        check(
            self.sharpness_estimator != SharpnessEstimator::PerBatch
                || bytes <= BATCH_GRADIENT_BYTES,
            &key("sharpness_estimator"),
            "per_batch",
            &format!(
                "control_variate, or a sharpness_batch_size that keeps the {n}/b batch gradients of D = {} within {:.1} GB (b = {}: {:.1} GB)",
                D::PARAMETERS,
                BATCH_GRADIENT_BYTES as f64 / 1e9,
                self.sharpness_batch_size,
                bytes as f64 / 1e9
            ),
        )?;
        at_least(&key("trace_probes"), self.trace_probes, 1)?;
        check(
            self.hessian_spectrum <= 2000,
            &key("hessian_spectrum"),
            self.hessian_spectrum,
            "at most 2000 eigenvalues (0 to skip)",
        )?;
        check_batch_size(config, n, &key("train_samples"))
    }

    /// Training images used, given the number in the dataset.
    pub fn training_images(&self, available: usize) -> usize {
        if self.train_samples == 0 {
            available
        } else {
            self.train_samples
        }
    }
}

/// SGD's batch size against the `n` training samples (named by `samples_key`); also run
/// on the number of images found when the whole training set is used.
pub(crate) fn check_batch_size(
    config: &Config,
    n: usize,
    samples_key: &str,
) -> std::result::Result<(), Invalid> {
    let m = config.noise.batch_size;
    check(
        m <= n,
        "noise.batch_size",
        m,
        &format!("at most the {n} training samples ({samples_key})"),
    )?;
    if config.noise.covariance == crate::dynamics::CovarianceSource::Minibatches {
        check(
            n / m >= 2,
            "noise.batch_size",
            m,
            &format!(
                "at most half the {n} training samples ({samples_key}): Σ needs at least two minibatches"
            ),
        )?;
    }
    Ok(())
}

/// Every metric this protocol can report, in display order.
pub const METRICS: [Metric; 12] = [
    Metric::TEST_ACCURACY,
    Metric::SHARPNESS,
    Metric::SHARPNESS_SE,
    Metric::TRAIN_ACCURACY,
    Metric::LOSS,
    Metric::TEST_LOSS,
    Metric::TR_H_SIGMA,
    Metric::TR_H_SIGMA_ISO,
    Metric::ISOTROPY_RATIO,
    Metric::PROJECTION_COEFFICIENT,
    Metric::GRADIENT_NORM,
    Metric::NOISE_NORM,
];

/// The metrics a run of this config reports.
pub fn metrics(curvature: bool) -> Vec<Metric> {
    METRICS
        .into_iter()
        .filter(|m| curvature || BASIC_METRICS.contains(m))
        .collect()
}

/// What every measurement has, curvature or not.
const BASIC_METRICS: [Metric; 7] = [
    Metric::TEST_ACCURACY,
    Metric::SHARPNESS,
    Metric::SHARPNESS_SE,
    Metric::TRAIN_ACCURACY,
    Metric::LOSS,
    Metric::TEST_LOSS,
    Metric::GRADIENT_NORM,
];

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
    let cfg = settings::<D>(config);
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
    check_batch_size(config, n, &key("train_samples")).map_err(|(key, problem)| {
        Error::data(dir, format!("{n} training images here; {key}: {problem}"))
    })?;
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
    let cfg = settings::<D>(config);
    if let Some(path) = &cfg.theta_gd {
        read_theta_gd::<D>(Path::new(path))?;
    }
    check_memory::<D>(config, data.train.len(), available_memory())?;
    // Opening the device here makes a missing GPU or a CPU-only build fail before a run
    // directory exists.
    if let Some(device) = config.device.candle()? {
        if let Some(gpu) = crate::device::gpu_memory(&device) {
            check_gpu_memory::<D>(config, data.train.len(), &gpu)?;
        }
    }
    Ok(())
}

/// The candle classifier on a GPU holds the training images there and runs one pass
/// per dynamics at a time: refuses a run whose estimate exceeds the device's free
/// memory, with the numbers.
pub fn check_gpu_memory<D: Dataset>(
    config: &Config,
    n: usize,
    gpu: &crate::device::GpuMemory,
) -> Result<()> {
    let cfg = settings::<D>(config);
    let dtype = cfg.precision.dtype();
    let rows = match config.noise.covariance {
        crate::dynamics::CovarianceSource::PerSample => 1,
        crate::dynamics::CovarianceSource::Minibatches => config.noise.batch_size,
    };
    let passes = config.dynamics.len().max(1);
    let needed =
        crate::models::classifier::device_bytes(&D::architecture()?, dtype, n, rows, passes);
    if needed <= gpu.free {
        return Ok(());
    }
    let gb = |b: u64| b as f64 / 1e9;
    Err(Error::Config(crate::config::ConfigError {
        source: format!("experiment \"{}\"", D::SECTION),
        key: Some("device".into()),
        problem: format!(
            "{n} training images with {passes} dynamics need about {:.1} GB of GPU memory, \
             but {} ({}) has {:.1} GB free of {:.1} GB. Use fewer dynamics, fewer \
             {}.train_samples, or {}.precision = \"f32\"",
            gb(needed),
            config.device,
            gpu.name,
            gb(gpu.free),
            gb(gpu.total),
            D::SECTION,
            D::SECTION
        ),
    }))
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
    let cfg = settings::<D>(config);
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
pub fn read_theta_gd<D: Dataset>(path: &Path) -> Result<Vec<f64>> {
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
struct Measure<'a, M: ImageModel, D: Dataset> {
    model: &'a M,
    data: &'a Data,
    cfg: &'a ImageConfig<D>,
}

impl<M: ImageModel, D: Dataset> Measure<'_, M, D> {
    /// Loss, accuracies, sharpness and ‖g0‖ at the point `at`; with curvature metrics
    /// also Tr(HΣ), Tr(HΣ̄), their ratio, â and the noise norm. Σ is the noise covariance
    /// the dynamics use (shared with them through the point's cache; drawn from the
    /// measurement stream otherwise).
    fn at<R: Rng>(
        &self,
        at: &mut AtPoint<'_, M>,
        noise: &NoiseModel,
        rng: &mut R,
        say: Say<'_>,
    ) -> Result<Vec<(Metric, f64)>> {
        let (model, cfg) = (self.model, self.cfg);
        let theta = at.theta();
        say.measuring("loss and accuracy");
        let (loss, g) = at.loss_and_gradient()?;
        let grad_norm = crate::linalg::norm_sq(g).sqrt();
        let train = model.evaluate(theta, &self.data.train)?;
        let test = model.evaluate(theta, &self.data.test)?;
        say.measuring(format!(
            "expected sharpness (M = {} perturbed losses, {})",
            cfg.sharpness_samples,
            cfg.sharpness_estimator.key()
        ));
        let sharp = expected_sharpness(
            model,
            theta,
            Some(g),
            &SharpnessOptions {
                delta: cfg.sharpness_delta,
                samples: cfg.sharpness_samples,
                absolute: cfg.sharpness_abs,
                estimator: cfg.sharpness_estimator,
                batch_size: cfg.sharpness_batch_size,
                seed: rng.random(),
            },
        )?;
        let mut values = vec![
            (Metric::TEST_ACCURACY, test.accuracy),
            (Metric::SHARPNESS, sharp.value),
            (Metric::SHARPNESS_SE, sharp.stderr),
            (Metric::TRAIN_ACCURACY, train.accuracy),
            (Metric::LOSS, loss),
            (Metric::TEST_LOSS, test.loss),
            (Metric::GRADIENT_NORM, grad_norm),
        ];
        if !cfg.curvature_metrics {
            return Ok(values);
        }
        let spec = noise.spec();
        say.measuring("Tr(HΣ): Σ's gradients and their Hessian-vector products");
        let sigma = at
            .noise_covariance(spec.covariance, spec.batch_size, rng)?
            .clone();
        let tr_h_sigma = sigma.tr_h_block(|vs| model.hessian_quadratic_forms(theta, vs))?;
        let dim = model.dim();
        say.measuring(format!("Tr H ({} Hutchinson probes)", cfg.trace_probes));
        let tr_h = hutchinson_block(
            dim,
            |zs| model.hessian_quadratic_forms(theta, zs),
            cfg.trace_probes,
            rng.random(),
        )?;
        let iso = crate::estimators::indicators::tr_h_sigma_iso(tr_h.value, sigma.trace(), dim);
        say.measuring("â: the top Hessian eigenvector (Lanczos)");
        let top = at.hessian_top(1, None)?;
        let a_hat = crate::estimators::indicators::projection_coefficient(
            &sigma,
            &top.vectors[0],
            top.values[0],
            tr_h.value,
        );
        values.extend([
            (Metric::TR_H_SIGMA, tr_h_sigma),
            (Metric::TR_H_SIGMA_ISO, iso),
            (Metric::ISOTROPY_RATIO, tr_h_sigma / iso),
            (Metric::PROJECTION_COEFFICIENT, a_hat),
            (Metric::NOISE_NORM, sigma.trace().sqrt()),
        ]);
        // Display order.
        values.sort_by_key(|(m, _)| METRICS.iter().position(|x| x == m));
        Ok(values)
    }
}

/// The settings of the protocol on dataset `D`.
fn settings<D: Dataset>(config: &Config) -> &ImageConfig<D> {
    config
        .settings::<ImageConfig<D>>()
        .expect("an image-classification config of this dataset")
}

/// The path a run writes θ_GD to.
const THETA_GD: &str = "theta_gd.f64";

/// θ_GD: read from `<section>.theta_gd`, from the run's own `theta_gd.f64` when an
/// earlier attempt of it got that far, from `record.shared_cache` when another run with
/// the same GD phase computed it, or phase 1 (GD from PyTorch's default initialisation,
/// published as GD's iterations before `gd_iterations`, continued from its checkpoint
/// when there is one), written to `theta_gd.f64` in the run directory.
fn theta_gd<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    measure: &Measure<'_, M, D>,
) -> Result<Vec<f64>> {
    let cfg = measure.cfg;
    if let Some(path) = &cfg.theta_gd {
        let theta = read_theta_gd::<D>(Path::new(path))?;
        ctx.events.log(None, format!("θ_GD read from {path}"));
        return Ok(theta);
    }
    let own = ctx.run_dir.join(THETA_GD);
    if own.exists() {
        let theta = read_theta_gd::<D>(&own)?;
        ctx.events.log(
            None,
            format!(
                "θ_GD read from {} (written by this run's GD phase)",
                own.display()
            ),
        );
        return Ok(theta);
    }
    match (
        &ctx.config.record.shared_cache,
        gd_phase_key::<D>(ctx.config),
    ) {
        (Some(cache), Some(key)) => shared_theta_gd(ctx, measure, &Path::new(cache).join(key)),
        _ => gd_phase(ctx, measure),
    }
}

/// What θ_GD depends on, hashed: runs with the same key compute the same θ_GD (the
/// GD phase draws only from its own streams, docs/METHOD.md §4.3), so a sweep over
/// phase-2 settings computes it once. `None` when θ_GD is read from a file.
fn gd_phase_key<D: Dataset>(config: &Config) -> Option<String> {
    use sha2::Digest;
    let cfg = settings::<D>(config);
    if cfg.theta_gd.is_some() {
        return None;
    }
    let depends_on = json!({
        "noiselab": env!("CARGO_PKG_VERSION"),
        "experiment": D::SECTION,
        "data_dir": std::fs::canonicalize(&cfg.data_dir)
            .map_or_else(|_| cfg.data_dir.clone(), |p| p.display().to_string()),
        "train_samples": cfg.train_samples,
        "corrupted": cfg.corrupted,
        "seed": config.seed,
        "gd_eta": cfg.gd_eta,
        "gd_iterations": cfg.gd_iterations,
        "precision": cfg.precision,
    });
    let mut depends_on = depends_on;
    if !config.device.is_cpu() {
        // Added only off the kernels, so the keys of existing CPU caches stay valid.
        depends_on["arithmetic"] = json!(config.device.arithmetic());
    }
    let digest = sha2::Sha256::digest(depends_on.to_string().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Some(format!("theta_gd-{hex}"))
}

/// θ_GD through the shared cache entry `entry`: the first run to take the entry's lock
/// computes it and leaves a copy there; the others wait for the lock (a run asked to
/// stop stops waiting) and read it. Either way the run keeps its own `theta_gd.f64`.
fn shared_theta_gd<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    measure: &Measure<'_, M, D>,
    entry: &Path,
) -> Result<Vec<f64>> {
    std::fs::create_dir_all(entry).map_err(|e| Error::io(entry, e))?;
    let lock_path = entry.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    let mut said = false;
    loop {
        // flock(2), released when `lock` is closed (or the process dies).
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        let taken = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let error = std::io::Error::last_os_error();
        match taken {
            0 => break,
            _ if error.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                if !said {
                    said = true;
                    ctx.events.log(
                        None,
                        format!(
                            "waiting for θ_GD: another run of the sweep computes it ({})",
                            entry.display()
                        ),
                    );
                }
                if ctx.stopping() {
                    return Err(Error::Stopped);
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            _ => return Err(Error::io(&lock_path, error)),
        }
    }
    let cached = entry.join(THETA_GD);
    let own = ctx.run_dir.join(THETA_GD);
    if cached.exists() {
        let theta = read_theta_gd::<D>(&cached)?;
        let source = std::fs::read_to_string(entry.join("source.json")).unwrap_or_default();
        let from: Value = serde_json::from_str(&source).unwrap_or(Value::Null);
        ctx.events.log(
            None,
            format!(
                "θ_GD from the sweep's shared cache {} (computed by {}); its GD-phase measurements are in that run's record",
                entry.display(),
                from["run"].as_str().unwrap_or("another run")
            ),
        );
        write_theta(&own, &theta)?;
        return Ok(theta);
    }
    let theta = gd_phase(ctx, measure)?;
    write_theta(&cached, &theta)?;
    let source = json!({ "run": ctx.run_dir.display().to_string(), "written": crate::record::run_dir::utc_now() });
    crate::record::write_atomically(&entry.join("source.json"), |p| {
        std::fs::write(p, source.to_string()).map_err(|e| Error::io(p, e))
    })?;
    Ok(theta)
}

fn write_theta(path: &Path, theta: &[f64]) -> Result<()> {
    let bytes: Vec<u8> = theta.iter().flat_map(|x| x.to_le_bytes()).collect();
    crate::record::write_atomically(path, |p| {
        std::fs::write(p, &bytes).map_err(|e| Error::io(p, e))
    })
}

/// Phase 1: GD from PyTorch's default initialisation to θ_GD (continued from its
/// checkpoint when there is one), written to the run's `theta_gd.f64`.
fn gd_phase<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    measure: &Measure<'_, M, D>,
) -> Result<Vec<f64>> {
    let (model, cfg) = (measure.model, measure.cfg);
    let config = ctx.config;
    let own = ctx.run_dir.join(THETA_GD);
    // Progress every 5 % of the phase, and at least every 10 s (VGG11 on CPU).
    let every = (cfg.gd_iterations / 20).max(1);
    let mut last_log = std::time::Instant::now();
    let mut tracker = Tracker::new(
        ctx,
        DynamicsKind::Gd,
        0,
        0,
        cfg.gd_iterations,
        cfg.gd_metrics_every,
        // Phase 1's own streams (replicate 1), so that phase 2 draws the same whether
        // or not phase 1 was measured or run at all.
        rng::stream(config.seed, 1, Purpose::Measurements(DynamicsKind::Gd)),
        |t: usize,
         at: &mut AtPoint<'_, M>,
         noise: &mut NoiseModel,
         rng: &mut ChaCha12Rng,
         say: Say<'_>| {
            let values = if cfg.gd_metrics_every > 0 && t.is_multiple_of(cfg.gd_metrics_every) {
                Some(measure.at(at, noise, rng, say)?)
            } else {
                None
            };
            if t.is_multiple_of(every) || last_log.elapsed().as_secs() >= 10 {
                last_log = std::time::Instant::now();
                let loss = at.loss_and_gradient()?.0;
                ctx.events.log(
                    None,
                    format!(
                        "GD phase: iteration {t}/{}, loss {loss:.4}",
                        cfg.gd_iterations
                    ),
                );
            }
            Ok(values)
        },
    );
    tracker.phase = Some("GD phase");
    let spec = config.noise.spec(DynamicsKind::Gd, cfg.gd_eta);
    let start = tracker.start(spec, cfg.gd_iterations, model.dim(), |spec| {
        let theta = model
            .arch()
            .init_theta(&mut rng::stream(config.seed, 1, Purpose::Data));
        Start::plain(theta, NoiseModel::new(spec, config.seed, 1))
    })?;
    let (end, _) = engine::run_from(model, start, cfg.gd_iterations, &mut tracker)?;
    tracker
        .say(cfg.gd_iterations)
        .task(crate::events::Task::Steps);
    if let Some(d) = end.diverged {
        return Err(Error::Numerics(format!(
            "GD phase diverged at iteration {} ({}); lower {}.gd_eta",
            d.iteration,
            d.reason,
            D::SECTION
        )));
    }
    let theta = end.theta;
    // On the training set itself: θ_GD should fit the wrong labels too.
    let eval = model.evaluate(&theta, &measure.data.train)?;
    ctx.events.log(
        None,
        format!(
            "GD phase done: θ_GD after {} iterations, training loss {:.4}, accuracy {:.4}",
            cfg.gd_iterations, eval.loss, eval.accuracy
        ),
    );
    write_theta(&own, &theta)?;
    Ok(theta)
}

/// Fig. 3a: the top `hessian_spectrum` eigenvalues of H at θ_GD by Lanczos, published
/// as GD's Hessian spectrum at the iteration where every dynamics starts (once: a
/// resumed run that recorded it does not compute it again).
fn hessian_spectrum<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    cfg: &ImageConfig<D>,
    model: &M,
    theta: &[f64],
) -> Result<()> {
    let k = cfg.hessian_spectrum.min(model.dim());
    let iteration = cfg.gd_iterations as u64;
    let recorded = (DynamicsKind::Gd, SpectrumOf::Hessian, 0, iteration);
    if k == 0 || ctx.prior.spectra.contains(&recorded) {
        return Ok(());
    }
    let start = std::time::Instant::now();
    let phase = "Hessian spectrum at θ_GD";
    ctx.phase(
        phase,
        crate::events::Task::Computing(format!("Lanczos: the top {k} eigenvalues of H")),
        false,
    );
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
    ctx.events.log(
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
    ctx.events.send(Event::Spectrum {
        dynamics: DynamicsKind::Gd,
        replicate: 0,
        iteration,
        of: SpectrumOf::Hessian,
        values,
    });
    ctx.phase(phase, crate::events::Task::Steps, true);
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
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    crate::record::write_atomically(&path, |p| {
        std::fs::write(p, &text).map_err(|e| Error::io(p, e))
    })
}

/// One dynamics from θ_GD (or from its checkpoint), publishing its measurements at
/// iterations counted from the start of phase 1.
fn run_one<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    kind: DynamicsKind,
    measure: &Measure<'_, M, D>,
    theta0: &[f64],
) -> Result<()> {
    let config = ctx.config;
    let cfg = measure.cfg;
    let offset = cfg.gd_iterations;
    let mut health = HealthWatch::new(measure.data.train.classes);
    let mut tracker = Tracker::new(
        ctx,
        kind,
        0,
        offset,
        cfg.iterations,
        cfg.metrics_every,
        rng::stream(config.seed, 0, Purpose::Measurements(kind)),
        |t: usize,
         at: &mut AtPoint<'_, M>,
         noise: &mut NoiseModel,
         rng: &mut ChaCha12Rng,
         say: Say<'_>| {
            if !t.is_multiple_of(cfg.metrics_every) {
                return Ok(None);
            }
            let values = measure.at(at, noise, rng, say)?;
            health.check(ctx.events, kind, 0, offset + t, &values)?;
            Ok(Some(values))
        },
    );
    let spec = config.noise.spec(kind, cfg.eta);
    let start = tracker.start(spec, cfg.iterations, measure.model.dim(), |spec| {
        Start::plain(theta0.to_vec(), NoiseModel::new(spec, config.seed, 0))
    })?;
    let (end, noise) = engine::run_from(measure.model, start, cfg.iterations, &mut tracker)?;
    tracker.finish(&end, |theta, rng, say| {
        measure.at(&mut AtPoint::new(measure.model, theta), &noise, rng, say)
    })
}

fn run_with<M: ImageModel, D: Dataset>(
    ctx: &RunContext<'_>,
    data: &Data,
    model: M,
) -> Result<usize> {
    let cfg = settings::<D>(ctx.config);
    let measure = Measure {
        model: &model,
        data,
        cfg,
    };
    let all_done = ctx.config.dynamics.iter().all(|&k| ctx.finished(k, 0));
    if all_done {
        return Ok(0);
    }
    let theta0 = theta_gd(ctx, &measure)?;
    hessian_spectrum(ctx, cfg, &model, &theta0)?;
    Ok(costliest_first(ctx, |kind| {
        run_one(ctx, kind, &measure, &theta0)
    }))
}

/// Phase 1 then one worker per dynamics, by default all side by side
/// (`trajectories_at_once`: fewer, the costliest first); their kernel calls go to
/// rayon's pools, sized to `threads` in all, so they never oversubscribe the cores.
fn run_live<D: Dataset>(ctx: &RunContext<'_>) -> Result<usize> {
    let data = load_data::<D>(ctx.config)?;
    ctx.events.log(
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
    write_corrupted(&data, ctx.run_dir)?;
    let arch = D::architecture()?;
    let precision = settings::<D>(ctx.config).precision;
    let device = ctx.config.device.candle()?;
    if let Some(gpu) = device.as_ref().and_then(crate::device::gpu_memory) {
        ctx.events
            .log(None, format!("device {}: {gpu}", ctx.config.device));
    }
    match (device, precision) {
        (None, Precision::F32) => {
            run_with::<_, D>(ctx, &data, NativeClassifier::<f32>::new(arch, &data.train)?)
        }
        (None, Precision::F64) => {
            run_with::<_, D>(ctx, &data, NativeClassifier::<f64>::new(arch, &data.train)?)
        }
        (Some(device), precision) => {
            let net = crate::models::network::Network::new(arch, precision.dtype(), device)?;
            run_with::<_, D>(ctx, &data, Classifier::new(net, &data.train)?)
        }
    }
}

impl<D: Dataset> Section for ImageConfig<D> {
    const KEY: &'static str = D::SECTION;
}

impl<D: Dataset> Experiment for ImageConfig<D> {
    fn validate(&self, config: &Config) -> std::result::Result<(), Invalid> {
        self.check(config)
    }

    /// D, iterations (phase 1 and 2: the record counts from phase 1's start), one
    /// trajectory per dynamics and the metrics measured.
    fn outline(&self, config: &Config) -> Outline {
        Outline {
            dim: D::PARAMETERS,
            iterations: (self.gd_iterations + self.iterations) as u64,
            replicates: 1,
            // One trajectory per dynamics, all from θ_GD (GD's also holds phase 1).
            replicate_labels: vec!["from θ_GD".into()],
            replicate_noun: "trajectory",
            metrics: metrics(self.curvature_metrics)
                .into_iter()
                .map(Metric::def)
                .collect(),
            plane: None,
            x_marks: if self.gd_iterations > 0 {
                vec![(self.gd_iterations as u64, "θ_GD".into())]
            } else {
                vec![]
            },
            iteration_costs: super::iteration_costs(
                config,
                self.eta,
                self.training_images(D::TRAINING_SET),
            ),
        }
    }

    fn preflight(&self, config: &Config) -> Result<()> {
        preflight::<D>(config)
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<usize> {
        run_live::<D>(ctx)
    }

    /// Figs. 4, 6 and 7 in numbers: where each dynamics ended (its highest iteration).
    fn results_text(&self, record: &RecordState, status: RunStatus) -> String {
        let mut out = format!(
            "From θ_GD: final test accuracy and expected sharpness by dynamics (Figs. 4, 6, 7){}:\n{:<18} {:>10} {:>10} {:>12} {:>12} {:>10}\n",
            partial(status), "dynamics", "test acc", "train acc", "sharpness", "Tr(HΣ)", "iteration"
        );
        for &kind in &record.config.dynamics {
            let f = record.final_metrics(kind, 0);
            let get = |m: Metric, fmt: &dyn Fn(f64) -> String| {
                f.get(&m).map_or("-".to_string(), |x| fmt(*x))
            };
            let last = record
                .last_iteration(kind, 0, Metric::TEST_ACCURACY)
                .map_or("-".to_string(), |t| t.to_string());
            out += &format!(
                "{:<18} {:>10} {:>10} {:>12} {:>12} {:>10}\n",
                kind.label(),
                get(Metric::TEST_ACCURACY, &|x| format!("{x:.4}")),
                get(Metric::TRAIN_ACCURACY, &|x| format!("{x:.4}")),
                get(Metric::SHARPNESS, &|x| format!("{x:.4e}")),
                get(Metric::TR_H_SIGMA, &|x| format!("{x:.4e}")),
                last
            );
        }
        out
    }

    /// Figs. 4, 6 and 7: per dynamics, the final train and test accuracy and expected
    /// sharpness (and the other final metrics), with the same at θ_GD (the first
    /// measurement of phase 2; GD's earlier ones are phase 1's).
    fn summary(&self, record: &RecordState, status: RunStatus) -> Value {
        let mut dynamics = Map::new();
        for &kind in &record.config.dynamics {
            let mut entry = Map::new();
            entry.insert("label".into(), json!(kind.label()));
            if let Some(series) = record.metrics.get(&(kind, 0)) {
                for (metric, points) in series {
                    let at_theta_gd = points.range(self.gd_iterations as u64..).next();
                    if let (Some(first), Some(last)) = (at_theta_gd, points.last_key_value()) {
                        if last.1.is_finite() {
                            entry.insert(format!("final_{}", metric.key()), json!(last.1));
                        }
                        if first.1.is_finite() {
                            entry.insert(format!("initial_{}", metric.key()), json!(first.1));
                        }
                        entry.insert("last_iteration".into(), json!(last.0));
                    }
                }
            }
            dynamics.insert(kind.key().to_string(), Value::Object(entry));
        }
        json!({
            "experiment": D::SECTION,
            "status": status.key(),
            "gd_iterations": self.gd_iterations,
            "iterations": self.iterations,
            "train_samples": self.train_samples,
            "corrupted": self.corrupted,
            "dynamics": dynamics,
        })
    }

    fn runs_on_candle(&self) -> bool {
        true
    }

    fn data_dir_key(&self) -> Option<String> {
        Some(Self::key("data_dir"))
    }

    fn shared_work_key(&self, config: &Config) -> Option<String> {
        gd_phase_key::<D>(config)
    }
}
