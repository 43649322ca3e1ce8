//! Every view of the dashboard at 80×24, 120×40 and 200×60, as text (insta snapshots in
//! tests/snapshots/): a scripted FashionMNIST run mid phase 2 (eight dynamics, SGD
//! collapsed, GLD Hessian measuring) and a finished toy run. Besides the snapshots, a
//! few properties are asserted at every size: no number is cut, "q quit" is always in
//! the footer, every dynamics is in the legend.

mod common;

use noiselab::dynamics::DynamicsKind;
use noiselab::events::{Event, Health, Metric, Progress, RunInfo, RunStatus, Task};
use noiselab::tui::app::{App, Key, View};
use noiselab::tui::{self, FrameStats};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::sync::Arc;

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

fn render(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    tui::draw(&mut terminal, app, &mut FrameStats::default()).unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A FashionMNIST-shaped run: GD phase 0..3000 measured every 500, phase 2 from θ_GD
/// measured every 100, now at iteration 3300 of 3500; SGD collapsed at 3200.
fn scripted_fashion() -> App {
    use DynamicsKind::*;
    let dynamics = vec![
        Gd, GldConst, GldDynamic, GldDiag, GldLeading, GldHessian, GldEig1, Sgd,
    ];
    // Every metric the FashionMNIST protocol reports, in its order.
    let metrics: Vec<Metric> = noiselab::experiments::classification::METRICS.to_vec();
    let info = Arc::new(RunInfo {
        experiment: "fashion_mnist".into(),
        run_dir: "runs/fashion_mnist_quick-20261130-120000".into(),
        config_toml: String::new(),
        config_source: String::new(),
        dim: 11_330,
        device: "cpu".into(),
        threads: 2,
        dynamics: dynamics.clone(),
        iterations: 3500,
        replicates: 1,
        replicate_labels: vec!["from θ_GD".into()],
        replicate_noun: "trajectory".into(),
        metrics: metrics.iter().map(|m| m.def()).collect(),
        plane: None,
        x_marks: vec![(3000, "θ_GD".into())],
        started: "2026-11-30T12:00:00Z".into(),
        finished_before: vec![],
        iteration_costs: vec![],
    });
    let mut app = App::new(false);
    app.apply(Event::RunStarted(info));
    // Smooth, distinct curves: accuracy rising, sharpness falling by dynamics.
    let value = |m: Metric, d: usize, t: f64| -> f64 {
        let phase2 = ((t - 3000.0) / 500.0).max(0.0);
        let k = d as f64;
        match m {
            m if m == Metric::TEST_ACCURACY => 0.55 + 0.2 * (t / 3500.0) + 0.01 * k * phase2,
            m if m == Metric::TRAIN_ACCURACY => 0.6 + 0.3 * (t / 3500.0),
            m if m == Metric::SHARPNESS => 0.02 * (1.0 - 0.1 * k * phase2),
            m if m == Metric::SHARPNESS_SE => 2.0e-4 * (1.0 + 0.1 * k),
            m if m == Metric::LOSS || m == Metric::TEST_LOSS => 2.0 - 1.2 * t / 3500.0,
            m if m == Metric::TR_H_SIGMA => 200.0 * 10f64.powf(-0.4 * k * phase2),
            m if m == Metric::TR_H_SIGMA_ISO => 0.1 + 0.001 * k,
            m if m == Metric::ISOTROPY_RATIO => 2000.0 * 10f64.powf(-0.4 * k * phase2),
            m if m == Metric::PROJECTION_COEFFICIENT => 1.0 + 0.01 * k,
            m if m == Metric::GRADIENT_NORM => 2.0e-5 * (1.0 + k),
            _ => 123_456.0 * (1.0 + k),
        }
    };
    for t in (0..3000).step_by(500) {
        let values = metrics
            .iter()
            .map(|&m| (m, value(m, 0, t as f64)))
            .collect();
        app.apply(Event::Metrics {
            dynamics: Gd,
            replicate: 0,
            iteration: t,
            values,
        });
    }
    for (d, &kind) in dynamics.iter().enumerate() {
        let last = if kind == GldHessian { 3200 } else { 3300 };
        for t in (3000..=last).step_by(100) {
            let mut values: Vec<(Metric, f64)> = metrics
                .iter()
                .map(|&m| (m, value(m, d, t as f64)))
                .collect();
            if kind == Sgd && t >= 3200 {
                for (m, v) in values.iter_mut() {
                    if *m == Metric::LOSS {
                        *v = std::f64::consts::LN_10;
                    } else if *m == Metric::TRAIN_ACCURACY || *m == Metric::TEST_ACCURACY {
                        *v = 0.1;
                    }
                }
            }
            app.apply(Event::Metrics {
                dynamics: kind,
                replicate: 0,
                iteration: t,
                values,
            });
        }
    }
    app.apply(Event::Health {
        dynamics: Sgd,
        replicate: 0,
        iteration: 3200,
        health: Health::Collapsed,
        detail: "training loss 2.3026 ≈ ln 10".into(),
    });
    // Progress: 20 s into phase 2 at scripted times, per dynamics a different speed.
    for (d, &kind) in dynamics.iter().enumerate() {
        for (t, step) in [(100.0, 0u64), (400.0, 300 - 20 * d as u64)] {
            app.apply(Event::Progress(Progress {
                dynamics: kind,
                replicate: 0,
                phase: None,
                step,
                steps: 500,
                offset: 3000,
                measure_every: 100,
                elapsed_s: t,
                task: if kind == GldHessian && t > 300.0 {
                    Task::Measuring("expected sharpness (M = 100 perturbed losses)".into())
                } else {
                    Task::Steps
                },
                cpu_s: None,
            }));
        }
    }
    app.fixed_now = Some(410.0);
    app
}

fn toy() -> App {
    let loaded = noiselab::config::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
        &["toy2d.seeds=6".to_string()],
    )
    .unwrap();
    let (tx, rx) = noiselab::events::channel(false);
    let info = noiselab::runner::run_info(&loaded, std::path::Path::new("runs/test"), "now");
    let status = noiselab::runner::start(&loaded, info, tx, Default::default()).join();
    assert_eq!(status, RunStatus::Finished);
    let mut app = App::new(false);
    for e in rx.recorder.try_iter() {
        app.apply(e);
    }
    app.fixed_now = Some(12.0);
    app
}

/// What must hold on any screen: the footer keeps "q quit"; no "—" placeholder for a
/// value (dashes only in panel titles, "metric — every dynamics").
fn check_screen(text: &str, w: u16, h: u16) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), h as usize);
    let footer = lines.last().unwrap();
    assert!(footer.contains("q quit"), "{w}×{h}: footer {footer:?}");
    for l in &lines {
        assert!(
            !l.contains('—') || l.contains('┌'),
            "{w}×{h}: a placeholder dash outside a title:\n{text}"
        );
    }
}

#[test]
fn compare_view_at_every_size() {
    for (w, h) in SIZES {
        let app = scripted_fashion();
        assert_eq!(app.view, View::Compare, "compare is the default view");
        let text = render(&app, w, h);
        check_screen(&text, w, h);
        for d in ["GD", "SGD", "GLD Hessian", "GLD 1st"] {
            assert!(text.contains(d), "{w}×{h}: legend lacks {d}:\n{text}");
        }
        assert!(text.contains("θ_GD"), "{w}×{h}: θ_GD not marked:\n{text}");
        assert!(
            text.contains("collapsed"),
            "{w}×{h}: SGD's collapse not flagged:\n{text}"
        );
        assert!(text.contains("ETA"), "{w}×{h}: no ETA:\n{text}");
        assert!(
            text.contains("GLD Hessian: measuring"),
            "{w}×{h}: what it computes:\n{text}"
        );
        insta::assert_snapshot!(format!("fashion_compare_{w}x{h}"), text);
    }
    // The second chart appears when the width allows, and `m` cycles the metric.
    let mut app = scripted_fashion();
    let wide = render(&app, 200, 60);
    assert!(
        wide.contains("test acc —") && wide.contains("sharpness —"),
        "{wide}"
    );
    app.on_key(Key::Char('m'));
    let next = render(&app, 120, 40);
    assert!(next.contains("sharpness —"), "{next}");
    let mut found = false;
    for _ in 0..11 {
        app.on_key(Key::Char('m'));
        let screen = render(&app, 120, 40);
        if screen.contains(" Tr(HΣ)/Tr(HΣ̄)") {
            assert!(
                screen.contains("Tr(HΣ)/Tr(HΣ̄), log axis"),
                "decades on a log axis:\n{screen}"
            );
            found = true;
            break;
        }
    }
    assert!(found, "m never reached the isotropy ratio");
    // z: the whole run, the GD phase included.
    app.on_key(Key::Char('z'));
    assert!(render(&app, 120, 40).contains("whole run (z: from θ_GD)"));
}

#[test]
fn overview_at_every_size() {
    for (w, h) in SIZES {
        let mut app = scripted_fashion();
        app.on_key(Key::Char('o'));
        let text = render(&app, w, h);
        check_screen(&text, w, h);
        // The mission's metrics come first and fit.
        assert!(text.contains("test acc"), "{w}×{h}:\n{text}");
        assert!(
            text.contains("sharpness") || text.contains("sha."),
            "{w}×{h}:\n{text}"
        );
        assert!(text.contains("collapsed"), "{w}×{h}:\n{text}");
        assert!(text.contains("⟳ measuring"), "{w}×{h}: the task:\n{text}");

        insta::assert_snapshot!(format!("fashion_overview_{w}x{h}"), text);
    }
    // `c` pages through the other metrics.
    let mut app = scripted_fashion();
    app.on_key(Key::Char('o'));
    let first = render(&app, 80, 24);
    app.on_key(Key::Char('c'));
    let second = render(&app, 80, 24);
    assert!(first.contains("metrics 1–3 of 12"), "{first}");
    assert!(second.contains("metrics 4–6 of 12"), "{second}");
}

#[test]
fn detail_and_help_at_every_size() {
    for (w, h) in SIZES {
        let mut app = scripted_fashion();
        app.on_key(Key::Enter);
        let text = render(&app, w, h);
        check_screen(&text, w, h);
        insta::assert_snapshot!(format!("fashion_detail_{w}x{h}"), text);
        app.on_key(Key::Char('?'));
        let help = render(&app, w, h);
        insta::assert_snapshot!(format!("help_{w}x{h}"), help);
        app.on_key(Key::Esc);
        app.on_key(Key::Esc);
        app.on_key(Key::Char('q'));
        let quit = render(&app, w, h);
        assert!(
            quit.contains("y / Enter: quit · any other key: keep running"),
            "{w}×{h}: the quit dialog clips its keys:\n{quit}"
        );
    }
}

#[test]
fn toy_views_at_every_size() {
    let app = toy();
    for (w, h) in SIZES {
        for (key, name) in [
            (Key::Char('v'), "compare"),
            (Key::Char('o'), "overview"),
            (Key::Enter, "detail"),
        ] {
            let mut app = toy();
            app.on_key(key);
            let text = render(&app, w, h);
            check_screen(&text, w, h);
            insta::assert_snapshot!(format!("toy_{name}_{w}x{h}"), text);
        }
    }
    let text = render(&app, 120, 40);
    for label in common::TOY_LABELS {
        assert!(text.contains(label), "{text}");
    }
}

#[test]
fn monochrome_compare_reads_by_numbers_along_the_curves() {
    let mut app = scripted_fashion();
    app.monochrome = true;
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    tui::draw(&mut terminal, &app, &mut FrameStats::default()).unwrap();
    let buf = terminal.backend().buffer().clone();
    // No colour anywhere …
    for cell in buf.content() {
        assert!(
            cell.fg == ratatui::style::Color::Reset,
            "a coloured cell under NO_COLOR"
        );
    }
    // … yet every dynamics' number is printed on the chart (left of the legend).
    let text = render(&app, 120, 40);
    // The plot itself: below the chart's title, above its x labels, right of its y labels.
    let chart: String = text
        .lines()
        .skip(4)
        .take(40 - 4 - 3)
        .map(|l| l.chars().skip(9).take(70).collect::<String>())
        .collect();
    for n in 1..=8 {
        assert!(
            chart.contains(&n.to_string()),
            "curve {n} unmarked:\n{text}"
        );
    }
}

#[test]
fn the_gd_phase_and_the_spectrum_are_never_silent() {
    // The same run earlier: in its GD phase, then computing the spectrum at θ_GD.
    let full = scripted_fashion();
    let mut app = App::new(false);
    app.apply(Event::RunStarted(full.info.clone().unwrap()));
    for t in [0u64, 500] {
        app.apply(Event::Metrics {
            dynamics: DynamicsKind::Gd,
            replicate: 0,
            iteration: t,
            values: vec![(Metric::TEST_ACCURACY, 0.1 + t as f64 / 1e4)],
        });
    }
    let gd_phase = |step: u64, at: f64, task: Task| {
        Event::Progress(Progress {
            dynamics: DynamicsKind::Gd,
            replicate: 0,
            phase: Some("GD phase".into()),
            step,
            steps: 3000,
            offset: 0,
            measure_every: 500,
            elapsed_s: at,
            task,
            cpu_s: None,
        })
    };
    app.apply(gd_phase(0, 0.0, Task::Measuring("metrics".into())));
    app.apply(gd_phase(0, 20.0, Task::Steps));
    app.apply(gd_phase(500, 70.0, Task::Measuring("metrics".into())));
    app.apply(gd_phase(500, 90.0, Task::Steps));
    app.apply(gd_phase(700, 110.0, Task::Steps));
    app.fixed_now = Some(110.0);
    for (w, h) in SIZES {
        let text = render(&app, w, h);
        check_screen(&text, w, h);
        assert!(text.contains("GD phase 23%"), "{w}×{h}:\n{text}");
        assert!(
            text.contains("ETA 00:"),
            "{w}×{h}: the phase's ETA:\n{text}"
        );
        // The axis spans the planned run, θ_GD (where the dynamics start) marked.
        assert!(
            text.contains("3500") && text.contains("θ_GD"),
            "{w}×{h}:\n{text}"
        );
        insta::assert_snapshot!(format!("fashion_gd_phase_{w}x{h}"), text);
    }
    app.apply(gd_phase(3000, 400.0, Task::Steps));
    app.apply(Event::Progress(Progress {
        dynamics: DynamicsKind::Gd,
        replicate: 0,
        phase: Some("Hessian spectrum at θ_GD".into()),
        step: 0,
        steps: 1,
        offset: 0,
        measure_every: 0,
        elapsed_s: 401.0,
        task: Task::Computing("Lanczos: the top 100 eigenvalues of H".into()),
        cpu_s: None,
    }));
    app.fixed_now = Some(460.0);
    let text = render(&app, 120, 40);
    assert!(text.contains("Hessian spectrum at θ_GD …"), "{text}");
    assert!(text.contains("Lanczos: the top 100"), "{text}");
    app.on_key(Key::Char('o'));
    let text = render(&app, 80, 24);
    assert!(
        text.contains("Hessian spectrum at θ_GD"),
        "overview rows say what they wait for:\n{text}"
    );
}
