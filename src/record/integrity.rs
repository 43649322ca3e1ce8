//! Whether a run's derived files (`run.h5`, `summary.json`) are what the journal says,
//! and putting them right. The journal is the source of truth (docs/SCHEMA.md); a
//! truncated, overwritten or missing derived file of a run that has ended is rewritten
//! from it by whichever command meets it first, and the command says so. Nothing is
//! touched while a process writes the run.

use super::journal;
use super::state::RecordState;
use super::{h5, recorder};
use crate::events::RunStatus;
use crate::Result;
use std::path::Path;

/// What is wrong with one derived file, in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Damage {
    pub file: &'static str,
    pub problem: String,
}

/// Checks `run.h5` and `summary.json` of `dir`: each must exist and read back as a
/// noiselab record (run.h5 through the same reader `inspect` uses; summary.json as a
/// JSON object naming its experiment and status).
pub fn check(dir: &Path) -> Vec<Damage> {
    let mut out = vec![];
    let h5_path = dir.join(h5::FILE_NAME);
    if !h5_path.exists() {
        out.push(Damage {
            file: h5::FILE_NAME,
            problem: "missing".into(),
        });
    } else if let Err(e) = h5::read(&h5_path) {
        out.push(Damage {
            file: h5::FILE_NAME,
            problem: unprefixed(&e.to_string(), &h5_path),
        });
    }
    let summary_path = dir.join(SUMMARY);
    let problem = match std::fs::read(&summary_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing".to_string()),
        Err(e) => Some(format!("unreadable ({e})")),
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(e) => Some(format!("not valid JSON ({e})")),
            Ok(v) if !(v["experiment"].is_string() && v["status"].is_string()) => {
                Some("JSON, but not a noiselab summary (no experiment and status)".into())
            }
            Ok(_) => None,
        },
    };
    if let Some(problem) = problem {
        out.push(Damage {
            file: SUMMARY,
            problem,
        });
    }
    out
}

const SUMMARY: &str = "summary.json";

impl Damage {
    /// What state the file is in, in words: `missing` or `damaged (why)`.
    pub fn state(&self) -> String {
        match self.problem.as_str() {
            "missing" => "missing".into(),
            p => format!("damaged ({p})"),
        }
    }
}

/// An error's text without the path it starts with (the caller names the file).
fn unprefixed(text: &str, path: &Path) -> String {
    let shown = format!("{}: ", path.display());
    text.strip_prefix(&shown).unwrap_or(text).to_string()
}

/// For a run whose journal has an end record and whose writer is gone: rewrites a
/// missing or damaged `run.h5` / `summary.json` from the journal. Returns one line per
/// file put right, or, when it cannot write there, per file left as it is with the fix.
/// A run still being written (or killed mid-run, which `resume` finishes) is left
/// alone: its files are written when it ends.
pub fn heal(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(journal::FILE_NAME);
    if !path.exists() || journal::writer_alive(&path) == Some(true) {
        return Ok(vec![]);
    }
    let Ok(contents) = journal::read(&path) else {
        // A damaged journal is its own error, said by whoever reads it.
        return Ok(vec![]);
    };
    let state = RecordState::from_journal(&contents, &path)?;
    if state.status == RunStatus::Running {
        return Ok(vec![]);
    }
    let damage = check(dir);
    if damage.is_empty() {
        return Ok(vec![]);
    }
    let what = |d: &Damage| format!("{} was {}", d.file, d.state());
    Ok(match recorder::finalize(dir, &state, state.status) {
        Ok(()) => damage
            .iter()
            .map(|d| format!("{}: rewritten from journal.bin", what(d)))
            .collect(),
        Err(e) => damage
            .iter()
            .map(|d| {
                format!(
                    "{}, and rewriting it failed ({e}); `noiselab repair {}` rewrites it where \
                     the directory is writable",
                    what(d),
                    dir.display()
                )
            })
            .collect(),
    })
}
