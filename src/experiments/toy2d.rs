//! The toy protocol of SPEC §4.1: `seeds` replicates × the configured dynamics, all
//! from w = (1, 1), spread over the worker threads. Each (replicate, dynamics) job is
//! self-contained (its own data stream and noise stream), so results do not depend on
//! scheduling.

use super::{report_end, Tokens};
use crate::config::{Config, Toy2dConfig};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine;
use crate::events::{self, Event, EventSender, Metric, SpectrumOf};
use crate::linalg::symmetric_eigen;
use crate::models::toy2d::Toy2d;
use crate::rng::{self, Purpose};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// One (replicate, dynamics) run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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

    /// Over the finished replicates (0 when none finished).
    pub fn success_rate(&self) -> f64 {
        self.successes() as f64 / self.runs.len().max(1) as f64
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
    let mut tr_h_sigma_iso = Vec::with_capacity(iterations);
    let mut loss = Vec::with_capacity(iterations);
    let (mut last_hessian_eigenvalues, mut last_noise_eigenvalues) = (Vec::new(), Vec::new());
    let end = engine::run(
        &objective,
        toy.start.to_vec(),
        toy.eta,
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

/// Runs the experiment and collects its outcome (tests, benches): the same code path
/// as a live run, with the events gathered the way the recorder gathers them.
pub fn run(config: &Config) -> Result<ToyOutcome> {
    let (events, receivers) = events::channel(false);
    run_live(config, &events, &AtomicBool::new(false), &BTreeSet::new())?;
    drop(events);
    let mut assembly = ToyAssembly::new(config);
    for event in receivers.recorder.try_iter() {
        if let Event::Failed { dynamics, error } = &event {
            return Err(Error::Numerics(format!("{dynamics}: {error}")));
        }
        assembly.add(&event);
    }
    Ok(assembly.outcome())
}

/// The live run: one worker thread per dynamics, all running at once; at most
/// `config.threads()` replicates compute at any moment (a pool of tokens, handed out in
/// turn, so every dynamics advances together). Every finished replicate is published as
/// events. Checks `stop` between replicates. Per-dynamics errors are published as
/// [`Event::Failed`] and do not stop the other dynamics; returns how many failed.
/// Replicates in `skip` (already in the record, when resuming) are not run again.
pub fn run_live(
    config: &Config,
    events: &EventSender,
    stop: &AtomicBool,
    skip: &BTreeSet<(DynamicsKind, usize)>,
) -> Result<usize> {
    let toy = config.toy2d();
    let failed = AtomicUsize::new(0);
    let tokens = Tokens::new(config.threads());
    std::thread::scope(|scope| {
        for &kind in &config.dynamics {
            let (toy, failed, tokens) = (&toy, &failed, &tokens);
            scope.spawn(move || {
                let result = (0..toy.seeds).try_for_each(|replicate| {
                    if stop.load(Ordering::Relaxed) || skip.contains(&(kind, replicate)) {
                        return Ok(());
                    }
                    let run = tokens.run(|| run_one(config, replicate, kind))?;
                    publish(events, kind, run);
                    Ok::<(), Error>(())
                });
                report_end(events, kind, result, stop, failed);
            });
        }
    });
    Ok(failed.into_inner())
}

fn publish(events: &EventSender, kind: DynamicsKind, run: ToyRun) {
    let iteration = run.tr_h_noise.len() as u64;
    if let Some(d) = &run.diverged {
        events.send(Event::Diverged {
            dynamics: kind,
            replicate: run.replicate,
            iteration: d.iteration as u64,
            reason: d.reason.clone(),
        });
    }
    for (of, values) in [
        (SpectrumOf::Hessian, &run.last_hessian_eigenvalues),
        (SpectrumOf::Noise, &run.last_noise_eigenvalues),
    ] {
        events.send(Event::Spectrum {
            dynamics: kind,
            replicate: run.replicate,
            iteration,
            of,
            values: values.clone(),
        });
    }
    events.send(Event::ReplicateFinished {
        dynamics: kind,
        run: Arc::new(run),
    });
}

/// Gathers finished replicates from events into a [`ToyOutcome`].
#[derive(Clone, Debug)]
pub struct ToyAssembly {
    toy: Toy2dConfig,
    series: Vec<ToySeries>,
}

impl ToyAssembly {
    pub fn new(config: &Config) -> Self {
        ToyAssembly {
            toy: config.toy2d(),
            series: config
                .dynamics
                .iter()
                .map(|&kind| ToySeries { kind, runs: vec![] })
                .collect(),
        }
    }

    pub fn add(&mut self, event: &Event) {
        if let Event::ReplicateFinished { dynamics, run } = event {
            if let Some(s) = self.series.iter_mut().find(|s| s.kind == *dynamics) {
                s.runs.push(ToyRun::clone(run));
            }
        }
    }

    /// Replicates in seed order (an interrupted run has only the finished ones).
    pub fn outcome(mut self) -> ToyOutcome {
        for s in &mut self.series {
            s.runs.sort_by_key(|r| r.replicate);
        }
        ToyOutcome {
            toy: self.toy,
            series: self.series,
        }
    }
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

/// Per-iteration means over the toy replicates finished so far (the dashboard's curves
/// and the record's `metrics/` group), kept as running sums.
#[derive(Clone, Debug, Default)]
pub struct ToyMeans {
    sums: BTreeMap<Metric, Vec<f64>>,
    counts: Vec<f64>,
    escaped: Vec<f64>,
}

impl ToyMeans {
    pub fn add(&mut self, run: &ToyRun, success_below: f64) {
        let t = run.loss.len();
        if self.counts.len() < t {
            self.counts.resize(t, 0.0);
            self.escaped.resize(t, 0.0);
        }
        for (metric, values) in [
            (Metric::Loss, &run.loss),
            (Metric::TrHNoise, &run.tr_h_noise),
            (Metric::TrHSigma, &run.tr_h_sigma),
            (Metric::TrHSigmaIso, &run.tr_h_sigma_iso),
        ] {
            let sums = self.sums.entry(metric).or_default();
            if sums.len() < t {
                sums.resize(t, 0.0);
            }
            for (s, v) in sums.iter_mut().zip(values.iter()) {
                *s += v;
            }
        }
        for i in 0..t {
            self.counts[i] += 1.0;
            // θ after step i: at the last iteration this is the success criterion.
            let w = run.trajectory.get(i + 1).copied().unwrap_or([f64::NAN; 2]);
            if w[0] < success_below && w[1] < success_below {
                self.escaped[i] += 1.0;
            }
        }
    }

    /// Mean over finished replicates at each iteration t = 0 … T−1.
    pub fn means(&self, metric: Metric) -> Vec<f64> {
        let sums = match metric {
            Metric::EscapedFraction => Some(&self.escaped),
            m => self.sums.get(&m),
        };
        sums.map(|s| s.iter().zip(&self.counts).map(|(v, c)| v / c).collect())
            .unwrap_or_default()
    }
}

/// The metrics the toy reports, in display order.
pub const METRICS: [Metric; 5] = [
    Metric::EscapedFraction,
    Metric::Loss,
    Metric::TrHNoise,
    Metric::TrHSigma,
    Metric::TrHSigmaIso,
];
