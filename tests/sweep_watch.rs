//! `noiselab watch SWEEP`: the sweep view rendered from a real small sweep (three toy
//! points made by the binary), `--headless` on it, and the band against a hand
//! computation.

use noiselab::sweep::manifest::Manifest;
use noiselab::tui::sweep::{self, band, Reader, SweepView};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn noiselab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_noiselab"))
}

/// `sweep toy2d --seeds 0..2` of 20 toy seeds a point, run to the end here.
fn small_sweep(tmp: &Path) -> PathBuf {
    let dir = tmp.join("sweep");
    let out = noiselab()
        .args([
            "sweep",
            "toy2d",
            "--seeds",
            "0..2",
            "--set",
            "toy2d.seeds=20",
        ])
        .arg("--out")
        .arg(&dir)
        .args(["--local", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the sweep failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn render(view: &SweepView, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| sweep::draw(f, view)).unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        for x in 0..w {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

#[test]
fn sweep_view_and_headless_watch_on_a_finished_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_sweep(tmp.path());

    // The view, from what the reader thread reads.
    let mut reader = Reader::new(&dir, Manifest::load(&dir).unwrap());
    let mut view = SweepView::new(&dir, true);
    view.apply(reader.read());
    assert!(view.is_done());
    let text = render(&view, 140, 45);
    for p in ["p000-seed0", "p001-seed1", "p002-seed2"] {
        let row = text
            .lines()
            .find(|l| l.contains(p))
            .unwrap_or_else(|| panic!("no row for {p}:\n{text}"));
        assert!(row.contains("finished"), "{p} not finished:\n{text}");
    }
    assert!(text.contains("3 finished"), "no counts:\n{text}");
    assert!(text.contains("legend"), "no legend:\n{text}");
    assert!(text.contains("mean ± 95 % CI over seeds"), "{text}");
    // Every dynamics of the toy, each over the three seeds.
    for label in ["GD", "GLD const", "GLD Hessian"] {
        assert!(
            text.contains(label),
            "{label} missing from the legend:\n{text}"
        );
    }
    let dynamics = view.chart.as_ref().unwrap().curves.len();
    assert_eq!(dynamics, 6, "{text}");
    assert_eq!(text.matches("n = 3").count(), dynamics, "{text}");

    // Keys: the next metric changes the chart's title; Enter opens the selected point.
    let title = view.chart.as_ref().unwrap().def.label.clone();
    view.on_key(sweep::SweepKey::Key(noiselab::tui::app::Key::Char('m')));
    assert_ne!(view.chart.as_ref().unwrap().def.label, title);
    view.on_key(sweep::SweepKey::Down);
    assert_eq!(
        view.on_key(sweep::SweepKey::Key(noiselab::tui::app::Key::Enter)),
        Some(sweep::Action::Open(dir.join("p001-seed1")))
    );
    assert_eq!(
        view.on_key(sweep::SweepKey::Key(noiselab::tui::app::Key::Char('q'))),
        Some(sweep::Action::Quit)
    );

    // Headless: the counts, and an exit of its own since nothing runs.
    let start = Instant::now();
    let mut child = noiselab()
        .args(["watch", "--headless"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("watch --headless on a finished sweep did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("3 finished"), "{text}");
}

/// Mean and 95 % t interval by hand: at iteration 0 the values 1, 2, 3 (mean 2, sd 1,
/// t(0.975, 2) = 0.95/√(2·0.975·0.025) = 4.302653); at 10 the values 2 and 4 (mean 3,
/// sd √2, t(0.975, 1) = tan(0.475π) = 12.706205); iteration 20 has one value (and a
/// NaN: not measured) and is left out.
#[test]
fn band_by_hand() {
    let a = (vec![0u64, 10, 20], vec![1.0, 2.0, 5.0]);
    let b = (vec![0u64, 10, 20], vec![2.0, 4.0, f64::NAN]);
    let c = (vec![0u64], vec![3.0]);
    let runs: Vec<(&[u64], &[f64])> = [&a, &b, &c]
        .iter()
        .map(|(i, v)| (i.as_slice(), v.as_slice()))
        .collect();
    let got = band(&runs, 100);
    assert_eq!(got.len(), 2);
    let (p0, p1) = (got[0], got[1]);
    assert_eq!((p0.iteration, p0.n), (0, 3));
    assert!((p0.mean - 2.0).abs() < 1e-12);
    let t2 = 0.95 / (2.0f64 * 0.975 * 0.025).sqrt();
    assert!((t2 - 4.302_652_73).abs() < 1e-6);
    let half = t2 * 1.0 / 3f64.sqrt();
    assert!((p0.low - (2.0 - half)).abs() < 1e-9, "{p0:?}");
    assert!((p0.high - (2.0 + half)).abs() < 1e-9, "{p0:?}");
    assert_eq!((p1.iteration, p1.n), (10, 2));
    assert!((p1.mean - 3.0).abs() < 1e-12);
    let t1 = (std::f64::consts::PI * 0.475).tan();
    assert!((t1 - 12.706_204_7).abs() < 1e-6);
    let half = t1 * 2f64.sqrt() / 2f64.sqrt();
    assert!((p1.low - (3.0 - half)).abs() < 1e-8, "{p1:?}");
    assert!((p1.high - (3.0 + half)).abs() < 1e-8, "{p1:?}");

    // Thinned to at most 3 iterations: the first and the last are kept.
    let its: Vec<u64> = (0..100).collect();
    let v1: Vec<f64> = its.iter().map(|&t| t as f64).collect();
    let v2: Vec<f64> = its.iter().map(|&t| t as f64 + 1.0).collect();
    let thin = band(&[(&its, &v1), (&its, &v2)], 3);
    let at: Vec<u64> = thin.iter().map(|p| p.iteration).collect();
    assert_eq!(at, vec![0, 49, 99]);
}
