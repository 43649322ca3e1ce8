//! Starts an experiment's workers in the background and reports how the run ended.

use crate::config::{Cifar10, FashionMnist};
use crate::config::{ExperimentKind, LoadedConfig};
use crate::dynamics::DynamicsKind;
use crate::events::{Event, EventSender, RunInfo, RunStatus};
use crate::experiments::{classification, one_hidden, toy2d};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A run in progress. Setting `stop` asks the workers to finish their current unit of
/// work and return; `join` waits for them.
pub struct RunHandle {
    pub stop: Arc<AtomicBool>,
    thread: JoinHandle<RunStatus>,
}

impl RunHandle {
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_done(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for every worker; the run's status.
    pub fn join(self) -> RunStatus {
        self.thread.join().unwrap_or(RunStatus::Failed)
    }
}

/// What a run is, for the observers.
/// D, iterations (phase 1 and 2: the record counts from phase 1's start), one
/// trajectory per dynamics, its label and the metrics measured.
fn classification_info<D: classification::Dataset>(
    config: &crate::config::Config,
) -> (usize, u64, usize, Vec<String>, Vec<crate::events::Metric>) {
    let cfg = D::settings(config);
    (
        D::PARAMETERS,
        (cfg.gd_iterations + cfg.iterations) as u64,
        1,
        classification::labels(),
        classification::metrics(cfg.curvature_metrics),
    )
}

pub fn run_info(loaded: &LoadedConfig, run_dir: &Path, started: &str) -> RunInfo {
    let config = &loaded.config;
    let (dim, iterations, replicates, replicate_labels, metrics) = match config.experiment {
        ExperimentKind::Toy2d => {
            let toy = config.toy2d();
            (
                2,
                toy.iterations as u64,
                toy.seeds,
                vec![],
                toy2d::METRICS.to_vec(),
            )
        }
        ExperimentKind::OneHidden => {
            let cfg = config.one_hidden();
            let widest = cfg.widths.iter().copied().max().unwrap_or(0);
            (
                3 * widest,
                cfg.iterations as u64,
                cfg.widths.len(),
                one_hidden::labels(&cfg),
                one_hidden::METRICS.to_vec(),
            )
        }
        ExperimentKind::FashionMnist => classification_info::<FashionMnist>(config),
        ExperimentKind::Cifar10 => classification_info::<Cifar10>(config),
    };
    RunInfo {
        experiment: config.experiment.key().to_string(),
        run_dir: run_dir.to_path_buf(),
        config_toml: loaded.resolved_toml.clone(),
        config_source: loaded.source.clone(),
        dim,
        device: "cpu".into(),
        threads: config.threads(),
        dynamics: config.dynamics.clone(),
        iterations,
        replicates,
        replicate_labels,
        metrics,
        started: started.to_string(),
    }
}

/// Announces the run, starts its workers on a background thread and, when they have
/// all stopped, publishes [`Event::RunEnded`] with the status.
/// `skip`: (dynamics, replicate) already in the record (a resumed run).
pub fn start(
    loaded: &LoadedConfig,
    info: RunInfo,
    events: EventSender,
    skip: BTreeSet<(DynamicsKind, usize)>,
) -> RunHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let config = loaded.config.clone();
    let flag = stop.clone();
    let run_dir = info.run_dir.clone();
    let thread = std::thread::Builder::new()
        .name("runner".into())
        .spawn(move || {
            events.send(Event::RunStarted(Arc::new(info)));
            let start = std::time::Instant::now();
            let result = match config.experiment {
                ExperimentKind::Toy2d => toy2d::run_live(&config, &events, &flag, &skip),
                ExperimentKind::OneHidden => one_hidden::run_live(&config, &events, &flag, &skip),
                ExperimentKind::FashionMnist => classification::run_live::<FashionMnist>(
                    &config, &events, &flag, &skip, &run_dir,
                ),
                ExperimentKind::Cifar10 => {
                    classification::run_live::<Cifar10>(&config, &events, &flag, &skip, &run_dir)
                }
            };
            // Read by scripts/bench_dashboard.sh: compute time without the record's write.
            events.log(
                None,
                format!("workers done in {:.3} s", start.elapsed().as_secs_f64()),
            );
            let status = match result {
                // Stopped during a shared phase (e.g. the GD phase to θ_GD).
                Err(crate::Error::Stopped) if flag.load(Ordering::Relaxed) => {
                    RunStatus::Interrupted
                }
                Err(e) => {
                    events.log(None, format!("run failed: {e}"));
                    RunStatus::Failed
                }
                Ok(failed) if failed > 0 => RunStatus::Failed,
                Ok(_) if flag.load(Ordering::Relaxed) => RunStatus::Interrupted,
                Ok(_) => RunStatus::Finished,
            };
            events.send(Event::RunEnded { status });
            status
        })
        .expect("spawning the runner thread");
    RunHandle { stop, thread }
}
