//! The standard error per loss evaluation of each expected-sharpness estimator
//! (plain, antithetic, control variate; docs/METHOD.md §3) at the points of a real
//! FashionMNIST run: its θ_GD and the latest checkpoint of each listed dynamics (an
//! escaped θ for SGD and GLD 1st eigvec), on the run's own training set (its corrupted
//! labels included), timed: the plain estimator with M evaluations, the others until
//! they match its standard error (at most M). `SPECTRUM=1` prints the top-20 Hessian
//! eigenvalues and their share of Tr(H²) instead.
//!
//!   cargo run --release --example sharpness_variance -- RUN_DIR CONFIG [M] [DYNAMICS…]
//!
//! RUN_DIR holds `theta_gd.f64` and `checkpoints/`; CONFIG is the run's config (a sweep
//! point's is the sweep's `config.toml` with the point's seed).
use noiselab::dynamics::DynamicsKind;
use noiselab::estimators::sharpness::{expected_sharpness, SharpnessEstimator, SharpnessOptions};
use noiselab::experiments::classification::{load_data, read_theta_gd};
use noiselab::experiments::fashion_mnist::FashionMnist;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (run_dir, config) = (Path::new(&args[1]), &args[2]);
    let m: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let kinds: Vec<DynamicsKind> = args
        .iter()
        .skip(4)
        .map(|k| {
            *DynamicsKind::ALL
                .iter()
                .find(|d| d.key() == k)
                .expect("a dynamics key")
        })
        .collect();
    let config = noiselab::config::load(config, &[]).unwrap().config;
    let data = load_data::<FashionMnist>(&config).unwrap();
    let model = NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data.train).unwrap();
    let theta_gd = read_theta_gd::<FashionMnist>(&run_dir.join("theta_gd.f64")).unwrap();
    let mut points = vec![("theta_gd".to_string(), theta_gd)];
    for kind in kinds {
        let ckpt = noiselab::record::checkpoint::read(run_dir, kind, 0)
            .unwrap()
            .expect("a checkpoint");
        points.push((format!("{}@{}", kind.key(), ckpt.iteration), ckpt.theta));
    }
    println!(
        "# {} training images, M = {m} loss evaluations per estimator, δ = 0.01, f32 kernels",
        model.num_samples()
    );
    println!(
        "point\testimator\tevaluations\tvalue\tSE\tSE per evaluation (SE·√evaluations)\tseconds"
    );
    for (name, theta) in &points {
        let (_, g) = model.loss_and_gradient(theta).unwrap();
        if std::env::var("SPECTRUM").is_ok() {
            // How much of Tr(H²) (which sets the variance at a minimum) the top
            // eigenvalues hold: Tr(H²) from Hutchinson on H² (z·H(Hz)).
            let top =
                noiselab::estimators::hessian::top_eigenpairs(&model, theta, 20, None).unwrap();
            let tr_h2 = noiselab::estimators::trace::hutchinson(
                model.dim(),
                |z| {
                    let hz = model.hvp(theta, z)?;
                    model.hvp(theta, &hz)
                },
                30,
                1,
            )
            .unwrap();
            let mut cum = 0.0;
            let shares: Vec<String> = top
                .values
                .iter()
                .map(|l| {
                    cum += l * l;
                    format!("{:.2}", cum / tr_h2.value)
                })
                .collect();
            println!(
                "{name}: λ {:?}\n  Tr(H²) ≈ {:.1} ± {:.1}; share of the top 1..20: {}",
                top.values
                    .iter()
                    .map(|l| format!("{l:.2}"))
                    .collect::<Vec<_>>(),
                tr_h2.value,
                tr_h2.stderr,
                shares.join(" ")
            );
            continue;
        }
        for estimator in SharpnessEstimator::ALL {
            let t = std::time::Instant::now();
            let e = expected_sharpness(
                &model,
                theta,
                Some(&g),
                &SharpnessOptions {
                    delta: 0.01,
                    samples: m,
                    absolute: false,
                    estimator,
                    batch_size: std::env::var("BATCH")
                        .ok()
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(20),
                    seed: 7,
                },
            )
            .unwrap();
            // The variance-reduced estimators stop at the plain one's SE with M.
            let evaluations = match estimator {
                SharpnessEstimator::Antithetic => 2 * e.samples,
                SharpnessEstimator::PerBatch => {
                    noiselab::estimators::sharpness::pilot_passes(m) + e.samples
                }
                _ => e.samples,
            };
            println!(
                "{name}\t{}\t{evaluations}\t{:.4e}\t{:.2e}\t{:.3e}\t{:.1}",
                estimator.key(),
                e.value,
                e.stderr,
                e.stderr * (evaluations as f64).sqrt(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}
