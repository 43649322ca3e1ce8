//! `p`: the compare view's charts as PNG beside the run, drawn by matplotlib from the
//! dashboard's own series (`scripts/plot_dashboard.py`, embedded), in the background so
//! the dashboard never waits.

use super::app::App;
use crossbeam_channel::Receiver;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../../scripts/plot_dashboard.py");

/// Where the PNG files go: `figures/` in the run directory.
pub fn out_dir(app: &App) -> Option<PathBuf> {
    let dir = match &app.watch {
        Some(w) => w.lock().ok()?.dir.clone(),
        None => app.info.as_ref()?.run_dir.clone(),
    };
    Some(dir.join("figures"))
}

/// The JSON the script reads: every metric of the run, every dynamics' series.
pub fn spec(app: &App, out: &std::path::Path) -> serde_json::Value {
    let metrics: Vec<_> = app
        .metric_defs()
        .iter()
        .map(|def| {
            let series: Vec<_> = app
                .dynamics
                .iter()
                .map(|d| {
                    let pts = d.series.get(&def.metric).map(|s| s.points.clone()).unwrap_or_default();
                    json!({
                        "label": d.kind.label(),
                        "x": pts.iter().map(|p| p.0).collect::<Vec<_>>(),
                        "y": pts.iter().map(|p| if p.1.is_finite() { Some(p.1) } else { None }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"key": def.metric.key(), "label": def.label, "log": def.log_scale, "series": series})
        })
        .collect();
    json!({
        "out_dir": out,
        "experiment": app.info.as_ref().map_or("", |i| i.experiment.as_str()),
        "x_marks": app.info.as_ref().map(|i| i.x_marks.clone()).unwrap_or_default(),
        "metrics": metrics,
    })
}

/// Starts writing the PNG files; the receiver gets one line saying what happened.
pub fn spawn(app: &App) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let Some(out) = out_dir(app) else {
        let _ = tx.send("PNG: the run has not started yet".to_string());
        return rx;
    };
    let input = spec(app, &out).to_string();
    std::thread::Builder::new()
        .name("figures".into())
        .spawn(move || {
            let _ = tx.send(run(&input));
        })
        .expect("spawning the figures thread");
    rx
}

fn run(input: &str) -> String {
    let child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return format!("PNG: cannot start python3 ({e}); it needs python3 with matplotlib")
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    match child.wait_with_output() {
        Ok(o) if o.status.success() => {
            format!("PNG: {}", String::from_utf8_lossy(&o.stdout).trim())
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("").to_string();
            if last.contains("No module named") {
                format!("PNG: {last} (pip install matplotlib)")
            } else {
                format!("PNG failed: {last}")
            }
        }
        Err(e) => format!("PNG failed: {e}"),
    }
}
