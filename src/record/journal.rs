//! The journal: an append-only, checksummed log of everything a run publishes. It is the
//! write-ahead record: `run.h5` and `summary.json` are derived from it (at the end of a
//! run, or by `noiselab repair`), `resume` continues from it and `watch` follows it.
//!
//! File: the magic `noiselab-journal\n`, a little-endian u32 format version, then
//! frames `[u32 length][u32 CRC-32 of payload][payload]`, the payload a CBOR-encoded
//! [`Record`] in which every variant and field is tagged by its name (format 2), so
//! adding or reordering events or metrics never changes how an old journal reads.
//! Format 1 (postcard, variants by position) is refused with a message saying so.
//! A process killed mid-write leaves at most one torn frame at the end: the reader
//! stops at the first frame that is short or fails its checksum and reports how many
//! bytes it set aside; the appender cuts them off before writing on. A complete frame
//! that fails its checksum or does not decode anywhere else is reported as corruption.

use crate::dynamics::DynamicsKind;
use crate::events::Event;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FILE_NAME: &str = "journal.bin";
pub const MAGIC: &[u8] = b"noiselab-journal\n";
/// Format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// What the error of a journal from an older noiselab starts with.
pub const OLDER_FORMAT: &str = "journal format";
const PREAMBLE: usize = MAGIC.len() + 4;
/// `[u32 length][u32 CRC-32 of the payload][u32 CRC-32 of the first 8 bytes]`: a flipped
/// length is caught by the header's own checksum, never taken for a torn tail.
const FRAME_HEADER: usize = 12;
/// Larger frames are taken as corruption, not allocated.
const MAX_FRAME: usize = 1 << 30;

/// One journal entry, stamped with the wall-clock time it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub unix_ms: u64,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// The first record: what the run is.
    Header(Header),
    /// Everything the workers published, in the order the recorder received it.
    Event(Event),
    /// One trajectory was checkpointed after `iteration` (its θ and noise state are in
    /// `checkpoints/`, see `record/checkpoint.rs`).
    Checkpoint {
        dynamics: DynamicsKind,
        replicate: usize,
        iteration: u64,
    },
    /// `noiselab resume` took over from here.
    Resumed { at: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub noiselab_version: String,
    pub git_describe: Option<String>,
    pub config_toml: String,
    pub config_source: String,
    pub seed: u64,
    pub created: String,
    pub device: String,
}

/// Wall-clock milliseconds since the Unix epoch: the records' clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Record {
    pub fn now(body: Body) -> Self {
        Record {
            unix_ms: now_ms(),
            body,
        }
    }
}

/// What a journal holds, and how much of its tail was unreadable.
#[derive(Clone, Debug, PartialEq)]
pub struct Contents {
    pub records: Vec<Record>,
    /// Bytes of well-formed preamble and frames.
    pub valid_len: u64,
    /// Bytes in the file; more than `valid_len` after a crash mid-write.
    pub file_len: u64,
    /// Why reading stopped before the end at a torn last frame (a write cut short by a
    /// crash: expected, and cut off before writing on).
    pub stopped: Option<String>,
    /// Why reading stopped at a complete frame that is damaged (a flipped byte, a
    /// foreign write): never expected; nothing after it is read.
    pub damaged: Option<String>,
}

impl Contents {
    pub fn header(&self) -> Option<&Header> {
        self.records.iter().find_map(|r| match &r.body {
            Body::Header(h) => Some(h),
            _ => None,
        })
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.records.iter().filter_map(|r| match &r.body {
            Body::Event(e) => Some(e),
            _ => None,
        })
    }
}

/// Parses a whole journal image. Never panics: foreign or newer files are errors
/// (`describe` names the file in them); a torn or corrupt frame ends the records.
pub fn parse(bytes: &[u8], describe: &Path) -> Result<Contents> {
    if bytes.len() < PREAMBLE || &bytes[..MAGIC.len()] != MAGIC {
        let what = if bytes.len() < PREAMBLE && MAGIC.starts_with(bytes) {
            format!("truncated before the end of its {PREAMBLE}-byte preamble")
        } else {
            "not a noiselab journal (wrong magic bytes)".to_string()
        };
        return Err(Error::unreadable(describe, what));
    }
    let version = u32::from_le_bytes(bytes[MAGIC.len()..PREAMBLE].try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(Error::unreadable(
            describe,
            format!(
                "journal format {version} was written by a newer noiselab; this build reads format {FORMAT_VERSION}"
            ),
        ));
    }
    if version < FORMAT_VERSION {
        return Err(Error::unreadable(
            describe,
            format!(
                "journal format {version} was written by an older noiselab (0.1, before events were tagged by name); \
                 this build reads format {FORMAT_VERSION} only. Its run.h5 and summary.json are still readable; \
                 to resume or repair it, use the noiselab release that wrote it"
            ),
        ));
    }
    let mut records = Vec::new();
    let mut at = PREAMBLE;
    let mut stopped = None;
    let mut damaged = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let frame = records.len() + 1;
        if rest.len() < FRAME_HEADER {
            stopped = Some(format!("torn frame header at byte {at}"));
            break;
        }
        let word =
            |i: usize| u32::from_le_bytes(rest[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let (len, crc, header_crc) = (word(0) as usize, word(1), word(2));
        if crc32fast::hash(&rest[..8]) != header_crc {
            damaged = Some(format!(
                "frame {frame} at byte {at}: its header fails its checksum"
            ));
            break;
        }
        if len > MAX_FRAME {
            damaged = Some(format!(
                "frame {frame} at byte {at}: implausible length {len}"
            ));
            break;
        }
        if rest.len() < FRAME_HEADER + len {
            stopped = Some(format!(
                "torn frame at byte {at} ({} of {len} bytes)",
                rest.len() - FRAME_HEADER
            ));
            break;
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            damaged = Some(format!("frame {frame} at byte {at}: checksum mismatch"));
            break;
        }
        match decode(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                damaged = Some(format!("frame {frame} at byte {at}: undecodable ({e})"));
                break;
            }
        }
        at += FRAME_HEADER + len;
    }
    Ok(Contents {
        records,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
        stopped,
        damaged,
    })
}

/// A record as a frame's payload.
pub fn encode(record: &Record) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A frame's payload as a record; every byte must be used.
pub fn decode(payload: &[u8]) -> std::result::Result<Record, String> {
    let mut rest = payload;
    let record: Record = ciborium::from_reader(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the record", rest.len()));
    }
    Ok(record)
}

/// Reads a journal file; a damaged frame is an error naming it (a torn last frame is
/// not: see [`Contents::stopped`]).
pub fn read(path: &Path) -> Result<Contents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let contents = parse(&bytes, path)?;
    match &contents.damaged {
        Some(why) => Err(damage(path, &contents, why)),
        None => Ok(contents),
    }
}

fn damage(path: &Path, contents: &Contents, why: &str) -> Error {
    let dir = path.parent().unwrap_or(Path::new("."));
    Error::unreadable(
        path,
        format!(
            "{DAMAGED}: {why}; the {} records before it are intact, nothing after it is trusted \
             (run.h5 and summary.json, when present, are the last complete record). \
             `noiselab repair --truncate {}` keeps the intact records (the whole file is kept \
             as journal.bin.damaged) and rebuilds run.h5 from them; `noiselab resume` then \
             continues the run",
            contents.records.len(),
            dir.display()
        ),
    )
}

/// How a damaged journal's error message begins.
pub const DAMAGED: &str = "damaged";

/// Cuts a damaged journal back to its intact records, after copying the whole file to
/// `journal.bin.damaged` (or `.damaged-2`, … when taken). Refused while a process writes
/// the run. Returns the number of intact records kept and the copy's path; `None` when
/// the journal is not damaged.
pub fn truncate_damaged(path: &Path) -> Result<Option<(usize, PathBuf)>> {
    let file = open_existing_for_writing(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let contents = parse(&bytes, path)?;
    if contents.damaged.is_none() {
        return Ok(None);
    }
    let copy = (1..)
        .map(|i| {
            let name = match i {
                1 => format!("{FILE_NAME}.damaged"),
                i => format!("{FILE_NAME}.damaged-{i}"),
            };
            path.with_file_name(name)
        })
        .find(|p| !p.exists())
        .expect("an unused name");
    std::fs::write(&copy, &bytes).map_err(|e| Error::io(&copy, e))?;
    file.set_len(contents.valid_len)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(Some((contents.records.len(), copy)))
}

/// An open-file-description lock over the whole file (Linux `F_OFD_*`): held by the
/// journal's writer for as long as its process lives (released by the kernel on any
/// exit, `kill -9` included) and tested by readers without taking it.
fn ofd_lock(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value (l_pid must be 0).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Takes the writer lock of a journal, or explains who holds it.
fn lock_for_writing(file: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let mut lock = ofd_lock(libc::F_WRLCK as libc::c_short);
    // SAFETY: fcntl on an fd we own with a valid flock pointer.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(Error::unreadable(
            path,
            "another noiselab process is writing this run (it holds the journal's lock); \
             wait for it to end, or stop it, before resuming or repairing",
        )),
        // A file system without these locks: write without one (watch cannot tell a
        // dead writer from a live one there).
        Some(libc::EINVAL) | Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(Error::io(path, e)),
    }
}

/// An existing journal opened to be changed, with its writer lock taken (refused while
/// another process writes it).
fn open_existing_for_writing(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    lock_for_writing(&file, path)?;
    Ok(file)
}

/// Whether a process holds the writer lock of the journal at `path`; `None` when it
/// cannot be told (no such file, no locks on this file system).
pub fn writer_alive(path: &Path) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let file = File::open(path).ok()?;
    let mut lock = ofd_lock(libc::F_RDLCK as libc::c_short);
    // SAFETY: as above; F_OFD_GETLK only reports, it takes nothing.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    (rc == 0).then_some(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Appends records; `flush` hands them to the OS (enough to survive `kill -9`), `sync`
/// also makes them durable on disk.
pub struct Writer {
    path: PathBuf,
    file: BufWriter<File>,
    buffered: usize,
}

impl Writer {
    /// Starts a new journal; refuses to overwrite one. The file appears under its name
    /// with its preamble already written (written and synced beside it, then linked
    /// in), so a process killed at any moment leaves either no journal or a readable
    /// one — never a file too short to be resumed.
    pub fn create(path: &Path) -> Result<Self> {
        let mut staged = path.as_os_str().to_owned();
        staged.push(".creating");
        let staged = PathBuf::from(staged);
        // A stale one is what a kill between its creation and its link left behind.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged)
            .map_err(|e| Error::io(&staged, e))?;
        lock_for_writing(&file, &staged)?;
        let mut w = Writer {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            buffered: 0,
        };
        w.file
            .write_all(MAGIC)
            .and_then(|_| w.file.write_all(&FORMAT_VERSION.to_le_bytes()))
            .map_err(|e| Error::io(&staged, e))?;
        w.sync()?;
        // A hard link, unlike a rename, fails when the name is taken: never overwrites.
        // The lock belongs to the open file, so it holds under the new name too. File
        // systems without hard links (FAT, exFAT) get a rename after a check instead.
        match std::fs::hard_link(&staged, path) {
            Ok(()) => std::fs::remove_file(&staged).map_err(|e| Error::io(&staged, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists || path.exists() => {
                // The staged file is ours alone; a failure to remove it changes nothing.
                let _ = std::fs::remove_file(&staged);
                return Err(Error::io(path, e));
            }
            Err(_) => std::fs::rename(&staged, path).map_err(|e| Error::io(path, e))?,
        }
        Ok(w)
    }

    /// Opens an existing journal to write on: reads it, cuts off a torn tail, and
    /// returns what it held.
    pub fn append(path: &Path) -> Result<(Self, Contents)> {
        let mut file = open_existing_for_writing(path)?;
        let contents = read(path)?;
        file.set_len(contents.valid_len)
            .and_then(|_| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(path, e))?;
        Ok((
            Writer {
                path: path.to_path_buf(),
                file: BufWriter::with_capacity(1 << 20, file),
                buffered: 0,
            },
            contents,
        ))
    }

    /// Buffers one record; returns its size in bytes.
    pub fn write(&mut self, body: Body) -> Result<usize> {
        let payload = encode(&Record::now(body))
            .map_err(|e| Error::unreadable(&self.path, format!("cannot encode a record: {e}")))?;
        let mut header = [0u8; FRAME_HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let header_crc = crc32fast::hash(&header[..8]);
        header[8..].copy_from_slice(&header_crc.to_le_bytes());
        self.file
            .write_all(&header)
            .and_then(|_| self.file.write_all(&payload))
            .map_err(|e| Error::io(&self.path, e))?;
        self.buffered += payload.len() + FRAME_HEADER;
        Ok(payload.len() + FRAME_HEADER)
    }

    /// Bytes written since the last flush.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    pub fn flush(&mut self) -> Result<()> {
        self.buffered = 0;
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads a journal as another process writes it: each `poll` returns the complete
/// frames added since the last one, never touching the file.
pub struct Follower {
    path: PathBuf,
    pending: Vec<u8>,
    offset: u64,
    started: bool,
}

impl Follower {
    pub fn new(path: &Path) -> Self {
        Follower {
            path: path.to_path_buf(),
            pending: Vec::new(),
            offset: 0,
            started: false,
        }
    }

    pub fn poll(&mut self) -> Result<Vec<Record>> {
        let mut file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(&self.path, e))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)
            .map_err(|e| Error::io(&self.path, e))?;
        self.offset += fresh.len() as u64;
        self.pending.extend_from_slice(&fresh);
        if !self.started {
            if self.pending.len() < PREAMBLE {
                return Ok(vec![]);
            }
            // Validates magic and version exactly as a full read does.
            parse(&self.pending[..PREAMBLE], &self.path)?;
            self.pending.drain(..PREAMBLE);
            self.started = true;
        }
        let mut image = Vec::with_capacity(PREAMBLE + self.pending.len());
        image.extend_from_slice(MAGIC);
        image.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        image.extend_from_slice(&self.pending);
        let contents = parse(&image, &self.path)?;
        let used = contents.valid_len as usize - PREAMBLE;
        // A complete frame that is damaged is corruption, not a write in progress:
        // report it rather than wait for ever.
        if let Some(why) = &contents.damaged {
            return Err(damage(&self.path, &contents, why));
        }
        self.pending.drain(..used);
        Ok(contents.records)
    }
}
