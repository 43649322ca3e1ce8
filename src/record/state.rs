//! What the record files are built from: folded from events as they arrive (the
//! recorder) or from a journal (repair, resume, inspect, export, watch). One fold, so a
//! record rebuilt from a journal equals the one written live. Every series is keyed by
//! iteration: a resumed trajectory that measures an iteration again (deterministically,
//! the same value) replaces it, and "final" is always the highest iteration.

use super::journal::{Body, Contents, Header};
use crate::config::{self, Config, LoadedConfig};
use crate::dynamics::DynamicsKind;
use crate::events::{
    Event, Health, Metric, ReplicateMeans, ReplicateSummary, RunStatus, SpectrumOf,
};
use crate::experiment::Prior;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Per metric, its values by iteration.
pub type MetricSeries = BTreeMap<Metric, BTreeMap<u64, f64>>;

/// The layout of a `metrics/` group: one iteration axis (the union of every metric's
/// iterations) and a column per metric aligned with it, NaN where a metric was not
/// measured at that iteration.
pub fn aligned_columns(series: &MetricSeries) -> (Vec<u64>, Vec<(Metric, Vec<f64>)>) {
    let iteration: Vec<u64> = series
        .values()
        .flat_map(|p| p.keys().copied())
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let index: BTreeMap<u64, usize> = iteration.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let columns = series
        .iter()
        .map(|(m, points)| {
            let mut col = vec![f64::NAN; iteration.len()];
            for (t, v) in points {
                col[index[t]] = *v;
            }
            (*m, col)
        })
        .collect();
    (iteration, columns)
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpectrumEntry {
    pub replicate: usize,
    pub iteration: u64,
    pub values: Vec<f64>,
}

#[derive(Clone, Debug)]
pub struct RecordState {
    pub header: Header,
    pub config: Config,
    /// Metrics events: per (dynamics, replicate), per metric, by iteration.
    pub metrics: BTreeMap<(DynamicsKind, usize), MetricSeries>,
    pub spectra: BTreeMap<(DynamicsKind, SpectrumOf), Vec<SpectrumEntry>>,
    /// Finished replicates' summaries, by replicate.
    pub replicates: BTreeMap<DynamicsKind, BTreeMap<usize, Arc<ReplicateSummary>>>,
    /// Iterations at which each (dynamics, replicate) was checkpointed.
    pub checkpoints: BTreeMap<(DynamicsKind, usize), BTreeSet<u64>>,
    /// `Running` until a `RunEnded` follows the last start or resume.
    pub status: RunStatus,
    pub failures: Vec<(DynamicsKind, String)>,
    /// Trajectories reported finished.
    pub finished_trajectories: BTreeSet<(DynamicsKind, usize)>,
    /// The latest health flag of each trajectory that had one: collapsed, diverged
    /// (`Diverged` events too) or healthy again, at which iteration, and why.
    pub health: BTreeMap<(DynamicsKind, usize), HealthFlag>,
    /// Where the run stands (progress events), for `inspect` of a running run.
    pub progress: crate::progress::ProgressModel,
    /// Wall-clock time (ms since the epoch) of the last journal record folded.
    pub last_record_ms: Option<u64>,
}

/// A trajectory's latest health flag.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthFlag {
    pub health: Health,
    pub iteration: u64,
    pub detail: String,
}

impl RecordState {
    pub fn new(header: Header, config: Config) -> Self {
        RecordState {
            header,
            config,
            metrics: BTreeMap::new(),
            spectra: BTreeMap::new(),
            replicates: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            status: RunStatus::Running,
            failures: vec![],
            finished_trajectories: BTreeSet::new(),
            health: BTreeMap::new(),
            progress: Default::default(),
            last_record_ms: None,
        }
    }

    pub fn fold_event(&mut self, event: &Event) {
        self.progress.apply(event);
        match event {
            Event::RunStarted(_) => self.status = RunStatus::Running,
            Event::RunEnded { status } => self.status = *status,
            Event::Metrics {
                dynamics,
                replicate,
                iteration,
                values,
            } => {
                let per = self.metrics.entry((*dynamics, *replicate)).or_default();
                for (m, v) in values {
                    per.entry(*m).or_default().insert(*iteration, *v);
                }
            }
            Event::Spectrum {
                dynamics,
                replicate,
                iteration,
                of,
                values,
            } => self.insert_spectrum(*dynamics, *of, *replicate, *iteration, values),
            Event::ReplicateFinished { dynamics, summary } => {
                for sp in &summary.spectra {
                    self.insert_spectrum(
                        *dynamics,
                        sp.of,
                        summary.replicate,
                        sp.iteration,
                        &sp.values,
                    );
                }
                self.replicates
                    .entry(*dynamics)
                    .or_default()
                    .insert(summary.replicate, summary.clone());
                self.finished_trajectories
                    .insert((*dynamics, summary.replicate));
            }
            Event::Checkpoint {
                dynamics,
                replicate,
                checkpoint,
            } => {
                self.checkpoints
                    .entry((*dynamics, *replicate))
                    .or_default()
                    .insert(checkpoint.iteration as u64);
            }
            Event::Failed { dynamics, error } => self.failures.push((*dynamics, error.clone())),
            Event::TrajectoryFinished {
                dynamics,
                replicate,
            } => {
                self.finished_trajectories.insert((*dynamics, *replicate));
            }
            Event::Health {
                dynamics,
                replicate,
                iteration,
                health,
                detail,
            } => {
                self.health.insert(
                    (*dynamics, *replicate),
                    HealthFlag {
                        health: *health,
                        iteration: *iteration,
                        detail: detail.clone(),
                    },
                );
            }
            Event::Diverged {
                dynamics,
                replicate,
                iteration,
                reason,
            } => {
                self.health.insert(
                    (*dynamics, *replicate),
                    HealthFlag {
                        health: Health::Diverged,
                        iteration: *iteration,
                        detail: reason.clone(),
                    },
                );
            }
            Event::Log { .. } | Event::Finished { .. } | Event::Progress(_) => {}
        }
    }

    fn insert_spectrum(
        &mut self,
        dynamics: DynamicsKind,
        of: SpectrumOf,
        replicate: usize,
        iteration: u64,
        values: &[f64],
    ) {
        // A replicate cut short and run again by `resume` reports its spectrum twice:
        // keep one entry per (replicate, iteration), in that order.
        let entries = self.spectra.entry((dynamics, of)).or_default();
        let entry = SpectrumEntry {
            replicate,
            iteration,
            values: values.to_vec(),
        };
        let key = |e: &SpectrumEntry| (e.replicate, e.iteration);
        match entries.binary_search_by_key(&key(&entry), key) {
            Ok(i) => entries[i] = entry,
            Err(i) => entries.insert(i, entry),
        }
    }

    pub fn fold(&mut self, body: &Body) {
        match body {
            Body::Event(e) => self.fold_event(e),
            Body::Checkpoint {
                dynamics,
                replicate,
                iteration,
            } => {
                self.checkpoints
                    .entry((*dynamics, *replicate))
                    .or_default()
                    .insert(*iteration);
            }
            Body::Resumed { .. } => self.status = RunStatus::Running,
            Body::Header(_) => {}
        }
    }

    /// Rebuilds the state from a journal; `path` names it in errors.
    pub fn from_journal(contents: &Contents, path: &Path) -> Result<Self> {
        let header = contents
            .header()
            .ok_or_else(|| Error::unreadable(path, "the journal has no header record"))?
            .clone();
        let loaded = loaded_config(&header, path)?;
        let mut state = RecordState::new(header, loaded.config);
        for r in &contents.records {
            state.fold(&r.body);
            state.last_record_ms = Some(r.unix_ms);
        }
        Ok(state)
    }

    /// The finished replicates of one dynamics, in replicate order.
    pub fn replicates(&self, kind: DynamicsKind) -> Vec<&ReplicateSummary> {
        self.replicates
            .get(&kind)
            .map(|r| r.values().map(|s| s.as_ref()).collect())
            .unwrap_or_default()
    }

    /// Every metric series of one dynamics' first trajectory: its Metrics events, and
    /// for experiments of many replicates the per-iteration means over the finished ones.
    pub fn metric_series(&self, kind: DynamicsKind) -> MetricSeries {
        let mut metrics = self.metrics.get(&(kind, 0)).cloned().unwrap_or_default();
        let mut means = ReplicateMeans::default();
        for r in self.replicates(kind) {
            means.add(r);
        }
        for (m, points) in means.means() {
            metrics.insert(m, points.into_iter().collect());
        }
        metrics
    }

    /// A dynamics' health flag for the record: the worst of its trajectories'
    /// (diverged, then collapsed). `None` when healthy, and for experiments of many
    /// seeds, which count their diverged seeds instead.
    pub fn health_of(&self, kind: DynamicsKind) -> Option<&HealthFlag> {
        let outline = self.config.experiment.experiment().outline(&self.config);
        if outline.replicates > 1 && outline.replicate_labels.is_empty() {
            return None;
        }
        self.health
            .iter()
            .filter(|((k, _), f)| *k == kind && f.health != Health::Healthy)
            .map(|(_, f)| f)
            .max_by_key(|f| f.health)
    }

    /// `summary.json`'s health: per dynamics its flag, iteration and why (beside the
    /// experiment's numbers), and the counts of collapsed and diverged dynamics.
    pub fn add_health(&self, summary: &mut serde_json::Value) {
        let mut counts = serde_json::Map::new();
        for h in [Health::Collapsed, Health::Diverged] {
            counts.insert(h.key().into(), 0.into());
        }
        for &kind in &self.config.dynamics {
            let Some(flag) = self.health_of(kind) else {
                continue;
            };
            let n = counts[flag.health.key()].as_u64().unwrap_or(0) + 1;
            counts.insert(flag.health.key().into(), n.into());
            if let Some(entry) = summary["dynamics"][kind.key()].as_object_mut() {
                entry.insert("health".into(), flag.health.key().into());
                entry.insert("health_iteration".into(), flag.iteration.into());
                entry.insert("health_detail".into(), flag.detail.clone().into());
            }
        }
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("health".into(), counts.into());
        }
    }

    /// Trajectories per health flag (collapsed, diverged; healthy again not counted).
    pub fn health_counts(&self) -> BTreeMap<Health, Vec<(DynamicsKind, usize)>> {
        let mut out: BTreeMap<Health, Vec<_>> = BTreeMap::new();
        for (k, f) in &self.health {
            if f.health != Health::Healthy {
                out.entry(f.health).or_default().push(*k);
            }
        }
        out
    }

    /// What a resumed run must not do again.
    pub fn prior(&self) -> Prior {
        let mut spectra = BTreeSet::new();
        for ((kind, of), entries) in &self.spectra {
            for e in entries {
                spectra.insert((*kind, *of, e.replicate, e.iteration));
            }
        }
        Prior {
            finished: self.finished_trajectories.clone(),
            spectra,
        }
    }

    /// The experiment's result table with its heading, as `run` prints it.
    pub fn results_text(&self, status: RunStatus) -> String {
        self.config
            .experiment
            .experiment()
            .results_text(self, status)
    }

    /// Names of the replicates when they are not seeds (the one-hidden widths).
    pub fn replicate_labels(&self) -> Vec<String> {
        self.config
            .experiment
            .experiment()
            .outline(&self.config)
            .replicate_labels
    }

    /// The value at the highest iteration of each streamed metric of one trajectory.
    pub fn final_metrics(&self, kind: DynamicsKind, replicate: usize) -> BTreeMap<Metric, f64> {
        self.metrics
            .get(&(kind, replicate))
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.last_key_value().map(|p| (*k, *p.1)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The highest iteration at which one trajectory measured `metric`.
    pub fn last_iteration(
        &self,
        kind: DynamicsKind,
        replicate: usize,
        metric: Metric,
    ) -> Option<u64> {
        self.metrics
            .get(&(kind, replicate))
            .and_then(|m| m.get(&metric))
            .and_then(|v| v.last_key_value())
            .map(|p| *p.0)
    }
}

/// The run's config as recorded in its header.
pub fn loaded_config(header: &Header, path: &Path) -> Result<LoadedConfig> {
    config::parse(&header.config_toml, &header.config_source, &[]).map_err(|e| {
        Error::unreadable(
            path,
            format!("the recorded config does not load in this build: {e}"),
        )
    })
}
