//! `noiselab sweep --slurm` on a real Slurm: the one-node cluster of
//! `scripts/slurm-cluster.sh` (started by scripts/test.sh, which sets
//! NOISELAB_REQUIRE_SLURM so that a cluster that does not answer fails the test instead
//! of skipping it). A toy sweep and a tiny FashionMNIST sweep run as job arrays; one
//! FashionMNIST task is cancelled mid-run with `scancel`, `sweep resume` submits it
//! again, and its record equals that of the same run never interrupted.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{noiselab, noiselab_json as json, noiselab_ok as ok, path_str as path};

fn slurm_answers() -> bool {
    Command::new("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `sweep status --json` until `done` holds of its points (or panics after
/// `limit`, showing the last status and the task logs).
fn wait_for(sweep: &Path, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let status = json(&["sweep", "status", path(sweep), "--json"]);
        let points = status["points"].as_array().unwrap().clone();
        if done(&points) {
            return points;
        }
        if start.elapsed() > limit {
            let logs: Vec<String> = std::fs::read_dir(sweep.join("logs"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| {
                            format!(
                                "{}:\n{}",
                                e.path().display(),
                                std::fs::read_to_string(e.path()).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!("waited {limit:?}; status {status:#}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn all_finished(points: &[Value]) -> bool {
    points.iter().all(|p| p["state"] == "finished")
}

fn fashion_overrides(data: &Path) -> Vec<String> {
    [
        format!("fashion_mnist.data_dir=\"{}\"", data.display()),
        "fashion_mnist.train_samples=120".into(),
        "fashion_mnist.corrupted=20".into(),
        "fashion_mnist.test_samples=200".into(),
        "fashion_mnist.gd_iterations=30".into(),
        "fashion_mnist.gd_metrics_every=15".into(),
        "fashion_mnist.iterations=200".into(),
        "fashion_mnist.metrics_every=50".into(),
        "fashion_mnist.sharpness_samples=4".into(),
        "fashion_mnist.curvature_metrics=false".into(),
        "fashion_mnist.hessian_spectrum=0".into(),
        "record.checkpoint_every=10".into(),
        r#"dynamics=["gd","sgd","gld_const"]"#.into(),
    ]
    .into()
}

#[test]
fn sweeps_run_as_slurm_job_arrays_and_a_cancelled_task_resumes() {
    if !slurm_answers() {
        assert!(
            std::env::var_os("NOISELAB_REQUIRE_SLURM").is_none(),
            "NOISELAB_REQUIRE_SLURM is set but no Slurm cluster answers `sinfo` (scripts/slurm-cluster.sh start)"
        );
        eprintln!(
            "skipped: no Slurm cluster answers `sinfo` (scripts/slurm-cluster.sh start starts one)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();

    // The toy: three seeds, one task each.
    let toy = tmp.path().join("toy");
    let out = ok(&[
        "sweep",
        "toy2d",
        "--seeds",
        "0..2",
        "--set",
        "toy2d.seeds=20",
        "--slurm",
        "--cpus-per-task",
        "1",
        "--out",
        path(&toy),
    ]);
    assert!(out.contains("submitted Slurm job"), "{out}");
    let script = std::fs::read_to_string(toy.join("sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --cpus-per-task=1"), "{script}");
    wait_for(&toy, Duration::from_secs(300), all_finished);
    let cmp = json(&["compare", path(&toy), "--json"]);
    assert_eq!(cmp["groups"][0]["runs"].as_array().unwrap().len(), 3);

    // FashionMNIST: two seeds; task 1 cancelled once its phase 2 is under way.
    let data = common::shared_data("fashion-mnist-subset");
    let sets = fashion_overrides(&data);
    let fm = tmp.path().join("fm");
    let mut args = vec![
        "sweep",
        "fashion_mnist_quick",
        "--seeds",
        "0..1",
        "--slurm",
        "--cpus-per-task",
        "1",
        "--out",
        path(&fm),
    ];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    ok(&args);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fm.join("sweep.json")).unwrap()).unwrap();
    let job = manifest["submissions"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p1: PathBuf = fm.join(manifest["points"][1]["dir"].as_str().unwrap());
    // In phase 2 with a checkpoint behind it: SGD past iteration 30 + 60.
    let start = Instant::now();
    loop {
        let reached = noiselab(&["inspect", path(&p1), "--json"]);
        let v: Value = serde_json::from_slice(&reached.stdout).unwrap_or(Value::Null);
        if v["dynamics"]["sgd"]["iterations_done"]
            .as_u64()
            .unwrap_or(0)
            >= 90
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "task 1 never reached phase 2: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let cancel = Command::new("scancel")
        .arg(format!("{job}_1"))
        .status()
        .unwrap();
    assert!(cancel.success());
    let points = wait_for(&fm, Duration::from_secs(300), |p| {
        p[0]["state"] == "finished" && p[1]["state"] != "running" && p[1]["queue"].is_null()
    });
    assert_eq!(points[1]["state"], "interrupted", "{points:?}");
    let out = ok(&["sweep", "resume", path(&fm)]);
    assert!(out.contains("resuming 1 of 2 points"), "{out}");
    wait_for(&fm, Duration::from_secs(300), all_finished);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fm.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(manifest["submissions"][1]["points"], serde_json::json!([1]));

    // The same run, never interrupted, here.
    let alone = tmp.path().join("alone");
    let mut args = vec![
        "run",
        "fashion_mnist_quick",
        "--set",
        "seed=1",
        "--threads",
        "1",
        "--out",
        path(&alone),
        "--quiet",
    ];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    ok(&args);
    let metrics = |d: &Path| json(&["inspect", path(d), "--json"])["dynamics"].clone();
    assert_eq!(metrics(&p1), metrics(&alone));
    // Its second task continued the record rather than starting over.
    let second = manifest["submissions"][1]["job_id"].as_str().unwrap();
    let log = std::fs::read_to_string(fm.join(format!("logs/slurm-{second}_1.log"))).unwrap();
    assert!(log.contains("resuming"), "{log}");
    let first = std::fs::read_to_string(fm.join(format!("logs/slurm-{job}_1.log"))).unwrap();
    assert!(first.contains("run interrupted"), "{first}");
}
