//! `device`: the CUDA path's code (candle's classifier) run end to end on the CPU
//! against the hand-written kernels, the device shown in the record, and the errors of
//! a device that cannot be used.

mod common;

use common::{noiselab, noiselab_ok, path_str};
use std::collections::BTreeMap;
use std::path::Path;

/// A tiny FashionMNIST run in f64 exercising every operation the experiments use:
/// full-batch gradients (GD phase, every dynamics), per-sample and minibatch gradient
/// matrices (Σ, SGD), HVPs (Lanczos for GLD Hessian / 1st eigvec and the spectrum,
/// Tr(HΣ), Hutchinson), expected sharpness and test accuracy.
fn tiny(device: &str, out: &Path) -> String {
    let data = common::shared_data("fashion-mnist-subset");
    let sets = [
        format!("fashion_mnist.data_dir=\"{}\"", data.display()),
        "fashion_mnist.precision=\"f64\"".into(),
        "fashion_mnist.train_samples=32".into(),
        "fashion_mnist.corrupted=6".into(),
        "fashion_mnist.test_samples=50".into(),
        "fashion_mnist.gd_iterations=6".into(),
        "fashion_mnist.gd_metrics_every=0".into(),
        "fashion_mnist.iterations=4".into(),
        "fashion_mnist.metrics_every=4".into(),
        "fashion_mnist.sharpness_samples=4".into(),
        "fashion_mnist.trace_probes=2".into(),
        "fashion_mnist.hessian_spectrum=3".into(),
        "noise.batch_size=4".into(),
        "noise.gld_hessian.k=3".into(),
        "noise.gld_hessian.refresh=2".into(),
        // GLD leading and 1st eigvec use the same operations as GLD diag and Hessian.
        r#"dynamics=["gd","sgd","gld_diag","gld_hessian"]"#.into(),
    ];
    let mut args = vec![
        "run",
        "fashion_mnist",
        "--quiet",
        "--device",
        device,
        "--threads",
        "2",
        "--out",
        path_str(out),
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    noiselab_ok(&args)
}

/// Every (dynamics, replicate, iteration, metric) → value of `export`.
fn values(run: &Path) -> BTreeMap<String, f64> {
    let csv = noiselab_ok(&["export", path_str(run)]);
    csv.lines()
        .skip(1)
        .map(|l| {
            let (key, value) = l.rsplit_once(',').expect("a CSV row");
            (key.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn the_candle_path_on_the_cpu_equals_the_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let (kernels, candle) = (dir.path().join("kernels"), dir.path().join("candle"));
    tiny("cpu", &kernels);
    tiny("candle-cpu", &candle);
    let (a, b) = (values(&kernels), values(&candle));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "both runs measure the same things"
    );
    let metrics: std::collections::BTreeSet<&str> =
        a.keys().map(|k| k.rsplit(',').next().unwrap()).collect();
    for m in [
        "test_accuracy",
        "sharpness",
        "tr_h_sigma",
        "projection_coefficient",
    ] {
        assert!(metrics.contains(m), "{m} measured: {metrics:?}");
    }
    // Same θ order, same streams, f64 on both: they differ only in the order of sums
    // (1e-16 per operation), which ten iterations and Lanczos amplify to ~1e-13; a
    // wrong operation would differ in the first digits.
    for (key, x) in &a {
        let y = b[key];
        let scale = x.abs().max(y.abs()).max(1e-12);
        assert!(
            (x - y).abs() <= 1e-9 * scale,
            "{key}: kernels {x:e}, candle {y:e}"
        );
    }
    // The device is part of the record.
    let info = common::noiselab_json(&["inspect", path_str(&candle), "--json"]);
    assert_eq!(info["device"], "candle-cpu", "{info}");
    let text = noiselab_ok(&["inspect", path_str(&candle)]);
    assert!(text.contains("fashion_mnist on candle-cpu"), "{text}");
}

#[test]
fn unusable_devices_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let data = common::shared_data("fashion-mnist-subset");
    let data = format!("fashion_mnist.data_dir=\"{}\"", data.display());
    let refuse = |args: &[&str], wanted: &[&str]| {
        let o = noiselab(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{args:?}: `{w}` missing from: {err}");
        }
        assert!(!out.exists(), "{args:?} created a run directory");
    };
    let out_s = path_str(&out);
    refuse(
        &["run", "fashion_mnist", "--device", "gpu", "--out", out_s],
        &["--device", "\"gpu\"", "cuda:N"],
    );
    refuse(
        &["run", "toy2d", "--device", "cuda", "--out", out_s],
        &["device", "toy2d", "CPU only"],
    );
    refuse(
        &["run", "toy2d", "--set", "device=\"tpu\"", "--out", out_s],
        &["device", "\"tpu\"", "cuda:N"],
    );
    if !noiselab::device::Device::cuda_compiled() {
        refuse(
            &[
                "run",
                "fashion_mnist_quick",
                "--device",
                "cuda:1",
                "--set",
                &data,
                "--out",
                out_s,
            ],
            &["cuda:1", "built without CUDA", "scripts/build-cuda.sh"],
        );
    }
}
