//! A read-only view of a run directory for `inspect` and `export`: from the journal
//! when there is one (it is the source of truth, and all a killed run has), otherwise
//! from `run.h5`.

use super::h5::{self, H5Dynamics, H5Run};
use super::journal;
use super::state::{aligned_columns, RecordState};
use crate::config;
use crate::events::RunStatus;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    pub run_dir: PathBuf,
    /// The file the numbers were read from.
    pub source: PathBuf,
    pub run: H5Run,
    /// Replicates each dynamics was configured to run.
    pub replicates_total: usize,
    /// Things a reader should know (a torn journal tail, a run still being written).
    pub notes: Vec<String>,
    /// Where a running run stands (phase, per-trajectory progress, ETA).
    pub progress: Option<String>,
    /// The dynamics flagged collapsed or diverged, with their flag.
    pub health: Vec<(crate::dynamics::DynamicsKind, super::state::HealthFlag)>,
}

pub fn open(run_dir: &Path) -> Result<RunView> {
    let journal_path = run_dir.join(journal::FILE_NAME);
    let h5_path = run_dir.join(h5::FILE_NAME);
    // A journal of an older format (refused by this build) beside a run.h5: the
    // record it left is still readable.
    let old_journal = match journal::read(&journal_path) {
        Err(Error::Unreadable { message, .. })
            if message.starts_with(journal::OLDER_FORMAT) && h5_path.exists() =>
        {
            Some(format!(
                "journal.bin: {message}; the numbers are from run.h5"
            ))
        }
        _ => None,
    };
    if journal_path.exists() && old_journal.is_none() {
        let contents = journal::read(&journal_path)?;
        let state = RecordState::from_journal(&contents, &journal_path)?;
        let mut notes = vec![];
        if let Some(why) = &contents.stopped {
            notes.push(format!(
                "journal.bin: the last {} bytes are not a complete record ({why}); a crash mid-write leaves this, `noiselab resume` or `noiselab repair` cut it off",
                contents.file_len - contents.valid_len
            ));
        }
        let mut progress = None;
        if state.status == RunStatus::Running {
            let alive = journal::writer_alive(&journal_path);
            notes.push(match alive {
                Some(true) => "no end record yet: the run is being written (a process holds the journal)".into(),
                Some(false) => "no end record and no process writes the run (writer gone: killed or crashed); `noiselab resume` continues it, `noiselab repair` writes run.h5 from what is here".into(),
                None => "no end record: the run is still being written, or its process was killed (`noiselab resume` continues it, `noiselab repair` writes run.h5 from what is here)".into(),
            });
            // Now on the workers' clock: the last record's time plus, while the writer
            // lives, the time since it was written.
            let since = match (alive, state.last_record_ms) {
                (Some(true), Some(ms)) => journal::now_ms().saturating_sub(ms) as f64 / 1e3,
                _ => 0.0,
            };
            let snap = state.progress.snapshot(state.progress.now() + since);
            if !snap.tracks.is_empty() {
                let labels = state.replicate_labels();
                let label = if labels.len() == 1 {
                    labels[0].clone()
                } else {
                    "trajectories".into()
                };
                progress = Some(crate::progress::summary(&snap, &label));
            }
        }
        let health = state
            .config
            .dynamics
            .iter()
            .filter_map(|&k| state.health_of(k).map(|f| (k, f.clone())))
            .collect();
        let run = from_state(&state);
        return Ok(RunView {
            run_dir: run_dir.to_path_buf(),
            source: journal_path,
            replicates_total: replicates(&state.header.config_toml),
            run,
            notes,
            progress,
            health,
        });
    }
    if h5_path.exists() {
        let run = h5::read(&h5_path)?;
        let total = run.attrs.get("config").map_or(1, |c| replicates(c));
        return Ok(RunView {
            run_dir: run_dir.to_path_buf(),
            source: h5_path,
            run,
            replicates_total: total,
            notes: old_journal.into_iter().collect(),
            progress: None,
            health: vec![],
        });
    }
    Err(Error::unreadable(
        run_dir,
        "not a noiselab run directory: it has neither journal.bin nor run.h5",
    ))
}

fn replicates(config_toml: &str) -> usize {
    config::parse(config_toml, "record", &[])
        .map(|l| {
            l.config
                .experiment
                .experiment()
                .outline(&l.config)
                .replicates
        })
        .unwrap_or(1)
}

/// The same numbers `run.h5` would hold, straight from the state.
fn from_state(state: &RecordState) -> H5Run {
    let h = &state.header;
    let mut attrs = BTreeMap::new();
    for (k, v) in [
        ("experiment", state.config.experiment.key().to_string()),
        ("status", state.status.key().to_string()),
        ("created", h.created.clone()),
        ("noiselab_version", h.noiselab_version.clone()),
        ("git_describe", h.git_describe.clone().unwrap_or_default()),
        ("config", h.config_toml.clone()),
        ("config_source", h.config_source.clone()),
        ("seed", h.seed.to_string()),
        ("device", h.device.clone()),
    ] {
        attrs.insert(k.to_string(), v);
    }
    let labels = state.replicate_labels();
    let mut dynamics = vec![];
    for &kind in &state.config.dynamics {
        // Experiments whose replicates report a yes/no outcome (the toy's seeds).
        let runs = state.replicates(kind);
        let toy_stats = (!runs.is_empty() && runs.iter().all(|r| r.success.is_some())).then(|| {
            (
                runs.iter().filter(|r| r.success == Some(true)).count() as u64,
                runs.len() as u64,
                runs.iter().filter(|r| r.diverged).count() as u64,
            )
        });
        let mut entries = vec![];
        if labels.is_empty() {
            entries.push((
                kind.key().to_string(),
                kind.label().to_string(),
                state.metric_series(kind),
            ));
        } else {
            for (r, l) in labels.iter().enumerate() {
                entries.push((
                    format!("{}/{}", kind.key(), l.replace(' ', "")),
                    format!("{} · {l}", kind.label()),
                    state.metrics.get(&(kind, r)).cloned().unwrap_or_default(),
                ));
            }
        }
        for (key, label, series) in entries {
            let (iteration, columns) = aligned_columns(&series);
            let metrics = columns
                .into_iter()
                .map(|(m, c)| (m.key().to_string(), c))
                .collect();
            dynamics.push(H5Dynamics {
                key,
                label,
                toy: toy_stats,
                iteration,
                metrics,
            });
        }
    }
    H5Run { attrs, dynamics }
}

impl RunView {
    fn attr(&self, key: &str) -> &str {
        self.run.attrs.get(key).map_or("", String::as_str)
    }

    /// The `inspect` table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "run        {}\nread from  {}\nexperiment {} · status {} · created {} · noiselab {}{}\n",
            self.run_dir.display(),
            self.source.display(),
            self.attr("experiment"),
            self.attr("status"),
            self.attr("created"),
            self.attr("noiselab_version"),
            match self.attr("git_describe") {
                "" => String::new(),
                g => format!(" ({g})"),
            }
        );
        for n in &self.notes {
            out += &format!("note: {n}\n");
        }
        if let Some(p) = &self.progress {
            out += &format!("progress   {p}\n");
        }
        let count =
            |h: crate::events::Health| self.health.iter().filter(|(_, f)| f.health == h).count();
        out += &format!(
            "health     {} collapsed, {} diverged\n",
            count(crate::events::Health::Collapsed),
            count(crate::events::Health::Diverged)
        );
        for (kind, f) in &self.health {
            out += &format!(
                "  {:<18} {} at iteration {}: {}\n",
                kind.label(),
                f.health.key(),
                f.iteration,
                f.detail
            );
        }
        let metric_names: Vec<String> = self
            .run
            .dynamics
            .iter()
            .flat_map(|d| d.metrics.keys().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        out += &format!(
            "\n{:<18} {:>11} {:>8} {:>7} {:>10}",
            "dynamics", "seeds", "escaped", "rate", "iterations"
        );
        for m in &metric_names {
            out += &format!(" {m:>16}");
        }
        out += "\n";
        for d in &self.run.dynamics {
            let (succ, done, div) = d.toy.unwrap_or((0, 0, 0));
            let rate = if done > 0 {
                format!("{:.3}", succ as f64 / done as f64)
            } else {
                "-".into()
            };
            let (seeds, escaped) = match d.toy {
                None => ("-".to_string(), "-".to_string()),
                Some(_) if div > 0 => (
                    format!("{done}/{}", self.replicates_total),
                    format!("{succ} ({div}✗)"),
                ),
                Some(_) => (
                    format!("{done}/{}", self.replicates_total),
                    succ.to_string(),
                ),
            };
            out += &format!(
                "{:<18} {:>11} {:>8} {:>7} {:>10}",
                d.label,
                seeds,
                escaped,
                rate,
                d.iteration.last().map_or(0, |t| t + 1)
            );
            for m in &metric_names {
                let v = d.metrics.get(m).and_then(|v| v.last().copied());
                out += &format!(" {:>16}", v.map_or("-".into(), |v| format!("{v:.6}")));
            }
            out += "\n";
        }
        out +=
            "(metrics: value at the last iteration; for the toy, the mean over finished seeds)\n";
        out
    }

    /// `inspect --json`.
    pub fn json(&self) -> Value {
        let mut dynamics = Map::new();
        for d in &self.run.dynamics {
            let (succ, done, div) = d.toy.unwrap_or((0, 0, 0));
            let finals: Map<String, Value> = d
                .metrics
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.last()
                            .copied()
                            .filter(|x| x.is_finite())
                            .map_or(Value::Null, Value::from),
                    )
                })
                .collect();
            dynamics.insert(
                d.key.clone(),
                json!({
                    "label": d.label,
                    "seeds_done": done,
                    "seeds_total": self.replicates_total,
                    "successes": succ,
                    "success_rate": if done > 0 { Value::from(succ as f64 / done as f64) } else { Value::Null },
                    "diverged": div,
                    "iterations_done": d.iteration.last().map_or(0, |t| t + 1),
                    "final": finals,
                }),
            );
        }
        json!({
            "run_dir": self.run_dir.display().to_string(),
            "source": self.source.display().to_string(),
            "experiment": self.attr("experiment"),
            "status": self.attr("status"),
            "created": self.attr("created"),
            "noiselab_version": self.attr("noiselab_version"),
            "notes": self.notes,
            "progress": self.progress,
            "health": self.health.iter().map(|(k, f)| json!({
                "dynamics": k.key(),
                "health": f.health.key(),
                "iteration": f.iteration,
                "detail": f.detail,
            })).collect::<Vec<_>>(),
            "dynamics": dynamics,
        })
    }

    /// `export --csv`: tidy rows `dynamics,iteration,metric,value`.
    pub fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "dynamics,iteration,metric,value")?;
        for d in &self.run.dynamics {
            for (m, values) in &d.metrics {
                for (t, v) in d.iteration.iter().zip(values) {
                    writeln!(out, "{},{t},{m},{v}", d.key)?;
                }
            }
        }
        Ok(())
    }
}
