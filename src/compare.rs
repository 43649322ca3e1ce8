//! `noiselab compare`: statistics over seeds. Runs are grouped by what their configs
//! set differently (the grid of a sweep; the seed, name, threads and record settings
//! never count), and per group, dynamics and metric `compare` reports the value at the
//! last planned iteration and its mean over an iteration window: mean, sd and a 95 %
//! t interval over the runs, and paired differences to a baseline dynamics of the same
//! run (same seed, same θ_GD: the paired t interval and the sign test). Trajectories
//! flagged collapsed or diverged are counted and reported both with and without them,
//! never averaged in silently (docs/METHOD.md §7).

use crate::dynamics::DynamicsKind;
use crate::events::{by_priority, Health};
use crate::numbers::fit;
use crate::record::view::{self, RunView};
use crate::stats::{Paired, Summary, LEVEL};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The escape rate of the toy's seeds, a value `compare` adds for runs whose dynamics
/// report yes/no outcomes.
pub const ESCAPE_RATE: &str = "escape_rate";

/// What `compare` is asked.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Only these metrics (all when empty).
    pub metrics: Vec<String>,
    /// Iterations (record numbering, both ends included) to average over.
    pub window: Option<(u64, u64)>,
    /// The dynamics differences are taken to (`gd`).
    pub baseline: Option<String>,
}

/// One run, as compare reads it.
struct Run {
    dir: PathBuf,
    seed: u64,
    /// Flattened config (`key` → TOML value) without what never makes runs differ.
    settings: BTreeMap<String, String>,
    view: RunView,
}

/// A trajectory's numbers in one run: dynamics id → metric → (iteration, value).
type Series = BTreeMap<String, BTreeMap<String, Vec<(u64, f64)>>>;
/// Dynamics id → (config key, label).
type Names = BTreeMap<String, (String, String)>;
/// (`final` or `window`, the iteration of a final value, the window).
type Statistic = (String, Option<u64>, Option<(u64, u64)>);

/// The runs of a sweep directory (its points with a record) or the given run
/// directories; notes say what was left out.
pub fn collect(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut dirs = vec![];
    let mut notes = vec![];
    for path in paths {
        if path.join(crate::sweep::manifest::FILE_NAME).exists() {
            let manifest = crate::sweep::manifest::Manifest::load(path)?;
            for p in &manifest.points {
                let d = p.run_dir(path);
                if d.join(crate::record::journal::FILE_NAME).exists() || d.join("run.h5").exists() {
                    dirs.push(d);
                } else {
                    notes.push(format!("{}: not started, left out", p.dir));
                }
            }
        } else {
            crate::record::run_dir::check_run_arg(path, false)?;
            dirs.push(path.clone());
        }
    }
    if dirs.is_empty() {
        return Err(Error::Usage(
            "nothing to compare: no run has a record yet".into(),
        ));
    }
    Ok((dirs, notes))
}

fn read_run(dir: &Path) -> Result<Run> {
    let view = view::open(dir)?;
    let config = view.run.attrs.get("config").cloned().unwrap_or_default();
    let table: toml::Table = config
        .parse()
        .map_err(|e| Error::unreadable(dir, format!("the recorded config does not parse: {e}")))?;
    let mut settings = BTreeMap::new();
    flatten("", &toml::Value::Table(table), &mut settings);
    let seed = settings
        .get("seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    settings
        .retain(|k, _| !(k == "seed" || k == "name" || k == "threads" || k.starts_with("record.")));
    Ok(Run {
        dir: dir.to_path_buf(),
        seed,
        settings,
        view,
    })
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// Statistics of one (dynamics, metric, statistic) over a group's runs.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub dynamics: String,
    pub label: String,
    /// Runs of the group; of them: with a value, flagged, without a value.
    pub runs: usize,
    pub collapsed: usize,
    pub diverged: usize,
    /// Runs without a value (not reached, or ended early) and not flagged.
    pub missing: usize,
    /// Every run with a value, flagged or not.
    pub all: Option<Summary>,
    /// Without the collapsed and diverged ones (same as `all` when none is flagged).
    pub healthy: Option<Summary>,
    pub paired_all: Option<Paired>,
    pub paired_healthy: Option<Paired>,
}

/// One statistic of one metric in one group: the final value or a window mean.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub metric: String,
    /// `final` (at `iteration`) or `window`.
    pub statistic: String,
    pub iteration: Option<u64>,
    pub window: Option<(u64, u64)>,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// What sets this group apart from the others (empty when there is one group).
    pub settings: BTreeMap<String, String>,
    pub runs: Vec<String>,
    pub seeds: Vec<u64>,
    pub tables: Vec<Table>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub experiment: String,
    pub level: f64,
    pub baseline: Option<String>,
    pub groups: Vec<Group>,
    pub notes: Vec<String>,
}

pub fn compare(dirs: &[PathBuf], request: &Request, mut notes: Vec<String>) -> Result<Comparison> {
    let runs = dirs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>>>()?;
    let experiments: BTreeSet<&str> = runs
        .iter()
        .map(|r| {
            r.view
                .run
                .attrs
                .get("experiment")
                .map_or("?", String::as_str)
        })
        .collect();
    if experiments.len() > 1 {
        return Err(Error::Usage(format!(
            "these runs are of different experiments ({}); compare runs of one experiment",
            experiments.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let experiment = experiments.into_iter().next().unwrap_or("?").to_string();
    // Keys whose value differs between runs define the groups.
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.settings.keys()).collect();
    let varying: Vec<&String> = keys
        .into_iter()
        .filter(|k| {
            let values: BTreeSet<Option<&String>> =
                runs.iter().map(|r| r.settings.get(*k)).collect();
            values.len() > 1
        })
        .collect();
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Run>> = BTreeMap::new();
    for run in &runs {
        let key = varying
            .iter()
            .map(|k| {
                (
                    (*k).clone(),
                    run.settings
                        .get(*k)
                        .cloned()
                        .unwrap_or_else(|| "(unset)".into()),
                )
            })
            .collect();
        groups.entry(key).or_default().push(run);
    }
    let baseline = request.baseline.clone();
    if let Some(b) = &baseline {
        let known = runs
            .iter()
            .any(|r| r.view.run.dynamics.iter().any(|d| &d.key == b));
        if !known {
            return Err(Error::Usage(format!(
                "--baseline {b}: no run has this dynamics; these runs have {}",
                dynamics_keys(&runs).join(", ")
            )));
        }
    }
    let mut out = vec![];
    for (settings, members) in groups {
        let mut seen = BTreeSet::new();
        for r in &members {
            if !seen.insert(r.seed) {
                notes.push(format!(
                    "{}: seed {} appears twice in one group; its runs count as separate samples",
                    r.dir.display(),
                    r.seed
                ));
            }
        }
        out.push(group(settings.into_iter().collect(), &members, request));
    }
    Ok(Comparison {
        experiment,
        level: LEVEL,
        baseline,
        groups: out,
        notes,
    })
}

fn dynamics_keys(runs: &[Run]) -> Vec<String> {
    let keys: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.view.run.dynamics.iter().map(|d| d.key.clone()))
        .collect();
    keys.into_iter().collect()
}

/// A run's series per dynamics id, the toy's escape rate added as a final value.
fn series(run: &Run) -> (Series, Names) {
    let mut out = Series::new();
    let mut names = BTreeMap::new();
    for d in &run.view.run.dynamics {
        let id = d.id();
        names.insert(id.clone(), (d.key.clone(), d.label.clone()));
        let entry = out.entry(id).or_default();
        for (metric, values) in &d.metrics {
            let points: Vec<(u64, f64)> = d
                .iteration
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_finite())
                .map(|(&i, &v)| (i, v))
                .collect();
            entry.insert(metric.clone(), points);
        }
        if let Some((successes, finished, _)) = d.toy {
            if finished > 0 {
                let last = run.view.outline.as_ref().map_or(0, |o| o.iterations);
                entry.insert(
                    ESCAPE_RATE.into(),
                    vec![(last, successes as f64 / finished as f64)],
                );
            }
        }
    }
    (out, names)
}

fn group(settings: BTreeMap<String, String>, runs: &[&Run], request: &Request) -> Group {
    let per_run: Vec<(Series, Names)> = runs.iter().map(|r| series(r)).collect();
    // Dynamics ids in the runs' order; metrics in the dashboard's.
    let mut ids: Vec<String> = vec![];
    let mut names = BTreeMap::new();
    for (s, n) in &per_run {
        for id in s.keys() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        names.extend(n.clone());
    }
    ids.sort_by_key(|id| {
        let key = names.get(id).map_or(id.as_str(), |(k, _)| k.as_str());
        DynamicsKind::from_key(key).map_or(usize::MAX, |k| k as usize)
    });
    let mut metric_names: BTreeSet<String> = per_run
        .iter()
        .flat_map(|(s, _)| s.values().flat_map(|m| m.keys().cloned()))
        .collect();
    if !request.metrics.is_empty() {
        metric_names.retain(|m| request.metrics.contains(m));
    }
    // The dashboard's order (the mission's metrics first), the toy's escape rate first.
    let order: Vec<String> = runs
        .iter()
        .find_map(|r| r.view.outline.as_ref())
        .map(|o| {
            let metrics: Vec<_> = o.metrics.iter().map(|d| d.metric).collect();
            by_priority(&metrics)
                .iter()
                .map(|m| m.key().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut metric_names: Vec<String> = metric_names.into_iter().collect();
    metric_names.sort_by_key(|m| {
        if m == ESCAPE_RATE {
            0
        } else {
            1 + order.iter().position(|o| o == m).unwrap_or(order.len())
        }
    });
    let planned = runs
        .iter()
        .filter_map(|r| r.view.outline.as_ref().map(|o| o.iterations))
        .max();
    let flags: Vec<BTreeMap<String, Health>> = runs
        .iter()
        .map(|r| {
            r.view
                .health
                .iter()
                .map(|(k, f)| (k.key().to_string(), f.health))
                .collect()
        })
        .collect();
    let mut tables = vec![];
    for metric in &metric_names {
        // The last iteration any run measured this metric at: every run is compared
        // there, and a run without a value there (unfinished, ended early) has none.
        let last = per_run
            .iter()
            .flat_map(|(s, _)| {
                s.values()
                    .filter_map(|m| m.get(metric)?.last().map(|p| p.0))
            })
            .max()
            .or(planned);
        let mut statistics: Vec<Statistic> = vec![("final".into(), last, None)];
        if let Some(w) = request.window {
            if metric != ESCAPE_RATE {
                statistics.push(("window".into(), None, Some(w)));
            }
        }
        for (statistic, iteration, window) in statistics {
            // value[run][id]
            let values: Vec<BTreeMap<&String, f64>> = per_run
                .iter()
                .map(|(s, _)| {
                    ids.iter()
                        .filter_map(|id| {
                            let points = s.get(id)?.get(metric)?;
                            let v = match window {
                                None => points
                                    .iter()
                                    .find(|(i, _)| Some(*i) == iteration)
                                    .map(|p| p.1),
                                Some((a, b)) => {
                                    let inside: Vec<f64> = points
                                        .iter()
                                        .filter(|(i, _)| (a..=b).contains(i))
                                        .map(|p| p.1)
                                        .collect();
                                    (!inside.is_empty())
                                        .then(|| inside.iter().sum::<f64>() / inside.len() as f64)
                                }
                            }?;
                            Some((id, v))
                        })
                        .collect()
                })
                .collect();
            let rows = ids
                .iter()
                .filter(|id| values.iter().any(|v| v.contains_key(id)))
                .map(|id| {
                    let (key, label) = names.get(id).cloned().unwrap_or((id.clone(), id.clone()));
                    let flag = |r: usize| flags[r].get(&key).copied();
                    let base_id = request.baseline.as_ref().map(|b| match id.split_once('/') {
                        Some((_, rep)) => format!("{b}/{rep}"),
                        None => b.clone(),
                    });
                    let base_key = request.baseline.clone().unwrap_or_default();
                    let mut all = vec![];
                    let mut healthy = vec![];
                    let mut diff_all = vec![];
                    let mut diff_healthy = vec![];
                    let (mut collapsed, mut diverged, mut missing) = (0, 0, 0);
                    for (r, v) in values.iter().enumerate() {
                        let flagged = flag(r);
                        match flagged {
                            Some(Health::Collapsed) => collapsed += 1,
                            Some(Health::Diverged) => diverged += 1,
                            _ => {}
                        }
                        let is_flagged =
                            matches!(flagged, Some(Health::Collapsed | Health::Diverged));
                        let Some(&x) = v.get(id) else {
                            if !is_flagged {
                                missing += 1;
                            }
                            continue;
                        };
                        all.push(x);
                        if !is_flagged {
                            healthy.push(x);
                        }
                        let base = base_id.as_ref().filter(|b| *b != id).and_then(|b| v.get(b));
                        if let Some(&b) = base {
                            let base_flagged = matches!(
                                flags[r].get(&base_key),
                                Some(Health::Collapsed | Health::Diverged)
                            );
                            diff_all.push(x - b);
                            if !is_flagged && !base_flagged {
                                diff_healthy.push(x - b);
                            }
                        }
                    }
                    Row {
                        dynamics: id.clone(),
                        label,
                        runs: runs.len(),
                        collapsed,
                        diverged,
                        missing,
                        all: Summary::of(&all, LEVEL),
                        healthy: Summary::of(&healthy, LEVEL),
                        paired_all: Paired::of(&diff_all, LEVEL),
                        paired_healthy: Paired::of(&diff_healthy, LEVEL),
                    }
                })
                .collect();
            let rows: Vec<Row> = rows;
            if rows.is_empty() {
                continue;
            }
            tables.push(Table {
                metric: metric.clone(),
                statistic,
                iteration,
                window,
                rows,
            });
        }
    }
    Group {
        settings,
        runs: runs.iter().map(|r| r.dir.display().to_string()).collect(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        tables,
    }
}

/// `± half` of an interval, or `(n = 1)`.
fn mean_ci(s: &Summary) -> String {
    if s.n < 2 {
        return format!("{} (n = 1)", fit(s.mean).trim());
    }
    format!("{} ± {}", fit(s.mean).trim(), fit(s.half_width()).trim())
}

fn paired_text(p: &Paired) -> String {
    format!(
        "{:>20}  {:>2}+ {:>2}−  {:>6}",
        mean_ci(&p.difference),
        p.sign.positive,
        p.sign.negative,
        format!("{:.3}", p.sign.p_value)
    )
}

impl Comparison {
    /// The tables for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let base_label = self.baseline.clone().unwrap_or_default();
        for g in &self.groups {
            let settings = if g.settings.is_empty() {
                String::new()
            } else {
                let s: Vec<String> = g
                    .settings
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                format!(" · {}", s.join(", "))
            };
            out.push_str(&format!(
                "{}: {} run(s), seeds {}{settings}\n",
                self.experiment,
                g.runs.len(),
                seeds_text(&g.seeds)
            ));
            for t in &g.tables {
                let when = match (t.iteration, t.window) {
                    (_, Some((a, b))) => format!("mean over iterations {a}..{b}"),
                    (Some(i), None) => format!("at iteration {i}"),
                    (None, None) => "final".into(),
                };
                out.push_str(&format!(
                    "\n{} {when}: mean ± {:.0} % CI over runs{}\n",
                    t.metric,
                    self.level * 100.0,
                    if self.baseline.is_some() {
                        format!("; paired difference to {base_label} ± CI, sign test (+/− runs, p)")
                    } else {
                        String::new()
                    }
                ));
                out.push_str(&format!(
                    "  {:<18} {:>4}  {:>20}  {:>8}  {:<18}{}\n",
                    "dynamics",
                    "n",
                    "mean ± CI",
                    "sd",
                    "flagged",
                    if self.baseline.is_some() {
                        format!(
                            "{:>20}  {:>7}  {:>6}",
                            format!("Δ vs {base_label}"),
                            "sign",
                            "p"
                        )
                    } else {
                        String::new()
                    }
                ));
                for r in &t.rows {
                    out.push_str(&row_line(r, false, self.baseline.is_some()));
                    if r.collapsed + r.diverged > 0 {
                        out.push_str(&row_line(r, true, self.baseline.is_some()));
                    }
                }
            }
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    /// Tidy CSV: one line per (group, metric, statistic, dynamics, subset).
    pub fn write_csv(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(
            w,
            "group,metric,statistic,iteration_from,iteration_to,dynamics,subset,runs,collapsed,diverged,missing,n,mean,sd,ci_low,ci_high,baseline,diff_n,diff_mean,diff_ci_low,diff_ci_high,sign_positive,sign_negative,sign_p"
        )?;
        for g in &self.groups {
            let group: Vec<String> = g.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let group = csv_field(&group.join(" "));
            for t in &g.tables {
                let (from, to) = match (t.iteration, t.window) {
                    (_, Some((a, b))) => (a, b),
                    (Some(i), None) => (i, i),
                    (None, None) => (0, 0),
                };
                for r in &t.rows {
                    for (subset, s, p) in [
                        ("all", &r.all, &r.paired_all),
                        ("healthy", &r.healthy, &r.paired_healthy),
                    ] {
                        let Some(s) = s else { continue };
                        let num = |x: f64| {
                            if x.is_finite() {
                                x.to_string()
                            } else {
                                String::new()
                            }
                        };
                        let (dn, dm, dl, dh, sp, sn, pv) = match p {
                            Some(p) => (
                                p.difference.n.to_string(),
                                num(p.difference.mean),
                                num(p.difference.ci_low),
                                num(p.difference.ci_high),
                                p.sign.positive.to_string(),
                                p.sign.negative.to_string(),
                                num(p.sign.p_value),
                            ),
                            None => Default::default(),
                        };
                        writeln!(
                            w,
                            "{group},{},{},{from},{to},{},{subset},{},{},{},{},{},{},{},{},{},{},{dn},{dm},{dl},{dh},{sp},{sn},{pv}",
                            t.metric,
                            t.statistic,
                            csv_field(&r.dynamics),
                            r.runs,
                            r.collapsed,
                            r.diverged,
                            r.missing,
                            s.n,
                            num(s.mean),
                            num(s.sd),
                            num(s.ci_low),
                            num(s.ci_high),
                            self.baseline.as_deref().unwrap_or("")
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn row_line(r: &Row, healthy_only: bool, with_baseline: bool) -> String {
    let (s, p) = if healthy_only {
        (&r.healthy, &r.paired_healthy)
    } else {
        (&r.all, &r.paired_all)
    };
    let name = if healthy_only {
        "  without flagged".to_string()
    } else {
        r.label.clone()
    };
    let flagged = if healthy_only {
        String::new()
    } else {
        let mut f = vec![];
        if r.collapsed > 0 {
            f.push(format!("{} collapsed", r.collapsed));
        }
        if r.diverged > 0 {
            f.push(format!("{} diverged", r.diverged));
        }
        if r.missing > 0 {
            f.push(format!("{} no value", r.missing));
        }
        f.join(", ")
    };
    let (n, mean, sd) = match s {
        Some(s) => (s.n.to_string(), mean_ci(s), fit(s.sd).trim().to_string()),
        None => ("0".into(), "–".into(), "–".into()),
    };
    let paired = match (with_baseline, p) {
        (false, _) => String::new(),
        (true, Some(p)) => paired_text(p),
        (true, None) => format!("{:>20}", "–"),
    };
    format!("  {name:<18} {n:>4}  {mean:>20}  {sd:>8}  {flagged:<18}{paired}\n")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `0–9` for a run of seeds, else a list.
fn seeds_text(seeds: &[u64]) -> String {
    let mut s = seeds.to_vec();
    s.sort_unstable();
    match (s.first(), s.last()) {
        (Some(a), Some(b)) if (b - a) as usize + 1 == s.len() && s.len() > 2 => format!("{a}–{b}"),
        _ => s.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
    }
}

/// `A..B` (both ends included).
pub fn parse_window(text: &str) -> Result<(u64, u64)> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "--window {text}: {why}; give iterations A..B in the record's numbering (e.g. --window 4000..5000), both ends included"
        ))
    };
    let (a, b) = text.split_once("..").ok_or_else(|| bad("no `..`"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| bad("the start is not an iteration"))?;
    let b: u64 = b
        .trim()
        .trim_start_matches('=')
        .parse()
        .map_err(|_| bad("the end is not an iteration"))?;
    if b < a {
        return Err(bad("the window is reversed"));
    }
    Ok((a, b))
}
