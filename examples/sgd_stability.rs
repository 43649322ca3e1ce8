//! Whether SGD with step η and batches of m can stay near a point θ (a minimum such as
//! θ_GD), from the minibatch Hessians there, in f64 on the kernels:
//!
//! - λ1(H), against GD's limit 2/η;
//! - λ1(H_B) of each batch of a random partition of the training set (mean, largest,
//!   how many exceed 2/η);
//! - the linearised SGD step x ← (I − ηH_B)·x moves E‖x‖² by the factor
//!   1 + η·vᵀ(η·E[H_B²] − 2H)·v along a unit v, so the largest eigenvalue of
//!   η·E[H_B²] − 2H (Lanczos; E over the partition's batches, each batch a uniform draw
//!   of m) says by how much one step can grow the distance to θ in mean square: above 0,
//!   SGD leaves θ from the noise alone, at that rate (the mean-square stability of SGD
//!   at a minimum; METHOD.md §2's SGD step, linearised).
//!
//!   cargo run --release --example sgd_stability -- CONFIG THETA_FILE…
//!
//! A THETA_FILE is D little-endian f64s (a run's `theta_gd.f64`). CONFIG gives the data,
//! η (`eta`) and m (`noise.batch_size`).
use noiselab::estimators::hessian;
use noiselab::estimators::lanczos::{self, LanczosOptions};
use noiselab::experiments::classification::{load_data, read_theta_gd, ImageConfig};
use noiselab::experiments::fashion_mnist::FashionMnist;
use noiselab::linalg::axpy;
use noiselab::models::lenet;
use noiselab::models::native::NativeClassifier;
use noiselab::objective::Objective;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: sgd_stability CONFIG THETA_FILE…");
        std::process::exit(2);
    }
    let config = noiselab::config::load(&args[1], &[]).unwrap().config;
    let eta = config
        .settings::<ImageConfig<FashionMnist>>()
        .expect("a fashion_mnist config")
        .eta;
    let m = config.noise.batch_size;
    let data = load_data::<FashionMnist>(&config).unwrap();
    let arch = || lenet::architecture().unwrap();
    let full = NativeClassifier::<f64>::new(arch(), &data.train).unwrap();
    let n = data.train.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha12Rng::seed_from_u64(7));
    let batches: Vec<NativeClassifier<f64>> = order
        .chunks_exact(m)
        .map(|b| NativeClassifier::<f64>::new(arch(), &data.train.select(b)).unwrap())
        .collect();
    println!(
        "# {n} training images, {} batches of {m}, η = {eta} (2/η = {:.2}), f64",
        batches.len(),
        2.0 / eta
    );
    println!("point\tλ1(H)\tmean λ1(H_B)\tmax λ1(H_B)\tbatches with λ1(H_B) > 2/η\tλmax(η·E[H_B²] − 2H)\tE‖x‖² factor per step");
    for path in &args[2..] {
        let theta = read_theta_gd::<FashionMnist>(std::path::Path::new(path)).unwrap_or_else(|e| {
            eprintln!("sgd_stability: {e}");
            std::process::exit(1)
        });
        let top =
            |o: &dyn Objective| hessian::top_eigenpairs(o, &theta, 1, None).unwrap().values[0];
        let lambda1 = top(&full);
        let per_batch: Vec<f64> = batches.par_iter().map(|b| top(b)).collect();
        let mean = per_batch.iter().sum::<f64>() / per_batch.len() as f64;
        let max = per_batch.iter().copied().fold(f64::MIN, f64::max);
        let over = per_batch.iter().filter(|&&l| l > 2.0 / eta).count();
        // v ↦ η·mean_B H_B(H_B v) − 2·mean_B H_B v (mean_B H_B = H on a partition).
        let growth = |v: &[f64]| {
            let parts: Vec<Vec<f64>> = batches
                .par_iter()
                .map(|b| {
                    let hv = b.hvp(&theta, v)?;
                    let mut out = b.hvp(&theta, &hv)?;
                    out.iter_mut().for_each(|x| *x *= eta);
                    axpy(-2.0, &hv, &mut out);
                    Ok(out)
                })
                .collect::<noiselab::Result<_>>()?;
            let mut sum = vec![0.0; v.len()];
            for p in &parts {
                axpy(1.0 / parts.len() as f64, p, &mut sum);
            }
            Ok(sum)
        };
        let options = LanczosOptions {
            max_products: 200,
            tol: 1e-6,
            ..LanczosOptions::new(1)
        };
        let b = lanczos::top_eigenpairs(full.dim(), growth, &options, None).unwrap();
        let rate = b.pairs.values[0];
        println!(
            "{path}\t{lambda1:.3}\t{mean:.3}\t{max:.3}\t{over}/{}\t{rate:.3} (residual {:.1e})\t{:.3}",
            per_batch.len(),
            b.max_residual,
            1.0 + eta * rate
        );
    }
}
