//! Experiment protocols (SPEC §4), one file each, and what their workers share.

pub mod classification;
pub mod one_hidden;
pub mod toy2d;

use crate::config::{Cifar10, ExperimentKind, FashionMnist};
use crate::dynamics::DynamicsKind;
use crate::events::{Event, EventSender};
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Checks what an experiment reads from disk before a run starts, so missing or
/// corrupt data is an error naming the file, not a failed run.
pub fn preflight(config: &crate::config::Config) -> Result<()> {
    match config.experiment {
        ExperimentKind::FashionMnist => classification::preflight::<FashionMnist>(config),
        ExperimentKind::Cifar10 => classification::preflight::<Cifar10>(config),
        ExperimentKind::Toy2d | ExperimentKind::OneHidden => Ok(()),
    }
}

/// At most `n` jobs compute at once, handed out in turn (FIFO), so every worker
/// advances together whatever the number of cores.
pub struct Tokens {
    give: Sender<()>,
    take: Receiver<()>,
}

impl Tokens {
    pub fn new(n: usize) -> Self {
        let (give, take) = crossbeam_channel::bounded(n.max(1));
        for _ in 0..n.max(1) {
            give.send(()).expect("the pool holds exactly n tokens");
        }
        Tokens { give, take }
    }

    /// Runs `job` holding a token.
    pub fn run<T>(&self, job: impl FnOnce() -> T) -> T {
        self.take.recv().expect("the pool outlives its jobs");
        let out = job();
        self.give.send(()).expect("the pool outlives its jobs");
        out
    }
}

/// Ends one trajectory: a divergence is reported as such, otherwise `measure_final`
/// publishes the measurements at its last θ; then the trajectory is marked finished.
pub fn end_trajectory(
    events: &EventSender,
    kind: DynamicsKind,
    replicate: usize,
    end: &crate::engine::Trajectory,
    measure_final: impl FnOnce(&[f64]) -> Result<()>,
) -> Result<()> {
    match &end.diverged {
        Some(d) => events.send(Event::Diverged {
            dynamics: kind,
            replicate,
            iteration: d.iteration as u64,
            reason: d.reason.clone(),
        }),
        None => measure_final(&end.theta)?,
    }
    events.send(Event::TrajectoryFinished {
        dynamics: kind,
        replicate,
    });
    Ok(())
}

/// Publishes how one dynamics' worker ended: finished, stopped on request, or failed
/// (counted in `failed`; the other dynamics go on).
pub fn report_end(
    events: &EventSender,
    kind: DynamicsKind,
    result: Result<()>,
    stop: &AtomicBool,
    failed: &AtomicUsize,
) {
    match result {
        Ok(()) | Err(Error::Stopped) if stop.load(Ordering::Relaxed) => {
            events.log(Some(kind), "stopped")
        }
        Ok(()) => events.send(Event::Finished { dynamics: kind }),
        Err(e) => {
            failed.fetch_add(1, Ordering::Relaxed);
            events.send(Event::Failed {
                dynamics: kind,
                error: e.to_string(),
            })
        }
    }
}
