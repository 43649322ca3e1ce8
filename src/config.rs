//! Run configuration: TOML presets in `configs/`, `--set key=value` overrides, serde
//! with unknown keys rejected, and validation errors that name the file, the key, the
//! bad value and what was expected.

use crate::device::Device;
use crate::dynamics::{
    CovarianceSource, DynamicsKind, Magnitude, NoiseSpec, ScaleRule, ShapeSource, Units,
};
pub use crate::experiments::Settings;
use serde::{Deserialize, Serialize};
use std::fmt;
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

/// A run's configuration: the chosen experiment with its section, and what every
/// experiment shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `experiment = "<key>"` and its `[<key>]` section.
    pub experiment: Settings,
    /// Prefix of the run directory `runs/<name>-<UTC time>`; defaults to the experiment.
    pub name: Option<String>,
    /// Master seed: every (replicate, dynamics) draws from its own stream of it.
    pub seed: u64,
    /// Worker threads; defaults to the available cores.
    pub threads: Option<usize>,
    /// Trajectories computed side by side, the costliest first. Default: the
    /// experiment's (every dynamics of the networks and the quadratic at once, visible
    /// from the start; one per thread for the toy's and one-hidden network's many
    /// replicates). Fewer finish a long protocol sooner on few cores (docs/BENCHMARKS.md).
    pub trajectories_at_once: Option<usize>,
    /// Where the network experiments compute (`crate::device`); the others run on the CPU.
    pub device: Device,
    /// Dynamics to run, by config key (docs/METHOD.md §2).
    pub dynamics: Vec<DynamicsKind>,
    pub noise: NoiseConfig,
    pub record: RecordConfig,
}

/// The keys every experiment shares, as they are read (unknown keys refused).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trajectories_at_once: Option<usize>,
    #[serde(default, skip_serializing_if = "Device::is_cpu")]
    device: Device,
    dynamics: Vec<DynamicsKind>,
    #[serde(default)]
    noise: NoiseConfig,
    #[serde(default)]
    record: RecordConfig,
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
    /// Each unfinished trajectory's θ and noise state are checkpointed every this many
    /// iterations (0 = never); `resume` continues from the latest. Presets set it to
    /// about five minutes of work.
    pub checkpoint_every: usize,
    /// A directory where runs share work that does not depend on what differs between
    /// them (θ_GD of runs with the same GD phase); `noiselab sweep` sets it to the
    /// sweep's `cache/`. Unset: every run does its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_cache: Option<String>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            flush_seconds: 2.0,
            checkpoint_every: 500,
            shared_cache: None,
        }
    }
}

impl RecordConfig {
    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.flush_seconds)
    }
}

/// METHOD.md §4.2 with the defaults it names for what the paper leaves open.
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

/// A config compiled into the binary: `noiselab run toy2d` works from any directory.
pub struct Preset {
    pub name: &'static str,
    /// One line for `noiselab presets` and `run --help`: what it runs, and how long it
    /// takes on our 2-core machines (measured: README).
    pub summary: &'static str,
    pub text: &'static str,
}

/// The presets, in the order a newcomer would try them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "toy2d",
        summary: "the 2-D toy (Fig. 1): 6 dynamics × 100 seeds from a sharp minimum · ~2 s",
        text: include_str!("../configs/toy2d.toml"),
    },
    Preset {
        name: "fashion_mnist_quick",
        summary: "the main job: LeNet on FashionMNIST, 8 dynamics escape θ_GD · ~35 min",
        text: include_str!("../configs/fashion_mnist_quick.toml"),
    },
    Preset {
        name: "one_hidden",
        summary: "Fig. 2: Tr(HΣ) vs isotropic Tr(HΣ̄) along SGD, 3 widths · ~2.5 min",
        text: include_str!("../configs/one_hidden.toml"),
    },
    Preset {
        name: "one_hidden_released",
        summary: "Fig. 2 by the authors' released recipe (Adam, squared loss) · ~4 min",
        text: include_str!("../configs/one_hidden_released.toml"),
    },
    Preset {
        name: "fashion_mnist_sweep",
        summary: "FashionMNIST for sweeps over seeds: 6 dynamics × 2,000 its · 25–70 min a seed",
        text: include_str!("../configs/fashion_mnist_sweep.toml"),
    },
    Preset {
        name: "fashion_mnist",
        summary: "the FashionMNIST protocol unabridged (Figs. 3–6) · 4.5–14 h",
        text: include_str!("../configs/fashion_mnist.toml"),
    },
    Preset {
        name: "cifar10_vgg11",
        summary: "Fig. 7: VGG11 on CIFAR-10 (fetch the data first); sized for a GPU",
        text: include_str!("../configs/cifar10_vgg11.toml"),
    },
];

/// The preset list as `noiselab presets` prints it: names aligned, one line each.
pub fn presets_text() -> String {
    let width = PRESETS.iter().map(|p| p.name.len()).max().unwrap_or(0);
    PRESETS
        .iter()
        .map(|p| format!("  {:<width$}  {}\n", p.name, p.summary))
        .collect()
}

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
    if let Some(p) = PRESETS.iter().find(|p| p.name == name_or_path) {
        return parse(p.text, &format!("preset `{name_or_path}`"), overrides);
    }
    let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
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
    let with_overrides = || {
        if overrides.is_empty() {
            source.to_string()
        } else {
            format!("{source} (with --set overrides)")
        }
    };
    let problem = |key: Option<String>, problem: String| ConfigError {
        source: with_overrides(),
        key,
        problem,
    };
    let experiments = Settings::KEYS
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let key = match table.remove("experiment") {
        Some(toml::Value::String(key)) => key,
        Some(other) => {
            return Err(problem(
                Some("experiment".into()),
                format!("value {other} is invalid: expected one of {experiments}"),
            ))
        }
        None => {
            return Err(problem(
                None,
                format!("missing field `experiment` (one of {experiments})"),
            ))
        }
    };
    if !Settings::KEYS.contains(&key.as_str()) {
        return Err(problem(
            Some("experiment".into()),
            format!("unknown experiment `{key}`, expected one of {experiments}"),
        ));
    }
    let section = table
        .remove(&key)
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    if let Some(other) = Settings::KEYS.iter().find(|k| table.contains_key(**k)) {
        return Err(problem(
            Some((*other).into()),
            format!("value (a table) is invalid: expected no `[{other}]` table: it is only read when experiment = \"{other}\""),
        ));
    }
    let experiment = match Settings::parse(&key, section) {
        None => {
            return Err(problem(
                Some("experiment".into()),
                format!("unknown experiment `{key}`, expected one of {experiments}"),
            ))
        }
        Some(Err(e)) => {
            let path = e.path().to_string();
            return Err(problem(
                Some(if path == "." {
                    key
                } else {
                    format!("{key}.{path}")
                }),
                tidy_serde_message(&e.into_inner().to_string()),
            ));
        }
        Some(Ok(settings)) => settings,
    };
    let common: Common =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            problem(
                (path != ".").then_some(path),
                tidy_serde_message(&e.into_inner().to_string()),
            )
        })?;
    let config = Config {
        experiment,
        name: common.name,
        seed: common.seed,
        threads: common.threads,
        trajectories_at_once: common.trajectories_at_once,
        device: common.device,
        dynamics: common.dynamics,
        noise: common.noise,
        record: common.record,
    };
    config.validate().map_err(|(key, problem)| ConfigError {
        source: source.to_string(),
        key: Some(key),
        problem,
    })?;
    let resolved_toml = config.to_toml();
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

/// A validation failure: (dotted key, what is wrong with its value).
pub type Invalid = (String, String);

pub(crate) fn check(
    ok: bool,
    key: &str,
    value: impl fmt::Display,
    expected: &str,
) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((
            key.to_string(),
            format!("value {value} is invalid: expected {expected}"),
        ))
    }
}

pub(crate) fn positive(key: &str, v: f64) -> Result<(), Invalid> {
    check(v.is_finite() && v > 0.0, key, v, "a finite number > 0")
}

pub(crate) fn at_least(key: &str, v: usize, min: usize) -> Result<(), Invalid> {
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
        if let Some(n) = self.trajectories_at_once {
            at_least("trajectories_at_once", n, 1)?;
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
        let experiment = self.experiment.experiment();
        if !self.device.is_cpu() && !experiment.runs_on_candle() {
            return Err((
                "device".into(),
                format!(
                    "value \"{}\" is invalid: experiment \"{}\" runs on the CPU only \
                     (device = \"cpu\"); the network experiments (fashion_mnist, cifar10) \
                     run on candle-cpu and cuda",
                    self.device,
                    self.experiment.key()
                ),
            ));
        }
        experiment.validate(self)
    }

    /// The resolved config as TOML: `experiment`, the shared keys, then its section.
    pub fn to_toml(&self) -> String {
        let common = Common {
            name: self.name.clone(),
            seed: self.seed,
            threads: self.threads,
            trajectories_at_once: self.trajectories_at_once,
            device: self.device,
            dynamics: self.dynamics.clone(),
            noise: self.noise.clone(),
            record: self.record.clone(),
        };
        let key = self.experiment.key();
        let mut section = toml::Table::new();
        section.insert(key.into(), self.experiment.to_toml());
        format!(
            "experiment = {}\n{}{}",
            toml::Value::String(key.into()),
            toml::to_string(&common).expect("a Config always serializes"),
            toml::to_string(&section).expect("a Config always serializes")
        )
    }

    /// The settings of the chosen experiment as their own type, if it is `T`.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.experiment.get::<T>()
    }

    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// How many trajectories compute at once: the config's, or the experiment's
    /// `default` when it says nothing.
    pub fn trajectories_at_once(&self, default: usize) -> usize {
        self.trajectories_at_once.unwrap_or(default).max(1)
    }
}
