//! The real binary in a real terminal (tmux): the dashboard comes up with every
//! dynamics, keys switch panels, `q` quits, and the terminal and the record are whole
//! afterwards — also after Ctrl-C and SIGTERM mid-run. Needs tmux (scripts/setup.sh
//! installs it); each test uses its own tmux server socket.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Self {
        let t = Tmux {
            socket: format!("noiselab-{name}-{}", std::process::id()),
        };
        let probe = Command::new("tmux").arg("-V").output();
        assert!(
            probe.is_ok_and(|o| o.status.success()),
            "tmux is not installed: run `bash scripts/setup.sh`"
        );
        t
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Starts `command` in a 150×45 pane; the shell reports its exit status and stays.
    fn start(&self, command: &str) {
        self.start_sized(command, 150, 45);
    }

    fn start_sized(&self, command: &str, w: u16, h: u16) {
        let wrapped = format!("{command}; echo EXITED $?; sleep 120");
        let (w, h) = (w.to_string(), h.to_string());
        let o = self.cmd(&[
            "new-session",
            "-d",
            "-x",
            &w,
            "-y",
            &h,
            "sh",
            "-c",
            &wrapped,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Resizes the window, as a user dragging it would.
    fn resize(&self, w: u16, h: u16) {
        let o = self.cmd(&["resize-window", "-x", &w.to_string(), "-y", &h.to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn display(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.cmd(&["display", "-p", format]).stdout)
            .trim()
            .to_string()
    }

    /// Polls the screen until `pred` holds (30 s at most).
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The noiselab process: the child of the pane's shell.
    fn noiselab_pid(&self) -> String {
        let shell = self.display("#{pane_pid}");
        let o = Command::new("pgrep")
            .args(["-P", &shell, "noiselab"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn assert_terminal_restored(&self) {
        assert_eq!(
            self.display("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.display("#{cursor_flag}"), "1", "cursor still hidden");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn command(dir: &Path, seeds: usize) -> String {
    format!(
        "{} run {}/configs/toy2d.toml --set toy2d.seeds={seeds} --out {}",
        env!("CARGO_BIN_EXE_noiselab"),
        env!("CARGO_MANIFEST_DIR"),
        dir.display()
    )
}

fn status_of(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    v["status"].as_str().unwrap().to_string()
}

fn h5_status(dir: &Path) -> String {
    let f = hdf5::File::open(dir.join("run.h5")).unwrap();
    let s: hdf5::types::VarLenUnicode = f.attr("status").unwrap().read_scalar().unwrap();
    s.as_str().to_string()
}

fn run_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("run")
}

#[test]
fn dashboard_shows_every_dynamics_switches_panels_and_quits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(&tmp);
    let t = Tmux::new("ui");
    t.start(&command(&dir, 300));
    t.wait_for("every dynamics in the compare view's legend", |s| {
        common::TOY_LABELS.iter().all(|l| s.contains(l)) && s.contains("every dynamics")
    });
    t.wait_for("the run to finish", |s| s.contains("✓ finished"));
    t.keys(&["Enter"]);
    t.wait_for("the detail panel", |s| {
        s.contains("Tr(HΣ) vs isotropic") && s.contains("θ plane")
    });
    t.keys(&["Tab"]);
    t.wait_for("the next dynamics", |s| {
        s.contains("GD — escaped") || s.contains("GLD const — escaped")
    });
    t.keys(&["m"]);
    t.wait_for("the next metric", |s| s.contains("— loss"));
    t.keys(&["?"]);
    t.wait_for("the help overlay", |s| s.contains("next / previous metric"));
    // Escape and the next key are sent apart: together a terminal reads them as Alt-key.
    t.keys(&["Escape"]);
    t.wait_for("the help to close", |s| {
        !s.contains("next / previous metric")
    });
    t.keys(&["o"]);
    t.wait_for("the overview", |s| {
        s.contains("overview") && !s.contains("θ plane")
    });
    t.keys(&["q"]);
    let s = t.wait_for("the process to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
    assert!(
        s.contains("Success rate of escaping"),
        "the table is printed after the dashboard:\n{s}"
    );
    t.assert_terminal_restored();
    assert_eq!(status_of(&dir), "finished");
    assert_eq!(h5_status(&dir), "finished");
}

#[test]
fn compare_view_cycles_metrics_and_survives_a_resize_from_200x60_to_80x24_mid_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(&tmp);
    let t = Tmux::new("resize");
    t.start_sized(&command(&dir, 1_000_000), 200, 60);
    // Wide: two charts side by side, the legend, progress in the header.
    let s = t.wait_for("two charts and the legend at 200×60", |s| {
        s.contains("escaped — every dynamics")
            && s.contains("loss, log axis — every dynamics") | s.contains("loss — every dynamics")
            && common::TOY_LABELS.iter().all(|l| s.contains(l))
            && s.contains("● running")
    });
    assert!(s.contains("legend"), "{s}");
    t.keys(&["m"]);
    t.wait_for("the next metric first", |s| {
        s.lines()
            .any(|l| l.trim_start_matches(['┌', '─']).starts_with(" loss"))
    });
    t.keys(&["M"]);
    t.wait_for("back to the first metric", |s| {
        s.lines()
            .any(|l| l.trim_start_matches(['┌', '─']).starts_with(" escaped"))
    });
    t.resize(80, 24);
    let s = t.wait_for("the 80×24 layout", |s| {
        s.lines().count() <= 24
            && s.contains("q quit")
            && s.contains("escaped")
            && !s.contains("loss — every dynamics")
    });
    // Names the legend cannot hold whole are abbreviated by the dashboard's one rule.
    for l in common::TOY_LABELS {
        let short = noiselab::tui::ui::abbreviate(l, 10);
        assert!(
            s.contains(&short),
            "legend lacks {l} ({short}) at 80×24:\n{s}"
        );
    }
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    t.keys(&["o"]);
    t.wait_for("the overview at 80×24", |s| {
        s.contains("overview") && s.contains("q quit")
    });
    t.keys(&["q"]);
    t.wait_for("the quit question", |s| {
        s.contains("Stop the run?") && s.contains("any other key: keep running")
    });
    t.keys(&["y"]);
    let s = t.wait_for("the process to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 130"), "{s}");
    t.assert_terminal_restored();
}

#[test]
fn ctrl_c_and_sigterm_restore_the_terminal_and_flush_an_interrupted_record() {
    for how in ["ctrl-c", "sigterm", "q-y"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = run_dir(&tmp);
        let t = Tmux::new(how);
        t.start(&command(&dir, 1_000_000));
        t.wait_for("the dashboard", |s| {
            s.contains("● running") && common::TOY_LABELS.iter().all(|l| s.contains(l))
        });
        match how {
            "ctrl-c" => t.keys(&["C-c"]),
            "sigterm" => {
                let pid = t.noiselab_pid();
                assert!(!pid.is_empty());
                assert!(Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success());
            }
            _ => {
                t.keys(&["q"]);
                t.wait_for("the quit question", |s| s.contains("Stop the run?"));
                t.keys(&["y"]);
            }
        }
        let s = t.wait_for("the process to exit", |s| s.contains("EXITED"));
        assert!(s.contains("EXITED 130"), "{how}: {s}");
        t.assert_terminal_restored();
        assert_eq!(status_of(&dir), "interrupted", "{how}");
        assert_eq!(h5_status(&dir), "interrupted", "{how}");
    }
}

#[test]
fn a_panic_in_the_dashboard_restores_the_terminal_and_keeps_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(&tmp);
    let t = Tmux::new("panic");
    t.start(&format!(
        "NOISELAB_DEBUG_PANIC_AFTER_MS=500 {}",
        command(&dir, 1_000_000)
    ));
    let s = t.wait_for("the process to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 1"), "{s}");
    assert!(
        s.contains("dashboard stopped (the dashboard panicked)"),
        "{s}"
    );
    t.assert_terminal_restored();
    assert_eq!(status_of(&dir), "interrupted");
}

#[test]
fn watch_follows_a_run_in_the_dashboard_and_quits_without_asking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_dir(&tmp);
    let mut writer = Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
            "--headless",
            "--set",
            "toy2d.seeds=1000",
            "--out",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("journal.bin").exists() {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Tmux::new("watch");
    t.start(&format!(
        "{} watch {}",
        env!("CARGO_BIN_EXE_noiselab"),
        dir.display()
    ));
    t.wait_for("the watched run", |s| {
        s.contains("watching") && common::TOY_LABELS.iter().all(|l| s.contains(l))
    });
    assert!(writer.wait().unwrap().success());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let ok = summary["dynamics"]["gld_eig1"]["successes"]
        .as_u64()
        .unwrap();
    t.wait_for("the final numbers", |s| s.contains("✓ finished"));
    t.keys(&["o"]);
    t.wait_for("the overview", |s| s.contains("1000/1000 seeds"));
    t.keys(&["6"]);
    t.keys(&["Enter"]);
    t.wait_for("eig1's success count in the detail panel", |s| {
        s.contains(&format!("{ok}/1000"))
    });
    t.keys(&["q"]);
    let s = t.wait_for("watch to exit", |s| s.contains("EXITED"));
    assert!(s.contains("EXITED 0"), "{s}");
    t.assert_terminal_restored();
}
