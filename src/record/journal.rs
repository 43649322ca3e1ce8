//! The journal: an append-only, checksummed log of everything a run publishes. It is the
//! write-ahead record: `run.h5` and `summary.json` are derived from it (at the end of a
//! run, or by `noiselab repair`), `resume` continues from it and `watch` follows it.
//!
//! File: the magic `noiselab-journal\n`, a little-endian u32 format version, then
//! frames `[u32 length][u32 CRC-32 of payload][payload]`, the payload a postcard-encoded
//! [`Record`]. A process killed mid-write leaves at most one torn frame at the end: the
//! reader stops at the first frame that is short or fails its checksum and reports how
//! many bytes it set aside; the appender cuts them off before writing on.

use crate::dynamics::DynamicsKind;
use crate::engine::Checkpoint;
use crate::events::Event;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FILE_NAME: &str = "journal.bin";
pub const MAGIC: &[u8] = b"noiselab-journal\n";
/// Format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const PREAMBLE: usize = MAGIC.len() + 4;
/// Larger frames are taken as corruption, not allocated.
const MAX_FRAME: usize = 1 << 30;

/// One journal entry, stamped with the wall-clock time it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub unix_ms: u64,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// The first record: what the run is.
    Header(Header),
    /// Everything the workers published, in the order the recorder received it.
    Event(Event),
    /// θ and the noise state after `checkpoint.iteration` steps of one trajectory.
    Checkpoint {
        dynamics: DynamicsKind,
        replicate: usize,
        checkpoint: Box<Checkpoint>,
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

impl Record {
    pub fn now(body: Body) -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Record { unix_ms, body }
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
    /// Why reading stopped before the end, if it did.
    pub stopped: Option<String>,
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
                "journal format {version} was written by a newer noiselab; this build reads up to {FORMAT_VERSION}"
            ),
        ));
    }
    let mut records = Vec::new();
    let mut at = PREAMBLE;
    let mut stopped = None;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            stopped = Some(format!("torn frame header at byte {at}"));
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            stopped = Some(format!("implausible frame length {len} at byte {at}"));
            break;
        }
        if rest.len() < 8 + len {
            stopped = Some(format!(
                "torn frame at byte {at} ({} of {len} bytes)",
                rest.len() - 8
            ));
            break;
        }
        let payload = &rest[8..8 + len];
        if crc32fast::hash(payload) != crc {
            stopped = Some(format!("checksum mismatch in the frame at byte {at}"));
            break;
        }
        match postcard::from_bytes::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(e) => {
                stopped = Some(format!("undecodable frame at byte {at}: {e}"));
                break;
            }
        }
        at += 8 + len;
    }
    Ok(Contents {
        records,
        valid_len: at as u64,
        file_len: bytes.len() as u64,
        stopped,
    })
}

/// Reads a journal file.
pub fn read(path: &Path) -> Result<Contents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Appends records; `flush` hands them to the OS (enough to survive `kill -9`), `sync`
/// also makes them durable on disk.
pub struct Writer {
    path: PathBuf,
    file: BufWriter<File>,
    buffered: usize,
}

impl Writer {
    /// Starts a new journal; refuses to overwrite one.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut w = Writer {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            buffered: 0,
        };
        w.file
            .write_all(MAGIC)
            .and_then(|_| w.file.write_all(&FORMAT_VERSION.to_le_bytes()))
            .map_err(|e| Error::io(path, e))?;
        w.sync()?;
        Ok(w)
    }

    /// Opens an existing journal to write on: reads it, cuts off a torn tail, and
    /// returns what it held.
    pub fn append(path: &Path) -> Result<(Self, Contents)> {
        let contents = read(path)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
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
        let payload = postcard::to_stdvec(&Record::now(body))
            .map_err(|e| Error::unreadable(&self.path, format!("cannot encode a record: {e}")))?;
        let crc = crc32fast::hash(&payload);
        self.file
            .write_all(&(payload.len() as u32).to_le_bytes())
            .and_then(|_| self.file.write_all(&crc.to_le_bytes()))
            .and_then(|_| self.file.write_all(&payload))
            .map_err(|e| Error::io(&self.path, e))?;
        self.buffered += payload.len() + 8;
        Ok(payload.len() + 8)
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
        // A frame that fails its checksum while complete is corruption, not a write in
        // progress: report it rather than wait for ever.
        if let Some(why) = &contents.stopped {
            if why.starts_with("checksum")
                || why.starts_with("undecodable")
                || why.starts_with("implausible")
            {
                return Err(Error::unreadable(&self.path, why.clone()));
            }
        }
        self.pending.drain(..used);
        Ok(contents.records)
    }
}
