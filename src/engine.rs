//! The one update loop shared by all eight dynamics (SPEC §2):
//! θ_{t+1} = θ_t − η·g0(θ_t) + n_t.

use crate::dynamics::{NoiseModel, NoiseState};
use crate::estimators::AtPoint;
use crate::linalg::axpy;
use crate::objective::Objective;
use crate::Result;

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

/// What continuing a trajectory needs: θ after `iteration` completed steps and the
/// noise's state at that moment (RNG positions, current factor).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub iteration: usize,
    pub theta: Vec<f64>,
    pub noise: NoiseState,
}

/// Runs `iterations` steps from `theta0`. Before each update, `observe(t, at, noise)`
/// sees θ_t through the estimates cached at that point (anything the noise computed is
/// reused, nothing is computed twice) and the noise already drawn for step t.
pub fn run<O, F>(
    objective: &O,
    theta0: Vec<f64>,
    eta: f64,
    iterations: usize,
    noise: &mut NoiseModel,
    observe: F,
) -> Result<Trajectory>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel) -> Result<()>,
{
    run_segment(
        objective,
        theta0,
        0..iterations,
        eta,
        noise,
        observe,
        None,
        |_| Ok(()),
    )
}

/// Runs steps `steps.start .. steps.end` from `theta` (θ after `steps.start` steps, e.g.
/// from a [`Checkpoint`] with its noise restored). Every `checkpoint_every` completed
/// steps, `on_checkpoint` receives what continuing needs: a run cut there and resumed
/// gives bitwise the same trajectory as one that never stopped.
#[allow(clippy::too_many_arguments)]
pub fn run_segment<O, F, C>(
    objective: &O,
    theta: Vec<f64>,
    steps: std::ops::Range<usize>,
    eta: f64,
    noise: &mut NoiseModel,
    mut observe: F,
    checkpoint_every: Option<usize>,
    mut on_checkpoint: C,
) -> Result<Trajectory>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel) -> Result<()>,
    C: FnMut(Checkpoint) -> Result<()>,
{
    let mut theta = theta;
    let iterations = steps.end;
    for t in steps {
        let (direction, n) = {
            let mut at = AtPoint::new(objective, &theta);
            let direction = noise.descent_direction(&mut at)?;
            let n = noise.sample(t, &mut at)?;
            observe(t, &mut at, noise)?;
            (direction, n)
        };
        if let Some(bad) = direction.iter().copied().find(|g| !g.is_finite()) {
            return Ok(Trajectory {
                theta,
                iterations: t,
                diverged: Some(Divergence {
                    iteration: t,
                    reason: format!("gradient component {bad}"),
                }),
            });
        }
        axpy(-eta, &direction, &mut theta);
        if let Some(n) = n {
            axpy(1.0, &n, &mut theta);
        }
        if let Some(bad) = theta.iter().copied().find(|x| !x.is_finite()) {
            return Ok(Trajectory {
                theta,
                iterations: t + 1,
                diverged: Some(Divergence {
                    iteration: t,
                    reason: format!("parameter became {bad}"),
                }),
            });
        }
        if checkpoint_every.is_some_and(|every| every > 0 && (t + 1) % every == 0) {
            on_checkpoint(Checkpoint {
                iteration: t + 1,
                theta: theta.clone(),
                noise: noise.state(),
            })?;
        }
    }
    Ok(Trajectory {
        theta,
        iterations,
        diverged: None,
    })
}
