//! What a new user gets wrong, and what noiselab answers: per case the exit code and
//! the words of the message. Run directories that are not one, `--out` paths in the way,
//! and damaged records — run.h5, summary.json and journal frames — where every command
//! either rewrites the derived file from the journal (saying so) or refuses with the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn noiselab<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .expect("the binary runs")
}

/// Exit code and stdout + stderr.
fn outcome<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (Option<i32>, String) {
    let o = noiselab(args);
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn expect<S: AsRef<std::ffi::OsStr>>(args: &[S], code: i32, words: &[&str]) -> String {
    let (got, text) = outcome(args);
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert_eq!(got, Some(code), "{shown:?}: {text}");
    for w in words {
        assert!(text.contains(w), "{shown:?}: {w:?} not in\n{text}");
    }
    assert!(!text.contains("panicked"), "{shown:?}: {text}");
    assert!(
        !text.contains("os error"),
        "{shown:?}: raw OS text in\n{text}"
    );
    text
}

/// A finished toy run of the fixture (journal only; the first command writes the rest).
fn toy_run(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/records/toy2d/journal.bin"),
        dir.join("journal.bin"),
    )
    .unwrap();
    expect(&["repair", dir.to_str().unwrap()], 0, &["rebuilt"]);
    dir
}

fn summary_status(dir: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    v["status"].as_str().unwrap().to_string()
}

#[test]
fn run_arguments_that_are_not_run_directories_exit_2_saying_what_to_give() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let file = tmp.path().join("afile.txt");
    std::fs::write(&file, "x").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let only_h5 = toy_run(tmp.path(), "only_h5");
    std::fs::remove_file(only_h5.join("journal.bin")).unwrap();
    for command in ["inspect", "export", "watch", "resume", "repair"] {
        let mut args = vec![command];
        if command == "watch" {
            args.push("--headless");
        }
        let run = |d: &Path| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.push(d.display().to_string());
            a
        };
        expect(&run(&missing), 2, &["no such directory", "runs/"]);
        expect(&run(&file), 2, &["is a file", "run directory"]);
        expect(
            &run(&empty),
            2,
            &["not a noiselab run directory", "journal.bin", "run.h5"],
        );
        match command {
            // The record in run.h5 alone is still read.
            "inspect" | "export" => {
                expect(&run(&only_h5), 0, &[]);
            }
            _ => {
                expect(
                    &run(&only_h5),
                    2,
                    &["has run.h5 but no journal.bin", "noiselab inspect"],
                );
            }
        }
    }
}

#[test]
fn out_paths_in_the_way_exit_2_saying_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("afile.txt");
    std::fs::write(&file, "x").unwrap();
    let run = |out: &Path| {
        vec![
            "run".to_string(),
            "toy2d".into(),
            "--quiet".into(),
            "--set".into(),
            "toy2d.seeds=2".into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    expect(
        &run(&file),
        2,
        &[
            "--out",
            "afile.txt",
            "is a file, not a directory",
            "choose another path",
        ],
    );
    expect(
        &run(&file.join("sub")),
        2,
        &["--out", "afile.txt is a file, not a directory"],
    );
    let done = tmp.path().join("done");
    expect(&run(&done), 0, &[]);
    expect(
        &run(&done),
        2,
        &["already holds a run", "noiselab resume", "another --out"],
    );
    // --runs-dir the same way.
    expect(
        &[
            "run",
            "toy2d",
            "--quiet",
            "--runs-dir",
            file.to_str().unwrap(),
        ],
        2,
        &["--runs-dir", "is a file, not a directory"],
    );
}

#[test]
fn help_describes_every_argument_and_check_takes_runs_options() {
    expect(&["check", "toy2d", "--threads", "1"], 0, &["threads = 1"]);
    let subset = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/fashion-mnist-subset"
    );
    expect(
        &["check", "fashion_mnist_quick", "--data-dir", subset],
        0,
        &["fashion-mnist-subset"],
    );
    expect(
        &["check", "toy2d", "--data-dir", "/tmp"],
        2,
        &["--data-dir", "reads no dataset"],
    );
    for command in ["resume", "inspect", "export", "repair"] {
        expect(&[command, "--help"], 0, &["<RUN>  The run directory"]);
    }
    expect(
        &["watch", "--help"],
        0,
        &["<RUN|SWEEP>  The run directory", "a sweep directory"],
    );
    expect(
        &["check", "--help"],
        0,
        &["--data-dir", "--threads", "<CONFIG>  A config file"],
    );
    let presets = expect(&["run", "--help"], 0, &["Presets", "Examples"]);
    for p in noiselab::config::PRESETS {
        assert!(presets.contains(p.name), "{}", p.name);
    }
    // The only format needs no flag; the flag is still accepted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = toy_run(tmp.path(), "run");
    let plain = expect(&["export", dir.to_str().unwrap()], 0, &["gd,,"]);
    let flagged = expect(&["export", dir.to_str().unwrap(), "--csv"], 0, &[]);
    assert_eq!(plain, flagged);
}

/// Every command on a finished run whose derived file is damaged: the first one to meet
/// it rewrites it from the journal and says so; the record is whole afterwards.
#[test]
fn a_damaged_run_h5_or_summary_is_rewritten_from_the_journal_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    type Damage = fn(&Path);
    let damages: [(&str, &str, Damage); 5] = [
        ("run.h5", "truncated", |d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("run.h5"))
                .unwrap();
            f.set_len(1000).unwrap();
        }),
        ("run.h5", "random bytes", |d| {
            let bytes: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            std::fs::write(d.join("run.h5"), bytes).unwrap();
        }),
        ("run.h5", "missing", |d| {
            std::fs::remove_file(d.join("run.h5")).unwrap()
        }),
        ("summary.json", "garbage", |d| {
            std::fs::write(d.join("summary.json"), "{\"exper").unwrap()
        }),
        ("summary.json", "not ours", |d| {
            std::fs::write(d.join("summary.json"), "[1, 2, 3]").unwrap()
        }),
    ];
    let commands: [&[&str]; 6] = [
        &["inspect"],
        &["inspect", "--json"],
        &["export"],
        &["watch", "--headless"],
        &["resume", "--quiet"],
        &["repair"],
    ];
    for (i, (file, how, damage)) in damages.iter().enumerate() {
        for (j, command) in commands.iter().enumerate() {
            let dir = toy_run(tmp.path(), &format!("run-{i}-{j}"));
            damage(&dir);
            let mut args = command.to_vec();
            args.push(dir.to_str().unwrap());
            let said: &[&str] = if command[0] == "repair" {
                &["rebuilt"]
            } else {
                &[file, "rewritten from journal.bin"]
            };
            let text = expect(&args, 0, said);
            assert!(
                noiselab::record::integrity::check(&dir).is_empty(),
                "{file} {how}, after {command:?}: {text}"
            );
            assert_eq!(summary_status(&dir), "finished");
            // Said once: the next command finds nothing to put right.
            let (_, again) = outcome(&["inspect", dir.to_str().unwrap()]);
            assert!(!again.contains("rewritten"), "{again}");
        }
    }
}

#[test]
fn a_damaged_journal_frame_is_refused_with_the_fix_and_the_fix_works() {
    let tmp = tempfile::tempdir().unwrap();
    let damaged = |name: &str, keep_h5: bool| {
        let dir = toy_run(tmp.path(), name);
        let path = dir.join("journal.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x5a;
        std::fs::write(&path, bytes).unwrap();
        if !keep_h5 {
            std::fs::remove_file(dir.join("run.h5")).unwrap();
        }
        dir
    };
    let fix = "repair --truncate";
    // inspect and export fall back to run.h5, the last complete record, and say why.
    let dir = damaged("with-h5", true);
    let d = dir.to_str().unwrap();
    expect(
        &["inspect", d],
        0,
        &["damaged", "the numbers are from run.h5", fix],
    );
    expect(&["export", d], 0, &["gd,,"]);
    for command in [
        &["resume", "--quiet"][..],
        &["repair"],
        &["watch", "--headless"],
    ] {
        let mut args = command.to_vec();
        args.push(d);
        expect(&args, 1, &["journal.bin", "damaged", "intact", fix]);
    }
    // Without a run.h5 every reader refuses the same way.
    let bare = damaged("without-h5", false);
    expect(&["inspect", bare.to_str().unwrap()], 1, &["damaged", fix]);

    // The fix: the intact records stay, the whole file is kept aside, the run continues
    // to the record an undamaged run has.
    expect(
        &["repair", "--truncate", d],
        0,
        &["intact records", "journal.bin.damaged", "noiselab resume"],
    );
    assert!(dir.join("journal.bin.damaged").exists());
    assert_eq!(summary_status(&dir), "interrupted");
    expect(&["resume", "--quiet", d], 0, &[]);
    assert_eq!(summary_status(&dir), "finished");
    let whole = toy_run(tmp.path(), "whole");
    let finals = |dir: &Path| {
        let v: serde_json::Value =
            serde_json::from_slice(&noiselab(&["inspect", "--json", dir.to_str().unwrap()]).stdout)
                .unwrap();
        v["dynamics"].clone()
    };
    assert_eq!(finals(&dir), finals(&whole));
    // An undamaged journal: nothing to cut, and it says so.
    expect(&["repair", "--truncate", d], 0, &["not damaged"]);
}

#[test]
fn a_torn_journal_tail_is_noted_and_cut_by_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = toy_run(tmp.path(), "torn");
    let path = dir.join("journal.bin");
    let len = std::fs::metadata(&path).unwrap().len();
    // Cut inside the last frame (the end record): the run reads as killed mid-run.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let d = dir.to_str().unwrap();
    expect(
        &["inspect", d],
        0,
        &["not a complete record", "noiselab resume"],
    );
    expect(&["resume", "--quiet", d], 0, &[]);
    assert_eq!(summary_status(&dir), "finished");
}
