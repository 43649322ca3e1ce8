//! The real binary: a toy run writes its files; bad configs exit 2 with an error naming
//! the file, the key, the value and what was expected.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn noiselab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn summary_status(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    v["status"].as_str().unwrap_or("").to_string()
}

const PRESET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml");

#[test]
fn toy_run_prints_the_table_and_writes_run_h5_and_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("toy");
    let o = noiselab(
        &[
            "run",
            PRESET,
            "--set",
            "toy2d.seeds=8",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    for label in common::TOY_LABELS {
        assert!(stdout.contains(label), "table lacks {label}:\n{stdout}");
    }
    assert!(stdout.contains(&format!("run directory: {}", out.display())));
    // Not a terminal: plain progress lines, one per dynamics per reporting step.
    for key in common::TOY_KEYS {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("] {key:<12} 8/8 seeds, escaped"))),
            "no progress line for {key}:\n{stderr}"
        );
        assert!(stderr.contains(&format!("[{key}] finished")), "{stderr}");
    }
    assert!(stderr.contains("run finished"), "{stderr}");
    assert_eq!(summary_status(&out), "finished");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["experiment"], "toy2d");
    let rate = summary["dynamics"]["gld_eig1"]["success_rate"]
        .as_f64()
        .unwrap();
    assert!((0.0..=1.0).contains(&rate));
    assert_eq!(
        summary["dynamics"]["gd"]["success_rate"].as_f64(),
        Some(0.0)
    );

    // The record opens and holds what the config says; its config attribute round-trips.
    let file = hdf5::File::open(out.join("run.h5")).unwrap();
    let config: hdf5::types::VarLenUnicode = file.attr("config").unwrap().read_scalar().unwrap();
    let reparsed = noiselab::config::parse(config.as_str(), "run.h5", &[]).unwrap();
    assert_eq!(
        reparsed
            .config
            .settings::<noiselab::experiments::toy2d::Toy2dConfig>()
            .unwrap()
            .seeds,
        8
    );
    let traj = file.dataset("dynamics/gld_eig1/trajectories").unwrap();
    assert_eq!(traj.shape(), vec![8, 501, 2]);
    let success: Vec<u8> = file
        .dataset("dynamics/gld_eig1/success")
        .unwrap()
        .read_raw()
        .unwrap();
    assert_eq!(
        success.iter().filter(|&&s| s == 1).count() as f64 / 8.0,
        rate
    );
    assert!(!out.join("run.h5.partial").exists());

    // A second run into the same directory is refused rather than overwriting.
    let again = noiselab(
        &[
            "run",
            PRESET,
            "--set",
            "toy2d.seeds=2",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    // A usage error (exit 2), saying what to do instead.
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).1.contains("already holds a run"));
}

#[test]
fn default_run_directory_is_timestamped_under_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let o = noiselab(
        &["run", "toy2d", "--set", "toy2d.seeds=2", "-q"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let dirs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(dirs.len(), 1);
    let name = dirs[0].as_ref().unwrap().file_name().into_string().unwrap();
    assert!(
        name.starts_with("toy2d-2") && name.len() == "toy2d-20260101-000000".len(),
        "{name}"
    );
    assert!(text(&o).1.is_empty(), "--quiet still printed progress");
}

/// Runs `check` on a config text; returns (exit code, stderr).
fn check_config(toml: &str, overrides: &[&str]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let mut args = vec!["run", path.to_str().unwrap()];
    for o in overrides {
        args.extend(["--set", o]);
    }
    let o = noiselab(&args, tmp.path());
    assert!(
        !tmp.path().join("runs").exists() || overrides.is_empty(),
        "a run started"
    );
    let stderr = text(&o).1.replace(path.to_str().unwrap(), "bad.toml");
    (o.status.code(), stderr)
}

const GOOD: &str = "experiment = \"toy2d\"\ndynamics = [\"gd\", \"gld_eig1\"]\n[toy2d]\nseeds = 2\n[noise]\nmagnitude = \"fixed\"\ntotal_variance = 0.01\n[noise.gld_eig1]\nrefresh = 1\n";

#[test]
fn bad_configs_exit_2_naming_file_key_value_and_expectation() {
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        // unknown key
        (
            GOOD.replace("seeds = 2", "seedz = 2"),
            vec![],
            vec!["bad.toml", "`toy2d.seedz`", "unknown field", "seeds"],
        ),
        // unknown dynamics: lists the valid names
        (
            GOOD.replace("\"gld_eig1\"]", "\"gld_eigen\"]"),
            vec![],
            vec![
                "bad.toml",
                "`dynamics[1]`",
                "gld_eigen",
                "gd",
                "sgd",
                "gld_const",
                "gld_dynamic",
                "gld_diag",
                "gld_leading",
                "gld_hessian",
                "gld_eig1",
            ],
        ),
        // wrong type
        (
            GOOD.replace("seeds = 2", "seeds = \"many\""),
            vec![],
            vec!["bad.toml", "`toy2d.seeds`", "\"many\"", "expected"],
        ),
        // out of range
        (
            GOOD.replace("total_variance = 0.01", "total_variance = -0.01"),
            vec![],
            vec!["bad.toml", "`noise.total_variance`", "-0.01", "> 0"],
        ),
        // no trajectory at a time
        (
            GOOD.to_string(),
            vec!["trajectories_at_once=0"],
            vec!["bad.toml", "`trajectories_at_once`", "0", "≥ 1"],
        ),
        // a required companion key missing
        (
            GOOD.replace("total_variance = 0.01\n", ""),
            vec![],
            vec!["bad.toml", "`noise.total_variance`", "fixed"],
        ),
        // k larger than the toy's D
        (
            GOOD.replace("\"gld_eig1\"]", "\"gld_hessian\"]"),
            vec!["noise.gld_hessian.k=5"],
            vec!["`noise.gld_hessian.k`", "5", "D = 2"],
        ),
        // TOML syntax: file and line
        (
            "experiment = \"toy2d\"\ndynamics = [\"gd\"\n".to_string(),
            vec![],
            vec!["bad.toml", "line 2"],
        ),
        // unknown experiment
        (
            GOOD.replace("\"toy2d\"", "\"toy3d\""),
            vec![],
            vec!["`experiment`", "toy3d", "toy2d"],
        ),
        // bad override syntax and bad override value
        (
            GOOD.to_string(),
            vec!["toy2d.seeds"],
            vec!["--set toy2d.seeds", "key=value"],
        ),
        (
            GOOD.to_string(),
            vec!["toy2d.eta=0"],
            vec!["`toy2d.eta`", "0", "> 0"],
        ),
        (
            GOOD.to_string(),
            vec!["dynamics=[\"gd\",\"gd\"]"],
            vec!["`dynamics[1]`", "once"],
        ),
        (
            GOOD.to_string(),
            vec!["noise=3"],
            vec!["`noise`", "expected"],
        ),
        (
            GOOD.to_string(),
            vec!["noise.gld_eig1.refresh=0"],
            vec!["`noise.gld_eig1.refresh`", "0", "≥ 1"],
        ),
        (
            GOOD.to_string(),
            vec!["noise.gld_eig1.k=2"],
            vec!["`noise.gld_eig1.k`", "unknown field"],
        ),
        // the per-batch sharpness estimator's batch gradients beyond its memory: all of
        // CIFAR-10 in batches of 100 on VGG11 (500 gradients of 9.75 M parameters)
        (
            "experiment = \"cifar10\"\ndynamics = [\"gd\"]\n[cifar10]\nsharpness_estimator = \"per_batch\"\n"
                .to_string(),
            vec![],
            vec!["`cifar10.sharpness_estimator`", "per_batch", "control_variate", "39.0 GB"],
        ),
        (
            "experiment = \"fashion_mnist\"\ndynamics = [\"gd\"]\n".to_string(),
            vec![
                "fashion_mnist.sharpness_abs=true",
                "fashion_mnist.sharpness_estimator=\"per_batch\"",
            ],
            vec!["`fashion_mnist.sharpness_estimator`", "per_batch", "signed rise"],
        ),
        (
            "experiment = \"fashion_mnist\"\ndynamics = [\"gd\"]\n".to_string(),
            vec!["fashion_mnist.sharpness_batch_size=0"],
            vec!["`fashion_mnist.sharpness_batch_size`", "0", "≥ 1"],
        ),
    ];
    for (toml, overrides, needles) in cases {
        let (code, stderr) = check_config(&toml, &overrides);
        assert_eq!(
            code,
            Some(2),
            "exit code for {overrides:?}:\n{toml}\n{stderr}"
        );
        for n in needles {
            assert!(stderr.contains(n), "error lacks {n:?}:\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (code, stderr) = check_config(GOOD, &[]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn missing_config_and_help() {
    let tmp = tempfile::tempdir().unwrap();
    let o = noiselab(&["run", "no/such.toml"], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no/such.toml") && text(&o).1.contains("toy2d"));
    let help = noiselab(&["--help"], tmp.path());
    assert!(help.status.success() && text(&help).0.contains("run"));
    let run_help = noiselab(&["run", "--help"], tmp.path());
    assert!(text(&run_help).0.contains("--set") && text(&run_help).0.contains("--out"));
    let presets = noiselab(&["presets"], tmp.path());
    assert!(text(&presets).0.contains("toy2d"));
}

#[test]
fn headless_sigterm_flushes_an_interrupted_record_and_out_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(["run", PRESET, "--set", "toy2d.seeds=1000000", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::fs::metadata(out.join("journal.bin")).map_or(0, |m| m.len()) < 500_000 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the run did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (stdout, stderr) = text(&o);
    assert!(
        stderr.contains("interrupted: stopping the workers"),
        "{stderr}"
    );
    assert!(
        stdout.contains("interrupted: finished trajectories only"),
        "{stdout}"
    );
    assert_eq!(summary_status(&out), "interrupted");
    // The directory holds a run now: `run --out` refuses it and points to resume.
    let again = noiselab(&["run", PRESET, "--out", out.to_str().unwrap()], tmp.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).1.contains("noiselab resume"),
        "{}",
        text(&again).1
    );
}
