//! The run record: journal framing and its readers under hostile input, the HDF5 reader
//! under truncation and foreign files, `kill -9` at random moments followed by inspect
//! and resume (bitwise equal to an uninterrupted run), repair, watch, inspect, export,
//! the metrics flush window, and bitwise trajectory continuation from a checkpoint.

use noiselab::config::{self, NoiseConfig};
use noiselab::dynamics::{DynamicsKind, NoiseModel};
use noiselab::engine;
use noiselab::events::{self, Event, Metric};
use noiselab::models::quadratic::Quadratic;
use noiselab::record::journal;
use noiselab::record::state::RecordState;
use noiselab::record::{checkpoint, h5, recorder};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
}

fn noiselab(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn preset() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml")
}

/// A headless toy run writing into `dir`, in the background.
fn spawn_run(dir: &Path, seeds: usize) -> std::process::Child {
    bin()
        .args([
            "run",
            preset(),
            "--headless",
            "--set",
            &format!("toy2d.seeds={seeds}"),
            "--out",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every file of a directory with its modification time and size.
fn snapshot(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime, u64)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (e.path(), m.modified().unwrap(), m.len())
        })
        .collect()
}

/// A finished toy run with `seeds` seeds in `dir`.
fn finished_run(dir: &Path, seeds: usize) {
    let o = noiselab(&[
        "run",
        preset(),
        "-q",
        "--set",
        &format!("toy2d.seeds={seeds}"),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every dataset of two run.h5 files, compared bit for bit (f64 by bit pattern).
fn assert_same_h5(a: &Path, b: &Path) {
    let (fa, fb) = (hdf5::File::open(a).unwrap(), hdf5::File::open(b).unwrap());
    let mut compared = 0;
    for key in fa.group("dynamics").unwrap().member_names().unwrap() {
        for name in [
            "trajectories",
            "tr_h_noise",
            "tr_h_sigma",
            "tr_h_sigma_iso",
            "loss",
            "metrics/loss",
            "metrics/tr_h_noise",
            "metrics/escaped_fraction",
            "spectra/hessian/values",
            "spectra/noise/values",
        ] {
            let path = format!("dynamics/{key}/{name}");
            let x: Vec<f64> = fa.dataset(&path).unwrap().read_raw().unwrap();
            let y: Vec<f64> = fb.dataset(&path).unwrap().read_raw().unwrap();
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&y), "{path} differs");
            compared += 1;
        }
        for name in ["success", "replicate"] {
            let path = format!("dynamics/{key}/{name}");
            let x: Vec<u64> = fa
                .dataset(&path)
                .unwrap()
                .read_raw::<u64>()
                .unwrap_or_default();
            let y: Vec<u64> = fb
                .dataset(&path)
                .unwrap()
                .read_raw::<u64>()
                .unwrap_or_default();
            assert_eq!(x, y, "{path} differs");
        }
    }
    assert!(compared > 0);
}

fn status(dir: &Path) -> String {
    let f = hdf5::File::open(dir.join("run.h5")).unwrap();
    let s: hdf5::types::VarLenUnicode = f.attr("status").unwrap().read_scalar().unwrap();
    s.as_str().to_string()
}

#[test]
fn kill_9_at_random_moments_then_inspect_and_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = 300;
    let reference = tmp.path().join("reference");
    let start = Instant::now();
    finished_run(&reference, seeds);
    // The whole run, with its final write, takes about this long here.
    let full = start.elapsed();
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(2026);
    let mut max_gap_ms = 0u64;
    for i in 0..20 {
        let dir = tmp.path().join(format!("killed-{i}"));
        let mut child = spawn_run(&dir, seeds);
        let at = Duration::from_secs_f64(rng.random_range(0.0..1.1) * full.as_secs_f64());
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let killed_at = std::time::SystemTime::now();
        child.wait().unwrap();

        // It opens with inspect, whatever the moment.
        if !dir.join("journal.bin").exists() {
            continue; // killed before the run directory existed: nothing to resume
        }
        let o = noiselab(&["inspect", dir.to_str().unwrap(), "--json"]);
        assert!(
            o.status.success(),
            "inspect after kill #{i} at {at:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            ["running", "finished"].contains(&report["status"].as_str().unwrap()),
            "{report}"
        );
        // What the journal lost: the time between its last record and the kill.
        let contents = journal::read(&dir.join("journal.bin")).unwrap();
        let last = contents.records.last().map_or(0, |r| r.unix_ms);
        let kill_ms = killed_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        if report["status"] == "running" {
            max_gap_ms = max_gap_ms.max(kill_ms.saturating_sub(last));
        }

        // And resume completes it to bitwise the uninterrupted record.
        let o = noiselab(&["resume", dir.to_str().unwrap(), "-q"]);
        assert!(
            o.status.success(),
            "resume after kill #{i} at {at:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(status(&dir), "finished");
        assert_same_h5(&reference.join("run.h5"), &dir.join("run.h5"));
    }
    eprintln!("largest gap between the last journal record and a kill -9: {max_gap_ms} ms");
}

#[test]
fn resume_continues_a_stopped_run_and_refuses_a_finished_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 5);
    let o = noiselab(&["resume", dir.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("already finished"));
    let o = noiselab(&["resume", tmp.path().join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such directory"));
}

#[test]
fn repair_rebuilds_run_h5_from_a_killed_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut child = spawn_run(&dir, 100000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while journal::read(&dir.join("journal.bin")).map_or(0, |c| c.records.len()) < 50 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("run.h5").exists());
    let o = noiselab(&["repair", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(status(&dir), "interrupted");
    let run = h5::read(&dir.join("run.h5")).unwrap();
    let done: u64 = run.dynamics.iter().map(|d| d.toy.unwrap().1).sum();
    assert!(done > 0);
}

#[test]
fn inspect_and_export_agree_with_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 20);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let o = noiselab(&["inspect", dir.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"], "finished");
    for key in common::TOY_KEYS {
        let r = &report["dynamics"][key];
        assert_eq!(
            r["success_rate"], summary["dynamics"][key]["success_rate"],
            "{key}"
        );
        assert_eq!(r["seeds_done"], 20);
        assert_eq!(r["iterations_done"], 500);
        assert_eq!(
            r["final"]["escaped_fraction"], summary["dynamics"][key]["success_rate"],
            "{key}"
        );
    }
    let table = String::from_utf8(noiselab(&["inspect", dir.to_str().unwrap()]).stdout).unwrap();
    for label in common::TOY_LABELS {
        assert!(table.contains(label), "{table}");
    }
    // With the journal gone, the same numbers come from run.h5.
    std::fs::rename(dir.join("journal.bin"), tmp.path().join("journal.bak")).unwrap();
    let from_h5: serde_json::Value =
        serde_json::from_slice(&noiselab(&["inspect", dir.to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    assert_eq!(from_h5["dynamics"], report["dynamics"]);
    assert!(from_h5["source"].as_str().unwrap().ends_with("run.h5"));

    let csv_path = tmp.path().join("m.csv");
    let o = noiselab(&[
        "export",
        dir.to_str().unwrap(),
        "--csv",
        "-o",
        csv_path.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("dynamics,replicate,iteration,metric,value")
    );
    assert_eq!(
        lines.count(),
        6 * 5 * 500,
        "dynamics × metrics × iterations rows"
    );
    let last = csv
        .lines()
        .filter(|l| l.starts_with("gld_eig1,,499,escaped_fraction,"))
        .map(|l| l.rsplit(',').next().unwrap().parse::<f64>().unwrap())
        .next()
        .unwrap();
    assert_eq!(
        last,
        summary["dynamics"]["gld_eig1"]["success_rate"]
            .as_f64()
            .unwrap()
    );
}

#[test]
fn watch_replays_a_finished_run_with_the_same_numbers_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 30);
    let before: Vec<(PathBuf, std::time::SystemTime, u64)> = snapshot(&dir);
    let o = noiselab(&["watch", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8_lossy(&o.stderr).into_owned();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for key in common::TOY_KEYS {
        let ok = summary["dynamics"][key]["successes"].as_u64().unwrap();
        let rate = summary["dynamics"][key]["success_rate"].as_f64().unwrap();
        let want = format!("{key:<12} 30/30 seeds, escaped {ok} ({rate:.3})");
        assert!(lines.contains(&want), "watch lacks {want:?}:\n{lines}");
    }
    assert!(lines.contains("run finished"));
    let after: Vec<(PathBuf, std::time::SystemTime, u64)> = snapshot(&dir);
    assert_eq!(before, after, "watch changed the run directory");
}

#[test]
fn watch_follows_a_run_being_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut child = spawn_run(&dir, 1500);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("journal.bin").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = noiselab(&["watch", dir.to_str().unwrap(), "--headless"]);
    assert!(child.wait().unwrap().success());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8_lossy(&o.stderr).into_owned();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let ok = summary["dynamics"]["gld_eig1"]["successes"]
        .as_u64()
        .unwrap();
    assert!(
        lines.contains(&format!("gld_eig1     1500/1500 seeds, escaped {ok} (")),
        "{lines}"
    );
    assert!(lines.contains("run finished"), "{lines}");
}

#[test]
fn metrics_reach_the_disk_within_the_flush_interval_and_lifecycle_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = config::load(preset(), &["record.flush_seconds=1.0".into()]).unwrap();
    let setup = recorder::new_run(&loaded, tmp.path(), "now").unwrap();
    let (tx, rx) = events::channel(false);
    let handle = recorder::spawn(setup, rx.recorder);
    let on_disk = || {
        journal::read(&tmp.path().join("journal.bin"))
            .unwrap()
            .records
            .len()
    };
    let base = on_disk();
    tx.send(Event::Metrics {
        dynamics: DynamicsKind::Sgd,
        replicate: 0,
        iteration: 1,
        values: vec![(Metric::LOSS, 0.5)],
    });
    std::thread::sleep(Duration::from_millis(100));
    let early = on_disk();
    // Buffered at first (a kill -9 now would lose it) …
    assert_eq!(early, base, "metrics are batched");
    std::thread::sleep(Duration::from_millis(1500));
    // … but on disk within the flush interval.
    assert_eq!(
        on_disk(),
        base + 1,
        "metrics not flushed within record.flush_seconds"
    );
    tx.send(Event::Log {
        dynamics: None,
        message: "lifecycle".into(),
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(on_disk(), base + 2, "lifecycle events go to the OS at once");
    drop(tx);
    handle.join().unwrap().unwrap();
}

/// Records Tr(H·Cov n) at every step; at the first checkpoint writes it as a checkpoint
/// file and stops the trajectory.
struct Cut<'a> {
    obs: Vec<(usize, u64)>,
    dir: &'a Path,
    kind: DynamicsKind,
}

impl<O: noiselab::objective::Objective + ?Sized> engine::Observer<O> for Cut<'_> {
    fn observe(
        &mut self,
        t: usize,
        at: &mut noiselab::estimators::AtPoint<'_, O>,
        n: &mut NoiseModel,
    ) -> noiselab::Result<()> {
        let h = at.hessian()?.clone();
        self.obs.push((t, n.tr_h_noise(at, &h)?.to_bits()));
        Ok(())
    }

    fn checkpoint_every(&self) -> usize {
        37
    }

    fn checkpoint(&mut self, step: usize, c: engine::Checkpoint) -> noiselab::Result<()> {
        if step > 37 {
            return Ok(());
        }
        checkpoint::write(self.dir, self.kind, 3, &c)?;
        Err(noiselab::Error::Stopped)
    }
}

#[test]
fn a_trajectory_continues_bitwise_from_a_serialised_checkpoint() {
    let h = common::random_spd(5, 0.2, 3.0, 7);
    let obj = Quadratic::new(h, common::random_vectors(40, 5, 1.0, 8));
    let mut cfg = NoiseConfig {
        batch_size: 4,
        ..NoiseConfig::default()
    };
    cfg.covariance = noiselab::dynamics::CovarianceSource::Minibatches;
    cfg.gld_hessian.k = 2;
    cfg.gld_hessian.refresh = 7;
    cfg.gld_leading.k = 3;
    cfg.gld_leading.refresh = 5;
    for kind in DynamicsKind::ALL {
        let spec = cfg.spec(kind, 0.05);
        let theta0 = vec![0.4; 5];
        let mut straight_obs = vec![];
        let mut noise = NoiseModel::new(spec.clone(), 11, 3);
        let straight = engine::run(&obj, theta0.clone(), 100, &mut noise, |t, at, n| {
            let h = at.hessian()?.clone();
            straight_obs.push((t, n.tr_h_noise(at, &h)?.to_bits()));
            Ok(())
        })
        .unwrap();
        // Stop after 37 steps (not a refresh boundary), write the checkpoint file, read
        // it back, go on.
        let dir = tempfile::tempdir().unwrap();
        let mut first = Cut {
            obs: vec![],
            dir: dir.path(),
            kind,
        };
        let start = engine::Start::plain(theta0, NoiseModel::new(spec.clone(), 11, 3));
        let stopped = engine::run_from(&obj, start, 100, &mut first);
        assert!(matches!(stopped, Err(noiselab::Error::Stopped)));
        let c = checkpoint::read(dir.path(), kind, 3)
            .unwrap()
            .expect("a checkpoint at 37");
        assert_eq!(c.iteration, 37);
        let (start, _) = engine::resume(c, spec, 37);
        let mut rest_obs = Cut {
            obs: first.obs,
            dir: dir.path(),
            kind,
        };
        let (rest, _) = engine::run_from(&obj, start, 100, &mut rest_obs).unwrap();
        let obs = rest_obs.obs;
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&rest.theta),
            bits(&straight.theta),
            "{kind}: θ differs after resuming"
        );
        assert_eq!(obs, straight_obs, "{kind}: metrics differ after resuming");
    }
}

fn sample_journal() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 2);
    std::fs::read(dir.join("journal.bin")).unwrap()
}

/// A run killed between any two journal frames rebuilds to a record whose spectra
/// belong to replicates it holds: one row per finished seed and spectrum kind, none for
/// a seed whose outcome never reached the journal (`scripts/check_run.py`'s rule).
#[test]
fn every_journal_prefix_holds_spectra_only_of_finished_replicates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 3);
    let path = dir.join("journal.bin");
    let whole = journal::read(&path).unwrap();
    let mut checked_with_spectra = 0;
    for cut in 1..=whole.records.len() {
        let prefix = journal::Contents {
            records: whole.records[..cut].to_vec(),
            ..whole.clone()
        };
        let state = RecordState::from_journal(&prefix, &path).unwrap();
        for ((kind, of), rows) in &state.spectra {
            let finished: Vec<usize> = state
                .replicates(*kind)
                .iter()
                .map(|r| r.replicate)
                .collect();
            let with_rows: Vec<usize> = rows.iter().map(|e| e.replicate).collect();
            assert_eq!(
                with_rows, finished,
                "{kind} {of:?} after {cut} of {} frames: spectra of seeds {with_rows:?}, finished {finished:?}",
                whole.records.len()
            );
            checked_with_spectra += usize::from(!rows.is_empty());
        }
    }
    // The finished run's own record: two spectra a dynamics, three seeds each.
    let end = RecordState::from_journal(&whole, &path).unwrap();
    assert_eq!(end.spectra.len(), 2 * end.config.dynamics.len());
    assert!(end.spectra.values().all(|rows| rows.len() == 3));
    assert!(checked_with_spectra > 0);
}

#[test]
fn journal_reader_refuses_foreign_and_newer_files_by_name() {
    let path = Path::new("runs/x/journal.bin");
    let err = journal::parse(b"PK\x03\x04 this is a zip", path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("runs/x/journal.bin") && err.contains("not a noiselab journal"),
        "{err}"
    );
    let mut newer = journal::MAGIC.to_vec();
    newer.extend_from_slice(&7u32.to_le_bytes());
    let err = journal::parse(&newer, path).unwrap_err().to_string();
    assert!(err.contains("newer noiselab") && err.contains('7'), "{err}");
    let err = journal::parse(&journal::MAGIC[..5], path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let o = noiselab(&["inspect", "/nonexistent/run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such directory"));
}

/// A new journal appears under its name already holding its preamble (a kill at any
/// moment leaves no journal or a resumable one), leaves nothing staged beside it, and
/// never replaces an existing one.
#[test]
fn a_new_journal_appears_whole_and_never_replaces_one() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(journal::FILE_NAME);
    // What a kill between staging and linking leaves behind does not stop a new start.
    std::fs::write(tmp.path().join("journal.bin.creating"), b"NLJ").unwrap();
    let writer = journal::Writer::create(&path).unwrap();
    let contents = journal::read(&path).unwrap();
    assert!(contents.records.is_empty());
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [journal::FILE_NAME],
        "left beside the journal: {names:?}"
    );
    drop(writer);
    let before = std::fs::read(&path).unwrap();
    let err = journal::Writer::create(&path)
        .err()
        .expect("an existing journal is refused");
    assert!(err.to_string().contains(journal::FILE_NAME), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the existing journal changed"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "a refused start left a file"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Truncated anywhere or with a byte changed anywhere, a journal parses to a prefix
    /// of its records (or a clear error), never a panic or a wrong record.
    #[test]
    fn journal_reader_survives_truncation_and_corruption(cut in 0.0f64..1.0, flip_at in 0.0f64..1.0, flip in 1u8..=255) {
        thread_local!(static JOURNAL: Vec<u8> = sample_journal());
        JOURNAL.with(|bytes| {
            let path = Path::new("journal.bin");
            let whole = journal::parse(bytes, path).unwrap();
            let n = (cut * bytes.len() as f64) as usize;
            if let Ok(c) = journal::parse(&bytes[..n], path) {
                prop_assert!(c.records.len() <= whole.records.len());
                prop_assert_eq!(&c.records[..], &whole.records[..c.records.len()]);
            }
            let mut corrupt = bytes.clone();
            let i = (flip_at * (bytes.len() - 1) as f64) as usize;
            corrupt[i] ^= flip;
            if let Ok(c) = journal::parse(&corrupt, path) {
                // A CRC-32 catches every single-byte change inside a frame.
                prop_assert!(c.records.len() <= whole.records.len());
                prop_assert_eq!(&c.records[..], &whole.records[..c.records.len()]);
            }
            Ok(())
        })?;
    }
}

#[test]
fn hdf5_reader_reports_truncated_foreign_and_newer_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    finished_run(&dir, 3);
    let good = std::fs::read(dir.join("run.h5")).unwrap();
    assert!(h5::read(&dir.join("run.h5")).is_ok());
    let path = tmp.path().join("bad.h5");
    // Truncated at many points: an error naming the file, never a panic.
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(5);
    for _ in 0..40 {
        let n = rng.random_range(0..good.len() - 1);
        std::fs::write(&path, &good[..n]).unwrap();
        if let Err(e) = h5::read(&path) {
            assert!(e.to_string().contains("bad.h5"), "{e}");
        }
    }
    // Not HDF5 at all.
    std::fs::write(&path, "experiment = \"toy2d\"\n").unwrap();
    let e = h5::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("bad.h5") && e.contains("not a readable HDF5 file"),
        "{e}"
    );
    // HDF5, but not ours.
    let foreign = tmp.path().join("foreign.h5");
    hdf5::File::create(&foreign)
        .unwrap()
        .new_dataset::<f64>()
        .shape(3)
        .create("x")
        .unwrap();
    let e = h5::read(&foreign).unwrap_err().to_string();
    assert!(
        e.contains("foreign.h5") && e.contains("not a noiselab record"),
        "{e}"
    );
    // Ours, from the future.
    let newer = tmp.path().join("newer.h5");
    std::fs::copy(dir.join("run.h5"), &newer).unwrap();
    {
        let f = hdf5::File::open_rw(&newer).unwrap();
        f.attr("schema_version")
            .unwrap()
            .write_scalar(&(h5::SCHEMA_VERSION + 1))
            .unwrap();
    }
    let e = h5::read(&newer).unwrap_err().to_string();
    assert!(
        e.contains("newer.h5") && e.contains("newer noiselab"),
        "{e}"
    );
    // inspect says the same, with exit code 1, when the run has only that file.
    std::fs::remove_file(dir.join("journal.bin")).unwrap();
    std::fs::copy(&newer, dir.join("run.h5")).unwrap();
    let o = noiselab(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("newer noiselab"));
}
