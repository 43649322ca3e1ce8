//! Experiment protocols (docs/METHOD.md §4), one module each, the registry that names
//! them, and what their workers share.

pub mod classification;

use crate::dynamics::{DynamicsKind, NoiseModel, NoiseSpec};
use crate::engine::{self, Checkpoint, Observer, Start};
use crate::estimators::AtPoint;
use crate::events::{Event, EventSender, Metric, RunStatus};
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
/// `measure` returns at iteration `offset + t` (the record's numbering), and
/// checkpoints it with its measurement stream every `record.checkpoint_every` steps.
pub(crate) struct Tracker<'a, F> {
    pub ctx: &'a RunContext<'a>,
    pub kind: DynamicsKind,
    pub replicate: usize,
    /// The record's iteration of step 0.
    pub offset: usize,
    /// The experiment's own measurement stream (probes, random batches).
    pub rng: ChaCha12Rng,
    pub measure: F,
}

impl<O, F> Observer<O> for Tracker<'_, F>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel, &mut ChaCha12Rng) -> Result<Measured>,
{
    fn observe(&mut self, t: usize, at: &mut AtPoint<'_, O>, noise: &mut NoiseModel) -> Result<()> {
        if self.ctx.stopping() {
            return Err(Error::Stopped);
        }
        if let Some(values) = (self.measure)(t, at, noise, &mut self.rng)? {
            self.publish(self.offset + t, values);
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

impl<F> Tracker<'_, F> {
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
