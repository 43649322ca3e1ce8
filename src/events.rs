//! The one seam between the backend and everything that observes it.
//!
//! Workers publish [`Event`]s through an [`EventSender`]. Two kinds of consumer:
//! - the recorder gets **every** event, through an unbounded channel (a send never
//!   blocks a worker, nothing is dropped);
//! - the dashboard (or the headless printer) gets lifecycle events through an unbounded
//!   channel too (they are few) and high-rate events (metrics, spectra) through a
//!   bounded one with `try_send`: when the display falls behind, those are dropped and
//!   counted, so a slow or stalled terminal can never slow the training down.
//!
//! Nothing downstream of the channels touches tensors; nothing upstream knows a
//! terminal exists.

use crate::dynamics::DynamicsKind;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A scalar measured along a trajectory, named by its stable key (the record's dataset
/// name and the journal's tag). Experiments define their own with [`Metric::new`]; the
/// ones several experiments share are the constants below.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric(&'static str);

impl Metric {
    pub const LOSS: Metric = Metric("loss");
    pub const TRAIN_ACCURACY: Metric = Metric("train_accuracy");
    pub const TEST_ACCURACY: Metric = Metric("test_accuracy");
    /// Expected sharpness E[L(θ+ν)] − L(θ) (docs/METHOD.md §3).
    pub const SHARPNESS: Metric = Metric("sharpness");
    /// The Monte-Carlo standard error of that sharpness value.
    pub const SHARPNESS_SE: Metric = Metric("sharpness_se");
    /// Tr(HΣ), Σ the gradient covariance (docs/METHOD.md §3).
    pub const TR_H_SIGMA: Metric = Metric("tr_h_sigma");
    /// Tr(HΣ̄) = Tr H·Tr Σ / D, the isotropic reference.
    pub const TR_H_SIGMA_ISO: Metric = Metric("tr_h_sigma_iso");
    /// Tr(H·Cov n), the indicator of the dynamics' own noise.
    pub const TR_H_NOISE: Metric = Metric("tr_h_noise");
    /// Tr(HΣ)/Tr(HΣ̄): how much more than an isotropic Σ the noise is aligned with H.
    pub const ISOTROPY_RATIO: Metric = Metric("tr_h_sigma_ratio");
    /// Fraction of replicates in the flat basin at this iteration (toy).
    pub const ESCAPED_FRACTION: Metric = Metric("escaped_fraction");
    pub const TEST_LOSS: Metric = Metric("test_loss");
    /// ‖g0‖, the full-batch gradient's norm (Fig. 5).
    pub const GRADIENT_NORM: Metric = Metric("gradient_norm");
    /// √Tr C_m: the expected norm of SGD's gradient noise g_B − g0 (Fig. 5).
    pub const NOISE_NORM: Metric = Metric("noise_norm");
    /// â = u1ᵀΣu1·Tr H/(λ1·Tr Σ) (docs/METHOD.md §3, Fig. 3b).
    pub const PROJECTION_COEFFICIENT: Metric = Metric("projection_coefficient");

    /// The shared vocabulary: key, label, unit, log scale.
    const CATALOG: [(Metric, &'static str, &'static str, bool); 14] = [
        (Metric::LOSS, "loss", "", true),
        (Metric::TRAIN_ACCURACY, "train acc", "fraction", false),
        (Metric::TEST_ACCURACY, "test acc", "fraction", false),
        (Metric::SHARPNESS, "sharpness", "", false),
        (Metric::SHARPNESS_SE, "sharpness SE", "", true),
        (Metric::TR_H_SIGMA, "Tr(HΣ)", "", true),
        (Metric::TR_H_SIGMA_ISO, "Tr(HΣ̄)", "", true),
        (Metric::TR_H_NOISE, "Tr(H·Cov n)", "", true),
        (Metric::ISOTROPY_RATIO, "Tr(HΣ)/Tr(HΣ̄)", "ratio", true),
        (Metric::ESCAPED_FRACTION, "escaped", "fraction", false),
        (Metric::TEST_LOSS, "test loss", "", true),
        (Metric::GRADIENT_NORM, "‖g0‖", "", true),
        (Metric::NOISE_NORM, "noise norm", "", true),
        (Metric::PROJECTION_COEFFICIENT, "â", "", false),
    ];

    /// A metric named `key` (letters, digits and `_`: it is a dataset name).
    pub const fn new(key: &'static str) -> Self {
        Metric(key)
    }

    /// The metric of a key read back from a file: the same value as the constant of
    /// that key (keys outside the catalog are interned once per process).
    pub fn from_key(key: &str) -> Self {
        if let Some((m, ..)) = Self::CATALOG.iter().find(|c| c.0 .0 == key) {
            return *m;
        }
        static INTERNED: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
            std::sync::Mutex::new(std::collections::BTreeSet::new());
        let mut set = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        match set.get(key) {
            Some(k) => Metric(k),
            None => {
                let k: &'static str = Box::leak(key.to_string().into_boxed_str());
                set.insert(k);
                Metric(k)
            }
        }
    }

    /// The record's dataset name.
    pub fn key(self) -> &'static str {
        self.0
    }

    /// The shared definition of this metric; a plain one for metrics outside the catalog.
    pub fn def(self) -> MetricDef {
        match Self::CATALOG.iter().find(|c| c.0 == self) {
            Some(&(metric, label, unit, log_scale)) => MetricDef {
                metric,
                label: label.into(),
                unit: unit.into(),
                log_scale,
            },
            None => MetricDef {
                metric: self,
                label: self.0.into(),
                unit: String::new(),
                log_scale: false,
            },
        }
    }

    pub fn label(self) -> String {
        self.def().label
    }

    /// Quantities that span decades are shown on a log scale.
    pub fn log_scale(self) -> bool {
        self.def().log_scale
    }
}

/// For a classifier (a run that measures test accuracy) the metrics of the mission
/// first — test accuracy, expected sharpness, Tr(HΣ) — then the rest in the run's order;
/// otherwise the run's order (the toy leads with its escaped fraction).
pub fn by_priority(metrics: &[Metric]) -> Vec<Metric> {
    const FIRST: [Metric; 3] = [Metric::TEST_ACCURACY, Metric::SHARPNESS, Metric::TR_H_SIGMA];
    if !metrics.contains(&Metric::TEST_ACCURACY) {
        return metrics.to_vec();
    }
    let mut out: Vec<Metric> = FIRST.into_iter().filter(|m| metrics.contains(m)).collect();
    out.extend(metrics.iter().filter(|m| !FIRST.contains(m)));
    out
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metric({})", self.0)
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Metric::from_key(&key))
    }
}

/// How a metric is shown: announced with the run, so an observer needs no list of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub metric: Metric,
    pub label: String,
    /// Empty when the quantity has no unit of its own.
    pub unit: String,
    pub log_scale: bool,
}

/// One replicate's outcome, published when it finishes (the toy's seeds): what the
/// record stacks over replicates and what the dashboard averages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicateSummary {
    pub replicate: usize,
    /// The experiment's yes/no outcome (the toy: escaped to the flat basin).
    pub success: Option<bool>,
    pub diverged: bool,
    /// Values at iterations 0 … T−1; their mean over replicates is the dynamics' metric.
    pub series: Vec<(Metric, Vec<f64>)>,
    /// Arrays stored stacked over replicates, e.g. the θ path `[T+1, 2]`.
    pub arrays: Vec<NamedArray>,
    /// Spectra at the replicate's end. They travel in its summary, not as separate
    /// [`Event::Spectrum`]s, so that the journal holds both or neither: a run killed
    /// between two frames never records a spectrum of a replicate it does not hold.
    #[serde(default)]
    pub spectra: Vec<ReplicateSpectrum>,
}

/// One of a [`ReplicateSummary`]'s spectra, as an [`Event::Spectrum`] would carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicateSpectrum {
    pub of: SpectrumOf,
    pub iteration: u64,
    /// Descending.
    pub values: Vec<f64>,
}

impl ReplicateSummary {
    pub fn array(&self, name: &str) -> Option<&NamedArray> {
        self.arrays.iter().find(|a| a.name == name)
    }

    pub fn series(&self, metric: Metric) -> Option<&[f64]> {
        self.series
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| v.as_slice())
    }
}

/// A row-major array with its shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedArray {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Per-iteration means of replicate series over the replicates finished so far, kept
/// as running sums (the dashboard's curves and the record's `metrics/` group).
#[derive(Clone, Debug, Default)]
pub struct ReplicateMeans {
    sums: BTreeMap<Metric, Vec<(f64, f64)>>,
}

impl ReplicateMeans {
    pub fn add(&mut self, summary: &ReplicateSummary) {
        for (metric, values) in &summary.series {
            let sums = self.sums.entry(*metric).or_default();
            if sums.len() < values.len() {
                sums.resize(values.len(), (0.0, 0.0));
            }
            for (s, v) in sums.iter_mut().zip(values) {
                s.0 += v;
                s.1 += 1.0;
            }
        }
    }

    /// (iteration, mean) of every metric.
    pub fn means(&self) -> impl Iterator<Item = (Metric, Vec<(u64, f64)>)> + '_ {
        self.sums.iter().map(|(m, s)| {
            let points = s.iter().enumerate();
            (*m, points.map(|(t, (v, c))| (t as u64, v / c)).collect())
        })
    }
}

/// A 2-D parameter plane the dashboard can draw trajectories on (the toy's θ plane):
/// the replicate array to draw and the landmarks around it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plane {
    /// Name of the replicate array holding the path, shape `[points, 2]`.
    pub path: String,
    /// Drawn as dots: the edge between regions.
    pub outline: Vec<(f64, f64)>,
    /// Labelled points (minima).
    pub marks: Vec<(f64, f64, String)>,
    /// The success region is w1, w2 < this corner (drawn as its two edges).
    pub success_corner: Option<f64>,
    /// What `success` means, as a heading.
    pub success_label: String,
    /// Half-width of the drawn square around the origin.
    pub bound: f64,
}

/// Which matrix a spectrum belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SpectrumOf {
    Hessian,
    /// The covariance of the dynamics' noise n_t.
    Noise,
}

/// What a trajectory (or a phase shared by all of them) is computing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Taking steps.
    Steps,
    /// Measuring its metrics at the current θ; what is being computed.
    Measuring(String),
    /// A one-off computation (a phase of its own, e.g. the Hessian spectrum at θ_GD).
    Computing(String),
}

impl Task {
    pub fn describe(&self) -> String {
        match self {
            Task::Steps => "steps".into(),
            Task::Measuring(what) => format!("measuring {what}"),
            Task::Computing(what) => what.clone(),
        }
    }
}

/// Where one trajectory stands, published about once a second while it runs and at
/// every change of task: what the progress bars, rates and ETAs are computed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub dynamics: DynamicsKind,
    pub replicate: usize,
    /// A phase every trajectory waits for ("GD phase"), or `None` for the run's own
    /// trajectories.
    pub phase: Option<String>,
    /// Steps taken of `steps`.
    pub step: u64,
    pub steps: u64,
    /// The record's iteration of step 0.
    pub offset: u64,
    /// Measured every this many steps (0: never), for the cost of what is left.
    pub measure_every: u64,
    /// Seconds since this attempt of the run started (the workers' clock).
    pub elapsed_s: f64,
    pub task: Task,
    /// Processor seconds charged to this trajectory's worker thread so far, its pool jobs
    /// included (`cpu.rs`): where the progress model gets each trajectory's real cost.
    /// `None` where no CPU clock sees the work (a GPU) or in journals from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<f64>,
}

/// A trajectory's health, as its experiment judges it from its measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Healthy again after a flag.
    Healthy,
    /// Collapsed to a constant predictor: loss ≈ ln C and accuracy ≈ 1/C for several
    /// measurements in a row (a dead network).
    Collapsed,
    /// Non-finite or exploding loss or parameters; the trajectory stops.
    Diverged,
}

impl Health {
    pub fn key(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Collapsed => "collapsed",
            Health::Diverged => "diverged",
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Running,
    Finished,
    /// Stopped by the user (q, Ctrl-C) or a signal (SIGTERM, SIGHUP).
    Interrupted,
    Failed,
}

impl SpectrumOf {
    pub fn key(self) -> &'static str {
        match self {
            SpectrumOf::Hessian => "hessian",
            SpectrumOf::Noise => "noise",
        }
    }
}

impl RunStatus {
    pub fn key(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// What a run is, announced once at its start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub experiment: String,
    pub run_dir: PathBuf,
    /// Resolved config as TOML.
    pub config_toml: String,
    pub config_source: String,
    /// Parameters D.
    pub dim: usize,
    pub device: String,
    pub threads: usize,
    pub dynamics: Vec<DynamicsKind>,
    /// Iterations of one trajectory.
    pub iterations: u64,
    /// Independent trajectories per dynamics (the toy's seeds; 1 for networks).
    pub replicates: usize,
    /// Names of the replicates when they differ in kind (e.g. `h = 200` for the widths
    /// of the one-hidden experiment); empty when they are seeds.
    pub replicate_labels: Vec<String>,
    /// What one replicate is called ("seed", "width", "trajectory").
    pub replicate_noun: String,
    /// The metrics this experiment reports, in display order, with how to show them.
    pub metrics: Vec<MetricDef>,
    /// The θ plane to draw trajectories on, for two-parameter experiments.
    pub plane: Option<Plane>,
    /// Iterations marked on the charts' x-axis, with their names (θ_GD: where every
    /// dynamics starts).
    #[serde(default)]
    pub x_marks: Vec<(u64, String)>,
    /// UTC start time.
    pub started: String,
    /// (dynamics, replicate) trajectories an earlier attempt of this run finished (a
    /// resumed run): this attempt sends nothing about them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished_before: Vec<(DynamicsKind, usize)>,
    /// A rough relative cost of one iteration of each dynamics (empty: not known): the
    /// ETA of trajectories not started yet scales the measured ones' by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iteration_costs: Vec<(DynamicsKind, f64)>,
}

impl RunInfo {
    /// The announced definition of `metric` (the shared one if it was not announced).
    pub fn def(&self, metric: Metric) -> MetricDef {
        self.metrics
            .iter()
            .find(|d| d.metric == metric)
            .cloned()
            .unwrap_or_else(|| metric.def())
    }
}

/// Everything a run publishes. Each variant and field is tagged by its name in the
/// journal (`record/journal.rs`), so reordering or adding variants never misreads an
/// old journal; renaming one is a format change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    RunStarted(Arc<RunInfo>),
    /// Metric values of one dynamics at one iteration.
    Metrics {
        dynamics: DynamicsKind,
        /// Which trajectory of the dynamics (the one-hidden experiment's width index; 0
        /// when there is one).
        replicate: usize,
        iteration: u64,
        values: Vec<(Metric, f64)>,
    },
    /// Leading eigenvalues (descending) at one iteration.
    Spectrum {
        dynamics: DynamicsKind,
        /// Which trajectory (0 when there is one). Replicates that finish as a whole
        /// carry their spectra in their [`ReplicateSummary`] instead.
        replicate: usize,
        iteration: u64,
        of: SpectrumOf,
        values: Vec<f64>,
    },
    /// θ and the noise state of one trajectory after `checkpoint.iteration` steps:
    /// everything continuing it needs (journaled and synced to disk at once).
    Checkpoint {
        dynamics: DynamicsKind,
        replicate: usize,
        checkpoint: Arc<crate::engine::Checkpoint>,
    },
    Log {
        dynamics: Option<DynamicsKind>,
        message: String,
    },
    /// A trajectory produced NaN/Inf: it stops, the others go on.
    Diverged {
        dynamics: DynamicsKind,
        replicate: usize,
        iteration: u64,
        reason: String,
    },
    /// Where a trajectory stands (high-rate: the display may drop some).
    Progress(Progress),
    /// A trajectory's health changed (it keeps running unless it diverged).
    Health {
        dynamics: DynamicsKind,
        replicate: usize,
        iteration: u64,
        health: Health,
        detail: String,
    },
    /// One replicate completed, with its summary (experiments with many short
    /// replicates, e.g. the toy's seeds).
    ReplicateFinished {
        dynamics: DynamicsKind,
        summary: Arc<ReplicateSummary>,
    },
    /// One trajectory (a replicate) of a dynamics completed.
    TrajectoryFinished {
        dynamics: DynamicsKind,
        replicate: usize,
    },
    /// A dynamics completed all its work.
    Finished {
        dynamics: DynamicsKind,
    },
    /// A dynamics stopped on an error; the others go on.
    Failed {
        dynamics: DynamicsKind,
        error: String,
    },
    /// Every worker has stopped; the last event of a run.
    RunEnded {
        status: RunStatus,
    },
}

impl Event {
    /// One human-readable line for a lifecycle event (events.log, the dashboard's log
    /// pane, headless output); `None` for the high-rate ones.
    pub fn describe(&self) -> Option<String> {
        Some(match self {
            Event::RunStarted(info) => format!(
                "run started: {} (D = {}, {} dynamics, device {}, {} threads)",
                info.experiment,
                info.dim,
                info.dynamics.len(),
                info.device,
                info.threads
            ),
            Event::Log { dynamics, message } => match dynamics {
                Some(d) => format!("[{d}] {message}"),
                None => message.clone(),
            },
            Event::Diverged {
                dynamics,
                replicate,
                iteration,
                reason,
            } => format!(
                "[{dynamics}] replicate {replicate} diverged at iteration {iteration}: {reason}"
            ),
            Event::Checkpoint {
                dynamics,
                replicate,
                checkpoint,
            } => format!(
                "[{dynamics}] checkpoint: replicate {replicate}, iteration {}",
                checkpoint.iteration
            ),
            Event::TrajectoryFinished {
                dynamics,
                replicate,
            } => format!("[{dynamics}] trajectory {replicate} finished"),
            Event::Health {
                dynamics,
                replicate,
                iteration,
                health,
                detail,
            } => format!(
                "[{dynamics}] replicate {replicate} {} at iteration {iteration}: {detail}",
                health.key()
            ),
            Event::Finished { dynamics } => format!("[{dynamics}] finished"),
            Event::Failed { dynamics, error } => format!("[{dynamics}] FAILED: {error}"),
            Event::RunEnded { status } => format!("run {}", status.key()),
            Event::Metrics { .. }
            | Event::Spectrum { .. }
            | Event::Progress(_)
            | Event::ReplicateFinished { .. } => return None,
        })
    }

    /// High-rate events the display may drop under backpressure.
    fn is_droppable(&self) -> bool {
        matches!(
            self,
            Event::Metrics { .. } | Event::Spectrum { .. } | Event::Progress(_)
        )
    }
}

/// Capacity of the display's droppable-event channel.
pub const DISPLAY_BUFFER: usize = 16_384;

/// Cloneable handle the workers publish through.
#[derive(Clone)]
pub struct EventSender {
    recorder: Sender<Event>,
    display: Option<(Sender<Event>, Sender<Event>)>,
    dropped: Arc<AtomicU64>,
}

/// The receiving ends, one per consumer.
pub struct EventReceivers {
    pub recorder: Receiver<Event>,
    pub display: Option<DisplayReceiver>,
}

/// What the dashboard or headless printer reads.
pub struct DisplayReceiver {
    /// Lifecycle events: never dropped.
    pub lifecycle: Receiver<Event>,
    /// Metrics and spectra: may be dropped when the display falls behind.
    pub updates: Receiver<Event>,
    /// How many updates were dropped so far.
    pub dropped: Arc<AtomicU64>,
}

/// Creates the channels: the recorder always, a display when asked.
pub fn channel(with_display: bool) -> (EventSender, EventReceivers) {
    let (rec_tx, rec_rx) = crossbeam_channel::unbounded();
    let dropped = Arc::new(AtomicU64::new(0));
    let (display_tx, display_rx) = if with_display {
        let (life_tx, life_rx) = crossbeam_channel::unbounded();
        let (upd_tx, upd_rx) = crossbeam_channel::bounded(DISPLAY_BUFFER);
        (
            Some((life_tx, upd_tx)),
            Some(DisplayReceiver {
                lifecycle: life_rx,
                updates: upd_rx,
                dropped: dropped.clone(),
            }),
        )
    } else {
        (None, None)
    };
    (
        EventSender {
            recorder: rec_tx,
            display: display_tx,
            dropped,
        },
        EventReceivers {
            recorder: rec_rx,
            display: display_rx,
        },
    )
}

impl EventSender {
    /// Publishes to every consumer; never blocks.
    pub fn send(&self, event: Event) {
        if let Some((lifecycle, updates)) = &self.display {
            if event.is_droppable() {
                if let Err(TrySendError::Full(_)) = updates.try_send(event.clone()) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                // A display that has gone away (closed receiver) is not an error.
                let _ = lifecycle.send(event.clone());
            }
        }
        // The recorder outlives the workers; if it has died, the run's main thread
        // reports that when it joins it.
        let _ = self.recorder.send(event);
    }

    /// Publishes in order with the lifecycle events, never dropped: for a replay
    /// (`watch`), where every event is already on disk and their order is the story.
    pub fn send_in_order(&self, event: Event) {
        if let Some((lifecycle, _)) = &self.display {
            let _ = lifecycle.send(event.clone());
        }
        let _ = self.recorder.send(event);
    }

    pub fn log(&self, dynamics: Option<DynamicsKind>, message: impl Into<String>) {
        self.send(Event::Log {
            dynamics,
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_gets_everything_display_drops_only_updates() {
        let (tx, rx) = channel(true);
        let display = rx.display.unwrap();
        let n = DISPLAY_BUFFER + 100;
        for i in 0..n {
            tx.send(Event::Metrics {
                dynamics: DynamicsKind::Sgd,
                replicate: 0,
                iteration: i as u64,
                values: vec![(Metric::LOSS, 1.0)],
            });
        }
        tx.send(Event::Finished {
            dynamics: DynamicsKind::Sgd,
        });
        assert_eq!(rx.recorder.len(), n + 1);
        assert_eq!(display.updates.len(), DISPLAY_BUFFER);
        assert_eq!(display.dropped.load(Ordering::Relaxed), 100);
        assert_eq!(display.lifecycle.len(), 1);
    }

    #[test]
    fn sending_never_fails_when_a_consumer_is_gone() {
        let (tx, rx) = channel(true);
        drop(rx);
        tx.log(None, "nobody listens");
    }
}
