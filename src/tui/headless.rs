//! Plain progress lines when there is no terminal (or with `--headless`): one line per
//! dynamics per reporting step, plus lifecycle lines.

use crate::dynamics::DynamicsKind;
use crate::events::{DisplayReceiver, Event, RunInfo, RunStatus};
use crate::progress::ProgressModel;
use crate::tui::ui::fmt_value;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Formats events as progress lines. Toy replicates are reported at every 10 % of a
/// dynamics' seeds; network metrics as they arrive (the experiment emits them at its
/// reporting schedule); where the run stands (phase, per-dynamics iteration, rate, ETA)
/// every `PROGRESS_EVERY_S` of the workers' clock and when a phase starts.
pub struct Headless {
    info: Option<std::sync::Arc<RunInfo>>,
    replicates: usize,
    labels: Vec<String>,
    done: HashMap<DynamicsKind, (usize, usize)>,
    started: Instant,
    progress: ProgressModel,
    /// Workers' time of the last progress line, and the phase it showed.
    last_line: Option<(f64, Option<String>)>,
}

/// Seconds between two progress lines.
pub const PROGRESS_EVERY_S: f64 = 30.0;

impl Default for Headless {
    fn default() -> Self {
        Headless {
            info: None,
            replicates: 0,
            labels: vec![],
            done: HashMap::new(),
            started: Instant::now(),
            progress: ProgressModel::new(),
            last_line: None,
        }
    }
}

impl Headless {
    /// The line(s) an event prints, if any.
    pub fn line(&mut self, event: &Event) -> Option<String> {
        let t = self.started.elapsed().as_secs_f64();
        self.progress.apply(event);
        match event {
            Event::RunStarted(info) => {
                self.replicates = info.replicates;
                self.labels = info.replicate_labels.clone();
                self.info = Some(info.clone());
                Some(format!(
                    "{}: {} dynamics × {} run(s) × {} iterations, D = {}, {} on {} threads → {}",
                    info.experiment,
                    info.dynamics.len(),
                    info.replicates,
                    info.iterations,
                    info.dim,
                    info.device,
                    info.threads,
                    info.run_dir.display()
                ))
            }
            Event::ReplicateFinished { dynamics, summary } => {
                let entry = self.done.entry(*dynamics).or_default();
                entry.0 += 1;
                entry.1 += usize::from(summary.success == Some(true));
                let (done, ok) = *entry;
                let total = self.replicates.max(1);
                let step = (total / 10).max(1);
                let noun = self
                    .info
                    .as_ref()
                    .map_or("seed", |i| i.replicate_noun.as_str());
                (done % step == 0 || done == total).then(|| {
                    format!(
                        "[{t:7.1}s] {:<12} {done}/{total} {noun}s, escaped {ok} ({:.3})",
                        dynamics.key(),
                        ok as f64 / done as f64
                    )
                })
            }
            Event::Metrics {
                dynamics,
                replicate,
                iteration,
                values,
            } => Some(format!(
                "[{t:7.1}s] {:<12}{} iter {iteration}: {}",
                dynamics.key(),
                self.labels
                    .get(*replicate)
                    .map_or(String::new(), |l| format!(" {l}")),
                values
                    .iter()
                    .map(|(m, v)| {
                        let label = self
                            .info
                            .as_ref()
                            .map_or_else(|| m.label(), |i| i.def(*m).label);
                        format!("{label} {}", fmt_value(*v))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Event::Spectrum { .. } => None,
            Event::Progress(p) => {
                let snap = self.progress.snapshot(p.elapsed_s);
                let phase = snap.phase.as_ref().map(|p| p.0.clone());
                let due = match &self.last_line {
                    None => true,
                    Some((at, shown)) => p.elapsed_s - at >= PROGRESS_EVERY_S || *shown != phase,
                };
                if !due {
                    return None;
                }
                self.last_line = Some((p.elapsed_s, phase));
                let label = self
                    .labels
                    .first()
                    .filter(|_| self.labels.len() == 1)
                    .cloned()
                    .unwrap_or_else(|| "trajectories".into());
                Some(format!(
                    "[{t:7.1}s] {}",
                    crate::progress::summary(&snap, &label)
                ))
            }
            other => other.describe().map(|line| format!("[{t:7.1}s] {line}")),
        }
    }
}

/// What ends the printing besides the run's end.
pub enum Leave<'a> {
    /// Our own run: a signal calls `stop` once, and reporting goes on until the
    /// workers are done.
    Running { stop: &'a dyn Fn() },
    /// `watch`: a signal leaves at once (the run is not ours), and so does a writer
    /// that is gone (nothing more will come).
    Watching { writer_gone: &'a dyn Fn() -> bool },
}

/// Prints progress to stderr until the run ends (or, watching, until a signal or the
/// writer's end). Returns the run's status (`Running` when it left before the end).
pub fn run(display: &DisplayReceiver, interrupted: &AtomicBool, leave: &Leave) -> RunStatus {
    let mut printer = Headless::default();
    let mut err = std::io::stderr().lock();
    let mut stopping = false;
    loop {
        if interrupted.load(Ordering::Relaxed) && !stopping {
            match leave {
                Leave::Running { stop } => {
                    stopping = true;
                    let _ = writeln!(
                        err,
                        "interrupted: stopping the workers and flushing the record …"
                    );
                    stop();
                }
                Leave::Watching { .. } => return RunStatus::Running,
            }
        }
        if let Leave::Watching { writer_gone } = leave {
            // Everything already in the channels is printed first.
            if writer_gone() && display.lifecycle.is_empty() && display.updates.is_empty() {
                return RunStatus::Running;
            }
        }
        crossbeam_channel::select! {
            recv(display.lifecycle) -> e => match e {
                Ok(e) => {
                    let end = if let Event::RunEnded { status } = &e { Some(*status) } else { None };
                    if let Some(line) = printer.line(&e) {
                        let _ = writeln!(err, "{line}");
                    }
                    if let Some(status) = end {
                        return status;
                    }
                }
                Err(_) => return RunStatus::Interrupted,
            },
            recv(display.updates) -> e => if let Ok(e) = e {
                if let Some(line) = printer.line(&e) {
                    let _ = writeln!(err, "{line}");
                }
            },
            default(Duration::from_millis(200)) => {}
        }
    }
}
