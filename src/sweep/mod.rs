//! Sweeps: one config over many seeds and a grid of settings, one ordinary run
//! directory per point beside a manifest (`sweep.json`), executed here (`local`) or as
//! a Slurm job array (`slurm`). A point is a run like any other: inspect, resume,
//! watch and export work on it; `compare` reads the points together.

pub mod local;
pub mod manifest;
pub mod slurm;
pub mod spec;

use crate::config::{self, LoadedConfig};
use crate::record::run_dir;
use crate::{Error, Result};
use manifest::{point_state, Executor, Manifest, Point, PointState};
use std::path::{Path, PathBuf};

/// What `noiselab sweep CONFIG …` was asked for.
pub struct Request {
    pub config: String,
    /// `--set` (and `--data-dir`) for every point.
    pub overrides: Vec<String>,
    pub seeds: String,
    pub grid: Vec<String>,
    pub name: Option<String>,
    pub out: Option<PathBuf>,
    pub runs_dir: PathBuf,
    pub executor: Executor,
}

/// Checks everything (seeds, grid keys and values against the config, the data, Slurm's
/// presence), then creates the sweep directory with its manifest and base config.
pub fn create(request: &Request) -> Result<(PathBuf, Manifest)> {
    let seeds = spec::parse_seeds(&request.seeds)?;
    let grid = request
        .grid
        .iter()
        .map(|g| spec::parse_grid(g))
        .collect::<Result<Vec<_>>>()?;
    for (i, axis) in grid.iter().enumerate() {
        if grid[..i].iter().any(|a| a.key == axis.key) {
            return Err(Error::Usage(format!(
                "--grid {}: this key has two --grid axes; give its values in one",
                axis.key
            )));
        }
    }
    let points = seeds.len() * grid.iter().map(|a| a.values.len()).product::<usize>();
    if points > spec::MAX_POINTS {
        return Err(Error::Usage(format!(
            "{points} points ({} seeds × the grid) is more than one sweep takes ({})",
            seeds.len(),
            spec::MAX_POINTS
        )));
    }
    if matches!(request.executor, Executor::Slurm(_)) {
        slurm::require_sbatch()?;
    }
    let base = config::load(&request.config, &request.overrides)?;
    // Every grid value, on the config: an unknown key or a bad value is named now, not
    // by a point hours in.
    for combination in spec::combinations(&grid) {
        let overrides: Vec<String> = request
            .overrides
            .iter()
            .cloned()
            .chain(combination.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        config::load(&request.config, &overrides).map_err(|e| grid_error(e, &combination))?;
    }
    base.config
        .experiment
        .experiment()
        .preflight(&base.config)?;
    let name = request
        .name
        .clone()
        .or_else(|| base.config.name.clone())
        .unwrap_or_else(|| base.config.experiment.key().to_string());
    let dir = match &request.out {
        Some(out) => {
            if out.join(manifest::FILE_NAME).exists() {
                return Err(Error::Usage(format!(
                    "--out {}: this directory already holds a sweep; continue it with `noiselab sweep resume {}`",
                    out.display(),
                    out.display()
                )));
            }
            run_dir::create_exact(out)?
        }
        None => run_dir::create_timestamped(&request.runs_dir, &format!("{name}-sweep"))?,
    };
    let base_path = dir.join(manifest::CONFIG_FILE);
    let text = format!(
        "# The base config of this sweep: {} with {:?}, resolved. Each point adds its seed and grid values.\n{}",
        request.config, request.overrides, base.resolved_toml
    );
    std::fs::write(&base_path, text).map_err(|e| Error::io(&base_path, e))?;
    let mut manifest = Manifest::new(
        name,
        request.config.clone(),
        base.config.experiment.key().to_string(),
        request.overrides.clone(),
        seeds,
        grid,
        request.executor.clone(),
    );
    for point in &mut manifest.points {
        let loaded = point.load_config(&dir)?;
        point.shared_key = loaded
            .config
            .experiment
            .experiment()
            .shared_work_key(&loaded.config);
    }
    for sub in [manifest::LOG_DIR, manifest::CACHE_DIR] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    manifest.save(&dir)?;
    Ok((dir, manifest))
}

fn grid_error(e: config::ConfigError, combination: &[(String, String)]) -> Error {
    let given: Vec<String> = combination
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Error::Config(config::ConfigError {
        source: format!("--grid ({})", given.join(", ")),
        key: e.key,
        problem: e.problem,
    })
}

/// A point's config for running it, with `threads` worker threads.
pub fn point_config(dir: &Path, point: &Point, threads: Option<usize>) -> Result<LoadedConfig> {
    let base = dir.join(manifest::CONFIG_FILE);
    let mut overrides = point.overrides(dir);
    if let Some(t) = threads {
        overrides.push(format!("threads={t}"));
    }
    Ok(config::load(&base.display().to_string(), &overrides)?)
}

/// One point as `sweep status` shows it.
#[derive(Clone, Debug)]
pub struct PointStatus {
    pub index: usize,
    pub state: PointState,
    /// What the Slurm queue says about the point's task, if it is queued or running.
    pub queue: Option<String>,
    /// Where it stands (phase, progress, ETA) while it runs.
    pub progress: Option<String>,
    /// Why its record could not be read, if it could not.
    pub problem: Option<String>,
}

impl PointStatus {
    /// `queued` (waiting in Slurm's queue) refines pending; a task Slurm runs whose
    /// record does not exist yet is running.
    pub fn label(&self) -> &'static str {
        match (self.state, self.queue.as_deref()) {
            (PointState::Pending, Some("PENDING" | "CONFIGURING")) => "queued",
            (PointState::Pending | PointState::Killed, Some("RUNNING" | "COMPLETING")) => "running",
            (s, _) => s.key(),
        }
    }

    /// Whether `sweep resume` should run it again: not finished, and neither running
    /// nor waiting in Slurm's queue.
    pub fn resumable(&self) -> bool {
        self.state.resumable() && self.queue.is_none()
    }
}

/// Every point's state, and notes (e.g. the queue could not be asked).
pub fn status(dir: &Path, manifest: &Manifest) -> (Vec<PointStatus>, Vec<String>) {
    let mut notes = vec![];
    let jobs: Vec<String> = manifest
        .submissions
        .iter()
        .map(|s| s.job_id.clone())
        .collect();
    let queue = match slurm::queue(&jobs) {
        Ok(q) => q,
        Err(why) => {
            notes.push(format!(
                "Slurm's queue could not be asked ({why}): states are from the records alone"
            ));
            Default::default()
        }
    };
    let points = manifest
        .points
        .iter()
        .map(|p| {
            let (state, problem, progress) = match point_state(&p.run_dir(dir)) {
                Ok((state, record)) => {
                    let progress = record
                        .filter(|_| state == PointState::Running)
                        .and_then(|r| {
                            let snap = r.progress.snapshot(r.progress.now());
                            (!snap.tracks.is_empty())
                                .then(|| crate::progress::summary(&snap, "trajectories"))
                        });
                    (state, None, progress)
                }
                Err(e) => (PointState::Failed, Some(e.to_string()), None),
            };
            PointStatus {
                index: p.index,
                state,
                queue: queue.get(&p.index).cloned(),
                progress,
                problem,
            }
        })
        .collect();
    (points, notes)
}

/// The status table: one line a point, then the counts.
pub fn status_text(dir: &Path, manifest: &Manifest, points: &[PointStatus]) -> String {
    let mut out = format!(
        "sweep {} ({}): {} points = {} seed(s) × {} setting(s); {}\n",
        dir.display(),
        manifest.experiment,
        manifest.points.len(),
        manifest.seeds.len(),
        manifest.points.len() / manifest.seeds.len().max(1),
        match &manifest.executor {
            Executor::Local { jobs, threads } =>
                format!("local, {jobs} at a time × {threads} threads"),
            Executor::Slurm(o) => format!(
                "Slurm job array{}",
                if manifest.submissions.is_empty() {
                    " (not submitted)".to_string()
                } else {
                    format!(
                        " {}",
                        manifest
                            .submissions
                            .iter()
                            .map(|s| s.job_id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } + &format!(", {} cpus a task", o.cpus_per_task)
            ),
        }
    );
    let width = manifest
        .points
        .iter()
        .map(|p| p.dir.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "  {:<width$}  {:>6}  {:<11}  detail\n",
        "point", "seed", "state"
    ));
    for s in points {
        let p = &manifest.points[s.index];
        let detail = s
            .problem
            .clone()
            .or_else(|| s.progress.clone())
            .or_else(|| s.queue.as_ref().map(|q| format!("Slurm: {q}")))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<width$}  {:>6}  {:<11}  {}\n",
            p.dir,
            p.seed,
            s.label(),
            detail.lines().next().unwrap_or("")
        ));
    }
    let mut counts = std::collections::BTreeMap::new();
    for s in points {
        *counts.entry(s.label()).or_insert(0usize) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    out.push_str(&format!("{}\n", counts.join(", ")));
    out
}
