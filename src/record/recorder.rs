//! The recorder: the consumer that receives every event. Each event is appended to the
//! journal as it arrives; lifecycle events are handed to the OS at once (a `kill -9`
//! cannot lose them); a checkpoint syncs the journal to disk (everything measured before
//! it is then durable), then replaces the trajectory's checkpoint file
//! (`record/checkpoint.rs`); metrics and spectra are handed over at least every
//! `record.flush_seconds`. When the run ends (finished, interrupted or failed) it writes
//! `run.h5` and `summary.json` atomically.

use super::journal::{self, Body, Header};
use super::state::RecordState;
use super::{checkpoint, h5, run_dir, summary};
use crate::config::LoadedConfig;
use crate::events::{Event, RunStatus};
use crate::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the recorder leaves for the command line to print.
pub struct Recorded {
    pub status: RunStatus,
    /// The experiment's result table, with its heading.
    pub results: String,
    pub run_dir: PathBuf,
}

/// A journal ready to be written on, and the state it already holds.
pub struct Setup {
    pub run_dir: PathBuf,
    pub flush_interval: Duration,
    pub state: RecordState,
    pub journal: journal::Writer,
}

/// A new run: creates `journal.bin` with its header.
pub fn new_run(loaded: &LoadedConfig, run_dir: &Path, created: &str) -> Result<Setup> {
    let header = Header {
        noiselab_version: env!("CARGO_PKG_VERSION").to_string(),
        git_describe: option_env!("NOISELAB_GIT_DESCRIBE").map(str::to_string),
        config_toml: loaded.resolved_toml.clone(),
        config_source: loaded.source.clone(),
        seed: loaded.config.seed,
        created: created.to_string(),
        device: loaded.config.device.to_string(),
    };
    let mut journal = journal::Writer::create(&run_dir.join(journal::FILE_NAME))?;
    journal.write(Body::Header(header.clone()))?;
    journal.sync()?;
    Ok(Setup {
        run_dir: run_dir.to_path_buf(),
        flush_interval: loaded.config.record.flush_interval(),
        state: RecordState::new(header, loaded.config.clone()),
        journal,
    })
}

/// An existing run, to continue: opens its journal for appending (cutting off a torn
/// tail) and marks the resumption.
pub fn resume(run_dir: &Path) -> Result<Setup> {
    let path = run_dir.join(journal::FILE_NAME);
    let (mut journal, contents) = journal::Writer::append(&path)?;
    let state = RecordState::from_journal(&contents, &path)?;
    journal.write(Body::Resumed {
        at: run_dir::utc_now(),
    })?;
    journal.sync()?;
    Ok(Setup {
        run_dir: run_dir.to_path_buf(),
        flush_interval: state.config.record.flush_interval(),
        state,
        journal,
    })
}

pub fn spawn(setup: Setup, events: Receiver<Event>) -> JoinHandle<Result<Recorded>> {
    std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || record(setup, events))
        .expect("spawning the recorder thread")
}

/// Events that must reach the OS as soon as they arrive.
fn urgent(event: &Event) -> bool {
    !matches!(event, Event::Metrics { .. } | Event::Spectrum { .. })
}

fn record(setup: Setup, events: Receiver<Event>) -> Result<Recorded> {
    let Setup {
        run_dir,
        flush_interval,
        mut state,
        mut journal,
    } = setup;
    let log_path = run_dir.join("events.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let mut last_sync = Instant::now();
    let mut ended = false;
    // Progress reaches the journal at most every few seconds per trajectory.
    let mut thinning = crate::progress::Thinning::default();
    loop {
        let wait = flush_interval.saturating_sub(last_sync.elapsed());
        match events.recv_timeout(wait) {
            Ok(event) => {
                if let Some(line) = event.describe() {
                    writeln!(log, "{} {line}", run_dir::utc_now())
                        .map_err(|e| Error::io(&log_path, e))?;
                }
                state.fold_event(&event);
                let end = matches!(event, Event::RunEnded { .. });
                let flush = urgent(&event);
                match event {
                    Event::Checkpoint {
                        dynamics,
                        replicate,
                        checkpoint,
                    } => {
                        journal.write(Body::Checkpoint {
                            dynamics,
                            replicate,
                            iteration: checkpoint.iteration as u64,
                        })?;
                        journal.sync()?;
                        checkpoint::write(&run_dir, dynamics, replicate, &checkpoint)?;
                    }
                    Event::Progress(p) if !thinning.keep(&p) => {}
                    other => {
                        journal.write(Body::Event(other))?;
                        if flush {
                            journal.flush()?;
                        }
                    }
                }
                if end {
                    ended = true;
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Every sender gone without a RunEnded: the run was cut short.
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_sync.elapsed() >= flush_interval {
            journal.sync()?;
            last_sync = Instant::now();
        }
    }
    journal.sync()?;
    if !ended {
        state.status = RunStatus::Interrupted;
    }
    let status = state.status;
    finalize(&run_dir, &state, status)?;
    Ok(Recorded {
        status,
        results: state.results_text(status),
        run_dir,
    })
}

/// Writes `run.h5` and `summary.json` from `state` (atomically, each).
pub fn finalize(run_dir: &Path, state: &RecordState, status: RunStatus) -> Result<()> {
    let mut summary = state.config.experiment.experiment().summary(state, status);
    state.add_health(&mut summary);
    h5::write(&run_dir.join(h5::FILE_NAME), state, status, &summary)?;
    summary::write(&run_dir.join("summary.json"), &summary)?;
    Ok(())
}

/// Rebuilds `run.h5` and `summary.json` from the journal (after a crash). A run whose
/// journal has no end record is marked interrupted. Returns the state and that status.
pub fn repair(run_dir: &Path) -> Result<(RecordState, RunStatus)> {
    let path = run_dir.join(journal::FILE_NAME);
    let contents = journal::read(&path)?;
    let state = RecordState::from_journal(&contents, &path)?;
    let status = match state.status {
        RunStatus::Running => RunStatus::Interrupted,
        s => s,
    };
    finalize(run_dir, &state, status)?;
    Ok((state, status))
}
