//! A read-only view of a run directory for `inspect` and `export`: from the journal
//! when there is one (it is the source of truth, and all a killed run has), otherwise
//! from `run.h5`.

use super::h5::{self, H5Dynamics, H5Run};
use super::journal;
use super::state::{aligned_columns, RecordState};
use crate::config;
use crate::events::{by_priority, Metric, RunStatus};
use crate::experiment::Outline;
use crate::numbers::{fit, grouped};
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
    /// What the run is (from its recorded config); `None` when that config no longer
    /// loads (a record of another build).
    pub outline: Option<Outline>,
    /// Per entry of `run.dynamics`: the iteration it has reached, in the record's
    /// numbering (its latest measurement, progress report or checkpoint).
    pub reached: Vec<u64>,
}

pub fn open(run_dir: &Path) -> Result<RunView> {
    let journal_path = run_dir.join(journal::FILE_NAME);
    let h5_path = run_dir.join(h5::FILE_NAME);
    // A journal this build cannot read (an older format, or damaged) beside a run.h5
    // that reads: the record it left is still there. Each file is read once.
    let mut old_journal = None;
    let mut h5_run = None;
    let journal = journal_path.exists().then(|| journal::read(&journal_path));
    let contents = match journal {
        Some(Ok(contents)) => Some(contents),
        Some(Err(Error::Unreadable { path, message })) => match h5::read(&h5_path) {
            Ok(run) => {
                old_journal = Some(format!(
                    "journal.bin: {message}; the numbers are from run.h5"
                ));
                h5_run = Some(run);
                None
            }
            Err(_) => return Err(Error::Unreadable { path, message }),
        },
        Some(Err(e)) => return Err(e),
        None => None,
    };
    if let Some(contents) = contents {
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
        let outline = state.config.experiment.experiment().outline(&state.config);
        let snap = state.progress.snapshot(state.progress.now());
        let reached = run
            .dynamics
            .iter()
            .map(|d| {
                let kind = crate::dynamics::DynamicsKind::from_key(&d.key);
                let r = d.replicate.as_ref().map_or(0, |(r, _)| *r);
                let stepped = kind
                    .and_then(|k| snap.track(k, r))
                    .map(|t| t.offset + t.step);
                let checkpointed = kind
                    .and_then(|k| state.checkpoints.get(&(k, r)))
                    .and_then(|c| c.last().copied());
                // A finished trajectory (or a seed of the toy's) ran every iteration.
                let finished = kind.is_some_and(|k| {
                    state.finished_trajectories.contains(&(k, r))
                        || (d.toy.is_some() && !state.replicates(k).is_empty())
                });
                let diverged_at = kind
                    .and_then(|k| state.health.get(&(k, r)))
                    .filter(|f| f.health == crate::events::Health::Diverged)
                    .map(|f| f.iteration);
                if let Some(t) = diverged_at {
                    return t;
                }
                if finished {
                    return outline.iterations;
                }
                last_measured(d)
                    .max(stepped.unwrap_or(0))
                    .max(checkpointed.unwrap_or(0))
            })
            .collect();
        return Ok(RunView {
            run_dir: run_dir.to_path_buf(),
            source: journal_path,
            replicates_total: outline.replicates,
            run,
            notes,
            progress,
            health,
            outline: Some(outline),
            reached,
        });
    }
    if h5_path.exists() {
        let run = h5_run
            .map_or_else(|| h5::read(&h5_path), Ok)
            .map_err(|e| match e {
                Error::Unreadable { path, message } if !journal_path.exists() => {
                    Error::Unreadable {
                        path,
                        message: format!(
                            "{message}; there is no journal.bin beside it to rebuild it from"
                        ),
                    }
                }
                e => e,
            })?;
        let outline = run.attrs.get("config").and_then(|c| outline_of(c));
        let finished = run.attrs.get("status").is_some_and(|s| s == "finished");
        let reached = run
            .dynamics
            .iter()
            .map(|d| match (&outline, d.toy) {
                // A finished toy run: every recorded seed ran every iteration.
                (Some(o), Some((_, n, _))) if finished && n > 0 => o.iterations,
                _ => last_measured(d),
            })
            .collect();
        // Nothing to rewrite a damaged summary from without a journal: say so.
        let notes = old_journal
            .into_iter()
            .chain(
                super::integrity::check(run_dir)
                    .into_iter()
                    .filter(|d| d.file != h5::FILE_NAME)
                    .map(|d| {
                        format!(
                            "{} is {}; run.h5 is intact, and there is no journal.bin to rewrite it from",
                            d.file,
                            d.state()
                        )
                    }),
            )
            .collect();
        return Ok(RunView {
            run_dir: run_dir.to_path_buf(),
            source: h5_path,
            replicates_total: outline.as_ref().map_or(1, |o| o.replicates),
            run,
            notes,
            progress: None,
            health: vec![],
            outline,
            reached,
        });
    }
    Err(Error::unreadable(
        run_dir,
        "not a noiselab run directory: it has neither journal.bin nor run.h5",
    ))
}

fn outline_of(config_toml: &str) -> Option<Outline> {
    config::parse(config_toml, "record", &[])
        .ok()
        .map(|l| l.config.experiment.experiment().outline(&l.config))
}

/// The highest iteration at which anything was measured.
fn last_measured(d: &H5Dynamics) -> u64 {
    d.iteration.last().copied().unwrap_or(0)
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
        if labels.len() <= 1 {
            // One trajectory per dynamics (FashionMNIST's "from θ_GD"), or the toy's
            // seeds averaged: the dynamics itself, as run.h5 reads back.
            entries.push((None, kind.label().to_string(), state.metric_series(kind)));
        } else {
            for (r, l) in labels.iter().enumerate() {
                entries.push((
                    Some((r, l.clone())),
                    format!("{} · {l}", kind.label()),
                    state.metrics.get(&(kind, r)).cloned().unwrap_or_default(),
                ));
            }
        }
        for (replicate, label, series) in entries {
            let (iteration, columns) = aligned_columns(&series);
            let metrics = columns
                .into_iter()
                .map(|(m, c)| (m.key().to_string(), c))
                .collect();
            dynamics.push(H5Dynamics {
                key: kind.key().to_string(),
                replicate,
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

    /// The `inspect` text: what the run is and how it stands, then one row per
    /// trajectory with the columns of its experiment (seeds and escapes for the toy,
    /// iterations reached for the others) and the last value of each metric, the
    /// mission's first. Metric columns that do not fit in `width` continue in further
    /// blocks below (each repeating the dynamics column): nothing is cut.
    pub fn table(&self, width: usize) -> String {
        let mut out = format!(
            "run         {}\nread from   {}\nexperiment  {}{} · status {} · created {} · noiselab {}{}\n",
            self.run_dir.display(),
            self.source
                .strip_prefix(&self.run_dir)
                .unwrap_or(&self.source)
                .display(),
            self.attr("experiment"),
            // Runs on the CPU kernels (the default) say nothing.
            match self.attr("device") {
                "" | "cpu" => String::new(),
                d => format!(" on {d}"),
            },
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
            out += &format!("progress    {p}\n");
        }
        let metrics = self.metric_order();
        // Health is watched where a trajectory can die (the classifiers); the toy counts
        // its diverged seeds in its own column.
        if !self.health.is_empty() || metrics.contains(&Metric::TEST_ACCURACY) {
            let count = |h: crate::events::Health| {
                self.health.iter().filter(|(_, f)| f.health == h).count()
            };
            out += &format!(
                "health      {} collapsed, {} diverged\n",
                count(crate::events::Health::Collapsed),
                count(crate::events::Health::Diverged)
            );
            for (kind, f) in &self.health {
                out += &format!(
                    "  {:<18} {} at iteration {}: {}\n",
                    kind.label(),
                    f.health.key(),
                    grouped(f.iteration),
                    f.detail
                );
            }
        }
        out += "\n";

        // The experiment's own columns: (header, cells), right-aligned.
        let toy = self.run.dynamics.iter().any(|d| d.toy.is_some());
        let mut fixed: Vec<(String, Vec<String>)> = vec![];
        if toy {
            let noun = self.outline.as_ref().map_or("seed", |o| o.replicate_noun);
            let mut done = vec![];
            let mut escaped = vec![];
            let mut rate = vec![];
            for d in &self.run.dynamics {
                let (succ, n, div) = d.toy.unwrap_or((0, 0, 0));
                done.push(format!("{n}/{}", self.replicates_total));
                escaped.push(if div > 0 {
                    format!("{succ} ({div} diverged)")
                } else {
                    succ.to_string()
                });
                rate.push(if n > 0 {
                    format!("{:.3}", succ as f64 / n as f64)
                } else {
                    "-".into()
                });
            }
            fixed.push((format!("{noun}s"), done));
            fixed.push(("escaped".into(), escaped));
            fixed.push(("rate".into(), rate));
        } else {
            let planned = self.outline.as_ref().map(|o| o.iterations);
            let cells = self
                .reached
                .iter()
                .map(|&t| match planned {
                    Some(p) => format!("{}/{}", grouped(t), grouped(p)),
                    None => grouped(t),
                })
                .collect();
            fixed.push(("iteration".into(), cells));
        }
        let columns: Vec<(String, Vec<String>)> = metrics
            .iter()
            // The toy's rate is its escaped fraction's last value: one column is enough.
            .filter(|m| !(toy && **m == Metric::ESCAPED_FRACTION))
            .map(|m| {
                let cells = self
                    .run
                    .dynamics
                    .iter()
                    .map(|d| {
                        d.metrics
                            .get(m.key())
                            .and_then(|v| v.iter().rev().find(|x| !x.is_nan()))
                            .map_or("-".into(), |&v| fit(v))
                    })
                    .collect();
                (m.label(), cells)
            })
            .collect();

        let names: Vec<&str> = self.run.dynamics.iter().map(|d| d.label.as_str()).collect();
        let name_w = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        let col_w = |(h, cells): &(String, Vec<String>)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        };
        // Blocks of columns that fit the width; the experiment's own ones lead the first.
        let mut blocks: Vec<Vec<&(String, Vec<String>)>> = vec![fixed.iter().collect()];
        let mut used = name_w + fixed.iter().map(|c| col_w(c) + 2).sum::<usize>();
        for c in &columns {
            let w = col_w(c) + 2;
            let block = blocks.last_mut().expect("one block at least");
            if used + w > width && !block.is_empty() {
                blocks.push(vec![c]);
                used = name_w + w;
            } else {
                block.push(c);
                used += w;
            }
        }
        for (b, block) in blocks.iter().enumerate() {
            if b > 0 {
                out += "\n";
            }
            let mut line = format!("{:<name_w$}", "dynamics");
            for c in block {
                line += &format!("  {:>w$}", c.0, w = col_w(c));
            }
            out += line.trim_end();
            out += "\n";
            for (i, name) in names.iter().enumerate() {
                let mut line = format!("{name:<name_w$}");
                for c in block {
                    line += &format!("  {:>w$}", c.1[i], w = col_w(c));
                }
                out += line.trim_end();
                out += "\n";
            }
        }
        out += if toy {
            "(metrics: the mean over finished seeds at the last iteration)\n"
        } else {
            "(metrics: each one's last measured value; all of them: noiselab export)\n"
        };
        out
    }

    /// The metrics present, in the dashboard's order (the mission's first).
    fn metric_order(&self) -> Vec<Metric> {
        let present: std::collections::BTreeSet<&str> = self
            .run
            .dynamics
            .iter()
            .flat_map(|d| d.metrics.keys().map(String::as_str))
            .collect();
        let mut order: Vec<Metric> = self
            .outline
            .iter()
            .flat_map(|o| o.metrics.iter().map(|d| d.metric))
            .filter(|m| present.contains(m.key()))
            .collect();
        for k in &present {
            if !order.iter().any(|m| m.key() == *k) {
                order.push(Metric::from_key(k));
            }
        }
        by_priority(&order)
    }

    /// `inspect --json`.
    pub fn json(&self) -> Value {
        let mut dynamics = Map::new();
        for (i, d) in self.run.dynamics.iter().enumerate() {
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
                d.id(),
                json!({
                    "dynamics": d.key,
                    "replicate": d.replicate.as_ref().map(|(_, l)| l.clone()),
                    "label": d.label,
                    "seeds_done": done,
                    "seeds_total": self.replicates_total,
                    "successes": succ,
                    "success_rate": if done > 0 { Value::from(succ as f64 / done as f64) } else { Value::Null },
                    "diverged": div,
                    "iterations_done": self.reached[i],
                    "iterations_planned": self.outline.as_ref().map(|o| o.iterations),
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
            "device": self.attr("device"),
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

    /// `export --csv`: tidy rows `dynamics,replicate,iteration,metric,value`, one per
    /// measured value (`replicate` is empty for one trajectory per dynamics, the
    /// replicate's label otherwise, e.g. the one-hidden widths' `h = 200`).
    pub fn write_csv(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "dynamics,replicate,iteration,metric,value")?;
        for d in &self.run.dynamics {
            let replicate = d.replicate.as_ref().map_or("", |(_, l)| l.as_str());
            for (m, values) in &d.metrics {
                for (t, v) in d.iteration.iter().zip(values) {
                    // NaN marks "not measured at this iteration" in the aligned columns.
                    if !v.is_nan() {
                        writeln!(out, "{},{replicate},{t},{m},{v}", d.key)?;
                    }
                }
            }
        }
        Ok(())
    }
}
