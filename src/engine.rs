//! The one update loop of every phase of every experiment (docs/METHOD.md §2):
//! θ_{t+1} = θ_t − η·g0(θ_t) + n_t for GD, SGD and the six Langevin variants, and the
//! same loop with Adam's step for the released one-hidden recipe. η is the dynamics'
//! own (its [`NoiseSpec`](crate::dynamics::NoiseSpec)), so it cannot disagree with the
//! noise that was matched to it.

use crate::dynamics::{NoiseModel, NoiseState};
use crate::estimators::AtPoint;
use crate::linalg::axpy;
use crate::objective::Objective;
use crate::optim::{linear_decay, Adam};
use crate::{Error, Result};
use rand_chacha::ChaCha12Rng;

/// Why a trajectory stopped early: its θ or its gradient stopped being finite.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Divergence {
    /// The iteration whose update produced the non-finite value.
    pub iteration: usize,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Trajectory {
    /// θ after the last completed iteration.
    pub theta: Vec<f64>,
    /// Completed iterations.
    pub iterations: usize,
    pub diverged: Option<Divergence>,
}

/// How a step turns the descent direction into a move.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRule {
    /// θ ← θ − η·d + n.
    Plain,
    /// θ ← θ − lr_t·m̂/(√v̂ + ε), lr_t = η decaying linearly to 0 over the last
    /// `decay_last` of `total` steps (the released one-hidden recipe, METHOD.md §4.2).
    Adam {
        adam: Adam,
        total: usize,
        decay_last: usize,
    },
}

impl StepRule {
    fn apply(&mut self, t: usize, eta: f64, direction: &[f64], theta: &mut [f64]) {
        match self {
            StepRule::Plain => axpy(-eta, direction, theta),
            StepRule::Adam {
                adam,
                total,
                decay_last,
            } => adam.step(theta, direction, linear_decay(eta, t, *total, *decay_last)),
        }
    }
}

/// What continuing a trajectory needs: θ after `iteration` completed steps, the noise's
/// state at that moment (RNG positions, current factor), the step rule's state, and the
/// experiment's own measurement stream. A run cut at a checkpoint and continued from it
/// gives bitwise the trajectory and measurements of one that never stopped.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// In the record's numbering (an experiment with a phase before this trajectory's
    /// counts from that phase's start).
    pub iteration: usize,
    pub theta: Vec<f64>,
    pub noise: NoiseState,
    pub step: StepRule,
    pub measurements: Option<ChaCha12Rng>,
}

/// Where a trajectory (re)starts.
pub struct Start {
    /// Steps already taken (0, or a checkpoint's step).
    pub step: usize,
    pub theta: Vec<f64>,
    pub noise: NoiseModel,
    pub rule: StepRule,
}

impl Start {
    /// A fresh trajectory with plain steps.
    pub fn plain(theta: Vec<f64>, noise: NoiseModel) -> Self {
        Start {
            step: 0,
            theta,
            noise,
            rule: StepRule::Plain,
        }
    }
}

/// What an experiment does along a trajectory.
pub trait Observer<O: Objective + ?Sized> {
    /// Sees θ_t through the estimates cached at that point (anything the noise computed
    /// is reused, nothing is computed twice) and the noise already drawn for step t.
    fn observe(&mut self, t: usize, at: &mut AtPoint<'_, O>, noise: &mut NoiseModel) -> Result<()>;

    /// Steps between checkpoints (0: none).
    fn checkpoint_every(&self) -> usize {
        0
    }

    /// Receives what continuing after `step` completed steps needs (`iteration` and
    /// `measurements` are the observer's to fill in).
    fn checkpoint(&mut self, _step: usize, _checkpoint: Checkpoint) -> Result<()> {
        Ok(())
    }
}

/// An observer from a closure, without checkpoints.
pub struct Watch<F>(pub F);

impl<O, F> Observer<O> for Watch<F>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel) -> Result<()>,
{
    fn observe(&mut self, t: usize, at: &mut AtPoint<'_, O>, noise: &mut NoiseModel) -> Result<()> {
        (self.0)(t, at, noise)
    }
}

/// Runs `iterations` plain steps from `theta0` with η of the noise's spec; `observe`
/// as in [`Observer::observe`].
pub fn run<O, F>(
    objective: &O,
    theta0: Vec<f64>,
    iterations: usize,
    noise: &mut NoiseModel,
    observe: F,
) -> Result<Trajectory>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel) -> Result<()>,
{
    steps(
        objective,
        0..iterations,
        theta0,
        noise,
        &mut StepRule::Plain,
        &mut Watch(observe),
    )
}

/// Runs steps `start.step .. iterations`. Every `observer.checkpoint_every()` completed
/// steps, the observer receives a [`Checkpoint`]. Returns the trajectory's end and its
/// noise (for measurements at the last θ).
pub fn run_from<O, B>(
    objective: &O,
    start: Start,
    iterations: usize,
    observer: &mut B,
) -> Result<(Trajectory, NoiseModel)>
where
    O: Objective + ?Sized,
    B: Observer<O> + ?Sized,
{
    let Start {
        step,
        theta,
        mut noise,
        mut rule,
    } = start;
    let end = steps(
        objective,
        step..iterations,
        theta,
        &mut noise,
        &mut rule,
        observer,
    )?;
    Ok((end, noise))
}

/// The loop itself.
fn steps<O, B>(
    objective: &O,
    range: std::ops::Range<usize>,
    mut theta: Vec<f64>,
    noise: &mut NoiseModel,
    rule: &mut StepRule,
    observer: &mut B,
) -> Result<Trajectory>
where
    O: Objective + ?Sized,
    B: Observer<O> + ?Sized,
{
    let eta = noise.spec().eta;
    let every = observer.checkpoint_every();
    let iterations = range.end;
    for t in range {
        let (direction, n) = {
            let mut at = AtPoint::new(objective, &theta);
            // The noise first: GLD dynamic and diag estimate Σ from batch gradients that
            // partition the training set, whose mean is the g0 the step needs. Neither
            // call draws from a stream the other uses, so the order changes no draw.
            let n = noise.sample(t, &mut at)?;
            let direction = noise.descent_direction(&mut at)?;
            match observer.observe(t, &mut at, noise) {
                Err(Error::Diverged(reason)) => {
                    drop(at);
                    let diverged = Divergence {
                        iteration: t,
                        reason,
                    };
                    return Ok(end(theta, t, Some(diverged)));
                }
                other => other?,
            }
            (direction, n)
        };
        if let Some(bad) = direction.iter().copied().find(|g| !g.is_finite()) {
            let diverged = Divergence {
                iteration: t,
                reason: format!("gradient component {bad}"),
            };
            return Ok(end(theta, t, Some(diverged)));
        }
        rule.apply(t, eta, &direction, &mut theta);
        if let Some(n) = n {
            axpy(1.0, &n, &mut theta);
        }
        if let Some(bad) = theta.iter().copied().find(|x| !x.is_finite()) {
            let diverged = Divergence {
                iteration: t,
                reason: format!("parameter became {bad}"),
            };
            return Ok(end(theta, t + 1, Some(diverged)));
        }
        if every > 0 && (t + 1) % every == 0 && t + 1 < iterations {
            let checkpoint = Checkpoint {
                iteration: t + 1,
                theta: theta.clone(),
                noise: noise.state(),
                step: rule.clone(),
                measurements: None,
            };
            observer.checkpoint(t + 1, checkpoint)?;
        }
    }
    Ok(end(theta, iterations, None))
}

fn end(theta: Vec<f64>, iterations: usize, diverged: Option<Divergence>) -> Trajectory {
    Trajectory {
        theta,
        iterations,
        diverged,
    }
}

/// Where a checkpointed trajectory goes on: its θ, noise, step rule and step.
pub fn resume(
    checkpoint: Checkpoint,
    spec: crate::dynamics::NoiseSpec,
    step: usize,
) -> (Start, Option<ChaCha12Rng>) {
    (
        Start {
            step,
            theta: checkpoint.theta,
            noise: NoiseModel::restore(spec, checkpoint.noise),
            rule: checkpoint.step,
        },
        checkpoint.measurements,
    )
}
