//! `summary.json`: the headline numbers of a run, for scripts.

use super::state::RecordState;
use crate::events::{Metric, RunStatus};
use crate::experiments::toy2d::ToyOutcome;
use crate::Result;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub fn toy2d(outcome: &ToyOutcome, status: RunStatus) -> Value {
    let mut dynamics = Map::new();
    for s in &outcome.series {
        dynamics.insert(
            s.kind.key().to_string(),
            json!({
                "label": s.kind.label(),
                "success_rate": s.success_rate(),
                "success_stderr": s.success_stderr(),
                "successes": s.successes(),
                "seeds": s.runs.len(),
                "diverged": s.diverged(),
                "mean_initial_tr_h_noise": s.mean_initial_tr_h_noise(),
            }),
        );
    }
    json!({
        "experiment": "toy2d",
        "status": status.key(),
        "seeds": outcome.toy.seeds,
        "iterations": outcome.toy.iterations,
        "dynamics": dynamics,
    })
}

/// The summary of any experiment.
pub fn of(state: &RecordState, status: RunStatus) -> Value {
    match state.toy_outcome() {
        Some(outcome) => toy2d(&outcome, status),
        None if state.config.classification().is_some() => classification(state, status),
        None => one_hidden(state, status),
    }
}

/// Figs. 4, 6 and 7: per dynamics, the final train and test accuracy and expected
/// sharpness (and the other final metrics), with the same at θ_GD (the first measurement
/// of phase 2; GD's earlier ones are phase 1's).
pub fn classification(state: &RecordState, status: RunStatus) -> Value {
    let cfg = state
        .config
        .classification()
        .expect("called for classification experiments");
    let mut dynamics = Map::new();
    for &kind in &state.config.dynamics {
        let mut entry = Map::new();
        entry.insert("label".into(), json!(kind.label()));
        if let Some(series) = state.metrics.get(&(kind, 0)) {
            for (metric, points) in series {
                let at_theta_gd = points.iter().find(|p| p.0 >= cfg.gd_iterations as u64);
                if let (Some(first), Some(last)) = (at_theta_gd, points.last()) {
                    if last.1.is_finite() {
                        entry.insert(format!("final_{}", metric.key()), json!(last.1));
                    }
                    if first.1.is_finite() {
                        entry.insert(format!("initial_{}", metric.key()), json!(first.1));
                    }
                    entry.insert("last_iteration".into(), json!(last.0));
                }
            }
        }
        dynamics.insert(kind.key().to_string(), Value::Object(entry));
    }
    json!({
        "experiment": state.config.experiment.key(),
        "status": status.key(),
        "gd_iterations": cfg.gd_iterations,
        "iterations": cfg.iterations,
        "train_samples": cfg.train_samples,
        "corrupted": cfg.corrupted,
        "dynamics": dynamics,
    })
}

/// Fig. 2: per dynamics, the final Tr(HΣ)/Tr(HΣ̄) (and its parts, loss and accuracy) by width.
pub fn one_hidden(state: &RecordState, status: RunStatus) -> Value {
    let widths = state.config.one_hidden().widths;
    let mut dynamics = Map::new();
    for &kind in &state.config.dynamics {
        let mut by: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for (w, h) in widths.iter().enumerate() {
            let finals = state.final_metrics(kind, w);
            for (name, metric) in [
                ("ratio_by_width", Metric::IsotropyRatio),
                ("tr_h_sigma_by_width", Metric::TrHSigma),
                ("tr_h_sigma_iso_by_width", Metric::TrHSigmaIso),
                ("final_loss_by_width", Metric::Loss),
                ("final_train_accuracy_by_width", Metric::TrainAccuracy),
            ] {
                if let Some(v) = finals.get(&metric).filter(|v| v.is_finite()) {
                    by.entry(name).or_default().insert(h.to_string(), json!(v));
                }
            }
        }
        let mut entry = Map::new();
        entry.insert("label".into(), json!(kind.label()));
        for (name, values) in by {
            entry.insert(name.into(), Value::Object(values));
        }
        dynamics.insert(kind.key().to_string(), Value::Object(entry));
    }
    json!({
        "experiment": "one_hidden",
        "status": status.key(),
        "widths": widths,
        "iterations": state.config.one_hidden().iterations,
        "dynamics": dynamics,
    })
}

pub fn write(path: &Path, value: &Value) -> Result<()> {
    super::write_atomically(path, |p| {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        std::fs::write(p, text + "\n").map_err(|e| crate::Error::io(p, e))
    })
}
