//! The IDX format of (Fashion-)MNIST, gzip-compressed or raw: a big-endian header
//! (magic `0x0000_08_03` images / `0x0000_08_01` labels, then the dimensions) followed
//! by unsigned bytes. Every count and size is checked against the file, and errors name
//! the file with the expected and the found value.

use super::ImageSet;
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const CLASSES: usize = 10;

/// Which half of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn stem(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Reads a file whole, gunzipping it when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn header(bytes: &[u8], path: &Path, magic: u32, dims: usize) -> Result<Vec<usize>> {
    let need = 4 * (1 + dims);
    if bytes.len() < need {
        return Err(Error::data(
            path,
            format!(
                "IDX header needs {need} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let word = |k: usize| u32::from_be_bytes(bytes[4 * k..4 * k + 4].try_into().unwrap());
    if word(0) != magic {
        return Err(Error::data(
            path,
            format!(
                "IDX magic number: expected {magic:#010x}, found {:#010x}",
                word(0)
            ),
        ));
    }
    Ok((1..=dims).map(|k| word(k) as usize).collect())
}

fn check_len(path: &Path, bytes: &[u8], header: usize, body: usize) -> Result<()> {
    if bytes.len() != header + body {
        return Err(Error::data(
            path,
            format!(
                "expected {} bytes ({header} header + {body} data), found {}",
                header + body,
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Reads an images file and its labels file; `limit` keeps only the first images.
pub fn read_pair(images: &Path, labels: &Path, limit: Option<usize>) -> Result<ImageSet> {
    let img = read_maybe_gzip(images)?;
    let dims = header(&img, images, IMAGES_MAGIC, 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let per = rows
        .checked_mul(cols)
        .filter(|&p| p > 0 && p <= 1 << 20)
        .ok_or_else(|| {
            Error::data(
                images,
                format!("implausible image size {rows} × {cols} in the IDX header"),
            )
        })?;
    check_len(images, &img, 16, n.saturating_mul(per))?;

    let lab = read_maybe_gzip(labels)?;
    let ln = header(&lab, labels, LABELS_MAGIC, 1)?[0];
    check_len(labels, &lab, 8, ln)?;
    if ln != n {
        return Err(Error::data(
            labels,
            format!(
                "{ln} labels for {n} images in {}: expected as many labels as images",
                images.display()
            ),
        ));
    }
    let keep = limit.map_or(n, |l| l.min(n));
    let label_bytes = &lab[8..8 + keep];
    if let Some((i, &bad)) = label_bytes
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        return Err(Error::data(
            labels,
            format!("label {bad} of image {i}: expected 0..={}", CLASSES - 1),
        ));
    }
    Ok(ImageSet {
        pixels: img[16..16 + keep * per].to_vec(),
        labels: label_bytes.to_vec(),
        shape: (1, rows, cols),
        classes: CLASSES,
    })
}

/// The file `stem` in `dir`, gzip-compressed (`.gz`) or not; an error names both
/// candidates when neither exists.
fn locate(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    let raw = dir.join(stem);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(Error::data(
            &gz,
            format!(
                "not found (nor {}); FashionMNIST's official IDX files are expected here \
                 (Debian: apt-get install dataset-fashion-mnist)",
                raw.display()
            ),
        ))
    }
}

/// One split of (Fashion-)MNIST from a directory holding the official file names.
pub fn read_split(dir: &Path, split: Split, limit: Option<usize>) -> Result<ImageSet> {
    let images = locate(dir, &format!("{}-images-idx3-ubyte", split.stem()))?;
    let labels = locate(dir, &format!("{}-labels-idx1-ubyte", split.stem()))?;
    read_pair(&images, &labels, limit)
}
