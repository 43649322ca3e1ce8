//! Replays SGD's first steps from a FashionMNIST run's θ_GD, through the same engine and
//! noise stream as the run (phase 2, replicate 0), with every minibatch gradient taken
//! twice: by the kernels in the precision the trajectory steps on (`STEP=f32`, the run's,
//! or `STEP=f64`) and by the other precision's kernels at the same θ and batch. Prints,
//! per step, the two gradients' relative difference and the batch's loss, and every
//! `EVERY` steps the training loss and accuracy (in f64): what tells a real dying-ReLU
//! event from a numerical one.
//!
//!   cargo run --release --example replay_sgd -- RUN_DIR CONFIG [STEPS] [EVERY]
use noiselab::dynamics::DynamicsKind;
use noiselab::dynamics::NoiseModel;
use noiselab::engine::{self, Start, Watch};
use noiselab::experiments::classification::{load_data, read_theta_gd};
use noiselab::experiments::fashion_mnist::FashionMnist;
use noiselab::linalg::GradientMatrix;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use noiselab::{linalg, Result};
use std::path::Path;
use std::sync::Mutex;

/// The trajectory's objective, with every minibatch gradient checked against the other
/// precision's.
struct Checked {
    step: Box<dyn Objective>,
    check: Box<dyn Objective>,
    /// Per batch gradient: (relative difference, ‖g‖, batch loss).
    log: Mutex<Vec<(f64, f64, f64)>>,
}

impl Objective for Checked {
    fn dim(&self) -> usize {
        self.step.dim()
    }
    fn num_samples(&self) -> usize {
        self.step.num_samples()
    }
    fn loss_and_gradient(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.step.loss_and_gradient(theta)
    }
    fn batch_gradients(
        &self,
        theta: &[f64],
        indices: &[usize],
        batch_size: usize,
    ) -> Result<GradientMatrix> {
        let g = self.step.batch_gradients(theta, indices, batch_size)?;
        let other = self.check.batch_gradients(theta, indices, batch_size)?;
        let (a, b) = (g.row(0), other.row(0));
        let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let norm = linalg::dot(b, b).sqrt();
        let rel = linalg::dot(&diff, &diff).sqrt() / norm.max(f64::MIN_POSITIVE);
        // The batch's loss: its images as a range is not what a drawn batch is, so the
        // loss is the mean over single-sample ranges.
        let loss = indices
            .iter()
            .map(|&i| self.step.batch_loss(theta, i..i + 1))
            .sum::<Result<f64>>()?
            / indices.len() as f64;
        self.log.lock().unwrap().push((rel, norm, loss));
        Ok(g)
    }
    fn hvp(&self, theta: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        self.step.hvp(theta, v)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: replay_sgd RUN_DIR CONFIG [STEPS] [EVERY]");
        std::process::exit(2);
    }
    let (run_dir, config) = (Path::new(&args[1]), &args[2]);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
    let every: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(25);
    let config = noiselab::config::load(config, &[]).unwrap().config;
    let data = load_data::<FashionMnist>(&config).unwrap();
    let arch = || lenet::architecture().unwrap();
    let f32_model: Box<dyn Objective> =
        Box::new(NativeClassifier::<f32>::new(arch(), &data.train).unwrap());
    let f64_model: Box<dyn Objective> =
        Box::new(NativeClassifier::<f64>::new(arch(), &data.train).unwrap());
    let eval = NativeClassifier::<f64>::new(arch(), &data.train).unwrap();
    let step_f64 = std::env::var("STEP").is_ok_and(|s| s == "f64");
    let (step, check) = if step_f64 {
        (f64_model, f32_model)
    } else {
        (f32_model, f64_model)
    };
    let objective = Checked {
        step,
        check,
        log: Mutex::new(vec![]),
    };
    let theta_gd = read_theta_gd::<FashionMnist>(&run_dir.join("theta_gd.f64")).unwrap();
    let eta = config
        .settings::<noiselab::experiments::classification::ImageConfig<FashionMnist>>()
        .expect("a fashion_mnist config")
        .eta;
    let spec = config.noise.spec(DynamicsKind::Sgd, eta);
    let start = Start::plain(theta_gd, NoiseModel::new(spec, config.seed, 0));
    println!(
        "# SGD from θ_GD, η = {eta}, steps in {}, checked against {}",
        if step_f64 { "f64" } else { "f32" },
        if step_f64 { "f32" } else { "f64" }
    );
    println!(
        "step\tmax rel diff (last {every})\tmax |g_B|\tmax batch loss\ttrain loss\ttrain acc\t|θ|"
    );
    let mut watch = Watch(
        |t: usize,
         at: &mut noiselab::estimators::point::AtPoint<'_, Checked>,
         _: &mut NoiseModel| {
            if t.is_multiple_of(every) {
                let log = std::mem::take(&mut *objective.log.lock().unwrap());
                let max = |f: fn(&(f64, f64, f64)) -> f64| log.iter().map(f).fold(0.0, f64::max);
                let e = eval
                    .evaluate(at.theta(), &data.train)
                    .expect("an evaluation");
                println!(
                    "{t}\t{:.2e}\t{:.3}\t{:.3}\t{:.4}\t{:.4}\t{:.3}",
                    max(|x| x.0),
                    max(|x| x.1),
                    max(|x| x.2),
                    e.loss,
                    e.accuracy,
                    linalg::dot(at.theta(), at.theta()).sqrt()
                );
            }
            Ok(())
        },
    );
    let (end, _) = engine::run_from(&objective, start, steps, &mut watch).unwrap();
    let e = eval.evaluate(&end.theta, &data.train).unwrap();
    println!(
        "end {}: train loss {:.4}, accuracy {:.4}, diverged {:?}",
        end.iterations,
        e.loss,
        e.accuracy,
        end.diverged.map(|d| d.reason)
    );
}
