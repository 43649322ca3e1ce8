//! The one update loop shared by all eight dynamics (SPEC §2):
//! θ_{t+1} = θ_t − η·g0(θ_t) + n_t.

use crate::dynamics::NoiseModel;
use crate::estimators::AtPoint;
use crate::linalg::axpy;
use crate::objective::Objective;
use crate::Result;

/// Why a trajectory stopped early: its θ or its gradient stopped being finite.
#[derive(Clone, Debug, PartialEq)]
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

/// Runs `iterations` steps from `theta0`. Before each update, `observe(t, at, noise)`
/// sees θ_t through the estimates cached at that point (anything the noise computed is
/// reused, nothing is computed twice) and the noise already drawn for step t.
pub fn run<O, F>(
    objective: &O,
    theta0: Vec<f64>,
    eta: f64,
    iterations: usize,
    noise: &mut NoiseModel,
    mut observe: F,
) -> Result<Trajectory>
where
    O: Objective + ?Sized,
    F: FnMut(usize, &mut AtPoint<'_, O>, &mut NoiseModel) -> Result<()>,
{
    let mut theta = theta0;
    for t in 0..iterations {
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
    }
    Ok(Trajectory {
        theta,
        iterations,
        diverged: None,
    })
}
