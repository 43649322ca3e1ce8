//! The CIFAR-10 / VGG11 preset (METHOD.md §4.4) on CPU: it validates, starts and takes steps
//! of every dynamics on the real CIFAR-10 subset; runs that cannot work are refused
//! before they start, naming the file or key.

use std::path::Path;
use std::process::{Command, Output};

fn subset() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/cifar10-subset")
        .display()
        .to_string()
}

fn noiselab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .output()
        .unwrap()
}

/// `noiselab run cifar10_vgg11 -q --out OUT --data-dir DIR --set S …`
fn run_preset(out: &Path, data_dir: &str, sets: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "cifar10_vgg11",
        "-q",
        "--out",
        out.to_str().unwrap(),
        "--data-dir",
        data_dir,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    noiselab(&args)
}

#[test]
fn preset_validates_and_takes_steps_on_the_subset() {
    let o = noiselab(&["check", "cifar10_vgg11"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = run_preset(
        &out,
        &subset(),
        &[
            "cifar10.train_samples=16",
            "cifar10.test_samples=8",
            "noise.batch_size=4",
            "cifar10.gd_iterations=2",
            "cifar10.gd_metrics_every=1",
            "cifar10.iterations=2",
            "cifar10.metrics_every=1",
            "cifar10.sharpness_samples=4",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = out;
    assert_eq!(
        std::fs::metadata(run_dir.join("theta_gd.f64"))
            .unwrap()
            .len(),
        8 * 9_750_922
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["experiment"], "cifar10");
    assert_eq!(s["status"], "finished");
    let dynamics = s["dynamics"].as_object().unwrap();
    assert_eq!(
        dynamics.keys().map(String::as_str).collect::<Vec<_>>(),
        ["gd", "gld_const", "gld_diag", "gld_dynamic", "sgd"]
    );
    for (key, d) in dynamics {
        for m in [
            "final_test_accuracy",
            "final_train_accuracy",
            "final_sharpness",
            "final_loss",
        ] {
            assert!(d[m].is_number(), "{key}: {m} missing in {d}");
        }
        // Fig. 7 measures no curvature: none of its costly metrics are recorded.
        assert!(d.get("final_tr_h_sigma").is_none(), "{key}: {d}");
        assert_eq!(d["last_iteration"], 4);
        // Every dynamics moved away from θ_GD (the loss changed).
        assert_ne!(d["initial_loss"], d["final_loss"], "{key}: {d}");
    }
    let f = hdf5::File::open(run_dir.join("run.h5")).unwrap();
    let gd = f
        .dataset("dynamics/gd/replicates/0/metrics/iteration")
        .unwrap()
        .read_raw::<u64>()
        .unwrap();
    assert_eq!(gd, vec![0, 1, 2, 3, 4]);
}

#[test]
fn missing_data_and_runs_that_cannot_fit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = run_preset(&out, "/nonexistent/cifar", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/cifar/data_batch_1.bin") && err.contains("fetch-data.sh"),
        "{err}"
    );

    // Σ from 4,000 per-sample gradients of 9.75 M parameters: 312 GB per dynamics.
    let o = run_preset(&out, &subset(), &["noise.covariance=\"per_sample\""]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("noise.covariance") && err.contains("312.0 GB"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "no run directory for a run that cannot start"
    );
}
