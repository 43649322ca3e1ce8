//! A quadratic bowl: every configured dynamics from the same start on
//! ℓ_i(θ) = ½(θ − x_i)ᵀH(θ − x_i) with a diagonal H (docs/METHOD.md §5), measured every
//! `metrics_every` iterations. Small and exact, it is the smallest whole experiment:
//! what adding one to noiselab takes is this module and its registry line.

use super::{Measured, Say, Section, Tracker};
use crate::config::{at_least, check, positive, Config, Invalid};
use crate::dynamics::{DynamicsKind, NoiseModel};
use crate::engine::{self, Start};
use crate::estimators::AtPoint;
use crate::events::{Metric, RunStatus};
use crate::experiment::{Experiment, Outline, RunContext};
use crate::linalg::norm_sq;
use crate::models::quadratic::Quadratic;
use crate::objective::Objective;
use crate::record::state::RecordState;
use crate::rng::{self, Purpose};
use crate::Result;
use nalgebra::DMatrix;
use rand::Rng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// ‖θ − x̄‖: how far the trajectory is from the bowl's minimum (this experiment's own).
const DISTANCE: Metric = Metric::new("distance_to_minimum");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuadraticConfig {
    /// The eigenvalues of H (its diagonal); D is their number.
    pub curvatures: Vec<f64>,
    /// N centres x_i, drawn N(0, spread²·I) by the run's seed.
    pub samples: usize,
    pub spread: f64,
    pub eta: f64,
    pub iterations: usize,
    pub metrics_every: usize,
    /// θ_0 = start·(1, …, 1).
    pub start: f64,
}

impl Default for QuadraticConfig {
    fn default() -> Self {
        QuadraticConfig {
            curvatures: vec![10.0, 1.0],
            samples: 50,
            spread: 0.5,
            eta: 0.05,
            iterations: 200,
            metrics_every: 10,
            start: 1.0,
        }
    }
}

impl QuadraticConfig {
    /// The bowl of a run seeded `seed`, and its minimum x̄ (the mean of the centres).
    fn bowl(&self, seed: u64) -> (Quadratic, Vec<f64>) {
        let d = self.curvatures.len();
        let mut rng = rng::stream(seed, 0, Purpose::Data);
        let centres: Vec<Vec<f64>> = (0..self.samples)
            .map(|_| {
                (0..d)
                    .map(|_| self.spread * rng.sample::<f64, _>(rand_distr::StandardNormal))
                    .collect()
            })
            .collect();
        let mut minimum = vec![0.0; d];
        for c in &centres {
            crate::linalg::axpy(1.0 / self.samples as f64, c, &mut minimum);
        }
        let h = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(self.curvatures.clone()));
        (Quadratic::new(h, centres), minimum)
    }
}

fn measure(minimum: &[f64], at: &mut AtPoint<'_, Quadratic>) -> Result<Vec<(Metric, f64)>> {
    let (loss, g) = at.loss_and_gradient()?;
    let (loss, gradient_norm) = (loss, norm_sq(g).sqrt());
    let mean = minimum;
    let distance = at
        .theta()
        .iter()
        .zip(mean)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    Ok(vec![
        (Metric::LOSS, loss),
        (Metric::GRADIENT_NORM, gradient_norm),
        (DISTANCE, distance),
    ])
}

fn run_one(ctx: &RunContext<'_>, cfg: &QuadraticConfig, kind: DynamicsKind) -> Result<()> {
    let config = ctx.config;
    let (bowl, minimum) = cfg.bowl(config.seed);
    let every = cfg.metrics_every;
    let mut tracker = Tracker::new(
        ctx,
        kind,
        0,
        0,
        cfg.iterations,
        every,
        rng::stream(config.seed, 0, Purpose::Measurements(kind)),
        |t: usize,
         at: &mut AtPoint<'_, Quadratic>,
         _: &mut NoiseModel,
         _: &mut ChaCha12Rng,
         _: Say<'_>|
         -> Result<Measured> { t.is_multiple_of(every).then(|| measure(&minimum, at)).transpose() },
    );
    let spec = config.noise.spec(kind, cfg.eta);
    let start = tracker.start(spec, cfg.iterations, bowl.dim(), |spec| {
        let theta = vec![cfg.start; cfg.curvatures.len()];
        Start::plain(theta, NoiseModel::new(spec, config.seed, 0))
    })?;
    let (end, _) = engine::run_from(&bowl, start, cfg.iterations, &mut tracker)?;
    tracker.finish(&end, |theta, _, _| {
        measure(&minimum, &mut AtPoint::new(&bowl, theta))
    })
}

impl Section for QuadraticConfig {
    const KEY: &'static str = "quadratic";
}

impl Experiment for QuadraticConfig {

    fn validate(&self, config: &Config) -> std::result::Result<(), Invalid> {
        check(
            !self.curvatures.is_empty(),
            "quadratic.curvatures",
            "[]",
            "at least one eigenvalue",
        )?;
        for (i, &c) in self.curvatures.iter().enumerate() {
            positive(&format!("quadratic.curvatures[{i}]"), c)?;
        }
        at_least("quadratic.samples", self.samples, 2)?;
        check(
            self.spread.is_finite() && self.spread >= 0.0,
            "quadratic.spread",
            self.spread,
            "a finite number ≥ 0",
        )?;
        positive("quadratic.eta", self.eta)?;
        at_least("quadratic.iterations", self.iterations, 1)?;
        at_least("quadratic.metrics_every", self.metrics_every, 1)?;
        check(
            self.start.is_finite(),
            "quadratic.start",
            self.start,
            "a finite number",
        )?;
        check(
            config.noise.batch_size <= self.samples,
            "noise.batch_size",
            config.noise.batch_size,
            &format!("at most quadratic.samples = {}", self.samples),
        )?;
        let dim = self.curvatures.len();
        for (kind, key, k) in [
            (DynamicsKind::GldLeading, "noise.gld_leading.k", config.noise.gld_leading.k),
            (DynamicsKind::GldHessian, "noise.gld_hessian.k", config.noise.gld_hessian.k),
        ] {
            if config.dynamics.contains(&kind) {
                check(k <= dim, key, k, &format!("at most D = {dim}"))?;
            }
        }
        Ok(())
    }

    fn outline(&self, config: &Config) -> Outline {
        Outline {
            dim: self.curvatures.len(),
            iterations: self.iterations as u64,
            replicates: 1,
            replicate_labels: vec![],
            replicate_noun: "trajectory",
            metrics: vec![
                Metric::LOSS.def(),
                Metric::GRADIENT_NORM.def(),
                crate::events::MetricDef {
                    metric: DISTANCE,
                    label: "‖θ − θ*‖".into(),
                    unit: String::new(),
                    log_scale: true,
                },
            ],
            plane: None,
            x_marks: vec![],
            iteration_costs: super::iteration_costs(config, self.eta, self.samples),
        }
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<usize> {
        Ok(super::costliest_first(ctx, |kind| run_one(ctx, self, kind)))
    }

    fn results_text(&self, record: &RecordState, status: RunStatus) -> String {
        let mut out = format!(
            "Quadratic bowl: where each dynamics ended{}:\n{:<18} {:>12} {:>12} {:>10}\n",
            super::partial(status),
            "dynamics",
            "loss",
            "‖θ − θ*‖",
            "iteration"
        );
        for &kind in &record.config.dynamics {
            let f = record.final_metrics(kind, 0);
            let get = |m: Metric| f.get(&m).map_or("-".to_string(), |x| format!("{x:.4e}"));
            let last = record
                .last_iteration(kind, 0, Metric::LOSS)
                .map_or("-".to_string(), |t| t.to_string());
            out += &format!(
                "{:<18} {:>12} {:>12} {:>10}\n",
                kind.label(),
                get(Metric::LOSS),
                get(DISTANCE),
                last
            );
        }
        out
    }

    fn summary(&self, record: &RecordState, status: RunStatus) -> Value {
        let mut dynamics = Map::new();
        for &kind in &record.config.dynamics {
            let mut entry = Map::new();
            entry.insert("label".into(), json!(kind.label()));
            for (m, v) in record.final_metrics(kind, 0) {
                if v.is_finite() {
                    entry.insert(format!("final_{}", m.key()), json!(v));
                }
            }
            dynamics.insert(kind.key().to_string(), Value::Object(entry));
        }
        json!({
            "experiment": Self::KEY,
            "status": status.key(),
            "iterations": self.iterations,
            "dynamics": dynamics,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config;
    use crate::events::{self, RunStatus};
    use crate::experiment::Prior;
    use crate::record::journal::{self, Body};
    use crate::record::{checkpoint, recorder, run_dir};
    use crate::runner;
    use std::path::Path;

    const CONFIG: &str = r#"
        experiment = "quadratic"
        dynamics = ["gd", "sgd", "gld_const", "gld_hessian"]
        [noise.gld_hessian]
        k = 1
        [record]
        checkpoint_every = 40
        [quadratic]
        iterations = 100
    "#;

    /// A new run in `dir`, or the continuation of the one there.
    fn run(loaded: &config::LoadedConfig, dir: &Path) -> recorder::Recorded {
        let created = run_dir::utc_now();
        let (setup, prior) = if dir.join(journal::FILE_NAME).exists() {
            let setup = recorder::resume(dir).unwrap();
            let prior = setup.state.prior();
            (setup, prior)
        } else {
            let setup = recorder::new_run(loaded, dir, &created).unwrap();
            (setup, Prior::default())
        };
        let (tx, rx) = events::channel(false);
        let recorder = recorder::spawn(setup, rx.recorder);
        let info = runner::run_info(loaded, dir, &created);
        runner::start(loaded, info, tx, prior).join();
        recorder.join().unwrap().unwrap()
    }

    /// The whole path: config, runner, recorder (journal, checkpoint files, run.h5,
    /// summary.json); then a run cut off after its first checkpoint record (the journal
    /// truncated there, the checkpoint files as the run left them) and resumed ends
    /// where the uninterrupted run does, bit for bit.
    #[test]
    fn a_quadratic_bowl_runs_records_and_resumes_from_a_checkpoint() {
        let loaded = config::parse(CONFIG, "test", &[]).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let whole = tmp.path().join("whole");
        std::fs::create_dir(&whole).unwrap();
        let done = run(&loaded, &whole);
        assert_eq!(done.status, RunStatus::Finished, "{}", done.results);
        assert!(done.results.contains("Quadratic bowl"), "{}", done.results);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(whole.join("summary.json")).unwrap())
                .unwrap();
        let gd_distance = summary["dynamics"]["gd"]["final_distance_to_minimum"]
            .as_f64()
            .unwrap();
        // GD contracts the offset from the minimum by (1 − ηλ) a step: 100 steps of
        // η = 0.05 leave at most 0.95^100 ≈ 0.006 of the start's distance (√2·1.x).
        assert!(gd_distance < 0.02, "GD ended {gd_distance} from the minimum");
        let contents = journal::read(&whole.join(journal::FILE_NAME)).unwrap();
        let first = contents
            .records
            .iter()
            .position(|r| matches!(r.body, Body::Checkpoint { .. }))
            .expect("checkpoints every 40 iterations");
        let cut = tmp.path().join("cut");
        std::fs::create_dir(&cut).unwrap();
        let mut w = journal::Writer::create(&cut.join(journal::FILE_NAME)).unwrap();
        for r in &contents.records[..=first] {
            w.write(r.body.clone()).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        let ckpt = cut.join(checkpoint::DIR);
        std::fs::create_dir(&ckpt).unwrap();
        for e in std::fs::read_dir(whole.join(checkpoint::DIR)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), ckpt.join(e.file_name())).unwrap();
        }
        let resumed = run(&loaded, &cut);
        assert_eq!(resumed.status, RunStatus::Finished, "{}", resumed.results);
        let read = |d: &Path| std::fs::read_to_string(d.join("summary.json")).unwrap();
        assert_eq!(read(&cut), read(&whole));
        let log = std::fs::read_to_string(cut.join("events.log")).unwrap();
        assert!(log.contains("continuing from its checkpoint"), "{log}");
    }
}
