//! What the record files are built from: folded from events as they arrive (the
//! recorder) or from a journal (repair, resume, inspect, export, watch). One fold, so a
//! record rebuilt from a journal equals the one written live.

use super::journal::{Body, Contents, Header};
use crate::config::{self, Config, ExperimentKind, LoadedConfig};
use crate::dynamics::DynamicsKind;
use crate::engine::Checkpoint;
use crate::events::{Event, Metric, RunStatus, SpectrumOf};
use crate::experiments::one_hidden;
use crate::experiments::toy2d::{self, ToyAssembly, ToyMeans, ToyOutcome};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Per metric, its (iteration, value) points.
pub type MetricSeries = BTreeMap<Metric, Vec<(u64, f64)>>;

/// The layout of a `metrics/` group: one iteration axis (the union of every metric's
/// iterations) and a column per metric aligned with it, NaN where a metric was not
/// measured at that iteration.
pub fn aligned_columns(series: &MetricSeries) -> (Vec<u64>, Vec<(Metric, Vec<f64>)>) {
    let mut iteration: Vec<u64> = series.values().flatten().map(|p| p.0).collect();
    iteration.sort_unstable();
    iteration.dedup();
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
    pub toy: Option<ToyAssembly>,
    /// Metrics events: per (dynamics, replicate), per metric, (iteration, value).
    pub metrics: BTreeMap<(DynamicsKind, usize), MetricSeries>,
    pub spectra: BTreeMap<(DynamicsKind, SpectrumOf), Vec<SpectrumEntry>>,
    pub checkpoints: BTreeMap<DynamicsKind, Vec<(usize, Checkpoint)>>,
    /// `Running` until a `RunEnded` follows the last start or resume.
    pub status: RunStatus,
    pub failures: Vec<(DynamicsKind, String)>,
    /// Trajectories reported finished (non-toy experiments).
    pub finished_trajectories: BTreeSet<(DynamicsKind, usize)>,
}

impl RecordState {
    pub fn new(header: Header, config: Config) -> Self {
        let toy = match config.experiment {
            ExperimentKind::Toy2d => Some(ToyAssembly::new(&config)),
            ExperimentKind::OneHidden | ExperimentKind::FashionMnist | ExperimentKind::Cifar10 => {
                None
            }
        };
        RecordState {
            header,
            config,
            toy,
            metrics: BTreeMap::new(),
            spectra: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            status: RunStatus::Running,
            failures: vec![],
            finished_trajectories: BTreeSet::new(),
        }
    }

    pub fn fold_event(&mut self, event: &Event) {
        if let Some(t) = self.toy.as_mut() {
            t.add(event);
        }
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
                    per.entry(*m).or_default().push((*iteration, *v));
                }
            }
            Event::Spectrum {
                dynamics,
                replicate,
                iteration,
                of,
                values,
            } => {
                // A replicate cut short and run again by `resume` reports its spectrum
                // twice: keep one entry per (replicate, iteration), in that order.
                let entries = self.spectra.entry((*dynamics, *of)).or_default();
                let entry = SpectrumEntry {
                    replicate: *replicate,
                    iteration: *iteration,
                    values: values.clone(),
                };
                let key = |e: &SpectrumEntry| (e.replicate, e.iteration);
                match entries.binary_search_by_key(&key(&entry), key) {
                    Ok(i) => entries[i] = entry,
                    Err(i) => entries.insert(i, entry),
                }
            }
            Event::Failed { dynamics, error } => self.failures.push((*dynamics, error.clone())),
            Event::TrajectoryFinished {
                dynamics,
                replicate,
            } => {
                self.finished_trajectories.insert((*dynamics, *replicate));
            }
            _ => {}
        }
    }

    pub fn fold(&mut self, body: &Body) {
        match body {
            Body::Event(e) => self.fold_event(e),
            Body::Checkpoint {
                dynamics,
                replicate,
                checkpoint,
            } => self
                .checkpoints
                .entry(*dynamics)
                .or_default()
                .push((*replicate, (**checkpoint).clone())),
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
        }
        Ok(state)
    }

    pub fn toy_outcome(&self) -> Option<ToyOutcome> {
        self.toy.clone().map(ToyAssembly::outcome)
    }

    /// Every metric series of one dynamics: its Metrics events, and for the toy the
    /// per-iteration means over the finished replicates (`toy`: [`Self::toy_outcome`],
    /// computed once by the caller).
    pub fn metric_series(&self, kind: DynamicsKind, toy: Option<&ToyOutcome>) -> MetricSeries {
        let mut metrics = self.metrics.get(&(kind, 0)).cloned().unwrap_or_default();
        if let Some(outcome) = toy {
            if let Some(s) = outcome.series.iter().find(|s| s.kind == kind) {
                let mut means = ToyMeans::default();
                for r in &s.runs {
                    means.add(r, outcome.toy.success_below);
                }
                for m in toy2d::METRICS {
                    let v = means.means(m).into_iter().enumerate();
                    metrics.insert(m, v.map(|(t, x)| (t as u64, x)).collect());
                }
            }
        }
        metrics
    }

    /// (dynamics, replicate) pairs already finished: what a resume skips.
    pub fn finished_replicates(&self) -> BTreeSet<(DynamicsKind, usize)> {
        let mut done = self.finished_trajectories.clone();
        if let Some(o) = self.toy_outcome() {
            done.extend(
                o.series
                    .iter()
                    .flat_map(|s| s.runs.iter().map(move |r| (s.kind, r.replicate))),
            );
        }
        done
    }

    /// Drops the streamed metrics of trajectories that did not finish: a resume runs
    /// them again from their start.
    pub fn forget_unfinished(&mut self) {
        let done = self.finished_replicates();
        self.metrics.retain(|key, _| done.contains(key));
    }

    /// The experiment's result table with its heading, as `run` prints it.
    pub fn results_text(&self, status: RunStatus) -> String {
        let partial = if status == RunStatus::Finished {
            String::new()
        } else {
            format!(" ({}: finished trajectories only)", status.key())
        };
        if let Some(outcome) = self.toy_outcome() {
            return format!(
                "Success rate of escaping to the flat basin (Fig. 1b), {} seeds{partial}:\n{}",
                outcome.toy.seeds,
                outcome.table()
            );
        }
        if self.config.classification().is_some() {
            return self.classification_text(&partial);
        }
        let mut out = format!(
            "Tr(HΣ)/Tr(HΣ̄) at the end of training, by hidden width (Fig. 2){partial}:\n{:<18} {:>8} {:>7} {:>14} {:>12} {:>12} {:>9} {:>9}\n",
            "dynamics", "width", "D", "Tr(HΣ)/Tr(HΣ̄)", "Tr(HΣ)", "Tr(HΣ̄)", "loss", "accuracy"
        );
        let widths = self.config.one_hidden().widths;
        for &kind in &self.config.dynamics {
            for (w, h) in widths.iter().enumerate() {
                let f = self.final_metrics(kind, w);
                let sci = |m: Metric| f.get(&m).map_or("-".to_string(), |x| format!("{x:.4e}"));
                let fixed = |m: Metric| f.get(&m).map_or("-".to_string(), |x| format!("{x:.4}"));
                out += &format!(
                    "{:<18} {:>8} {:>7} {:>14} {:>12} {:>12} {:>9} {:>9}\n",
                    kind.label(),
                    h,
                    3 * h,
                    // NaN = 0/0: no gradient noise and no curvature left (e.g. every
                    // output clipped in the released recipe).
                    f.get(&Metric::IsotropyRatio).map_or("-".to_string(), |x| {
                        if x.is_nan() {
                            "0/0".to_string()
                        } else {
                            format!("{x:.2}")
                        }
                    }),
                    sci(Metric::TrHSigma),
                    sci(Metric::TrHSigmaIso),
                    fixed(Metric::Loss),
                    fixed(Metric::TrainAccuracy)
                );
            }
        }
        out
    }

    /// Figs. 4, 6 and 7 in numbers: where each dynamics ended.
    fn classification_text(&self, partial: &str) -> String {
        let mut out = format!(
            "From θ_GD: final test accuracy and expected sharpness by dynamics (Figs. 4, 6, 7){partial}:\n{:<18} {:>10} {:>10} {:>12} {:>12} {:>10}\n",
            "dynamics", "test acc", "train acc", "sharpness", "Tr(HΣ)", "iteration"
        );
        for &kind in &self.config.dynamics {
            let f = self.final_metrics(kind, 0);
            let get = |m: Metric, fmt: &dyn Fn(f64) -> String| {
                f.get(&m).map_or("-".to_string(), |x| fmt(*x))
            };
            let last = self
                .metrics
                .get(&(kind, 0))
                .and_then(|m| m.get(&Metric::TestAccuracy))
                .and_then(|v| v.last())
                .map_or("-".to_string(), |p| p.0.to_string());
            out += &format!(
                "{:<18} {:>10} {:>10} {:>12} {:>12} {:>10}\n",
                kind.label(),
                get(Metric::TestAccuracy, &|x| format!("{x:.4}")),
                get(Metric::TrainAccuracy, &|x| format!("{x:.4}")),
                get(Metric::Sharpness, &|x| format!("{x:.4e}")),
                get(Metric::TrHSigma, &|x| format!("{x:.4e}")),
                last
            );
        }
        out
    }

    /// Names of the replicates when they are not seeds (the one-hidden widths).
    pub fn replicate_labels(&self) -> Vec<String> {
        match self.config.experiment {
            ExperimentKind::Toy2d => vec![],
            ExperimentKind::OneHidden => one_hidden::labels(&self.config.one_hidden()),
            ExperimentKind::FashionMnist | ExperimentKind::Cifar10 => {
                crate::experiments::classification::labels()
            }
        }
    }

    /// The last value of each streamed metric of one trajectory.
    pub fn final_metrics(&self, kind: DynamicsKind, replicate: usize) -> BTreeMap<Metric, f64> {
        self.metrics
            .get(&(kind, replicate))
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.last().map(|p| (*k, p.1)))
                    .collect()
            })
            .unwrap_or_default()
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
