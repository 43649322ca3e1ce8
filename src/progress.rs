//! Where a run stands and when it will end, from its `Progress` events alone (so the
//! dashboard, the headless lines, `watch` and `inspect` agree, and a test can script it).
//!
//! The model: every running trajectory shares the machine equally (the workers' kernels
//! run on one rayon pool), so each interval between two events is attributed to the
//! trajectories running in it, `dt / n` each, split into stepping and measuring by what
//! each was doing. A trajectory's cost per step and per measurement is its attributed
//! time over what it got done; what is left is its remaining steps and measurements at
//! those costs. With the machine kept busy, the run ends after the sum of what is left
//! (machine-seconds are wall seconds), and each trajectory ends where processor sharing
//! puts it: the cheapest first, the others speeding up as it leaves. A trajectory nothing
//! is known of yet (not started) costs the mean of the started ones.
//!
//! Equal shares are only a first model: rayon's pool serves one parallel call at a time,
//! so a trajectory of long calls gets more of the machine than one of short calls (on the
//! FashionMNIST protocol GLD dynamic ran 5× as many steps as GD in the same minutes, and
//! the equal-share ETA said twice the real time). Where every trajectory's progress carries
//! the processor seconds charged to it (`cpu_s`, `cpu.rs`), its costs come from those
//! instead, converted to machine-seconds by the run's own ratio of wall time to charged
//! processor time (which absorbs the core count and the time nobody is charged for).

use crate::dynamics::DynamicsKind;
use crate::events::{Event, Progress, RunInfo, Task};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Weight of the latest measurement in a trajectory's measurement cost.
const RECENT_WEIGHT: f64 = 0.5;

/// Seconds of history the displayed rate (iterations per second) averages over.
pub const RATE_WINDOW_S: f64 = 30.0;

/// A trajectory, or a phase every trajectory waits for (`phase` set).
type Key = (Option<String>, DynamicsKind, usize);

#[derive(Clone, Debug)]
struct Track {
    step: u64,
    steps: u64,
    offset: u64,
    measure_every: u64,
    task: Task,
    /// Step when this attempt first heard of it.
    first_step: u64,
    last_seen: f64,
    /// Machine-seconds attributed to its steps, the same at its latest event (the steps
    /// done since are not known yet), and to the measurement in progress.
    work_steps: f64,
    work_steps_seen: f64,
    work_current: f64,
    /// Recent cost of one measurement: an exponentially weighted mean (measurements
    /// grow dearer as a trajectory moves: Lanczos and the sharpness probes work harder).
    recent_measure: Option<f64>,
    /// (time, step) over the last `RATE_WINDOW_S`.
    window: VecDeque<(f64, u64)>,
    done: bool,
    /// Processor seconds charged to it at its latest event (`Progress::cpu_s`), and of
    /// those: to its steps, recently to one measurement (weighted as `recent_measure`),
    /// and to the measurement in progress.
    cpu: Option<f64>,
    /// (time, processor seconds) at its first event: its rate of charged time.
    cpu_first: Option<(f64, f64)>,
    cpu_steps: f64,
    cpu_recent_measure: Option<f64>,
    cpu_current: f64,
}

impl Track {
    fn new(p: &Progress) -> Self {
        Track {
            step: p.step,
            steps: p.steps,
            offset: p.offset,
            measure_every: p.measure_every,
            task: p.task.clone(),
            first_step: p.step,
            last_seen: p.elapsed_s,
            work_steps: 0.0,
            work_steps_seen: 0.0,
            work_current: 0.0,
            recent_measure: None,
            window: VecDeque::new(),
            done: false,
            cpu: p.cpu_s,
            cpu_first: p.cpu_s.map(|c| (p.elapsed_s, c)),
            cpu_steps: 0.0,
            cpu_recent_measure: None,
            cpu_current: 0.0,
        }
    }

    fn measuring(&self) -> bool {
        !matches!(self.task, Task::Steps)
    }

    /// Machine-seconds per step: from charged processor time at `per_cpu_s`
    /// machine-seconds each when given, else from equal shares.
    fn step_cost(&self, per_cpu_s: Option<f64>) -> Option<f64> {
        let taken = self.step.saturating_sub(self.first_step);
        let work = match per_cpu_s {
            Some(f) => self.cpu_steps * f,
            None => self.work_steps_seen,
        };
        (taken > 0 && work > 0.0).then(|| work / taken as f64)
    }

    fn measure_cost(&self, per_cpu_s: Option<f64>) -> Option<f64> {
        match per_cpu_s {
            Some(f) => self.cpu_recent_measure.map(|m| m * f),
            None => self.recent_measure,
        }
    }

    /// Machine-seconds spent on the measurement in progress.
    fn current_work(&self, per_cpu_s: Option<f64>) -> f64 {
        match per_cpu_s {
            Some(f) => self.cpu_current * f,
            None => self.work_current,
        }
    }

    /// Measurements still to start after the current one: at every multiple of
    /// `measure_every` after this step and below `steps`, and for a trajectory (not a
    /// shared phase) the final one after its last step.
    fn measurements_left(&self, shared: bool) -> u64 {
        if self.measure_every == 0 {
            return 0;
        }
        let below = |n: u64| n.div_ceil(self.measure_every);
        let periodic = below(self.steps).saturating_sub(below((self.step + 1).min(self.steps)));
        periodic + u64::from(!shared && self.step < self.steps)
    }

    fn rate(&self) -> Option<f64> {
        let (&(t0, s0), &(t1, s1)) = (self.window.front()?, self.window.back()?);
        (t1 - t0 >= 1.0).then(|| (s1 - s0) as f64 / (t1 - t0))
    }
}

/// One trajectory's standing, as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackView {
    pub dynamics: DynamicsKind,
    pub replicate: usize,
    pub phase: Option<String>,
    pub step: u64,
    pub steps: u64,
    /// The record's iteration of step 0.
    pub offset: u64,
    pub task: Task,
    /// Steps per second over the last `RATE_WINDOW_S`.
    pub rate: Option<f64>,
    /// Seconds until it ends, when its costs are known.
    pub eta_s: Option<f64>,
    /// Seconds since it last reported, and whether that is far longer than its work explains.
    pub silent_s: f64,
    pub stalled: bool,
    pub done: bool,
}

/// The whole run's standing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// A phase every trajectory waits for, running now: its name, fraction and ETA.
    pub phase: Option<(String, f64, Option<f64>)>,
    /// Work-weighted fraction of the trajectories done, and seconds until the last ends.
    pub fraction: Option<f64>,
    pub eta_s: Option<f64>,
    pub tracks: Vec<TrackView>,
    /// Trajectories not started yet (`trajectories_at_once`), nor finished before.
    pub waiting: usize,
}

impl Snapshot {
    pub fn track(&self, dynamics: DynamicsKind, replicate: usize) -> Option<&TrackView> {
        self.tracks
            .iter()
            .find(|t| t.phase.is_none() && t.dynamics == dynamics && t.replicate == replicate)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ProgressModel {
    tracks: BTreeMap<Key, Track>,
    /// The run's trajectories: (dynamics, replicate).
    expected: Vec<(DynamicsKind, usize)>,
    finished: BTreeSet<(DynamicsKind, usize)>,
    /// The run's rough relative cost of an iteration per dynamics (may be empty).
    iteration_costs: BTreeMap<DynamicsKind, f64>,
    /// Latest time heard, on the workers' clock of this attempt.
    now: f64,
    /// Wall seconds while trajectories ran, and the processor seconds charged to them
    /// meanwhile: their ratio converts charged time to machine-seconds.
    wall_running: f64,
    cpu_charged: f64,
    /// A trajectory's progress came without charged processor time (an older journal,
    /// a device whose work no CPU clock sees): equal shares for the whole attempt.
    uncharged: bool,
}

/// Silence beyond this many seconds plus five times the expected duration of what a
/// trajectory is doing marks it stalled.
pub const STALL_GRACE_S: f64 = 60.0;

impl ProgressModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest time heard (seconds since this attempt started).
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Folds one event in; only progress and the end of trajectories matter.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted(info) => self.start(info),
            Event::Progress(p) => self.progress(p),
            Event::TrajectoryFinished {
                dynamics,
                replicate,
            }
            | Event::Diverged {
                dynamics,
                replicate,
                ..
            } => self.end(*dynamics, Some(*replicate)),
            Event::Finished { dynamics } | Event::Failed { dynamics, .. } => {
                self.end(*dynamics, None)
            }
            _ => {}
        }
    }

    /// A new attempt: its clock starts at 0; what earlier attempts finished stays finished.
    fn start(&mut self, info: &RunInfo) {
        self.tracks.clear();
        self.now = 0.0;
        self.wall_running = 0.0;
        self.cpu_charged = 0.0;
        self.uncharged = false;
        self.expected = info
            .dynamics
            .iter()
            .flat_map(|&d| (0..info.replicates.max(1)).map(move |r| (d, r)))
            .collect();
        self.finished.extend(info.finished_before.iter().copied());
        self.iteration_costs = info.iteration_costs.iter().copied().collect();
    }

    fn end(&mut self, dynamics: DynamicsKind, replicate: Option<usize>) {
        for ((phase, d, r), t) in self.tracks.iter_mut() {
            if phase.is_none() && *d == dynamics && replicate.is_none_or(|x| x == *r) {
                t.done = true;
            }
        }
        match replicate {
            Some(r) => {
                self.finished.insert((dynamics, r));
            }
            None => {
                let all: Vec<_> = self
                    .expected
                    .iter()
                    .filter(|e| e.0 == dynamics)
                    .copied()
                    .collect();
                self.finished.extend(all);
            }
        }
    }

    fn progress(&mut self, p: &Progress) {
        let t = p.elapsed_s.max(self.now);
        let dt = t - self.now;
        let active: Vec<Key> = self
            .tracks
            .iter()
            .filter(|(_, tr)| !tr.done)
            .map(|(k, _)| k.clone())
            .collect();
        if dt > 0.0 && active.iter().any(|k| k.0.is_none()) {
            self.wall_running += dt;
        }
        if dt > 0.0 && !active.is_empty() {
            let share = dt / active.len() as f64;
            for k in &active {
                let tr = self.tracks.get_mut(k).expect("listed above");
                if tr.measuring() {
                    tr.work_current += share;
                } else {
                    tr.work_steps += share;
                }
            }
        }
        self.now = t;
        if p.phase.is_none() {
            // The trajectories have started: every shared phase is over.
            for (k, tr) in self.tracks.iter_mut() {
                if k.0.is_some() {
                    tr.done = true;
                }
            }
        }
        let key = (p.phase.clone(), p.dynamics, p.replicate);
        let tr = self.tracks.entry(key).or_insert_with(|| Track::new(p));
        // Processor time charged since its last event went to what it was doing.
        match (p.cpu_s, tr.cpu) {
            (Some(now), Some(before)) => {
                let spent = (now - before).max(0.0);
                if tr.measuring() {
                    tr.cpu_current += spent;
                } else {
                    tr.cpu_steps += spent;
                }
                if p.phase.is_none() {
                    self.cpu_charged += spent;
                }
            }
            (None, _) if p.phase.is_none() => self.uncharged = true,
            _ => {}
        }
        tr.cpu = p.cpu_s.or(tr.cpu);
        if tr.measuring() && !matches!(p.task, Task::Measuring(_) | Task::Computing(_)) {
            tr.recent_measure = Some(recent(tr.recent_measure, tr.work_current));
            tr.work_current = 0.0;
            tr.cpu_recent_measure = Some(recent(tr.cpu_recent_measure, tr.cpu_current));
            tr.cpu_current = 0.0;
        }
        tr.step = p.step;
        tr.work_steps_seen = tr.work_steps;
        tr.steps = p.steps;
        tr.offset = p.offset;
        tr.measure_every = p.measure_every;
        tr.task = p.task.clone();
        tr.last_seen = t;
        tr.window.push_back((t, p.step));
        while tr
            .window
            .front()
            .is_some_and(|&(t0, _)| t - t0 > RATE_WINDOW_S)
            && tr.window.len() > 2
        {
            tr.window.pop_front();
        }
        // A shared phase ends at its last step; a trajectory when it is reported
        // finished (possibly before its last progress event arrives).
        if (p.phase.is_some() && p.step >= p.steps)
            || (p.phase.is_none() && self.finished.contains(&(p.dynamics, p.replicate)))
        {
            tr.done = true;
        }
    }

    /// Machine-seconds per charged processor second, when every trajectory's costs can
    /// come from charged time (see the module's notes).
    fn per_cpu_s(&self) -> Option<f64> {
        // Time charged to a trajectory since its latest event is not known yet (a long
        // measurement reports it at its end): at its own rate so far.
        let unreported: f64 = self
            .tracks
            .iter()
            .filter(|(k, t)| k.0.is_none() && !t.done)
            .filter_map(|(_, t)| {
                let ((t0, c0), c) = (t.cpu_first?, t.cpu?);
                let seen = t.last_seen - t0;
                (seen > 0.0).then(|| (c - c0) / seen * (self.now - t.last_seen))
            })
            .sum();
        let charged = self.cpu_charged + unreported;
        (!self.uncharged && charged > 0.0 && self.wall_running > 0.0)
            .then(|| self.wall_running / charged)
    }

    /// Where the run stands at `now` (seconds on the workers' clock; at least the
    /// latest time heard).
    pub fn snapshot(&self, now: f64) -> Snapshot {
        let now = now.max(self.now);
        let since = now - self.now;
        let charged = self.per_cpu_s();
        // Trajectories' costs from charged time when known; shared phases run alone,
        // where equal shares are exact.
        let factor = move |shared: bool| if shared { None } else { charged };
        let mean = |f: &dyn Fn(&Track, Option<f64>) -> Option<f64>, shared: bool| {
            let v: Vec<f64> = self
                .tracks
                .iter()
                .filter(|(k, _)| k.0.is_some() == shared)
                .filter_map(|(_, t)| f(t, factor(shared)))
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        // Costs not seen yet on a trajectory: the mean of the others', or before any
        // is known, the shared phase's (the GD phase steps and measures the same model).
        let mean_step = mean(&Track::step_cost, false).or(mean(&Track::step_cost, true));
        let mean_measure = mean(&Track::measure_cost, false).or(mean(&Track::measure_cost, true));
        // A trajectory's step cost before its own is measured: the measured ones'
        // scaled by the run's relative iteration costs when it has them, else the mean.
        let hint = |d: DynamicsKind| self.iteration_costs.get(&d).copied().filter(|&c| c > 0.0);
        let (mut measured, mut hinted) = (0.0, 0.0);
        for ((ph, d, _), t) in &self.tracks {
            if let (None, Some(cost), Some(h)) = (ph, t.step_cost(charged), hint(*d)) {
                measured += cost;
                hinted += h;
            }
        }
        let step_cost_of = |d: DynamicsKind| match hint(d) {
            Some(h) if hinted > 0.0 => Some(measured / hinted * h),
            _ => mean_step,
        };
        // The time since the last event went to the running tracks, shared equally.
        let running = self.tracks.values().filter(|t| !t.done).count().max(1) as f64;
        // Remaining and done machine-seconds of one track, when its costs are known.
        let estimate = |t: &Track, d: DynamicsKind, shared: bool| -> Option<(f64, f64)> {
            let fallback =
                |own: Option<f64>, mean: Option<f64>| if shared { own } else { own.or(mean) };
            let step_cost = fallback(t.step_cost(factor(shared)), step_cost_of(d))?;
            let measure_cost = if t.measure_every == 0 {
                0.0
            } else {
                fallback(t.measure_cost(factor(shared)), mean_measure).unwrap_or(0.0)
            };
            let current = if t.measuring() {
                (measure_cost - t.current_work(factor(shared))).max(0.0)
            } else {
                0.0
            };
            let left = t.steps.saturating_sub(t.step) as f64 * step_cost
                + t.measurements_left(shared) as f64 * measure_cost
                + current;
            let measured = if t.measure_every > 0 {
                t.step.div_ceil(t.measure_every)
            } else {
                0
            };
            let done = t.step as f64 * step_cost + measured as f64 * measure_cost;
            Some(((left - since / running).max(0.0), done))
        };

        let mut tracks = vec![];
        let mut remaining: Vec<(usize, f64)> = vec![];
        let (mut done_total, mut left_total, mut known) = (0.0, 0.0, true);
        let mut phase = None;
        let typical_steps = self
            .tracks
            .iter()
            .find(|(k, _)| k.0.is_none())
            .map(|(_, t)| t.steps);
        for ((ph, d, r), t) in &self.tracks {
            let shared = ph.is_some();
            // A finished track has nothing left; what it did still counts as done.
            let est = if t.done {
                Some((0.0, estimate(t, *d, shared).map_or(0.0, |e| e.1)))
            } else {
                estimate(t, *d, shared)
            };
            let silent = now - t.last_seen;
            let own = (t.measure_cost(factor(shared)), t.step_cost(factor(shared)));
            let expected_unit = match (t.measuring(), own.0, own.1) {
                (true, Some(c), _) | (false, _, Some(c)) => c * running,
                (true, None, _) => mean_measure.unwrap_or(0.0) * running,
                (false, _, None) => 1.0,
            };
            let stalled = !t.done && silent > STALL_GRACE_S + 5.0 * expected_unit;
            if shared {
                if !t.done {
                    let fraction = if t.steps > 0 {
                        t.step as f64 / t.steps as f64
                    } else {
                        0.0
                    };
                    phase = Some((ph.clone().unwrap_or_default(), fraction, est.map(|e| e.0)));
                }
            } else {
                match est {
                    Some((left, done)) => {
                        left_total += left;
                        done_total += done;
                        if !t.done {
                            remaining.push((tracks.len(), left));
                        }
                    }
                    None => known = false,
                }
            }
            tracks.push(TrackView {
                dynamics: *d,
                replicate: *r,
                phase: ph.clone(),
                step: t.step,
                steps: t.steps,
                offset: t.offset,
                task: t.task.clone(),
                rate: t.rate(),
                eta_s: if t.done { Some(0.0) } else { est.map(|e| e.0) },
                silent_s: silent,
                stalled,
                done: t.done,
            });
        }
        // Trajectories not heard of yet, not finished: the mean costs.
        let heard: BTreeSet<(DynamicsKind, usize)> = self
            .tracks
            .keys()
            .filter(|k| k.0.is_none())
            .map(|k| (k.1, k.2))
            .collect();
        // Their whole work, steps at `step_cost_of` and measurements at the mean: left
        // if not started, done if an earlier attempt finished them (its costs are not
        // known to this one).
        let every = self
            .tracks
            .iter()
            .find(|(k, _)| k.0.is_none())
            .map_or(0, |(_, t)| t.measure_every);
        let whole_trajectory = |d: DynamicsKind| -> Option<f64> {
            let steps = typical_steps?;
            let step_cost = step_cost_of(d)?;
            let measurements = if every > 0 {
                steps.div_ceil(every) + 1
            } else {
                0
            };
            Some(steps as f64 * step_cost + measurements as f64 * mean_measure.unwrap_or(0.0))
        };
        let mut waiting = 0;
        for e in &self.expected {
            if heard.contains(e) {
                continue;
            }
            if self.finished.contains(e) {
                done_total += whole_trajectory(e.0).unwrap_or(0.0);
                continue;
            }
            waiting += 1;
            match whole_trajectory(e.0) {
                Some(work) => left_total += work,
                None => known = false,
            }
        }
        let started = !heard.is_empty();
        // Processor sharing: the cheapest ends first, the others speed up as it leaves.
        remaining.sort_by(|a, b| a.1.total_cmp(&b.1));
        let n = remaining.len() + waiting;
        let (mut clock, mut before) = (0.0, 0.0);
        for (i, (index, left)) in remaining.iter().enumerate() {
            clock += (left - before) * (n - i) as f64;
            before = *left;
            tracks[*index].eta_s = Some(clock);
        }
        let whole = done_total + left_total;
        let all_done = started && waiting == 0 && tracks.iter().all(|t| t.done);
        Snapshot {
            phase,
            fraction: if all_done {
                Some(1.0)
            } else {
                (started && known && whole > 0.0).then(|| done_total / whole)
            },
            eta_s: (started && known).then_some(left_total),
            tracks,
            waiting,
        }
    }
}

/// The recent cost of a measurement after one more that cost `latest`.
fn recent(before: Option<f64>, latest: f64) -> f64 {
    match before {
        None => latest,
        Some(m) => RECENT_WEIGHT * latest + (1.0 - RECENT_WEIGHT) * m,
    }
}

/// hh:mm:ss of a number of seconds (hours grow past 99; negative is 0).
pub fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Iterations per second in a few characters: 2–3 significant digits.
pub fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.1e}")
    }
}

/// One line of where the run stands: "from θ_GD 34% ETA 00:41:10 · sgd 1200/3500
/// 9.1 it/s · gld_hessian 300/3500 measuring expected sharpness …" (`label` names the
/// run's trajectories). The headless lines and `inspect` print it.
pub fn summary(snap: &Snapshot, label: &str) -> String {
    let mut out = match &snap.phase {
        Some((name, f, None)) if *f == 0.0 => format!("{name} …"),
        Some((name, f, eta)) => format!(
            "{name} {:.0}% ETA {}",
            100.0 * f,
            eta.map_or("…".into(), hms)
        ),
        None => format!(
            "{label} {} ETA {}",
            snap.fraction
                .map_or("…".to_string(), |f| format!("{:.0}%", 100.0 * f)),
            snap.eta_s.map_or("…".into(), hms)
        ),
    };
    for t in snap.tracks.iter().filter(|t| !t.done) {
        let who = t
            .phase
            .clone()
            .unwrap_or_else(|| t.dynamics.key().to_string());
        out += &format!(" · {who} {}/{}", t.step, t.steps);
        if t.task != Task::Steps {
            out += &format!(" {}", t.task.describe());
        } else if let Some(r) = t.rate.filter(|r| *r > 0.0) {
            out += &format!(" {} it/s", fmt_rate(r));
        }
        if t.stalled {
            out += &format!(" STALLED ({:.0} s silent)", t.silent_s);
        }
    }
    if snap.phase.is_none() && snap.waiting > 0 {
        out += &format!(" · {} waiting", snap.waiting);
    }
    out
}

/// Which progress events the journal keeps: every change of task or phase (the start
/// and end of each measurement), and otherwise one per trajectory every
/// `JOURNAL_PROGRESS_S` (the workers publish about one a second; the dashboard gets
/// them all, the journal does not need them all to tell where a run stands).
#[derive(Clone, Debug, Default)]
pub struct Thinning {
    last: BTreeMap<Key, (f64, Task)>,
}

/// Seconds between two journaled progress events of one trajectory while it steps.
pub const JOURNAL_PROGRESS_S: f64 = 10.0;

impl Thinning {
    pub fn keep(&mut self, p: &Progress) -> bool {
        let key = (p.phase.clone(), p.dynamics, p.replicate);
        let keep = match self.last.get(&key) {
            None => true,
            Some((t, task)) => {
                *task != p.task || p.step >= p.steps || p.elapsed_s - t >= JOURNAL_PROGRESS_S
            }
        };
        if keep {
            self.last.insert(key, (p.elapsed_s, p.task.clone()));
        }
        keep
    }
}
