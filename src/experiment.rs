//! The seam between the experiments and everything that runs or observes them.
//!
//! An experiment is its config section (a `Config` struct that builds things): it says
//! what a run of it is ([`Outline`]: dynamics, replicates, metric definitions), checks
//! what it reads before the run ([`Experiment::preflight`]), runs its trajectories
//! ([`Experiment::run`], continuing from checkpoints when resumed), and turns a record
//! into its result table and summary. The runner, the record, the dashboard and `main`
//! know only this trait and the generic events; the registry line in
//! `experiments/mod.rs` is the only place that names every experiment.

use crate::config::{Config, Invalid};
use crate::dynamics::DynamicsKind;
use crate::engine::Checkpoint;
use crate::events::{Event, EventSender, MetricDef, Plane, Progress, RunStatus, SpectrumOf, Task};
use crate::record::state::RecordState;
use crate::Result;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a run is, for the observers (announced in `Event::RunStarted`).
#[derive(Clone, Debug, PartialEq)]
pub struct Outline {
    /// Parameters D (the largest, when replicates differ).
    pub dim: usize,
    /// Iterations of one trajectory, in the record's numbering.
    pub iterations: u64,
    /// Independent trajectories per dynamics.
    pub replicates: usize,
    /// Names of the replicates when they differ in kind; empty when they are seeds.
    pub replicate_labels: Vec<String>,
    /// What one replicate is called ("seed", "width", "trajectory").
    pub replicate_noun: &'static str,
    /// Metrics in display order.
    pub metrics: Vec<MetricDef>,
    pub plane: Option<Plane>,
    /// Iterations to mark on the charts (θ_GD), with their names.
    pub x_marks: Vec<(u64, String)>,
    /// A rough relative cost of one iteration of each dynamics (empty: not known), for
    /// the order trajectories start in and the ETA of those not started.
    pub iteration_costs: Vec<(DynamicsKind, f64)>,
}

/// One experiment: implemented by its config section.
pub trait Experiment: Send + Sync + fmt::Debug {
    /// Checks the section against the whole config: `(key, problem)` on failure.
    fn validate(&self, config: &Config) -> std::result::Result<(), Invalid>;

    fn outline(&self, config: &Config) -> Outline;

    /// Checks what the run reads from disk and the memory it needs, before a run
    /// directory exists.
    fn preflight(&self, _config: &Config) -> Result<()> {
        Ok(())
    }

    /// Runs every unfinished trajectory (continuing from its checkpoint when resumed),
    /// publishing through `ctx.events`. Per-dynamics failures are published and counted
    /// (the return value); an `Err` stops the whole run.
    fn run(&self, ctx: &RunContext<'_>) -> Result<usize>;

    /// The result table with its heading, as `run` prints it.
    fn results_text(&self, record: &RecordState, status: RunStatus) -> String;

    /// `summary.json`. Its per-dynamics numbers also become attributes of
    /// `/dynamics/<key>` in `run.h5`.
    fn summary(&self, record: &RecordState, status: RunStatus) -> serde_json::Value;

    /// What the run's shareable phase depends on (θ_GD of the networks: data, seed,
    /// GD's settings), as a short stable key: runs with the same key can share that
    /// phase through `record.shared_cache`. `None`: nothing to share.
    fn shared_work_key(&self, _config: &Config) -> Option<String> {
        None
    }

    /// Whether the experiment runs on candle's devices (`device = "candle-cpu"`, `"cuda"`)
    /// besides the CPU kernels; the others are refused with `device` named.
    fn runs_on_candle(&self) -> bool {
        false
    }

    /// The config key `--data-dir` sets, for experiments that read a dataset.
    fn data_dir_key(&self) -> Option<String> {
        None
    }
}

/// What an earlier attempt of this run already recorded (empty for a new run).
#[derive(Clone, Debug, Default)]
pub struct Prior {
    /// (dynamics, replicate) trajectories reported finished.
    pub finished: BTreeSet<(DynamicsKind, usize)>,
    /// (dynamics, of, replicate, iteration) of every recorded spectrum.
    pub spectra: BTreeSet<(DynamicsKind, SpectrumOf, usize, u64)>,
}

/// What a running experiment gets.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub events: &'a EventSender,
    /// Set when the run is asked to stop (q, Ctrl-C, a signal).
    pub stop: &'a AtomicBool,
    pub run_dir: &'a Path,
    pub prior: &'a Prior,
    /// When this attempt of the run started: the clock of every `Progress` event.
    pub clock: std::time::Instant,
}

impl RunContext<'_> {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The latest checkpoint of one trajectory, if an earlier attempt wrote one.
    pub fn checkpoint(&self, kind: DynamicsKind, replicate: usize) -> Result<Option<Checkpoint>> {
        crate::record::checkpoint::read(self.run_dir, kind, replicate)
    }

    /// Steps between checkpoints (`record.checkpoint_every`; 0 = none).
    pub fn checkpoint_every(&self) -> usize {
        self.config.record.checkpoint_every
    }

    pub fn finished(&self, kind: DynamicsKind, replicate: usize) -> bool {
        self.prior.finished.contains(&(kind, replicate))
    }

    /// Announces a phase every trajectory waits for (`phase`, e.g. "Hessian spectrum at
    /// θ_GD") doing `task`: step 0 of 1 now, `done` closes it.
    pub fn phase(&self, phase: &str, task: Task, done: bool) {
        self.events.send(Event::Progress(Progress {
            dynamics: DynamicsKind::Gd,
            replicate: 0,
            phase: Some(phase.to_string()),
            step: u64::from(done),
            steps: 1,
            offset: 0,
            measure_every: 0,
            elapsed_s: self.clock.elapsed().as_secs_f64(),
            task,
            // A shared phase runs alone: equal shares are its exact costs.
            cpu_s: None,
        }));
    }
}
