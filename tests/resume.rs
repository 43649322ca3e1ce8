//! Exact resume on the network experiments: a run killed with SIGKILL at spread-out
//! moments (during the GD phase, between dynamics, mid trajectory) and resumed ends with
//! every `run.h5` dataset and `summary.json` bitwise those of the uninterrupted run; a
//! resumed trajectory continues from its checkpoint, not from its start. And the
//! journal's format: the previous release's journal is refused with a clear message (its
//! `run.h5` still reads), a flipped byte anywhere is reported, never misread.

use noiselab::record::journal;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn noiselab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn shared(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
        .display()
        .to_string()
}

/// A tiny FashionMNIST protocol on the real subset, checkpointed every 7 iterations.
fn fashion_args() -> Vec<String> {
    [
        "fashion_mnist".to_string(),
        "--set=dynamics=[\"gd\", \"sgd\", \"gld_const\", \"gld_hessian\"]".into(),
        format!(
            "--set=fashion_mnist.data_dir=\"{}\"",
            shared("fashion-mnist-subset")
        ),
        "--set=fashion_mnist.train_samples=100".into(),
        "--set=fashion_mnist.corrupted=20".into(),
        "--set=fashion_mnist.test_samples=200".into(),
        "--set=fashion_mnist.gd_iterations=60".into(),
        "--set=fashion_mnist.gd_metrics_every=20".into(),
        "--set=fashion_mnist.iterations=40".into(),
        "--set=fashion_mnist.metrics_every=10".into(),
        "--set=fashion_mnist.sharpness_samples=16".into(),
        "--set=fashion_mnist.trace_probes=2".into(),
        "--set=fashion_mnist.hessian_spectrum=6".into(),
        "--set=noise.gld_hessian.k=4".into(),
        "--set=record.checkpoint_every=7".into(),
    ]
    .to_vec()
}

/// Two widths of the one-hidden experiment, SGD and GLD const, checkpointed every 37.
fn one_hidden_args() -> Vec<String> {
    [
        "one_hidden",
        "--set=dynamics=[\"sgd\", \"gld_const\"]",
        "--set=one_hidden.widths=[8, 60]",
        "--set=one_hidden.iterations=400",
        "--set=one_hidden.metrics_every=50",
        "--set=one_hidden.sigma_batches=20",
        "--set=one_hidden.trace_probes=10",
        "--set=threads=1",
        "--set=record.checkpoint_every=37",
    ]
    .map(String::from)
    .to_vec()
}

fn spawn(args: &[String], out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .arg("run")
        .args(args)
        .args(["--headless", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every dataset under `group`, by path, as bit patterns (floats) or integers.
fn datasets(group: &hdf5::Group, prefix: &str, out: &mut Vec<(String, Vec<u64>)>) {
    for name in group.member_names().unwrap() {
        let path = format!("{prefix}/{name}");
        if let Ok(g) = group.group(&name) {
            datasets(&g, &path, out);
            continue;
        }
        let ds = group.dataset(&name).unwrap();
        let values = if ds.dtype().unwrap().is::<f64>() {
            let v: Vec<f64> = ds.read_raw().unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        } else {
            ds.read_raw::<u64>().unwrap()
        };
        out.push((path, values));
    }
}

fn all_datasets(run: &Path) -> Vec<(String, Vec<u64>)> {
    let f = hdf5::File::open(run.join("run.h5")).unwrap();
    let mut out = vec![];
    datasets(&f, "", &mut out);
    out
}

/// Where a kill landed, from the run's own log.
fn phase(dir: &Path) -> &'static str {
    let log = std::fs::read_to_string(dir.join("events.log")).unwrap_or_default();
    let image_protocol = log.contains("] data: ") || log.contains("Z data: ");
    if !log.contains("run started") {
        "before the start"
    } else if log.contains("run finished") {
        "after the end"
    } else if image_protocol && !log.contains("GD phase: iteration") {
        "at the start"
    } else if image_protocol && !log.contains("GD phase done") {
        "in the GD phase"
    } else if log.contains("] finished") {
        "after a dynamics finished"
    } else {
        "mid trajectory"
    }
}

/// Every attempt's `RunStarted` names the trajectories that earlier attempts finished
/// (what a display that sees only that attempt needs for its ETA), and no others.
/// Whether any attempt had some to name.
fn check_finished_before(dir: &Path) -> bool {
    use noiselab::events::Event;
    let contents = journal::read(&dir.join(journal::FILE_NAME)).unwrap();
    let mut finished = std::collections::BTreeSet::new();
    let mut named = false;
    for record in &contents.records {
        match &record.body {
            journal::Body::Event(Event::RunStarted(info)) => {
                let told: std::collections::BTreeSet<_> =
                    info.finished_before.iter().copied().collect();
                assert_eq!(
                    told,
                    finished,
                    "{}: RunStarted's finished_before",
                    dir.display()
                );
                named |= !told.is_empty();
            }
            journal::Body::Event(Event::TrajectoryFinished {
                dynamics,
                replicate,
            }) => {
                finished.insert((*dynamics, *replicate));
            }
            journal::Body::Event(Event::ReplicateFinished { dynamics, summary }) => {
                finished.insert((*dynamics, summary.replicate));
            }
            _ => {}
        }
    }
    named
}

/// Runs `args` once to the end, then `kills` times killed with SIGKILL at moments spread
/// over the run's length (one in each `1/kills` of it, at a random point) and resumed:
/// each must end with the uninterrupted run's datasets and summary.json, bit for bit.
/// Returns where the kills landed, how many resumes continued from a checkpoint and
/// how many were told of trajectories finished before them.
fn kill_and_resume(
    args: &[String],
    kills: usize,
    seed: u64,
    aimed: &[&'static str],
) -> (Vec<&'static str>, usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    // Twice uninterrupted: the same record both times, and the kills are spread over
    // the shorter (warm) duration.
    let mut full = Duration::MAX;
    let mut records = vec![];
    for name in ["reference", "again"] {
        let dir = tmp.path().join(name);
        let started = Instant::now();
        let mut child = spawn(args, &dir);
        assert!(child.wait().unwrap().success());
        full = full.min(started.elapsed());
        records.push((
            all_datasets(&dir),
            std::fs::read_to_string(dir.join("summary.json")).unwrap(),
        ));
    }
    let (expected, summary) = records.swap_remove(0);
    assert!(
        expected == records[0].0 && summary == records[0].1,
        "two runs differ"
    );
    assert!(expected.len() > 10, "{expected:?}");
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let mut phases = vec![];
    let mut from_checkpoint = 0;
    let mut told_finished = 0;
    // First a kill aimed at each of `aimed` (the log is watched until the run is
    // there: a short phase is hit whatever the machine's speed), then `kills` spread
    // over the run's length.
    let plan = aimed
        .iter()
        .map(|p| Some(*p))
        .chain(std::iter::repeat_n(None, kills));
    for (i, aim) in plan.enumerate() {
        let dir: PathBuf = tmp.path().join(format!("killed-{i}"));
        let timed = i.saturating_sub(aimed.len());
        let at = (timed as f64 + rng.random_range(0.0..1.0)) / kills as f64;
        let mut child = spawn(args, &dir);
        match aim {
            Some(target) => {
                let deadline = Instant::now() + 4 * full;
                while phase(&dir) != target {
                    assert!(Instant::now() < deadline, "the run never was {target}");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            None => std::thread::sleep(Duration::from_secs_f64(at * full.as_secs_f64())),
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        phases.push(phase(&dir));
        if !dir.join(journal::FILE_NAME).exists() {
            continue; // killed before the run directory existed: nothing to resume
        }
        let o = noiselab(&["resume", dir.to_str().unwrap(), "-q"]);
        assert!(
            o.status.success(),
            "resume after kill #{i} at {at:.2} of the run: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        told_finished += usize::from(check_finished_before(&dir));
        let log = std::fs::read_to_string(dir.join("events.log")).unwrap();
        from_checkpoint += usize::from(log.contains("continuing from its checkpoint"));
        let got = all_datasets(&dir);
        let names = |v: &[(String, Vec<u64>)]| v.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&expected), "kill #{i}: datasets differ");
        for (g, e) in got.iter().zip(&expected) {
            assert!(g.1 == e.1, "kill #{i} ({}): {} differs", phases[i], g.0);
        }
        let resumed = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        assert_eq!(resumed, summary, "kill #{i}: summary.json differs");
    }
    eprintln!(
        "{} kills over {:.1} s: {phases:?}; {from_checkpoint} resumes continued from a checkpoint, \
         {told_finished} were told of finished trajectories",
        kills + aimed.len(),
        full.as_secs_f64()
    );
    (phases, from_checkpoint, told_finished)
}

#[test]
fn fashion_mnist_killed_anywhere_resumes_to_the_uninterrupted_record() {
    let (phases, from_checkpoint, _) =
        kill_and_resume(&fashion_args(), 12, 12, &["in the GD phase"]);
    assert!(phases.contains(&"in the GD phase"), "{phases:?}");
    assert!(
        phases
            .iter()
            .any(|p| *p == "mid trajectory" || *p == "after a dynamics finished"),
        "{phases:?}"
    );
    assert!(
        from_checkpoint >= 2,
        "{from_checkpoint} resumes used a checkpoint"
    );
}

#[test]
fn one_hidden_killed_anywhere_resumes_to_the_uninterrupted_record() {
    let (_, from_checkpoint, told_finished) = kill_and_resume(&one_hidden_args(), 10, 10, &[]);
    assert!(
        from_checkpoint >= 2,
        "{from_checkpoint} resumes used a checkpoint"
    );
    // Its widths finish one after another: later kills resume past some of them.
    assert!(
        told_finished >= 1,
        "no resume came after a finished trajectory"
    );
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1")
}

#[test]
fn a_journal_of_the_previous_release_is_refused_by_name_and_its_record_still_reads() {
    let err = journal::read(&fixture().join("journal.bin"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("journal.bin") && err.contains("journal format 1") && err.contains("older"),
        "{err}"
    );
    // As a run directory: resume and repair refuse it (exit 1, the same message) …
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    std::fs::create_dir(&dir).unwrap();
    for f in ["journal.bin", "run.h5", "summary.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    for cmd in ["resume", "repair"] {
        let o = noiselab(&[cmd, dir.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("journal format 1"), "{cmd}: {stderr}");
    }
    // … and nothing was written over its record.
    assert_eq!(
        std::fs::read(dir.join("run.h5")).unwrap(),
        std::fs::read(fixture().join("run.h5")).unwrap()
    );
    // inspect reads its run.h5 and says why not the journal.
    let o = noiselab(&["inspect", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("GLD 1st eigvec") && out.contains("journal format 1"),
        "{out}"
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_journal_is_reported_never_misread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let o = noiselab(&[
        "run",
        "toy2d",
        "-q",
        "--set",
        "toy2d.seeds=2",
        "--set",
        "toy2d.iterations=5",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let good = std::fs::read(dir.join(journal::FILE_NAME)).unwrap();
    let frames = journal::parse(&good, Path::new("j")).unwrap().records.len();
    assert!(frames > 10);
    let path = tmp.path().join("journal.bin");
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(3);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= rng.random_range(1..=255u8);
        std::fs::write(&path, &bad).unwrap();
        let err = journal::read(&path)
            .map(|c| format!("read {} records", c.records.len()))
            .unwrap_or_else(|e| e.to_string());
        assert!(
            err.contains("journal.bin")
                && (err.contains("damaged") || err.contains("magic") || err.contains("format")),
            "byte {i}: {err}"
        );
    }
}
