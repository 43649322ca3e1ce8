//! Profiling driver (not a benchmark): repeats one LeNet workload on 1,200 real images so
//! `perf record` / `valgrind --tool=callgrind` can attribute its time.
//!   cargo build --release --example profile_lenet
//!   perf record -g target/release/examples/profile_lenet fwd_bwd_f32 20
use noiselab::data::idx;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("fwd_bwd_f32", String::as_str);
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The training set of a run's config (`CONFIG=…`, e.g. to go with its θ_GD), or the
    // first 1,200 images of the subset.
    let data = match std::env::var("CONFIG") {
        Ok(config) => {
            let config = noiselab::config::load(&config, &[]).unwrap().config;
            noiselab::experiments::classification::load_data::<
                noiselab::experiments::fashion_mnist::FashionMnist,
            >(&config)
            .unwrap()
            .train
        }
        Err(_) => idx::read_split(
            &root.join("../shared/data/fashion-mnist-subset"),
            idx::Split::Train,
            Some(1200),
        )
        .unwrap(),
    };
    let arch = lenet::architecture().unwrap();
    let mut theta =
        arch.init_theta(&mut <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(0));
    // Every workload at θ_GD when one is given (`THETA_GD=…`, a file of f64 whose
    // training set is these images: pass its run's `CONFIG` too).
    if let Some(at) = theta_gd() {
        theta = at;
    }
    let m32 = NativeClassifier::<f32>::new(arch.clone(), &data).unwrap();
    let all: Vec<usize> = (0..data.len()).collect();
    if what == "eigs" {
        return compare_eigensolvers(&m32, theta, reps);
    }
    if what == "warm" {
        return compare_warm_starts(&m32, theta, reps);
    }
    let t = std::time::Instant::now();
    for _ in 0..reps {
        match what {
            "fwd_bwd_f32" => drop(m32.loss_and_gradient(&theta).unwrap()),
            "loss_f32" => drop(m32.loss(&theta).unwrap()),
            "per_sample_f32" => drop(m32.per_sample_gradients(&theta).unwrap()),
            "minibatch_f32" => drop(m32.batch_gradients(&theta, &all, 20).unwrap()),
            // SGD's step: one batch of 20 random samples.
            "sgd_batch_f32" => {
                let batch: Vec<usize> = (0..20).map(|i| (i * 577 + 13) % all.len()).collect();
                drop(m32.batch_gradients(&theta, &batch, 20).unwrap())
            }
            "hvp_f32" => drop(m32.hvp(&theta, &theta).unwrap()),
            block if block.starts_with("hvp_block_f32:") => {
                let b: usize = block["hvp_block_f32:".len()..].parse().unwrap();
                let dirs: Vec<&[f64]> = (0..b).map(|_| theta.as_slice()).collect();
                drop(m32.hvp_block(&theta, &dirs).unwrap())
            }
            block if block.starts_with("quadratic_forms_f32:") => {
                let b: usize = block["quadratic_forms_f32:".len()..].parse().unwrap();
                let dirs: Vec<&[f64]> = (0..b).map(|_| theta.as_slice()).collect();
                drop(m32.hessian_quadratic_forms(&theta, &dirs).unwrap())
            }
            // The per-batch sharpness estimator's floor: its pilot and as many passes.
            "sharpness_per_batch_f32" => {
                use noiselab::estimators::sharpness::*;
                let options = SharpnessOptions {
                    delta: 0.01,
                    samples: 1000,
                    absolute: false,
                    estimator: SharpnessEstimator::PerBatch,
                    batch_size: 20,
                    seed: 1,
                };
                let _ = expected_sharpness(&m32, &theta, None, &options).unwrap();
            }
            other => panic!("unknown workload {other}"),
        }
    }
    println!(
        "{what}: {:.1} ms per call",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    );
}

/// Lanczos refreshes (top 20 of H) 10 noisy descent steps apart along one trajectory,
/// the first cold, the others warm-started from the one before, for each start recipe
/// (comma-separated lists: `EXTRA`, Ritz vectors kept beyond the 20 for the next start;
/// `EPS`, the norm of the start's random part): the products each refresh took.
fn compare_warm_starts(model: &NativeClassifier<f32>, theta0: Vec<f64>, refreshes: usize) {
    use noiselab::estimators::lanczos;
    let list = |var: &str, default: &str| -> Vec<String> {
        let text = std::env::var(var).unwrap_or(default.into());
        text.split(',').map(str::to_string).collect()
    };
    let recipes: Vec<(usize, f64)> = list("EXTRA", "0")
        .iter()
        .flat_map(|e| {
            list("EPS", "1e-3")
                .into_iter()
                .map(move |n| (e.parse().unwrap(), n.parse().unwrap()))
        })
        .collect();
    // The same trajectory for every recipe: θ's along it first.
    let mut rng = <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(5);
    let mut thetas = vec![theta0.clone()];
    let mut theta = theta0;
    for _ in 1..refreshes {
        ten_noisy_steps(model, &mut theta, &mut rng);
        thetas.push(theta.clone());
    }
    for (extra, warm_noise) in recipes {
        let options = lanczos::LanczosOptions {
            tol: model.hvp_tolerance(),
            extra,
            warm_noise,
            ..lanczos::LanczosOptions::new(20)
        };
        let mut warm = None;
        let mut counts = vec![];
        let mut values = vec![];
        for theta in &thetas {
            let l = lanczos::top_eigenpairs(
                model.dim(),
                |v| model.hvp(theta, v),
                &options,
                warm.as_ref(),
            )
            .unwrap();
            counts.push(l.products);
            values.push(l.pairs.values[19]);
            warm = Some(l.pairs);
        }
        let steady: usize = counts[1..].iter().sum();
        println!(
            "extra {extra}, warm noise {warm_noise:e}: products {counts:?} (warm mean {:.1}); λ20 {:?}",
            steady as f64 / (counts.len() - 1) as f64,
            values.iter().map(|v| format!("{v:.5}")).collect::<Vec<_>>()
        );
    }
}

/// What happens between two GLD Hessian refreshes, roughly: ten descent steps of η = 0.07
/// on the gradient plus small isotropic noise.
fn ten_noisy_steps(
    model: &NativeClassifier<f32>,
    theta: &mut [f64],
    rng: &mut rand_chacha::ChaCha12Rng,
) {
    use rand::Rng;
    for _ in 0..10 {
        let (_, g) = model.loss_and_gradient(theta).unwrap();
        theta.iter_mut().zip(&g).for_each(|(t, g)| {
            *t -= 0.07 * (g + 1e-2 * rng.sample::<f64, _>(rand_distr::StandardNormal))
        });
    }
}

/// Warm-started top-20 refreshes as GLD Hessian does them (every 10 iterations), by
/// Lanczos on single HVPs and by LOBPCG on block HVPs: products, time, accuracy.
fn compare_eigensolvers(model: &NativeClassifier<f32>, mut theta: Vec<f64>, refreshes: usize) {
    use noiselab::estimators::{lanczos, lobpcg};
    let options = lanczos::LanczosOptions {
        tol: model.hvp_tolerance(),
        ..lanczos::LanczosOptions::new(20)
    };
    // From θ_GD (already in `theta` when given) or from 200 GD steps.
    if theta_gd().is_none() {
        for _ in 0..200 {
            let (_, g) = model.loss_and_gradient(&theta).unwrap();
            theta.iter_mut().zip(&g).for_each(|(t, g)| *t -= 0.1 * g);
        }
    }
    let mut rng = <rand_chacha::ChaCha12Rng as rand::SeedableRng>::seed_from_u64(5);
    let (mut warm_l, mut warm_b) = (None, None);
    for refresh in 0..refreshes {
        let t = std::time::Instant::now();
        let l = lanczos::top_eigenpairs(
            model.dim(),
            |v| model.hvp(&theta, v),
            &options,
            warm_l.as_ref(),
        )
        .unwrap();
        let tl = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let b = lobpcg::top_eigenpairs(
            model.dim(),
            |vs| model.hvp_block(&theta, vs),
            &options,
            warm_b.as_ref(),
        )
        .unwrap();
        let tb = t.elapsed().as_secs_f64();
        let gap = l
            .pairs
            .values
            .iter()
            .zip(&b.pairs.values)
            .map(|(x, y)| (x - y).abs() / l.pairs.values[0])
            .fold(0.0f64, f64::max);
        println!(
            "refresh {refresh}: lanczos {} products {tl:.2} s (residual {:.1e}) | lobpcg {} products {tb:.2} s (residual {:.1e}) | λ1 {:.6} λ20 {:.6} | max |Δλ|/λ1 {gap:.1e}",
            l.products, l.max_residual, b.products, b.max_residual, l.pairs.values[0], l.pairs.values[19]
        );
        warm_l = Some(l.pairs);
        warm_b = Some(b.pairs);
        ten_noisy_steps(model, &mut theta, &mut rng);
    }
}

/// θ_GD from the file `THETA_GD` names, if set.
fn theta_gd() -> Option<Vec<f64>> {
    let path = std::env::var("THETA_GD").ok()?;
    Some(
        std::fs::read(path)
            .unwrap()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}
