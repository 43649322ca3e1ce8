//! `summary.json`: the headline numbers of a run, for scripts.

use crate::events::RunStatus;
use crate::experiments::toy2d::ToyOutcome;
use crate::Result;
use serde_json::{json, Map, Value};
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

pub fn write(path: &Path, value: &Value) -> Result<()> {
    super::write_atomically(path, |p| {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        std::fs::write(p, text + "\n").map_err(|e| crate::Error::io(p, e))
    })
}
