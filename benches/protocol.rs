//! What the paper's FashionMNIST protocol (docs/METHOD.md §4.3) costs on this machine, measured
//! piece by piece on LeNet with 1,200 real images and projected to the whole run:
//! 3,000 GD iterations, then 8 dynamics × 15,000 iterations, plus a metrics evaluation
//! (train and test loss/accuracy, expected sharpness with M = 1000 and δ = 0.01,
//! Tr(HΣ) from 60 minibatch gradients, Tr H from Hutchinson probes) every
//! `--metrics-every` iterations (default 500) of every dynamics.
//!
//! Each dynamics runs the released code's conventions (noise in gradient units, Σ from
//! one shuffled epoch of 60 batches of 20, k = 20, leading/Hessian/1st-eigvec factors
//! refreshed every 10 iterations) for 30 iterations from a partly trained θ, so three
//! refreshes are amortised as in the run (the first of them cold, which a run has once).
//!
//! Given a run's θ_GD (`THETA_GD_RUN=runs/…/p000-seed0 CONFIG=…/config.toml`), the
//! measurement and every dynamics are timed again where the protocol runs them: from θ_GD
//! on that run's training set, the dynamics after 10 untimed iterations (the cold
//! refresh), and a second projection is made from those rows.
//!
//!   cargo bench --bench protocol [-- --metrics-every N]

use noiselab::config::NoiseConfig;
use noiselab::data::{idx, ImageSet};
use noiselab::dynamics::{CovarianceSource, DynamicsKind, NoiseModel, Units};
use noiselab::engine;
use noiselab::estimators::covariance::GradientCovariance;
use noiselab::estimators::hessian;
use noiselab::estimators::sharpness::{
    expected_sharpness, pilot_passes, SharpnessEstimator, SharpnessOptions,
};
use noiselab::estimators::trace::hutchinson_block;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::path::Path;
use std::time::Instant;

fn timed<R>(f: impl FnOnce() -> R) -> (f64, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_secs_f64(), r)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let every: usize = args
        .iter()
        .position(|a| a == "--metrics-every")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let subset = root.join("../shared/data/fashion-mnist-subset");
    let n = if smoke { 60 } else { 1200 };
    let train = idx::read_split(&subset, idx::Split::Train, Some(n)).unwrap();
    // The full clean test set when Debian's dataset-fashion-mnist is installed.
    let full = Path::new("/usr/share/datasets/fashion-mnist");
    let test: ImageSet = idx::read_split(full, idx::Split::Test, None)
        .or_else(|_| idx::read_split(&subset, idx::Split::Test, None))
        .unwrap();
    let test = if smoke { test.head(100) } else { test };
    let model = NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &train).unwrap();
    println!(
        "# LeNet, {n} training images, {} test images, f32 kernels, {} threads",
        test.len(),
        rayon::current_num_threads()
    );

    // Phase 1: GD, η = 0.1.
    let gd_steps = if smoke { 3 } else { 300 };
    let mut theta = model.arch().init_theta(&mut ChaCha12Rng::seed_from_u64(0));
    let (t_gd, _) = timed(|| {
        for _ in 0..gd_steps {
            let (_, g) = model.loss_and_gradient(&theta).unwrap();
            theta.iter_mut().zip(&g).for_each(|(t, gi)| *t -= 0.1 * gi);
        }
    });
    let gd_iter = t_gd / gd_steps as f64;
    println!("gd_phase_iteration\t{gd_iter:.4}\t{gd_steps} steps of η = 0.1");

    // Phase 2: every dynamics, released conventions, 30 iterations each.
    let mut noise = NoiseConfig {
        units: Units::Gradient,
        covariance: CovarianceSource::Minibatches,
        batch_size: 20,
        ..NoiseConfig::default()
    };
    noise.gld_leading.norm_matched = false;
    let iterations = if smoke { 2 } else { 30 };
    let per_iteration = time_dynamics("iteration", &model, &theta, &noise, iterations, 0);
    // The same eight trajectories side by side, one thread each as the runner does: the
    // kernels' work all lands on rayon's one pool, so this shows whether running them
    // concurrently costs more (or less) than their sum.
    let (t_concurrent, _) = timed(|| {
        std::thread::scope(|scope| {
            for kind in DynamicsKind::ALL {
                let (model, theta, noise) = (&model, &theta, &noise);
                scope.spawn(move || {
                    let mut m = NoiseModel::new(noise.spec(kind, 0.07), 0, 0);
                    engine::run(model, theta.clone(), iterations, &mut m, |_, _, _| Ok(())).unwrap()
                });
            }
        })
    });
    let sum: f64 = per_iteration
        .iter()
        .map(|(_, t)| t * iterations as f64)
        .sum();
    // (The concurrent run gives every dynamics, SGD included, `iterations` iterations.)
    println!(
        "concurrent_8_dynamics\t{t_concurrent:.4}\t{iterations} iterations each; sum of the sequential runs {sum:.2} s (ratio {:.2})",
        t_concurrent / sum
    );

    // One metrics evaluation.
    let m_sharp = if smoke { 10 } else { 1000 };
    let probes = if smoke { 2 } else { 20 };
    let metrics = measurement("metrics", &model, &theta, &test, m_sharp, probes);
    // The same measurement at a real run's θ_GD on its own training set (the memorised
    // minimum where the protocol's measurements start), when one is named:
    // THETA_GD_RUN=runs/…/p000-seed0 CONFIG=runs/…/config.toml.
    if let (Ok(run), Ok(config)) = (std::env::var("THETA_GD_RUN"), std::env::var("CONFIG")) {
        let config = noiselab::config::load(&config, &[]).unwrap().config;
        let data = noiselab::experiments::classification::load_data::<
            noiselab::experiments::fashion_mnist::FashionMnist,
        >(&config)
        .unwrap();
        let at_gd =
            NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data.train).unwrap();
        let bytes = std::fs::read(Path::new(&run).join("theta_gd.f64")).unwrap();
        let theta_gd: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let at_gd_metrics = measurement(
            "at_theta_gd",
            &at_gd,
            &theta_gd,
            &data.test,
            m_sharp,
            probes,
        );
        // Every dynamics where the protocol runs it: from θ_GD, after one refresh
        // period (the cold first refresh: once in a run's 1,500), in steady state.
        let from_gd = time_dynamics("from_theta_gd", &at_gd, &theta_gd, &noise, iterations, 10);
        projection(
            "projection_from_theta_gd",
            (gd_iter, &from_gd, at_gd_metrics),
            every,
            "every measurement at θ_GD's cost",
        );
    }

    projection(
        "projection",
        (gd_iter, &per_iteration, metrics),
        every,
        "dynamics and measurement at the bench's θ",
    );
}

/// Times `iterations` of every dynamics from θ (SGD ten times as many: its iteration
/// is a few milliseconds), after `warmup` untimed iterations of the same noise model
/// (its warm-started factors carry over), and prints one `{label}:kind` row each.
fn time_dynamics(
    label: &str,
    model: &NativeClassifier<f32>,
    theta: &[f64],
    noise: &NoiseConfig,
    iterations: usize,
    warmup: usize,
) -> Vec<(DynamicsKind, f64)> {
    DynamicsKind::ALL
        .into_iter()
        .map(|kind| {
            let iterations = if kind == DynamicsKind::Sgd {
                10 * iterations
            } else {
                iterations
            };
            let mut model_noise = NoiseModel::new(noise.spec(kind, 0.07), 0, 0);
            let start = match warmup {
                0 => theta.to_vec(),
                _ => {
                    let warm = engine::run(
                        model,
                        theta.to_vec(),
                        warmup,
                        &mut model_noise,
                        |_, _, _| Ok(()),
                    );
                    warm.unwrap().theta
                }
            };
            let (t, end) = timed(|| {
                engine::run(model, start, iterations, &mut model_noise, |_, _, _| Ok(())).unwrap()
            });
            assert!(end.diverged.is_none());
            let per = t / iterations as f64;
            let after = match warmup {
                0 => String::new(),
                _ => format!(" after {warmup} untimed"),
            };
            println!(
                "{label}:{}\t{per:.4}\t{iterations} iterations{after}",
                kind.key()
            );
            (kind, per)
        })
        .collect()
}

/// The whole protocol from one GD-phase iteration, every dynamics' iteration and one
/// measurement: 3,000 GD iterations, 8 × 15,000, a measurement every `every`.
fn projection(
    label: &str,
    (gd_iter, per_iteration, metrics): (f64, &[(DynamicsKind, f64)], f64),
    every: usize,
    basis: &str,
) {
    let run_iters = 15_000;
    let evals = run_iters / every + 1;
    let dynamics_total: f64 = per_iteration
        .iter()
        .map(|(_, t)| t * run_iters as f64)
        .sum();
    let metrics_total = metrics * evals as f64 * DynamicsKind::ALL.len() as f64;
    let gd_total = gd_iter * 3000.0;
    let total = gd_total + dynamics_total + metrics_total;
    println!(
        "{label}\t{total:.0}\t{:.2} h: GD phase {:.0} s + dynamics {:.0} s + metrics {:.0} s ({} evaluations × 8 dynamics at {metrics:.2} s; {basis})",
        total / 3600.0,
        gd_total,
        dynamics_total,
        metrics_total,
        evals
    );
}

/// One metrics evaluation at θ as the run makes it (train and test loss/accuracy, g0,
/// expected sharpness by the presets' estimator, Tr(HΣ), Tr H, â's eigenpair), each
/// piece timed and printed as `{label}:piece`; returns its total seconds. The other
/// sharpness estimators are timed beside it for comparison (not in the total).
fn measurement(
    label: &str,
    model: &NativeClassifier<f32>,
    theta: &[f64],
    test: &ImageSet,
    m_sharp: usize,
    probes: usize,
) -> f64 {
    let (n, d) = (model.num_samples(), model.dim());
    let theta = theta.to_vec();
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let (t_train, _) = timed(|| model.loss(&theta).unwrap());
    let (t_test, eval) = timed(|| model.evaluate(&theta, test).unwrap());
    // The FashionMNIST presets' estimator (docs/METHOD.md §3): batches of 20 images at
    // their own ν, matching the plain estimator's standard error with M evaluations.
    let (t_grad, (_, g)) = timed(|| model.loss_and_gradient(&theta).unwrap());
    let sharpness = |estimator| SharpnessOptions {
        delta: 0.01,
        samples: m_sharp,
        absolute: false,
        estimator,
        batch_size: 20,
        seed: 2,
    };
    let (t_sharp, sharp) = timed(|| {
        expected_sharpness(
            model,
            &theta,
            Some(&g),
            &sharpness(SharpnessEstimator::PerBatch),
        )
        .unwrap()
    });
    let (t_cv, cv) = timed(|| {
        expected_sharpness(
            model,
            &theta,
            Some(&g),
            &sharpness(SharpnessEstimator::ControlVariate),
        )
        .unwrap()
    });
    let (t_plain, plain) = timed(|| {
        expected_sharpness(model, &theta, None, &sharpness(SharpnessEstimator::Plain)).unwrap()
    });
    let (t_trhs, tr_h_sigma) = timed(|| {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let sigma =
            GradientCovariance::minibatches(model.batch_gradients(&theta, &order, 20).unwrap())
                .unwrap();
        sigma
            .tr_h_block(|vs| model.hessian_quadratic_forms(&theta, vs))
            .unwrap()
    });
    let (t_trh, tr_h) = timed(|| {
        hutchinson_block(d, |zs| model.hessian_quadratic_forms(&theta, zs), probes, 3).unwrap()
    });
    let (t_top, top) = timed(|| hessian::top_eigenpairs(model, &theta, 1, None).unwrap());
    println!("{label}:train_loss_accuracy\t{t_train:.4}\t");
    println!(
        "{label}:test_loss_accuracy\t{t_test:.4}\taccuracy {:.4}",
        eval.accuracy
    );
    println!("{label}:gradient\t{t_grad:.4}\tg0 and ‖g0‖");
    println!(
        "{label}:sharpness\t{t_sharp:.4}\tper batch, {} evaluations ({} of them shared-ν pilot passes), {:.4e} ± {:.1e}",
        pilot_passes(m_sharp) + sharp.samples,
        pilot_passes(m_sharp),
        sharp.value,
        sharp.stderr
    );
    println!(
        "{label}/sharpness_control_variate\t{t_cv:.4}\tcontrol variate (not in the measurement), {} evaluations, {:.4e} ± {:.1e}",
        cv.samples, cv.value, cv.stderr
    );
    println!(
        "{label}/sharpness_plain\t{t_plain:.4}\tplain (not in the measurement), M = {m_sharp}, {:.4e} ± {:.1e}",
        plain.value, plain.stderr
    );
    println!("{label}:tr_h_sigma\t{t_trhs:.4}\t60 quadratic forms, {tr_h_sigma:.4e}");
    println!(
        "{label}:tr_h\t{t_trh:.4}\t{probes} probes, {:.4e}",
        tr_h.value
    );
    println!(
        "{label}:top_eigenpair\t{t_top:.4}\tλ1 {:.4e} (for â)",
        top.values[0]
    );
    let metrics = t_train + t_test + t_grad + t_sharp + t_trhs + t_trh + t_top;
    println!("{label}:total\t{metrics:.4}\tone measurement (rows marked {label}:)");
    metrics
}
