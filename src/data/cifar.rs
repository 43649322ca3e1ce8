//! CIFAR-10's binary version: each record is one label byte then 3,072 pixel bytes
//! (the R, G, B planes of a 32 × 32 image). Files: `data_batch_{1..5}.bin`,
//! `test_batch.bin`. Each file's size is checked before it is read, and every label of
//! every file read is checked, so errors name the file with the expected and found value.

use super::ImageSet;
use crate::{Error, Result};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const CLASSES: usize = 10;

/// Reads batch files in order; `limit` keeps only the first images overall (files after
/// the one that reaches it are not opened).
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

/// The official training batches, in order.
pub const TRAINING_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// One split from a directory holding the official file names. The training split is
/// `data_batch_1.bin` and those of `data_batch_2..5.bin` that follow it without a gap
/// (the real subsets ship only the first); the files read are returned with the set.
pub fn read_split(
    dir: &Path,
    split: super::Split,
    limit: Option<usize>,
) -> Result<(ImageSet, Vec<PathBuf>)> {
    let paths: Vec<PathBuf> = match split {
        super::Split::Test => vec![dir.join("test_batch.bin")],
        super::Split::Train => {
            let mut found = vec![dir.join(TRAINING_BATCHES[0])];
            found.extend(
                TRAINING_BATCHES[1..]
                    .iter()
                    .map(|name| dir.join(name))
                    .take_while(|p| p.is_file()),
            );
            found
        }
    };
    Ok((read_batches(&paths, limit)?, paths))
}

fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::data(
            path,
            "file not found: expected a CIFAR-10 binary batch here \
             (fetch it with scripts/fetch-data.sh cifar)",
        )
    } else {
        Error::io(path, e)
    }
}

fn size_error(path: &Path, len: u64, head: &[u8]) -> Error {
    let mut message =
        format!("expected a whole number of {RECORD}-byte CIFAR-10 records, found {len} bytes");
    if len == 0 {
        message.push_str(" (an empty file)");
    } else {
        message.push_str(&format!(
            " ({} whole records + {} bytes)",
            len / RECORD as u64,
            len % RECORD as u64
        ));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        message.push_str(
            "; this is gzip data: extract data_batch_*.bin and test_batch.bin from \
             cifar-10-binary.tar.gz first",
        );
    }
    Error::data(path, message)
}

fn read_one(path: &Path, limit: usize, set: &mut ImageSet) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 2];
    let head = if len >= 2 {
        file.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
        &head[..]
    } else {
        &[][..]
    };
    if len == 0 || len % RECORD as u64 != 0 {
        return Err(size_error(path, len, head));
    }
    // The size is checked before reading, so a wrong (huge) file is never loaded whole.
    let mut bytes = head.to_vec();
    file.take(len - head.len() as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    // The file may have changed since its size was taken.
    if bytes.len() as u64 != len {
        return Err(size_error(path, bytes.len() as u64, head));
    }
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        let label = record[0];
        if label as usize >= CLASSES {
            return Err(Error::data(
                path,
                format!("record {i}: label {label}, expected 0..={}", CLASSES - 1),
            ));
        }
    }
    for record in bytes.chunks_exact(RECORD).take(limit) {
        set.labels.push(record[0]);
        set.pixels.extend_from_slice(&record[1..]);
    }
    Ok(())
}
