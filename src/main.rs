//! The `noiselab` command line.

use clap::{Parser, Subcommand};
use noiselab::config::{self, ExperimentKind, LoadedConfig};
use noiselab::experiments::toy2d;
use noiselab::record::{self, run_dir};
use noiselab::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "noiselab",
    version,
    about = "Run GD, SGD and Langevin-type dynamics side by side and watch how the shape of their noise lets them escape sharp minima.",
    after_help = "Exit codes: 0 success, 1 run failure, 2 bad config or usage."
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
        /// No progress lines; only the result table and the run directory.
        #[arg(long, short)]
        quiet: bool,
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
        } => {
            if let Some(t) = threads {
                overrides.push(format!("threads={t}"));
            }
            config::load(&config, &overrides)
                .map_err(Error::from)
                .and_then(|loaded| run(&loaded, out.as_deref(), &runs_dir, quiet))
        }
        Command::Check { config, overrides } => config::load(&config, &overrides)
            .map(|loaded| print!("# {}\n{}", loaded.source, loaded.resolved_toml))
            .map_err(Error::from),
        Command::Presets => {
            for (name, text) in config::PRESETS {
                let summary = text.lines().next().unwrap_or("").trim_start_matches("# ");
                println!("{name:<12} {summary}");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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

fn run(
    loaded: &LoadedConfig,
    out: Option<&Path>,
    runs_dir: &Path,
    quiet: bool,
) -> noiselab::Result<()> {
    let config = &loaded.config;
    let dir = match out {
        Some(dir) => run_dir::create_exact(dir)?,
        None => run_dir::create_timestamped(
            runs_dir,
            config.name.as_deref().unwrap_or(config.experiment.key()),
        )?,
    };
    let created = run_dir::utc_now();
    match config.experiment {
        ExperimentKind::Toy2d => {
            let toy = config.toy2d();
            if !quiet {
                eprintln!(
                    "toy2d: {} seeds × {} dynamics × {} iterations on {} threads → {}",
                    toy.seeds,
                    config.dynamics.len(),
                    toy.iterations,
                    config.threads(),
                    dir.display()
                );
            }
            let progress = Progress::new(quiet);
            let outcome = toy2d::run(config, &|done, total| progress.report(done, total))?;
            record::hdf5_toy::write(&dir.join("run.h5"), loaded, &outcome, &created)?;
            record::summary::write(&dir.join("summary.json"), &record::summary::toy2d(&outcome))?;
            println!(
                "Success rate of escaping to the flat basin (Fig. 1b), {} seeds:",
                toy.seeds
            );
            print!("{}", outcome.table());
        }
    }
    println!("run directory: {}", dir.display());
    Ok(())
}

/// Plain progress lines on stderr, one per 10 % of the jobs.
struct Progress {
    quiet: bool,
    start: Instant,
    last_decile: Mutex<usize>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            start: Instant::now(),
            last_decile: Mutex::new(0),
        }
    }

    fn report(&self, done: usize, total: usize) {
        if self.quiet {
            return;
        }
        let decile = done * 10 / total.max(1);
        let mut last = self.last_decile.lock().unwrap_or_else(|p| p.into_inner());
        if decile > *last {
            *last = decile;
            let elapsed = self.start.elapsed().as_secs_f64();
            let eta = elapsed * (total - done) as f64 / done.max(1) as f64;
            eprintln!(
                "  {done}/{total} runs ({}%), {elapsed:.1} s elapsed, ETA {eta:.1} s",
                decile * 10
            );
        }
    }
}
