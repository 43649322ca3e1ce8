//! The live dashboard (ratatui + crossterm) and its headless fallback.
//!
//! State (`app`), input (`input`), rendering (`ui`) and the loop below are separate; the
//! loop is generic over the ratatui `Backend`, so tests drive it with `TestBackend`. It
//! selects over worker events, keys and a tick, and never waits on the workers.

pub mod app;
pub mod figures;
pub mod headless;
pub mod input;
pub mod sweep;
pub mod ui;

use crate::events::DisplayReceiver;
use app::{Action, App};
use crossbeam_channel::{never, Receiver};
use input::Input;
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the screen is refreshed when nothing happens (the clock moves).
pub const TICK: Duration = Duration::from_millis(1000);
/// Shortest interval between two frames when events pour in (2.5 frames a second: on a
/// machine the workers keep busy, every frame's CPU, and the terminal's (tmux) work on
/// it, is taken from them; docs/BENCHMARKS.md).
pub const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(400);
/// How long one pass may spend folding queued events into the state.
const DRAIN_BUDGET: Duration = Duration::from_millis(20);

/// Why the loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `q` (confirmed while running).
    Quit,
    /// Ctrl-C or a signal.
    Interrupted,
    /// The run ended and `--exit-when-done` was given.
    Done,
}

/// Rendering cost, for the overhead benchmark.
#[derive(Clone, Debug, Default)]
pub struct FrameStats {
    pub frames: u64,
    pub draw_time: Duration,
    pub max_draw_time: Duration,
}

impl FrameStats {
    pub fn mean_ms(&self) -> f64 {
        self.draw_time.as_secs_f64() * 1e3 / self.frames.max(1) as f64
    }
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub fn draw<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &App,
    stats: &mut FrameStats,
) -> Result<(), B::Error> {
    let start = Instant::now();
    terminal.draw(|f| ui::draw(f, app))?;
    let took = start.elapsed();
    stats.frames += 1;
    stats.draw_time += took;
    stats.max_draw_time = stats.max_draw_time.max(took);
    Ok(())
}

/// Folds every queued event into the state, within a time budget; true if any.
pub fn drain(
    app: &mut App,
    lifecycle: &Receiver<crate::events::Event>,
    updates: &Receiver<crate::events::Event>,
) -> bool {
    let start = Instant::now();
    let mut any = false;
    while start.elapsed() < DRAIN_BUDGET {
        match lifecycle.try_recv().or_else(|_| updates.try_recv()) {
            Ok(e) => {
                app.apply(e);
                any = true;
            }
            Err(_) => break,
        }
    }
    any
}

/// Runs the dashboard until the user quits, a signal arrives, or (with
/// `exit_when_done`) the run ends. Returns why.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    display: &DisplayReceiver,
    inputs: &Receiver<Input>,
    interrupted: &AtomicBool,
    exit_when_done: bool,
    stats: &mut FrameStats,
) -> Result<Exit, B::Error> {
    let (mut lifecycle, mut updates, mut inputs) = (
        display.lifecycle.clone(),
        display.updates.clone(),
        inputs.clone(),
    );
    let mut dirty = true;
    let mut last_frame: Option<Instant> = None;
    let mut figures: Option<Receiver<String>> = None;
    let mut keyed = false;
    loop {
        let due = match last_frame {
            None => Duration::ZERO,
            Some(t) if dirty => MIN_FRAME_INTERVAL.saturating_sub(t.elapsed()),
            Some(t) => TICK.saturating_sub(t.elapsed()),
        };
        crossbeam_channel::select! {
            recv(lifecycle) -> e => match e {
                Ok(e) => { app.apply(e); dirty = true; }
                // The workers are gone: nothing more will come on this channel.
                Err(_) => lifecycle = never(),
            },
            recv(updates) -> e => match e {
                Ok(e) => { app.apply(e); dirty = true; }
                Err(_) => updates = never(),
            },
            recv(inputs) -> i => match i {
                Ok(Input::Key(k)) => {
                    dirty = true;
                    // A key is answered at once, whatever the frame rate.
                    keyed = true;
                    match app.on_key(k) {
                        Some(Action::Quit) => return Ok(Exit::Quit),
                        Some(Action::Interrupt) => return Ok(Exit::Interrupted),
                        Some(Action::Figures) => {
                            app.notice = Some("PNG: drawing …".into());
                            figures = Some(figures::spawn(app));
                        }
                        None => {}
                    }
                }
                Ok(Input::Resize) => {
                    terminal.autoresize()?;
                    dirty = true;
                    keyed = true;
                }
                Err(_) => inputs = never(),
            },
            default(due) => {}
        }
        dirty |= drain(app, &lifecycle, &updates);
        if let Some(line) = figures.as_ref().and_then(|rx| rx.try_recv().ok()) {
            app.push_notice(line);
            figures = None;
            dirty = true;
        }
        app.dropped_updates = display.dropped.load(Ordering::Relaxed);
        if interrupted.load(Ordering::Relaxed) {
            return Ok(Exit::Interrupted);
        }
        let frame_due = keyed
            || last_frame.is_none_or(|t| {
                (dirty && t.elapsed() >= MIN_FRAME_INTERVAL) || t.elapsed() >= TICK
            });
        if frame_due {
            draw(terminal, app, stats)?;
            last_frame = Some(Instant::now());
            dirty = false;
            keyed = false;
        }
        if exit_when_done && app.is_done() {
            draw(terminal, app, stats)?;
            return Ok(Exit::Done);
        }
    }
}
