//! Starts an experiment's workers in the background and reports how the run ended.
//! Knows experiments only through [`crate::experiment::Experiment`].

use crate::config::LoadedConfig;
use crate::events::{Event, EventSender, RunInfo, RunStatus};
use crate::experiment::{Prior, RunContext};
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

/// What a run is, for the observers: the experiment's outline and where it runs.
pub fn run_info(loaded: &LoadedConfig, run_dir: &Path, started: &str) -> RunInfo {
    let config = &loaded.config;
    let outline = config.experiment.experiment().outline(config);
    RunInfo {
        experiment: config.experiment.key().to_string(),
        run_dir: run_dir.to_path_buf(),
        config_toml: loaded.resolved_toml.clone(),
        config_source: loaded.source.clone(),
        dim: outline.dim,
        device: config.device.to_string(),
        threads: config.threads(),
        dynamics: config.dynamics.clone(),
        iterations: outline.iterations,
        replicates: outline.replicates,
        replicate_labels: outline.replicate_labels,
        replicate_noun: outline.replicate_noun.into(),
        metrics: outline.metrics,
        plane: outline.plane,
        x_marks: outline.x_marks,
        started: started.to_string(),
        finished_before: vec![],
        iteration_costs: outline.iteration_costs,
    }
}

/// Announces the run, starts its workers on a background thread and, when they have
/// all stopped, publishes [`Event::RunEnded`] with the status. `prior`: what an
/// earlier attempt recorded (a resumed run), which the experiment does not redo.
pub fn start(
    loaded: &LoadedConfig,
    mut info: RunInfo,
    events: EventSender,
    prior: Prior,
) -> RunHandle {
    // Observers that see only this attempt (a headless resume) still know what is done.
    info.finished_before = prior.finished.iter().copied().collect();
    // The kernels' parallel calls go to rayon's global pool: `threads` sizes it, once a
    // process (a second run in one process keeps the first's); the run says what it got.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(loaded.config.threads())
        .build_global();
    info.threads = rayon::current_num_threads();
    let stop = Arc::new(AtomicBool::new(false));
    let config = loaded.config.clone();
    let flag = stop.clone();
    let run_dir = info.run_dir.clone();
    let thread = std::thread::Builder::new()
        .name("runner".into())
        .spawn(move || {
            events.send(Event::RunStarted(Arc::new(info)));
            let start = std::time::Instant::now();
            let ctx = RunContext {
                config: &config,
                events: &events,
                stop: &flag,
                run_dir: &run_dir,
                prior: &prior,
                clock: start,
            };
            let result = config.experiment.experiment().run(&ctx);
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
