//! `noiselab watch` on runs whose writer is alive, killed, or finished: a dead writer is
//! told apart from a live one (the journal's writer lock), headless watch leaves on
//! SIGINT and SIGTERM, a second writer on the same run is refused, and `inspect` of a
//! running run shows where it stands.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn noiselab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
}

/// A long toy run writing to `dir`, headless.
fn long_run(dir: &Path) -> Child {
    let child = noiselab()
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
            "--headless",
            "--set",
            "toy2d.seeds=1000000",
            "--out",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Until the recorder has written the run's start.
    while std::fs::metadata(dir.join("journal.bin")).map_or(0, |m| m.len()) < 2_000 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// `noiselab watch --headless dir`, its progress lines piped.
fn headless_watch(dir: &Path) -> Child {
    noiselab()
        .args(["watch", "--headless"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits for `child` to exit within `limit`; its exit code.
fn exits_within(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn headless_watch_leaves_on_sigint_and_sigterm_while_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut writer = long_run(&dir);
    for sig in ["-INT", "-TERM"] {
        let mut watcher = headless_watch(&dir);
        std::thread::sleep(Duration::from_millis(1500));
        signal(&watcher, sig);
        exits_within(&mut watcher, Duration::from_secs(5));
        assert!(
            writer.try_wait().unwrap().is_none(),
            "watch must not stop the run"
        );
    }
    // A second writer on the live run is refused, naming the reason.
    let o = noiselab().arg("resume").arg(&dir).output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("another noiselab process is writing this run"),
        "{err}"
    );
    // inspect says a process writes it.
    let o = noiselab().arg("inspect").arg(&dir).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("the run is being written"), "{out}");
    signal(&writer, "-KILL");
    writer.wait().unwrap();
}

#[test]
fn watch_of_a_killed_run_says_its_writer_is_gone_and_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut writer = long_run(&dir);
    std::thread::sleep(Duration::from_millis(500));
    signal(&writer, "-KILL");
    writer.wait().unwrap();
    let mut watcher = headless_watch(&dir);
    let code = exits_within(&mut watcher, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(watcher.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("writer gone"), "{err}");
    assert!(
        err.contains(&format!("noiselab resume {}", dir.display())),
        "{err}"
    );
    let o = noiselab().arg("inspect").arg(&dir).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("writer gone"), "{out}");
    // The killed run resumes: the lock died with its writer.
    let mut resumed = noiselab()
        .arg("resume")
        .arg(&dir)
        .arg("--headless")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(resumed.try_wait().unwrap().is_none(), "resume was refused");
    signal(&resumed, "-TERM");
    assert_eq!(
        exits_within(&mut resumed, Duration::from_secs(30)),
        Some(130)
    );
}

#[test]
fn the_dashboard_state_knows_a_dead_writer() {
    use noiselab::tui::app::{App, WatchInfo};
    use std::sync::{Arc, Mutex};
    let mut app = App::new(true);
    app.watching = true;
    let info = Arc::new(Mutex::new(WatchInfo {
        dir: "runs/x".into(),
        attempt_started_ms: Some(1_000),
        last_record_ms: Some(61_000),
        writer_alive: Some(false),
    }));
    app.watch = Some(info.clone());
    assert!(app.writer_gone());
    // The run's own elapsed time: from its start to its last record, not the watcher's.
    assert_eq!(app.elapsed(), Duration::from_secs(60));
    info.lock().unwrap().writer_alive = Some(true);
    assert!(!app.writer_gone());
    assert!(app.elapsed() > Duration::from_secs(60));
}
