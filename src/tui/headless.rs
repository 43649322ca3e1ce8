//! Plain progress lines when there is no terminal (or with `--headless`): one line per
//! dynamics per reporting step, plus lifecycle lines.

use crate::dynamics::DynamicsKind;
use crate::events::{DisplayReceiver, Event, RunInfo, RunStatus};
use crate::tui::ui::fmt_value;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Formats events as progress lines. Toy replicates are reported at every 10 % of a
/// dynamics' seeds; network metrics as they arrive (the experiment emits them at its
/// reporting schedule).
pub struct Headless {
    info: Option<std::sync::Arc<RunInfo>>,
    replicates: usize,
    labels: Vec<String>,
    done: HashMap<DynamicsKind, (usize, usize)>,
    started: Instant,
}

impl Default for Headless {
    fn default() -> Self {
        Headless {
            info: None,
            replicates: 0,
            labels: vec![],
            done: HashMap::new(),
            started: Instant::now(),
        }
    }
}

impl Headless {
    /// The line(s) an event prints, if any.
    pub fn line(&mut self, event: &Event) -> Option<String> {
        let t = self.started.elapsed().as_secs_f64();
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
            other => other.describe().map(|line| format!("[{t:7.1}s] {line}")),
        }
    }
}

/// Prints progress to stderr until the run ends. When `interrupted` becomes true (a
/// signal), calls `stop` once and keeps reporting until the workers are done.
pub fn run(display: &DisplayReceiver, interrupted: &AtomicBool, stop: &dyn Fn()) -> RunStatus {
    let mut printer = Headless::default();
    let mut err = std::io::stderr().lock();
    let mut stopping = false;
    loop {
        if interrupted.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            let _ = writeln!(
                err,
                "interrupted: stopping the workers and flushing the record …"
            );
            stop();
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
