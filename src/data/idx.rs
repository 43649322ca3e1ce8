//! The IDX format of (Fashion-)MNIST, gzip-compressed or raw: a big-endian header
//! (magic `0x0000_08_03` images / `0x0000_08_01` labels, then the dimensions) followed
//! by unsigned bytes. Every count and size is checked against the file, and errors name
//! the file with the expected and the found value.
//!
//! Files are streamed: the header is read and checked first, so a header claiming
//! billions of images never allocates more than the data actually present, and no file
//! may hold (or decompress to) more than [`MAX_FILE_BYTES`].

use super::ImageSet;
use crate::{Error, Result};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const CLASSES: usize = 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The largest pixel count of one image accepted from a header (1 Mi pixels).
const MAX_IMAGE_PIXELS: usize = 1 << 20;

/// The most bytes one IDX file may hold once decompressed (1 GiB; the full FashionMNIST
/// training images are 47 MB). Larger files, and gzip bombs, are refused with an error.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

pub use super::Split;

/// The official file names' prefix of a split.
fn stem(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "t10k",
    }
}

/// A missing file is a data problem with a remedy; other failures to open stay I/O errors.
fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::data(
            path,
            "file not found: expected an official (Fashion-)MNIST IDX file here \
             (fetch it with scripts/fetch-data.sh, or on Debian: \
             apt-get install dataset-fashion-mnist)",
        )
    } else {
        Error::io(path, e)
    }
}

/// One IDX file being read: the decoded byte stream, and how many bytes of it were
/// consumed so far (for error messages).
struct Stream<'a> {
    path: &'a Path,
    reader: Box<dyn Read>,
    gzip: bool,
    consumed: u64,
}

impl<'a> Stream<'a> {
    /// Opens `path`, gunzipping it when it starts with the gzip magic bytes.
    fn open(path: &'a Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        let mut buffered = BufReader::new(file);
        let gzip = buffered
            .fill_buf()
            .map_err(|e| Error::io(path, e))?
            .starts_with(&GZIP_MAGIC);
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        Ok(Stream {
            path,
            reader,
            gzip,
            consumed: 0,
        })
    }

    /// "bytes" or "decompressed bytes", for messages.
    fn unit(&self) -> &'static str {
        if self.gzip {
            "decompressed bytes"
        } else {
            "bytes"
        }
    }

    /// `expected` says what the stream should have held, for messages.
    fn read_error(&self, e: io::Error, expected: &str) -> Error {
        if self.gzip {
            Error::data(
                self.path,
                format!(
                    "corrupt or truncated gzip data: expected {expected}, the stream failed \
                     after {} decompressed bytes: {e}",
                    self.consumed
                ),
            )
        } else {
            Error::io(self.path, e)
        }
    }

    /// Reads up to `n` bytes (fewer only at the end of the data), appending them to
    /// `keep` or discarding them, and returns how many there were. Reaching the end of a
    /// gzip stream also checks its CRC and length trailer. `expected` is for messages.
    fn pump(&mut self, n: u64, mut keep: Option<&mut Vec<u8>>, expected: &str) -> Result<u64> {
        let before = self.consumed;
        let mut chunk = [0u8; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match self.reader.read(&mut chunk[..want]) {
                Ok(0) => break,
                Ok(k) => {
                    if let Some(out) = keep.as_deref_mut() {
                        out.extend_from_slice(&chunk[..k]);
                    }
                    self.consumed += k as u64;
                    left -= k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_error(e, expected)),
            }
        }
        Ok(self.consumed - before)
    }
}

/// A checked IDX file: its dimensions and its data bytes (after the header).
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

/// Reads the IDX file `path` with `magic` and `ndims` dimensions. `data_len` turns the
/// header's dimensions into the number of data bytes (or an error naming the problem).
/// At most `cap` decoded bytes are accepted.
fn read_idx(
    path: &Path,
    magic: u32,
    ndims: usize,
    data_len: impl Fn(&[usize]) -> std::result::Result<usize, String>,
    cap: u64,
) -> Result<Idx> {
    let mut stream = Stream::open(path)?;
    let header_len = 4 * (1 + ndims);
    let mut header = Vec::with_capacity(header_len);
    let header_needed = format!("at least a {header_len}-byte IDX header");
    stream.pump(header_len as u64, Some(&mut header), &header_needed)?;
    if header.len() < header_len {
        return Err(Error::data(
            path,
            format!(
                "IDX header needs {header_len} bytes, the file has only {} {}",
                header.len(),
                stream.unit()
            ),
        ));
    }
    let word = |k: usize| {
        u32::from_be_bytes([
            header[4 * k],
            header[4 * k + 1],
            header[4 * k + 2],
            header[4 * k + 3],
        ])
    };
    if word(0) != magic {
        return Err(Error::data(
            path,
            format!(
                "IDX magic number: expected {magic:#010x}, found {:#010x}",
                word(0)
            ),
        ));
    }
    let dims: Vec<usize> = (1..=ndims).map(|k| word(k) as usize).collect();
    let body = data_len(&dims).map_err(|m| Error::data(path, m))? as u64;
    let header_len = header_len as u64;
    let total = header_len.saturating_add(body);
    let unit = stream.unit();
    let expected = format!("{total} {unit} ({header_len} header + {body} data)");
    // `found` decoded bytes in all; counting stops just past `cap`.
    let mismatch = |found: u64, why: &str| {
        let found = if found > cap {
            format!("more than {cap}")
        } else {
            found.to_string()
        };
        Error::data(path, format!("expected {expected}, found {found}{why}"))
    };

    if total > cap {
        // Count what is really there, without keeping it, to say whether the file is
        // truncated or just too large to accept.
        let rest = stream.pump(cap.saturating_sub(header_len) + 1, None, &expected)?;
        let why = format!("; IDX files over {cap} {unit} are refused");
        return Err(mismatch(header_len + rest, &why));
    }
    // Only bytes actually present are allocated, however large the header's counts.
    let mut data = Vec::new();
    stream.pump(body, Some(&mut data), &expected)?;
    // Whatever follows the data is an error too; reading on to the end of the stream
    // also verifies a gzip file's checksum.
    let extra = stream.pump(cap - total + 1, None, &expected)?;
    if data.len() as u64 != body || extra > 0 {
        return Err(mismatch(header_len + data.len() as u64 + extra, ""));
    }
    Ok(Idx { dims, data })
}

/// Number of pixel bytes of an images file, from its header `[n, rows, cols]`.
fn image_bytes(dims: &[usize]) -> std::result::Result<usize, String> {
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let per = rows
        .checked_mul(cols)
        .filter(|&p| p > 0 && p <= MAX_IMAGE_PIXELS)
        .ok_or_else(|| {
            format!(
                "implausible image size {rows} × {cols} in the IDX header: expected \
                 1 to {MAX_IMAGE_PIXELS} pixels per image"
            )
        })?;
    n.checked_mul(per).ok_or_else(|| {
        format!("IDX header claims {n} images of {rows} × {cols}: more bytes than memory holds")
    })
}

fn read_pair_capped(
    images: &Path,
    labels: &Path,
    limit: Option<usize>,
    cap: u64,
) -> Result<ImageSet> {
    let img = read_idx(images, IMAGES_MAGIC, 3, image_bytes, cap)?;
    let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    let lab = read_idx(labels, LABELS_MAGIC, 1, |d| Ok(d[0]), cap)?;
    let ln = lab.dims[0];
    if ln != n {
        return Err(Error::data(
            labels,
            format!(
                "{ln} labels for {n} images in {}: expected as many labels as images",
                images.display()
            ),
        ));
    }
    if let Some((i, &bad)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= CLASSES)
    {
        return Err(Error::data(
            labels,
            format!("label {bad} of image {i}: expected 0..={}", CLASSES - 1),
        ));
    }
    let keep = limit.map_or(n, |l| l.min(n));
    let mut pixels = img.data;
    pixels.truncate(keep * rows * cols);
    let mut labels = lab.data;
    labels.truncate(keep);
    Ok(ImageSet {
        pixels,
        labels,
        shape: (1, rows, cols),
        classes: CLASSES,
    })
}

/// Reads an images file and its labels file; `limit` keeps only the first images.
/// Both files are checked whole (sizes, gzip checksums, every label) before truncating.
pub fn read_pair(images: &Path, labels: &Path, limit: Option<usize>) -> Result<ImageSet> {
    read_pair_capped(images, labels, limit, MAX_FILE_BYTES)
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
                 (fetch them with scripts/fetch-data.sh, or on Debian: \
                 apt-get install dataset-fashion-mnist)",
                raw.display()
            ),
        ))
    }
}

/// One split of (Fashion-)MNIST from a directory holding the official file names.
pub fn read_split(dir: &Path, split: Split, limit: Option<usize>) -> Result<ImageSet> {
    let images = locate(dir, &format!("{}-images-idx3-ubyte", stem(split)))?;
    let labels = locate(dir, &format!("{}-labels-idx1-ubyte", stem(split)))?;
    read_pair(&images, &labels, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    fn message(e: Error) -> String {
        match e {
            Error::Data { message, .. } => message,
            other => panic!("expected a data error, got {other:?}"),
        }
    }

    /// A gzip bomb: a small file decompressing to far more than its header claims, or
    /// than the cap, is refused after reading at most `cap` bytes.
    #[test]
    fn decompressed_size_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.gz");
        let images = dir.path().join("images.gz");
        std::fs::write(&labels, gzip(&idx(LABELS_MAGIC, &[1], &[0]))).unwrap();

        // Header says 1 image of 28 × 28, the stream goes on for 4 MB of zeros.
        let bomb = gzip(&idx(IMAGES_MAGIC, &[1, 28, 28], &vec![0; 4 << 20]));
        std::fs::write(&images, &bomb).unwrap();
        let m = message(read_pair_capped(&images, &labels, None, 1 << 20).unwrap_err());
        assert!(m.contains("expected 800 decompressed bytes"), "{m}");
        assert!(m.contains("found more than 1048576"), "{m}");
        // Under the cap, the exact size is reported.
        let m = message(read_pair_capped(&images, &labels, None, 1 << 30).unwrap_err());
        assert!(m.contains(&format!("found {}", 16 + (4 << 20))), "{m}");

        // Header says 2,000 images (1.5 MB), more than a 1 MiB cap allows.
        let big = gzip(&idx(IMAGES_MAGIC, &[2000, 28, 28], &vec![0; 2000 * 784]));
        std::fs::write(&images, &big).unwrap();
        let m = message(read_pair_capped(&images, &labels, None, 1 << 20).unwrap_err());
        assert!(m.contains("expected 1568016"), "{m}");
        assert!(
            m.contains("files over 1048576 decompressed bytes are refused"),
            "{m}"
        );
        assert!(m.contains("found more than 1048576"), "{m}");
    }
}
