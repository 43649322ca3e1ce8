//! `run.h5` of the toy experiment.
//!
//! ```text
//! /                      attrs: noiselab_version, experiment = "toy2d", config (resolved TOML),
//!                               config_source, seed, created (UTC), status
//!                               (finished | interrupted | failed)
//! /dynamics/<key>/       attrs: label, success_rate, successes, seeds (finished), diverged
//!     replicate          u64 [seeds]                      seed index of each row
//!     trajectories       f64 [seeds, iterations + 1, 2]   θ_0 … θ_T (NaN after a divergence)
//!     tr_h_noise         f64 [seeds, iterations]          Tr(H_t·Cov n_t)  (Fig. 1c)
//!     tr_h_sigma         f64 [seeds, iterations]          Tr(H_t·Σ_t)
//!     tr_h_sigma_iso     f64 [seeds, iterations]          Tr(H_t)·Tr(Σ_t)/D
//!     loss               f64 [seeds, iterations]          L(θ_t)
//!     success            u8  [seeds]                      1 = ended in the flat basin (Fig. 1b)
//!
//! `seeds` counts the finished replicates: all of them unless the run was interrupted.
//! ```

use crate::config::LoadedConfig;
use crate::events::RunStatus;
use crate::experiments::toy2d::{ToyOutcome, ToyRun};
use crate::{Error, Result};
use hdf5::types::VarLenUnicode;
use ndarray::{Array1, Array2, Array3};
use std::path::Path;

fn h5err(path: &Path) -> impl Fn(hdf5::Error) -> Error + '_ {
    move |e| Error::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn text(s: &str) -> VarLenUnicode {
    // Strings from our own config/labels never contain NUL bytes.
    s.parse().unwrap_or_else(|_| VarLenUnicode::new())
}

fn series(runs: &[ToyRun], len: usize, get: impl Fn(&ToyRun) -> &[f64]) -> Array2<f64> {
    let mut a = Array2::from_elem((runs.len(), len), f64::NAN);
    for (i, r) in runs.iter().enumerate() {
        for (j, v) in get(r).iter().take(len).enumerate() {
            a[(i, j)] = *v;
        }
    }
    a
}

pub fn write(
    path: &Path,
    loaded: &LoadedConfig,
    outcome: &ToyOutcome,
    created: &str,
    status: RunStatus,
) -> Result<()> {
    super::write_atomically(path, |p| write_file(p, loaded, outcome, created, status))
}

fn write_file(
    path: &Path,
    loaded: &LoadedConfig,
    outcome: &ToyOutcome,
    created: &str,
    status: RunStatus,
) -> Result<()> {
    let e = h5err(path);
    let file = hdf5::File::create(path).map_err(&e)?;
    let attr_str = |loc: &hdf5::Location, name: &str, value: &str| -> Result<()> {
        loc.new_attr::<VarLenUnicode>()
            .create(name)
            .and_then(|a| a.write_scalar(&text(value)))
            .map_err(&e)
    };
    attr_str(&file, "noiselab_version", env!("CARGO_PKG_VERSION"))?;
    attr_str(&file, "experiment", "toy2d")?;
    attr_str(&file, "config", &loaded.resolved_toml)?;
    attr_str(&file, "config_source", &loaded.source)?;
    attr_str(&file, "created", created)?;
    attr_str(&file, "status", status.key())?;
    file.new_attr::<u64>()
        .create("seed")
        .and_then(|a| a.write_scalar(&loaded.config.seed))
        .map_err(&e)?;
    let t = outcome.toy.iterations;
    // Compressed (shuffle + deflate) where the HDF5 library has zlib, as Debian's does.
    let deflate = hdf5::filters::deflate_available();
    let root = file.create_group("dynamics").map_err(&e)?;
    for s in &outcome.series {
        let g = root.create_group(s.kind.key()).map_err(&e)?;
        attr_str(&g, "label", s.kind.label())?;
        g.new_attr::<f64>()
            .create("success_rate")
            .and_then(|a| a.write_scalar(&s.success_rate()))
            .map_err(&e)?;
        for (name, v) in [
            ("successes", s.successes() as u64),
            ("seeds", s.runs.len() as u64),
            ("diverged", s.diverged() as u64),
        ] {
            g.new_attr::<u64>()
                .create(name)
                .and_then(|a| a.write_scalar(&v))
                .map_err(&e)?;
        }
        let mut traj = Array3::from_elem((s.runs.len(), t + 1, 2), f64::NAN);
        for (i, r) in s.runs.iter().enumerate() {
            for (j, w) in r.trajectory.iter().enumerate() {
                traj[(i, j, 0)] = w[0];
                traj[(i, j, 1)] = w[1];
            }
        }
        let chunk_seeds = s.runs.len().clamp(1, 16);
        let mut b = g.new_dataset_builder().with_data(&traj);
        b = b.chunk((chunk_seeds, t + 1, 2));
        if deflate {
            b = b.shuffle().deflate(4);
        }
        b.create("trajectories").map_err(&e)?;
        for (name, data) in [
            ("tr_h_noise", series(&s.runs, t, |r| &r.tr_h_noise)),
            ("tr_h_sigma", series(&s.runs, t, |r| &r.tr_h_sigma)),
            ("tr_h_sigma_iso", series(&s.runs, t, |r| &r.tr_h_sigma_iso)),
            ("loss", series(&s.runs, t, |r| &r.loss)),
        ] {
            let mut b = g
                .new_dataset_builder()
                .with_data(&data)
                .chunk((chunk_seeds, t.max(1)));
            if deflate {
                b = b.shuffle().deflate(4);
            }
            b.create(name).map_err(&e)?;
        }
        let replicate: Array1<u64> = s.runs.iter().map(|r| r.replicate as u64).collect();
        g.new_dataset_builder()
            .with_data(&replicate)
            .create("replicate")
            .map_err(&e)?;
        let success: Array1<u8> = s.runs.iter().map(|r| r.success as u8).collect();
        g.new_dataset_builder()
            .with_data(&success)
            .create("success")
            .map_err(&e)?;
    }
    file.close().map_err(&e)?;
    Ok(())
}
