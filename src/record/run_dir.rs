//! Run directories: `runs/<name>-<UTC yyyymmdd-hhmmss>` unless `--out` names one.

use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// RFC 3339 UTC time, seconds precision.
pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Creates a fresh run directory under `root` named after `name` and the current time
/// (with a numeric suffix if that name is taken).
pub fn create_timestamped(root: &Path, name: &str) -> Result<PathBuf> {
    let stamp: String = utc_now()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-");
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    for attempt in 1.. {
        let dir = if attempt == 1 {
            root.join(format!("{name}-{stamp}"))
        } else {
            root.join(format!("{name}-{stamp}-{attempt}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Uses `dir` as the run directory: created if missing; refused if it already holds a
/// run (finished or not), which is never overwritten.
pub fn create_exact(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for file in ["run.h5", "journal.bin"] {
        if dir.join(file).exists() {
            return Err(Error::io(
                dir.join(file),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "this directory already holds a run; continue an interrupted one with `noiselab resume {}`, or choose another --out directory",
                        dir.display()
                    ),
                ),
            ));
        }
    }
    Ok(dir.to_path_buf())
}
