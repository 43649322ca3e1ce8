//! What a user reads, kept as golden outputs (insta snapshots in tests/snapshots/):
//! `inspect` of a real run of every experiment (tests/fixtures/records/, made by its
//! make.sh) at two widths, `presets`, and `--help` of every command. And `export` read
//! back: every value it writes is the one `run.h5` holds, under the documented keys.

use noiselab::record::h5;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXPERIMENTS: [&str; 4] = ["toy2d", "one_hidden", "fashion_mnist", "cifar10"];

/// A fresh copy of a fixture run (commands may write run.h5 beside its journal).
fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records");
    std::fs::copy(src.join(name).join("journal.bin"), dir.join("journal.bin")).unwrap();
    (tmp, dir)
}

fn noiselab(args: &[&str], columns: usize) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .env("COLUMNS", columns.to_string())
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn inspect_of_every_experiment_fits_the_width_and_matches_its_golden_output() {
    for name in EXPERIMENTS {
        for width in [100, 72] {
            let (_tmp, dir) = fixture(name);
            let text = stdout(&noiselab(&["inspect", dir.to_str().unwrap()], width))
                .replace(dir.to_str().unwrap(), "<RUN>");
            // The table's lines fit (the notes and headings above it may wrap).
            let table = text.split_once("\n\n").map_or("", |(_, t)| t);
            for line in table.lines() {
                assert!(
                    line.chars().count() <= width,
                    "{name} at {width}: {line:?} is {} wide",
                    line.chars().count()
                );
            }
            insta::assert_snapshot!(format!("inspect_{name}_{width}"), text);
        }
    }
}

#[test]
fn inspect_shows_the_experiments_own_columns_and_the_iterations_the_run_made() {
    let (_tmp, dir) = fixture("fashion_mnist");
    let text = stdout(&noiselab(&["inspect", dir.to_str().unwrap()], 100));
    // The GD phase (20) and phase 2 (6) are 26 iterations, not 27; no toy columns.
    assert!(text.contains("26/26"), "{text}");
    assert!(!text.contains("27/"), "{text}");
    for toy_only in ["seeds", "escaped", "rate"] {
        assert!(!text.contains(toy_only), "{toy_only} in\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(&noiselab(
        &["inspect", dir.to_str().unwrap(), "--json"],
        100,
    )))
    .unwrap();
    assert_eq!(json["dynamics"]["sgd"]["iterations_done"], 26);
    assert_eq!(json["dynamics"]["sgd"]["iterations_planned"], 26);
    assert_eq!(
        json["dynamics"]["sgd"]["replicate"],
        serde_json::Value::Null
    );

    let (_tmp, dir) = fixture("toy2d");
    let text = stdout(&noiselab(&["inspect", dir.to_str().unwrap()], 100));
    assert!(text.contains("seeds") && text.contains("8/8"), "{text}");
    assert!(!text.contains("iteration "), "{text}");
}

#[test]
fn presets_and_help_match_their_golden_outputs() {
    let presets = stdout(&noiselab(&["presets"], 100));
    // Names aligned: every summary starts in the same column.
    let starts: Vec<usize> = presets
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let name_end = 2 + l[2..].find(' ').unwrap();
            name_end + l[name_end..].find(|c: char| c != ' ').unwrap()
        })
        .collect();
    assert_eq!(starts.len(), noiselab::config::PRESETS.len(), "{presets}");
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{presets}");
    assert!(
        presets.lines().all(|l| l.chars().count() <= 100),
        "{presets}"
    );
    insta::assert_snapshot!("presets", presets);

    let run_help = stdout(&noiselab(&["run", "--help"], 100));
    for p in noiselab::config::PRESETS {
        assert!(run_help.contains(p.name), "{} not in run --help", p.name);
    }
    for command in [
        "",
        "run",
        "resume",
        "watch",
        "inspect",
        "export",
        "repair",
        "check",
        "sweep",
        "sweep status",
        "sweep resume",
        "compare",
    ] {
        let args: Vec<&str> = command.split_whitespace().chain(["--help"]).collect();
        let help = stdout(&noiselab(&args, 100));
        // Every positional argument is described.
        for line in help.lines() {
            let t = line.trim_start();
            if t.starts_with('<') && line.starts_with("  <") {
                assert!(
                    t.split_once("  ")
                        .is_some_and(|(_, d)| !d.trim().is_empty()),
                    "`{command} --help`: {line:?} has no description"
                );
            }
        }
        if !command.is_empty() && command != "check" {
            assert!(
                help.contains("Example"),
                "`{command} --help` has no example"
            );
        }
        let name = if command.is_empty() {
            "noiselab".to_string()
        } else {
            command.replace(' ', "_")
        };
        insta::assert_snapshot!(format!("help_{name}"), help);
    }
}

/// Parses `export`'s CSV into (dynamics, replicate, metric) → iteration → value.
type Rows = BTreeMap<(String, String, String), BTreeMap<u64, f64>>;

fn parse_csv(text: &str) -> Rows {
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("dynamics,replicate,iteration,metric,value")
    );
    let mut rows = Rows::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "{line}");
        let previous = rows
            .entry((f[0].into(), f[1].into(), f[3].into()))
            .or_default()
            .insert(f[2].parse().unwrap(), f[4].parse().unwrap());
        assert!(previous.is_none(), "a row twice: {line}");
    }
    rows
}

#[test]
fn export_round_trips_to_the_values_of_run_h5_on_every_experiment() {
    for name in EXPERIMENTS {
        let (tmp, dir) = fixture(name);
        let d = dir.to_str().unwrap();
        // From the journal (export's source), to stdout with and without --csv, and to a file.
        let csv = stdout(&noiselab(&["export", d], 100));
        assert_eq!(csv, stdout(&noiselab(&["export", d, "--csv"], 100)));
        let file = tmp.path().join("out.csv");
        stdout(&noiselab(&["export", d, "-o", file.to_str().unwrap()], 100));
        assert_eq!(csv, std::fs::read_to_string(&file).unwrap());
        let rows = parse_csv(&csv);

        // run.h5, written by the command that put it in place and read back by its reader.
        assert!(
            dir.join("run.h5").exists(),
            "{name}: export wrote no run.h5"
        );
        let run = h5::read(&dir.join("run.h5")).unwrap();
        let config = &run.attrs["config"];
        let mut expected = Rows::new();
        for dynamics in &run.dynamics {
            // The documented keys: one of the run's dynamics, unadorned.
            assert!(
                config.contains(&format!("\"{}\"", dynamics.key)),
                "{name}: {} is not a dynamics of the run",
                dynamics.key
            );
            let replicate = dynamics
                .replicate
                .as_ref()
                .map_or(String::new(), |(_, l)| l.clone());
            for (metric, values) in &dynamics.metrics {
                let series = expected
                    .entry((dynamics.key.clone(), replicate.clone(), metric.clone()))
                    .or_default();
                for (&t, &v) in dynamics.iteration.iter().zip(values) {
                    if !v.is_nan() {
                        series.insert(t, v);
                    }
                }
            }
        }
        expected.retain(|_, s| !s.is_empty());
        assert_eq!(rows.len(), expected.len(), "{name}: series");
        for (key, series) in &expected {
            let got = rows
                .get(key)
                .unwrap_or_else(|| panic!("{name}: {key:?} not exported"));
            assert_eq!(got.len(), series.len(), "{name} {key:?}");
            for (t, v) in series {
                // Bitwise: the CSV's shortest round-trip form parses back to the value.
                assert_eq!(got[t].to_bits(), v.to_bits(), "{name} {key:?} at {t}");
            }
        }
        // Only the one-hidden experiment names replicates (its widths).
        let named: Vec<&String> = rows
            .keys()
            .map(|k| &k.1)
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(!named.is_empty(), name == "one_hidden", "{name}: {named:?}");
        if name == "fashion_mnist" {
            assert!(rows.keys().any(|k| k.0 == "sgd"), "no `sgd` rows");
        }
    }
}
