//! `run.h5`: the analysis copy of the record, derived from the journal and written
//! atomically. Layout: `docs/SCHEMA.md` (schema version [`SCHEMA_VERSION`]).

use super::state::{aligned_columns, RecordState};
use crate::events::{ReplicateSummary, RunStatus, SpectrumOf};
use crate::{Error, Result};
use hdf5::types::VarLenUnicode;
use ndarray::{Array1, Array2};
use std::collections::BTreeMap;
use std::path::Path;

pub const FILE_NAME: &str = "run.h5";
/// Layout version this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn text(s: &str) -> VarLenUnicode {
    // NUL cannot be stored in an HDF5 string; none of ours has one.
    s.replace('\0', " ")
        .parse()
        .unwrap_or_else(|_| VarLenUnicode::new())
}

/// Rows of equal length, NaN-padded to the longest (a diverged replicate stops early).
fn stacked<'a>(rows: impl Iterator<Item = Option<&'a [f64]>> + Clone) -> ndarray::ArrayD<f64> {
    let n = rows.clone().count();
    let len = rows.clone().flatten().map(<[f64]>::len).max().unwrap_or(0);
    let mut a = Array2::from_elem((n, len), f64::NAN);
    for (i, r) in rows.enumerate() {
        for (j, v) in r.unwrap_or_default().iter().enumerate() {
            a[(i, j)] = *v;
        }
    }
    a.into_dyn()
}

/// Writes `run.h5` for `state` with `status` and the experiment's `summary`
/// (its per-dynamics numbers become attributes), atomically.
pub fn write(
    path: &Path,
    state: &RecordState,
    status: RunStatus,
    summary: &serde_json::Value,
) -> Result<()> {
    super::write_atomically(path, |p| write_file(p, state, status, summary))
}

struct W<'a> {
    path: &'a Path,
    deflate: bool,
}

impl W<'_> {
    fn err(&self) -> impl Fn(hdf5::Error) -> Error + '_ {
        h5err(self.path)
    }

    fn attr_str(&self, loc: &hdf5::Location, name: &str, value: &str) -> Result<()> {
        loc.new_attr::<VarLenUnicode>()
            .create(name)
            .and_then(|a| a.write_scalar(&text(value)))
            .map_err(self.err())
    }

    fn attr<T: hdf5::H5Type>(&self, loc: &hdf5::Location, name: &str, value: T) -> Result<()> {
        loc.new_attr::<T>()
            .create(name)
            .and_then(|a| a.write_scalar(&value))
            .map_err(self.err())
    }

    /// A chunked dataset, compressed where the library has zlib; 1-D ones extendable.
    fn data<T: hdf5::H5Type, D: ndarray::Dimension>(
        &self,
        g: &hdf5::Group,
        name: &str,
        a: &ndarray::Array<T, D>,
    ) -> Result<()> {
        let shape = a.shape().to_vec();
        let mut chunk: Vec<usize> = shape.iter().map(|&n| n.clamp(1, 4096)).collect();
        if let Some(first) = chunk.first_mut() {
            if shape.len() > 1 {
                *first = (*first).min(16);
            }
        }
        if shape.len() == 1 {
            // Extendable: a later writer can append iterations.
            let mut b = g.new_dataset::<T>().chunk(chunk);
            if self.deflate {
                b = b.shuffle().deflate(4);
            }
            let ds = b
                .shape(hdf5::SimpleExtents::resizable(shape.clone()))
                .create(name)
                .map_err(self.err())?;
            ds.write(a).map_err(self.err())?;
            return Ok(());
        }
        let mut b = g.new_dataset_builder().with_data(a).chunk(chunk);
        if self.deflate {
            b = b.shuffle().deflate(4);
        }
        b.create(name).map_err(self.err())?;
        Ok(())
    }
}

fn write_file(
    path: &Path,
    state: &RecordState,
    status: RunStatus,
    summary: &serde_json::Value,
) -> Result<()> {
    let w = W {
        path,
        deflate: hdf5::filters::deflate_available(),
    };
    let e = h5err(path);
    let file = hdf5::File::create(path).map_err(&e)?;
    let h = &state.header;
    w.attr(&file, "schema_version", SCHEMA_VERSION)?;
    w.attr_str(&file, "noiselab_version", &h.noiselab_version)?;
    w.attr_str(
        &file,
        "git_describe",
        h.git_describe.as_deref().unwrap_or(""),
    )?;
    w.attr_str(&file, "experiment", state.config.experiment.key())?;
    w.attr_str(&file, "config", &h.config_toml)?;
    w.attr_str(&file, "config_source", &h.config_source)?;
    w.attr_str(&file, "created", &h.created)?;
    w.attr_str(&file, "status", status.key())?;
    w.attr_str(&file, "device", &h.device)?;
    w.attr(&file, "seed", h.seed)?;
    let root = file.create_group("dynamics").map_err(&e)?;
    let labels = state.replicate_labels();
    for &kind in &state.config.dynamics {
        let g = root.create_group(kind.key()).map_err(&e)?;
        w.attr_str(&g, "label", kind.label())?;
        if let Some(flag) = state.health_of(kind) {
            w.attr_str(&g, "health", flag.health.key())?;
            w.attr_str(&g, "health_detail", &flag.detail)?;
        }
        if let Some(numbers) = summary["dynamics"][kind.key()].as_object() {
            for (name, value) in numbers {
                match value {
                    serde_json::Value::Number(n) if n.is_u64() => {
                        w.attr(&g, name, n.as_u64().unwrap_or_default())?
                    }
                    serde_json::Value::Number(n) => {
                        w.attr(&g, name, n.as_f64().unwrap_or(f64::NAN))?
                    }
                    _ => {}
                }
            }
        }
        let replicates = state.replicates(kind);
        if !replicates.is_empty() {
            write_replicates(&w, &g, &replicates)?;
        }
        if labels.is_empty() {
            write_metrics(&w, &g, &state.metric_series(kind))?;
        } else {
            for (r, label) in labels.iter().enumerate() {
                let rg = g.create_group(&format!("replicates/{r}")).map_err(&e)?;
                w.attr_str(&rg, "label", label)?;
                let series = state.metrics.get(&(kind, r)).cloned().unwrap_or_default();
                write_metrics(&w, &rg, &series)?;
            }
        }
        for of in [SpectrumOf::Hessian, SpectrumOf::Noise] {
            if let Some(entries) = state.spectra.get(&(kind, of)) {
                let sg = g
                    .create_group(&format!("spectra/{}", of.key()))
                    .map_err(&e)?;
                let k = entries.iter().map(|s| s.values.len()).max().unwrap_or(0);
                let mut values = Array2::from_elem((entries.len(), k), f64::NAN);
                for (i, s) in entries.iter().enumerate() {
                    for (j, v) in s.values.iter().enumerate() {
                        values[(i, j)] = *v;
                    }
                }
                w.data(
                    &sg,
                    "replicate",
                    &entries
                        .iter()
                        .map(|s| s.replicate as u64)
                        .collect::<Array1<u64>>(),
                )?;
                w.data(
                    &sg,
                    "iteration",
                    &entries.iter().map(|s| s.iteration).collect::<Array1<u64>>(),
                )?;
                w.data(&sg, "values", &values)?;
            }
        }
        write_checkpoints(&w, &g, state, kind)?;
    }
    file.close().map_err(&e)?;
    Ok(())
}

/// The finished replicates stacked: `replicate`, `success`, one `[replicates, T]`
/// dataset per series and one `[replicates, …shape]` per array.
fn write_replicates(w: &W, g: &hdf5::Group, runs: &[&ReplicateSummary]) -> Result<()> {
    let replicate: Array1<u64> = runs.iter().map(|r| r.replicate as u64).collect();
    w.data(g, "replicate", &replicate)?;
    if runs.iter().all(|r| r.success.is_some()) {
        let success: Array1<u8> = runs
            .iter()
            .map(|r| u8::from(r.success == Some(true)))
            .collect();
        w.data(g, "success", &success)?;
    }
    for (metric, _) in &runs[0].series {
        let rows = runs.iter().map(|r| r.series(*metric));
        w.data(g, metric.key(), &stacked(rows))?;
    }
    for array in &runs[0].arrays {
        // Every replicate's array padded to the largest shape seen.
        let found: Vec<_> = runs.iter().map(|r| r.array(&array.name)).collect();
        let mut shape = array.shape.clone();
        for a in found.iter().flatten() {
            if a.shape.len() == shape.len() {
                for (s, n) in shape.iter_mut().zip(&a.shape) {
                    *s = (*s).max(*n);
                }
            }
        }
        let mut full = vec![runs.len()];
        full.extend(&shape);
        let mut out = ndarray::ArrayD::from_elem(full, f64::NAN);
        for (i, a) in found.iter().enumerate() {
            let Some(a) = a.filter(|a| a.shape.len() == shape.len()) else {
                continue;
            };
            let Ok(view) = ndarray::ArrayViewD::from_shape(a.shape.clone(), &a.values) else {
                continue;
            };
            let mut slot = out.index_axis_mut(ndarray::Axis(0), i);
            let region: Vec<ndarray::SliceInfoElem> = a
                .shape
                .iter()
                .map(|&n| ndarray::SliceInfoElem::from(0..n))
                .collect();
            slot.slice_mut(region.as_slice()).assign(&view);
        }
        w.data(g, &array.name, &out)?;
    }
    Ok(())
}

/// The checkpoint iterations of each trajectory and the θ of its latest checkpoint file.
fn write_checkpoints(
    w: &W,
    g: &hdf5::Group,
    state: &RecordState,
    kind: crate::dynamics::DynamicsKind,
) -> Result<()> {
    let entries: Vec<(usize, &std::collections::BTreeSet<u64>)> = state
        .checkpoints
        .iter()
        .filter(|((k, _), _)| *k == kind)
        .map(|((_, r), its)| (*r, its))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let run_dir = w.path.parent().unwrap_or(Path::new("."));
    let mut latest = vec![];
    for &(r, _) in &entries {
        if let Some(c) = super::checkpoint::read(run_dir, kind, r)? {
            latest.push((r, c));
        }
    }
    let cg = g.create_group("checkpoints").map_err(w.err())?;
    let rows = entries
        .iter()
        .flat_map(|(r, its)| its.iter().map(move |t| (*r as u64, *t)));
    w.data(
        &cg,
        "replicate",
        &rows.clone().map(|p| p.0).collect::<Array1<u64>>(),
    )?;
    w.data(
        &cg,
        "iteration",
        &rows.map(|p| p.1).collect::<Array1<u64>>(),
    )?;
    let d = latest.iter().map(|(_, c)| c.theta.len()).max().unwrap_or(0);
    let mut theta = Array2::from_elem((latest.len(), d), f64::NAN);
    for (i, (_, c)) in latest.iter().enumerate() {
        for (j, v) in c.theta.iter().enumerate() {
            theta[(i, j)] = *v;
        }
    }
    let lg = cg.create_group("latest").map_err(w.err())?;
    w.data(
        &lg,
        "replicate",
        &latest
            .iter()
            .map(|(r, _)| *r as u64)
            .collect::<Array1<u64>>(),
    )?;
    w.data(
        &lg,
        "iteration",
        &latest
            .iter()
            .map(|(_, c)| c.iteration as u64)
            .collect::<Array1<u64>>(),
    )?;
    w.data(&lg, "theta", &theta)?;
    Ok(())
}

fn write_metrics(w: &W, g: &hdf5::Group, metrics: &super::state::MetricSeries) -> Result<()> {
    let mg = g.create_group("metrics").map_err(w.err())?;
    let (iteration, columns) = aligned_columns(metrics);
    w.data(&mg, "iteration", &Array1::from(iteration))?;
    for (m, col) in columns {
        w.data(&mg, m.key(), &Array1::from(col))?;
    }
    Ok(())
}

/// What `inspect` and `export` need from a `run.h5`.
#[derive(Clone, Debug, PartialEq)]
pub struct H5Run {
    pub attrs: BTreeMap<String, String>,
    pub dynamics: Vec<H5Dynamics>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct H5Dynamics {
    /// The dynamics' key (`sgd`), as everywhere in the record.
    pub key: String,
    /// Which trajectory, when the dynamics has several named ones (the one-hidden
    /// widths): its index and label (`h = 200`). `None` for one trajectory per dynamics.
    pub replicate: Option<(usize, String)>,
    /// For people: the dynamics' label, with the replicate's when there is one.
    pub label: String,
    /// Toy: (successes, finished seeds, diverged).
    pub toy: Option<(u64, u64, u64)>,
    pub iteration: Vec<u64>,
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl H5Dynamics {
    /// A name unique within the run: the dynamics' key, with the replicate's label when
    /// it has several (`sgd/h=200`).
    pub fn id(&self) -> String {
        match &self.replicate {
            None => self.key.clone(),
            Some((_, l)) => format!("{}/{}", self.key, l.replace(' ', "")),
        }
    }
}

/// Reads a `run.h5`, checking that it is one of ours and not from a newer noiselab.
/// Every failure is an error naming the file; nothing panics.
pub fn read(path: &Path) -> Result<H5Run> {
    let bad = |what: String| Error::unreadable(path, what);
    if !path.exists() {
        return Err(bad("no such file".into()));
    }
    let file =
        hdf5::File::open(path).map_err(|e| bad(format!("not a readable HDF5 file ({e})")))?;
    let version: u32 = file
        .attr("schema_version")
        .and_then(|a| a.read_scalar())
        .map_err(|_| bad("not a noiselab record: no schema_version attribute".into()))?;
    if version > SCHEMA_VERSION {
        return Err(bad(format!(
            "schema version {version} was written by a newer noiselab; this build reads up to {SCHEMA_VERSION}"
        )));
    }
    let mut attrs = BTreeMap::new();
    for name in file.attr_names().map_err(|e| bad(e.to_string()))? {
        let a = file.attr(&name).map_err(|e| bad(e.to_string()))?;
        let value = a
            .read_scalar::<VarLenUnicode>()
            .map(|s| s.as_str().to_string())
            .or_else(|_| a.read_scalar::<u64>().map(|v| v.to_string()))
            .or_else(|_| a.read_scalar::<u32>().map(|v| v.to_string()))
            .map_err(|e| bad(format!("attribute {name}: {e}")))?;
        attrs.insert(name, value);
    }
    for required in ["experiment", "status", "config"] {
        if !attrs.contains_key(required) {
            return Err(bad(format!(
                "not a noiselab record: no {required} attribute"
            )));
        }
    }
    let root = file
        .group("dynamics")
        .map_err(|_| bad("not a noiselab record: no /dynamics group".into()))?;
    let mut dynamics = vec![];
    for key in root.member_names().map_err(|e| bad(e.to_string()))? {
        let g = root
            .group(&key)
            .map_err(|e| bad(format!("/dynamics/{key}: {e}")))?;
        let label = g
            .attr("label")
            .and_then(|a| a.read_scalar::<VarLenUnicode>())
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| key.clone());
        let toy = match (g.attr("successes"), g.attr("seeds"), g.attr("diverged")) {
            (Ok(s), Ok(n), Ok(d)) => Some((
                s.read_scalar()
                    .map_err(|e| bad(format!("/dynamics/{key} successes: {e}")))?,
                n.read_scalar()
                    .map_err(|e| bad(format!("/dynamics/{key} seeds: {e}")))?,
                d.read_scalar()
                    .map_err(|e| bad(format!("/dynamics/{key} diverged: {e}")))?,
            )),
            _ => None,
        };
        // One metrics group, or one per named replicate (the one-hidden widths).
        let mut groups = vec![];
        if let Ok(mg) = g.group("metrics") {
            groups.push((None, label.clone(), format!("/dynamics/{key}/metrics"), mg));
        } else if let Ok(reps) = g.group("replicates") {
            let mut names = reps.member_names().map_err(|e| bad(e.to_string()))?;
            names.sort_by_key(|n| n.parse::<usize>().unwrap_or(usize::MAX));
            // One trajectory (FashionMNIST's "from θ_GD") is the dynamics itself.
            let single = names.len() == 1;
            for r in names {
                let rg = reps
                    .group(&r)
                    .map_err(|e| bad(format!("/dynamics/{key}/replicates/{r}: {e}")))?;
                let rl = rg
                    .attr("label")
                    .and_then(|a| a.read_scalar::<VarLenUnicode>())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| r.clone());
                let mg = rg.group("metrics").map_err(|_| {
                    bad(format!("/dynamics/{key}/replicates/{r}: no metrics group"))
                })?;
                let index = r.parse::<usize>().unwrap_or(0);
                groups.push((
                    (!single).then(|| (index, rl.clone())),
                    if single {
                        label.clone()
                    } else {
                        format!("{label} · {rl}")
                    },
                    format!("/dynamics/{key}/replicates/{r}/metrics"),
                    mg,
                ));
            }
        } else {
            return Err(bad(format!("/dynamics/{key}: no metrics group")));
        }
        for (replicate, label, at, mg) in groups {
            let (iteration, metrics) = read_metrics(&mg, &at, &bad)?;
            dynamics.push(H5Dynamics {
                key: key.clone(),
                replicate,
                label,
                toy,
                iteration,
                metrics,
            });
        }
    }
    Ok(H5Run { attrs, dynamics })
}

type Columns = (Vec<u64>, BTreeMap<String, Vec<f64>>);

/// The `iteration` axis and every metric column of a metrics group, checked aligned.
fn read_metrics(mg: &hdf5::Group, at: &str, bad: &dyn Fn(String) -> Error) -> Result<Columns> {
    let iteration: Vec<u64> = mg
        .dataset("iteration")
        .and_then(|d| d.read_raw())
        .map_err(|e| bad(format!("{at}/iteration: {e}")))?;
    let mut metrics = BTreeMap::new();
    for name in mg.member_names().map_err(|e| bad(e.to_string()))? {
        if name == "iteration" {
            continue;
        }
        let v: Vec<f64> = mg
            .dataset(&name)
            .and_then(|d| d.read_raw())
            .map_err(|e| bad(format!("{at}/{name}: {e}")))?;
        if v.len() != iteration.len() {
            return Err(bad(format!(
                "{at}/{name} has {} values for {} iterations",
                v.len(),
                iteration.len()
            )));
        }
        metrics.insert(name, v);
    }
    Ok((iteration, metrics))
}
