//! CIFAR-10's binary version: each record is one label byte then 3,072 pixel bytes
//! (the R, G, B planes of a 32 × 32 image). Files: `data_batch_{1..5}.bin`,
//! `test_batch.bin`.

use super::ImageSet;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const CLASSES: usize = 10;

/// Reads batch files in order; `limit` keeps only the first images overall.
pub fn read_batches(paths: &[PathBuf], limit: Option<usize>) -> Result<ImageSet> {
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        shape: (3, SIDE, SIDE),
        classes: CLASSES,
    };
    let limit = limit.unwrap_or(usize::MAX);
    for path in paths {
        if set.len() >= limit {
            break;
        }
        read_one(path, limit - set.len(), &mut set)?;
    }
    Ok(set)
}

fn read_one(path: &Path, limit: usize, set: &mut ImageSet) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::data(
            path,
            format!(
                "expected a whole number of {RECORD}-byte CIFAR-10 records, found {} bytes",
                bytes.len()
            ),
        ));
    }
    for (i, record) in bytes.chunks_exact(RECORD).take(limit).enumerate() {
        let label = record[0];
        if label as usize >= CLASSES {
            return Err(Error::data(
                path,
                format!("record {i}: label {label}, expected 0..={}", CLASSES - 1),
            ));
        }
        set.labels.push(label);
        set.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}
