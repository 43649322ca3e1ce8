//! The Fig. 2 experiment end to end (METHOD.md §4.2): the ratio Tr(HΣ)/Tr(HΣ̄) after SGD grows
//! markedly with the hidden width; the run's files and commands carry it.

use std::process::Command;

const SMALL: [&str; 12] = [
    "--set",
    "one_hidden.widths=[8, 80, 800]",
    "--set",
    "one_hidden.samples=300",
    "--set",
    "one_hidden.iterations=300",
    "--set",
    "one_hidden.metrics_every=150",
    "--set",
    "one_hidden.sigma_batches=60",
    "--set",
    "one_hidden.trace_probes=60",
];

#[test]
fn ratio_grows_with_width_and_the_record_carries_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = vec!["run", "one_hidden", "-q", "--out", out.to_str().unwrap()];
    args.extend(SMALL);
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("by hidden width (Fig. 2)"), "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["experiment"], "one_hidden");
    let ratio = |h: &str| {
        summary["dynamics"]["sgd"]["ratio_by_width"][h]
            .as_f64()
            .unwrap()
    };
    let (r8, r80, r800) = (ratio("8"), ratio("80"), ratio("800"));
    // Eq. 13: about an order of magnitude per 10× width; demand at least 3×.
    assert!(
        r8 > 1.0 && r80 > 3.0 * r8 && r800 > 3.0 * r80,
        "ratios {r8}, {r80}, {r800}"
    );
    for h in ["8", "80", "800"] {
        let acc = summary["dynamics"]["sgd"]["final_train_accuracy_by_width"][h]
            .as_f64()
            .unwrap();
        assert!(
            acc > 0.9,
            "width {h} did not learn the separable data: accuracy {acc}"
        );
    }

    // run.h5: one metrics group per width; inspect and export read them back.
    let f = hdf5::File::open(out.join("run.h5")).unwrap();
    for (r, label) in ["h = 8", "h = 80", "h = 800"].iter().enumerate() {
        let g = f.group(&format!("dynamics/sgd/replicates/{r}")).unwrap();
        let l: hdf5::types::VarLenUnicode = g.attr("label").unwrap().read_scalar().unwrap();
        assert_eq!(l.as_str(), *label);
        let it: Vec<u64> = g.dataset("metrics/iteration").unwrap().read_raw().unwrap();
        assert_eq!(it, vec![0, 150, 300]);
        let ratios: Vec<f64> = g
            .dataset("metrics/tr_h_sigma_ratio")
            .unwrap()
            .read_raw()
            .unwrap();
        assert_eq!(ratios[2], ratio(&label[4..]));
    }
    let csv = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(["export", out.to_str().unwrap(), "--csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .any(|l| l.starts_with("sgd,h = 800,300,tr_h_sigma_ratio,")),
        "{csv}"
    );
    let inspect = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(["inspect", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("SGD · h = 800"));
}

#[test]
fn one_hidden_config_errors_name_their_keys() {
    for (set, needles) in [
        (
            "one_hidden.widths=[]",
            vec!["`one_hidden.widths`", "at least one width"],
        ),
        (
            "one_hidden.widths=[20, 0]",
            vec!["`one_hidden.widths[1]`", "0"],
        ),
        (
            "one_hidden.sigma_batch_size=5000",
            vec!["`one_hidden.sigma_batch_size`", "5000"],
        ),
        (
            "one_hidden.optimizer=\"adam\"",
            vec!["`dynamics`", "one_hidden.optimizer = \"adam\""],
        ),
        (
            "one_hidden.loss=\"hinge\"",
            vec!["one_hidden.loss", "hinge"],
        ),
        (
            "toy2d.seeds=3",
            vec!["`toy2d`", "only read when experiment = \"toy2d\""],
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
            .args(["check", "one_hidden", "--set", set])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{set}");
        let err = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(err.contains(n), "{set}: {err}");
        }
    }
}

/// The authors' released recipe (second preset): full-batch Adam on the clipped squared
/// loss also shows the ratio growing with the width.
#[test]
fn released_recipe_preset_runs_and_its_ratio_grows_with_width() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args([
            "run",
            "one_hidden_released",
            "-q",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--set", "one_hidden.widths=[20, 200]"])
        .args(["--set", "one_hidden.metrics_every=155"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let gd = &summary["dynamics"]["gd"];
    let ratio = |h: &str| {
        gd["ratio_by_width"][h]
            .as_f64()
            .unwrap_or_else(|| panic!("width {h}: no finite ratio in {gd}"))
    };
    let (r20, r200) = (ratio("20"), ratio("200"));
    assert!(r20 > 1.0 && r200 > 3.0 * r20, "ratios {r20}, {r200}");
    for h in ["20", "200"] {
        let acc = gd["final_train_accuracy_by_width"][h].as_f64().unwrap();
        assert!(acc > 0.9, "width {h}: accuracy {acc}");
    }
}
