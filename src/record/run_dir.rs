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
    std::fs::create_dir_all(root).map_err(|e| unusable("--runs-dir", root, &e))?;
    for attempt in 1.. {
        let dir = if attempt == 1 {
            root.join(format!("{name}-{stamp}"))
        } else {
            root.join(format!("{name}-{stamp}-{attempt}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(unusable("--runs-dir", root, &e)),
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Uses `dir` as the run directory: created if missing; refused if it already holds a
/// run (finished or not), which is never overwritten.
pub fn create_exact(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| unusable("--out", dir, &e))?;
    for file in ["run.h5", "journal.bin"] {
        if dir.join(file).exists() {
            return Err(Error::Usage(format!(
                "--out {}: this directory already holds a run (it has {file}), which is never \
                 overwritten; continue an interrupted one with `noiselab resume {}`, or choose \
                 another --out directory",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(dir.to_path_buf())
}

/// Why a directory option cannot be used, in words, with what to do instead.
fn unusable(option: &str, dir: &Path, e: &std::io::Error) -> Error {
    // The first existing ancestor that is not a directory is what is in the way.
    let blocker = dir
        .ancestors()
        .find(|p| p.exists())
        .filter(|p| !p.is_dir())
        .map(Path::to_path_buf);
    let why = match (&blocker, e.kind()) {
        (Some(b), _) if b == dir => "it is a file, not a directory".to_string(),
        (Some(b), _) => format!("{} is a file, not a directory", b.display()),
        (None, std::io::ErrorKind::PermissionDenied) => {
            "permission denied: this user cannot create or write it".to_string()
        }
        (None, std::io::ErrorKind::ReadOnlyFilesystem) => "the file system is read-only".into(),
        (None, std::io::ErrorKind::StorageFull) => "the disk is full".into(),
        _ => format!("cannot create it ({e})"),
    };
    Error::Usage(format!(
        "{option} {}: {why}; {option} names a directory to create (or an empty one): choose another path",
        dir.display()
    ))
}

/// Checks that `dir`, given as a command's RUN argument, is a run directory: it exists,
/// is a directory, and holds a journal or a `run.h5`; with `journal_needed` (resume,
/// repair) the journal itself. Says what is wrong and what to give instead.
pub fn check_run_arg(dir: &Path, journal_needed: bool) -> Result<()> {
    let shown = dir.display();
    if !dir.exists() {
        return Err(Error::Usage(format!(
            "{shown}: no such directory; give a run directory, as `noiselab run` prints it \
             (e.g. runs/toy2d-20261130-120000)"
        )));
    }
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{shown} is a file; give the run directory that holds it instead"
        )));
    }
    let journal = dir.join(super::journal::FILE_NAME).exists();
    let h5 = dir.join(super::h5::FILE_NAME).exists();
    if !journal && !h5 {
        return Err(Error::Usage(format!(
            "{shown}: not a noiselab run directory (it has neither journal.bin nor run.h5)"
        )));
    }
    if journal_needed && !journal {
        return Err(Error::Usage(format!(
            "{shown}: it has run.h5 but no journal.bin, and resume and repair work from the \
             journal; its record is still readable with `noiselab inspect` and `noiselab export`"
        )));
    }
    Ok(())
}
