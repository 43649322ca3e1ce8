//! Checkpoint files: `checkpoints/<dynamics>-<replicate>.ckpt` in the run directory,
//! the latest checkpoint of each trajectory (θ, the noise's RNG streams and current
//! factor, the step rule's state, the measurement stream), replaced atomically. The
//! journal records *that* a trajectory was checkpointed; the file holds what continuing
//! it needs. A factor can be k·D numbers (megabytes for LeNet, far more for VGG11), so
//! only the latest is kept rather than appending every one to the journal.
//!
//! File: the magic `noiselab-checkpoint\n`, a little-endian u32 format version, the
//! CRC-32 of the payload, then the CBOR-encoded [`Checkpoint`] tagged with its
//! trajectory.

use crate::dynamics::DynamicsKind;
use crate::engine::Checkpoint;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DIR: &str = "checkpoints";
const MAGIC: &[u8] = b"noiselab-checkpoint\n";
const FORMAT_VERSION: u32 = 1;

/// What a file holds, written from a borrowed checkpoint (a VGG11 θ is 78 MB: no copy).
#[derive(Serialize)]
struct Stored<'a> {
    dynamics: DynamicsKind,
    replicate: usize,
    checkpoint: &'a Checkpoint,
}

/// The same, read back.
#[derive(Deserialize)]
struct Read {
    dynamics: DynamicsKind,
    replicate: usize,
    checkpoint: Checkpoint,
}

/// Where the checkpoint of one trajectory lives.
pub fn path(run_dir: &Path, kind: DynamicsKind, replicate: usize) -> PathBuf {
    run_dir
        .join(DIR)
        .join(format!("{}-{replicate}.ckpt", kind.key()))
}

/// Replaces the trajectory's checkpoint file (atomically: a reader sees the old one or
/// the new one, never a mix).
pub fn write(
    run_dir: &Path,
    kind: DynamicsKind,
    replicate: usize,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let dir = run_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let stored = Stored {
        dynamics: kind,
        replicate,
        checkpoint,
    };
    let mut payload = Vec::new();
    ciborium::into_writer(&stored, &mut payload)
        .map_err(|e| Error::unreadable(&dir, format!("cannot encode a checkpoint: {e}")))?;
    let mut bytes = Vec::with_capacity(payload.len() + MAGIC.len() + 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    super::write_atomically(&path(run_dir, kind, replicate), |p| {
        std::fs::write(p, &bytes).map_err(|e| Error::io(p, e))
    })
}

/// The trajectory's latest checkpoint, `None` when it has none. A file that is not a
/// checkpoint of this trajectory, or is damaged, is an error naming it.
pub fn read(run_dir: &Path, kind: DynamicsKind, replicate: usize) -> Result<Option<Checkpoint>> {
    let path = path(run_dir, kind, replicate);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bad = |what: String| Error::unreadable(&path, what);
    let head = MAGIC.len() + 8;
    if bytes.len() < head || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "not a noiselab checkpoint (wrong magic bytes or truncated)".into(),
        ));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(MAGIC.len());
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "checkpoint format {version}; this build reads format {FORMAT_VERSION}"
        )));
    }
    let payload = &bytes[head..];
    if crc32fast::hash(payload) != word(MAGIC.len() + 4) {
        return Err(bad("damaged: checksum mismatch".into()));
    }
    let stored: Read =
        ciborium::from_reader(payload).map_err(|e| bad(format!("damaged: undecodable ({e})")))?;
    if stored.dynamics != kind || stored.replicate != replicate {
        return Err(bad(format!(
            "holds the checkpoint of {} replicate {}, expected {} replicate {replicate}",
            stored.dynamics, stored.replicate, kind
        )));
    }
    Ok(Some(stored.checkpoint))
}
