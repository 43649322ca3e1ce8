//! Dashboard state: everything the screen shows, fed by events and keys. No terminal
//! here, so every behaviour is unit-testable.

use crate::dynamics::DynamicsKind;
use crate::events::{by_priority, Health, MetricDef, SpectrumOf};
use crate::events::{Event, Metric, ReplicateMeans, ReplicateSummary, RunInfo, RunStatus};
use crate::progress::{ProgressModel, Snapshot};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
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
    /// The latest health flag (collapsed, diverged) of any of its trajectories, at
    /// which iteration and why; `None` while healthy.
    pub health: Option<(Health, u64, String)>,
    /// Replicates added to `means` since `series` was last rebuilt from them, and when.
    pub means_stale: bool,
    pub means_built: Option<Instant>,
}

/// Shortest interval between two rebuilds of a dynamics' replicate-mean curves.
pub const MEANS_EVERY: Duration = Duration::from_millis(250);

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
            health: None,
            means_stale: false,
            means_built: None,
        }
    }

    /// The curves shown: the per-iteration means over the replicates finished so far.
    fn rebuild_means(&mut self) {
        for (m, points) in self.means.means() {
            self.series.insert(
                m,
                Series {
                    points: points.into_iter().map(|(t, v)| (t as f64, v)).collect(),
                },
            );
        }
        self.means_stale = false;
        self.means_built = Some(Instant::now());
    }

    /// The latest spectrum of either kind, whichever replicate reported it.
    fn set_spectrum(&mut self, of: SpectrumOf, iteration: u64, values: Vec<f64>) {
        match of {
            SpectrumOf::Hessian => self.hessian_spectrum = Some((iteration, values)),
            SpectrumOf::Noise => self.noise_spectrum = Some((iteration, values)),
        }
    }

    pub fn success_rate(&self) -> Option<f64> {
        (self.done > 0).then(|| self.successes as f64 / self.done as f64)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Every dynamics overlaid on one chart per metric (the paper's Fig. 4).
    Compare,
    /// One row per dynamics: progress, health and the chosen metric columns.
    Overview,
    /// The selected dynamics in depth.
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
    /// Write the run's figures as PNG beside it (in the background).
    Figures,
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
    /// What `watch` knows of the run it follows (its directory, its writer, its times).
    pub watch: Option<Arc<Mutex<WatchInfo>>>,
    /// Where every trajectory stands, from the progress events.
    pub progress: ProgressModel,
    /// The workers' clock at the latest progress event, and when it arrived here.
    pub clock_anchor: Option<(f64, Instant)>,
    /// A fixed "now" for rendering (snapshot tests): seconds on the workers' clock.
    pub fixed_now: Option<f64>,
    /// First overview metric column shown (`c` pages through them).
    pub column_offset: usize,
    /// The compare charts show the whole run (`z`) rather than from θ_GD on.
    pub whole_run: bool,
    /// The last line of a background job (the PNG export), for the footer.
    pub notice: Option<String>,
}

/// What `noiselab watch` learns from the journal it follows, beyond its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchInfo {
    /// The directory being watched.
    pub dir: PathBuf,
    /// Wall-clock ms of the latest attempt's start and of the last record.
    pub attempt_started_ms: Option<u64>,
    pub last_record_ms: Option<u64>,
    /// Whether a process holds the journal's writer lock (`None`: not known yet).
    pub writer_alive: Option<bool>,
}

impl App {
    pub fn new(monochrome: bool) -> Self {
        App {
            info: None,
            dynamics: vec![],
            selected: 0,
            view: View::Compare,
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
            watch: None,
            progress: ProgressModel::new(),
            clock_anchor: None,
            fixed_now: None,
            column_offset: 0,
            whole_run: false,
            notice: None,
        }
    }

    /// Whether the run being watched lost its writer before it ended (killed).
    pub fn writer_gone(&self) -> bool {
        !self.is_done()
            && self.watch.as_ref().is_some_and(|w| {
                w.lock()
                    .map(|w| w.writer_alive == Some(false))
                    .unwrap_or(false)
            })
    }

    /// Now, on the workers' clock: the latest progress time plus the time since it
    /// arrived, frozen once the run ended or its writer is gone.
    pub fn progress_now(&self) -> f64 {
        if let Some(t) = self.fixed_now {
            return t;
        }
        match self.clock_anchor {
            Some((t, at)) if !self.is_done() && !self.writer_gone() => {
                t + at.elapsed().as_secs_f64()
            }
            Some((t, _)) => t,
            None => 0.0,
        }
    }

    /// Where the run stands now.
    pub fn snapshot(&self) -> Snapshot {
        self.progress.snapshot(self.progress_now())
    }

    pub fn is_done(&self) -> bool {
        self.status != RunStatus::Running
    }

    /// The run's own elapsed time (this attempt): the dashboard's clock for a live run;
    /// for `watch`, from the journal's record times (frozen when the writer is gone).
    pub fn elapsed(&self) -> Duration {
        if let Some(t) = self.fixed_now {
            return Duration::from_secs_f64(t.max(0.0));
        }
        if let Some(w) = self
            .watch
            .as_ref()
            .and_then(|w| w.lock().ok().map(|w| w.clone()))
        {
            let end = if self.is_done() || w.writer_alive == Some(false) {
                w.last_record_ms
            } else {
                Some(crate::record::journal::now_ms())
            };
            return match (w.attempt_started_ms, end) {
                (Some(a), Some(b)) => Duration::from_millis(b.saturating_sub(a)),
                _ => Duration::ZERO,
            };
        }
        self.ended_after.unwrap_or_else(|| self.started.elapsed())
    }

    /// The run's metric definitions, in display order.
    pub fn metric_defs(&self) -> &[MetricDef] {
        self.info.as_ref().map_or(&[], |i| &i.metrics)
    }

    /// The run's metrics in the dashboard's order: the mission's first (`by_priority`).
    pub fn metrics(&self) -> Vec<Metric> {
        let run: Vec<Metric> = self.metric_defs().iter().map(|d| d.metric).collect();
        by_priority(&run)
    }

    /// How `metric` is shown, as the run announced it.
    pub fn def(&self, metric: Metric) -> MetricDef {
        match &self.info {
            Some(info) => info.def(metric),
            None => metric.def(),
        }
    }

    pub fn selected_metric(&self) -> Option<Metric> {
        let m = self.metrics();
        (!m.is_empty()).then(|| m[self.metric_cursor % m.len()])
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

    /// Shows `line` in the footer and keeps it in the log.
    pub fn push_notice(&mut self, line: String) {
        self.push_log(line.clone());
        self.notice = Some(line);
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
        self.progress.apply(&event);
        match event {
            Event::Progress(p) => {
                self.clock_anchor = Some((p.elapsed_s, Instant::now()));
                if p.phase.is_none() {
                    if let Some(d) = self.state_mut(p.dynamics) {
                        if d.status == DynStatus::Waiting {
                            d.status = DynStatus::Running;
                        }
                    }
                }
            }
            Event::Health {
                dynamics,
                iteration,
                health,
                detail,
                ..
            } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.health = (health != Health::Healthy).then_some((health, iteration, detail));
                }
            }
            Event::Diverged {
                dynamics,
                iteration,
                reason,
                ..
            } => {
                let single = one_trajectory(self.info.as_deref());
                if let Some(d) = self.state_mut(dynamics) {
                    if single {
                        d.health = Some((Health::Diverged, iteration, reason));
                    }
                }
            }
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
                    d.set_spectrum(of, iteration, values);
                }
            }
            Event::ReplicateFinished { dynamics, summary } => {
                let total = self.info.as_ref().map_or(usize::MAX, |i| i.replicates);
                if let Some(d) = self.state_mut(dynamics) {
                    for sp in &summary.spectra {
                        d.set_spectrum(sp.of, sp.iteration, sp.values.clone());
                    }
                    d.status = DynStatus::Running;
                    d.done += 1;
                    d.successes += usize::from(summary.success == Some(true));
                    d.diverged += usize::from(summary.diverged);
                    d.means.add(&summary);
                    d.replicates.insert(summary.replicate, summary);
                    d.means_stale = true;
                    // Rebuilding every curve per replicate (thousands a second for the
                    // toy) would cost the workers CPU: at most every MEANS_EVERY, and
                    // at once when the dynamics' last replicate is in.
                    if d.done >= total || d.means_built.is_none_or(|t| t.elapsed() >= MEANS_EVERY) {
                        d.rebuild_means();
                    }
                }
            }
            Event::TrajectoryFinished { dynamics, .. } => {
                if let Some(d) = self.state_mut(dynamics) {
                    d.done += 1;
                }
            }
            Event::Checkpoint { .. } | Event::Log { .. } => {}
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
                for d in &mut self.dynamics {
                    if d.means_stale {
                        d.rebuild_means();
                    }
                }
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
            Key::Char('v') => self.view = View::Compare,
            Key::Char('o') => self.view = View::Overview,
            Key::Enter | Key::Char('d') => self.view = View::Detail,
            Key::Esc => self.view = View::Compare,
            Key::Char('m') => {
                self.metric_cursor = (self.metric_cursor + 1) % self.metrics().len().max(1)
            }
            Key::Char('M') => {
                let n = self.metrics().len().max(1);
                self.metric_cursor = (self.metric_cursor + n - 1) % n
            }
            Key::Char('c') => self.column_offset += 1,
            Key::Char('z') => self.whole_run = !self.whole_run,
            Key::Char('p') => return Some(Action::Figures),
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

/// Diverged is a flag of the dynamics when its trajectories are few and named (a toy
/// dynamics of 1,000 seeds counts its diverged seeds instead).
fn one_trajectory(info: Option<&RunInfo>) -> bool {
    info.is_none_or(|i| i.replicates <= 1 || !i.replicate_labels.is_empty())
}

/// Every key the dashboard knows, for the help overlay and the docs.
pub const KEYS: &[(&str, &str)] = &[
    ("v", "compare: every dynamics on one chart (Fig. 4)"),
    ("o", "overview: one row per dynamics"),
    ("Enter / d", "detail of the selected dynamics"),
    ("Esc", "back to compare"),
    ("Tab / → / ←", "next / previous dynamics"),
    ("1 – 8", "select dynamics by number"),
    ("m / M", "next / previous metric (compare, detail)"),
    ("c", "overview: next page of metric columns"),
    ("z", "compare: from θ_GD on ↔ the whole run"),
    ("[ / ]", "previous / next replicate (seed, width)"),
    ("p", "write the run's figures as PNG beside it"),
    ("l", "show / hide the log pane"),
    ("?", "this help"),
    (
        "q",
        "quit (asks while running; stops workers, flushes the record)",
    ),
    ("Ctrl-C", "stop now, mark the run interrupted"),
];
