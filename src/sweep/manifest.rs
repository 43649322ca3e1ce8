//! `sweep.json`: what a sweep is (its base config, seeds, grid and points) and how it
//! was executed (local jobs, or Slurm submissions). Each point is an ordinary run
//! directory beside it; a point's state is read from its own record, never stored here,
//! so the manifest cannot disagree with the runs.

use super::spec::GridAxis;
use crate::config::{self, LoadedConfig};
use crate::events::RunStatus;
use crate::record::{journal, state::RecordState};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "sweep.json";
/// The base config, resolved (defaults and the sweep's `--set` applied): every point is
/// it plus its seed and grid values, whatever happens to the original file later.
pub const CONFIG_FILE: &str = "config.toml";
/// Where runs of the sweep share work (θ_GD), keyed by what that work depends on.
pub const CACHE_DIR: &str = "cache";
/// Each point's output when the sweep runs it (local jobs and Slurm tasks alike).
pub const LOG_DIR: &str = "logs";
const KIND: &str = "noiselab-sweep";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kind: String,
    pub name: String,
    pub created: String,
    /// The config as given (file or preset name), for people; `config.toml` is what runs.
    pub config: String,
    pub experiment: String,
    /// The `--set` overrides (and `--data-dir`) the base config was resolved with.
    pub overrides: Vec<String>,
    pub seeds: Vec<u64>,
    pub grid: Vec<GridAxis>,
    pub points: Vec<Point>,
    pub executor: Executor,
    /// Slurm array jobs submitted for this sweep, oldest first.
    #[serde(default)]
    pub submissions: Vec<Submission>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub index: usize,
    /// The run directory, relative to the sweep directory.
    pub dir: String,
    pub seed: u64,
    /// The grid values of this point (key → TOML value as given).
    pub settings: BTreeMap<String, String>,
    /// Points with the same key share the work it names (θ_GD); `None` when the
    /// experiment has no such phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Executor {
    /// `jobs` runs at a time on this machine, each with `threads` worker threads.
    Local { jobs: usize, threads: usize },
    /// A Slurm job array (`sweep.sbatch`), at most `array_limit` tasks at once.
    Slurm(SlurmOptions),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmOptions {
    /// `%J` of `--array=…%J` (0 = no limit).
    pub array_limit: usize,
    pub cpus_per_task: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// Further `#SBATCH` options, verbatim (e.g. `--account=ml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    /// Point indices (= array task ids) of this submission.
    pub points: Vec<usize>,
    pub submitted: String,
}

impl Manifest {
    /// Reads `<dir>/sweep.json`, or says plainly that `dir` is not a sweep.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE_NAME);
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{}: no such directory; give a sweep directory, as `noiselab sweep` prints it",
                dir.display()
            )));
        }
        if !path.exists() {
            let hint = if dir.join(journal::FILE_NAME).exists() || dir.join("run.h5").exists() {
                " (it is a single run: use inspect, resume or watch on it)"
            } else {
                ""
            };
            return Err(Error::Usage(format!(
                "{}: not a sweep directory, it has no {FILE_NAME}{hint}",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::unreadable(&path, format!("not a sweep manifest: {e}")))?;
        if manifest.kind != KIND {
            return Err(Error::unreadable(
                &path,
                format!("kind is {:?}, not {KIND:?}", manifest.kind),
            ));
        }
        if manifest.format > FORMAT {
            return Err(Error::unreadable(
                &path,
                format!(
                    "sweep format {} is newer than this noiselab reads ({FORMAT}); use a newer noiselab",
                    manifest.format
                ),
            ));
        }
        Ok(manifest)
    }

    /// Writes `<dir>/sweep.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        crate::record::write_atomically(&dir.join(FILE_NAME), |p| {
            std::fs::write(p, text.as_bytes()).map_err(|e| Error::io(p, e))
        })
    }

    /// A new manifest of `seeds` × the grid's combinations, the grid varying slowest: the
    /// first points have different seeds, so points that share a GD phase (same seed)
    /// rarely start at the same time.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        config: String,
        experiment: String,
        overrides: Vec<String>,
        seeds: Vec<u64>,
        grid: Vec<GridAxis>,
        executor: Executor,
    ) -> Manifest {
        let mut points = vec![];
        for combination in super::spec::combinations(&grid) {
            for &seed in &seeds {
                let index = points.len();
                points.push(Point {
                    index,
                    dir: super::spec::point_dir_name(index, seed, &combination),
                    seed,
                    settings: combination.iter().cloned().collect(),
                    shared_key: None,
                });
            }
        }
        Manifest {
            format: FORMAT,
            kind: KIND.into(),
            name,
            created: crate::record::run_dir::utc_now(),
            config,
            experiment,
            overrides,
            seeds,
            grid,
            points,
            executor,
            submissions: vec![],
        }
    }

    pub fn point(&self, index: usize) -> Result<&Point> {
        self.points.get(index).ok_or_else(|| {
            Error::Usage(format!(
                "point {index}: this sweep has points 0 to {}",
                self.points.len().saturating_sub(1)
            ))
        })
    }
}

impl Point {
    /// The overrides that make the sweep's base config this point's: its seed, its grid
    /// values and the sweep's shared cache.
    pub fn overrides(&self, sweep_dir: &Path) -> Vec<String> {
        // Absolute, so that the path recorded in the run's config holds from any
        // working directory (a resume elsewhere, a Slurm task).
        let dir = std::fs::canonicalize(sweep_dir).unwrap_or_else(|_| sweep_dir.to_path_buf());
        let cache = toml::Value::String(dir.join(CACHE_DIR).display().to_string());
        let mut o = vec![format!("seed={}", self.seed)];
        o.extend(self.settings.iter().map(|(k, v)| format!("{k}={v}")));
        o.push(format!("record.shared_cache={cache}"));
        o
    }

    /// This point's config, from the sweep's `config.toml`.
    pub fn load_config(&self, sweep_dir: &Path) -> Result<LoadedConfig> {
        let base = sweep_dir.join(CONFIG_FILE);
        let path = base.display().to_string();
        Ok(config::load(&path, &self.overrides(sweep_dir))?)
    }

    pub fn run_dir(&self, sweep_dir: &Path) -> PathBuf {
        sweep_dir.join(&self.dir)
    }

    pub fn log_path(&self, sweep_dir: &Path) -> PathBuf {
        sweep_dir.join(LOG_DIR).join(format!("{}.log", self.dir))
    }

    /// `seed 3` or `seed 3, key=value …`, for people.
    pub fn describe(&self) -> String {
        if self.settings.is_empty() {
            format!("seed {}", self.seed)
        } else {
            format!("seed {}, {}", self.seed, self.settings_text())
        }
    }

    /// The grid values as `key=value` pairs, for people.
    pub fn settings_text(&self) -> String {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where a point stands, from its run directory's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointState {
    /// No record yet (not started; with Slurm possibly queued).
    Pending,
    /// A process writes its record now.
    Running,
    Finished,
    /// Stopped by a signal or the user (Ctrl-C, `scancel`, a time limit): resumable.
    Interrupted,
    /// Its record has no end and no process writes it (the machine or process was
    /// killed): resumable.
    Killed,
    /// The run ended with an error (its log says which).
    Failed,
}

impl PointState {
    pub fn key(self) -> &'static str {
        match self {
            PointState::Pending => "pending",
            PointState::Running => "running",
            PointState::Finished => "finished",
            PointState::Interrupted => "interrupted",
            PointState::Killed => "killed",
            PointState::Failed => "failed",
        }
    }

    /// Whether `sweep resume` runs it again.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            PointState::Pending | PointState::Interrupted | PointState::Killed | PointState::Failed
        )
    }
}

/// A point's state and, when it has a record, that record.
pub fn point_state(run_dir: &Path) -> Result<(PointState, Option<RecordState>)> {
    let path = run_dir.join(journal::FILE_NAME);
    if !path.exists() {
        return Ok((PointState::Pending, None));
    }
    let contents = journal::read(&path)?;
    let state = RecordState::from_journal(&contents, &path)?;
    let point = match state.status {
        RunStatus::Finished => PointState::Finished,
        RunStatus::Interrupted => PointState::Interrupted,
        RunStatus::Failed => PointState::Failed,
        RunStatus::Running => match journal::writer_alive(&path) {
            Some(false) => PointState::Killed,
            _ => PointState::Running,
        },
    };
    Ok((point, Some(state)))
}
