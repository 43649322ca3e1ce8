//! What a run leaves behind in `runs/<run>/`: `run.h5` (the record) and `summary.json`.
//! Files are written under a temporary name, synced and renamed, so a reader never
//! sees a half-written file.

pub mod checkpoint;
pub mod h5;
pub mod integrity;
pub mod journal;
pub mod recorder;
pub mod run_dir;
pub mod state;
pub mod summary;
pub mod view;

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Writes `path` via `<path>.partial` + fsync + rename.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    write(&partial)?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}
