//! Experiment protocols (docs/METHOD.md §4), one module each, the registry that names
//! them, and what their workers share.

pub mod classification;

use crate::dynamics::{DynamicsKind, NoiseModel, NoiseSpec};
use crate::engine::{self, Checkpoint, Observer, Start};
use crate::estimators::AtPoint;
use crate::events::{Event, EventSender, Metric, Progress, RunStatus, Task};
use crate::experiment::{Experiment, RunContext};
use crate::objective::Objective;
use crate::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use rand_chacha::ChaCha12Rng;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// An experiment's config section: `[<KEY>]`, read with defaults for absent keys and
/// unknown keys refused.
pub trait Section:
    Experiment + Clone + PartialEq + Default + serde::Serialize + serde::de::DeserializeOwned + 'static
{
    /// The experiment's key: `experiment = "…"` and the name of its config section.
    const KEY: &'static str;
}

/// Declares the experiments: one line each, `module::Section`. Generates their modules
/// and [`Settings`], the config's tagged choice of one of them.
macro_rules! registry {
    ($($module:ident :: $section:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// The chosen experiment with its settings (`experiment = "<key>"` and `[<key>]`).
        #[derive(Clone, Debug, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Settings {
            $($section($module::$section),)*
        }

        impl Settings {
            /// Every experiment's key, in registry order.
            pub const KEYS: &'static [&'static str] = &[$(<$module::$section as Section>::KEY,)*];

            pub fn experiment(&self) -> &dyn Experiment {
                match self {
                    $(Settings::$section(s) => s,)*
                }
            }

            /// The experiment's key: `experiment = "…"` and its section's name.
            pub fn key(&self) -> &'static str {
                match self {
                    $(Settings::$section(_) => <$module::$section as Section>::KEY,)*
                }
            }

            /// The settings as their own type (for tests and benches of one experiment).
            pub fn get<T: 'static>(&self) -> Option<&T> {
                match self {
                    $(Settings::$section(s) => (s as &dyn std::any::Any).downcast_ref::<T>(),)*
                }
            }

            /// Reads the section of experiment `key`; `None` for an unknown key.
            pub fn parse(
                key: &str,
                section: toml::Value,
            ) -> Option<std::result::Result<Self, serde_path_to_error::Error<toml::de::Error>>> {
                $(
                    if key == <$module::$section as Section>::KEY {
                        return Some(serde_path_to_error::deserialize(section).map(Settings::$section));
                    }
                )*
                None
            }

            /// The section as TOML.
            pub fn to_toml(&self) -> toml::Value {
                match self {
                    $(Settings::$section(s) => toml::Value::try_from(s).expect("settings serialize"),)*
                }
            }
        }
    };
}

registry! {
    toy2d::Toy2dConfig,
    one_hidden::OneHiddenConfig,
    fashion_mnist::FashionMnistConfig,
    cifar10::Cifar10Config,
    quadratic::QuadraticConfig,
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

/// Each dynamics' rough cost of an iteration at step size `eta` on `samples` training
/// samples ([`NoiseSpec::iteration_cost`]), in the config's order.
pub(crate) fn iteration_costs(
    config: &crate::config::Config,
    eta: f64,
    samples: usize,
) -> Vec<(DynamicsKind, f64)> {
    config
        .dynamics
        .iter()
        .map(|&k| (k, config.noise.spec(k, eta).iteration_cost(samples)))
        .collect()
}

/// Runs each unfinished one-trajectory dynamics with `run`, `trajectories_at_once` at a
/// time (default: all), the costliest first by the iteration costs the experiment's
/// outline announces (so the order and the ETA's costs are the same figures; a dynamics
/// without one counts 0); publishes how each ended and returns how many failed.
pub(crate) fn costliest_first(
    ctx: &RunContext<'_>,
    run: impl Fn(DynamicsKind) -> Result<()> + Sync,
) -> usize {
    let costs = ctx
        .config
        .experiment
        .experiment()
        .outline(ctx.config)
        .iteration_costs;
    let cost = |k: DynamicsKind| costs.iter().find(|c| c.0 == k).map_or(0.0, |c| c.1);
    let failed = AtomicUsize::new(0);
    let jobs: Vec<(f64, DynamicsKind)> = ctx
        .config
        .dynamics
        .iter()
        .filter(|&&k| !ctx.finished(k, 0))
        .map(|&k| (cost(k), k))
        .collect();
    let at_once = ctx.config.trajectories_at_once(jobs.len());
    in_lanes(jobs, at_once, ctx.config.threads(), ctx.stop, |kind| {
        report_end(ctx.events, kind, run(kind), ctx.stop, &failed)
    });
    failed.into_inner()
}

/// Runs every job in at most `at_once` lanes, the costliest first (the longest do not
/// start last and leave a tail computing alone on a machine the others no longer use);
/// equal costs start in their given order; once `stop` is set no job starts. With no
/// more lanes than `threads`, each lane computes on its own rayon pool of its share of
/// the threads: on one shared pool a trajectory's share follows the length of its
/// parallel calls, which starves those of many short calls (GLD Hessian's Lanczos) for
/// as long as a trajectory of long calls runs beside them.
pub fn in_lanes<J: Send>(
    mut jobs: Vec<(f64, J)>,
    at_once: usize,
    threads: usize,
    stop: &AtomicBool,
    run: impl Fn(J) + Sync,
) {
    // Equal costs keep their given order.
    jobs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let lanes = at_once.clamp(1, jobs.len().max(1));
    let queue = std::sync::Mutex::new(
        jobs.into_iter()
            .map(|j| j.1)
            .collect::<std::collections::VecDeque<J>>(),
    );
    let pools: Vec<Option<rayon::ThreadPool>> = (0..lanes)
        .map(|lane| {
            (lanes <= threads).then(|| {
                // The remainder goes to the first lanes, which take the costliest jobs.
                let share = threads / lanes + usize::from(lane < threads % lanes);
                rayon::ThreadPoolBuilder::new()
                    .num_threads(share)
                    .thread_name(move |i| format!("lane-{lane}-{i}"))
                    .build()
                    .ok()
            })?
        })
        .collect();
    std::thread::scope(|scope| {
        for pool in &pools {
            let (queue, run) = (&queue, &run);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // The lock is released before the job runs.
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    match (next, pool) {
                        (Some(job), Some(pool)) => pool.install(|| run(job)),
                        (Some(job), None) => run(job),
                        (None, _) => break,
                    }
                }
            });
        }
    });
}

/// " (interrupted: finished trajectories only)" after a result table's heading, unless
/// the run finished.
pub(crate) fn partial(status: RunStatus) -> String {
    if status == RunStatus::Finished {
        String::new()
    } else {
        format!(" ({}: finished trajectories only)", status.key())
    }
}

/// What an experiment measures at θ_t: `Some(values)` when step t is on its schedule.
pub(crate) type Measured = Option<Vec<(Metric, f64)>>;

/// Follows one trajectory through the engine: stops it when asked, publishes what
/// `measure` returns at iteration `offset + t` (the record's numbering), publishes its
/// progress about once a second and at every measurement, and checkpoints it with its
/// measurement stream every `record.checkpoint_every` steps.
pub(crate) struct Tracker<'a, F> {
    pub ctx: &'a RunContext<'a>,
    pub kind: DynamicsKind,
    pub replicate: usize,
    /// The record's iteration of step 0.
    pub offset: usize,
    /// Steps of this trajectory, and its measurement schedule (every this many steps,
    /// 0: never), for the progress shown.
    pub steps: usize,
    pub measure_every: usize,
    /// `Some` for a phase every trajectory waits for ("GD phase").
    pub phase: Option<&'static str>,
    /// The experiment's own measurement stream (probes, random batches).
    pub rng: ChaCha12Rng,
    pub measure: F,
    pub last_progress: Option<std::time::Instant>,
}

/// Shortest interval between two progress events of one trajectory while it steps.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What a measurement is computing, published as the trajectory's progress (so a
/// measurement of minutes says what it is doing). Cheap to copy into closures.
#[derive(Clone, Copy)]
pub(crate) struct Say<'a> {
    ctx: &'a RunContext<'a>,
    kind: DynamicsKind,
    replicate: usize,
    phase: Option<&'static str>,
    step: usize,
    steps: usize,
    offset: usize,
    measure_every: usize,
}

impl Say<'_> {
    pub fn task(&self, task: Task) {
        self.ctx.events.send(Event::Progress(Progress {
            dynamics: self.kind,
            replicate: self.replicate,
            phase: self.phase.map(str::to_string),
            step: self.step as u64,
            steps: self.steps as u64,
            offset: self.offset as u64,
            measure_every: self.measure_every as u64,
            elapsed_s: self.ctx.clock.elapsed().as_secs_f64(),
            task,
            // Only the CPU kernels charge their pool jobs (`cpu.rs`); candle's threads
            // and a GPU's work are invisible to the worker's account.
            cpu_s: self
                .ctx
                .config
                .device
                .is_cpu()
                .then(crate::cpu::thread_seconds)
                .flatten(),
        }));
    }

    /// The measurement is now computing `what`.
    pub fn measuring(&self, what: impl Into<String>) {
        self.task(Task::Measuring(what.into()))
    }
}

impl<O, F> Observer<O> for Tracker<'_, F>
where
    O: Objective + ?Sized,
    F: for<'s> FnMut(
        usize,
        &mut AtPoint<'_, O>,
        &mut NoiseModel,
        &mut ChaCha12Rng,
        Say<'s>,
    ) -> Result<Measured>,
{
    fn observe(&mut self, t: usize, at: &mut AtPoint<'_, O>, noise: &mut NoiseModel) -> Result<()> {
        if self.ctx.stopping() {
            return Err(Error::Stopped);
        }
        let measuring = self.measure_every > 0 && t.is_multiple_of(self.measure_every);
        let say = self.say(t);
        if measuring {
            say.measuring("metrics");
        }
        if let Some(values) = (self.measure)(t, at, noise, &mut self.rng, say)? {
            self.publish(self.offset + t, values);
        }
        let due = self
            .last_progress
            .is_none_or(|last| last.elapsed() >= PROGRESS_INTERVAL);
        if measuring || due {
            self.say(t).task(Task::Steps);
            self.last_progress = Some(std::time::Instant::now());
        }
        Ok(())
    }

    fn checkpoint_every(&self) -> usize {
        self.ctx.checkpoint_every()
    }

    fn checkpoint(&mut self, step: usize, mut checkpoint: Checkpoint) -> Result<()> {
        checkpoint.iteration = self.offset + step;
        checkpoint.measurements = Some(self.rng.clone());
        self.ctx.events.send(Event::Checkpoint {
            dynamics: self.kind,
            replicate: self.replicate,
            checkpoint: Arc::new(checkpoint),
        });
        Ok(())
    }
}

impl<'a, F> Tracker<'a, F> {
    /// A tracker of trajectory (`kind`, `replicate`): `steps` steps measured every
    /// `measure_every`, its step 0 at the record's iteration `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'a RunContext<'a>,
        kind: DynamicsKind,
        replicate: usize,
        offset: usize,
        steps: usize,
        measure_every: usize,
        rng: ChaCha12Rng,
        measure: F,
    ) -> Self {
        Tracker {
            ctx,
            kind,
            replicate,
            offset,
            steps,
            measure_every,
            phase: None,
            rng,
            measure,
            last_progress: None,
        }
    }

    /// Progress reports at step `step`.
    pub fn say(&self, step: usize) -> Say<'a> {
        Say {
            ctx: self.ctx,
            kind: self.kind,
            replicate: self.replicate,
            phase: self.phase,
            step,
            steps: self.steps,
            offset: self.offset,
            measure_every: self.measure_every,
        }
    }

    /// Ends the trajectory: a divergence is reported as such, otherwise `measure_final`
    /// measures its last θ (published at its last iteration); then it is marked finished.
    pub fn finish(
        &mut self,
        end: &crate::engine::Trajectory,
        measure_final: impl FnOnce(&[f64], &mut ChaCha12Rng, Say<'a>) -> Result<Vec<(Metric, f64)>>,
    ) -> Result<()> {
        let say = self.say(self.steps);
        let iteration = self.offset + self.steps;
        let rng = &mut self.rng;
        let (ctx, kind, replicate) = (self.ctx, self.kind, self.replicate);
        end_trajectory(ctx.events, kind, replicate, end, self.offset, |theta| {
            say.measuring("metrics");
            let values = measure_final(theta, rng, say)?;
            ctx.events.send(Event::Metrics {
                dynamics: kind,
                replicate,
                iteration: iteration as u64,
                values,
            });
            say.task(Task::Steps);
            Ok(())
        })
    }

    pub fn publish(&self, iteration: usize, values: Vec<(Metric, f64)>) {
        self.ctx.events.send(Event::Metrics {
            dynamics: self.kind,
            replicate: self.replicate,
            iteration: iteration as u64,
            values,
        });
    }

    /// Where this trajectory starts: its latest checkpoint within
    /// `offset .. offset + steps` (the measurement stream restored with it), or `fresh`.
    pub fn start(
        &mut self,
        spec: NoiseSpec,
        steps: usize,
        dim: usize,
        fresh: impl FnOnce(NoiseSpec) -> Start,
    ) -> Result<Start> {
        let range = self.offset..self.offset + steps;
        match self.ctx.checkpoint(self.kind, self.replicate)? {
            Some(c) if range.contains(&c.iteration) => {
                if c.theta.len() != dim {
                    return Err(Error::unreadable(
                        crate::record::checkpoint::path(
                            self.ctx.run_dir,
                            self.kind,
                            self.replicate,
                        ),
                        format!(
                            "holds {} parameters; this run's model has {dim}",
                            c.theta.len()
                        ),
                    ));
                }
                let step = c.iteration - self.offset;
                self.ctx.events.log(
                    Some(self.kind),
                    format!(
                        "replicate {}: continuing from its checkpoint at iteration {}",
                        self.replicate, c.iteration
                    ),
                );
                let (start, rng) = engine::resume(c, spec, step);
                if let Some(rng) = rng {
                    self.rng = rng;
                }
                Ok(start)
            }
            _ => Ok(fresh(spec)),
        }
    }
}

/// Ends one trajectory: a divergence is reported as such, otherwise `measure_final`
/// publishes the measurements at its last θ; then the trajectory is marked finished.
pub(crate) fn end_trajectory(
    events: &EventSender,
    kind: DynamicsKind,
    replicate: usize,
    end: &crate::engine::Trajectory,
    offset: usize,
    measure_final: impl FnOnce(&[f64]) -> Result<()>,
) -> Result<()> {
    match &end.diverged {
        Some(d) => events.send(Event::Diverged {
            dynamics: kind,
            replicate,
            iteration: (offset + d.iteration) as u64,
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

/// Judges a classifier trajectory's health from its measurements (docs/METHOD.md §6):
/// collapsed when the training loss sits within 5 % of ln C and the training accuracy
/// within 0.05 of 1/C for `COLLAPSE_STREAK` measurements in a row (the network predicts
/// one distribution for every image), healthy again after as many that do not;
/// diverged when the loss is not finite or exceeds 100·ln C (an error the engine ends
/// the trajectory with, the others go on).
pub(crate) struct HealthWatch {
    classes: usize,
    streak: usize,
    collapsed: bool,
}

/// Consecutive measurements that flag (or clear) a collapse.
pub(crate) const COLLAPSE_STREAK: usize = 3;

impl HealthWatch {
    pub fn new(classes: usize) -> Self {
        HealthWatch {
            classes,
            streak: 0,
            collapsed: false,
        }
    }

    /// Looks at one measurement of trajectory (`kind`, `replicate`) at `iteration`;
    /// publishes a change of health, and errs with `Error::Diverged` on an exploding loss.
    pub fn check(
        &mut self,
        events: &EventSender,
        kind: DynamicsKind,
        replicate: usize,
        iteration: usize,
        values: &[(Metric, f64)],
    ) -> Result<()> {
        let get = |m: Metric| values.iter().find(|(k, _)| *k == m).map(|(_, v)| *v);
        let (Some(loss), Some(accuracy)) = (get(Metric::LOSS), get(Metric::TRAIN_ACCURACY)) else {
            return Ok(());
        };
        let ln_c = (self.classes.max(2) as f64).ln();
        if !loss.is_finite() || loss > 100.0 * ln_c {
            return Err(Error::Diverged(format!(
                "training loss {loss:.4e} (exploding: more than 100·ln C = {:.1})",
                100.0 * ln_c
            )));
        }
        let chance = 1.0 / self.classes.max(2) as f64;
        let dead = (loss - ln_c).abs() <= 0.05 * ln_c && (accuracy - chance).abs() <= 0.05;
        if dead == self.collapsed {
            self.streak = 0;
            return Ok(());
        }
        self.streak += 1;
        if self.streak >= COLLAPSE_STREAK {
            self.collapsed = dead;
            self.streak = 0;
            let detail = if dead {
                format!(
                    "training loss {loss:.4} ≈ ln {} = {ln_c:.4} and accuracy {accuracy:.3} ≈ 1/{} for {COLLAPSE_STREAK} measurements: a dead network",
                    self.classes, self.classes
                )
            } else {
                format!("training loss {loss:.4}, accuracy {accuracy:.3}: learning again")
            };
            events.send(Event::Health {
                dynamics: kind,
                replicate,
                iteration: iteration as u64,
                health: if dead {
                    crate::events::Health::Collapsed
                } else {
                    crate::events::Health::Healthy
                },
                detail,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Health;

    fn values(loss: f64, accuracy: f64) -> Vec<(Metric, f64)> {
        vec![(Metric::LOSS, loss), (Metric::TRAIN_ACCURACY, accuracy)]
    }

    #[test]
    fn a_dead_network_is_flagged_after_a_streak_and_cleared_after_another() {
        let (tx, rx) = crate::events::channel(false);
        let mut watch = HealthWatch::new(10);
        let ln10 = 10f64.ln();
        let flags = |rx: &crate::events::EventReceivers| -> Vec<(u64, Health)> {
            rx.recorder
                .try_iter()
                .filter_map(|e| match e {
                    Event::Health {
                        iteration, health, ..
                    } => Some((iteration, health)),
                    _ => None,
                })
                .collect()
        };
        // Learning, then two dead measurements, one alive (the streak restarts) …
        for (t, (l, a)) in [(1.5, 0.5), (ln10, 0.1), (ln10 + 0.01, 0.11), (1.2, 0.6)]
            .into_iter()
            .enumerate()
        {
            watch
                .check(&tx, DynamicsKind::Sgd, 0, t, &values(l, a))
                .unwrap();
        }
        assert!(
            flags(&rx).is_empty(),
            "no flag before {COLLAPSE_STREAK} in a row"
        );
        // … then three dead ones in a row: collapsed, at the third.
        for t in 4..7 {
            watch
                .check(&tx, DynamicsKind::Sgd, 0, t, &values(ln10, 0.1))
                .unwrap();
        }
        assert_eq!(flags(&rx), vec![(6, Health::Collapsed)]);
        // Staying dead says nothing more; learning again for a streak clears it.
        for t in 7..9 {
            watch
                .check(&tx, DynamicsKind::Sgd, 0, t, &values(ln10, 0.1))
                .unwrap();
        }
        for t in 9..12 {
            watch
                .check(&tx, DynamicsKind::Sgd, 0, t, &values(0.9, 0.7))
                .unwrap();
        }
        assert_eq!(flags(&rx), vec![(11, Health::Healthy)]);
        // A loss near ln C with a good accuracy is not a dead network.
        let mut other = HealthWatch::new(10);
        for t in 0..5 {
            other
                .check(&tx, DynamicsKind::Gd, 0, t, &values(ln10, 0.8))
                .unwrap();
        }
        assert!(flags(&rx).is_empty());
    }

    #[test]
    fn an_exploding_or_non_finite_loss_is_a_divergence() {
        let (tx, _rx) = crate::events::channel(false);
        let mut watch = HealthWatch::new(10);
        let limit = 100.0 * 10f64.ln();
        assert!(watch
            .check(&tx, DynamicsKind::Sgd, 0, 0, &values(limit * 0.99, 0.1))
            .is_ok());
        for bad in [limit * 1.01, f64::NAN, f64::INFINITY] {
            match watch.check(&tx, DynamicsKind::Sgd, 0, 1, &values(bad, 0.1)) {
                Err(Error::Diverged(why)) => assert!(why.contains("training loss"), "{why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn lanes_start_the_costliest_first_and_never_exceed_their_number() {
        use std::sync::Mutex;
        let costs = [3.0, 0.5, 7.0, 1.0, 2.0, 7.5, 0.1];
        for at_once in [1, 2, 3, 10] {
            let started = Mutex::new(vec![]);
            let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let jobs = costs.iter().map(|&c| (c, c)).collect();
            let pool_threads = Mutex::new(vec![]);
            in_lanes(jobs, at_once, 2, &AtomicBool::new(false), |cost| {
                pool_threads
                    .lock()
                    .unwrap()
                    .push(rayon::current_num_threads());
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                started.lock().unwrap().push(cost);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            });
            let started = started.into_inner().unwrap();
            assert_eq!(started.len(), costs.len(), "at_once {at_once}");
            let lanes = at_once.min(costs.len());
            assert_eq!(most.into_inner(), lanes, "at_once {at_once}");
            if at_once == 1 {
                assert_eq!(started, vec![7.5, 7.0, 3.0, 2.0, 1.0, 0.5, 0.1]);
            }
            // Whatever the lanes, the costliest are among the first to start.
            assert!(started[..lanes].contains(&7.5), "{started:?}");
            // No more lanes than the 2 threads: each lane on its own pool of its share.
            let pool_threads = pool_threads.into_inner().unwrap();
            let own = match lanes {
                1 => Some(2),
                2 => Some(1),
                _ => None,
            };
            if let Some(n) = own {
                assert!(pool_threads.iter().all(|&t| t == n), "{pool_threads:?}");
            } else {
                let global = rayon::current_num_threads();
                assert!(
                    pool_threads.iter().all(|&t| t == global),
                    "{pool_threads:?}"
                );
            }
        }
    }

    #[test]
    fn lanes_start_nothing_once_stopped() {
        let stop = AtomicBool::new(false);
        let ran = AtomicUsize::new(0);
        let jobs = (0..5).map(|i| (i as f64, i)).collect();
        in_lanes(jobs, 1, 2, &stop, |i| {
            ran.fetch_add(1, Ordering::SeqCst);
            if i == 3 {
                stop.store(true, Ordering::SeqCst);
            }
        });
        // 4 then 3 ran; 3 asked to stop.
        assert_eq!(ran.into_inner(), 2);
    }
}
