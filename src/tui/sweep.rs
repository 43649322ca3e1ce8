//! `noiselab watch SWEEP`: the dashboard over a whole sweep.
//!
//! A table of the points (directory, seed, grid settings, state, progress) under the
//! counts per state, and a chart of the selected metric: per dynamics, the mean over
//! the finished and running points of one settings group, with its 95 % Student-t
//! band, aligned on iteration. Enter opens a point in the single-run dashboard (the
//! caller's function); leaving it comes back here.
//!
//! State (`SweepView`), input (`spawn_input`, `SweepView::on_key`) and rendering
//! (`draw`) are separate, as in the run dashboard. The records are read on a reader
//! thread (`Reader`, every `READ_EVERY`) and arrive as `Snapshot`s over a channel, so
//! the render loop never waits on the disk. `--headless` prints plain lines instead.

use super::app::Key;
use super::input::map_key;
use super::ui::{self, Theme};
use crate::events::{by_priority, Metric, MetricDef};
use crate::experiment::Outline;
use crate::numbers::fit;
use crate::record::h5::{self, H5Run};
use crate::record::journal;
use crate::record::view;
use crate::stats::{Summary, LEVEL};
use crate::sweep::manifest::{Manifest, PointState};
use crate::sweep::{self, PointStatus};
use crate::{Error, Result};
use crossbeam_channel::{never, Receiver, Sender};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Wrap,
};
use ratatui::{Frame, Terminal};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the reader thread reads the sweep's records.
pub const READ_EVERY: Duration = Duration::from_secs(2);
/// How often `--headless` prints where the sweep stands.
pub const PRINT_EVERY: Duration = Duration::from_secs(10);
/// With points still pending and none running or queued, how long to wait for one to
/// start (a local sweep starting its next point, a point loading its data before its
/// record exists) before the sweep counts as done.
pub const IDLE_GRACE: Duration = Duration::from_secs(10);
/// Most iterations a band is computed at (evenly chosen among those with ≥ 2 points).
pub const MAX_BAND_POINTS: usize = 600;
/// Width of the legend column.
const LEGEND: u16 = 34;

// ---------------------------------------------------------------------------------
// The band: mean ± 95 % t interval over points, per iteration.

/// The across-point statistics of one dynamics' metric at one iteration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandPoint {
    pub iteration: u64,
    /// Points with a (finite) value there.
    pub n: usize,
    pub mean: f64,
    /// mean ∓ t(0.975, n − 1)·sd/√n (`stats::Summary`).
    pub low: f64,
    pub high: f64,
}

/// Per iteration where at least two of `runs` (each: iterations, values; NaN = not
/// measured there) have a finite value, their mean and 95 % t interval
/// (`Summary::of(values, LEVEL)`). At most `max_points` iterations, evenly chosen
/// (the first and the last always among them).
pub fn band(runs: &[(&[u64], &[f64])], max_points: usize) -> Vec<BandPoint> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (iterations, values) in runs {
        for (&t, &v) in iterations.iter().zip(values.iter()) {
            if v.is_finite() {
                at.entry(t).or_default().push(v);
            }
        }
    }
    let kept: Vec<(u64, Vec<f64>)> = at.into_iter().filter(|(_, v)| v.len() >= 2).collect();
    thin_indices(kept.len(), max_points)
        .into_iter()
        .filter_map(|i| {
            let (t, values) = &kept[i];
            let s = Summary::of(values, LEVEL)?;
            Some(BandPoint {
                iteration: *t,
                n: s.n,
                mean: s.mean,
                low: s.ci_low,
                high: s.ci_high,
            })
        })
        .collect()
}

/// `max` indices evenly spread over `0..len` (every one when `len <= max`).
fn thin_indices(len: usize, max: usize) -> Vec<usize> {
    let max = max.max(2);
    if len <= max {
        return (0..len).collect();
    }
    (0..max).map(|k| k * (len - 1) / (max - 1)).collect()
}

// ---------------------------------------------------------------------------------
// Reading the sweep (the reader thread).

/// What the reader thread read of the sweep at one time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub manifest: Arc<Manifest>,
    /// Every point's state, in the manifest's order.
    pub points: Vec<PointStatus>,
    /// Things to know (the queue could not be asked, a record did not read).
    pub notes: Vec<String>,
    /// The records of the finished and running points, by point index.
    pub runs: BTreeMap<usize, Arc<PointRecord>>,
    pub read_at: Instant,
}

/// What the chart needs of a point's record.
#[derive(Clone, Debug, PartialEq)]
pub struct PointRecord {
    /// The file the numbers were read from: `run.h5` of a run that has ended (it is
    /// small beside the journal of a toy run of many seeds), else `journal.bin`.
    pub source: PathBuf,
    pub run: H5Run,
    pub outline: Option<Outline>,
}

/// A point's record as last read, and the journal's size and time it was read at.
struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    state: PointState,
    progress: Option<String>,
    problem: Option<String>,
    record: Option<Arc<PointRecord>>,
}

/// Reads a sweep's states and records: the states `sweep::status` gives, from one read
/// of each record, and a record whose journal has not changed since the last read is
/// not read again (an ended point is read once, from its `run.h5`).
pub struct Reader {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    cache: HashMap<usize, Cached>,
}

impl Reader {
    pub fn new(dir: &Path, manifest: Manifest) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            manifest: Arc::new(manifest),
            cache: HashMap::new(),
        }
    }

    pub fn read(&mut self) -> Snapshot {
        let mut notes = vec![];
        // The manifest changes when a sweep is (re)submitted to Slurm.
        match Manifest::load(&self.dir) {
            Ok(m) if m != *self.manifest => self.manifest = Arc::new(m),
            Ok(_) => {}
            Err(e) => notes.push(format!("{e}; showing the points it had")),
        }
        let jobs: Vec<String> = self
            .manifest
            .submissions
            .iter()
            .map(|s| s.job_id.clone())
            .collect();
        let queue = sweep::slurm::queue(&jobs).unwrap_or_else(|why| {
            notes.push(format!(
                "Slurm's queue could not be asked ({why}): states are from the records alone"
            ));
            Default::default()
        });
        let mut points = vec![];
        let mut runs = BTreeMap::new();
        for point in &self.manifest.points {
            let run_dir = point.run_dir(&self.dir);
            let journal_path = run_dir.join(journal::FILE_NAME);
            let meta = std::fs::metadata(&journal_path).ok();
            let c = match meta {
                // No record yet, as `sweep::status` has it.
                None => {
                    self.cache.remove(&point.index);
                    Cached {
                        len: 0,
                        modified: None,
                        state: PointState::Pending,
                        progress: None,
                        problem: None,
                        record: None,
                    }
                }
                Some(meta) => {
                    let (len, modified) = (meta.len(), meta.modified().ok());
                    let cached = self
                        .cache
                        .remove(&point.index)
                        .filter(|c| c.len == len && c.modified == modified);
                    let mut c = cached.unwrap_or_else(|| read_point(&run_dir, len, modified));
                    // An unchanged record of a run without an end: is its writer alive?
                    if matches!(c.state, PointState::Running | PointState::Killed) {
                        c.state = match journal::writer_alive(&journal_path) {
                            Some(false) => PointState::Killed,
                            _ => PointState::Running,
                        };
                    }
                    c
                }
            };
            if let Some(v) = c
                .record
                .as_ref()
                .filter(|_| matches!(c.state, PointState::Finished | PointState::Running))
            {
                runs.insert(point.index, v.clone());
            }
            points.push(PointStatus {
                index: point.index,
                state: c.state,
                queue: queue.get(&point.index).cloned(),
                progress: c
                    .progress
                    .clone()
                    .filter(|_| c.state == PointState::Running),
                problem: c.problem.clone(),
            });
            if c.modified.is_some() {
                self.cache.insert(point.index, c);
            }
        }
        Snapshot {
            manifest: self.manifest.clone(),
            points,
            notes,
            runs,
            read_at: Instant::now(),
        }
    }
}

/// One point's record: its state (as `sweep::manifest::point_state` gives it; the
/// writer's life is checked by the caller) and what the chart needs. A run whose
/// `run.h5` was written after its journal's last record has ended: that file is read;
/// otherwise (running, or a `run.h5` that does not read) the journal (`view::open`).
fn read_point(run_dir: &Path, len: u64, modified: Option<SystemTime>) -> Cached {
    let mut c = Cached {
        len,
        modified,
        state: PointState::Failed,
        progress: None,
        problem: None,
        record: None,
    };
    let state_of = |run: &H5Run| match run.attrs.get("status").map(String::as_str) {
        Some("finished") => PointState::Finished,
        Some("interrupted") => PointState::Interrupted,
        Some("failed") => PointState::Failed,
        _ => PointState::Running,
    };
    let h5_path = run_dir.join(h5::FILE_NAME);
    let h5_current = std::fs::metadata(&h5_path)
        .ok()
        .and_then(|m| m.modified().ok())
        .zip(modified)
        .is_some_and(|(h5, journal)| h5 >= journal);
    let ended = h5_current
        .then(|| h5::read(&h5_path).ok())
        .flatten()
        .filter(|run| state_of(run) != PointState::Running);
    let (source, run) = match ended {
        Some(run) => (h5_path, run),
        None => match view::open(run_dir) {
            Ok(v) => {
                // Experiments of many short replicates (the toy) count finished replicates.
                c.progress = v
                    .progress
                    .or_else(|| replicates_done(&v.run, v.outline.as_ref()));
                (v.source, v.run)
            }
            Err(e) => {
                c.problem = Some(e.to_string());
                return c;
            }
        },
    };
    c.state = state_of(&run);
    c.record = Some(Arc::new(in_config_order(source, run)));
    c
}

/// The record with its outline, its dynamics in the config's order (the run
/// dashboard's numbers and colours; `run.h5` lists them by name).
fn in_config_order(source: PathBuf, mut run: H5Run) -> PointRecord {
    let config = run
        .attrs
        .get("config")
        .and_then(|text| crate::config::parse(text, "record", &[]).ok())
        .map(|l| l.config);
    let outline = config
        .as_ref()
        .map(|c| c.experiment.experiment().outline(c));
    if let Some(c) = &config {
        let position = |key: &str| {
            crate::dynamics::DynamicsKind::from_key(key)
                .and_then(|k| c.dynamics.iter().position(|&d| d == k))
                .unwrap_or(usize::MAX)
        };
        run.dynamics.sort_by_key(|d| {
            (
                position(&d.key),
                d.replicate.as_ref().map_or(0, |(r, _)| *r),
            )
        });
    }
    PointRecord {
        source,
        run,
        outline,
    }
}

/// "seeds 1200/8000 (15%)", for a run whose replicates finish as a whole.
fn replicates_done(run: &H5Run, outline: Option<&Outline>) -> Option<String> {
    let outline = outline?;
    let done: u64 = run.dynamics.iter().filter_map(|d| d.toy).map(|t| t.1).sum();
    let total = (outline.replicates * run.dynamics.len()) as u64;
    (total > 0 && run.dynamics.iter().any(|d| d.toy.is_some())).then(|| {
        format!(
            "{}s {done}/{total} ({}%)",
            outline.replicate_noun,
            100 * done / total
        )
    })
}

/// Reads the sweep on its own thread, every `every` or, when a read takes long (large
/// records of running points), pausing twice its time: the reader takes at most a
/// third of a core from the runs. The channel holds one snapshot: a reader nobody takes
/// from (the single-run dashboard is open) waits instead of reading. It ends when the
/// receiver is dropped.
pub fn spawn_reader(mut reader: Reader, every: Duration) -> Receiver<Snapshot> {
    let (tx, rx): (Sender<Snapshot>, Receiver<Snapshot>) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("sweep-reader".into())
        .spawn(move || loop {
            let start = Instant::now();
            let snap = reader.read();
            let took = start.elapsed();
            if tx.send(snap).is_err() {
                return;
            }
            std::thread::sleep(every.max(2 * took));
        })
        .expect("spawning the sweep reader thread");
    rx
}

/// The states counted in the order they are shown.
const STATES: [&str; 7] = [
    "running",
    "queued",
    "pending",
    "finished",
    "interrupted",
    "killed",
    "failed",
];

/// Points per state (`PointStatus::label`), in `STATES` order, those with none left out.
pub fn counts(points: &[PointStatus]) -> Vec<(&'static str, usize)> {
    STATES
        .iter()
        .map(|&s| (s, points.iter().filter(|p| p.label() == s).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// "3 finished, 1 running".
pub fn counts_text(points: &[PointStatus]) -> String {
    let c = counts(points);
    if c.is_empty() {
        return "no points".into();
    }
    c.iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the sweep has come to rest: no point running or queued, and either none
/// pending or none started for `IDLE_GRACE`.
#[derive(Clone, Debug, Default)]
pub struct Settle {
    idle_since: Option<Instant>,
}

impl Settle {
    pub fn update(&mut self, points: &[PointStatus]) -> bool {
        let active = points
            .iter()
            .any(|p| matches!(p.label(), "running" | "queued"));
        if active {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        !points.iter().any(|p| p.label() == "pending") || since.elapsed() >= IDLE_GRACE
    }
}

// ---------------------------------------------------------------------------------
// State.

/// A key of the sweep view: the run dashboard's keys, and the arrows that move
/// through the points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepKey {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Key(Key),
}

/// What the input thread reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepInput {
    Key(SweepKey),
    Resize,
}

/// What the loop must do after a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    Interrupt,
    /// Open this point's run directory in the single-run dashboard.
    Open(PathBuf),
}

/// Why the loop returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Quit,
    Interrupted,
    /// Every point has ended and `--exit-when-done` was given.
    Done,
    Open(PathBuf),
}

/// The points of one combination of grid values.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// `key=value …`, or "all points" without a grid.
    pub label: String,
    pub points: Vec<usize>,
}

/// One dynamics' band in the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// `H5Dynamics::id` (unique within a run).
    pub id: String,
    pub label: String,
    pub band: Vec<BandPoint>,
}

impl Curve {
    /// The smallest and largest n over the band.
    pub fn n_range(&self) -> Option<(usize, usize)> {
        let lo = self.band.iter().map(|b| b.n).min()?;
        let hi = self.band.iter().map(|b| b.n).max()?;
        Some((lo, hi))
    }
}

/// What the chart shows, computed when the snapshot, the metric or the group changes
/// (not at every frame).
#[derive(Clone, Debug, PartialEq)]
pub struct ChartData {
    pub def: MetricDef,
    pub group: String,
    /// The group's number and how many there are.
    pub group_of: (usize, usize),
    /// Points of the group that are finished or running, and with a record.
    pub members: usize,
    /// The planned iterations of a trajectory (the x-axis runs to it).
    pub planned: u64,
    pub curves: Vec<Curve>,
}

pub struct SweepView {
    pub dir: PathBuf,
    pub snapshot: Option<Snapshot>,
    /// The point the table's cursor is on (index into the manifest's points).
    pub selected: usize,
    pub metric_cursor: usize,
    pub group_cursor: usize,
    /// The selected dynamics (index into `dynamics`).
    pub dynamics_cursor: usize,
    /// Dynamics ids not drawn.
    pub hidden: BTreeSet<String>,
    /// Bands of every shown dynamics (else of the selected one only).
    pub bands_all: bool,
    pub help: bool,
    pub notice: Option<String>,
    pub monochrome: bool,
    pub groups: Vec<Group>,
    /// (id, label) of every dynamics in the sweep's records, in the runs' order.
    pub dynamics: Vec<(String, String)>,
    pub metrics: Vec<MetricDef>,
    pub chart: Option<ChartData>,
    settle: Settle,
    done: bool,
}

impl SweepView {
    pub fn new(dir: &Path, monochrome: bool) -> Self {
        SweepView {
            dir: dir.to_path_buf(),
            snapshot: None,
            selected: 0,
            metric_cursor: 0,
            group_cursor: 0,
            dynamics_cursor: 0,
            hidden: BTreeSet::new(),
            bands_all: true,
            help: false,
            notice: None,
            monochrome,
            groups: vec![],
            dynamics: vec![],
            metrics: vec![],
            chart: None,
            settle: Settle::default(),
            done: false,
        }
    }

    /// Takes a new snapshot: the groups, dynamics and metrics it has, and the chart.
    pub fn apply(&mut self, snap: Snapshot) {
        self.done = self.settle.update(&snap.points);
        let manifest = &snap.manifest;
        let mut groups: Vec<Group> = vec![];
        for p in &manifest.points {
            let label = if manifest.grid.is_empty() {
                "all points".to_string()
            } else {
                p.settings_text()
            };
            match groups.iter_mut().find(|g| g.label == label) {
                Some(g) => g.points.push(p.index),
                None => groups.push(Group {
                    label,
                    points: vec![p.index],
                }),
            }
        }
        let mut dynamics: Vec<(String, String)> = vec![];
        let mut defs: Vec<MetricDef> = vec![];
        let mut keys: Vec<String> = vec![];
        for run in snap.runs.values() {
            for d in &run.run.dynamics {
                let id = d.id();
                if !dynamics.iter().any(|(i, _)| *i == id) {
                    dynamics.push((id, d.label.clone()));
                }
                for k in d.metrics.keys() {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
            }
            if defs.is_empty() {
                if let Some(o) = &run.outline {
                    defs = o.metrics.clone();
                }
            }
        }
        // The dashboard's order (the mission's metrics first), then what the records
        // hold beyond the outline.
        let mut order: Vec<Metric> = defs.iter().map(|d| d.metric).collect();
        for k in &keys {
            let m = Metric::from_key(k);
            if !order.contains(&m) {
                order.push(m);
            }
        }
        self.metrics = by_priority(&order)
            .into_iter()
            .map(|m| {
                defs.iter()
                    .find(|d| d.metric == m)
                    .cloned()
                    .unwrap_or_else(|| m.def())
            })
            .collect();
        self.groups = groups;
        self.dynamics = dynamics;
        let points = snap.manifest.points.len();
        self.selected = self.selected.min(points.saturating_sub(1));
        self.dynamics_cursor = self
            .dynamics_cursor
            .min(self.dynamics.len().saturating_sub(1));
        self.snapshot = Some(snap);
        self.rebuild_chart();
    }

    /// Every point has ended (or none has started for `IDLE_GRACE`).
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn group(&self) -> Option<&Group> {
        (!self.groups.is_empty()).then(|| &self.groups[self.group_cursor % self.groups.len()])
    }

    pub fn metric(&self) -> Option<&MetricDef> {
        (!self.metrics.is_empty()).then(|| &self.metrics[self.metric_cursor % self.metrics.len()])
    }

    /// The chart of the selected metric over the selected group's finished and running
    /// points.
    pub fn rebuild_chart(&mut self) {
        self.chart = None;
        let (Some(snap), Some(group), Some(def)) = (&self.snapshot, self.group(), self.metric())
        else {
            return;
        };
        let runs: Vec<&PointRecord> = group
            .points
            .iter()
            .filter_map(|i| snap.runs.get(i).map(|r| r.as_ref()))
            .collect();
        let key = def.metric.key();
        let curves = self
            .dynamics
            .iter()
            .map(|(id, label)| {
                let series: Vec<(&[u64], &[f64])> = runs
                    .iter()
                    .filter_map(|r| r.run.dynamics.iter().find(|d| d.id() == *id))
                    .filter_map(|d| {
                        d.metrics
                            .get(key)
                            .map(|m| (d.iteration.as_slice(), m.as_slice()))
                    })
                    .collect();
                Curve {
                    id: id.clone(),
                    label: label.clone(),
                    band: band(&series, MAX_BAND_POINTS),
                }
            })
            .collect();
        let planned = runs
            .iter()
            .filter_map(|r| r.outline.as_ref().map(|o| o.iterations))
            .max()
            .unwrap_or(0);
        self.chart = Some(ChartData {
            def: def.clone(),
            group: group.label.clone(),
            group_of: (self.group_cursor % self.groups.len() + 1, self.groups.len()),
            members: runs.len(),
            planned,
            curves,
        });
    }

    fn point_count(&self) -> usize {
        self.snapshot
            .as_ref()
            .map_or(0, |s| s.manifest.points.len())
    }

    /// Handles one key; returns what the loop must do, if anything.
    pub fn on_key(&mut self, key: SweepKey) -> Option<Action> {
        use SweepKey as S;
        if key == S::Key(Key::CtrlC) {
            return Some(Action::Interrupt);
        }
        if self.help {
            if matches!(
                key,
                S::Key(Key::Esc | Key::Char('?') | Key::Char('q') | Key::Enter)
            ) {
                self.help = false;
            }
            return None;
        }
        self.notice = None;
        let last = self.point_count().saturating_sub(1);
        let nd = self.dynamics.len().max(1);
        match key {
            S::Up | S::Key(Key::Char('k')) => self.selected = self.selected.saturating_sub(1),
            S::Down | S::Key(Key::Char('j')) => self.selected = (self.selected + 1).min(last),
            S::PageUp => self.selected = self.selected.saturating_sub(10),
            S::PageDown => self.selected = (self.selected + 10).min(last),
            S::Home => self.selected = 0,
            S::End => self.selected = last,
            S::Key(Key::Enter | Key::Char('d')) => return self.open_selected(),
            S::Key(Key::Tab | Key::Right) => self.dynamics_cursor = (self.dynamics_cursor + 1) % nd,
            S::Key(Key::BackTab | Key::Left) => {
                self.dynamics_cursor = (self.dynamics_cursor + nd - 1) % nd
            }
            S::Key(Key::Char(c @ '1'..='8')) => {
                let i = c as usize - '1' as usize;
                if i < self.dynamics.len() {
                    self.dynamics_cursor = i;
                }
            }
            S::Key(Key::Char(' ')) => {
                if let Some((id, _)) = self.dynamics.get(self.dynamics_cursor) {
                    if !self.hidden.remove(id) {
                        self.hidden.insert(id.clone());
                    }
                }
            }
            S::Key(Key::Char('a')) => self.hidden.clear(),
            S::Key(Key::Char('b')) => self.bands_all = !self.bands_all,
            S::Key(Key::Char('m')) => {
                self.metric_cursor = (self.metric_cursor + 1) % self.metrics.len().max(1);
                self.rebuild_chart();
            }
            S::Key(Key::Char('M')) => {
                let n = self.metrics.len().max(1);
                self.metric_cursor = (self.metric_cursor + n - 1) % n;
                self.rebuild_chart();
            }
            S::Key(Key::Char('g')) => {
                self.group_cursor = (self.group_cursor + 1) % self.groups.len().max(1);
                self.rebuild_chart();
            }
            S::Key(Key::Char('G')) => {
                let n = self.groups.len().max(1);
                self.group_cursor = (self.group_cursor + n - 1) % n;
                self.rebuild_chart();
            }
            S::Key(Key::Char('?')) => self.help = true,
            S::Key(Key::Char('q')) => return Some(Action::Quit),
            _ => {}
        }
        None
    }

    /// The selected point's run, unless it has no record yet.
    fn open_selected(&mut self) -> Option<Action> {
        let snap = self.snapshot.as_ref()?;
        let point = snap.manifest.points.get(self.selected)?;
        let status = snap.points.iter().find(|s| s.index == point.index);
        let run_dir = point.run_dir(&self.dir);
        if status.is_none_or(|s| s.state == PointState::Pending)
            && !run_dir.join(journal::FILE_NAME).exists()
        {
            self.notice = Some(format!(
                "{} has no record yet ({}): nothing to open",
                point.dir,
                status.map_or("pending", |s| s.label())
            ));
            return None;
        }
        Some(Action::Open(run_dir))
    }
}

/// Every key of the sweep view, for the help overlay.
pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓ / k j", "previous / next point (PgUp PgDn Home End)"),
    (
        "Enter / d",
        "open the point in the run dashboard (q there: back)",
    ),
    ("m / M", "next / previous metric"),
    ("g / G", "next / previous settings group (grid sweeps)"),
    ("Tab / → / ←", "next / previous dynamics"),
    ("1 – 8", "select dynamics by number"),
    ("Space", "hide / show the selected dynamics"),
    ("a", "show every dynamics"),
    ("b", "bands of every dynamics ↔ of the selected one"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit (the sweep goes on)"),
];

// ---------------------------------------------------------------------------------
// Rendering.

pub fn draw(frame: &mut Frame, view: &SweepView) {
    let area = frame.area();
    let theme = Theme::new(view.monochrome);
    if area.width < ui::MIN_WIDTH || area.height < ui::MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}×{}, noiselab needs at least {}×{}. \
             The sweep goes on; enlarge the window or press q.",
            area.width,
            area.height,
            ui::MIN_WIDTH,
            ui::MIN_HEIGHT
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, head, view, theme);
    let Some(snap) = &view.snapshot else {
        frame.render_widget(
            Paragraph::new(" reading the sweep's records …")
                .block(Block::default().borders(Borders::ALL)),
            body,
        );
        draw_footer(frame, foot, view, theme);
        return;
    };
    // The table takes what its rows need, up to 40 % of the body (at least 5 rows).
    let want = snap.manifest.points.len() as u16 + 3;
    let cap = (body.height * 2 / 5).max(6);
    let [table, chart_row] =
        Layout::vertical([Constraint::Length(want.min(cap)), Constraint::Fill(1)]).areas(body);
    draw_table(frame, table, view, snap, theme);
    let legend_w = LEGEND.min(chart_row.width / 3);
    let [chart, legend] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(legend_w)]).areas(chart_row);
    draw_chart(frame, chart, view, theme);
    draw_legend(frame, legend, view, theme);
    draw_footer(frame, foot, view, theme);
    if view.help {
        draw_help(frame, area, theme);
    }
}

fn state_style(label: &str, theme: Theme) -> Style {
    match label {
        "finished" => theme.fg(Color::Green),
        "running" => theme.fg(Color::Yellow),
        "queued" => theme.fg(Color::Cyan),
        "interrupted" => theme.fg(Color::Magenta),
        "killed" | "failed" => theme.fg(Color::LightRed),
        _ => theme.dim(),
    }
}

fn draw_header(frame: &mut Frame, area: Rect, view: &SweepView, theme: Theme) {
    let (title, line) = match &view.snapshot {
        None => (
            " noiselab sweep ".to_string(),
            Line::raw(format!(" {}", view.dir.display())),
        ),
        Some(s) => {
            let m = &s.manifest;
            let mut spans = vec![Span::raw(" ")];
            for (i, (state, n)) in counts(&s.points).into_iter().enumerate() {
                if i > 0 {
                    spans.push(Span::raw(", "));
                }
                spans.push(Span::styled(
                    format!("{n} {state}"),
                    state_style(state, theme),
                ));
            }
            let settings = m.points.len() / m.seeds.len().max(1);
            spans.push(Span::styled(
                format!(
                    "  ·  {} points = {} seed(s) × {settings} setting(s)  ·  {}",
                    m.points.len(),
                    m.seeds.len(),
                    view.dir.display()
                ),
                theme.dim(),
            ));
            if let Some(note) = s.notes.first() {
                spans.push(Span::styled(
                    format!("  ·  {note}"),
                    theme.fg(Color::LightRed),
                ));
            }
            (
                format!(" noiselab sweep · {} · {} ", m.name, m.experiment),
                Line::from(spans),
            )
        }
    };
    frame.render_widget(
        Paragraph::new(line).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(title, theme.title())),
        ),
        area,
    );
}

fn draw_table(frame: &mut Frame, area: Rect, view: &SweepView, snap: &Snapshot, theme: Theme) {
    let m = &snap.manifest;
    let grid = !m.grid.is_empty();
    let rows_shown = area.height.saturating_sub(3) as usize;
    let start = (view.selected + 1).saturating_sub(rows_shown.max(1));
    let dir_w = m
        .points
        .iter()
        .map(|p| p.dir.len())
        .max()
        .unwrap_or(5)
        .max(5) as u16;
    let settings_w = if grid {
        m.points
            .iter()
            .map(|p| p.settings_text().chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 30) as u16
    } else {
        0
    };
    let rows: Vec<Row> = m
        .points
        .iter()
        .enumerate()
        .skip(start)
        .take(rows_shown)
        .map(|(i, p)| {
            let status = snap.points.iter().find(|s| s.index == p.index);
            let label = status.map_or("pending", |s| s.label());
            let detail = status
                .and_then(|s| {
                    s.problem
                        .clone()
                        .or_else(|| s.progress.clone())
                        .or_else(|| s.queue.as_ref().map(|q| format!("Slurm: {q}")))
                })
                .unwrap_or_default();
            let detail = detail.lines().next().unwrap_or("").to_string();
            let mut cells = vec![
                Cell::from(p.dir.clone()),
                Cell::from(format!("{:>6}", p.seed)),
            ];
            if grid {
                cells.push(Cell::from(p.settings_text()));
            }
            cells.push(Cell::from(Span::styled(label, state_style(label, theme))));
            cells.push(Cell::from(detail));
            let row = Row::new(cells);
            if i == view.selected {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let mut header = vec!["point", "  seed"];
    let mut widths = vec![Constraint::Length(dir_w), Constraint::Length(6)];
    if grid {
        header.push("settings");
        widths.push(Constraint::Length(settings_w));
    }
    header.extend(["state", "progress"]);
    widths.extend([Constraint::Length(11), Constraint::Fill(1)]);
    let title = format!(
        " points {}–{} of {} · Enter: open ",
        (start + 1).min(m.points.len()),
        (start + rows_shown).min(m.points.len()),
        m.points.len()
    );
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(header).style(theme.dim()))
            .column_spacing(2)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Line::styled(title, theme.title())),
            ),
        area,
    );
}

/// Axis labels at the ends and the middle.
fn axis_labels(lo: f64, hi: f64, text: impl Fn(f64) -> String) -> Vec<Line<'static>> {
    vec![
        Line::raw(text(lo)),
        Line::raw(text((lo + hi) / 2.0)),
        Line::raw(text(hi)),
    ]
}

fn draw_chart(frame: &mut Frame, area: Rect, view: &SweepView, theme: Theme) {
    let Some(chart) = &view.chart else {
        frame.render_widget(
            Paragraph::new(" no metric recorded yet").block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let shown: Vec<(usize, &Curve)> = chart
        .curves
        .iter()
        .enumerate()
        .filter(|(_, c)| !view.hidden.contains(&c.id) && !c.band.is_empty())
        .collect();
    let means = || {
        shown
            .iter()
            .flat_map(|(_, c)| c.band.iter().map(|b| b.mean))
            .filter(|v| v.is_finite())
    };
    // A log axis when the quantity spans decades and every mean is positive.
    let log = chart.def.log_scale && means().all(|v| v > 0.0) && {
        let (lo, hi) = means().fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        hi / lo > 10.0
    };
    let group = if chart.group_of.1 > 1 {
        format!(
            "{} ({}/{}, g: next)",
            chart.group, chart.group_of.0, chart.group_of.1
        )
    } else {
        chart.group.clone()
    };
    let log_note = if log { ", log axis" } else { "" };
    let mut title = format!(
        " {}{log_note} — mean ± 95 % CI over seeds · {group} ",
        chart.def.label
    );
    if Line::raw(title.as_str()).width() + 2 > area.width as usize {
        title = format!(" {}{log_note} · {group} ", chart.def.label);
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(title, theme.title()));
    if shown.is_empty() {
        let why = if chart.members < 2 {
            format!(
                " {} finished or running point(s) with a record in this group: a band needs 2",
                chart.members
            )
        } else {
            format!(
                " no {} values in 2 or more points yet (or every dynamics hidden: a shows them)",
                chart.def.label
            )
        };
        frame.render_widget(
            Paragraph::new(why).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let y = |v: f64| if log { v.log10() } else { v };
    let plot_w = area.width.saturating_sub(12).max(1) as usize;
    let mut bands: Vec<(usize, Vec<(f64, f64)>)> = vec![];
    let mut lines: Vec<(usize, Vec<(f64, f64)>)> = vec![];
    for &(i, c) in &shown {
        let mean: Vec<(f64, f64)> = c
            .band
            .iter()
            .map(|b| (b.iteration as f64, y(b.mean)))
            .filter(|p| p.1.is_finite())
            .collect();
        lines.push((i, mean));
        if view.bands_all || i == view.dynamics_cursor {
            // One dot a column: the band reads as a dotted line beside the solid mean.
            let step = c.band.len().div_ceil(plot_w).max(1);
            let edges: [fn(&BandPoint) -> f64; 2] = [|b| b.low, |b| b.high];
            for edge in edges {
                let pts: Vec<(f64, f64)> = c
                    .band
                    .iter()
                    .step_by(step)
                    .map(|b| (b.iteration as f64, edge(b)))
                    .filter(|p| p.1.is_finite() && (!log || p.1 > 0.0))
                    .map(|(x, v)| (x, y(v)))
                    .collect();
                bands.push((i, pts));
            }
        }
    }
    let bounds = ui::bounds(
        lines
            .iter()
            .chain(bands.iter())
            .flat_map(|(_, p)| p.iter().copied()),
    );
    if !bounds.0.is_finite() {
        frame.render_widget(block, area);
        return;
    }
    // log10 values may go below zero: floor at zero only on a linear axis.
    let (x0, x1, y0, y1) = ui::chart_ranges(bounds, chart.planned as f64, !log);
    // Bands under the means, the selected dynamics' mean on top.
    lines.sort_by_key(|(i, _)| *i == view.dynamics_cursor);
    let mut datasets: Vec<Dataset> = vec![];
    for (i, pts) in &bands {
        datasets.push(
            Dataset::default()
                .data(pts)
                .marker(Marker::Braille)
                .graph_type(GraphType::Scatter)
                .style(theme.series(*i)),
        );
    }
    for (i, pts) in &lines {
        datasets.push(
            Dataset::default()
                .data(pts)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.series(*i)),
        );
    }
    let value = |v: f64| fit(if log { 10f64.powf(v) } else { v });
    let chart_widget = Chart::new(datasets)
        .block(block)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .style(theme.dim())
                .labels(axis_labels(x0, x1, |v| format!("{}", v.round() as i64))),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .style(theme.dim())
                .labels(axis_labels(y0, y1, value)),
        );
    frame.render_widget(chart_widget, area);
}

fn draw_legend(frame: &mut Frame, area: Rect, view: &SweepView, theme: Theme) {
    let inner_w = area.width.saturating_sub(2) as usize;
    let inner_h = area.height.saturating_sub(2) as usize;
    let mut lines = vec![];
    if let Some(chart) = &view.chart {
        // Two lines a dynamics when they fit (name; n and the last mean ± CI), else one.
        let compact = 2 * chart.curves.len() + 3 > inner_h;
        for (i, c) in chart.curves.iter().enumerate() {
            let hidden = view.hidden.contains(&c.id);
            let name_style = if i == view.dynamics_cursor {
                theme.selected()
            } else if hidden {
                theme.dim()
            } else {
                theme.series(i)
            };
            let n = match c.n_range() {
                _ if hidden && compact => "hidden".into(),
                Some((lo, hi)) if lo == hi => format!("n = {hi}"),
                Some((lo, hi)) => format!("n = {lo}–{hi}"),
                None => "n < 2".into(),
            };
            let name_w = if compact {
                inner_w.saturating_sub(3 + n.chars().count() + 1).max(4)
            } else {
                inner_w.saturating_sub(12).max(4)
            };
            let label = ui::abbreviate(&c.label, name_w);
            let mut spans = vec![
                Span::styled(format!("{} ", i + 1), theme.series(i)),
                Span::styled(label.clone(), name_style),
            ];
            if compact {
                let pad = name_w.saturating_sub(Line::raw(label.as_str()).width());
                spans.push(Span::styled(format!("{:pad$} {n}", ""), theme.dim()));
                lines.push(Line::from(spans));
                continue;
            }
            if hidden {
                spans.push(Span::styled(" (hidden)", theme.dim()));
            }
            lines.push(Line::from(spans));
            let stats = match c.band.last() {
                Some(b) => {
                    let full = format!(
                        "  {n}  {} ± {}",
                        fit(b.mean).trim(),
                        fit((b.high - b.low) / 2.0).trim()
                    );
                    if Line::raw(full.as_str()).width() <= inner_w {
                        full
                    } else {
                        format!("  {n}  {}", fit(b.mean).trim())
                    }
                }
                None => "  n < 2: no band yet".into(),
            };
            lines.push(Line::styled(stats, theme.dim()));
        }
        lines.push(Line::raw(""));
        let bands = if view.bands_all {
            "each (b: selected)"
        } else {
            "the selected (b: all)"
        };
        if compact {
            lines.push(Line::styled(
                format!("{} point(s) · dotted: 95 % band", chart.members),
                theme.dim(),
            ));
        } else {
            lines.push(Line::styled(
                format!(
                    "{} point(s) · last iteration: mean ± CI half-width",
                    chart.members
                ),
                theme.dim(),
            ));
            lines.push(Line::styled(
                format!("dotted: 95 % band of {bands}"),
                theme.dim(),
            ));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(" legend ", theme.title())),
        ),
        area,
    );
}

fn draw_footer(frame: &mut Frame, area: Rect, view: &SweepView, theme: Theme) {
    let mut hints: Vec<&str> = vec!["↑↓ point", "Enter open", "m metric"];
    if view.groups.len() > 1 {
        hints.push("g group");
    }
    hints.extend(["Tab/1-8 dynamics", "Space hide", "b bands"]);
    let last = ["? help", "q quit"];
    let fits = |n: usize| {
        let line: Vec<&str> = hints[..n].iter().chain(&last).copied().collect();
        format!(" {}", line.join(" · "))
    };
    let mut n = hints.len();
    while n > 0 && Line::raw(fits(n)).width() > area.width as usize {
        n -= 1;
    }
    let mut line = fits(n);
    if let Some(notice) = &view.notice {
        let with = format!("{line} │ {notice}");
        line = if Line::raw(with.as_str()).width() <= area.width as usize {
            with
        } else {
            format!(" {notice}")
        };
    }
    frame.render_widget(Paragraph::new(Line::styled(line, theme.dim())), area);
}

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let r = ui::centered(area, 72, KEYS.len() as u16 + 4);
    let lines = ui::help::key_lines(KEYS, theme);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(Line::styled(" keys — sweep view ", theme.title()))
                .title_bottom(Line::styled(" Esc / ?: close ", theme.title())),
        ),
        r,
    );
}

// ---------------------------------------------------------------------------------
// Input and the loop.

pub fn map_sweep_key(k: event::KeyEvent) -> Option<SweepKey> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    Some(match k.code {
        KeyCode::Up => SweepKey::Up,
        KeyCode::Down => SweepKey::Down,
        KeyCode::PageUp => SweepKey::PageUp,
        KeyCode::PageDown => SweepKey::PageDown,
        KeyCode::Home => SweepKey::Home,
        KeyCode::End => SweepKey::End,
        _ => SweepKey::Key(map_key(k)?),
    })
}

/// Reads terminal events until `stop` is set; the receiver disconnects when it has.
pub fn spawn_input(stop: Arc<AtomicBool>) -> Receiver<SweepInput> {
    super::input::spawn_reader(
        "sweep-input",
        stop,
        |k| map_sweep_key(k).map(SweepInput::Key),
        SweepInput::Resize,
    )
}

/// Runs the sweep view until a key or a signal ends it, a point is to be opened, or
/// (with `exit_when_done`) the sweep has ended.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    view: &mut SweepView,
    snapshots: &Receiver<Snapshot>,
    inputs: &Receiver<SweepInput>,
    interrupted: &AtomicBool,
    exit_when_done: bool,
) -> std::result::Result<Exit, B::Error> {
    let (mut snapshots, mut inputs) = (snapshots.clone(), inputs.clone());
    let mut last_frame: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let due = match last_frame {
            Some(t) if !dirty => super::TICK.saturating_sub(t.elapsed()),
            _ => Duration::ZERO,
        };
        crossbeam_channel::select! {
            recv(snapshots) -> s => match s {
                Ok(s) => { view.apply(s); dirty = true; }
                Err(_) => snapshots = never(),
            },
            recv(inputs) -> i => match i {
                Ok(SweepInput::Key(k)) => {
                    dirty = true;
                    match view.on_key(k) {
                        Some(Action::Quit) => return Ok(Exit::Quit),
                        Some(Action::Interrupt) => return Ok(Exit::Interrupted),
                        Some(Action::Open(dir)) => return Ok(Exit::Open(dir)),
                        None => {}
                    }
                }
                Ok(SweepInput::Resize) => {
                    terminal.autoresize()?;
                    dirty = true;
                }
                Err(_) => inputs = never(),
            },
            default(due) => {}
        }
        if interrupted.load(Ordering::Relaxed) {
            return Ok(Exit::Interrupted);
        }
        if dirty || last_frame.is_none_or(|t| t.elapsed() >= super::TICK) {
            terminal.draw(|f| draw(f, view))?;
            last_frame = Some(Instant::now());
            dirty = false;
        }
        if exit_when_done && view.is_done() {
            return Ok(Exit::Done);
        }
    }
}

/// The sweep view on the real terminal, restored whatever happens (a key, a signal, a
/// vanished terminal, a panic), as the run dashboard does it.
fn dashboard(
    view: &mut SweepView,
    snapshots: &Receiver<Snapshot>,
    interrupted: &AtomicBool,
    exit_when_done: bool,
) -> Result<Exit> {
    // ratatui's init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init()
        .map_err(|e| Error::Numerics(format!("cannot open the terminal: {e}")))?;
    let input_stop = Arc::new(AtomicBool::new(false));
    let inputs = spawn_input(input_stop.clone());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_loop(
            &mut terminal,
            view,
            snapshots,
            &inputs,
            interrupted,
            exit_when_done,
        )
    }));
    // The input thread must be gone before another dashboard reads the keyboard.
    input_stop.store(true, Ordering::Relaxed);
    while inputs.recv_timeout(Duration::from_secs(1)).is_ok() {}
    // Best effort, and without the Terminal's Drop (it panics on a hung-up terminal).
    let _ = ratatui::try_restore();
    let _ = terminal.show_cursor();
    std::mem::forget(terminal);
    match outcome {
        Ok(Ok(exit)) => Ok(exit),
        Ok(Err(e)) => Err(Error::Numerics(format!(
            "the sweep dashboard stopped: terminal error: {e}"
        ))),
        Err(_) => Err(Error::Numerics("the sweep dashboard panicked".into())),
    }
}

/// `noiselab watch SWEEP`: the sweep view (or, headless or without a terminal, plain
/// lines). `open_run` shows one point's run in the single-run dashboard and returns
/// when the user leaves it.
pub fn watch(
    dir: &Path,
    headless: bool,
    exit_when_done: bool,
    open_run: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let manifest = Manifest::load(dir)?;
    let interrupted = crate::signals::install().map_err(|e| Error::io("signal handlers", e))?;
    if headless || !std::io::stdout().is_terminal() {
        return run_headless(
            dir,
            manifest,
            &interrupted,
            &mut std::io::stderr(),
            (READ_EVERY, PRINT_EVERY),
        );
    }
    let snapshots = spawn_reader(Reader::new(dir, manifest), READ_EVERY);
    let monochrome = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut view = SweepView::new(dir, monochrome);
    loop {
        match dashboard(&mut view, &snapshots, &interrupted, exit_when_done)? {
            Exit::Open(run) => {
                if let Err(e) = open_run(&run) {
                    view.notice = Some(format!("{}: {e}", run.display()));
                }
                if interrupted.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Exit::Quit | Exit::Interrupted | Exit::Done => return Ok(()),
        }
    }
}

/// `--headless`: where the sweep stands, every `print_every` (read every `poll`), until
/// no point runs or waits in the queue, or a signal.
pub fn run_headless(
    dir: &Path,
    manifest: Manifest,
    interrupted: &AtomicBool,
    out: &mut dyn Write,
    (poll, print_every): (Duration, Duration),
) -> Result<()> {
    let started = Instant::now();
    let mut reader = Reader::new(dir, manifest);
    let mut settle = Settle::default();
    let mut printed: Option<Instant> = None;
    loop {
        let read_start = Instant::now();
        let snap = reader.read();
        let took = read_start.elapsed();
        let done = settle.update(&snap.points);
        let t = started.elapsed().as_secs_f64();
        if done || printed.is_none_or(|p| p.elapsed() >= print_every) {
            printed = Some(Instant::now());
            let _ = writeln!(
                out,
                "[{t:7.1}s] sweep {}: {}",
                dir.display(),
                counts_text(&snap.points)
            );
            for note in &snap.notes {
                let _ = writeln!(out, "[{t:7.1}s]   {note}");
            }
            for s in snap.points.iter().filter(|s| s.label() == "running") {
                let name = snap
                    .manifest
                    .points
                    .get(s.index)
                    .map_or("?", |p| p.dir.as_str());
                let _ = writeln!(
                    out,
                    "[{t:7.1}s]   {name}: {}",
                    s.progress.as_deref().unwrap_or("running")
                );
            }
        }
        if done {
            let pending = snap
                .points
                .iter()
                .filter(|p| p.label() == "pending")
                .count();
            if pending > 0 {
                let _ = writeln!(
                    out,
                    "{pending} point(s) pending and none running or queued: start them with `noiselab sweep resume {}`",
                    dir.display()
                );
            }
            return Ok(());
        }
        // As the reader thread: a long read is followed by a longer pause.
        let wake = Instant::now() + poll.max(2 * took);
        while Instant::now() < wake {
            if interrupted.load(Ordering::Relaxed) {
                let _ = writeln!(out, "watch stopped before the sweep ended");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
