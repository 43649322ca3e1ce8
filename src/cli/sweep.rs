//! `noiselab sweep …`: arguments, and what each action does with the library's
//! `sweep` module.

use crate::{say, Display};
use clap::{Args, Subcommand};
use noiselab::sweep::manifest::{Executor, Manifest, SlurmOptions, Submission};
use noiselab::sweep::{self, local, slurm};
use noiselab::{record::run_dir, signals, Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const AFTER_HELP: &str = "Seeds: `0..9` is seeds 0 to 9 (both included), `3` one seed, `0,2,5` a list. The seed changes the training sample, the corrupted labels, the initialisation and every noise stream.

Points that share the GD phase (same seed and data, GD settings) compute θ_GD once, in the sweep's cache/.

Examples:
  noiselab sweep fashion_mnist_quick --seeds 0..9                 ten seeds, here
  noiselab sweep toy2d --seeds 0..4 --grid toy2d.eta=0.05,0.1     5 seeds × 2 settings
  noiselab sweep fashion_mnist --seeds 0..9 --slurm --time 6:00:00 --cpus-per-task 4
  noiselab sweep status runs/fashion_mnist-sweep-20261130-120000
  noiselab sweep resume runs/fashion_mnist-sweep-20261130-120000  points that did not finish
  noiselab compare runs/fashion_mnist-sweep-20261130-120000 --baseline gd";

const SWEEP_HELP: &str = "The sweep directory, as `noiselab sweep` prints it";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// A config file or a built-in preset's name (`noiselab presets`).
    #[arg(value_name = "CONFIG")]
    config: Option<String>,
    /// Seeds to run: `0..9` (both ends included), `3`, or `0,2,5`.
    #[arg(long, value_name = "SEEDS")]
    seeds: Option<String>,
    /// Override a config key for every point (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// A grid axis: every point runs once per value (repeatable: the grid is their product).
    #[arg(long = "grid", value_name = "KEY=V1,V2,…")]
    grid: Vec<String>,
    /// Dataset directory (same as --set fashion_mnist.data_dir="DIR", or cifar10.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The sweep's name (default: the config's name or experiment).
    #[arg(long)]
    name: Option<String>,
    /// Sweep directory to create (default: <runs-dir>/<name>-sweep-<UTC time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where timestamped sweep directories are created.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
}

/// How the points are run: here, or as a Slurm job array.
#[derive(Args, Clone, Default)]
pub struct ExecArgs {
    /// Run the points on this machine, J at a time (the default; J defaults to the cores / 2).
    #[arg(long, value_name = "J", num_args = 0..=1, default_missing_value = "0", conflicts_with = "slurm")]
    local: Option<usize>,
    /// Worker threads of each run (local: default cores / J; Slurm: --cpus-per-task).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Submit the points as a Slurm job array (sbatch), one task a point.
    #[arg(long)]
    slurm: bool,
    /// Slurm: at most this many tasks at once (--array=…%J); default no limit.
    #[arg(long, value_name = "J", requires = "slurm")]
    array_limit: Option<usize>,
    /// Slurm: CPUs of each task (its runs' threads); default 2.
    #[arg(long, value_name = "N", requires = "slurm")]
    cpus_per_task: Option<usize>,
    /// Slurm: the partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// Slurm: each task's time limit (e.g. 6:00:00); a task killed by it resumes from its checkpoint.
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// Slurm: generic resources of each task (e.g. gpu:1).
    #[arg(long, requires = "slurm")]
    gres: Option<String>,
    /// Slurm: any other sbatch option, verbatim (repeatable), e.g. --sbatch-arg=--account=ml.
    #[arg(
        long = "sbatch-arg",
        value_name = "OPTION",
        requires = "slurm",
        allow_hyphen_values = true
    )]
    sbatch_args: Vec<String>,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Where each point stands: pending, queued, running, finished, interrupted, killed or failed.
    #[command(
        after_help = "States come from each point's record and, for Slurm, from squeue (not sacct).\n\nExample:\n  noiselab sweep status runs/fashion_mnist-sweep-20261130-120000 --json | jq '.points[].state'"
    )]
    Status {
        #[arg(value_name = "SWEEP", help = SWEEP_HELP)]
        sweep: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run again the points that did not finish (failed, interrupted, killed, never
    /// started); each continues from its checkpoints.
    #[command(
        after_help = "With neither --local nor --slurm, the sweep's own executor is used again.\n\nExamples:\n  noiselab sweep resume runs/fashion_mnist-sweep-20261130-120000\n  noiselab sweep resume runs/fashion_mnist-sweep-20261130-120000 --slurm --time 2:00:00"
    )]
    Resume {
        #[arg(value_name = "SWEEP", help = SWEEP_HELP)]
        sweep: PathBuf,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Run one point (what a local job or a Slurm task runs): a new run, or its resume.
    #[command(hide = true)]
    Point {
        sweep: PathBuf,
        index: usize,
        #[arg(long)]
        threads: Option<usize>,
    },
}

impl ExecArgs {
    /// The executor asked for, if any was.
    fn executor(&self) -> Option<Executor> {
        if self.slurm {
            return Some(Executor::Slurm(SlurmOptions {
                array_limit: self.array_limit.unwrap_or(0),
                cpus_per_task: self.cpus_per_task.or(self.threads).unwrap_or(2).max(1),
                partition: self.partition.clone(),
                time: self.time.clone(),
                gres: self.gres.clone(),
                extra: self.sbatch_args.clone(),
            }));
        }
        if self.local.is_some() || self.threads.is_some() {
            let (jobs, threads) = local::default_split(local::available_cores(), self.local);
            return Some(Executor::Local {
                jobs,
                threads: self.threads.unwrap_or(threads).max(1),
            });
        }
        None
    }
}

pub fn main(args: SweepArgs) -> Result<ExitCode> {
    match args.action {
        Some(SweepAction::Status { sweep, json }) => status(&sweep, json),
        Some(SweepAction::Resume { sweep, exec }) => resume(&sweep, &exec),
        Some(SweepAction::Point {
            sweep,
            index,
            threads,
        }) => point(&sweep, index, threads),
        None => create(args),
    }
}

fn create(args: SweepArgs) -> Result<ExitCode> {
    let config = args.config.ok_or_else(|| {
        Error::Usage(
            "give a config: noiselab sweep CONFIG --seeds 0..9 (or sweep status|resume SWEEP)"
                .into(),
        )
    })?;
    let seeds = args.seeds.ok_or_else(|| {
        Error::Usage(format!(
            "give the seeds: noiselab sweep {config} --seeds 0..9 (both ends included), --seeds 3, or --seeds 0,2,5"
        ))
    })?;
    let mut overrides = args.overrides.clone();
    // Absolute: Slurm tasks start in whatever directory the cluster gives them.
    let data_dir = args
        .data_dir
        .map(|d| std::fs::canonicalize(&d).unwrap_or(d));
    if let Some(o) = crate::data_dir_override(&config, &overrides, data_dir.as_deref())? {
        overrides.push(o);
    }
    let executor = args.exec.executor().unwrap_or_else(|| {
        let (jobs, threads) = local::default_split(local::available_cores(), None);
        Executor::Local { jobs, threads }
    });
    let (dir, manifest) = sweep::create(&sweep::Request {
        config,
        overrides,
        seeds,
        grid: args.grid,
        name: args.name,
        out: args.out,
        runs_dir: args.runs_dir,
        executor,
    })?;
    println!(
        "sweep {}: {} points ({} seed(s) × {} setting(s)) of {}",
        dir.display(),
        manifest.points.len(),
        manifest.seeds.len(),
        manifest.points.len() / manifest.seeds.len().max(1),
        manifest.config
    );
    let all: Vec<usize> = (0..manifest.points.len()).collect();
    execute(&dir, manifest, &all)
}

/// Runs (local) or submits (Slurm) `points` with the manifest's executor.
fn execute(dir: &Path, mut manifest: Manifest, points: &[usize]) -> Result<ExitCode> {
    match manifest.executor.clone() {
        Executor::Local { jobs, threads } => {
            println!(
                "running here, {jobs} at a time with {threads} threads each; each point's output is in {}/",
                dir.join(sweep::manifest::LOG_DIR).display()
            );
            let stop = signals::install().map_err(|e| Error::io("signal handlers", e))?;
            let ended = local::run(
                dir,
                &manifest,
                points,
                (jobs, threads),
                &stop,
                &mut std::io::stdout(),
            )?;
            let (statuses, _) = sweep::status(dir, &manifest);
            print!("{}", sweep::status_text(dir, &manifest, &statuses));
            let unfinished = statuses.iter().filter(|s| s.resumable()).count();
            if stop.load(std::sync::atomic::Ordering::Relaxed) || ended.len() < points.len() {
                say(&format!(
                    "sweep interrupted: {unfinished} point(s) not finished; continue with `noiselab sweep resume {}`",
                    dir.display()
                ));
                return Ok(ExitCode::from(130));
            }
            println!(
                "compare the points with `noiselab compare {}`",
                dir.display()
            );
            if unfinished > 0 {
                say(&format!(
                    "{unfinished} point(s) did not finish (their logs say why); `noiselab sweep resume {}` runs them again",
                    dir.display()
                ));
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Executor::Slurm(options) => {
            let script = slurm::write_script(dir, &manifest, &options)?;
            let job_id = slurm::submit(&script, points, options.array_limit)?;
            manifest.submissions.push(Submission {
                job_id: job_id.clone(),
                points: points.to_vec(),
                submitted: run_dir::utc_now(),
            });
            manifest.save(dir)?;
            println!(
                "submitted Slurm job {job_id}: array {} of {} ({} cpus a task); task logs in {}/\n\
                 follow it with `noiselab sweep status {}` or `noiselab watch {}`",
                slurm::array_spec(points, options.array_limit),
                script.display(),
                options.cpus_per_task,
                dir.join(sweep::manifest::LOG_DIR).display(),
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn status(dir: &Path, json: bool) -> Result<ExitCode> {
    let manifest = Manifest::load(dir)?;
    let (points, notes) = sweep::status(dir, &manifest);
    for n in &notes {
        say(n);
    }
    if json {
        let list: Vec<serde_json::Value> = points
            .iter()
            .map(|s| {
                let p = &manifest.points[s.index];
                serde_json::json!({
                    "index": p.index, "dir": p.dir, "seed": p.seed, "settings": p.settings,
                    "state": s.label(), "queue": s.queue, "progress": s.progress, "problem": s.problem,
                })
            })
            .collect();
        let value = serde_json::json!({
            "sweep": dir.display().to_string(),
            "experiment": manifest.experiment,
            "executor": manifest.executor,
            "submissions": manifest.submissions,
            "points": list,
        });
        crate::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&value).expect("JSON serializes")
        ))
    } else {
        crate::out(&sweep::status_text(dir, &manifest, &points))
    }
}

fn resume(dir: &Path, exec: &ExecArgs) -> Result<ExitCode> {
    let mut manifest = Manifest::load(dir)?;
    let (points, notes) = sweep::status(dir, &manifest);
    for n in &notes {
        say(n);
    }
    let todo: Vec<usize> = points
        .iter()
        .filter(|s| s.resumable())
        .map(|s| s.index)
        .collect();
    if todo.is_empty() {
        print!("{}", sweep::status_text(dir, &manifest, &points));
        println!("nothing to resume: every point has finished or is running or queued");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(executor) = exec.executor() {
        manifest.executor = executor;
        manifest.save(dir)?;
    }
    if matches!(manifest.executor, Executor::Slurm(_)) {
        slurm::require_sbatch()?;
    }
    println!(
        "resuming {} of {} points of {}",
        todo.len(),
        manifest.points.len(),
        dir.display()
    );
    execute(dir, manifest, &todo)
}

/// One point: a new run in its directory, or the resume of what is there.
fn point(dir: &Path, index: usize, threads: Option<usize>) -> Result<ExitCode> {
    let manifest = Manifest::load(dir)?;
    let point = manifest.point(index)?;
    let run_dir = point.run_dir(dir);
    let display = Display {
        quiet: false,
        headless: true,
        exit_when_done: false,
        ui_stats: false,
    };
    println!(
        "sweep point {index} ({}): {} on {}",
        point.dir,
        point.describe(),
        hostname()
    );
    if run_dir.join(noiselab::record::journal::FILE_NAME).exists() {
        return crate::resume(&run_dir, &display);
    }
    let loaded = sweep::point_config(dir, point, threads)?;
    crate::run(&loaded, Some(&run_dir), Path::new("runs"), &display)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".into())
}
