//! `run.h5`: the analysis copy of the record, derived from the journal and written
//! atomically. Layout: `docs/SCHEMA.md` (schema version [`SCHEMA_VERSION`]).

use super::state::{aligned_columns, RecordState};
use crate::events::{Metric, RunStatus, SpectrumOf};
use crate::experiments::toy2d::ToyRun;
use crate::{Error, Result};
use hdf5::types::{VarLenArray, VarLenUnicode};
use ndarray::{Array1, Array2, Array3};
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

fn rows(runs: &[ToyRun], len: usize, get: impl Fn(&ToyRun) -> &[f64]) -> Array2<f64> {
    let mut a = Array2::from_elem((runs.len(), len), f64::NAN);
    for (i, r) in runs.iter().enumerate() {
        for (j, v) in get(r).iter().take(len).enumerate() {
            a[(i, j)] = *v;
        }
    }
    a
}

/// Writes `run.h5` for `state` with `status`, atomically.
pub fn write(path: &Path, state: &RecordState, status: RunStatus) -> Result<()> {
    super::write_atomically(path, |p| write_file(p, state, status))
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

fn write_file(path: &Path, state: &RecordState, status: RunStatus) -> Result<()> {
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
    let toy = state.toy_outcome();
    for &kind in &state.config.dynamics {
        let g = root.create_group(kind.key()).map_err(&e)?;
        w.attr_str(&g, "label", kind.label())?;
        let metrics = state.metric_series(kind, toy.as_ref());
        if let Some(s) = toy
            .as_ref()
            .and_then(|o| o.series.iter().find(|s| s.kind == kind))
        {
            let t = toy.as_ref().map_or(0, |o| o.toy.iterations);
            w.attr(&g, "success_rate", s.success_rate())?;
            w.attr(&g, "successes", s.successes() as u64)?;
            w.attr(&g, "seeds", s.runs.len() as u64)?;
            w.attr(&g, "diverged", s.diverged() as u64)?;
            let replicate: Array1<u64> = s.runs.iter().map(|r| r.replicate as u64).collect();
            w.data(&g, "replicate", &replicate)?;
            let mut traj = Array3::from_elem((s.runs.len(), t + 1, 2), f64::NAN);
            for (i, r) in s.runs.iter().enumerate() {
                for (j, p) in r.trajectory.iter().enumerate().take(t + 1) {
                    traj[(i, j, 0)] = p[0];
                    traj[(i, j, 1)] = p[1];
                }
            }
            w.data(&g, "trajectories", &traj)?;
            w.data(&g, "tr_h_noise", &rows(&s.runs, t, |r| &r.tr_h_noise))?;
            w.data(&g, "tr_h_sigma", &rows(&s.runs, t, |r| &r.tr_h_sigma))?;
            w.data(
                &g,
                "tr_h_sigma_iso",
                &rows(&s.runs, t, |r| &r.tr_h_sigma_iso),
            )?;
            w.data(&g, "loss", &rows(&s.runs, t, |r| &r.loss))?;
            let success: Array1<u8> = s.runs.iter().map(|r| r.success as u8).collect();
            w.data(&g, "success", &success)?;
        }
        let labels = state.replicate_labels();
        if labels.is_empty() {
            write_metrics(&w, &g, &metrics)?;
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
        if let Some(cps) = state.checkpoints.get(&kind) {
            let cg = g.create_group("checkpoints").map_err(&e)?;
            let d = cps.iter().map(|(_, c)| c.theta.len()).max().unwrap_or(0);
            let mut theta = Array2::from_elem((cps.len(), d), f64::NAN);
            for (i, (_, c)) in cps.iter().enumerate() {
                for (j, v) in c.theta.iter().enumerate() {
                    theta[(i, j)] = *v;
                }
            }
            w.data(
                &cg,
                "replicate",
                &cps.iter().map(|(r, _)| *r as u64).collect::<Array1<u64>>(),
            )?;
            w.data(
                &cg,
                "iteration",
                &cps.iter()
                    .map(|(_, c)| c.iteration as u64)
                    .collect::<Array1<u64>>(),
            )?;
            w.data(&cg, "theta", &theta)?;
            let states: Vec<VarLenArray<u8>> = cps
                .iter()
                .map(|(_, c)| {
                    VarLenArray::from_slice(&postcard::to_stdvec(&c.noise).unwrap_or_default())
                })
                .collect();
            cg.new_dataset_builder()
                .with_data(&Array1::from(states))
                .create("noise_state")
                .map_err(&e)?;
        }
    }
    file.close().map_err(&e)?;
    Ok(())
}

fn write_metrics(
    w: &W,
    g: &hdf5::Group,
    metrics: &BTreeMap<Metric, Vec<(u64, f64)>>,
) -> Result<()> {
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
    pub key: String,
    pub label: String,
    /// Toy: (successes, finished seeds, diverged).
    pub toy: Option<(u64, u64, u64)>,
    pub iteration: Vec<u64>,
    pub metrics: BTreeMap<String, Vec<f64>>,
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
            groups.push((
                key.clone(),
                label.clone(),
                format!("/dynamics/{key}/metrics"),
                mg,
            ));
        } else if let Ok(reps) = g.group("replicates") {
            let mut names = reps.member_names().map_err(|e| bad(e.to_string()))?;
            names.sort_by_key(|n| n.parse::<usize>().unwrap_or(usize::MAX));
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
                groups.push((
                    format!("{key}/{}", rl.replace(' ', "")),
                    format!("{label} · {rl}"),
                    format!("/dynamics/{key}/replicates/{r}/metrics"),
                    mg,
                ));
            }
        } else {
            return Err(bad(format!("/dynamics/{key}: no metrics group")));
        }
        for (key, label, at, mg) in groups {
            let (iteration, metrics) = read_metrics(&mg, &at, &bad)?;
            dynamics.push(H5Dynamics {
                key,
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
