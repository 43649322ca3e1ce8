//! The toy protocol of docs/METHOD.md §4.1 (Fig. 1): `seeds` replicates × the
//! configured dynamics, all from w = (1, 1), spread over the worker threads. Each
//! (replicate, dynamics) job is self-contained (its own data stream and noise stream),
//! so results do not depend on scheduling. A replicate takes milliseconds: it is the
//! unit of work a resume skips (no mid-replicate checkpoints).

use super::{report_end, Section, Tokens};
use crate::config::{at_least, check, positive, Config, Invalid};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::events::{
    self, Event, EventSender, Metric, NamedArray, Plane, ReplicateSpectrum, ReplicateSummary,
};
use crate::events::{RunStatus, SpectrumOf};
use crate::experiment::{Experiment, Outline, RunContext};
use crate::linalg::symmetric_eigen;
use crate::models::toy2d::Toy2d;
use crate::record::state::RecordState;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Toy2dConfig {
    /// Independent replicates (data set + noise), each from its own RNG streams.
    pub seeds: usize,
    /// N data points per replicate.
    pub samples: usize,
    pub eta: f64,
    pub iterations: usize,
    pub start: [f64; 2],
    /// φ in radians.
    pub angle: f64,
    /// The data spread: x = data_scale·(√10·z1, z2)·K.
    pub data_scale: f64,
    /// Success = both final coordinates below this (the released code's −0.5).
    pub success_below: f64,
}

impl Default for Toy2dConfig {
    fn default() -> Self {
        Toy2dConfig {
            seeds: 100,
            samples: 100,
            eta: 0.005,
            iterations: 500,
            start: [1.0, 1.0],
            angle: std::f64::consts::FRAC_PI_4,
            data_scale: 0.01,
            success_below: -0.5,
        }
    }
}

impl Toy2dConfig {
    fn check(&self, config: &Config) -> Result<(), Invalid> {
        at_least("toy2d.seeds", self.seeds, 1)?;
        at_least("toy2d.samples", self.samples, 2)?;
        at_least("toy2d.iterations", self.iterations, 1)?;
        positive("toy2d.eta", self.eta)?;
        positive("toy2d.data_scale", self.data_scale)?;
        check(
            self.angle.is_finite(),
            "toy2d.angle",
            self.angle,
            "a finite angle in radians",
        )?;
        check(
            self.success_below.is_finite(),
            "toy2d.success_below",
            self.success_below,
            "a finite number",
        )?;
        for (i, s) in self.start.iter().enumerate() {
            check(
                s.is_finite(),
                &format!("toy2d.start[{i}]"),
                s,
                "a finite number",
            )?;
        }
        let n = &config.noise;
        check(
            n.batch_size <= self.samples,
            "noise.batch_size",
            n.batch_size,
            &format!("at most toy2d.samples = {}", self.samples),
        )?;
        let dim = 2;
        for (kind, key, k) in [
            (
                DynamicsKind::GldLeading,
                "noise.gld_leading.k",
                n.gld_leading.k,
            ),
            (
                DynamicsKind::GldHessian,
                "noise.gld_hessian.k",
                n.gld_hessian.k,
            ),
        ] {
            if config.dynamics.contains(&kind) {
                check(k <= dim, key, k, &format!("at most D = {dim} for the toy"))?;
            }
        }
        Ok(())
    }
}

/// One (replicate, dynamics) run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToyRun {
    /// Which replicate (seed index) this is.
    pub replicate: usize,
    /// θ_0 … θ_T as [w1, w2] pairs (T + 1 points unless diverged).
    pub trajectory: Vec<[f64; 2]>,
    /// Tr(H_t·Cov n_t) for t = 0 … T−1: this dynamics' noise against the curvature (Fig. 1c).
    pub tr_h_noise: Vec<f64>,
    /// Tr(H_t·Σ_t) with Σ_t the per-sample gradient covariance at θ_t (SGD's indicator).
    pub tr_h_sigma: Vec<f64>,
    /// Tr(H_t)·Tr(Σ_t)/D, the isotropic reference Tr(H_t·Σ̄_t).
    pub tr_h_sigma_iso: Vec<f64>,
    /// L(θ_t) for t = 0 … T−1.
    pub loss: Vec<f64>,
    /// Eigenvalues (descending) of H and of Cov n at the last iteration.
    pub last_hessian_eigenvalues: Vec<f64>,
    pub last_noise_eigenvalues: Vec<f64>,
    pub success: bool,
    pub diverged: Option<engine::Divergence>,
}

/// All replicates of one dynamics.
#[derive(Clone, Debug, PartialEq)]
pub struct ToySeries {
    pub kind: DynamicsKind,
    /// Indexed by replicate.
    pub runs: Vec<ToyRun>,
}

impl ToySeries {
    pub fn successes(&self) -> usize {
        self.runs.iter().filter(|r| r.success).count()
    }

    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|r| r.diverged.is_some()).count()
    }

    pub fn success_rate(&self) -> f64 {
        rate(self.successes(), self.runs.len())
    }

    pub fn success_stderr(&self) -> f64 {
        stderr(self.successes(), self.runs.len())
    }
}

/// Over the finished replicates (0 when none finished).
fn rate(successes: usize, n: usize) -> f64 {
    successes as f64 / n.max(1) as f64
}

/// Binomial standard error of the success rate.
fn stderr(successes: usize, n: usize) -> f64 {
    let p = rate(successes, n);
    (p * (1.0 - p) / n as f64).sqrt()
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToyOutcome {
    pub toy: Toy2dConfig,
    pub series: Vec<ToySeries>,
}

impl ToyOutcome {
    /// The Fig. 1b table.
    pub fn table(&self) -> String {
        let rows = self.series.iter().map(|s| Row {
            kind: s.kind,
            successes: s.successes(),
            seeds: s.runs.len(),
            diverged: s.diverged(),
            initial_tr_h_noise: mean(s.runs.iter().filter_map(|r| r.tr_h_noise.first())),
        });
        table(rows)
    }
}

/// One line of the Fig. 1b table.
struct Row {
    kind: DynamicsKind,
    successes: usize,
    seeds: usize,
    diverged: usize,
    /// Mean over replicates of Tr(H_0·Cov n_0), the indicator at the start.
    initial_tr_h_noise: f64,
}

fn mean<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn table(rows: impl Iterator<Item = Row>) -> String {
    let mut out = format!(
        "{:<18} {:>9} {:>8} {:>8} {:>14}\n",
        "dynamics", "escaped", "rate", "± s.e.", "Tr(H·Cov n)₀"
    );
    for r in rows {
        out += &format!(
            "{:<18} {:>9} {:>8.3} {:>8.3} {:>14.4e}{}\n",
            r.kind.label(),
            format!("{}/{}", r.successes, r.seeds),
            rate(r.successes, r.seeds),
            stderr(r.successes, r.seeds),
            r.initial_tr_h_noise,
            if r.diverged > 0 {
                format!("  ({} diverged)", r.diverged)
            } else {
                String::new()
            }
        );
    }
    out
}

/// The objective of replicate `replicate`: its N points from the data stream.
pub fn objective(config: &Config, replicate: usize) -> Toy2d {
    let toy = settings(config);
    let mut data_rng = rng::stream(config.seed, replicate as u64, Purpose::Data);
    let samples = Toy2d::draw_samples(toy.samples, toy.data_scale, toy.angle, &mut data_rng);
    Toy2d::new(samples, toy.angle)
}

fn settings(config: &Config) -> &Toy2dConfig {
    config
        .settings::<Toy2dConfig>()
        .expect("a toy2d config")
}

/// Runs one dynamics on one replicate.
pub fn run_one(config: &Config, replicate: usize, kind: DynamicsKind) -> Result<ToyRun> {
    let toy = settings(config);
    let objective = objective(config, replicate);
    let mut noise = NoiseModel::new(config.noise.spec(kind, toy.eta), config.seed, replicate as u64);
    let iterations = toy.iterations;
    let mut trajectory = Vec::with_capacity(iterations + 1);
    let mut tr_h_noise = Vec::with_capacity(iterations);
    let mut tr_h_sigma = Vec::with_capacity(iterations);
    let mut tr_h_sigma_iso = Vec::with_capacity(iterations);
    let mut loss = Vec::with_capacity(iterations);
    let (mut last_hessian_eigenvalues, mut last_noise_eigenvalues) = (Vec::new(), Vec::new());
    let end = engine::run(
        &objective,
        toy.start.to_vec(),
        iterations,
        &mut noise,
        |t, at, noise| {
            let theta = at.theta();
            trajectory.push([theta[0], theta[1]]);
            loss.push(at.loss_and_gradient()?.0);
            let h = at.hessian()?.clone();
            tr_h_noise.push(noise.tr_h_noise(at, &h)?);
            let sigma = at.sigma()?;
            tr_h_sigma.push(sigma.tr_h_dense(&h));
            tr_h_sigma_iso.push(h.trace() * sigma.trace() / 2.0);
            if t + 1 == iterations {
                last_hessian_eigenvalues = symmetric_eigen(h).values;
                last_noise_eigenvalues = symmetric_eigen(noise.covariance_dense(at)?).values;
            }
            Ok(())
        },
    )?;
    trajectory.push([end.theta[0], end.theta[1]]);
    let success = end.diverged.is_none() && end.theta.iter().all(|&w| w < toy.success_below);
    Ok(ToyRun {
        replicate,
        trajectory,
        tr_h_noise,
        tr_h_sigma,
        tr_h_sigma_iso,
        loss,
        last_hessian_eigenvalues,
        last_noise_eigenvalues,
        success,
        diverged: end.diverged,
    })
}

/// Runs the experiment and collects its outcome (tests, benches): the same workers as a
/// live run, the replicates gathered instead of published.
pub fn run(config: &Config) -> Result<ToyOutcome> {
    let (events, _receivers) = events::channel(false);
    let gathered = std::sync::Mutex::new(Vec::new());
    let failed = run_workers(config, &events, &AtomicBool::new(false), &|_, _| false, &|kind, run| {
        gathered.lock().expect("no worker panics holding it").push((kind, run));
    });
    if failed > 0 {
        return Err(Error::Numerics(format!("{failed} dynamics failed")));
    }
    let mut gathered = gathered.into_inner().expect("workers are done");
    gathered.sort_by_key(|(kind, run)| (kind.index(), run.replicate));
    let toy = settings(config).clone();
    let series = config
        .dynamics
        .iter()
        .map(|&kind| ToySeries {
            kind,
            runs: gathered
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, r)| r.clone())
                .collect(),
        })
        .collect();
    Ok(ToyOutcome { toy, series })
}

/// One worker thread per dynamics, all running at once; at most `config.threads()`
/// replicates compute at any moment (a pool of tokens, handed out in turn, so every
/// dynamics advances together). Checks `stop` between replicates; skips those `skip`
/// says are done; hands each finished one to `deliver`. Per-dynamics errors are
/// published as [`Event::Failed`] and do not stop the other dynamics; returns how many
/// failed.
fn run_workers(
    config: &Config,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &(dyn Fn(DynamicsKind, usize) -> bool + Sync),
    deliver: &(dyn Fn(DynamicsKind, ToyRun) + Sync),
) -> usize {
    let seeds = settings(config).seeds;
    let failed = AtomicUsize::new(0);
    let tokens = Tokens::new(config.trajectories_at_once(config.threads()));
    std::thread::scope(|scope| {
        for &kind in &config.dynamics {
            let (failed, tokens) = (&failed, &tokens);
            scope.spawn(move || {
                let result = (0..seeds).try_for_each(|replicate| {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || skip(kind, replicate) {
                        return Ok(());
                    }
                    let run = tokens.run(|| run_one(config, replicate, kind))?;
                    deliver(kind, run);
                    Ok::<(), Error>(())
                });
                report_end(events, kind, result, stop, failed);
            });
        }
    });
    failed.into_inner()
}

/// The name of the replicate array that holds θ_0 … θ_T.
const PATH: &str = "trajectories";

impl ToyRun {
    /// What the record stacks and the dashboard averages.
    pub fn summary(&self, success_below: f64) -> ReplicateSummary {
        // θ after step i: at the last iteration this is the success criterion.
        let escaped = (0..self.loss.len())
            .map(|i| {
                let w = self.trajectory.get(i + 1).copied().unwrap_or([f64::NAN; 2]);
                f64::from(u8::from(w[0] < success_below && w[1] < success_below))
            })
            .collect();
        ReplicateSummary {
            replicate: self.replicate,
            success: Some(self.success),
            diverged: self.diverged.is_some(),
            series: vec![
                (Metric::ESCAPED_FRACTION, escaped),
                (Metric::LOSS, self.loss.clone()),
                (Metric::TR_H_NOISE, self.tr_h_noise.clone()),
                (Metric::TR_H_SIGMA, self.tr_h_sigma.clone()),
                (Metric::TR_H_SIGMA_ISO, self.tr_h_sigma_iso.clone()),
            ],
            arrays: vec![NamedArray {
                name: PATH.into(),
                shape: vec![self.trajectory.len(), 2],
                values: self.trajectory.iter().flatten().copied().collect(),
            }],
            spectra: [
                (SpectrumOf::Hessian, &self.last_hessian_eigenvalues),
                (SpectrumOf::Noise, &self.last_noise_eigenvalues),
            ]
            .map(|(of, values)| ReplicateSpectrum {
                of,
                iteration: self.tr_h_noise.len() as u64,
                values: values.clone(),
            })
            .into(),
        }
    }
}

fn publish(events: &EventSender, kind: DynamicsKind, run: ToyRun, success_below: f64) {
    if let Some(d) = &run.diverged {
        events.send(Event::Diverged {
            dynamics: kind,
            replicate: run.replicate,
            iteration: d.iteration as u64,
            reason: d.reason.clone(),
        });
    }
    events.send(Event::ReplicateFinished {
        dynamics: kind,
        summary: Arc::new(run.summary(success_below)),
    });
}

/// The metrics the toy reports, in display order.
pub const METRICS: [Metric; 5] = [
    Metric::ESCAPED_FRACTION,
    Metric::LOSS,
    Metric::TR_H_NOISE,
    Metric::TR_H_SIGMA,
    Metric::TR_H_SIGMA_ISO,
];

/// Points of the sharp basin's edge (where the data-free sharp and flat branches of
/// METHOD.md §4.1 are equal), found by bisection along rays from (1, 1).
fn basin_edge() -> Vec<(f64, f64)> {
    let c = std::f64::consts::FRAC_1_SQRT_2;
    let gap = |w: (f64, f64)| {
        let (s1, s2) = (w.0 - 1.0, w.1 - 1.0);
        let sharp = 10.0 * (s1 * c - s2 * c).powi(2) + 100.0 * (s1 * c + s2 * c).powi(2);
        let flat = (w.0 + 1.0).powi(2) + (w.1 + 1.0).powi(2);
        sharp - flat
    };
    (0..360)
        .filter_map(|deg| {
            let a = (deg as f64).to_radians();
            let at = |r: f64| (1.0 + r * a.cos(), 1.0 + r * a.sin());
            let (mut lo, mut hi) = (0.0, 4.0);
            if gap(at(hi)) < 0.0 {
                return None;
            }
            for _ in 0..50 {
                let mid = 0.5 * (lo + hi);
                if gap(at(mid)) < 0.0 {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            Some(at(lo))
        })
        .collect()
}

impl Section for Toy2dConfig {
    const KEY: &'static str = "toy2d";
}

impl Experiment for Toy2dConfig {

    fn validate(&self, config: &Config) -> std::result::Result<(), Invalid> {
        self.check(config)
    }

    fn outline(&self, _config: &Config) -> Outline {
        Outline {
            dim: 2,
            iterations: self.iterations as u64,
            replicates: self.seeds,
            replicate_labels: vec![],
            replicate_noun: "seed",
            metrics: METRICS.iter().map(|m| m.def()).collect(),
            plane: Some(Plane {
                path: PATH.into(),
                outline: basin_edge(),
                marks: vec![
                    (1.0, 1.0, "sharp (1,1)".into()),
                    (-1.0, -1.0, "flat (−1,−1)".into()),
                ],
                success_corner: Some(self.success_below),
                success_label: "escaped to the flat basin".into(),
                bound: 2.2,
            }),
            x_marks: vec![],
            iteration_costs: vec![],
        }
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<usize> {
        let below = self.success_below;
        Ok(run_workers(
            ctx.config,
            ctx.events,
            ctx.stop,
            &|kind, replicate| ctx.finished(kind, replicate),
            &|kind, run| publish(ctx.events, kind, run, below),
        ))
    }

    fn results_text(&self, record: &RecordState, status: RunStatus) -> String {
        let partial = super::partial(status);
        let rows = record.config.dynamics.iter().map(|&kind| {
            let runs = record.replicates(kind);
            Row {
                kind,
                successes: runs.iter().filter(|r| r.success == Some(true)).count(),
                seeds: runs.len(),
                diverged: runs.iter().filter(|r| r.diverged).count(),
                initial_tr_h_noise: mean(
                    runs.iter()
                        .filter_map(|r| r.series(Metric::TR_H_NOISE).and_then(|s| s.first())),
                ),
            }
        });
        format!(
            "Success rate of escaping to the flat basin (Fig. 1b), {} seeds{partial}:\n{}",
            self.seeds,
            table(rows)
        )
    }

    fn summary(&self, record: &RecordState, status: RunStatus) -> Value {
        let mut dynamics = Map::new();
        for &kind in &record.config.dynamics {
            let runs = record.replicates(kind);
            let successes = runs.iter().filter(|r| r.success == Some(true)).count();
            dynamics.insert(
                kind.key().to_string(),
                json!({
                    "label": kind.label(),
                    "success_rate": rate(successes, runs.len()),
                    "success_stderr": stderr(successes, runs.len()),
                    "successes": successes,
                    "seeds": runs.len(),
                    "diverged": runs.iter().filter(|r| r.diverged).count(),
                    "mean_initial_tr_h_noise": mean(runs.iter().filter_map(|r| {
                        r.series(Metric::TR_H_NOISE).and_then(|s| s.first())
                    })),
                }),
            );
        }
        json!({
            "experiment": Self::KEY,
            "status": status.key(),
            "seeds": self.seeds,
            "iterations": self.iterations,
            "dynamics": dynamics,
        })
    }
}
