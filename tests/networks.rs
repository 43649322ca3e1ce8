//! LeNet and VGG11 on candle against independent oracles: PyTorch (committed fixture from
//! scripts/reference_lenet.py), finite differences, single-sample passes, dense
//! eigendecompositions and exact traces.

mod common;

use candle_core::{DType, Device};
use common::{relative_error, shared_data, Z};
use noiselab::data::{idx, ImageSet};
use noiselab::estimators::covariance::GradientCovariance;
use noiselab::estimators::lanczos::{top_eigenpairs, LanczosOptions};
use noiselab::estimators::trace::{hutchinson, slq};
use noiselab::linalg::symmetric_eigen;
use noiselab::models::classifier::Classifier;
use noiselab::models::native::NativeClassifier;
use noiselab::models::network::{second_order_available, Architecture, Layer, Network};
use noiselab::models::{lenet, vgg11};
use noiselab::objective::Objective;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use std::path::Path;

fn fashion(n: usize) -> ImageSet {
    idx::read_split(
        &shared_data("fashion-mnist-subset"),
        idx::Split::Train,
        Some(n),
    )
    .expect("the FashionMNIST subset in ../shared/data")
}

fn lenet_on(data: &ImageSet, dtype: DType) -> Classifier {
    let net = Network::new(lenet::architecture().unwrap(), dtype, Device::Cpu).unwrap();
    Classifier::new(net, data).unwrap()
}

struct Reference {
    meta: serde_json::Value,
    theta: Vec<f64>,
    v: Vec<f64>,
    grad: Vec<f64>,
    hvp: Vec<f64>,
    batch_grads: Vec<Vec<f64>>,
}

fn reference() -> Reference {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lenet_reference.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(dir.join("lenet_reference.f64")).unwrap();
    let all: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let d = meta["dim"].as_u64().unwrap() as usize;
    assert_eq!(d, lenet::PARAMETERS);
    let parts: Vec<Vec<f64>> = all.chunks_exact(d).map(<[f64]>::to_vec).collect();
    assert_eq!(parts.len(), meta["layout"].as_array().unwrap().len());
    Reference {
        theta: parts[0].clone(),
        v: parts[1].clone(),
        grad: parts[2].clone(),
        hvp: parts[3].clone(),
        batch_grads: parts[4..].to_vec(),
        meta,
    }
}

#[test]
fn parameter_counts_and_order_are_the_papers() {
    let le = lenet::architecture().unwrap();
    assert_eq!(le.dim(), 11_330);
    let names: Vec<&str> = le.parameters().iter().map(|p| p.name.as_str()).collect();
    let reference = reference();
    let torch_names: Vec<&str> = reference.meta["parameter_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names, torch_names);
    assert_eq!(vgg11::architecture().unwrap().dim(), 9_750_922);
}

#[test]
fn lenet_matches_pytorch_in_f64() {
    let r = reference();
    let n = r.meta["samples"].as_u64().unwrap() as usize;
    let data = fashion(n);
    let labels: Vec<u8> = r.meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(data.labels, labels, "same images as the reference");
    let model = lenet_on(&data, DType::F64);
    let (loss, grad) = model.loss_and_gradient(&r.theta).unwrap();
    let torch_loss = r.meta["loss"].as_f64().unwrap();
    assert!(
        (loss - torch_loss).abs() < 1e-12 * torch_loss,
        "{loss} vs {torch_loss}"
    );
    let e = relative_error(&grad, &r.grad);
    assert!(e < 1e-10, "gradient: relative error {e:e}");
    let hv = model.hvp(&r.theta, &r.v).unwrap();
    let e = relative_error(&hv, &r.hvp);
    assert!(e < 1e-10, "HVP: relative error {e:e}");
    let b = r.meta["batch_size"].as_u64().unwrap() as usize;
    let all: Vec<usize> = (0..n).collect();
    let batches = model.batch_gradients(&r.theta, &all, b).unwrap();
    for (k, want) in r.batch_grads.iter().enumerate() {
        let e = relative_error(batches.row(k), want);
        assert!(e < 1e-10, "minibatch {k}: relative error {e:e}");
    }
}

#[test]
fn lenet_matches_pytorch_in_f32_to_single_precision() {
    let r = reference();
    let data = fashion(r.meta["samples"].as_u64().unwrap() as usize);
    let model = lenet_on(&data, DType::F32);
    let (loss, grad) = model.loss_and_gradient(&r.theta).unwrap();
    let torch_loss = r.meta["loss"].as_f64().unwrap();
    assert!((loss - torch_loss).abs() < 1e-5 * torch_loss);
    let e = relative_error(&grad, &r.grad);
    assert!(e < 1e-4, "gradient: relative error {e:e}");
    let e = relative_error(&model.hvp(&r.theta, &r.v).unwrap(), &r.hvp);
    assert!(e < 1e-4, "HVP: relative error {e:e}");
    // A finite-difference HVP cannot get near this on a ReLU/max-pool network; the
    // f64 reference is matched to f32 accuracy.
    let all: Vec<usize> = (0..16).collect();
    let batches = model.batch_gradients(&r.theta, &all, 8).unwrap();
    for (k, want) in r.batch_grads.iter().enumerate() {
        let e = relative_error(batches.row(k), want);
        assert!(e < 1e-4, "minibatch {k}: relative error {e:e}");
    }
}

#[test]
fn batched_per_sample_and_minibatch_gradients_match_single_sample_passes() {
    let data = fashion(24);
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    for dtype in [DType::F64, DType::F32] {
        let model = lenet_on(&data, dtype);
        let theta = model.network().arch.init_theta(&mut rng);
        let per_sample = model.per_sample_gradients(&theta).unwrap();
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        let mut mean = vec![0.0; theta.len()];
        for i in 0..data.len() {
            let single = lenet_on(&data.select(&[i]), dtype);
            let (_, g) = single.loss_and_gradient(&theta).unwrap();
            let e = relative_error(per_sample.row(i), &g);
            assert!(e < tol, "{dtype:?} sample {i}: relative error {e:e}");
            for (m, x) in mean.iter_mut().zip(&g) {
                *m += x / data.len() as f64;
            }
        }
        // Minibatches of shuffled indices: each row is the mean of its samples' rows.
        let order = [5, 17, 2, 9, 23, 0, 11, 14, 3, 20, 8, 1];
        let batches = model.batch_gradients(&theta, &order, 4).unwrap();
        for k in 0..3 {
            let want: Vec<f64> = (0..theta.len())
                .map(|j| {
                    order[4 * k..4 * k + 4]
                        .iter()
                        .map(|&i| per_sample.row(i)[j])
                        .sum::<f64>()
                        / 4.0
                })
                .collect();
            let e = relative_error(batches.row(k), &want);
            assert!(e < tol, "{dtype:?} batch {k}: relative error {e:e}");
        }
        let (_, full) = model.loss_and_gradient(&theta).unwrap();
        assert!(relative_error(&full, &mean) < tol);
    }
}

/// Every layer's gradient, the pooling's included, against central differences on a
/// sample of coordinates of every parameter tensor (f64; kinks are not crossed at this ε).
#[test]
fn lenet_gradient_matches_finite_differences_in_every_layer() {
    let data = fashion(8);
    let model = lenet_on(&data, DType::F64);
    let arch = model.network().arch.clone();
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let theta = arch.init_theta(&mut rng);
    let (_, grad) = model.loss_and_gradient(&theta).unwrap();
    let eps = 1e-6;
    for p in arch.parameters() {
        let mut worst: f64 = 0.0;
        let scale = grad[p.offset..p.offset + p.len()]
            .iter()
            .fold(0.0f64, |m, g| m.max(g.abs()));
        for t in 0..6 {
            let j = p.offset + (t * 7919) % p.len();
            let mut plus = theta.clone();
            plus[j] += eps;
            let mut minus = theta.clone();
            minus[j] -= eps;
            let fd = (model.loss(&plus).unwrap() - model.loss(&minus).unwrap()) / (2.0 * eps);
            worst = worst.max((fd - grad[j]).abs() / scale);
        }
        assert!(
            worst < 1e-6,
            "{}: finite differences off by {worst:e} of its largest entry",
            p.name
        );
    }
}

/// A small network on real images for the dense oracles (D = 441), with a padded
/// convolution as VGG11 has.
fn tiny(data: &ImageSet) -> Classifier {
    let arch = Architecture::new(
        "tiny",
        (1, 28, 28),
        10,
        vec![
            Layer::Conv2d {
                name: "conv1",
                in_channels: 1,
                out_channels: 2,
                kernel: 5,
                padding: 2,
            },
            Layer::MaxPool2,
            Layer::Relu,
            Layer::Conv2d {
                name: "conv2",
                in_channels: 2,
                out_channels: 1,
                kernel: 3,
                padding: 0,
            },
            Layer::MaxPool2,
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear {
                name: "fc",
                inputs: 36,
                outputs: 10,
            },
        ],
    )
    .unwrap();
    assert_eq!(arch.dim(), 441);
    Classifier::new(Network::new(arch, DType::F64, Device::Cpu).unwrap(), data).unwrap()
}

#[test]
fn exact_hvp_is_available_under_cargo() {
    assert!(
        second_order_available(),
        "CANDLE_GRAD_DO_NOT_DETACH=1 comes from .cargo/config.toml"
    );
}

#[test]
fn lanczos_hessian_eigenpairs_match_the_dense_hessian() {
    let data = fashion(32);
    let model = tiny(&data);
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let mut theta = model.network().arch.init_theta(&mut rng);
    // A few steps of training first: the spectrum of a trained network is the one of
    // interest (and at a too large step the ReLUs die and H keeps only fc.bias's rank 9).
    for _ in 0..10 {
        let (_, g) = model.loss_and_gradient(&theta).unwrap();
        theta.iter_mut().zip(&g).for_each(|(t, gi)| *t -= 0.1 * gi);
    }
    let d = model.dim();
    let dense = model.hessian(&theta).unwrap();
    let asym = (&dense - dense.transpose()).abs().max();
    assert!(
        asym < 1e-10 * dense.abs().max(),
        "HVPs of an exact Hessian are symmetric"
    );
    let oracle = symmetric_eigen(dense.clone());
    assert!(
        oracle.values[10] > 1e-3 * oracle.values[0],
        "a live network has more than ten directions of curvature: {:?}",
        &oracle.values[..12]
    );
    let found =
        top_eigenpairs(d, |v| model.hvp(&theta, v), &LanczosOptions::new(10), None).unwrap();
    assert!(found.products < d / 4, "{} products", found.products);
    for (i, (l, o)) in found.pairs.values.iter().zip(&oracle.values).enumerate() {
        assert!(
            (l - o).abs() <= 1e-6 * o.abs(),
            "eigenvalue {i}: {l} vs {o}; dense spectrum {:?}",
            &oracle.values[..12]
        );
    }
    // Hutchinson and SLQ on this network's exact Hessian: within their sampling error of
    // the exact trace (Rademacher probes: Var zᵀHz = 2·Σ_{i≠j} H_ij²).
    let exact = dense.trace();
    let off_diag: f64 = dense.iter().map(|x| x * x).sum::<f64>()
        - dense.diagonal().iter().map(|x| x * x).sum::<f64>();
    let matvec = |v: &[f64]| {
        Ok((&dense * nalgebra::DVector::from_column_slice(v))
            .as_slice()
            .to_vec())
    };
    let est = hutchinson(d, matvec, 400, 7).unwrap();
    assert!(
        (est.value - exact).abs() < Z * est.stderr,
        "{est:?} vs {exact}"
    );
    let probes = 40;
    let density = slq(d, matvec, probes, 30, 9).unwrap();
    let se = (2.0 * off_diag / probes as f64).sqrt() / d as f64;
    let mean = density.integrate(|x| x);
    assert!(
        (mean - exact / d as f64).abs() < Z * se,
        "{mean} vs {}",
        exact / d as f64
    );
    // …and SLQ's extreme nodes bracket the spectrum (Ritz values interlace).
    let top = density.nodes.iter().cloned().fold(f64::MIN, f64::max);
    assert!(top <= oracle.values[0] * (1.0 + 1e-9) && top > 0.9 * oracle.values[0]);
}

#[test]
fn gram_trick_eigenpairs_of_network_gradients_match_the_dense_covariance() {
    let data = fashion(40);
    let model = tiny(&data);
    let theta = model
        .network()
        .arch
        .init_theta(&mut ChaCha12Rng::seed_from_u64(2));
    let sigma =
        GradientCovariance::per_sample(model.per_sample_gradients(&theta).unwrap()).unwrap();
    let oracle = symmetric_eigen(sigma.dense());
    let top = sigma.top_eigenpairs(8);
    for i in 0..8 {
        let (l, o) = (top.values[i], oracle.values[i]);
        assert!(
            (l - o).abs() <= 1e-9 * oracle.values[0],
            "eigenvalue {i}: {l} vs {o}"
        );
        let overlap: f64 = top.vectors[i]
            .iter()
            .zip(&oracle.vectors[i])
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            overlap.abs() > 1.0 - 1e-8,
            "eigenvector {i}: overlap {overlap}"
        );
    }
    assert!((sigma.trace() - sigma.dense().trace()).abs() < 1e-10 * sigma.trace());
}

#[test]
fn vgg11_takes_descent_steps_on_cifar_images() {
    let data = noiselab::data::cifar::read_batches(
        &[shared_data("cifar10-subset").join("data_batch_1.bin")],
        Some(6),
    )
    .unwrap();
    for dtype in [DType::F32, DType::F64] {
        let net = Network::new(vgg11::architecture().unwrap(), dtype, Device::Cpu).unwrap();
        let model = Classifier::new(net, &data).unwrap();
        let mut theta = model
            .network()
            .arch
            .init_theta(&mut ChaCha12Rng::seed_from_u64(0));
        let (l0, g) = model.loss_and_gradient(&theta).unwrap();
        assert!(l0.is_finite() && g.iter().all(|x| x.is_finite()));
        theta.iter_mut().zip(&g).for_each(|(t, gi)| *t -= 0.05 * gi);
        let l1 = model.loss(&theta).unwrap();
        assert!(
            l1 < l0,
            "{dtype:?}: a gradient step must lower the loss ({l0} → {l1})"
        );
        let batches = model
            .batch_gradients(&theta, &[0, 1, 2, 3, 4, 5], 3)
            .unwrap();
        let (_, g1) = model.loss_and_gradient(&theta).unwrap();
        let mean: Vec<f64> = (0..g1.len())
            .map(|j| 0.5 * (batches.row(0)[j] + batches.row(1)[j]))
            .collect();
        let tol = if dtype == DType::F64 { 1e-10 } else { 1e-4 };
        assert!(relative_error(&mean, &g1) < tol);
    }
}

/// The hand-written kernels (`models/native.rs`) against the same PyTorch reference:
/// loss, gradient, the exact HVP by R-operator, and minibatch gradients.
#[test]
fn native_lenet_matches_pytorch() {
    let r = reference();
    let n = r.meta["samples"].as_u64().unwrap() as usize;
    let data = fashion(n);
    let b = r.meta["batch_size"].as_u64().unwrap() as usize;
    let all: Vec<usize> = (0..n).collect();
    let torch_loss = r.meta["loss"].as_f64().unwrap();
    let check = |model: &dyn Objective, tol: f64| {
        let (loss, grad) = model.loss_and_gradient(&r.theta).unwrap();
        assert!(
            (loss - torch_loss).abs() < tol * torch_loss,
            "{loss} vs {torch_loss}"
        );
        assert!((model.loss(&r.theta).unwrap() - loss).abs() < tol * loss);
        let e = relative_error(&grad, &r.grad);
        assert!(e < tol, "gradient: relative error {e:e}");
        let e = relative_error(&model.hvp(&r.theta, &r.v).unwrap(), &r.hvp);
        assert!(e < tol, "HVP: relative error {e:e}");
        let batches = model.batch_gradients(&r.theta, &all, b).unwrap();
        for (k, want) in r.batch_grads.iter().enumerate() {
            let e = relative_error(batches.row(k), want);
            assert!(e < tol, "minibatch {k}: relative error {e:e}");
        }
    };
    check(
        &NativeClassifier::<f64>::new(lenet::architecture().unwrap(), &data).unwrap(),
        1e-10,
    );
    check(
        &NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data).unwrap(),
        1e-4,
    );
}

/// Kernels vs candle in f64 on three-channel CIFAR-10 images through a padded
/// convolution, pooling and a flatten of a multi-channel image (VGG11's layer kinds):
/// loss, gradient, per-sample and shuffled minibatch gradients, HVP, test evaluation.
#[test]
fn native_kernels_match_candle_on_cifar_images() {
    let data = noiselab::data::cifar::read_batches(
        &[shared_data("cifar10-subset").join("data_batch_1.bin")],
        Some(12),
    )
    .unwrap();
    let arch = Architecture::new(
        "vgg-like",
        (3, 32, 32),
        10,
        vec![
            Layer::Conv2d {
                name: "c1",
                in_channels: 3,
                out_channels: 4,
                kernel: 3,
                padding: 1,
            },
            Layer::Relu,
            Layer::MaxPool2,
            Layer::Conv2d {
                name: "c2",
                in_channels: 4,
                out_channels: 6,
                kernel: 3,
                padding: 1,
            },
            Layer::Relu,
            Layer::MaxPool2,
            Layer::MaxPool2,
            Layer::Flatten,
            Layer::Linear {
                name: "fc1",
                inputs: 96,
                outputs: 16,
            },
            Layer::Relu,
            Layer::Linear {
                name: "fc2",
                inputs: 16,
                outputs: 10,
            },
        ],
    )
    .unwrap();
    let candle_model = Classifier::new(
        Network::new(arch.clone(), DType::F64, Device::Cpu).unwrap(),
        &data,
    )
    .unwrap();
    let native = NativeClassifier::<f64>::new(arch.clone(), &data).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(4);
    let theta = arch.init_theta(&mut rng);
    let v = arch.init_theta(&mut rng);
    let (l1, g1) = candle_model.loss_and_gradient(&theta).unwrap();
    let (l2, g2) = native.loss_and_gradient(&theta).unwrap();
    assert!((l1 - l2).abs() < 1e-12 * l1);
    // Losses of parts of the training set (the per-batch sharpness estimator's
    // evaluations): native against candle, and the parts' weighted mean is L(θ).
    let parts = [0..5, 5..10, 10..12];
    let mut mean = 0.0;
    for part in parts {
        let (a, b) = (
            candle_model.batch_loss(&theta, part.clone()).unwrap(),
            native.batch_loss(&theta, part.clone()).unwrap(),
        );
        assert!((a - b).abs() < 1e-12 * a, "samples {part:?}: {a} vs {b}");
        mean += b * part.len() as f64 / data.len() as f64;
    }
    assert!((mean - l2).abs() < 1e-12 * l2, "{mean} vs {l2}");
    for bad in [3..3, 10..13] {
        let err = native.batch_loss(&theta, bad).unwrap_err().to_string();
        assert!(err.contains("N = 12"), "{err}");
    }
    assert!(relative_error(&g2, &g1) < 1e-11);
    let p1 = candle_model.per_sample_gradients(&theta).unwrap();
    let p2 = native.per_sample_gradients(&theta).unwrap();
    for i in 0..data.len() {
        assert!(relative_error(p2.row(i), p1.row(i)) < 1e-11, "sample {i}");
    }
    let order = [7, 2, 11, 0, 5, 9];
    let b1 = candle_model.batch_gradients(&theta, &order, 3).unwrap();
    let b2 = native.batch_gradients(&theta, &order, 3).unwrap();
    for k in 0..2 {
        assert!(relative_error(b2.row(k), b1.row(k)) < 1e-11, "batch {k}");
    }
    let h1 = candle_model.hvp(&theta, &v).unwrap();
    let h2 = native.hvp(&theta, &v).unwrap();
    assert!(
        relative_error(&h2, &h1) < 1e-10,
        "{:e}",
        relative_error(&h2, &h1)
    );
    // A block of directions in one R-operator pass (block tangents through the padded
    // convolutions, the pooling and the multi-channel flatten) against candle's double
    // backprop, one direction at a time.
    let dirs: Vec<Vec<f64>> = (0..3).map(|_| arch.init_theta(&mut rng)).collect();
    let refs: Vec<&[f64]> = dirs.iter().map(Vec::as_slice).collect();
    let block = native.hvp_block(&theta, &refs).unwrap();
    assert_eq!(block.len(), 3);
    for (j, (hv, v)) in block.iter().zip(&dirs).enumerate() {
        let e = relative_error(hv, &candle_model.hvp(&theta, v).unwrap());
        assert!(e < 1e-10, "block direction {j}: {e:e}");
    }
    // vᵀHv by forward mode (first and second directional derivatives of the logits)
    // against candle's double-backprop HVP.
    let forms = native.hessian_quadratic_forms(&theta, &refs).unwrap();
    for (j, (q, v)) in forms.iter().zip(&dirs).enumerate() {
        let want: f64 = v
            .iter()
            .zip(candle_model.hvp(&theta, v).unwrap())
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (q - want).abs() < 1e-10 * want.abs().max(1e-12),
            "quadratic form {j}: {q} vs {want}"
        );
    }
    let test = noiselab::data::cifar::read_batches(
        &[shared_data("cifar10-subset").join("test_batch.bin")],
        Some(20),
    )
    .unwrap();
    let e1 = candle_model.evaluate(&theta, &test).unwrap();
    let e2 = native.evaluate(&theta, &test).unwrap();
    assert!((e1.loss - e2.loss).abs() < 1e-12 * e1.loss && e1.accuracy == e2.accuracy);
}

/// Chunks are summed in a fixed order whatever the thread count: gradients, HVPs and
/// per-sample rows are bitwise the same on 1 and on 2 threads, and from run to run.
#[test]
fn native_results_do_not_depend_on_the_thread_count() {
    let data = fashion(300);
    let model = NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(8);
    let theta = model.arch().init_theta(&mut rng);
    let v = model.arch().init_theta(&mut rng);
    let compute = || {
        let (l, g) = model.loss_and_gradient(&theta).unwrap();
        let h = model.hvp(&theta, &v).unwrap();
        let b = model
            .batch_gradients(&theta, &(0..300).collect::<Vec<_>>(), 20)
            .unwrap();
        (l, g, h, b.row(7).to_vec())
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(compute);
    let two = pool(2).install(compute);
    let again = pool(2).install(compute);
    assert_eq!(one, two);
    assert_eq!(two, again);
}

/// A block HVP is b HVPs: on LeNet (f64) every direction of a block — including PyTorch's
/// fixture direction, and blocks longer than one pass takes, which are split — equals
/// PyTorch's double backprop and the single-direction product; the forward-mode
/// quadratic forms vᵀHv equal vᵀ(Hv).
#[test]
fn native_block_hvps_match_pytorch_and_single_products() {
    let r = reference();
    let n = r.meta["samples"].as_u64().unwrap() as usize;
    let model = NativeClassifier::<f64>::new(lenet::architecture().unwrap(), &fashion(n)).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(12);
    let mut dirs: Vec<Vec<f64>> = (0..39).map(|_| model.arch().init_theta(&mut rng)).collect();
    dirs[17] = r.v.clone();
    let refs: Vec<&[f64]> = dirs.iter().map(Vec::as_slice).collect();
    let block = model.hvp_block(&r.theta, &refs).unwrap();
    assert_eq!(block.len(), dirs.len());
    let e = relative_error(&block[17], &r.hvp);
    assert!(e < 1e-10, "fixture direction: {e:e}");
    for j in [0, 16, 18, 31, 32, 38] {
        let e = relative_error(&block[j], &model.hvp(&r.theta, &dirs[j]).unwrap());
        assert!(e < 1e-12, "direction {j}: {e:e}");
    }
    let forms = model.hessian_quadratic_forms(&r.theta, &refs).unwrap();
    for (j, (q, hv)) in forms.iter().zip(&block).enumerate() {
        let want: f64 = dirs[j].iter().zip(hv).map(|(a, b)| a * b).sum();
        assert!(
            (q - want).abs() < 1e-10 * want.abs(),
            "quadratic form {j}: {q} vs {want}"
        );
    }
}

/// The kernels against candle in f64 on LeNet with enough images for several chunks and
/// after GD steps (units that ReLU and the pooling switch off, as in training): loss,
/// gradient, minibatch gradients, single and block HVPs, quadratic forms.
#[test]
fn native_lenet_matches_candle_over_chunks_and_after_training_steps() {
    let data = fashion(150);
    let native = NativeClassifier::<f64>::new(lenet::architecture().unwrap(), &data).unwrap();
    let single = NativeClassifier::<f32>::new(lenet::architecture().unwrap(), &data).unwrap();
    let candle = lenet_on(&data, DType::F64);
    let mut theta = lenet::architecture()
        .unwrap()
        .init_theta(&mut ChaCha12Rng::seed_from_u64(3));
    let all: Vec<usize> = (0..data.len()).collect();
    let mut rng = ChaCha12Rng::seed_from_u64(4);
    for step in 0..=12 {
        let (loss, grad) = native.loss_and_gradient(&theta).unwrap();
        if step % 6 == 0 {
            let (want_loss, want) = candle.loss_and_gradient(&theta).unwrap();
            assert!(
                (loss - want_loss).abs() < 1e-10 * want_loss,
                "step {step}: loss"
            );
            let e = relative_error(&grad, &want);
            assert!(e < 1e-10, "step {step}: gradient, relative error {e:e}");
            let e = relative_error(&single.loss_and_gradient(&theta).unwrap().1, &want);
            assert!(e < 1e-5, "step {step}: f32 gradient, relative error {e:e}");
            let (got, want) = (
                native.batch_gradients(&theta, &all, 30).unwrap(),
                candle.batch_gradients(&theta, &all, 30).unwrap(),
            );
            for k in 0..5 {
                let e = relative_error(got.row(k), want.row(k));
                assert!(
                    e < 1e-10,
                    "step {step}: minibatch {k}, relative error {e:e}"
                );
            }
            let vs: Vec<Vec<f64>> = (0..3)
                .map(|_| {
                    (0..theta.len())
                        .map(|_| rng.random::<f64>() - 0.5)
                        .collect()
                })
                .collect();
            let refs: Vec<&[f64]> = vs.iter().map(Vec::as_slice).collect();
            let block = native.hvp_block(&theta, &refs).unwrap();
            let forms = native.hessian_quadratic_forms(&theta, &refs).unwrap();
            for (j, v) in vs.iter().enumerate() {
                let want = candle.hvp(&theta, v).unwrap();
                let e = relative_error(&native.hvp(&theta, v).unwrap(), &want);
                assert!(e < 1e-10, "step {step}: HVP {j}, relative error {e:e}");
                let e = relative_error(&block[j], &want);
                assert!(
                    e < 1e-10,
                    "step {step}: block HVP {j}, relative error {e:e}"
                );
                let e = relative_error(&single.hvp(&theta, v).unwrap(), &want);
                assert!(e < 1e-5, "step {step}: f32 HVP {j}, relative error {e:e}");
                let e = relative_error(&single.hvp_block(&theta, &refs).unwrap()[j], &want);
                assert!(
                    e < 1e-5,
                    "step {step}: f32 block HVP {j}, relative error {e:e}"
                );
                let q: f64 = v.iter().zip(&want).map(|(a, b)| a * b).sum();
                assert!(
                    (forms[j] - q).abs() < 1e-8 * q.abs().max(1.0),
                    "step {step}: quadratic form {j}: {} vs {q}",
                    forms[j]
                );
            }
        }
        theta.iter_mut().zip(&grad).for_each(|(t, g)| *t -= 0.1 * g);
    }
}
