//! The FashionMNIST experiment end to end on the real subset (tiny settings): the
//! corrupted training set is recorded, θ_GD is written and can be reused, every dynamics
//! reports its metrics, bad settings and missing data are clear errors.

use std::path::Path;
use std::process::Command;

fn subset() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/fashion-mnist-subset")
        .display()
        .to_string()
}

fn run(out: &Path, extra: &[String]) -> std::process::Output {
    let mut args: Vec<String> = [
        "run",
        "fashion_mnist",
        "-q",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "fashion_mnist.train_samples=100",
        "--set",
        "fashion_mnist.corrupted=20",
        "--set",
        "fashion_mnist.test_samples=200",
        "--set",
        "fashion_mnist.gd_iterations=30",
        "--set",
        "fashion_mnist.gd_metrics_every=10",
        "--set",
        "fashion_mnist.iterations=4",
        "--set",
        "fashion_mnist.metrics_every=2",
        "--set",
        "fashion_mnist.sharpness_samples=8",
        "--set",
        "fashion_mnist.trace_probes=2",
        "--set",
        "fashion_mnist.hessian_spectrum=6",
        "--set",
        "noise.gld_leading.k=4",
        "--set",
        "noise.gld_hessian.k=4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--set".into());
    args.push(format!("fashion_mnist.data_dir=\"{}\"", subset()));
    args.extend(extra.iter().cloned());
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(&args)
        .output()
        .unwrap()
}

#[test]
fn runs_records_and_reuses_theta_gd() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let o = run(&first, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Figs. 4, 6"), "{stdout}");

    // The corrupted set: 20 distinct positions, each relabelled to a different class.
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("corrupted.json")).unwrap())
            .unwrap();
    let entries = c["corrupted"].as_array().unwrap();
    assert_eq!(entries.len(), 20);
    assert_eq!(c["picked_training_indices"].as_array().unwrap().len(), 100);
    for e in entries {
        assert_ne!(e["true_label"], e["assigned_label"]);
        assert!(e["assigned_label"].as_u64().unwrap() < 10);
    }
    let theta_gd = first.join("theta_gd.f64");
    assert_eq!(std::fs::metadata(&theta_gd).unwrap().len(), 8 * 11_330);

    let summary = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let s1 = summary(&first);
    assert_eq!(s1["status"], "finished");
    for key in [
        "gd",
        "sgd",
        "gld_const",
        "gld_dynamic",
        "gld_diag",
        "gld_leading",
        "gld_hessian",
        "gld_eig1",
    ] {
        let d = &s1["dynamics"][key];
        for m in [
            "final_test_accuracy",
            "final_train_accuracy",
            "final_sharpness",
            "final_tr_h_sigma",
            "final_projection_coefficient",
        ] {
            assert!(d[m].is_number(), "{key}: {m} missing in {d}");
        }
        // Iterations count from the start of the GD phase: θ_GD is iteration 30.
        assert_eq!(d["last_iteration"], 34);
    }
    assert_eq!(s1["gd_iterations"], 30);

    // Fig. 3a: the top Hessian eigenvalues at θ_GD, descending, under GD's spectra.
    let f = hdf5::File::open(first.join("run.h5")).unwrap();
    let values = f
        .dataset("dynamics/gd/spectra/hessian/values")
        .unwrap()
        .read_2d::<f64>()
        .unwrap();
    assert_eq!(values.shape(), &[1, 6]);
    let spectrum_at = f
        .dataset("dynamics/gd/spectra/hessian/iteration")
        .unwrap()
        .read_raw::<u64>()
        .unwrap();
    assert_eq!(spectrum_at, vec![30]);
    // Fig. 4: GD's curve holds the GD phase (every 10 iterations) before θ_GD; the
    // other dynamics start at θ_GD.
    let iterations = |kind: &str| {
        f.dataset(&format!("dynamics/{kind}/replicates/0/metrics/iteration"))
            .unwrap()
            .read_raw::<u64>()
            .unwrap()
    };
    assert_eq!(iterations("gd"), vec![0, 10, 20, 30, 32, 34]);
    assert_eq!(iterations("sgd"), vec![30, 32, 34]);
    let gd_sharpness = f
        .dataset("dynamics/gd/replicates/0/metrics/sharpness")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    assert!(
        gd_sharpness.iter().all(|x| x.is_finite()),
        "{gd_sharpness:?}"
    );
    assert!(values.row(0).windows(2).into_iter().all(|w| w[0] >= w[1]));
    assert!(values[[0, 0]] > 0.0);

    // A second run from the first one's θ_GD starts exactly there.
    let second = tmp.path().join("second");
    let o = run(
        &second,
        &[
            "--set".into(),
            format!("fashion_mnist.theta_gd=\"{}\"", theta_gd.display()),
            "--set".into(),
            "dynamics=[\"gd\"]".into(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(second.join("events.log")).unwrap();
    assert!(log.contains("θ_GD read from"), "{log}");
    let s2 = summary(&second);
    for m in ["initial_test_accuracy", "initial_loss", "initial_sharpness"] {
        assert_eq!(s1["dynamics"]["gd"][m], s2["dynamics"]["gd"][m], "{m}");
    }
}

#[test]
fn bad_settings_and_missing_data_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args([
            "check",
            "fashion_mnist",
            "--set",
            "fashion_mnist.corrupted=5000",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("fashion_mnist.corrupted") && err.contains("5000"),
        "{err}"
    );

    let o = run(
        &tmp.path().join("r"),
        &[
            "--set".into(),
            "fashion_mnist.data_dir=\"/nonexistent/fashion\"".into(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/fashion/train-images-idx3-ubyte"),
        "{err}"
    );
    assert!(
        !tmp.path().join("r").exists(),
        "no run directory for a run that cannot start"
    );

    // --data-dir overrides the config's directory.
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args([
            "run",
            "fashion_mnist",
            "-q",
            "--data-dir",
            "/nonexistent/other",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/other/train-images"));

    let bad = tmp.path().join("short.f64");
    std::fs::write(&bad, [0u8; 16]).unwrap();
    let o = run(
        &tmp.path().join("r2"),
        &[
            "--set".into(),
            format!("fashion_mnist.theta_gd=\"{}\"", bad.display()),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("short.f64") && err.contains("90640"), "{err}");
}

#[test]
fn a_dynamics_that_blows_up_is_flagged_everywhere_while_the_others_finish() {
    // GLD const with a huge noise (σ = 10⁴ per step) blows up; GD and SGD go on.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let extra: Vec<String> = [
        "--set",
        "dynamics=[\"gd\", \"sgd\", \"gld_const\"]",
        "--set",
        "noise.gld_const.sigma=1e4",
        "--set",
        "fashion_mnist.iterations=10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let o = run(&dir, &extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["dynamics"]["gld_const"]["health"], "diverged",
        "{summary:#}"
    );
    assert_eq!(summary["health"]["diverged"], 1);
    assert_eq!(summary["health"]["collapsed"], 0);
    for healthy in ["gd", "sgd"] {
        assert!(summary["dynamics"][healthy].get("health").is_none());
        assert!(
            summary["dynamics"][healthy]["final_test_accuracy"]
                .as_f64()
                .unwrap()
                > 0.1
        );
    }
    let f = hdf5::File::open(dir.join("run.h5")).unwrap();
    let health: hdf5::types::VarLenUnicode = f
        .group("dynamics/gld_const")
        .unwrap()
        .attr("health")
        .unwrap()
        .read_scalar()
        .unwrap();
    assert_eq!(health.as_str(), "diverged");
    assert!(f.group("dynamics/gd").unwrap().attr("health").is_err());
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .arg("inspect")
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("0 collapsed, 1 diverged"), "{text}");
    assert!(
        text.contains("GLD const") && text.contains("diverged at iteration"),
        "{text}"
    );
    // The dashboard, fed the run's journal as `watch` feeds it, flags it.
    let contents = noiselab::record::journal::read(&dir.join("journal.bin")).unwrap();
    let mut app = noiselab::tui::app::App::new(false);
    for e in contents.events() {
        app.apply(e.clone());
    }
    app.fixed_now = Some(0.0);
    for key in ['v', 'o'] {
        app.on_key(noiselab::tui::app::Key::Char(key));
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
        noiselab::tui::draw(&mut terminal, &app, &mut Default::default()).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            screen.contains("diverged"),
            "view {key}: not flagged:\n{screen}"
        );
    }
}

#[test]
fn one_trajectory_at_a_time_on_one_thread_runs_the_costliest_first_and_records_the_same() {
    use noiselab::dynamics::DynamicsKind;
    use noiselab::events::Event;
    use noiselab::record::journal;
    let tmp = tempfile::tempdir().unwrap();
    let (all, one) = (tmp.path().join("all"), tmp.path().join("one"));
    let o = run(&all, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // One trajectory at a time, on one thread.
    let o = run(
        &one,
        &[
            "--set".into(),
            "trajectories_at_once=1".into(),
            "--threads".into(),
            "1".into(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The schedule and the threads change when and where each trajectory computes,
    // never what it computes.
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read(&all, "summary.json"), read(&one, "summary.json"));
    // `threads` sized the kernels' pool: the run says what it got.
    let log = read(&one, "events.log");
    assert!(log.contains("device cpu, 1 threads)"), "{log}");

    // One at a time: each trajectory's progress is one unbroken stretch of the journal,
    // in the order of the cost estimate, costliest first.
    let contents = journal::read(&one.join(journal::FILE_NAME)).unwrap();
    let mut stretches: Vec<DynamicsKind> = vec![];
    for record in &contents.records {
        if let journal::Body::Event(Event::Progress(p)) = &record.body {
            if p.phase.is_none() && stretches.last() != Some(&p.dynamics) {
                assert!(
                    !stretches.contains(&p.dynamics),
                    "{:?} resumed after another trajectory: {stretches:?}",
                    p.dynamics
                );
                stretches.push(p.dynamics);
            }
        }
    }
    // The run's own resolved config, as its journal announced it.
    let announced = contents
        .records
        .iter()
        .find_map(|r| match &r.body {
            journal::Body::Event(Event::RunStarted(info)) => Some(info.config_toml.clone()),
            _ => None,
        })
        .unwrap();
    let loaded = noiselab::config::parse(&announced, "the run", &[]).unwrap();
    let config = &loaded.config;
    let cost = |k| config.noise.spec(k, 0.07).iteration_cost(100);
    let mut expected = config.dynamics.clone();
    expected.sort_by(|a, b| cost(*b).total_cmp(&cost(*a)));
    assert_eq!(stretches, expected);
    assert_eq!(stretches.first(), Some(&DynamicsKind::GldHessian));
    assert_eq!(stretches.last(), Some(&DynamicsKind::Sgd));
}
