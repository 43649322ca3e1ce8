//! The recorder: the consumer that receives every event. It keeps a plain-text
//! `events.log` of the run's lifecycle as it happens and, when the run ends (finished,
//! interrupted or failed), writes `run.h5` and `summary.json` with that status.

use crate::config::{ExperimentKind, LoadedConfig};
use crate::events::{Event, RunStatus};
use crate::experiments::toy2d::{ToyAssembly, ToyOutcome};
use crate::{Error, Result};
use crossbeam_channel::Receiver;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// What the recorder leaves for the command line to print.
pub struct Recorded {
    pub status: RunStatus,
    pub toy: Option<ToyOutcome>,
    pub run_dir: PathBuf,
}

pub fn spawn(
    loaded: LoadedConfig,
    run_dir: PathBuf,
    created: String,
    events: Receiver<Event>,
) -> JoinHandle<Result<Recorded>> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || record(&loaded, &run_dir, &created, events))
        .expect("spawning the recorder thread")
}

fn record(
    loaded: &LoadedConfig,
    run_dir: &Path,
    created: &str,
    events: Receiver<Event>,
) -> Result<Recorded> {
    let log_path = run_dir.join("events.log");
    let mut log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let mut toy = match loaded.config.experiment {
        ExperimentKind::Toy2d => Some(ToyAssembly::new(&loaded.config)),
    };
    // A run whose senders all vanish without a RunEnded was cut short.
    let mut status = RunStatus::Interrupted;
    for event in events.iter() {
        if let Some(line) = describe(&event) {
            writeln!(log, "{} {line}", crate::record::run_dir::utc_now())
                .and_then(|_| log.flush())
                .map_err(|e| Error::io(&log_path, e))?;
        }
        if let Some(t) = toy.as_mut() {
            t.add(&event);
        }
        if let Event::RunEnded { status: s } = event {
            status = s;
            break;
        }
    }
    let toy = toy.map(ToyAssembly::outcome);
    if let Some(outcome) = &toy {
        crate::record::hdf5_toy::write(&run_dir.join("run.h5"), loaded, outcome, created, status)?;
        crate::record::summary::write(
            &run_dir.join("summary.json"),
            &crate::record::summary::toy2d(outcome, status),
        )?;
    }
    Ok(Recorded {
        status,
        toy,
        run_dir: run_dir.to_path_buf(),
    })
}

/// One line for the events log; high-rate events are left to run.h5.
fn describe(event: &Event) -> Option<String> {
    Some(match event {
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
        Event::CheckpointWritten {
            dynamics,
            iteration,
            path,
        } => format!(
            "[{dynamics}] checkpoint at iteration {iteration}: {}",
            path.display()
        ),
        Event::Finished { dynamics } => format!("[{dynamics}] finished"),
        Event::Failed { dynamics, error } => format!("[{dynamics}] FAILED: {error}"),
        Event::RunEnded { status } => format!("run ended: {}", status.key()),
        Event::Metrics { .. } | Event::Spectrum { .. } | Event::ReplicateFinished { .. } => {
            return None
        }
    })
}
