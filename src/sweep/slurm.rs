//! The Slurm executor: one job array (`sweep.sbatch`), task id = point index, each task
//! `noiselab sweep point DIR $SLURM_ARRAY_TASK_ID` (a fresh run, or its resume when the
//! point has a record). Slurm's SIGTERM (`scancel`, a time limit) makes a task
//! checkpoint and mark its record interrupted; `sweep resume` submits those points
//! again. Only `sbatch` and `squeue` are used: `sacct` needs accounting storage, which
//! clusters may not offer to users.

use super::manifest::{Manifest, SlurmOptions};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SCRIPT: &str = "sweep.sbatch";

/// `name` on `$PATH`, if it is there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `sbatch`, or an error saying what `--slurm` needs and how to run without it.
pub fn require_sbatch() -> Result<PathBuf> {
    on_path("sbatch").ok_or_else(|| {
        Error::Usage(
            "--slurm needs Slurm's `sbatch` on PATH, and it is not there: submit from a \
             Slurm cluster's login node, or run the sweep on this machine with --local J \
             (J runs at a time); scripts/slurm-cluster.sh starts a one-node Slurm here"
                .into(),
        )
    })
}

/// Writes `sweep.sbatch` into the sweep directory: absolute paths throughout, since the
/// tasks start in Slurm's working directory on whichever node runs them.
pub fn write_script(dir: &Path, manifest: &Manifest, options: &SlurmOptions) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("noiselab's own executable", e))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let logs = dir.join(super::manifest::LOG_DIR);
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!(
            "# noiselab sweep {}: one array task per point (task id = point index).",
            manifest.name
        ),
        "# Written by `noiselab sweep --slurm`; `noiselab sweep resume` submits it again for"
            .into(),
        "# the points that did not finish.".into(),
        format!("#SBATCH --job-name=noiselab-{}", manifest.name),
        format!("#SBATCH --cpus-per-task={}", options.cpus_per_task),
        format!("#SBATCH --output={}/slurm-%A_%a.log", logs.display()),
        // Time to checkpoint before a time limit kills the task.
        "#SBATCH --signal=TERM@120".into(),
    ];
    if let Some(p) = &options.partition {
        lines.push(format!("#SBATCH --partition={p}"));
    }
    if let Some(t) = &options.time {
        lines.push(format!("#SBATCH --time={t}"));
    }
    if let Some(g) = &options.gres {
        lines.push(format!("#SBATCH --gres={g}"));
    }
    lines.extend(options.extra.iter().map(|e| format!("#SBATCH {e}")));
    lines.push(format!(
        "exec {} sweep point {} \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-{}}}\"",
        shell_quote(&exe.display().to_string()),
        shell_quote(&dir.display().to_string()),
        options.cpus_per_task
    ));
    let path = dir.join(SCRIPT);
    let text = lines.join("\n") + "\n";
    crate::record::write_atomically(&path, |p| {
        std::fs::write(p, text.as_bytes()).map_err(|e| Error::io(p, e))
    })?;
    Ok(path)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `--array` of these task ids: runs collapsed (`0-9`, `0,3,5-7`), with `%limit`.
pub fn array_spec(points: &[usize], limit: usize) -> String {
    let mut sorted = points.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut pieces: Vec<String> = vec![];
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        pieces.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    let mut spec = pieces.join(",");
    if limit > 0 {
        spec.push_str(&format!("%{limit}"));
    }
    spec
}

/// Submits the script for `points`; the job id.
pub fn submit(script: &Path, points: &[usize], limit: usize) -> Result<String> {
    let sbatch = require_sbatch()?;
    let array = array_spec(points, limit);
    let output = Command::new(&sbatch)
        .arg("--parsable")
        .arg(format!("--array={array}"))
        .arg(script)
        .output()
        .map_err(|e| Error::io(&sbatch, e))?;
    if !output.status.success() {
        return Err(Error::Usage(format!(
            "sbatch --array={array} {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Usage(format!(
            "sbatch printed {:?}, not a job id",
            text.trim()
        )));
    }
    Ok(id)
}

/// The queue's view of these array jobs: task id → Slurm state (`PENDING`, `RUNNING`,
/// `COMPLETING`, …). Tasks that left the queue are absent: their record says how they
/// ended. `Err` with the reason when `squeue` cannot be asked.
pub fn queue(job_ids: &[String]) -> std::result::Result<BTreeMap<usize, String>, String> {
    if job_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let squeue = on_path("squeue").ok_or("squeue is not on PATH")?;
    let output = Command::new(&squeue)
        .args(["-h", "-r", "-o", "%i %T", "-j"])
        .arg(job_ids.join(","))
        .output()
        .map_err(|e| format!("squeue: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        // Jobs that ended long ago are unknown to squeue: that is an empty queue.
        if err.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(format!("squeue failed: {}", err.trim()));
    }
    Ok(parse_queue(&text))
}

fn parse_queue(text: &str) -> BTreeMap<usize, String> {
    text.lines()
        .filter_map(|line| {
            let (id, state) = line.trim().split_once(' ')?;
            let task = id.split_once('_')?.1.parse().ok()?;
            Some((task, state.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        assert_eq!(array_spec(&[0, 1, 2, 3], 0), "0-3");
        assert_eq!(array_spec(&[5, 0, 3, 6, 7], 2), "0,3,5-7%2");
        assert_eq!(array_spec(&[4], 1), "4%1");
    }

    #[test]
    fn queue_lines() {
        let q = parse_queue("123_0 RUNNING\n123_4 PENDING\n124 RUNNING\n\n");
        assert_eq!(q.len(), 2);
        assert_eq!(q[&4], "PENDING");
    }
}
