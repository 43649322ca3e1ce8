//! `summary.json`: the headline numbers of a run, for scripts (each experiment says
//! which: [`crate::experiment::Experiment::summary`]).

use crate::Result;
use serde_json::Value;
use std::path::Path;

pub fn write(path: &Path, value: &Value) -> Result<()> {
    super::write_atomically(path, |p| {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        std::fs::write(p, text + "\n").map_err(|e| crate::Error::io(p, e))
    })
}
