//! Run configuration: TOML presets in `configs/`, `--set key=value` overrides, serde
//! with unknown keys rejected, and validation errors that name the file, the key, the
//! bad value and what was expected.

use crate::dynamics::{
    CovarianceSource, DynamicsKind, Magnitude, NoiseSpec, ScaleRule, ShapeSource, Units,
};
pub use crate::models::one_hidden::{OutputLoss, OutputWeights};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// A configuration problem. `source` is the file (or `--set`), `key` the dotted key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub source: String,
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(
                f,
                "config error in {}: key `{key}`: {}",
                self.source, self.problem
            ),
            None => write!(f, "config error in {}: {}", self.source, self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The experiments noiselab knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentKind {
    /// The two-basin toy of SPEC §4.1 (Fig. 1).
    Toy2d,
    /// One hidden layer with a fixed output layer, several widths (SPEC §4.2, Fig. 2).
    OneHidden,
    /// LeNet on FashionMNIST with corrupted labels (SPEC §4.3, Figs. 3–6).
    FashionMnist,
    /// VGG11 on CIFAR-10 (SPEC §4.4, Fig. 7): the same protocol, GPU-sized.
    Cifar10,
}

impl ExperimentKind {
    pub fn key(self) -> &'static str {
        match self {
            ExperimentKind::Toy2d => "toy2d",
            ExperimentKind::OneHidden => "one_hidden",
            ExperimentKind::FashionMnist => "fashion_mnist",
            ExperimentKind::Cifar10 => "cifar10",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub experiment: ExperimentKind,
    /// Prefix of the run directory `runs/<name>-<UTC time>`; defaults to the experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Master seed: every (replicate, dynamics) draws from its own stream of it.
    #[serde(default)]
    pub seed: u64,
    /// Worker threads; defaults to the available cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Dynamics to run, by config key (SPEC §2).
    pub dynamics: Vec<DynamicsKind>,
    #[serde(default)]
    pub noise: NoiseConfig,
    #[serde(default)]
    pub record: RecordConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toy2d: Option<Toy2dConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_hidden: Option<OneHiddenConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fashion_mnist: Option<FashionMnistConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cifar10: Option<Cifar10Config>,
}

/// The image-classification protocol of SPEC §4.3–§4.4, shared by its datasets: GD to a
/// sharp minimum θ_GD on a training set (some of it relabelled wrongly), then every
/// dynamics from θ_GD. `D` names the dataset: its config section and its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct ImageConfig<D: ImageDataset> {
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

/// What the record's summaries need of an [`ImageConfig`], whatever its dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassificationOutline {
    pub train_samples: usize,
    pub corrupted: usize,
    /// Phase 2 (every dynamics from θ_GD) starts at this iteration.
    pub gd_iterations: usize,
    pub iterations: usize,
}

/// What differs between the datasets of [`ImageConfig`] as far as the config goes.
pub trait ImageDataset: Clone + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The experiment key and config section.
    const SECTION: &'static str;
    /// Images in the official training set.
    const TRAINING_SET: usize;
    fn defaults() -> ImageConfig<Self>;
}

/// SPEC §4.3: LeNet, 1,200 FashionMNIST training images of which 200 relabelled wrongly.
#[derive(Clone, Debug, PartialEq)]
pub struct FashionMnist;

/// SPEC §4.4: VGG11 on the standard (clean) CIFAR-10 training set.
#[derive(Clone, Debug, PartialEq)]
pub struct Cifar10;

pub type FashionMnistConfig = ImageConfig<FashionMnist>;
pub type Cifar10Config = ImageConfig<Cifar10>;

impl ImageDataset for FashionMnist {
    const SECTION: &'static str = "fashion_mnist";
    const TRAINING_SET: usize = 60_000;
    fn defaults() -> ImageConfig<Self> {
        ImageConfig {
            data_dir: "/usr/share/datasets/fashion-mnist".into(),
            train_samples: 1200,
            corrupted: 200,
            test_samples: 0,
            gd_eta: 0.1,
            gd_iterations: 3000,
            gd_metrics_every: 500,
            theta_gd: None,
            eta: 0.07,
            iterations: 15_000,
            metrics_every: 500,
            sharpness_samples: 1000,
            sharpness_delta: 0.01,
            sharpness_abs: false,
            curvature_metrics: true,
            trace_probes: 20,
            hessian_spectrum: 400,
            precision: Precision::F32,
            dataset: PhantomData,
        }
    }
}

impl ImageDataset for Cifar10 {
    const SECTION: &'static str = "cifar10";
    const TRAINING_SET: usize = 50_000;
    fn defaults() -> ImageConfig<Self> {
        ImageConfig {
            // Where scripts/fetch-data.sh cifar puts the batches.
            data_dir: "data".into(),
            train_samples: 0,
            corrupted: 0,
            test_samples: 0,
            gd_eta: 0.05,
            gd_iterations: 3000,
            gd_metrics_every: 500,
            theta_gd: None,
            eta: 0.05,
            iterations: 15_000,
            metrics_every: 500,
            sharpness_samples: 100,
            sharpness_delta: 0.01,
            sharpness_abs: false,
            curvature_metrics: false,
            trace_probes: 20,
            hessian_spectrum: 0,
            precision: Precision::F32,
            dataset: PhantomData,
        }
    }
}

impl<D: ImageDataset> Default for ImageConfig<D> {
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

impl<D: ImageDataset> ImageConfig<D> {
    /// `section.name`, for error messages.
    pub(crate) fn key(name: &str) -> String {
        format!("{}.{name}", D::SECTION)
    }

    fn validate(&self, config: &Config) -> Result<(), Invalid> {
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
) -> Result<(), Invalid> {
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// `match_sgd` (Eq. 5–6) or `fixed` (every GLD noise at E‖n‖² = total_variance).
    pub magnitude: Magnitude,
    /// E‖n‖² when `magnitude = "fixed"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_variance: Option<f64>,
    /// `parameter` (θ − η·g0 + n) or `gradient` (θ − η(g0 + ε)).
    pub units: Units,
    /// `per_sample` (Eq. 1) or `minibatches` (K = N/m batch gradients).
    pub covariance: CovarianceSource,
    /// m: SGD's batch size, and Σ/m is SGD's noise covariance.
    pub batch_size: usize,
    pub gld_const: ConstNoiseConfig,
    pub gld_dynamic: RefreshConfig,
    pub gld_diag: RefreshConfig,
    pub gld_leading: LeadingConfig,
    pub gld_hessian: LowRankConfig,
    pub gld_eig1: RefreshConfig,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            magnitude: Magnitude::MatchSgd,
            total_variance: None,
            units: Units::Parameter,
            covariance: CovarianceSource::PerSample,
            batch_size: 20,
            gld_const: ConstNoiseConfig { sigma: 1e-3 },
            gld_dynamic: RefreshConfig { refresh: 1 },
            gld_diag: RefreshConfig { refresh: 1 },
            gld_leading: LeadingConfig {
                k: 20,
                refresh: 10,
                norm_matched: false,
            },
            gld_hessian: LowRankConfig { k: 20, refresh: 10 },
            gld_eig1: RefreshConfig { refresh: 10 },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstNoiseConfig {
    /// Per-coordinate standard deviation σ.
    pub sigma: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// Recompute the noise factor every this many iterations.
    pub refresh: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowRankConfig {
    pub k: usize,
    pub refresh: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadingConfig {
    pub k: usize,
    pub refresh: usize,
    /// Rescale to SGD's norm under `match_sgd` (the paper does not: it is SGD's own noise).
    #[serde(default)]
    pub norm_matched: bool,
}

/// How the run record is written (`docs/SCHEMA.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Metrics reach the journal on disk at least this often; a `kill -9` loses at most
    /// this much of them. Lifecycle events and checkpoints are written at once.
    pub flush_seconds: f64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig { flush_seconds: 2.0 }
    }
}

impl RecordConfig {
    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.flush_seconds)
    }
}

/// SPEC §4.2 with the defaults it names for what the paper leaves open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneHiddenConfig {
    /// Hidden widths h, one trajectory each (D = 3h).
    pub widths: Vec<usize>,
    /// N: linearly separable points in [−1, 1]².
    pub samples: usize,
    /// Points closer than this to the separating line are redrawn.
    pub margin: f64,
    pub eta: f64,
    pub iterations: usize,
    /// Measure Tr(HΣ), Tr(HΣ̄), loss and accuracy every this many iterations.
    pub metrics_every: usize,
    /// Σ from this many random minibatch gradients …
    pub sigma_batches: usize,
    /// … of this size.
    pub sigma_batch_size: usize,
    /// Rademacher probes of the Hutchinson estimate of Tr H.
    pub trace_probes: usize,
    /// `separable` (ours: [−1, 1]², a random line, `margin`) or `diagonal` (the released
    /// code: [−2, 2]², label 1[x₁ ≥ x₂]).
    pub points: PointsLayout,
    /// `scaled` (±1/√h alternating) or `unit` (+1 for half the units, −1 for the rest).
    pub output_weights: OutputWeights,
    /// `logistic` or `clipped_squared` (output clipped to [1e-3, 1 − 1e-3], squared loss).
    pub loss: OutputLoss,
    /// `dynamics` (the configured dynamics with step `eta`) or `adam` (full-batch Adam with
    /// learning rate `eta`: the released recipe; needs dynamics = ["gd"]).
    pub optimizer: OneHiddenOptimizer,
    /// With `adam`: the learning rate decays linearly to 0 over this many last iterations.
    pub decay_last: usize,
}

/// Where the one-hidden experiment's points come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointsLayout {
    #[default]
    Separable,
    Diagonal,
}

/// What moves θ in the one-hidden experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneHiddenOptimizer {
    #[default]
    Dynamics,
    Adam,
}

impl Default for OneHiddenConfig {
    fn default() -> Self {
        OneHiddenConfig {
            widths: vec![20, 200, 2000],
            samples: 1000,
            margin: 0.1,
            eta: 0.1,
            iterations: 2000,
            metrics_every: 100,
            sigma_batches: 100,
            sigma_batch_size: 10,
            trace_probes: 100,
            points: PointsLayout::Separable,
            output_weights: OutputWeights::Scaled,
            loss: OutputLoss::Logistic,
            optimizer: OneHiddenOptimizer::Dynamics,
            decay_last: 0,
        }
    }
}

/// SPEC §4.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Toy2dConfig {
    /// Independent replicates (data set + noise), each from its own RNG streams.
    pub seeds: usize,
    /// N data points per replicate.
    pub samples: usize,
    pub eta: f64,
    pub iterations: usize,
    pub start: [f64; 2],
    /// φ in radians.
    pub angle: f64,
    /// The data spread: x = data_scale·(√10·z1, z2)·K.
    pub data_scale: f64,
    /// Success = both final coordinates below this (the released code's −0.5).
    pub success_below: f64,
}

impl Default for Toy2dConfig {
    fn default() -> Self {
        Toy2dConfig {
            seeds: 100,
            samples: 100,
            eta: 0.005,
            iterations: 500,
            start: [1.0, 1.0],
            angle: std::f64::consts::FRAC_PI_4,
            data_scale: 0.01,
            success_below: -0.5,
        }
    }
}

impl NoiseConfig {
    /// The noise of `kind` as this config defines it, for learning rate `eta`.
    pub fn spec(&self, kind: DynamicsKind, eta: f64) -> NoiseSpec {
        let matched = match (self.magnitude, self.total_variance) {
            (Magnitude::Fixed, Some(v)) => ScaleRule::Fixed { total_variance: v },
            _ => ScaleRule::MatchSgd,
        };
        let fixed = matches!(matched, ScaleRule::Fixed { .. });
        let (shape, scale, refresh) = match kind {
            DynamicsKind::Gd => (ShapeSource::None, ScaleRule::None, 1),
            DynamicsKind::Sgd => (ShapeSource::Minibatch, ScaleRule::None, 1),
            DynamicsKind::GldConst => (
                ShapeSource::Isotropic,
                if fixed {
                    matched
                } else {
                    ScaleRule::Const {
                        sigma: self.gld_const.sigma,
                    }
                },
                1,
            ),
            DynamicsKind::GldDynamic => (ShapeSource::Isotropic, matched, self.gld_dynamic.refresh),
            DynamicsKind::GldDiag => (ShapeSource::SigmaDiagonal, matched, self.gld_diag.refresh),
            DynamicsKind::GldLeading => (
                ShapeSource::SigmaTop(self.gld_leading.k),
                if fixed || self.gld_leading.norm_matched {
                    matched
                } else {
                    ScaleRule::Natural
                },
                self.gld_leading.refresh,
            ),
            DynamicsKind::GldHessian => (
                ShapeSource::HessianTop(self.gld_hessian.k),
                matched,
                self.gld_hessian.refresh,
            ),
            DynamicsKind::GldEig1 => (ShapeSource::HessianTop(1), matched, self.gld_eig1.refresh),
        };
        NoiseSpec {
            kind,
            eta,
            batch_size: self.batch_size,
            units: self.units,
            covariance: self.covariance,
            shape,
            scale,
            refresh,
        }
    }
}

/// A validated config together with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: Config,
    /// File path or preset name.
    pub source: String,
    /// The resolved config (defaults and overrides applied) as TOML, for the record.
    pub resolved_toml: String,
}

/// Presets compiled into the binary: `noiselab run toy2d` works from any directory.
pub const PRESETS: &[(&str, &str)] = &[
    ("toy2d", include_str!("../configs/toy2d.toml")),
    ("one_hidden", include_str!("../configs/one_hidden.toml")),
    (
        "fashion_mnist",
        include_str!("../configs/fashion_mnist.toml"),
    ),
    (
        "fashion_mnist_quick",
        include_str!("../configs/fashion_mnist_quick.toml"),
    ),
    (
        "one_hidden_released",
        include_str!("../configs/one_hidden_released.toml"),
    ),
    (
        "cifar10_vgg11",
        include_str!("../configs/cifar10_vgg11.toml"),
    ),
];

/// Loads `name_or_path`: a file if one exists there, else an embedded preset name.
pub fn load(name_or_path: &str, overrides: &[String]) -> Result<LoadedConfig, ConfigError> {
    let path = Path::new(name_or_path);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: name_or_path.to_string(),
            key: None,
            problem: format!("cannot read the file: {e}"),
        })?;
        return parse(&text, name_or_path, overrides);
    }
    if let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name_or_path) {
        return parse(text, &format!("preset `{name_or_path}`"), overrides);
    }
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    Err(ConfigError {
        source: name_or_path.to_string(),
        key: None,
        problem: format!(
            "no such file, and not a built-in preset (presets: {})",
            names.join(", ")
        ),
    })
}

/// Parses TOML text, applies `key=value` overrides, deserializes and validates.
pub fn parse(text: &str, source: &str, overrides: &[String]) -> Result<LoadedConfig, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
        source: source.to_string(),
        key: None,
        problem: format!("not valid TOML: {}", e.to_string().trim_end()),
    })?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    // Nested noise tables fall back key by key to the defaults (`[noise.gld_hessian]
    // k = 5` keeps the default refresh); unknown keys still reach serde and are refused.
    match table.remove("noise") {
        Some(toml::Value::Table(user)) => {
            let mut merged =
                toml::Table::try_from(NoiseConfig::default()).expect("defaults serialize");
            deep_merge(&mut merged, user);
            table.insert("noise".into(), toml::Value::Table(merged));
        }
        Some(other) => {
            table.insert("noise".into(), other);
        }
        None => {}
    }
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            ConfigError {
                source: if overrides.is_empty() {
                    source.to_string()
                } else {
                    format!("{source} (with --set overrides)")
                },
                key: (path != ".").then_some(path),
                problem: tidy_serde_message(&e.into_inner().to_string()),
            }
        })?;
    config.validate().map_err(|(key, problem)| ConfigError {
        source: source.to_string(),
        key: Some(key),
        problem,
    })?;
    let resolved_toml = toml::to_string(&config).expect("a Config always serializes");
    Ok(LoadedConfig {
        config,
        source: source.to_string(),
        resolved_toml,
    })
}

fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Drops the `in \`key\`` trailer toml's deserializer appends (we name the key
/// ourselves) and says "a table" instead of the Rust struct name.
fn tidy_serde_message(message: &str) -> String {
    let first = message
        .lines()
        .filter(|l| !l.trim_start().starts_with("in `"))
        .collect::<Vec<_>>()
        .join(" ");
    match first.find("expected struct ") {
        Some(i) => format!("{}expected a table", &first[..i]),
        None => first.trim_end().to_string(),
    }
}

/// `a.b.c=value`: the value is read as TOML (`0.1`, `true`, `["gd", "sgd"]`), and as a
/// plain string when it is not valid TOML (`--set noise.magnitude=fixed`).
fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let err = |key: Option<&str>, problem: String| ConfigError {
        source: format!("--set {assignment}"),
        key: key.map(str::to_string),
        problem,
    };
    let Some((key, raw)) = assignment.split_once('=') else {
        return Err(err(
            None,
            "expected key=value, e.g. --set toy2d.seeds=1000".into(),
        ));
    };
    let key = key.trim();
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err(Some(key), "empty key segment".into()));
    }
    let mut current = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            err(
                Some(&parts[..=i].join(".")),
                "is a value, not a table, so it has no sub-keys".into(),
            )
        })?;
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

type Invalid = (String, String);

fn check(ok: bool, key: &str, value: impl fmt::Display, expected: &str) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((
            key.to_string(),
            format!("value {value} is invalid: expected {expected}"),
        ))
    }
}

fn positive(key: &str, v: f64) -> Result<(), Invalid> {
    check(v.is_finite() && v > 0.0, key, v, "a finite number > 0")
}

fn at_least(key: &str, v: usize, min: usize) -> Result<(), Invalid> {
    check(v >= min, key, v, &format!("an integer ≥ {min}"))
}

impl Config {
    /// Semantic checks serde cannot express; the error names the key and value.
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            !self.dynamics.is_empty(),
            "dynamics",
            "[]",
            "at least one dynamics",
        )?;
        for (i, d) in self.dynamics.iter().enumerate() {
            check(
                !self.dynamics[..i].contains(d),
                &format!("dynamics[{i}]"),
                format!("\"{d}\""),
                "each dynamics listed once",
            )?;
        }
        if let Some(t) = self.threads {
            at_least("threads", t, 1)?;
        }
        if let Some(name) = &self.name {
            check(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && !name.starts_with('.'),
                "name",
                format!("\"{name}\""),
                "a directory name of letters, digits, '-', '_' or '.'",
            )?;
        }
        check(
            self.record.flush_seconds.is_finite()
                && self.record.flush_seconds > 0.0
                && self.record.flush_seconds <= 3600.0,
            "record.flush_seconds",
            self.record.flush_seconds,
            "seconds in (0, 3600]",
        )?;
        let n = &self.noise;
        at_least("noise.batch_size", n.batch_size, 1)?;
        match (n.magnitude, n.total_variance) {
            (Magnitude::Fixed, None) => {
                return Err((
                    "noise.total_variance".into(),
                    "missing: required when noise.magnitude = \"fixed\" (a finite number > 0)".into(),
                ))
            }
            (Magnitude::Fixed, Some(v)) => positive("noise.total_variance", v)?,
            (Magnitude::MatchSgd, Some(v)) => {
                return Err((
                    "noise.total_variance".into(),
                    format!("value {v} is only used with noise.magnitude = \"fixed\"; remove it or set the magnitude"),
                ))
            }
            (Magnitude::MatchSgd, None) => {}
        }
        check(
            n.gld_const.sigma.is_finite() && n.gld_const.sigma >= 0.0,
            "noise.gld_const.sigma",
            n.gld_const.sigma,
            "a finite number ≥ 0",
        )?;
        for (key, v) in [
            ("noise.gld_dynamic.refresh", n.gld_dynamic.refresh),
            ("noise.gld_diag.refresh", n.gld_diag.refresh),
            ("noise.gld_leading.refresh", n.gld_leading.refresh),
            ("noise.gld_leading.k", n.gld_leading.k),
            ("noise.gld_hessian.refresh", n.gld_hessian.refresh),
            ("noise.gld_hessian.k", n.gld_hessian.k),
            ("noise.gld_eig1.refresh", n.gld_eig1.refresh),
        ] {
            at_least(key, v, 1)?;
        }
        match self.experiment {
            ExperimentKind::Toy2d => self.toy2d().validate(self)?,
            ExperimentKind::OneHidden => self.one_hidden().validate(self)?,
            ExperimentKind::FashionMnist => self.fashion_mnist().validate(self)?,
            ExperimentKind::Cifar10 => self.cifar10().validate(self)?,
        }
        for (key, given, used) in [
            (
                "toy2d",
                self.toy2d.is_some(),
                self.experiment == ExperimentKind::Toy2d,
            ),
            (
                "one_hidden",
                self.one_hidden.is_some(),
                self.experiment == ExperimentKind::OneHidden,
            ),
            (
                "fashion_mnist",
                self.fashion_mnist.is_some(),
                self.experiment == ExperimentKind::FashionMnist,
            ),
            (
                "cifar10",
                self.cifar10.is_some(),
                self.experiment == ExperimentKind::Cifar10,
            ),
        ] {
            check(
                !given || used,
                key,
                "(a table)",
                &format!("no `[{key}]` table: it is only read when experiment = \"{key}\""),
            )?;
        }
        Ok(())
    }

    /// The FashionMNIST experiment's settings (defaults when the table is absent).
    pub fn fashion_mnist(&self) -> FashionMnistConfig {
        self.fashion_mnist.clone().unwrap_or_default()
    }

    /// The image-classification protocol's outline, for experiments that run it.
    pub fn classification(&self) -> Option<ClassificationOutline> {
        fn outline<D: ImageDataset>(c: ImageConfig<D>) -> ClassificationOutline {
            ClassificationOutline {
                train_samples: c.train_samples,
                corrupted: c.corrupted,
                gd_iterations: c.gd_iterations,
                iterations: c.iterations,
            }
        }
        match self.experiment {
            ExperimentKind::FashionMnist => Some(outline(self.fashion_mnist())),
            ExperimentKind::Cifar10 => Some(outline(self.cifar10())),
            ExperimentKind::Toy2d | ExperimentKind::OneHidden => None,
        }
    }

    /// The CIFAR-10 experiment's settings (defaults when the table is absent).
    pub fn cifar10(&self) -> Cifar10Config {
        self.cifar10.clone().unwrap_or_default()
    }

    /// The one-hidden-layer experiment's settings (defaults when the table is absent).
    pub fn one_hidden(&self) -> OneHiddenConfig {
        self.one_hidden.clone().unwrap_or_default()
    }

    /// Trajectories per dynamics: the toy's seeds, the one-hidden experiment's widths.
    pub fn replicates(&self) -> usize {
        match self.experiment {
            ExperimentKind::Toy2d => self.toy2d().seeds,
            ExperimentKind::OneHidden => self.one_hidden().widths.len(),
            ExperimentKind::FashionMnist | ExperimentKind::Cifar10 => 1,
        }
    }

    /// The toy's settings (defaults when the table is absent).
    pub fn toy2d(&self) -> Toy2dConfig {
        self.toy2d.clone().unwrap_or_default()
    }

    /// Worker threads to use.
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl OneHiddenConfig {
    fn validate(&self, config: &Config) -> Result<(), Invalid> {
        check(
            !self.widths.is_empty(),
            "one_hidden.widths",
            "[]",
            "at least one width",
        )?;
        for (i, &h) in self.widths.iter().enumerate() {
            check(
                (1..=100_000).contains(&h),
                &format!("one_hidden.widths[{i}]"),
                h,
                "a width in 1 ..= 100000",
            )?;
        }
        at_least("one_hidden.samples", self.samples, 2)?;
        check(
            self.margin.is_finite() && (0.0..0.5).contains(&self.margin),
            "one_hidden.margin",
            self.margin,
            "a number in [0, 0.5)",
        )?;
        positive("one_hidden.eta", self.eta)?;
        at_least("one_hidden.iterations", self.iterations, 1)?;
        at_least("one_hidden.metrics_every", self.metrics_every, 1)?;
        at_least("one_hidden.sigma_batches", self.sigma_batches, 2)?;
        at_least("one_hidden.trace_probes", self.trace_probes, 1)?;
        check(
            self.decay_last <= self.iterations,
            "one_hidden.decay_last",
            self.decay_last,
            &format!("at most one_hidden.iterations = {}", self.iterations),
        )?;
        if self.optimizer == OneHiddenOptimizer::Adam {
            check(
                config.dynamics == [DynamicsKind::Gd],
                "dynamics",
                format!("{:?}", config.dynamics),
                "[\"gd\"] with one_hidden.optimizer = \"adam\" (full-batch Adam adds no noise)",
            )?;
        }
        check(
            (1..=self.samples).contains(&self.sigma_batch_size),
            "one_hidden.sigma_batch_size",
            self.sigma_batch_size,
            &format!("an integer in 1 ..= one_hidden.samples = {}", self.samples),
        )?;
        check(
            config.noise.batch_size <= self.samples,
            "noise.batch_size",
            config.noise.batch_size,
            &format!("at most one_hidden.samples = {}", self.samples),
        )?;
        let dim = 3 * self.widths.iter().copied().min().unwrap_or(1);
        for (kind, key, k) in [
            (
                DynamicsKind::GldLeading,
                "noise.gld_leading.k",
                config.noise.gld_leading.k,
            ),
            (
                DynamicsKind::GldHessian,
                "noise.gld_hessian.k",
                config.noise.gld_hessian.k,
            ),
        ] {
            if config.dynamics.contains(&kind) {
                check(
                    k <= dim,
                    key,
                    k,
                    &format!("at most D = 3·(smallest width) = {dim}"),
                )?;
            }
        }
        Ok(())
    }
}

impl Toy2dConfig {
    fn validate(&self, config: &Config) -> Result<(), Invalid> {
        at_least("toy2d.seeds", self.seeds, 1)?;
        at_least("toy2d.samples", self.samples, 2)?;
        at_least("toy2d.iterations", self.iterations, 1)?;
        positive("toy2d.eta", self.eta)?;
        positive("toy2d.data_scale", self.data_scale)?;
        check(
            self.angle.is_finite(),
            "toy2d.angle",
            self.angle,
            "a finite angle in radians",
        )?;
        check(
            self.success_below.is_finite(),
            "toy2d.success_below",
            self.success_below,
            "a finite number",
        )?;
        for (i, s) in self.start.iter().enumerate() {
            check(
                s.is_finite(),
                &format!("toy2d.start[{i}]"),
                s,
                "a finite number",
            )?;
        }
        let n = &config.noise;
        check(
            n.batch_size <= self.samples,
            "noise.batch_size",
            n.batch_size,
            &format!("at most toy2d.samples = {}", self.samples),
        )?;
        let dim = 2;
        for (kind, key, k) in [
            (
                DynamicsKind::GldLeading,
                "noise.gld_leading.k",
                n.gld_leading.k,
            ),
            (
                DynamicsKind::GldHessian,
                "noise.gld_hessian.k",
                n.gld_hessian.k,
            ),
        ] {
            if config.dynamics.contains(&kind) {
                check(k <= dim, key, k, &format!("at most D = {dim} for the toy"))?;
            }
        }
        Ok(())
    }
}
