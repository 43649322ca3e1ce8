//! `noiselab sweep` run locally and `noiselab compare`, end to end with the real binary:
//! a point is the run `noiselab run` gives for its seed and grid values, θ_GD is shared
//! by points with the same GD phase (and equals the one a run computes alone), compare's
//! statistics agree with an independent computation from each point's `inspect --json`,
//! and bad input is refused by name.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{noiselab, noiselab_json as json, noiselab_ok as ok, path_str as path};

/// The tiny FashionMNIST protocol on the real subset (seconds a run).
fn fashion_overrides() -> Vec<String> {
    let data = common::shared_data("fashion-mnist-subset");
    [
        format!("fashion_mnist.data_dir=\"{}\"", data.display()),
        "fashion_mnist.train_samples=120".into(),
        "fashion_mnist.corrupted=20".into(),
        "fashion_mnist.test_samples=200".into(),
        "fashion_mnist.gd_iterations=30".into(),
        "fashion_mnist.gd_metrics_every=15".into(),
        "fashion_mnist.iterations=20".into(),
        "fashion_mnist.metrics_every=10".into(),
        "fashion_mnist.sharpness_samples=4".into(),
        "fashion_mnist.curvature_metrics=false".into(),
        "fashion_mnist.hessian_spectrum=0".into(),
        "record.checkpoint_every=5".into(),
        r#"dynamics=["gd","sgd","gld_const"]"#.into(),
    ]
    .into()
}

fn with_sets<'a>(args: &mut Vec<&'a str>, sets: &'a [String]) {
    for s in sets {
        args.push("--set");
        args.push(s);
    }
}

/// The `dynamics` object of `inspect --json`, without what differs between two runs of
/// the same trajectories (where the run directory is).
fn metrics_of(run: &Path) -> Value {
    json(&["inspect", path(run), "--json"])["dynamics"].clone()
}

#[test]
fn toy_sweep_points_are_runs_and_compare_agrees_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("toy");
    let out = ok(&[
        "sweep",
        "toy2d",
        "--seeds",
        "3..5",
        "--grid",
        "toy2d.eta=0.01,0.02",
        "--set",
        "toy2d.seeds=20",
        "--out",
        path(&sweep),
        "--local",
        "2",
    ]);
    assert!(out.contains("6 points (3 seed(s) × 2 setting(s))"), "{out}");
    let status = json(&["sweep", "status", path(&sweep), "--json"]);
    let points = status["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    assert!(points.iter().all(|p| p["state"] == "finished"), "{status}");
    // The grid varies slowest: the first points are seeds 3, 4, 5 at η = 0.01.
    assert_eq!(points[1]["seed"], 4);
    assert_eq!(points[1]["settings"]["toy2d.eta"], "0.01");

    // A point is exactly the run `noiselab run` gives with its seed and grid value.
    let alone = tmp.path().join("alone");
    ok(&[
        "run",
        "toy2d",
        "--set",
        "toy2d.seeds=20",
        "--set",
        "seed=4",
        "--set",
        "toy2d.eta=0.01",
        "--out",
        path(&alone),
        "--quiet",
    ]);
    let point = sweep.join(points[1]["dir"].as_str().unwrap());
    assert_eq!(metrics_of(&point), metrics_of(&alone));
    // Different seeds give different runs.
    let other = sweep.join(points[0]["dir"].as_str().unwrap());
    assert_ne!(metrics_of(&point), metrics_of(&other));

    // compare: two groups (η), three runs each; each number recomputed here from the
    // points' own records, the t quantile from its closed form for 2 degrees of freedom.
    let cmp = json(&["compare", path(&sweep), "--json"]);
    let groups = cmp["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let t2 = {
        let p = 0.975f64;
        (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt()
    };
    let mut checked = 0;
    for g in groups {
        let eta = g["settings"]["toy2d.eta"].as_str().unwrap().to_string();
        let runs: Vec<PathBuf> = g["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| PathBuf::from(r.as_str().unwrap()))
            .collect();
        assert_eq!(runs.len(), 3, "group η = {eta}");
        let rates: Vec<Value> = runs.iter().map(|r| metrics_of(r)).collect();
        let table = g["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["metric"] == "escape_rate")
            .expect("the toy's escape rate");
        for row in table["rows"].as_array().unwrap() {
            let key = row["dynamics"].as_str().unwrap();
            let xs: Vec<f64> = rates
                .iter()
                .map(|d| {
                    let d = &d[key];
                    d["successes"].as_f64().unwrap() / d["seeds_done"].as_f64().unwrap()
                })
                .collect();
            let mean = xs.iter().sum::<f64>() / 3.0;
            let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
            let all = &row["all"];
            assert!(
                (all["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
                "{key}"
            );
            assert!((all["sd"].as_f64().unwrap() - sd).abs() < 1e-12, "{key}");
            let half = t2 * sd / 3f64.sqrt();
            assert!((all["ci_high"].as_f64().unwrap() - (mean + half)).abs() < 1e-9);
            if key != "gd" {
                let gd: Vec<f64> = rates
                    .iter()
                    .map(|d| {
                        d["gd"]["successes"].as_f64().unwrap()
                            / d["gd"]["seeds_done"].as_f64().unwrap()
                    })
                    .collect();
                let diff: f64 = xs.iter().zip(&gd).map(|(x, g)| x - g).sum::<f64>() / 3.0;
                let paired = &row["paired_all"]["difference"];
                assert!((paired["mean"].as_f64().unwrap() - diff).abs() < 1e-12);
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} rows checked");
    // The text and CSV forms carry the same numbers.
    let text = ok(&["compare", path(&sweep)]);
    assert!(
        text.contains("toy2d.eta = 0.01") && text.contains("Δ vs gd"),
        "{text}"
    );
    let csv = ok(&["compare", path(&sweep), "--csv", "--baseline", "none"]);
    assert!(csv.starts_with("group,metric,statistic,"));
    assert!(csv
        .lines()
        .any(|l| l.contains(",escape_rate,final,") && l.contains(",gld_leading,all,")));
}

#[test]
fn points_with_one_gd_phase_share_theta_gd() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("fm");
    let sets = fashion_overrides();
    let mut args = vec![
        "sweep",
        "fashion_mnist_quick",
        "--seeds",
        "7",
        "--grid",
        "fashion_mnist.eta=0.05,0.07",
        "--out",
        path(&sweep),
        "--local",
        "1",
    ];
    with_sets(&mut args, &sets);
    ok(&args);
    let status = json(&["sweep", "status", path(&sweep), "--json"]);
    let dirs: Vec<PathBuf> = status["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| sweep.join(p["dir"].as_str().unwrap()))
        .collect();
    let cache: Vec<_> = std::fs::read_dir(sweep.join("cache")).unwrap().collect();
    assert_eq!(cache.len(), 1, "one θ_GD for one GD phase");
    let log = std::fs::read_to_string(dirs[1].join("events.log")).unwrap();
    assert!(log.contains("θ_GD from the sweep's shared cache"), "{log}");
    let theta = |d: &Path| std::fs::read(d.join("theta_gd.f64")).unwrap();
    assert_eq!(theta(&dirs[0]), theta(&dirs[1]));
    // The cached θ_GD is the one a run computes by itself: the second point's phase 2
    // equals a standalone run's.
    let alone = tmp.path().join("alone");
    let mut args = vec![
        "run",
        "fashion_mnist_quick",
        "--set",
        "seed=7",
        "--set",
        "fashion_mnist.eta=0.07",
        "--out",
        path(&alone),
        "--quiet",
    ];
    with_sets(&mut args, &sets);
    ok(&args);
    assert_eq!(theta(&alone), theta(&dirs[1]));
    let phase2 = |d: &Path| {
        let m = metrics_of(d);
        ["sgd", "gld_const"].map(|k| m[k]["final"].clone())
    };
    assert_eq!(phase2(&alone), phase2(&dirs[1]));
}

#[test]
fn bad_sweeps_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = |args: &[&str]| {
        let o = noiselab(args);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let target = tmp.path().join("s");
    let t = path(&target);
    for (args, expect) in [
        (
            vec!["sweep", "toy2d", "--seeds", "9..0", "--out", t],
            "reversed",
        ),
        (
            vec!["sweep", "toy2d", "--seeds", "", "--out", t],
            "no seeds",
        ),
        (vec!["sweep", "toy2d", "--out", t], "give the seeds"),
        (
            vec![
                "sweep",
                "toy2d",
                "--seeds",
                "0..1",
                "--grid",
                "toy2d.etaa=1,2",
                "--out",
                t,
            ],
            "etaa",
        ),
        (
            vec![
                "sweep",
                "toy2d",
                "--seeds",
                "0..1",
                "--grid",
                "toy2d.eta=-1,2",
                "--out",
                t,
            ],
            "toy2d.eta",
        ),
        (
            vec!["sweep", "toy2d", "--seeds", "0..1", "--grid", "seed=1,2"],
            "--seeds",
        ),
        (
            vec!["sweep", "status", path(tmp.path())],
            "not a sweep directory",
        ),
        (
            vec!["sweep", "resume", "/nonexistent/sweep"],
            "no such directory",
        ),
        (vec!["compare", "/nonexistent/run"], "/nonexistent/run"),
        (
            vec!["compare", path(tmp.path()), "--window", "9..1"],
            "reversed",
        ),
    ] {
        let (code, err) = out(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(!target.exists(), "nothing created for a refused sweep");
    // --slurm without Slurm: says what is needed and how to run locally.
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(["sweep", "toy2d", "--seeds", "0..1", "--slurm", "--out", t])
        .env("PATH", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("sbatch") && err.contains("--local"), "{err}");
    assert!(!target.exists());
}
