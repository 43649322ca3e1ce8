//! The dashboard without a terminal: key handling on the app state, rendering through
//! ratatui's `TestBackend`, and the event loop end to end on a real (small) toy run.

mod common;

use noiselab::config;
use noiselab::events::{self, RunStatus};
use noiselab::runner;
use noiselab::tui::app::{Action, App, Key, Overlay, View, KEYS};
use noiselab::tui::input::Input;
use noiselab::tui::{self, Exit, FrameStats};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use std::sync::atomic::AtomicBool;

fn loaded(seeds: usize) -> config::LoadedConfig {
    config::load(
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/toy2d.toml"),
        &[format!("toy2d.seeds={seeds}")],
    )
    .unwrap()
}

/// An app fed with every event of a real finished toy run.
fn finished_app(seeds: usize, mono: bool) -> App {
    let loaded = loaded(seeds);
    let (tx, rx) = events::channel(false);
    let info = runner::run_info(&loaded, std::path::Path::new("runs/test"), "now");
    // The toy writes nothing to its run directory: the runner's whole path, no record.
    let status = runner::start(&loaded, info, tx, Default::default()).join();
    assert_eq!(status, RunStatus::Finished);
    let mut app = App::new(mono);
    for e in rx.recorder.try_iter() {
        app.apply(e);
    }
    app
}

fn render(app: &App, w: u16, h: u16) -> (String, ratatui::buffer::Buffer) {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    tui::draw(&mut terminal, app, &mut FrameStats::default()).unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..h {
        for x in 0..w {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    (text, buf)
}

#[test]
fn overview_shows_every_dynamics_with_sparklines_and_numbers() {
    let mut app = finished_app(6, false);
    app.on_key(Key::Char('o'));
    let (text, _) = render(&app, 160, 40);
    for label in common::TOY_LABELS {
        assert!(text.contains(label), "overview lacks {label}:\n{text}");
    }
    for column in ["escaped", "loss", "Tr(H·Cov n)", "Tr(HΣ)", "Tr(HΣ̄)"] {
        assert!(
            text.contains(column),
            "overview lacks column {column}:\n{text}"
        );
    }
    assert!(
        text.contains("✓ finished"),
        "header does not say the run ended:\n{text}"
    );
    assert!(text.contains("6/6 seeds"), "{text}");
    // Sparkline glyphs and the real min/max/last beside them.
    assert!(text.chars().any(|c| "▁▂▃▄▅▆▇█".contains(c)), "{text}");
    assert!(text.contains('↓') && text.contains('↑'), "{text}");
    // The escape indicator of eig1 at the start is λ1·0.01 = 2 (METHOD.md §5): its max shows.
    let eig1_row = text
        .lines()
        .skip_while(|l| !l.contains("GLD 1st eigvec(H)"))
        .nth(3)
        .unwrap_or("");
    assert!(text.contains("↑2 ") || eig1_row.contains("↑2"), "{text}");
}

#[test]
fn detail_shows_charts_spectra_and_the_toy_canvas() {
    let mut app = finished_app(6, false);
    app.on_key(Key::Char('6'));
    app.on_key(Key::Enter);
    assert_eq!(app.view, View::Detail);
    let (text, _) = render(&app, 160, 45);
    for needle in [
        "GLD 1st eigvec(H) — escaped",
        "Tr(HΣ) vs isotropic Tr(HΣ̄)",
        "iteration",
        "latest spectra",
        "H at iteration 500",
        "Cov n at iteration 500",
        "θ plane: GLD 1st eigvec(H) seed 0/6",
        "sharp (1,1)",
        "flat (−1,−1)",
        "success rate (Fig. 1b)",
    ] {
        assert!(text.contains(needle), "detail lacks {needle:?}:\n{text}");
    }
    // m cycles the main chart's metric.
    app.on_key(Key::Char('m'));
    let (text, _) = render(&app, 160, 45);
    assert!(text.contains("GLD 1st eigvec(H) — loss"), "{text}");
    // [ and ] move the canvas between seeds.
    app.on_key(Key::Char('['));
    let (text, _) = render(&app, 160, 45);
    assert!(text.contains("seed 5/6"), "{text}");
}

#[test]
fn help_overlay_lists_every_key() {
    let mut app = finished_app(2, false);
    app.on_key(Key::Char('?'));
    assert_eq!(app.overlay, Overlay::Help);
    let (text, _) = render(&app, 120, 40);
    for (key, what) in KEYS {
        assert!(
            text.contains(key) && text.contains(what),
            "help lacks {key} {what}:\n{text}"
        );
    }
    app.on_key(Key::Esc);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn tiny_terminal_gets_a_clear_message() {
    let app = finished_app(2, false);
    let (text, _) = render(&app, 40, 10);
    assert!(text.contains("terminal too small"), "{text}");
    // And no panic at absurd sizes.
    render(&app, 1, 1);
    render(&app, 60, 16);
}

#[test]
fn no_color_renders_monochrome() {
    let (_, colored) = render(&finished_app(3, false), 140, 40);
    assert!(colored.content().iter().any(|c| c.fg != Color::Reset));
    let mut app = finished_app(3, true);
    let (_, mono) = render(&app, 140, 40);
    assert!(mono
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
    app.on_key(Key::Char('o'));
    let (_, mono) = render(&app, 140, 40);
    assert!(mono
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
}

#[test]
fn keys_switch_dynamics_views_and_panes() {
    let mut app = finished_app(2, false);
    assert_eq!(app.selected, 0);
    app.on_key(Key::Tab);
    app.on_key(Key::Right);
    assert_eq!(app.selected, 2);
    app.on_key(Key::Left);
    app.on_key(Key::BackTab);
    app.on_key(Key::BackTab);
    assert_eq!(app.selected, 5, "wraps around");
    app.on_key(Key::Char('3'));
    assert_eq!(app.selected, 2);
    app.on_key(Key::Char('8'));
    assert_eq!(app.selected, 2, "no 8th dynamics in this run");
    app.on_key(Key::Char('l'));
    assert!(app.show_log);
    let (text, _) = render(&app, 140, 40);
    assert!(
        text.contains("run finished") && text.contains("] finished"),
        "{text}"
    );
    let first = app.selected_metric();
    app.on_key(Key::Char('m'));
    assert_ne!(app.selected_metric(), first);
}

#[test]
fn quit_asks_while_running_and_not_after() {
    let mut running = App::new(false);
    assert_eq!(running.on_key(Key::Char('q')), None);
    assert_eq!(running.overlay, Overlay::ConfirmQuit);
    assert_eq!(
        running.on_key(Key::Char('n')),
        None,
        "any other key keeps running"
    );
    assert_eq!(running.overlay, Overlay::None);
    running.on_key(Key::Char('q'));
    assert_eq!(running.on_key(Key::Char('y')), Some(Action::Quit));
    assert_eq!(running.on_key(Key::CtrlC), Some(Action::Interrupt));
    let mut done = finished_app(1, false);
    assert_eq!(done.on_key(Key::Char('q')), Some(Action::Quit));
}

#[test]
fn event_loop_runs_a_live_toy_run_to_the_end() {
    let keys = [Key::Char('d'), Key::Char('m'), Key::Char('?'), Key::Esc];
    let (exit, app, handle) = loop_on_live_run(30, &keys, false, true);
    assert_eq!(exit, Exit::Done);
    assert_eq!(handle.join(), RunStatus::Finished);
    assert_eq!(app.status, RunStatus::Finished);
    assert!(
        app.dynamics.iter().all(|d| d.done == 30),
        "every replicate reached the display"
    );
    assert_eq!(app.view, View::Detail);
    assert_eq!(app.overlay, Overlay::None);
}

/// Runs the event loop on a live toy run with these keys queued and this signal flag.
fn loop_on_live_run(
    seeds: usize,
    keys: &[Key],
    signalled: bool,
    exit_when_done: bool,
) -> (Exit, App, runner::RunHandle) {
    let loaded = loaded(seeds);
    let (tx, rx) = events::channel(true);
    let info = runner::run_info(&loaded, std::path::Path::new("runs/test"), "now");
    let handle = runner::start(&loaded, info, tx, Default::default());
    let (key_tx, key_rx) = crossbeam_channel::unbounded::<Input>();
    for &k in keys {
        key_tx.send(Input::Key(k)).unwrap();
    }
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
    let mut app = App::new(false);
    let exit = tui::run_loop(
        &mut terminal,
        &mut app,
        &rx.display.unwrap(),
        &key_rx,
        &AtomicBool::new(signalled),
        exit_when_done,
        &mut FrameStats::default(),
    )
    .unwrap();
    (exit, app, handle)
}

#[test]
fn q_then_y_stops_a_running_run_and_a_signal_interrupts() {
    let (exit, _, handle) =
        loop_on_live_run(100_000, &[Key::Char('q'), Key::Char('y')], false, false);
    assert_eq!(exit, Exit::Quit);
    handle.request_stop();
    assert_eq!(handle.join(), RunStatus::Interrupted);

    let (exit, _, handle) = loop_on_live_run(100_000, &[], true, false);
    assert_eq!(exit, Exit::Interrupted);
    handle.request_stop();
    assert_eq!(handle.join(), RunStatus::Interrupted);
}

#[test]
fn watching_the_journal_shows_what_the_live_dashboard_showed() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = loaded(40);
    let setup = noiselab::record::recorder::new_run(&loaded, tmp.path(), "now").unwrap();
    let (tx, rx) = events::channel(true);
    let recorder = noiselab::record::recorder::spawn(setup, rx.recorder);
    let info = runner::run_info(&loaded, tmp.path(), "now");
    let handle = runner::start(&loaded, info, tx, Default::default());
    let display = rx.display.unwrap();
    let mut live = App::new(false);
    // A channel whose senders are gone reports so at once: stop selecting on it (the
    // lifecycle channel delivers RunEnded before it reports that).
    let (mut lifecycle, mut updates) = (display.lifecycle.clone(), display.updates.clone());
    while !live.is_done() {
        crossbeam_channel::select! {
            recv(lifecycle) -> e => match e {
                Ok(e) => live.apply(e),
                Err(_) => lifecycle = crossbeam_channel::never(),
            },
            recv(updates) -> e => match e {
                Ok(e) => live.apply(e),
                Err(_) => updates = crossbeam_channel::never(),
            },
        }
    }
    handle.join();
    for e in display.updates.try_iter() {
        live.apply(e);
    }
    recorder.join().unwrap().unwrap();
    assert_eq!(
        display.dropped.load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    let contents = noiselab::record::journal::read(&tmp.path().join("journal.bin")).unwrap();
    let mut replay = App::new(false);
    replay.watching = true;
    for e in contents.events() {
        replay.apply(e.clone());
    }
    // Everything below the header (which shows elapsed time and "watching") must match.
    let body = |app: &App| {
        let (text, _) = render(app, 150, 45);
        text.lines().skip(3).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(body(&live), body(&replay), "compare view differs");
    for app in [&mut live, &mut replay] {
        app.on_key(Key::Char('o'));
    }
    assert_eq!(body(&live), body(&replay), "overview differs");
    for app in [&mut live, &mut replay] {
        app.on_key(Key::Char('4'));
        app.on_key(Key::Enter);
    }
    assert_eq!(body(&live), body(&replay), "detail differs");
    assert!(body(&replay).join("\n").contains("GLD leading — escaped"));
}

#[test]
fn p_writes_the_compare_charts_as_png_beside_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = finished_app(4, false);
    // The run directory the run announced is where the figures go.
    let mut info = (**app.info.as_ref().unwrap()).clone();
    info.run_dir = tmp.path().to_path_buf();
    app.info = Some(std::sync::Arc::new(info));
    assert_eq!(app.on_key(Key::Char('p')), Some(Action::Figures));
    let line = tui::figures::spawn(&app)
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap();
    assert!(line.starts_with("PNG: 5 PNG file(s)"), "{line}");
    for metric in [
        "escaped_fraction",
        "loss",
        "tr_h_noise",
        "tr_h_sigma",
        "tr_h_sigma_iso",
    ] {
        let png = tmp.path().join(format!("figures/dashboard-{metric}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", png.display());
    }
}
