//! The one-hidden-layer protocol of docs/METHOD.md §4.2 (Fig. 2): for each hidden
//! width, the configured dynamics (SGD by default) train the network from the same
//! data, and every `metrics_every` iterations Tr(HΣ), the isotropic
//! Tr(HΣ̄) = Tr H·Tr Σ / D, their ratio, the loss and the training accuracy are
//! published. Σ comes from `sigma_batches` random minibatch gradients of size
//! `sigma_batch_size` (scaled to per-sample units), Tr H from Hutchinson probes,
//! Tr(HΣ) from one HVP per centred gradient (METHOD.md §3).

use super::{partial, report_end, Say, Section, Tokens, Tracker};
use crate::config::{at_least, check, positive, Config, Invalid};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine::{self, Start, StepRule};
use crate::estimators::covariance::GradientCovariance;
use crate::estimators::trace::hutchinson;
use crate::events::{Metric, RunStatus};
use crate::experiment::{Experiment, Outline, RunContext};
pub use crate::models::one_hidden::{OutputLoss, OutputWeights};
use crate::models::one_hidden::{OneHidden, SeparableData};
use crate::objective::Objective;
use crate::optim::Adam;
use crate::record::state::RecordState;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

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

impl OneHiddenConfig {
    fn check(&self, config: &Config) -> std::result::Result<(), Invalid> {
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


/// The metrics this experiment reports, in display order.
pub const METRICS: [Metric; 5] = [
    Metric::ISOTROPY_RATIO,
    Metric::TR_H_SIGMA,
    Metric::TR_H_SIGMA_ISO,
    Metric::LOSS,
    Metric::TRAIN_ACCURACY,
];

/// Names of the replicates: one per width.
pub fn labels(cfg: &OneHiddenConfig) -> Vec<String> {
    cfg.widths.iter().map(|h| format!("h = {h}")).collect()
}

fn settings(config: &Config) -> &OneHiddenConfig {
    config
        .settings::<OneHiddenConfig>()
        .expect("a one_hidden config")
}

/// The network of width index `w`, on the run's data set (the same for every width).
pub fn objective(config: &Config, w: usize) -> Result<OneHidden> {
    let cfg = settings(config);
    let mut data_rng = rng::stream(config.seed, 0, Purpose::Data);
    let data = match cfg.points {
        PointsLayout::Separable => SeparableData::draw(cfg.samples, cfg.margin, &mut data_rng),
        PointsLayout::Diagonal => SeparableData::draw_diagonal(cfg.samples, &mut data_rng),
    };
    OneHidden::with(&data, cfg.widths[w], cfg.output_weights, cfg.loss)
}

/// θ_0 of width index `w` (PyTorch's default initialisation), the same for every dynamics.
pub fn initial_theta(config: &Config, w: usize) -> Vec<f64> {
    let mut init_rng = rng::stream(config.seed, 1 + w as u64, Purpose::Data);
    OneHidden::init_theta(settings(config).widths[w], &mut init_rng)
}

/// Loss, training accuracy, Tr(HΣ), Tr(HΣ̄) and their ratio at θ.
pub fn measure<R: Rng>(
    model: &OneHidden,
    theta: &[f64],
    cfg: &OneHiddenConfig,
    rng: &mut R,
) -> Result<Vec<(Metric, f64)>> {
    let n = model.num_samples();
    let b = cfg.sigma_batch_size;
    let indices: Vec<usize> = (0..cfg.sigma_batches)
        .flat_map(|_| sample(&mut *rng, n, b).into_vec())
        .collect();
    // Minibatch gradients have covariance Σ/b: scaled back to per-sample units.
    let sigma = GradientCovariance::minibatches(model.batch_gradients(theta, &indices, b)?)?
        .scaled(b as f64);
    let tr_h_sigma = sigma.tr_h(|v| model.hvp(theta, v))?;
    let tr_h = hutchinson(
        model.dim(),
        |v| model.hvp(theta, v),
        cfg.trace_probes,
        rng.random(),
    )?;
    let iso = tr_h.value * sigma.trace() / model.dim() as f64;
    Ok(vec![
        (Metric::ISOTROPY_RATIO, tr_h_sigma / iso),
        (Metric::TR_H_SIGMA, tr_h_sigma),
        (Metric::TR_H_SIGMA_ISO, iso),
        (Metric::LOSS, model.loss(theta)?),
        (Metric::TRAIN_ACCURACY, model.accuracy(theta)?),
    ])
}

/// One dynamics on one width, publishing its measurements; continues from the width's
/// checkpoint when the run is resumed.
fn run_one(ctx: &RunContext<'_>, kind: DynamicsKind, w: usize) -> Result<()> {
    let config = ctx.config;
    let cfg = settings(config);
    let model = objective(config, w)?;
    let spec = config.noise.spec(kind, cfg.eta);
    let mut tracker = Tracker::new(
        ctx,
        kind,
        w,
        0,
        cfg.iterations,
        cfg.metrics_every,
        rng::stream(config.seed, w as u64, Purpose::Measurements(kind)),
        |t: usize,
         at: &mut crate::estimators::AtPoint<'_, OneHidden>,
         _: &mut NoiseModel,
         rng: &mut rand_chacha::ChaCha12Rng,
         _: Say<'_>| {
            if !t.is_multiple_of(cfg.metrics_every) {
                return Ok(None);
            }
            measure(&model, at.theta(), cfg, rng).map(Some)
        },
    );
    let start = tracker.start(spec, cfg.iterations, model.dim(), |spec| {
        let theta = initial_theta(config, w);
        let rule = match cfg.optimizer {
            OneHiddenOptimizer::Dynamics => StepRule::Plain,
            // The released recipe: full-batch Adam, learning rate η decaying linearly
            // over the last `decay_last` iterations.
            OneHiddenOptimizer::Adam => StepRule::Adam {
                adam: Adam::new(theta.len()),
                total: cfg.iterations,
                decay_last: cfg.decay_last,
            },
        };
        Start {
            step: 0,
            theta,
            noise: NoiseModel::new(spec, config.seed, w as u64),
            rule,
        }
    })?;
    let (end, _) = engine::run_from(&model, start, cfg.iterations, &mut tracker)?;
    tracker.finish(&end, |theta, rng, _| measure(&model, theta, cfg, rng))
}

impl Section for OneHiddenConfig {
    const KEY: &'static str = "one_hidden";
}

impl Experiment for OneHiddenConfig {

    fn validate(&self, config: &Config) -> std::result::Result<(), Invalid> {
        self.check(config)
    }

    fn outline(&self, _config: &Config) -> Outline {
        Outline {
            dim: 3 * self.widths.iter().copied().max().unwrap_or(0),
            iterations: self.iterations as u64,
            replicates: self.widths.len(),
            replicate_labels: labels(self),
            replicate_noun: "width",
            metrics: METRICS.iter().map(|m| m.def()).collect(),
            plane: None,
            x_marks: vec![],
            iteration_costs: vec![],
        }
    }

    /// One worker per dynamics; its widths run side by side, at most `threads` at a time.
    fn run(&self, ctx: &RunContext<'_>) -> Result<usize> {
        let widths = self.widths.len();
        let failed = AtomicUsize::new(0);
        let tokens = Tokens::new(ctx.config.trajectories_at_once(ctx.config.threads()));
        std::thread::scope(|scope| {
            for &kind in &ctx.config.dynamics {
                let (failed, tokens) = (&failed, &tokens);
                scope.spawn(move || {
                    let results: Vec<Result<()>> = std::thread::scope(|inner| {
                        let handles: Vec<_> = (0..widths)
                            .filter(|&w| !ctx.finished(kind, w))
                            .map(|w| inner.spawn(move || tokens.run(|| run_one(ctx, kind, w))))
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| {
                                h.join().unwrap_or_else(|_| {
                                    Err(Error::Numerics("a worker panicked".into()))
                                })
                            })
                            .collect()
                    });
                    // A real error outranks a stop.
                    let outcome = results
                        .into_iter()
                        .filter(Result::is_err)
                        .reduce(|a, b| if matches!(a, Err(Error::Stopped)) { b } else { a })
                        .unwrap_or(Ok(()));
                    report_end(ctx.events, kind, outcome, ctx.stop, failed);
                });
            }
        });
        Ok(failed.into_inner())
    }

    fn results_text(&self, record: &RecordState, status: RunStatus) -> String {
        let mut out = format!(
            "Tr(HΣ)/Tr(HΣ̄) at the end of training, by hidden width (Fig. 2){}:\n{:<18} {:>8} {:>7} {:>14} {:>12} {:>12} {:>9} {:>9}\n",
            partial(status), "dynamics", "width", "D", "Tr(HΣ)/Tr(HΣ̄)", "Tr(HΣ)", "Tr(HΣ̄)", "loss", "accuracy"
        );
        for &kind in &record.config.dynamics {
            for (w, h) in self.widths.iter().enumerate() {
                let f = record.final_metrics(kind, w);
                let sci = |m: Metric| f.get(&m).map_or("-".to_string(), |x| format!("{x:.4e}"));
                let fixed = |m: Metric| f.get(&m).map_or("-".to_string(), |x| format!("{x:.4}"));
                out += &format!(
                    "{:<18} {:>8} {:>7} {:>14} {:>12} {:>12} {:>9} {:>9}\n",
                    kind.label(),
                    h,
                    3 * h,
                    // NaN = 0/0: no gradient noise and no curvature left (e.g. every
                    // output clipped in the released recipe).
                    f.get(&Metric::ISOTROPY_RATIO).map_or("-".to_string(), |x| {
                        if x.is_nan() {
                            "0/0".to_string()
                        } else {
                            format!("{x:.2}")
                        }
                    }),
                    sci(Metric::TR_H_SIGMA),
                    sci(Metric::TR_H_SIGMA_ISO),
                    fixed(Metric::LOSS),
                    fixed(Metric::TRAIN_ACCURACY)
                );
            }
        }
        out
    }

    /// Fig. 2: per dynamics, the final Tr(HΣ)/Tr(HΣ̄) (and its parts, loss and accuracy)
    /// by width.
    fn summary(&self, record: &RecordState, status: RunStatus) -> Value {
        let mut dynamics = Map::new();
        for &kind in &record.config.dynamics {
            let mut by: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
            for (w, h) in self.widths.iter().enumerate() {
                let finals = record.final_metrics(kind, w);
                for (name, metric) in [
                    ("ratio_by_width", Metric::ISOTROPY_RATIO),
                    ("tr_h_sigma_by_width", Metric::TR_H_SIGMA),
                    ("tr_h_sigma_iso_by_width", Metric::TR_H_SIGMA_ISO),
                    ("final_loss_by_width", Metric::LOSS),
                    ("final_train_accuracy_by_width", Metric::TRAIN_ACCURACY),
                ] {
                    if let Some(v) = finals.get(&metric).filter(|v| v.is_finite()) {
                        by.entry(name).or_default().insert(h.to_string(), json!(v));
                    }
                }
            }
            let mut entry = Map::new();
            entry.insert("label".into(), json!(kind.label()));
            for (name, values) in by {
                entry.insert(name.into(), Value::Object(values));
            }
            dynamics.insert(kind.key().to_string(), Value::Object(entry));
        }
        json!({
            "experiment": Self::KEY,
            "status": status.key(),
            "widths": self.widths,
            "iterations": self.iterations,
            "dynamics": dynamics,
        })
    }
}
