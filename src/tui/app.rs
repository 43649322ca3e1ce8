//! Dashboard state: everything the screen shows, fed by events and keys. No terminal
//! here, so every behaviour is unit-testable.

use crate::dynamics::DynamicsKind;
use crate::events::{Event, Metric, ReplicateMeans, ReplicateSummary, RunInfo, RunStatus};
use crate::events::{MetricDef, SpectrumOf};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most points kept per series; older history is thinned by half when exceeded.
pub const MAX_POINTS: usize = 4_000;
/// Log lines kept.
pub const MAX_LOG: usize = 500;

/// (iteration, value) points of one metric.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// Appends (x, y); a point at or before the last x (a resumed trajectory measuring
    /// again from its checkpoint) replaces what it repeats.
    pub fn push(&mut self, x: f64, y: f64) {
        while self.points.last().is_some_and(|p| p.0 >= x) {
            self.points.pop();
        }
        self.points.push((x, y));
        if self.points.len() > MAX_POINTS {
            // Keep every other point: the shape survives, memory stays bounded.
            let thinned = self.points.iter().copied().step_by(2).collect();
            self.points = thinned;
        }
    }

    pub fn last(&self) -> Option<f64> {
        self.points.last().map(|p| p.1)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DynStatus {
    Waiting,
    Running,
    Finished,
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct DynamicsState {
    pub kind: DynamicsKind,
    pub status: DynStatus,
    /// Replicates finished, succeeded (the toy: escaped), diverged.
    pub done: usize,
    pub successes: usize,
    pub diverged: usize,
    pub series: BTreeMap<Metric, Series>,
    /// Latest (iteration, eigenvalues) of H and of the noise covariance.
    pub hessian_spectrum: Option<(u64, Vec<f64>)>,
    pub noise_spectrum: Option<(u64, Vec<f64>)>,
    /// Replicates finished so far (experiments of many short replicates), and their
    /// per-iteration means.
    pub means: ReplicateMeans,
    pub replicates: BTreeMap<usize, Arc<ReplicateSummary>>,
    /// Streamed metrics of every replicate; `series` shows the selected one.
    pub replicate_series: BTreeMap<usize, BTreeMap<Metric, Series>>,
}

impl DynamicsState {
    fn new(kind: DynamicsKind) -> Self {
        DynamicsState {
            kind,
            status: DynStatus::Waiting,
            done: 0,
            successes: 0,
            diverged: 0,
            series: BTreeMap::new(),
            hessian_spectrum: None,
            noise_spectrum: None,
            means: ReplicateMeans::default(),
            replicates: BTreeMap::new(),
            replicate_series: BTreeMap::new(),
        }
    }

    pub fn success_rate(&self) -> Option<f64> {
        (self.done > 0).then(|| self.successes as f64 / self.done as f64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Overview,
    Detail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
}

/// What the loop must do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop the workers cleanly, wait for the record, leave.
    Quit,
    /// Ctrl-C: stop now and mark the run interrupted.
    Interrupt,
}

/// A key, independent of the terminal library (see `input.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Tab,
    BackTab,
    Left,
    Right,
    Esc,
    Enter,
    CtrlC,
}

pub struct App {
    pub info: Option<Arc<RunInfo>>,
    pub dynamics: Vec<DynamicsState>,
    pub selected: usize,
    pub view: View,
    pub overlay: Overlay,
    /// Index into the run's metrics for the detail panel's main chart.
    pub metric_cursor: usize,
    pub show_log: bool,
    pub log: VecDeque<String>,
    /// `Running` until the run's last event.
    pub status: RunStatus,
    pub started: Instant,
    pub ended_after: Option<Duration>,
    /// The replicate whose trajectory the canvas (or the charts, for named
    /// replicates) shows.
    pub selected_seed: usize,
    /// Display updates dropped under backpressure (never the record's).
    pub dropped_updates: u64,
    pub monochrome: bool,
    /// Set when the workers are being stopped after a quit.
    pub stopping: bool,
    /// Following a run directory (`noiselab watch`): nothing to stop, `q` just leaves.
    pub watching: bool,
}

impl App {
    pub fn new(monochrome: bool) -> Self {
        App {
            info: None,
            dynamics: vec![],
            selected: 0,
            view: View::Overview,
            overlay: Overlay::None,
            metric_cursor: 0,
            show_log: false,
            log: VecDeque::new(),
            status: RunStatus::Running,
            started: Instant::now(),
            ended_after: None,
            selected_seed: 0,
            dropped_updates: 0,
            monochrome,
            stopping: false,
            watching: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.status != RunStatus::Running
    }

    pub fn elapsed(&self) -> Duration {
        self.ended_after.unwrap_or_else(|| self.started.elapsed())
    }

    /// The run's metric definitions, in display order.
    pub fn metric_defs(&self) -> &[MetricDef] {
        self.info.as_ref().map_or(&[], |i| &i.metrics)
    }

    pub fn metrics(&self) -> Vec<Metric> {
        self.metric_defs().iter().map(|d| d.metric).collect()
    }

    /// How `metric` is shown, as the run announced it.
    pub fn def(&self, metric: Metric) -> MetricDef {
        match &self.info {
            Some(info) => info.def(metric),
            None => metric.def(),
        }
    }

    pub fn selected_metric(&self) -> Option<Metric> {
        let m = self.metric_defs();
        (!m.is_empty()).then(|| m[self.metric_cursor % m.len()].metric)
    }

    /// What one replicate is called ("seed", "width", …).
    pub fn replicate_noun(&self) -> &str {
        self.info
            .as_ref()
            .map_or("seed", |i| i.replicate_noun.as_str())
    }

    pub fn current(&self) -> Option<&DynamicsState> {
        self.dynamics.get(self.selected)
    }

    /// The name of the selected replicate, when replicates have names.
    pub fn replicate_label(&self) -> Option<&str> {
        self.info
            .as_ref()
            .and_then(|i| i.replicate_labels.get(self.selected_seed))
            .map(String::as_str)
    }

    /// Replicates finished over all dynamics, and the total to do.
    pub fn progress(&self) -> (usize, usize) {
        let per = self.info.as_ref().map_or(0, |i| i.replicates);
        let done = self.dynamics.iter().map(|d| d.done).sum();
        (done, per * self.dynamics.len())
    }

    fn state_mut(&mut self, kind: DynamicsKind) -> Option<&mut DynamicsState> {
        self.dynamics.iter_mut().find(|d| d.kind == kind)
    }

    fn push_log(&mut self, line: String) {
        self.log.push_back(line);
        while self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: Event) {
        if let Some(line) = event.describe() {
            self.push_log(line);
        }
        match event {
            Event::RunStarted(info) => {
                // A resumed run announces itself again: keep what is already shown.
                let same = self
                    .info
                    .as_ref()
                    .is_some_and(|i| i.dynamics == info.dynamics);
                if !same {
                    self.dynamics = info
                        .dynamics
                        .iter()
                        .map(|&k| DynamicsState::new(k))
                        .collect();
                }
                self.status = RunStatus::Running;
                self.ended_after = None;
                self.info = Some(info);
            }
            Event::Metrics {
                dynamics,
                replicate,
                iteration,
                values,
            } => {
                let shown = replicate == self.selected_seed;
                if let Some(d) = self.state_mut(dynamics) {
                    d.status = DynStatus::Running;
                    let all = d.replicate_series.entry(replicate).or_default();
                    for (m, v) in values {
                        all.entry(m).or_default().push(iteration as f64, v);
                        if shown {
                            d.series.entry(m).or_default().push(iteration as f64, v);
                        }
                    }
                }
            }
            Event::Spectrum {
                dynamics,
                iteration,
                of,
                values,
                ..
            } => {
                if let Some(d) = self.state_mut(dynamics) {
                    match of {
                        SpectrumOf::Hessian => d.hessian_spectrum = Some((iteration, values)),
                        SpectrumOf::Noise => d.noise_spectrum = Some((iteration, values)),
                    }
                }
            }
            Event::ReplicateFinished { dynamics, summary } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.status = DynStatus::Running;
                    d.done += 1;
                    d.successes += usize::from(summary.success == Some(true));
                    d.diverged += usize::from(summary.diverged);
                    d.means.add(&summary);
                    d.replicates.insert(summary.replicate, summary);
                    for (m, points) in d.means.means() {
                        d.series.insert(
                            m,
                            Series {
                                points: points.into_iter().map(|(t, v)| (t as f64, v)).collect(),
                            },
                        );
                    }
                }
            }
            Event::TrajectoryFinished { dynamics, .. } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.done += 1;
                }
            }
            Event::Checkpoint { .. } | Event::Log { .. } | Event::Diverged { .. } => {}
            Event::Finished { dynamics } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.status = DynStatus::Finished;
                }
            }
            Event::Failed { dynamics, error } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.status = DynStatus::Failed(error);
                }
            }
            Event::RunEnded { status } => {
                self.status = status;
                self.ended_after = Some(self.started.elapsed());
                self.overlay = match self.overlay {
                    Overlay::ConfirmQuit => Overlay::None,
                    o => o,
                };
            }
        }
    }

    /// Handles one key; returns what the loop must do, if anything.
    pub fn on_key(&mut self, key: Key) -> Option<Action> {
        if key == Key::CtrlC {
            return Some(Action::Interrupt);
        }
        match self.overlay {
            Overlay::ConfirmQuit => {
                match key {
                    Key::Char('y') | Key::Char('Y') | Key::Enter | Key::Char('q') => {
                        return Some(Action::Quit)
                    }
                    _ => self.overlay = Overlay::None,
                }
                return None;
            }
            Overlay::Help => {
                if matches!(key, Key::Esc | Key::Char('?') | Key::Char('q') | Key::Enter) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::None => {}
        }
        let n = self.dynamics.len().max(1);
        match key {
            Key::Tab | Key::Right => self.selected = (self.selected + 1) % n,
            Key::BackTab | Key::Left => self.selected = (self.selected + n - 1) % n,
            Key::Char(c @ '1'..='8') => {
                let i = c as usize - '1' as usize;
                if i < self.dynamics.len() {
                    self.selected = i;
                }
            }
            Key::Char('o') => {
                self.view = match self.view {
                    View::Overview => View::Detail,
                    View::Detail => View::Overview,
                }
            }
            Key::Enter => self.view = View::Detail,
            Key::Esc => self.view = View::Overview,
            Key::Char('m') => {
                self.metric_cursor = (self.metric_cursor + 1) % self.metrics().len().max(1)
            }
            Key::Char('l') => self.show_log = !self.show_log,
            Key::Char('?') => self.overlay = Overlay::Help,
            Key::Char(']') | Key::Char('[') => {
                let seeds = self.info.as_ref().map_or(1, |i| i.replicates.max(1));
                let step = if key == Key::Char(']') { 1 } else { seeds - 1 };
                self.selected_seed = (self.selected_seed + step) % seeds;
                let selected = self.selected_seed;
                for d in &mut self.dynamics {
                    if !d.replicate_series.is_empty() {
                        d.series = d
                            .replicate_series
                            .get(&selected)
                            .cloned()
                            .unwrap_or_default();
                    }
                }
            }
            Key::Char('q') => {
                if self.is_done() || self.watching {
                    return Some(Action::Quit);
                }
                self.overlay = Overlay::ConfirmQuit;
            }
            _ => {}
        }
        None
    }
}

/// Every key the dashboard knows, for the help overlay and the docs.
pub const KEYS: &[(&str, &str)] = &[
    ("Tab / → / ←", "next / previous dynamics"),
    ("1 – 8", "select dynamics by number"),
    ("o", "overview ↔ detail"),
    ("Enter / Esc", "open detail / back to overview"),
    ("m", "cycle the detail panel's metric"),
    ("[ / ]", "previous / next replicate (seed, width)"),
    ("l", "show / hide the log pane"),
    ("?", "this help"),
    (
        "q",
        "quit (asks while running; stops workers, flushes the record)",
    ),
    ("Ctrl-C", "stop now, mark the run interrupted"),
];
