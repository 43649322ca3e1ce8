//! The dataset loaders against the real FashionMNIST and CIFAR-10 subsets in
//! ../shared/data (checked byte for byte against an independent gunzip), against
//! hostile files (each must give `Error::Data` naming the file with the expected and
//! the found value), and against arbitrary bytes (never a panic).

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use noiselab::data::{cifar, idx, ImageSet};
use noiselab::Error;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const RECORD: usize = 3073;

fn shared(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(sub)
}

fn fashion_dir() -> PathBuf {
    shared("fashion-mnist-subset")
}

fn fashion_file(name: &str) -> PathBuf {
    fashion_dir().join(name)
}

fn cifar_file(name: &str) -> PathBuf {
    shared("cifar10-subset").join(name)
}

/// An independent decode: the whole gzip stream, with flate2's plain `GzDecoder`.
fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn be(word: u32) -> [u8; 4] {
    word.to_be_bytes()
}

/// An IDX file: magic, dimensions, data.
fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = be(magic).to_vec();
    for &d in dims {
        out.extend_from_slice(&be(d));
    }
    out.extend_from_slice(data);
    out
}

/// The first `n` real training images and labels as raw IDX files (images, labels).
fn small_real_idx(n: usize) -> (Vec<u8>, Vec<u8>) {
    let images = gunzip(&fashion_file("train-images-idx3-ubyte.gz"));
    let labels = gunzip(&fashion_file("train-labels-idx1-ubyte.gz"));
    (
        idx_file(IMAGES_MAGIC, &[n as u32, 28, 28], &images[16..16 + n * 784]),
        idx_file(LABELS_MAGIC, &[n as u32], &labels[8..8 + n]),
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Asserts `result` is `Error::Data` about `path` whose message contains every needle.
#[track_caller]
fn assert_data_error(result: noiselab::Result<ImageSet>, path: &Path, needles: &[&str]) {
    match result {
        Err(Error::Data {
            path: found,
            message,
        }) => {
            assert_eq!(found, path, "error names the wrong file: {message}");
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "message lacks {needle:?}: {message}"
                );
            }
        }
        Err(other) => panic!(
            "expected Error::Data about {}, got {other:?}",
            path.display()
        ),
        Ok(set) => panic!(
            "expected Error::Data about {}, got {} images",
            path.display(),
            set.len()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// (a) The real subsets.

#[test]
fn fashion_subsets_have_the_documented_counts_and_shapes() {
    for (split, n) in [(idx::Split::Train, 1200), (idx::Split::Test, 2000)] {
        let set = idx::read_split(&fashion_dir(), split, None).unwrap();
        assert_eq!(set.len(), n, "{split:?}");
        assert_eq!(set.shape, (1, 28, 28));
        assert_eq!(set.classes, 10);
        assert_eq!(set.pixels.len(), n * 784);
        assert!(set.labels.iter().all(|&l| l < 10));
        // FashionMNIST is balanced: every class appears in the first 1,200 images.
        let mut seen = [false; 10];
        set.labels.iter().for_each(|&l| seen[l as usize] = true);
        assert!(seen.iter().all(|&s| s), "{split:?}: a class is missing");
        assert!(set.pixels.contains(&255) && set.pixels.contains(&0));
    }
}

#[test]
fn fashion_pixels_and_labels_match_an_independent_decode() {
    for stem in ["train", "t10k"] {
        let images_path = fashion_file(&format!("{stem}-images-idx3-ubyte.gz"));
        let labels_path = fashion_file(&format!("{stem}-labels-idx1-ubyte.gz"));
        let raw_images = gunzip(&images_path);
        let raw_labels = gunzip(&labels_path);
        let set = idx::read_pair(&images_path, &labels_path, None).unwrap();
        let n = set.len();
        assert_eq!(raw_images[..4], be(IMAGES_MAGIC));
        assert_eq!(raw_images[4..8], be(n as u32));
        assert_eq!(raw_images[8..16], [0, 0, 0, 28, 0, 0, 0, 28]);
        assert_eq!(raw_images.len(), 16 + n * 784);
        assert_eq!(raw_labels.len(), 8 + n);
        for i in [0, 1, 2, n / 2, n - 1] {
            assert_eq!(set.image(i), &raw_images[16 + i * 784..16 + (i + 1) * 784]);
        }
        assert_eq!(set.labels, raw_labels[8..]);
        assert_eq!(set.pixels, raw_images[16..]);
    }
}

#[test]
fn fashion_limit_keeps_the_first_images() {
    let all = idx::read_split(&fashion_dir(), idx::Split::Train, None).unwrap();
    let five = idx::read_split(&fashion_dir(), idx::Split::Train, Some(5)).unwrap();
    assert_eq!(five, all.head(5));
    assert_eq!(five.len(), 5);
    assert_eq!(five.pixels.len(), 5 * 784);
    let more = idx::read_split(&fashion_dir(), idx::Split::Train, Some(1_000_000)).unwrap();
    assert_eq!(more, all);
    let none = idx::read_split(&fashion_dir(), idx::Split::Train, Some(0)).unwrap();
    assert!(none.is_empty() && none.pixels.is_empty());
    assert_eq!(none.shape, (1, 28, 28));
}

#[test]
fn fashion_gzip_and_raw_files_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let raw = gunzip(&fashion_file(&format!("{name}.gz")));
        write(dir.path(), name, &raw);
    }
    for split in [idx::Split::Train, idx::Split::Test] {
        let gz = idx::read_split(&fashion_dir(), split, None).unwrap();
        let raw = idx::read_split(dir.path(), split, None).unwrap();
        assert_eq!(gz, raw, "{split:?}");
        let raw7 = idx::read_split(dir.path(), split, Some(7)).unwrap();
        assert_eq!(raw7, gz.head(7));
    }
    // One file compressed, the other not.
    let mixed = idx::read_pair(
        &dir.path().join("train-images-idx3-ubyte"),
        &fashion_file("train-labels-idx1-ubyte.gz"),
        None,
    )
    .unwrap();
    assert_eq!(
        mixed,
        idx::read_split(&fashion_dir(), idx::Split::Train, None).unwrap()
    );
}

/// Only where Debian's dataset-fashion-mnist is installed (CI may lack it): the full
/// dataset loads, and the subsets are exactly its first images.
#[test]
fn full_fashion_dataset_when_installed() {
    let full = Path::new("/usr/share/datasets/fashion-mnist");
    if !full.join("t10k-images-idx3-ubyte.gz").is_file() {
        eprintln!("skipped: {} is not installed", full.display());
        return;
    }
    let test = idx::read_split(full, idx::Split::Test, None).unwrap();
    assert_eq!(test.len(), 10_000);
    let subset = idx::read_split(&fashion_dir(), idx::Split::Test, None).unwrap();
    assert_eq!(subset, test.head(subset.len()));
    let train = idx::read_split(full, idx::Split::Train, Some(1200)).unwrap();
    let subset = idx::read_split(&fashion_dir(), idx::Split::Train, None).unwrap();
    assert_eq!(subset, train);
}

#[test]
fn cifar_subsets_load_and_match_the_file_bytes() {
    let train_path = cifar_file("data_batch_1.bin");
    let test_path = cifar_file("test_batch.bin");
    let train_bytes = std::fs::read(&train_path).unwrap();
    let test_bytes = std::fs::read(&test_path).unwrap();

    let train = cifar::read_batches(std::slice::from_ref(&train_path), None).unwrap();
    assert_eq!(train.len(), 4000);
    assert_eq!(train.shape, (3, 32, 32));
    assert_eq!(train.classes, 10);
    assert_eq!(train.pixels.len(), 4000 * 3072);
    assert!(train.labels.iter().all(|&l| l < 10));
    let mut seen = [false; 10];
    train.labels.iter().for_each(|&l| seen[l as usize] = true);
    assert!(seen.iter().all(|&s| s));
    for i in [0, 1, 1234, 3999] {
        let record = &train_bytes[i * RECORD..(i + 1) * RECORD];
        assert_eq!(train.labels[i], record[0]);
        assert_eq!(train.image(i), &record[1..]);
    }

    let test = cifar::read_batches(std::slice::from_ref(&test_path), None).unwrap();
    assert_eq!(test.len(), 1000);
    assert_eq!(test.image(999), &test_bytes[999 * RECORD + 1..]);

    // Several files concatenate in order; `limit` counts across them.
    let both = [train_path.clone(), test_path.clone()];
    let all = cifar::read_batches(&both, None).unwrap();
    assert_eq!(all.len(), 5000);
    assert_eq!(all.head(4000), train);
    assert_eq!(all.image(4000), test.image(0));
    let some = cifar::read_batches(&both, Some(4500)).unwrap();
    assert_eq!(some, all.head(4500));
    let few = cifar::read_batches(&both, Some(10)).unwrap();
    assert_eq!(few, train.head(10));
    let none = cifar::read_batches(&both, Some(0)).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.shape, (3, 32, 32));
}

// ---------------------------------------------------------------------------------------
// (b) Hostile FashionMNIST files: each gives Error::Data naming the file, expected and
// found.

/// A tempdir with the first 20 real training images and labels, raw.
fn twenty() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = small_real_idx(20);
    let ip = write(dir.path(), "images", &images);
    let lp = write(dir.path(), "labels", &labels);
    (dir, ip, lp, images, labels)
}

#[test]
fn idx_wrong_magic() {
    let (dir, images, labels, image_bytes, label_bytes) = twenty();
    // An images file given as labels and vice versa.
    assert_data_error(
        idx::read_pair(&labels, &images, None),
        &labels,
        &["magic", "expected 0x00000803", "found 0x00000801"],
    );
    let mut bad = label_bytes.clone();
    bad[3] = 0x03;
    let bad_labels = write(dir.path(), "bad-labels", &bad);
    assert_data_error(
        idx::read_pair(&images, &bad_labels, None),
        &bad_labels,
        &["expected 0x00000801", "found 0x00000803"],
    );
    // Little-endian header (a common mistake when writing IDX files by hand).
    let mut swapped = image_bytes.clone();
    swapped[..4].copy_from_slice(&IMAGES_MAGIC.to_le_bytes());
    let swapped = write(dir.path(), "swapped", &swapped);
    assert_data_error(
        idx::read_pair(&swapped, &labels, None),
        &swapped,
        &["expected 0x00000803", "found 0x03080000"],
    );
    // And gzip-compressed.
    let gz = write(
        dir.path(),
        "swapped.gz",
        &gzip(&std::fs::read(&swapped).unwrap()),
    );
    assert_data_error(
        idx::read_pair(&gz, &labels, None),
        &gz,
        &["expected 0x00000803", "found 0x03080000"],
    );
}

#[test]
fn idx_truncated_header() {
    let (dir, images, labels, image_bytes, label_bytes) = twenty();
    let short = write(dir.path(), "short-images", &image_bytes[..10]);
    assert_data_error(
        idx::read_pair(&short, &labels, None),
        &short,
        &["header needs 16 bytes", "only 10 bytes"],
    );
    let short_gz = write(dir.path(), "short-images.gz", &gzip(&image_bytes[..10]));
    assert_data_error(
        idx::read_pair(&short_gz, &labels, None),
        &short_gz,
        &["header needs 16 bytes", "only 10 decompressed bytes"],
    );
    let short = write(dir.path(), "short-labels", &label_bytes[..7]);
    assert_data_error(
        idx::read_pair(&images, &short, None),
        &short,
        &["header needs 8 bytes", "only 7 bytes"],
    );
}

#[test]
fn idx_truncated_or_overlong_body() {
    let (dir, images, labels, image_bytes, label_bytes) = twenty();
    let expected = (16 + 20 * 784).to_string();
    let cut = image_bytes.len() - 100;
    let found = cut.to_string();

    let raw = write(dir.path(), "cut-images", &image_bytes[..cut]);
    assert_data_error(
        idx::read_pair(&raw, &labels, None),
        &raw,
        &[
            &format!("expected {expected} bytes (16 header + 15680 data)"),
            &format!("found {found}"),
        ],
    );
    let gz = write(dir.path(), "cut-images.gz", &gzip(&image_bytes[..cut]));
    assert_data_error(
        idx::read_pair(&gz, &labels, None),
        &gz,
        &[
            &format!("expected {expected} decompressed bytes"),
            &format!("found {found}"),
        ],
    );
    // Even when only the first images are wanted, the whole file is checked.
    assert_data_error(idx::read_pair(&gz, &labels, Some(1)), &gz, &[&expected]);

    let mut long = image_bytes.clone();
    long.extend_from_slice(&[0; 3]);
    let long = write(dir.path(), "long-images", &long);
    assert_data_error(
        idx::read_pair(&long, &labels, None),
        &long,
        &[
            &format!("expected {expected} bytes"),
            &format!("found {}", 16 + 20 * 784 + 3),
        ],
    );
    let cut_labels = write(
        dir.path(),
        "cut-labels",
        &label_bytes[..label_bytes.len() - 1],
    );
    assert_data_error(
        idx::read_pair(&images, &cut_labels, None),
        &cut_labels,
        &["expected 28 bytes (8 header + 20 data)", "found 27"],
    );
}

#[test]
fn idx_truncated_or_corrupt_gzip_stream() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(fashion_file("train-images-idx3-ubyte.gz")).unwrap();
    let labels = fashion_file("train-labels-idx1-ubyte.gz");
    let expected = (16 + 1200 * 784).to_string();

    // Cut in the middle of the deflate data, and cut inside the 8-byte trailer.
    for keep in [real.len() / 2, real.len() - 4] {
        let cut = write(dir.path(), "cut.gz", &real[..keep]);
        assert_data_error(
            idx::read_pair(&cut, &labels, None),
            &cut,
            &["gzip", &format!("expected {expected} decompressed bytes")],
        );
    }
    // Cut before the IDX header is complete.
    let cut = write(dir.path(), "cut.gz", &real[..20]);
    assert_data_error(
        idx::read_pair(&cut, &labels, None),
        &cut,
        &[
            "gzip",
            "expected at least a 16-byte IDX header",
            "after 0 decompressed bytes",
        ],
    );
    // A wrong CRC in the trailer: the data decompresses but cannot be trusted.
    let mut crc = real.clone();
    let at = crc.len() - 8;
    crc[at] ^= 0x01;
    let crc = write(dir.path(), "crc.gz", &crc);
    assert_data_error(
        idx::read_pair(&crc, &labels, None),
        &crc,
        &["gzip", "checksum"],
    );
    // A wrong length in the trailer.
    let mut size = real.clone();
    let at = size.len() - 1;
    size[at] ^= 0x01;
    let size = write(dir.path(), "size.gz", &size);
    assert_data_error(idx::read_pair(&size, &labels, None), &size, &["gzip"]);
    // Garbage after the gzip member.
    let mut tail = real.clone();
    tail.extend_from_slice(b"garbage");
    let tail = write(dir.path(), "tail.gz", &tail);
    assert_data_error(idx::read_pair(&tail, &labels, None), &tail, &["gzip"]);
}

#[test]
fn idx_label_count_differs_from_image_count() {
    let (dir, images, _labels, _, label_bytes) = twenty();
    let nineteen = idx_file(LABELS_MAGIC, &[19], &label_bytes[8..27]);
    let nineteen = write(dir.path(), "nineteen", &nineteen);
    assert_data_error(
        idx::read_pair(&images, &nineteen, None),
        &nineteen,
        &["19 labels for 20 images", images.to_str().unwrap()],
    );
}

#[test]
fn idx_label_out_of_range() {
    let (dir, images, _labels, _, label_bytes) = twenty();
    let mut bad = label_bytes.clone();
    bad[8 + 7] = 10;
    let bad = write(dir.path(), "bad", &bad);
    assert_data_error(
        idx::read_pair(&images, &bad, None),
        &bad,
        &["label 10 of image 7", "expected 0..=9"],
    );
    // A bad label past `limit` still means a corrupt file.
    assert_data_error(idx::read_pair(&images, &bad, Some(3)), &bad, &["label 10"]);
    let mut worse = label_bytes.clone();
    worse[8 + 19] = 255;
    let worse = write(dir.path(), "worse.gz", &gzip(&worse));
    assert_data_error(
        idx::read_pair(&images, &worse, None),
        &worse,
        &["label 255 of image 19", "expected 0..=9"],
    );
}

#[test]
fn idx_zero_byte_and_missing_files() {
    let (dir, images, labels, _, _) = twenty();
    let empty = write(dir.path(), "empty", &[]);
    assert_data_error(
        idx::read_pair(&empty, &labels, None),
        &empty,
        &["header needs 16 bytes", "only 0 bytes"],
    );
    assert_data_error(
        idx::read_pair(&images, &empty, None),
        &empty,
        &["header needs 8 bytes", "only 0 bytes"],
    );
    let missing = dir.path().join("no-such-file.gz");
    assert_data_error(
        idx::read_pair(&missing, &labels, None),
        &missing,
        &["not found", "fetch-data.sh"],
    );
    assert_data_error(
        idx::read_pair(&images, &missing, None),
        &missing,
        &["not found"],
    );
    // A directory without the files: both candidate names are given.
    assert_data_error(
        idx::read_split(dir.path(), idx::Split::Test, None),
        &dir.path().join("t10k-images-idx3-ubyte.gz"),
        &["not found", "t10k-images-idx3-ubyte", "fetch-data.sh"],
    );
}

#[test]
fn idx_huge_or_absurd_header_counts() {
    let (dir, _images, labels, image_bytes, _) = twenty();
    let data = &image_bytes[16..];

    // 4 billion images claimed by a 15 kB file: refused at once, nothing big allocated.
    let claim = idx_file(IMAGES_MAGIC, &[u32::MAX, 28, 28], data);
    let claim = write(dir.path(), "claim", &claim);
    let expected = 16 + u64::from(u32::MAX) * 784;
    let start = std::time::Instant::now();
    assert_data_error(
        idx::read_pair(&claim, &labels, None),
        &claim,
        &[
            &format!("expected {expected} bytes"),
            &format!("found {}", 16 + 20 * 784),
        ],
    );
    let claim_gz = write(
        dir.path(),
        "claim.gz",
        &gzip(&idx_file(IMAGES_MAGIC, &[u32::MAX, 28, 28], data)),
    );
    assert_data_error(
        idx::read_pair(&claim_gz, &labels, None),
        &claim_gz,
        &[
            &format!("expected {expected} decompressed bytes"),
            &format!("found {}", 16 + 20 * 784),
        ],
    );
    let label_claim = write(
        dir.path(),
        "label-claim",
        &idx_file(LABELS_MAGIC, &[u32::MAX], &[0; 20]),
    );
    let twenty_images = dir.path().join("images");
    assert_data_error(
        idx::read_pair(&twenty_images, &label_claim, None),
        &label_claim,
        &[
            &format!("expected {} bytes", 8 + u64::from(u32::MAX)),
            "found 28",
        ],
    );
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());

    // Image sizes that overflow or make no sense.
    for (rows, cols, shown) in [
        (u32::MAX, u32::MAX, "4294967295 × 4294967295"),
        (0, 28, "0 × 28"),
        (28, 0, "28 × 0"),
        (1 << 16, 1 << 16, "65536 × 65536"),
    ] {
        let odd = write(
            dir.path(),
            "odd",
            &idx_file(IMAGES_MAGIC, &[20, rows, cols], data),
        );
        assert_data_error(
            idx::read_pair(&odd, &labels, None),
            &odd,
            &["implausible image size", shown],
        );
    }
    // Zero images with zero labels is a valid, empty set.
    let no_images = write(
        dir.path(),
        "no-images",
        &idx_file(IMAGES_MAGIC, &[0, 28, 28], &[]),
    );
    let no_labels = write(dir.path(), "no-labels", &idx_file(LABELS_MAGIC, &[0], &[]));
    let set = idx::read_pair(&no_images, &no_labels, None).unwrap();
    assert!(set.is_empty());
    assert_eq!(set.shape, (1, 28, 28));
}

// ---------------------------------------------------------------------------------------
// (b) Hostile CIFAR-10 files.

#[test]
fn cifar_size_not_a_multiple_of_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(cifar_file("test_batch.bin")).unwrap();
    let odd = write(dir.path(), "odd.bin", &real[..2 * RECORD + 1]);
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&odd), None),
        &odd,
        &[
            "3073-byte",
            &format!("found {} bytes", 2 * RECORD + 1),
            "2 whole records + 1 bytes",
        ],
    );
    // The bad file is named even after a good one, and even when the limit would be
    // reached inside it.
    let good = cifar_file("test_batch.bin");
    assert_data_error(
        cifar::read_batches(&[good, odd.clone()], Some(1001)),
        &odd,
        &["found 6147 bytes"],
    );
    let short = write(dir.path(), "short.bin", &real[..100]);
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&short), None),
        &short,
        &["found 100 bytes", "0 whole records + 100 bytes"],
    );
    let empty = write(dir.path(), "empty.bin", &[]);
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&empty), None),
        &empty,
        &["found 0 bytes", "empty"],
    );
    // The downloaded archive given instead of an extracted batch.
    let gz = write(
        dir.path(),
        "cifar-10-binary.tar.gz",
        &gzip(&real[..5 * RECORD]),
    );
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&gz), None),
        &gz,
        &["3073-byte", "gzip", "extract"],
    );
    let missing = dir.path().join("data_batch_9.bin");
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&missing), None),
        &missing,
        &["not found", "fetch-data.sh"],
    );
}

#[test]
fn cifar_label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(cifar_file("test_batch.bin")).unwrap();
    let mut bad = real[..5 * RECORD].to_vec();
    bad[3 * RECORD] = 10;
    let bad = write(dir.path(), "bad.bin", &bad);
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&bad), None),
        &bad,
        &["record 3: label 10", "expected 0..=9"],
    );
    // Past the limit, the file is still corrupt.
    assert_data_error(
        cifar::read_batches(std::slice::from_ref(&bad), Some(2)),
        &bad,
        &["label 10"],
    );
    let good = cifar_file("test_batch.bin");
    assert_data_error(
        cifar::read_batches(&[good, bad.clone()], None),
        &bad,
        &["record 3: label 10"],
    );
}

// ---------------------------------------------------------------------------------------
// (c) Arbitrary input never panics.

/// Bytes that look like an IDX file often enough to get past the magic number.
fn idx_like() -> impl Strategy<Value = Vec<u8>> {
    let magic = prop_oneof![Just(IMAGES_MAGIC), Just(LABELS_MAGIC), any::<u32>()];
    let dim = prop_oneof![0u32..40, Just(u32::MAX), any::<u32>()];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            magic,
            proptest::collection::vec(dim, 0..4),
            proptest::collection::vec(any::<u8>(), 0..2000)
        )
            .prop_map(|(m, dims, data)| idx_file(m, &dims, &data)),
    ]
}

/// A file, gzip-compressed or not.
fn maybe_gz(bytes: Vec<u8>, gz: bool) -> Vec<u8> {
    if gz {
        gzip(&bytes)
    } else {
        bytes
    }
}

fn check_set(set: &ImageSet) {
    assert_eq!(set.pixels.len(), set.len() * set.pixels_per_image());
    assert!(set.labels.iter().all(|&l| (l as usize) < set.classes));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn idx_arbitrary_bytes_never_panic(
        images in idx_like(),
        labels in idx_like(),
        gz_images in any::<bool>(),
        gz_labels in any::<bool>(),
        limit in proptest::option::of(0usize..50),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ip = write(dir.path(), "images", &maybe_gz(images, gz_images));
        let lp = write(dir.path(), "labels", &maybe_gz(labels, gz_labels));
        if let Ok(set) = idx::read_pair(&ip, &lp, limit) {
            check_set(&set);
        }
        // Each against a valid partner, so the second file's checks are reached too.
        let (good_images, good_labels) = small_real_idx(3);
        let gi = write(dir.path(), "good-images", &good_images);
        let gl = write(dir.path(), "good-labels", &good_labels);
        if let Ok(set) = idx::read_pair(&gi, &lp, limit) { check_set(&set); }
        if let Ok(set) = idx::read_pair(&ip, &gl, limit) { check_set(&set); }
    }

    /// Truncating a real file is always an error; flipping a bit of a gzip file either
    /// still gives the original data or an error, never different data.
    #[test]
    fn idx_truncated_or_bit_flipped_real_files(
        gz in any::<bool>(),
        which in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = small_real_idx(4);
        let (images, labels) = (maybe_gz(images, gz), maybe_gz(labels, gz));
        let ip = write(dir.path(), "images", &images);
        let lp = write(dir.path(), "labels", &labels);
        let original = idx::read_pair(&ip, &lp, None).unwrap();
        let (victim, bytes) = if which { (&ip, &images) } else { (&lp, &labels) };

        let cut = cut.index(bytes.len());
        std::fs::write(victim, &bytes[..cut]).unwrap();
        let truncated = idx::read_pair(&ip, &lp, None);
        prop_assert!(
            matches!(&truncated, Err(Error::Data { path, .. }) if path == victim),
            "cut at {cut}: {truncated:?}"
        );

        let mut flipped = bytes.clone();
        let at = flip.index(flipped.len());
        flipped[at] ^= 1 << bit;
        std::fs::write(victim, &flipped).unwrap();
        match idx::read_pair(&ip, &lp, None) {
            Ok(set) => {
                check_set(&set);
                if gz {
                    prop_assert_eq!(&set, &original, "bit {} of byte {} flipped", bit, at);
                }
            }
            Err(Error::Data { path, .. }) => prop_assert_eq!(&path, victim),
            Err(other) => prop_assert!(false, "not a data error: {other:?}"),
        }
    }

    #[test]
    fn cifar_arbitrary_bytes_never_panic(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..8000),
            // Whole records, labels mostly valid.
            (1usize..4, proptest::collection::vec(0u8..12, 3))
                .prop_map(|(n, labels)| {
                    let mut out = vec![7u8; n * RECORD];
                    for (i, l) in labels.into_iter().take(n).enumerate() {
                        out[i * RECORD] = l;
                    }
                    out
                }),
        ],
        limit in proptest::option::of(0usize..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "batch.bin", &bytes);
        match cifar::read_batches(&[path.clone(), path.clone()], limit) {
            Ok(set) => {
                check_set(&set);
                let whole = 2 * bytes.len() / RECORD;
                prop_assert_eq!(set.len(), limit.map_or(whole, |l| l.min(whole)));
                prop_assert_eq!(set.shape, (3, 32, 32));
            }
            Err(Error::Data { path: p, .. }) => prop_assert_eq!(p, path),
            Err(other) => prop_assert!(false, "not a data error: {other:?}"),
        }
    }
}
