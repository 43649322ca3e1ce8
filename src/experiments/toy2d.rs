//! The toy protocol of SPEC §4.1: `seeds` replicates × the configured dynamics, all
//! from w = (1, 1), spread over the worker threads. Each (replicate, dynamics) job is
//! self-contained (its own data stream and noise stream), so results do not depend on
//! scheduling.

use crate::config::{Config, Toy2dConfig};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::models::toy2d::Toy2d;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One (replicate, dynamics) run.
#[derive(Clone, Debug, PartialEq)]
pub struct ToyRun {
    /// θ_0 … θ_T as [w1, w2] pairs (T + 1 points unless diverged).
    pub trajectory: Vec<[f64; 2]>,
    /// Tr(H_t·Cov n_t) for t = 0 … T−1: this dynamics' noise against the curvature (Fig. 1c).
    pub tr_h_noise: Vec<f64>,
    /// Tr(H_t·Σ_t) with Σ_t the per-sample gradient covariance at θ_t (SGD's indicator).
    pub tr_h_sigma: Vec<f64>,
    /// L(θ_t) for t = 0 … T−1.
    pub loss: Vec<f64>,
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
        self.successes() as f64 / self.runs.len() as f64
    }

    /// Binomial standard error of the success rate.
    pub fn success_stderr(&self) -> f64 {
        let p = self.success_rate();
        (p * (1.0 - p) / self.runs.len() as f64).sqrt()
    }

    /// Mean over replicates of Tr(H_0·Cov n_0), the indicator at the start.
    pub fn mean_initial_tr_h_noise(&self) -> f64 {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.tr_h_noise.first().copied())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToyOutcome {
    pub toy: Toy2dConfig,
    pub series: Vec<ToySeries>,
}

/// The objective of replicate `replicate`: its N points from the data stream.
pub fn objective(config: &Config, replicate: usize) -> Toy2d {
    let toy = config.toy2d();
    let mut data_rng = rng::stream(config.seed, replicate as u64, Purpose::Data);
    let samples = Toy2d::draw_samples(toy.samples, toy.data_scale, toy.angle, &mut data_rng);
    Toy2d::new(samples, toy.angle)
}

/// Runs one dynamics on one replicate.
pub fn run_one(config: &Config, replicate: usize, kind: DynamicsKind) -> Result<ToyRun> {
    let toy = config.toy2d();
    let objective = objective(config, replicate);
    let spec = config.noise.spec(kind, toy.eta);
    let mut noise = NoiseModel::new(spec, config.seed, replicate as u64);
    let iterations = toy.iterations;
    let mut trajectory = Vec::with_capacity(iterations + 1);
    let mut tr_h_noise = Vec::with_capacity(iterations);
    let mut tr_h_sigma = Vec::with_capacity(iterations);
    let mut loss = Vec::with_capacity(iterations);
    let end = engine::run(
        &objective,
        toy.start.to_vec(),
        toy.eta,
        iterations,
        &mut noise,
        |_, at, noise| {
            let theta = at.theta();
            trajectory.push([theta[0], theta[1]]);
            loss.push(at.loss_and_gradient()?.0);
            let h = at.hessian()?.clone();
            tr_h_noise.push(noise.tr_h_noise(at, &h)?);
            tr_h_sigma.push(at.sigma()?.tr_h_dense(&h));
            Ok(())
        },
    )?;
    trajectory.push([end.theta[0], end.theta[1]]);
    let success = end.diverged.is_none() && end.theta.iter().all(|&w| w < toy.success_below);
    Ok(ToyRun {
        trajectory,
        tr_h_noise,
        tr_h_sigma,
        loss,
        success,
        diverged: end.diverged,
    })
}

/// Runs every (replicate, dynamics) job on `config.threads()` workers.
/// `progress(done, total)` is called from the workers as jobs finish.
pub fn run(config: &Config, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<ToyOutcome> {
    let toy = config.toy2d();
    let jobs: Vec<(DynamicsKind, usize)> = config
        .dynamics
        .iter()
        .flat_map(|&k| (0..toy.seeds).map(move |r| (k, r)))
        .collect();
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads())
        .build()
        .map_err(|e| Error::Numerics(format!("cannot start worker threads: {e}")))?;
    let runs: Vec<ToyRun> = pool.install(|| {
        jobs.par_iter()
            .map(|&(kind, replicate)| {
                let r = run_one(config, replicate, kind);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                r
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut runs = runs.into_iter();
    let series = config
        .dynamics
        .iter()
        .map(|&kind| ToySeries {
            kind,
            runs: runs.by_ref().take(toy.seeds).collect(),
        })
        .collect();
    Ok(ToyOutcome { toy, series })
}

impl ToyOutcome {
    /// The Fig. 1b table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<18} {:>9} {:>8} {:>8} {:>14}\n",
            "dynamics", "escaped", "rate", "± s.e.", "Tr(H·Cov n)₀"
        );
        for s in &self.series {
            out += &format!(
                "{:<18} {:>9} {:>8.3} {:>8.3} {:>14.4e}{}\n",
                s.kind.label(),
                format!("{}/{}", s.successes(), s.runs.len()),
                s.success_rate(),
                s.success_stderr(),
                s.mean_initial_tr_h_noise(),
                if s.diverged() > 0 {
                    format!("  ({} diverged)", s.diverged())
                } else {
                    String::new()
                }
            );
        }
        out
    }
}
