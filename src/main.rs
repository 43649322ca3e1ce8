//! The `noiselab` command line.

use clap::{Args, Parser, Subcommand};
use noiselab::config::{self, LoadedConfig};
use noiselab::events::{self, Event, RunStatus};
use noiselab::experiment::Prior;
use noiselab::record::journal::{self, Body};
use noiselab::record::{integrity, recorder, run_dir, state, view};
use noiselab::tui::app::{App, WatchInfo};
use noiselab::tui::{self, headless, input, FrameStats};
use noiselab::{runner, signals, Error};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod cli;

#[derive(Parser)]
#[command(
    name = "noiselab",
    version,
    about = "Run GD, SGD and Langevin-type dynamics side by side and watch how the shape of their noise lets them escape sharp minima.",
    after_help = "Examples:
  noiselab run fashion_mnist_quick        the main job, in the live dashboard
  noiselab run toy2d --headless           the toy, with plain progress lines
  noiselab presets                        the built-in configs and their run times
  noiselab inspect runs/<run>             where a run stands, final metrics
  noiselab resume runs/<run>              continue an interrupted or killed run

Exit codes: 0 success, 1 run failure or unreadable record, 2 bad config, usage or run directory, 130 interrupted (q, Ctrl-C, SIGTERM, SIGHUP)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct Display {
    /// No dashboard and no progress lines; only the result table and the run directory.
    #[arg(long, short)]
    pub quiet: bool,
    /// Plain progress lines instead of the dashboard (automatic when stdout is not a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Close the dashboard by itself when every dynamics has finished.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Print the dashboard's frame count, draw time and CPU use at the end.
    #[arg(long, hide = true)]
    pub ui_stats: bool,
}

/// How a config is chosen and adjusted: shared by `run` and `check`.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// A config file (e.g. configs/toy2d.toml) or a built-in preset's name (`noiselab presets`).
    #[arg(value_name = "CONFIG")]
    config: String,
    /// Override a config key, e.g. --set toy2d.seeds=1000 (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Worker threads (same as --set threads=N; default: every core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Where the network experiments compute: cpu (the CPU kernels), candle-cpu (candle
    /// on the CPU: the CUDA path's code), cuda or cuda:N (same as --set device="…").
    #[arg(long, value_name = "DEVICE")]
    device: Option<noiselab::device::Device>,
    /// Dataset directory (same as --set fashion_mnist.data_dir="DIR", or cifar10.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// A run directory, as `noiselab run` prints it at the end.
const RUN_HELP: &str =
    "The run directory (e.g. runs/toy2d-20261130-120000), as `noiselab run` prints it";

#[derive(Subcommand)]
enum Command {
    /// Run an experiment from a TOML config file or a built-in preset.
    #[command(after_help = run_after_help())]
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Run directory to write (default: <runs-dir>/<name>-<UTC time>); never overwritten.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Where timestamped run directories are created.
        #[arg(long, value_name = "DIR", default_value = "runs")]
        runs_dir: PathBuf,
        #[command(flatten)]
        display: Display,
    },
    /// Continue an interrupted or killed run from its record; the result is bitwise the
    /// one an uninterrupted run gives.
    #[command(after_help = "Example:\n  noiselab resume runs/fashion_mnist_quick-20261130-120000")]
    Resume {
        #[arg(value_name = "RUN", help = RUN_HELP)]
        run: PathBuf,
        #[command(flatten)]
        display: Display,
    },
    /// Follow a run another process is writing, or replay a finished one, in the
    /// dashboard (never writes to a run being written); or a whole sweep: its points'
    /// states and, per dynamics, the mean ± 95 % CI over seeds.
    #[command(
        after_help = "Given a sweep directory (it has sweep.json): a table of the points (↑ ↓ to choose, Enter to open one in the run dashboard, q there to come back) over a chart of the selected metric (m), per dynamics the mean over the finished and running points with its 95 % t band, one settings group at a time (g).\n\nExamples:\n  noiselab watch runs/fashion_mnist-20261130-120000   (in another terminal or over SSH)\n  noiselab watch runs/fashion_mnist-sweep-20261130-120000"
    )]
    Watch {
        #[arg(
            value_name = "RUN|SWEEP",
            help = "The run directory (e.g. runs/toy2d-20261130-120000), as `noiselab run` prints it, or a sweep directory, as `noiselab sweep` prints it"
        )]
        run: PathBuf,
        /// Plain progress lines instead of the dashboard; exits when the run has ended,
        /// when its writer is gone (killed), or on Ctrl-C / SIGTERM. For a sweep: its
        /// counts per state and each running point's progress every 10 s, until no point
        /// runs or waits in Slurm's queue.
        #[arg(long)]
        headless: bool,
        /// Close the dashboard by itself once the run (every point of a sweep) has ended.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Summarise a run: status, and per dynamics progress and final metrics.
    #[command(
        after_help = "The table fits the terminal's width (or $COLUMNS); metric columns that do not fit continue below.\n\nExample:\n  noiselab inspect runs/toy2d-20261130-120000 --json | jq .dynamics.sgd"
    )]
    Inspect {
        #[arg(value_name = "RUN", help = RUN_HELP)]
        run: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Export a run's metrics as tidy CSV rows: dynamics,replicate,iteration,metric,value.
    #[command(
        after_help = "Example:\n  noiselab export runs/fashion_mnist_quick-20261130-120000 -o metrics.csv"
    )]
    Export {
        #[arg(value_name = "RUN", help = RUN_HELP)]
        run: PathBuf,
        /// CSV (the default, and so far the only format).
        #[arg(long)]
        csv: bool,
        /// Write here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Rebuild run.h5 and summary.json from the run's journal (after a crash).
    #[command(after_help = "Example:\n  noiselab repair runs/toy2d-20261130-120000")]
    Repair {
        #[arg(value_name = "RUN", help = RUN_HELP)]
        run: PathBuf,
        /// For a journal damaged mid-file: keep its intact records (the whole file is
        /// kept as journal.bin.damaged) and rebuild from them.
        #[arg(long)]
        truncate: bool,
    },
    /// Validate a config and print it resolved (defaults and overrides applied).
    #[command(
        after_help = "Example:\n  noiselab check fashion_mnist_quick --set fashion_mnist.iterations=2000"
    )]
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run one config over many seeds (and a grid of settings), here or as a Slurm job
    /// array; `sweep status` and `sweep resume` follow and continue it.
    #[command(after_help = cli::sweep::AFTER_HELP)]
    Sweep(Box<cli::sweep::SweepArgs>),
    /// Check a device: every operation of the network experiments on candle (cuda, or
    /// candle-cpu as a dry run) against the CPU kernels in f64, with its time
    /// (scripts/gpu-check.sh runs it beside PyTorch).
    DeviceCheck(Box<cli::device_check::DeviceCheckArgs>),
    /// Statistics over seeds: per dynamics and metric, mean ± 95 % CI at the last
    /// iteration and over a window, paired differences to a baseline and a sign test.
    #[command(
        after_help = "Runs are grouped by what their configs set differently (a sweep's grid); the seed never counts. Collapsed and diverged trajectories are counted, and the statistics are given with and without them.\n\nExamples:\n  noiselab compare runs/fashion_mnist-sweep-20261130-120000 --window 4000..5000\n  noiselab compare runs/a runs/b runs/c --baseline sgd --metric test_accuracy --csv > stats.csv"
    )]
    Compare {
        /// A sweep directory, or run directories.
        #[arg(value_name = "SWEEP|RUN", required = true)]
        paths: Vec<PathBuf>,
        /// The dynamics each other one is compared with, seed by seed (`none`: no pairing).
        #[arg(long, default_value = "gd")]
        baseline: String,
        /// Also average each metric over these iterations (A..B, both included; the record's numbering).
        #[arg(long, value_name = "A..B")]
        window: Option<String>,
        /// Only this metric (repeatable; keys as in `noiselab export`).
        #[arg(long = "metric", value_name = "KEY")]
        metrics: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Tidy CSV, one line per group, metric, statistic, dynamics and subset.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// List the built-in presets.
    Presets,
}

fn run_after_help() -> String {
    format!(
        "Presets (`noiselab check NAME` prints one in full):\n{}\nExamples:\n  \
         noiselab run fashion_mnist_quick\n  \
         noiselab run configs/toy2d.toml --set toy2d.seeds=1000 --headless\n  \
         noiselab run fashion_mnist --out runs/long --threads 2",
        config::presets_text()
    )
}

impl ConfigArgs {
    /// The config with `--threads` and `--data-dir` turned into their overrides.
    fn load(&self) -> noiselab::Result<LoadedConfig> {
        let mut overrides = self.overrides.clone();
        if let Some(t) = self.threads {
            overrides.push(format!("threads={t}"));
        }
        if let Some(d) = self.device {
            overrides.push(format!("device=\"{d}\""));
        }
        if let Some(o) = data_dir_override(&self.config, &overrides, self.data_dir.as_deref())? {
            overrides.push(o);
        }
        Ok(config::load(&self.config, &overrides)?)
    }
}

fn main() -> ExitCode {
    // Exact HVPs need candle's double backprop, which candle reads from the environment
    // once per thread (src/models/network.rs). Set here, before any thread starts.
    if std::env::var_os("CANDLE_GRAD_DO_NOT_DETACH").is_none() {
        std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            out,
            runs_dir,
            display,
        } => config
            .load()
            .and_then(|loaded| run(&loaded, out.as_deref(), &runs_dir, &display)),
        Command::Resume { run, display } => {
            run_dir::check_run_arg(&run, true).and_then(|()| resume(&run, &display))
        }
        Command::Watch {
            run,
            headless,
            exit_when_done,
        } if run.join(noiselab::sweep::manifest::FILE_NAME).is_file() => {
            // A point opens in the run dashboard; leaving it comes back to the sweep.
            let open = |point: &Path| {
                run_dir::check_run_arg(point, false)
                    .and_then(|()| heal(point))
                    .and_then(|()| watch(point, false, false))
                    .map(|_| ())
            };
            tui::sweep::watch(&run, headless, exit_when_done, &open).map(|()| ExitCode::SUCCESS)
        }
        Command::Watch {
            run,
            headless,
            exit_when_done,
        } => run_dir::check_run_arg(&run, false)
            .and_then(|()| heal(&run))
            .and_then(|()| watch(&run, headless, exit_when_done)),
        Command::Inspect { run, json } => run_dir::check_run_arg(&run, false)
            .and_then(|()| heal(&run))
            .and_then(|()| view::open(&run))
            .and_then(|v| {
                if json {
                    out(&format!(
                        "{}\n",
                        serde_json::to_string_pretty(&v.json()).expect("JSON values serialize")
                    ))
                } else {
                    out(&v.table(terminal_width()))
                }
            }),
        Command::Export {
            run,
            csv: _,
            output,
        } => run_dir::check_run_arg(&run, false)
            .and_then(|()| heal(&run))
            .and_then(|()| export(&run, output.as_deref())),
        Command::Repair { run, truncate } => {
            run_dir::check_run_arg(&run, true).and_then(|()| repair(&run, truncate))
        }
        Command::Check { config } => config.load().map(|loaded| {
            print!("# {}\n{}", loaded.source, loaded.resolved_toml);
            ExitCode::SUCCESS
        }),
        Command::Sweep(args) => cli::sweep::main(*args),
        Command::DeviceCheck(args) => cli::device_check::main(*args),
        Command::Compare {
            paths,
            baseline,
            window,
            metrics,
            json,
            csv,
        } => compare(&paths, &baseline, window.as_deref(), metrics, json, csv),
        Command::Presets => {
            print!(
                "{}\nRun one with `noiselab run NAME`; `noiselab check NAME` prints its settings.\n",
                config::presets_text()
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e @ (Error::Config(_) | Error::Data { .. } | Error::Usage(_) | Error::Device(_))) => {
            say(&format!("error: {e}"));
            ExitCode::from(2)
        }
        Err(e) => {
            say(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// `--data-dir DIR` as the override of the experiment's data directory key.
fn data_dir_override(
    config: &str,
    overrides: &[String],
    dir: Option<&Path>,
) -> noiselab::Result<Option<String>> {
    let Some(dir) = dir else { return Ok(None) };
    let loaded = config::load(config, overrides)?;
    let experiment = loaded.config.experiment.experiment();
    let Some(key) = experiment.data_dir_key() else {
        let readers: Vec<&str> = config::Settings::KEYS
            .iter()
            .copied()
            .filter(|k| {
                // Each experiment with its defaults: does it read a dataset?
                let defaults = toml::Value::Table(toml::Table::new());
                config::Settings::parse(k, defaults)
                    .and_then(Result::ok)
                    .is_some_and(|s| s.experiment().data_dir_key().is_some())
            })
            .collect();
        return Err(Error::Config(config::ConfigError {
            source: loaded.source,
            key: Some("--data-dir".into()),
            problem: format!(
                "experiment \"{}\" reads no dataset; --data-dir applies to {}",
                loaded.config.experiment.key(),
                readers.join(" and ")
            ),
        }));
    };
    let value = toml::Value::String(dir.display().to_string());
    Ok(Some(format!("{key}={value}")))
}

/// Rewrites a finished run's damaged or missing run.h5 / summary.json from its journal,
/// saying so on stderr (`record::integrity`).
fn heal(dir: &Path) -> noiselab::Result<()> {
    for line in integrity::heal(dir)? {
        say(&format!("{}: {line}", dir.display()));
    }
    Ok(())
}

/// `repair`: run.h5 and summary.json from the journal; with `truncate`, a journal
/// damaged mid-file is first cut back to its intact records.
fn repair(dir: &Path, truncate: bool) -> noiselab::Result<ExitCode> {
    if truncate {
        match journal::truncate_damaged(&dir.join(journal::FILE_NAME))? {
            Some((kept, copy)) => say(&format!(
                "journal.bin cut back to its {kept} intact records; the whole damaged file is kept as {}",
                copy.display()
            )),
            None => say("journal.bin is not damaged: nothing to cut"),
        }
    }
    let (_, status) = recorder::repair(dir)?;
    println!(
        "rebuilt {} and summary.json from journal.bin (status {})",
        dir.join("run.h5").display(),
        status.key()
    );
    if status == RunStatus::Interrupted {
        println!("continue the run with `noiselab resume {}`", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Columns for `inspect`: the terminal's, else `$COLUMNS`, else 100.
fn terminal_width() -> usize {
    if std::io::stdout().is_terminal() {
        if let Ok((w, _)) = ratatui::crossterm::terminal::size() {
            return usize::from(w).max(40);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&w| w >= 40)
        .unwrap_or(100)
}

/// Text on stdout; a reader that closed the pipe (`| head`) has what it wanted.
pub fn out(text: &str) -> noiselab::Result<ExitCode> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A line on stderr that may be gone (hung-up terminal): best effort, never a panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn run(
    loaded: &LoadedConfig,
    out: Option<&Path>,
    runs_dir: &Path,
    display: &Display,
) -> noiselab::Result<ExitCode> {
    let config = &loaded.config;
    // Missing or corrupt data is the user's to fix: say so before a run directory exists.
    config.experiment.experiment().preflight(config)?;
    let dir = match out {
        Some(dir) => run_dir::create_exact(dir)?,
        None => run_dir::create_timestamped(
            runs_dir,
            config.name.as_deref().unwrap_or(config.experiment.key()),
        )?,
    };
    let created = run_dir::utc_now();
    let setup = recorder::new_run(loaded, &dir, &created)?;
    execute(loaded, setup, Prior::default(), vec![], &created, display)
}

fn resume(dir: &Path, display: &Display) -> noiselab::Result<ExitCode> {
    let path = dir.join(journal::FILE_NAME);
    let contents = journal::read(&path)?;
    let prior = state::RecordState::from_journal(&contents, &path)?;
    if prior.status == RunStatus::Finished {
        // Killed after its last record but before run.h5 was in place, or a derived file
        // damaged since: put that right from the journal.
        let healed = integrity::heal(dir)?;
        for line in &healed {
            println!("{}: the run had finished; {line}", dir.display());
        }
        if healed.is_empty() {
            println!(
                "{}: the run already finished; nothing to resume",
                dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = state::loaded_config(&prior.header, &path)?;
    let done = prior.prior();
    let checkpointed = prior
        .checkpoints
        .keys()
        .filter(|k| !done.finished.contains(k))
        .count();
    let prior_events: Vec<Event> = contents.events().cloned().collect();
    say(&format!(
        "resuming {}: {} trajectory(ies) already recorded, {} to run ({} from a checkpoint)",
        dir.display(),
        done.finished.len(),
        expected_trajectories(&loaded).saturating_sub(done.finished.len()),
        checkpointed
    ));
    let setup = recorder::resume(dir)?;
    let created = setup.state.header.created.clone();
    execute(&loaded, setup, done, prior_events, &created, display)
}

fn expected_trajectories(loaded: &LoadedConfig) -> usize {
    let config = &loaded.config;
    config.experiment.experiment().outline(config).replicates * config.dynamics.len()
}

/// Runs the workers with the recorder and a display, then prints the result.
fn execute(
    loaded: &LoadedConfig,
    setup: recorder::Setup,
    done: Prior,
    prior: Vec<Event>,
    created: &str,
    display: &Display,
) -> noiselab::Result<ExitCode> {
    let dir = setup.run_dir.clone();
    let interactive = !display.headless && !display.quiet && std::io::stdout().is_terminal();
    let interrupted = signals::install().map_err(|e| Error::io("signal handlers", e))?;
    let (events, receivers) = events::channel(!display.quiet);
    let recorder = recorder::spawn(setup, receivers.recorder);
    let info = runner::run_info(loaded, &dir, created);
    let handle = runner::start(loaded, info, events, done);

    let mut dashboard_error = None;
    match receivers.display {
        Some(rx) if interactive => {
            let options = DashboardOptions {
                exit_when_done: display.exit_when_done,
                watching: None,
            };
            match dashboard(&rx, prior, &interrupted, &options, Some(&handle)) {
                Ok(stats) if display.ui_stats => say(&stats.to_string()),
                Ok(_) => {}
                Err(e) => dashboard_error = Some(e),
            }
        }
        Some(rx) => {
            headless::run(
                &rx,
                &interrupted,
                &headless::Leave::Running {
                    stop: &|| handle.request_stop(),
                },
            );
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
    let _ = write!(stdout, "{}", recorded.results);
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
            say(&format!(
                "run interrupted: the record holds what had finished; continue with `noiselab resume {}`",
                recorded.run_dir.display()
            ));
            ExitCode::from(130)
        }
        RunStatus::Failed | RunStatus::Running => {
            say(&format!(
                "run failed: the reasons are in {}",
                recorded.run_dir.join("events.log").display()
            ));
            ExitCode::FAILURE
        }
    })
}

fn compare(
    paths: &[PathBuf],
    baseline: &str,
    window: Option<&str>,
    metrics: Vec<String>,
    json: bool,
    csv: bool,
) -> noiselab::Result<ExitCode> {
    use noiselab::compare;
    let window = window.map(compare::parse_window).transpose()?;
    let (dirs, notes) = compare::collect(paths)?;
    for d in &dirs {
        heal(d)?;
    }
    let mut request = compare::Request {
        metrics,
        window,
        baseline: (baseline != "none").then(|| baseline.to_string()),
    };
    let result = match compare::compare(&dirs, &request, notes.clone()) {
        // The default baseline where the runs have no GD: no pairing, not an error.
        Err(Error::Usage(_)) if baseline == "gd" && request.baseline.is_some() => {
            request.baseline = None;
            compare::compare(&dirs, &request, notes)?
        }
        other => other?,
    };
    if json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&result).expect("JSON serializes")
        ))
    } else if csv {
        let mut text = vec![];
        result
            .write_csv(&mut text)
            .map_err(|e| Error::io("CSV", e))?;
        out(&String::from_utf8_lossy(&text))
    } else {
        out(&result.text())
    }
}

fn export(dir: &Path, output: Option<&Path>) -> noiselab::Result<ExitCode> {
    let v = view::open(dir)?;
    match output {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path).map_err(|e| Error::io(path, e))?,
            );
            v.write_csv(&mut file)
                .and_then(|_| file.flush())
                .map_err(|e| Error::io(path, e))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is the reader's choice, not an error.
            match v.write_csv(&mut out) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Error::io("standard output", e))
                }
                _ => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows `dir/journal.bin` (read-only) into the dashboard or progress lines.
fn watch(dir: &Path, headless_mode: bool, exit_when_done: bool) -> noiselab::Result<ExitCode> {
    let path = dir.join(journal::FILE_NAME);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "{}: it has run.h5 but no journal.bin, and watch replays the journal; read its \
             record with `noiselab inspect` or `noiselab export`",
            dir.display()
        )));
    }
    let mut follower = journal::Follower::new(&path);
    let mut alive = journal::writer_alive(&path);
    // Fails here, before any thread starts, on a foreign or newer journal.
    let first = follower.poll()?;
    let (sender, receivers) = events::channel(true);
    drop(receivers.recorder);
    let rx = receivers.display.expect("asked for a display");
    let stop = Arc::new(AtomicBool::new(false));
    let follow_stop = stop.clone();
    let watch_info = Arc::new(Mutex::new(WatchInfo {
        dir: dir.to_path_buf(),
        ..WatchInfo::default()
    }));
    let shared = watch_info.clone();
    let feeder = std::thread::Builder::new()
        .name("follower".into())
        .spawn(move || -> noiselab::Result<()> {
            let mut batch = first;
            loop {
                // An end followed by a resumption in the same batch is not the end.
                let last_resume = batch
                    .iter()
                    .rposition(|r| matches!(r.body, Body::Resumed { .. }));
                // The times first, so the events arrive to a clock that knows them.
                if let Ok(mut w) = shared.lock() {
                    for r in &batch {
                        if matches!(r.body, Body::Header(_) | Body::Event(Event::RunStarted(_))) {
                            w.attempt_started_ms = Some(r.unix_ms);
                        }
                        w.last_record_ms = Some(r.unix_ms);
                    }
                }
                for (i, r) in batch.into_iter().enumerate() {
                    match r.body {
                        Body::Event(Event::RunEnded { .. })
                            if last_resume.is_some_and(|j| i < j) => {}
                        Body::Event(e) => sender.send_in_order(e),
                        Body::Checkpoint { .. } | Body::Header(_) | Body::Resumed { .. } => {}
                    }
                }
                if let Ok(mut w) = shared.lock() {
                    w.writer_alive = alive;
                }
                if follow_stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
                // Whether the writer lives is asked before reading, and told after the
                // records are delivered: a reader told "gone" has every record.
                alive = journal::writer_alive(&path);
                batch = follower.poll()?;
            }
        })
        .expect("spawning the follower thread");
    let interrupted = signals::install().map_err(|e| Error::io("signal handlers", e))?;
    let interactive = !headless_mode && std::io::stdout().is_terminal();
    let result = if interactive {
        let options = DashboardOptions {
            exit_when_done,
            watching: Some(watch_info.clone()),
        };
        dashboard(&rx, vec![], &interrupted, &options, None)
            .map(|_| ())
            .map_err(|e| Error::Numerics(format!("the dashboard stopped: {e}")))
    } else {
        let gone = || {
            watch_info
                .lock()
                .is_ok_and(|w| w.writer_alive == Some(false))
        };
        let status = headless::run(
            &rx,
            &interrupted,
            &headless::Leave::Watching { writer_gone: &gone },
        );
        match status {
            RunStatus::Running if gone() => say(&format!(
                "the run in {} stopped without an end record and no process writes it (writer gone): continue it with `noiselab resume {}`",
                dir.display(),
                dir.display()
            )),
            RunStatus::Running => say("watch stopped before the run ended"),
            _ => {}
        }
        Ok(())
    };
    stop.store(true, Ordering::Relaxed);
    match feeder.join() {
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(Error::Numerics("the journal follower panicked".into())),
        Ok(Ok(())) => {}
    }
    result.map(|_| ExitCode::SUCCESS)
}

struct DashboardOptions {
    exit_when_done: bool,
    /// `watch`: what the follower learns of the journal.
    watching: Option<Arc<Mutex<WatchInfo>>>,
}

/// Runs the dashboard on the real terminal and restores it whatever happens (quit,
/// Ctrl-C, a signal, an error writing to a vanished terminal, a panic); stops the
/// workers (when there are any) and waits for them unless the run already ended.
fn dashboard(
    display: &events::DisplayReceiver,
    prior: Vec<Event>,
    interrupted: &AtomicBool,
    options: &DashboardOptions,
    workers: Option<&runner::RunHandle>,
) -> Result<UiStats, String> {
    // ratatui's init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let input_stop = Arc::new(AtomicBool::new(false));
    let inputs = input::spawn(input_stop.clone());
    let monochrome = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut app = App::new(monochrome);
    app.watching = options.watching.is_some();
    app.watch = options.watching.clone();
    for e in prior {
        app.apply(e);
    }
    let mut frames = FrameStats::default();
    let cpu0 = tui::thread_cpu_time();
    let wall0 = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Lets the end-to-end tests prove the terminal survives a panic in the UI.
        if let Some(ms) = std::env::var("NOISELAB_DEBUG_PANIC_AFTER_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
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
            options.exit_when_done,
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
    if let Some(handle) = workers.filter(|h| !h.is_done()) {
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
