//! The `noiselab` command line.

use clap::{Parser, Subcommand};
use noiselab::config::{self, LoadedConfig};
use noiselab::events::{self, RunStatus};
use noiselab::record::{recorder, run_dir};
use noiselab::tui::app::App;
use noiselab::tui::{self, headless, input, FrameStats};
use noiselab::{runner, signals, Error};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "noiselab",
    version,
    about = "Run GD, SGD and Langevin-type dynamics side by side and watch how the shape of their noise lets them escape sharp minima.",
    after_help = "Exit codes: 0 success, 1 run failure, 2 bad config or usage, 130 interrupted (q, Ctrl-C, SIGTERM, SIGHUP)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment from a TOML config file or a built-in preset.
    Run {
        /// Config file (e.g. configs/toy2d.toml) or built-in preset name (e.g. toy2d).
        config: String,
        /// Run directory to write (default: <runs-dir>/<name>-<UTC time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Where timestamped run directories are created.
        #[arg(long, value_name = "DIR", default_value = "runs")]
        runs_dir: PathBuf,
        /// Override a config key, e.g. --set toy2d.seeds=1000 (repeatable; TOML values).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Worker threads (same as --set threads=N).
        #[arg(long)]
        threads: Option<usize>,
        /// No dashboard and no progress lines; only the result table and the run directory.
        #[arg(long, short)]
        quiet: bool,
        /// Plain progress lines instead of the dashboard (automatic when stdout is not a terminal).
        #[arg(long)]
        headless: bool,
        /// Close the dashboard by itself when every dynamics has finished.
        #[arg(long)]
        exit_when_done: bool,
        /// Print the dashboard's frame count, draw time and CPU use at the end.
        #[arg(long, hide = true)]
        ui_stats: bool,
    },
    /// Validate a config and print it resolved (defaults and overrides applied).
    Check {
        config: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// List the built-in presets.
    Presets,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            out,
            runs_dir,
            mut overrides,
            threads,
            quiet,
            headless,
            exit_when_done,
            ui_stats,
        } => {
            if let Some(t) = threads {
                overrides.push(format!("threads={t}"));
            }
            let watch = Watch {
                quiet,
                headless,
                exit_when_done,
                ui_stats,
            };
            config::load(&config, &overrides)
                .map_err(Error::from)
                .and_then(|loaded| run(&loaded, out.as_deref(), &runs_dir, &watch))
        }
        Command::Check { config, overrides } => config::load(&config, &overrides)
            .map(|loaded| {
                print!("# {}\n{}", loaded.source, loaded.resolved_toml);
                ExitCode::SUCCESS
            })
            .map_err(Error::from),
        Command::Presets => {
            for (name, text) in config::PRESETS {
                let summary = text.lines().next().unwrap_or("").trim_start_matches("# ");
                println!("{name:<12} {summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e @ Error::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A line on stderr that may be gone (hung-up terminal): best effort, never a panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// How the run is watched.
struct Watch {
    quiet: bool,
    headless: bool,
    exit_when_done: bool,
    ui_stats: bool,
}

fn run(
    loaded: &LoadedConfig,
    out: Option<&Path>,
    runs_dir: &Path,
    watch: &Watch,
) -> noiselab::Result<ExitCode> {
    let config = &loaded.config;
    let dir = match out {
        Some(dir) => run_dir::create_exact(dir)?,
        None => run_dir::create_timestamped(
            runs_dir,
            config.name.as_deref().unwrap_or(config.experiment.key()),
        )?,
    };
    let created = run_dir::utc_now();
    let interactive = !watch.headless && !watch.quiet && std::io::stdout().is_terminal();
    let interrupted = signals::install().map_err(|e| Error::io("signal handlers", e))?;
    let (events, receivers) = events::channel(!watch.quiet);
    let recorder = recorder::spawn(
        loaded.clone(),
        dir.clone(),
        created.clone(),
        receivers.recorder,
    );
    let info = runner::run_info(loaded, &dir, &created);
    let handle = runner::start(loaded, info, events);

    let mut dashboard_error = None;
    match receivers.display {
        Some(display) if interactive => {
            let monochrome = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            match dashboard(
                &display,
                &handle,
                &interrupted,
                watch.exit_when_done,
                monochrome,
            ) {
                Ok(stats) if watch.ui_stats => say(&stats.to_string()),
                Ok(_) => {}
                Err(e) => dashboard_error = Some(e),
            }
        }
        Some(display) => {
            headless::run(&display, &interrupted, &|| handle.request_stop());
        }
        None => {
            while !handle.is_done() {
                if interrupted.load(Ordering::Relaxed) {
                    handle.request_stop();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    handle.join();
    let recorded = recorder
        .join()
        .map_err(|_| Error::Numerics("the recorder thread panicked".into()))??;
    // The terminal may have gone with the SSH session: the record is already safe, so
    // printing the summary is best effort.
    let mut stdout = std::io::stdout().lock();
    if let Some(outcome) = &recorded.toy {
        let partial = if recorded.status == RunStatus::Finished {
            String::new()
        } else {
            format!(" ({}: finished replicates only)", recorded.status.key())
        };
        let _ = writeln!(
            stdout,
            "Success rate of escaping to the flat basin (Fig. 1b), {} seeds{partial}:",
            outcome.toy.seeds
        );
        let _ = write!(stdout, "{}", outcome.table());
    }
    let _ = writeln!(stdout, "run directory: {}", recorded.run_dir.display());
    drop(stdout);
    if let Some(e) = dashboard_error {
        say(&format!(
            "error: the dashboard stopped ({e}); the run was stopped and its record flushed"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(match recorded.status {
        RunStatus::Finished => ExitCode::SUCCESS,
        RunStatus::Interrupted => {
            say("run interrupted: the record holds what had finished");
            ExitCode::from(130)
        }
        RunStatus::Failed | RunStatus::Running => ExitCode::FAILURE,
    })
}

/// Runs the dashboard on the real terminal and restores it whatever happens (quit,
/// Ctrl-C, a signal, an error writing to a vanished terminal, a panic); stops the
/// workers and waits for them unless the run already ended.
fn dashboard(
    display: &events::DisplayReceiver,
    handle: &runner::RunHandle,
    interrupted: &AtomicBool,
    exit_when_done: bool,
    monochrome: bool,
) -> Result<UiStats, String> {
    // ratatui's init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let input_stop = Arc::new(AtomicBool::new(false));
    let inputs = input::spawn(input_stop.clone());
    let mut app = App::new(monochrome);
    let mut frames = FrameStats::default();
    let cpu0 = tui::thread_cpu_time();
    let wall0 = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Lets the end-to-end tests prove the terminal survives a panic in the UI.
        if std::env::var_os("NOISELAB_DEBUG_PANIC_AFTER_MS").is_some() {
            let ms = std::env::var("NOISELAB_DEBUG_PANIC_AFTER_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let _ = tui::draw(&mut terminal, &app, &mut FrameStats::default());
            std::thread::sleep(Duration::from_millis(ms));
            panic!("NOISELAB_DEBUG_PANIC_AFTER_MS: deliberate panic in the dashboard");
        }
        tui::run_loop(
            &mut terminal,
            &mut app,
            display,
            &inputs,
            interrupted,
            exit_when_done,
            &mut frames,
        )
    }));
    let stats = UiStats {
        frames,
        cpu: tui::thread_cpu_time().saturating_sub(cpu0),
        wall: wall0.elapsed(),
    };
    let result = match outcome {
        Ok(Ok(_)) => Ok(stats),
        Ok(Err(e)) => Err(format!("terminal error: {e}")),
        Err(_) => Err("the dashboard panicked".to_string()),
    };
    if !handle.is_done() {
        handle.request_stop();
        app.stopping = true;
        let _ = tui::draw(&mut terminal, &app, &mut FrameStats::default());
        while !handle.is_done() {
            tui::drain(&mut app, &display.lifecycle, &display.updates);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    input_stop.store(true, Ordering::Relaxed);
    // The terminal may be gone (SSH dropped): restoring it is best effort, and the
    // Terminal's own Drop must not run, since it `eprintln!`s (and so panics) when it
    // cannot show the cursor on a hung-up terminal.
    let _ = ratatui::try_restore();
    let _ = terminal.show_cursor();
    std::mem::forget(terminal);
    result
}

struct UiStats {
    frames: FrameStats,
    cpu: Duration,
    wall: Duration,
}

impl std::fmt::Display for UiStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dashboard: {} frames in {:.2} s, draw mean {:.3} ms, max {:.3} ms; UI thread CPU {:.3} s ({:.2}% of one core)",
            self.frames.frames,
            self.wall.as_secs_f64(),
            self.frames.mean_ms(),
            self.frames.max_draw_time.as_secs_f64() * 1e3,
            self.cpu.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
        )
    }
}
