//! The one-hidden-layer protocol of SPEC §4.2 (Fig. 2): for each hidden width, the
//! configured dynamics (SGD by default) train the network from the same data, and every
//! `metrics_every` iterations Tr(HΣ), the isotropic Tr(HΣ̄) = Tr H·Tr Σ / D, their ratio,
//! the loss and the training accuracy are published. Σ comes from `sigma_batches` random
//! minibatch gradients of size `sigma_batch_size` (scaled to per-sample units), Tr H from
//! Hutchinson probes, Tr(HΣ) from one HVP per centred gradient (SPEC §3).

use super::{end_trajectory, report_end, Tokens};
use crate::config::{Config, OneHiddenConfig, OneHiddenOptimizer, PointsLayout};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::estimators::covariance::GradientCovariance;
use crate::estimators::trace::hutchinson;
use crate::events::{Event, EventSender, Metric};
use crate::models::one_hidden::{OneHidden, SeparableData};
use crate::objective::Objective;
use crate::optim::{linear_decay, Adam};
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rand::seq::index::sample;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The metrics this experiment reports, in display order.
pub const METRICS: [Metric; 5] = [
    Metric::IsotropyRatio,
    Metric::TrHSigma,
    Metric::TrHSigmaIso,
    Metric::Loss,
    Metric::TrainAccuracy,
];

/// Names of the replicates: one per width.
pub fn labels(cfg: &OneHiddenConfig) -> Vec<String> {
    cfg.widths.iter().map(|h| format!("h = {h}")).collect()
}

/// The network of width index `w`, on the run's data set (the same for every width).
pub fn objective(config: &Config, w: usize) -> Result<OneHidden> {
    let cfg = config.one_hidden();
    let mut data_rng = rng::stream(config.seed, 0, Purpose::Data);
    let data = match cfg.points {
        PointsLayout::Separable => SeparableData::draw(cfg.samples, cfg.margin, &mut data_rng),
        PointsLayout::Diagonal => SeparableData::draw_diagonal(cfg.samples, &mut data_rng),
    };
    OneHidden::with(&data, cfg.widths[w], cfg.output_weights, cfg.loss)
}

/// θ_0 of width index `w` (PyTorch's default initialisation), the same for every dynamics.
pub fn initial_theta(config: &Config, w: usize) -> Vec<f64> {
    let mut init_rng = rng::stream(config.seed, 1 + w as u64, Purpose::Data);
    OneHidden::init_theta(config.one_hidden().widths[w], &mut init_rng)
}

/// Loss, training accuracy, Tr(HΣ), Tr(HΣ̄) and their ratio at θ.
pub fn measure<R: Rng>(
    model: &OneHidden,
    theta: &[f64],
    cfg: &OneHiddenConfig,
    rng: &mut R,
) -> Result<Vec<(Metric, f64)>> {
    let n = model.num_samples();
    let b = cfg.sigma_batch_size;
    let indices: Vec<usize> = (0..cfg.sigma_batches)
        .flat_map(|_| sample(&mut *rng, n, b).into_vec())
        .collect();
    // Minibatch gradients have covariance Σ/b: scaled back to per-sample units.
    let sigma = GradientCovariance::minibatches(model.batch_gradients(theta, &indices, b)?)?
        .scaled(b as f64);
    let tr_h_sigma = sigma.tr_h(|v| model.hvp(theta, v))?;
    let tr_h = hutchinson(
        model.dim(),
        |v| model.hvp(theta, v),
        cfg.trace_probes,
        rng.random(),
    )?;
    let iso = tr_h.value * sigma.trace() / model.dim() as f64;
    Ok(vec![
        (Metric::IsotropyRatio, tr_h_sigma / iso),
        (Metric::TrHSigma, tr_h_sigma),
        (Metric::TrHSigmaIso, iso),
        (Metric::Loss, model.loss(theta)?),
        (Metric::TrainAccuracy, model.accuracy(theta)?),
    ])
}

/// The released recipe's trajectory: full-batch Adam with learning rate `eta`, decaying
/// linearly over the last `decay_last` iterations. `observe(t, θ_t)` sees every iterate.
fn train_adam(
    model: &OneHidden,
    theta0: Vec<f64>,
    cfg: &OneHiddenConfig,
    mut observe: impl FnMut(usize, &[f64]) -> Result<()>,
) -> Result<engine::Trajectory> {
    let mut theta = theta0;
    let mut adam = Adam::new(theta.len());
    for t in 0..cfg.iterations {
        observe(t, &theta)?;
        let (_, g) = model.loss_and_gradient(&theta)?;
        adam.step(
            &mut theta,
            &g,
            linear_decay(cfg.eta, t, cfg.iterations, cfg.decay_last),
        );
        if let Some(bad) = theta.iter().find(|x| !x.is_finite()) {
            return Ok(engine::Trajectory {
                iterations: t + 1,
                diverged: Some(engine::Divergence {
                    iteration: t,
                    reason: format!("parameter became {bad}"),
                }),
                theta,
            });
        }
    }
    Ok(engine::Trajectory {
        theta,
        iterations: cfg.iterations,
        diverged: None,
    })
}

/// One dynamics on one width, publishing its measurements.
pub fn run_one(
    config: &Config,
    kind: DynamicsKind,
    w: usize,
    events: &EventSender,
    stop: &AtomicBool,
) -> Result<()> {
    let cfg = config.one_hidden();
    let model = objective(config, w)?;
    let mut noise = NoiseModel::new(config.noise.spec(kind, cfg.eta), config.seed, w as u64);
    let mut measure_rng = rng::stream(config.seed, w as u64, Purpose::Measurements(kind));
    let publish =
        |iteration: usize, theta: &[f64], rng: &mut rand_chacha::ChaCha12Rng| -> Result<()> {
            events.send(Event::Metrics {
                dynamics: kind,
                replicate: w,
                iteration: iteration as u64,
                values: measure(&model, theta, &cfg, rng)?,
            });
            Ok(())
        };
    let theta0 = initial_theta(config, w);
    let end = match cfg.optimizer {
        OneHiddenOptimizer::Dynamics => engine::run(
            &model,
            theta0,
            cfg.eta,
            cfg.iterations,
            &mut noise,
            |t, at, _| {
                if stop.load(Ordering::Relaxed) {
                    return Err(Error::Stopped);
                }
                if t % cfg.metrics_every == 0 {
                    publish(t, at.theta(), &mut measure_rng)?;
                }
                Ok(())
            },
        )?,
        OneHiddenOptimizer::Adam => train_adam(&model, theta0, &cfg, |t, theta| {
            if stop.load(Ordering::Relaxed) {
                return Err(Error::Stopped);
            }
            if t % cfg.metrics_every == 0 {
                publish(t, theta, &mut measure_rng)?;
            }
            Ok(())
        })?,
    };
    end_trajectory(events, kind, w, &end, |theta| {
        publish(cfg.iterations, theta, &mut measure_rng)
    })
}

/// One worker per dynamics; its widths run side by side, at most `threads` at a time.
/// (dynamics, width index) pairs in `skip` are already recorded (a resumed run).
pub fn run_live(
    config: &Config,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
) -> Result<usize> {
    let widths = config.one_hidden().widths.len();
    let failed = AtomicUsize::new(0);
    let tokens = Tokens::new(config.threads());
    std::thread::scope(|scope| {
        for &kind in &config.dynamics {
            let (failed, tokens) = (&failed, &tokens);
            scope.spawn(move || {
                let results: Vec<Result<()>> = std::thread::scope(|inner| {
                    let handles: Vec<_> = (0..widths)
                        .filter(|&w| !skip.contains(&(kind, w)))
                        .map(|w| {
                            inner.spawn(move || {
                                tokens.run(|| run_one(config, kind, w, events, stop))
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::Numerics("a worker panicked".into()))
                            })
                        })
                        .collect()
                });
                // A real error outranks a stop.
                let outcome = results
                    .into_iter()
                    .filter(Result::is_err)
                    .reduce(|a, b| {
                        if matches!(a, Err(Error::Stopped)) {
                            b
                        } else {
                            a
                        }
                    })
                    .unwrap_or(Ok(()));
                report_end(events, kind, outcome, stop, failed);
            });
        }
    });
    Ok(failed.into_inner())
}
