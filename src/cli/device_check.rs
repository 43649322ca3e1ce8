//! `noiselab device-check`: every operation the network experiments use, computed by
//! candle's classifier on a device (`cuda`, or `candle-cpu` as a dry run) and compared
//! at the same θ with the CPU kernels in f64, with the device's median time per
//! operation. `scripts/gpu-check.sh` runs it on a GPU machine beside PyTorch
//! (`scripts/bench_torch_gpu.py`, the same workloads).

use noiselab::data::{ImageSet, Split};
use noiselab::device::Device;
use noiselab::estimators::lanczos::{top_eigenpairs, LanczosOptions};
use noiselab::estimators::sharpness::{expected_sharpness, SharpnessEstimator, SharpnessOptions};
use noiselab::experiments::cifar10::Cifar10;
use noiselab::experiments::classification::Dataset;
use noiselab::experiments::fashion_mnist::FashionMnist;
use noiselab::linalg::{norm_sq, GradientMatrix};
use noiselab::models::classifier::Classifier;
use noiselab::models::native::NativeClassifier;
use noiselab::models::network::Network;
use noiselab::objective::Objective;
use noiselab::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct DeviceCheckArgs {
    /// The device to check: cuda, cuda:N, or candle-cpu (a dry run of the same code on
    /// the CPU).
    #[arg(long, default_value = "cuda")]
    device: Device,
    /// Networks to check, comma-separated: lenet (FashionMNIST), vgg11 (CIFAR-10).
    #[arg(long, value_delimiter = ',', default_value = "lenet,vgg11")]
    arch: Vec<Arch>,
    /// FashionMNIST directory (IDX .gz files) for LeNet.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "../shared/data/fashion-mnist-subset"
    )]
    fashion: PathBuf,
    /// CIFAR-10 directory (binary batches) for VGG11.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "../shared/data/cifar10-subset"
    )]
    cifar: PathBuf,
    /// Training images for LeNet's operations.
    #[arg(long, default_value_t = 1200)]
    lenet_samples: usize,
    /// Training images for VGG11's operations (its per-sample matrix is 39 MB an image
    /// in f32, and the f64 reference computes on the CPU).
    #[arg(long, default_value_t = 64)]
    vgg11_samples: usize,
    /// Timed repetitions of each operation on the device (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// M of the timed expected sharpness (the comparison uses the first 100 of the
    /// same perturbations).
    #[arg(long, default_value_t = 1000)]
    sharpness_samples: usize,
    /// Eigenpairs of the timed Lanczos.
    #[arg(long, default_value_t = 20)]
    eigenpairs: usize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Arch {
    Lenet,
    Vgg11,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Lenet => "lenet",
            Arch::Vgg11 => "vgg11",
        }
    }
}

/// One operation's outcome.
#[derive(Debug, serde::Serialize)]
struct Row {
    arch: Arch,
    operation: &'static str,
    /// What was computed (shapes, sizes).
    detail: String,
    /// Median seconds on the device.
    seconds: f64,
    /// ‖device − reference‖ / ‖reference‖ (eigenvalues: the largest difference over λ1;
    /// test evaluation: the accuracy difference plus the loss's relative difference).
    error: f64,
    tolerance: f64,
    ok: bool,
}

/// Tolerances of f32 on the device against f64 on the CPU. f32's unit roundoff is
/// 6e-8; a gradient sums N·fan-in products in an order the device chooses, which
/// leaves ~1e-6 relative. Second-order quantities (HVPs by double backprop,
/// eigenvalues from them) lose about one more digit; expected sharpness is a
/// difference of nearby losses (a rise of ~1e-3 on a loss of ~2), so f32's 1e-7 of
/// the loss is ~1e-4 of the rise.
const GRADIENT_TOL: f64 = 1e-4;
const SECOND_ORDER_TOL: f64 = 1e-3;
const SHARPNESS_TOL: f64 = 1e-2;
/// Accuracy: images whose f32 logits tie within rounding may flip.
const FLIPPED_TOL: f64 = 0.005;
const SHARPNESS_COMPARED: usize = 100;

fn median_time<R>(repeats: usize, mut f: impl FnMut() -> Result<R>) -> Result<(f64, R)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], last.expect("at least one repeat")))
}

fn relative(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    (diff / norm_sq(b).max(f64::MIN_POSITIVE)).sqrt()
}

fn matrix_relative(a: &GradientMatrix, b: &GradientMatrix) -> f64 {
    relative(a.as_slice(), b.as_slice())
}

fn load<D: Dataset>(dir: &Path, n: usize, test: usize) -> Result<(ImageSet, ImageSet)> {
    let (train, _) = D::read(dir, Split::Train, Some(n))?;
    let (test, _) = D::read(dir, Split::Test, Some(test))?;
    if train.len() < n {
        return Err(Error::Usage(format!(
            "{}: {} training images, {n} asked",
            dir.display(),
            train.len()
        )));
    }
    Ok((train, test))
}

fn check<D: Dataset>(
    args: &DeviceCheckArgs,
    arch: Arch,
    dir: &Path,
    n: usize,
    device: &candle_core::Device,
) -> Result<Vec<Row>> {
    let (train, test) = load::<D>(dir, n, 1000)?;
    let architecture = D::architecture()?;
    let reference = NativeClassifier::<f64>::new(architecture.clone(), &train)?;
    let net = Network::new(
        architecture.clone(),
        candle_core::DType::F32,
        device.clone(),
    )?;
    let model = Classifier::new(net, &train)?;
    let d = model.dim();
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let theta = architecture.init_theta(&mut rng);
    let v: Vec<f64> = {
        use rand_distr::{Distribution, StandardNormal};
        let raw: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let norm = norm_sq(&raw).sqrt();
        raw.iter().map(|x| x / norm).collect()
    };
    let mut rows = Vec::new();
    let mut row = |operation, detail: String, seconds, error: f64, tolerance| {
        let ok = error.is_finite() && error <= tolerance;
        eprintln!(
            "  {:<6} {operation:<12} {seconds:>9.4} s  error {error:.2e} (≤ {tolerance:.0e}) {}  {detail}",
            arch.name(),
            if ok { "ok" } else { "FAILED" }
        );
        rows.push(Row {
            arch,
            operation,
            detail,
            seconds,
            error,
            tolerance,
            ok,
        });
    };
    let reps = args.repeats;

    let (t, (_, g)) = median_time(reps, || model.loss_and_gradient(&theta))?;
    let (_, g_ref) = reference.loss_and_gradient(&theta)?;
    row(
        "fwd_bwd",
        format!("loss and gradient over {n} images, D = {d}"),
        t,
        relative(&g, &g_ref),
        GRADIENT_TOL,
    );

    let all: Vec<usize> = (0..n).collect();
    let (t, per) = median_time(reps, || model.batch_gradients(&theta, &all, 1))?;
    let per_ref = reference.batch_gradients(&theta, &all, 1)?;
    row(
        "per_sample",
        format!("{n} × {d} per-sample gradient matrix"),
        t,
        matrix_relative(&per, &per_ref),
        GRADIENT_TOL,
    );
    drop((per, per_ref));

    let m = 20.min(n);
    let groups: Vec<usize> = {
        use rand::seq::SliceRandom;
        let mut idx = all.clone();
        idx.shuffle(&mut rng);
        idx.truncate(n / m * m);
        idx
    };
    let (t, mb) = median_time(reps, || model.batch_gradients(&theta, &groups, m))?;
    let mb_ref = reference.batch_gradients(&theta, &groups, m)?;
    row(
        "minibatch",
        format!("{} × {d} minibatch gradient matrix (m = {m})", n / m),
        t,
        matrix_relative(&mb, &mb_ref),
        GRADIENT_TOL,
    );

    let (t, hv) = median_time(reps, || model.hvp(&theta, &v))?;
    let hv_ref = reference.hvp(&theta, &v)?;
    row(
        "hvp",
        "one exact Hessian-vector product".into(),
        t,
        relative(&hv, &hv_ref),
        SECOND_ORDER_TOL,
    );

    let k = args.eigenpairs.min(d);
    let options = |tol| LanczosOptions {
        tol,
        max_products: 3 * k + 40,
        ..LanczosOptions::new(k)
    };
    let (t, found) = median_time(reps.min(3), || {
        top_eigenpairs(
            d,
            |x| model.hvp(&theta, x),
            &options(model.hvp_tolerance()),
            None,
        )
    })?;
    let found_ref = top_eigenpairs(
        d,
        |x| reference.hvp(&theta, x),
        &options(reference.hvp_tolerance()),
        None,
    )?;
    // Eigenvalues relative to the largest: small ones near zero have no relative digits.
    let scale = found_ref.pairs.values.first().map_or(1.0, |x| x.abs());
    let error = found
        .pairs
        .values
        .iter()
        .zip(&found_ref.pairs.values)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max);
    row(
        "eigenpairs",
        format!(
            "top {k} of H by Lanczos: {} HVPs, max residual {:.1e}",
            found.products, found.max_residual
        ),
        t,
        error,
        SECOND_ORDER_TOL,
    );

    let samples = args.sharpness_samples;
    // The plain estimator: the one PyTorch's side (bench_torch_gpu.py) times.
    let plain = |samples| SharpnessOptions {
        delta: 0.01,
        samples,
        absolute: false,
        estimator: SharpnessEstimator::Plain,
        batch_size: 1,
        seed: 11,
    };
    let (t, _) = median_time(reps.min(3), || {
        expected_sharpness(&model, &theta, None, &plain(samples))
    })?;
    let compared = SHARPNESS_COMPARED.min(samples);
    let s = expected_sharpness(&model, &theta, None, &plain(compared))?.value;
    let s_ref = expected_sharpness(&reference, &theta, None, &plain(compared))?.value;
    row(
        "sharpness",
        format!("expected sharpness, M = {samples} (compared at M = {compared}), δ = 0.01"),
        t,
        (s - s_ref).abs() / s_ref.abs().max(f64::MIN_POSITIVE),
        SHARPNESS_TOL,
    );

    let (t, eval) = median_time(reps, || model.evaluate(&theta, &test))?;
    let eval_ref = reference.evaluate(&theta, &test)?;
    row(
        "test_eval",
        format!("loss and accuracy on {} test images", test.len()),
        t,
        (eval.accuracy - eval_ref.accuracy).abs()
            + (eval.loss - eval_ref.loss).abs() / eval_ref.loss,
        FLIPPED_TOL,
    );
    Ok(rows)
}

pub fn main(args: DeviceCheckArgs) -> Result<ExitCode> {
    if args.device.is_cpu() {
        return Err(Error::Usage(
            "device-check compares a candle device with the CPU kernels: give --device cuda \
             (or candle-cpu for a dry run)"
                .into(),
        ));
    }
    let device = args.device.candle()?.expect("a candle device");
    if let Some(gpu) = noiselab::device::gpu_memory(&device) {
        eprintln!("device-check on {}: {gpu}", args.device);
    } else {
        eprintln!(
            "device-check on {} (a dry run of the CUDA path's code)",
            args.device
        );
    }
    let mut rows = Vec::new();
    for &arch in &args.arch {
        rows.extend(match arch {
            Arch::Lenet => {
                check::<FashionMnist>(&args, arch, &args.fashion, args.lenet_samples, &device)?
            }
            Arch::Vgg11 => check::<Cifar10>(&args, arch, &args.cifar, args.vgg11_samples, &device)?,
        });
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    let mut text = String::from("arch\toperation\tseconds\terror\ttolerance\tok\tdetail\n");
    for r in &rows {
        text += &format!(
            "{}\t{}\t{:.6}\t{:.3e}\t{:.0e}\t{}\t{}\n",
            r.arch.name(),
            r.operation,
            r.seconds,
            r.error,
            r.tolerance,
            r.ok,
            r.detail
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "device": args.device.to_string(),
            "repeats": args.repeats,
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).expect("JSON"))
            .map_err(|e| Error::io(path, e))?;
    }
    crate::out(&text)?;
    if failed > 0 {
        eprintln!("device-check: {failed} operation(s) outside their tolerance");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
