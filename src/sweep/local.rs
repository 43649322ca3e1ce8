//! The local executor: `jobs` points at a time on this machine, each a child process
//! (`noiselab sweep point DIR I --threads T`) writing its own run directory, its output
//! in `logs/<point>.log`. A stop request (Ctrl-C, SIGTERM, SIGHUP) is passed on to the
//! children as SIGTERM: each checkpoints, marks its record interrupted and exits, and
//! `sweep resume` continues them.

use super::manifest::{point_state, Manifest, PointState};
use crate::numbers::fit;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How many runs at a time, and threads each, when the user does not say: two threads
/// a run (the dynamics of one run work side by side, and two keep a run's own
/// parallelism), as many runs as that fills the cores.
pub fn default_split(cores: usize, jobs: Option<usize>) -> (usize, usize) {
    let cores = cores.max(1);
    let jobs = jobs.filter(|&j| j > 0).unwrap_or((cores / 2).max(1));
    (jobs, (cores / jobs).max(1))
}

pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `points` of the sweep in `dir`, `jobs` at a time with `threads` each, reporting
/// on `out`; returns each point's state when it ended.
pub fn run(
    dir: &Path,
    manifest: &Manifest,
    points: &[usize],
    (jobs, threads): (usize, usize),
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<BTreeMap<usize, PointState>> {
    let exe = std::env::current_exe().map_err(|e| Error::io("noiselab's own executable", e))?;
    let logs = dir.join(super::manifest::LOG_DIR);
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let started = Instant::now();
    let mut waiting: std::collections::VecDeque<usize> = points.iter().copied().collect();
    let mut running: Vec<(usize, Child, Instant)> = vec![];
    let mut ended = BTreeMap::new();
    let mut durations = vec![];
    let mut last_status = Instant::now();
    let line = |out: &mut dyn Write, text: String| {
        let _ = writeln!(out, "[{}] {text}", clock(started.elapsed()));
    };
    while !waiting.is_empty() || !running.is_empty() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        while running.len() < jobs {
            let Some(index) = waiting.pop_front() else {
                break;
            };
            let point = manifest.point(index)?;
            let log_path = point.log_path(dir);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| Error::io(&log_path, e))?;
            let err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
            let child = Command::new(&exe)
                .args(["sweep", "point"])
                .arg(dir)
                .arg(index.to_string())
                .args(["--threads", &threads.to_string()])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|e| Error::io(&exe, e))?;
            line(
                out,
                format!(
                    "{} started ({}); {} running, {} waiting",
                    point.dir,
                    point.describe(),
                    running.len() + 1,
                    waiting.len()
                ),
            );
            running.push((index, child, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            let exited = running[i]
                .1
                .try_wait()
                .map_err(|e| Error::io("a sweep point's process", e))?;
            let Some(code) = exited else {
                i += 1;
                continue;
            };
            let (index, _, since) = running.swap_remove(i);
            let point = manifest.point(index)?;
            let state = point_state(&point.run_dir(dir))
                .map(|(s, _)| s)
                .unwrap_or(PointState::Failed);
            let took = since.elapsed();
            if state == PointState::Finished {
                durations.push(took.as_secs_f64());
            }
            ended.insert(index, state);
            let why = match state {
                PointState::Finished => String::new(),
                _ => format!(
                    " (exit {}; log {}: {})",
                    code.code().map_or("by signal".into(), |c| c.to_string()),
                    point.log_path(dir).display(),
                    last_line(&point.log_path(dir))
                ),
            };
            line(
                out,
                format!(
                    "{} {} after {}{why}; {} of {} ended{}",
                    point.dir,
                    state.key(),
                    clock(took),
                    ended.len(),
                    points.len(),
                    eta(&durations, waiting.len() + running.len(), jobs)
                ),
            );
        }
        if last_status.elapsed() >= Duration::from_secs(60) && !running.is_empty() {
            last_status = Instant::now();
            let names: Vec<&str> = running
                .iter()
                .filter_map(|(i, _, _)| manifest.points.get(*i).map(|p| p.dir.as_str()))
                .collect();
            line(
                out,
                format!(
                    "{} of {} ended, running: {}, {} waiting{}",
                    ended.len(),
                    points.len(),
                    names.join(", "),
                    waiting.len(),
                    eta(&durations, waiting.len() + running.len(), jobs)
                ),
            );
        }
    }
    if !running.is_empty() {
        line(
            out,
            format!(
                "stopping: asking {} running point(s) to checkpoint and stop",
                running.len()
            ),
        );
        for (_, child, _) in &running {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for (index, mut child, _) in running {
            let _ = child.wait();
            let point = manifest.point(index)?;
            let state = point_state(&point.run_dir(dir))
                .map(|(s, _)| s)
                .unwrap_or(PointState::Interrupted);
            ended.insert(index, state);
        }
    }
    Ok(ended)
}

/// `h:mm:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The remaining time if the points left take as long as the finished ones did.
fn eta(durations: &[f64], left: usize, jobs: usize) -> String {
    if durations.is_empty() || left == 0 {
        return String::new();
    }
    let mean = durations.iter().sum::<f64>() / durations.len() as f64;
    let rounds = left.div_ceil(jobs.max(1)) as f64;
    format!(
        "; about {} left ({} s a point so far)",
        clock(Duration::from_secs_f64(mean * rounds)),
        fit(mean).trim()
    )
}

/// The last non-empty line of a log, for a failure's message.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "(empty)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fills_the_cores() {
        assert_eq!(default_split(2, None), (1, 2));
        assert_eq!(default_split(16, None), (8, 2));
        assert_eq!(default_split(1, None), (1, 1));
        assert_eq!(default_split(8, Some(3)), (3, 2));
        assert_eq!(default_split(2, Some(4)), (4, 1));
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
    }
}
