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
use crate::experiments::toy2d::ToyRun;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A scalar measured along a trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Metric {
    Loss,
    TrainAccuracy,
    TestAccuracy,
    /// Expected sharpness E[L(θ+ν)] − L(θ) (SPEC §3).
    Sharpness,
    /// Tr(HΣ), Σ the gradient covariance (SPEC §3).
    TrHSigma,
    /// Tr(HΣ̄) = Tr H·Tr Σ / D, the isotropic reference.
    TrHSigmaIso,
    /// Tr(H·Cov n), the indicator of the dynamics' own noise.
    TrHNoise,
    /// Tr(HΣ)/Tr(HΣ̄): how much more than an isotropic Σ the noise is aligned with H.
    IsotropyRatio,
    /// Fraction of replicates in the flat basin at this iteration (toy).
    EscapedFraction,
    /// Mean loss on the test set.
    TestLoss,
    /// ‖g0‖, the full-batch gradient's norm (Fig. 5).
    GradientNorm,
    /// √Tr C_m: the expected norm of SGD's gradient noise g_B − g0 (Fig. 5).
    NoiseNorm,
    /// â = u1ᵀΣu1·Tr H/(λ1·Tr Σ) (SPEC §3, Fig. 3b).
    ProjectionCoefficient,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::TrainAccuracy => "train acc",
            Metric::TestAccuracy => "test acc",
            Metric::Sharpness => "sharpness",
            Metric::TrHSigma => "Tr(HΣ)",
            Metric::TrHSigmaIso => "Tr(HΣ̄)",
            Metric::TrHNoise => "Tr(H·Cov n)",
            Metric::IsotropyRatio => "Tr(HΣ)/Tr(HΣ̄)",
            Metric::EscapedFraction => "escaped",
            Metric::TestLoss => "test loss",
            Metric::GradientNorm => "‖g0‖",
            Metric::NoiseNorm => "noise norm",
            Metric::ProjectionCoefficient => "â",
        }
    }

    /// The record's dataset name.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::TrainAccuracy => "train_accuracy",
            Metric::TestAccuracy => "test_accuracy",
            Metric::Sharpness => "sharpness",
            Metric::TrHSigma => "tr_h_sigma",
            Metric::TrHSigmaIso => "tr_h_sigma_iso",
            Metric::TrHNoise => "tr_h_noise",
            Metric::IsotropyRatio => "tr_h_sigma_ratio",
            Metric::EscapedFraction => "escaped_fraction",
            Metric::TestLoss => "test_loss",
            Metric::GradientNorm => "gradient_norm",
            Metric::NoiseNorm => "noise_norm",
            Metric::ProjectionCoefficient => "projection_coefficient",
        }
    }

    /// Quantities that span decades are shown on a log scale.
    pub fn log_scale(self) -> bool {
        matches!(
            self,
            Metric::TrHSigma
                | Metric::TrHSigmaIso
                | Metric::TrHNoise
                | Metric::Loss
                | Metric::TestLoss
                | Metric::IsotropyRatio
                | Metric::GradientNorm
                | Metric::NoiseNorm
        )
    }
}

/// Which matrix a spectrum belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SpectrumOf {
    Hessian,
    /// The covariance of the dynamics' noise n_t.
    Noise,
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
    /// The metrics this experiment reports, in display order.
    pub metrics: Vec<Metric>,
    /// UTC start time.
    pub started: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        /// The toy's seed index; 0 for single-trajectory experiments.
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
    /// One toy replicate completed, with everything it measured.
    ReplicateFinished {
        dynamics: DynamicsKind,
        run: Arc<ToyRun>,
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
            Event::Finished { dynamics } => format!("[{dynamics}] finished"),
            Event::Failed { dynamics, error } => format!("[{dynamics}] FAILED: {error}"),
            Event::RunEnded { status } => format!("run {}", status.key()),
            Event::Metrics { .. } | Event::Spectrum { .. } | Event::ReplicateFinished { .. } => {
                return None
            }
        })
    }

    /// High-rate events the display may drop under backpressure.
    fn is_droppable(&self) -> bool {
        matches!(self, Event::Metrics { .. } | Event::Spectrum { .. })
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
                values: vec![(Metric::Loss, 1.0)],
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
