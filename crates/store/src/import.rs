//! Importing local bytes: one pass that hashes, builds the outboard and
//! writes the data, then one durable commit.
//!
//! The order of durable steps (see DESIGN.md):
//! 1. data goes to a temporary file in `tmp/` while it is hashed;
//! 2. the file is fsynced, renamed to `data/<hash>.data`, and the data
//!    directory is fsynced;
//! 3. one redb transaction records the blob, its outboard and any pin.
//!
//! A crash before 3 leaves at most an unreferenced file, which `open`
//! (for `tmp/`) or GC (for `data/`) removes; it never leaves an entry
//! pointing at missing bytes.

use std::{
    fs::File,
    io::{self, BufReader, BufWriter, Read, Write},
    path::Path,
    sync::mpsc,
    thread,
};

use p2pfs_proto::Hash;
use redb::ReadableTable;
use tempfile::NamedTempFile;

use crate::{
    Store, TempPin,
    error::{DbContext, IoContext, StoreError},
    outboard::SegmentWriter,
    tables::{self, BlobMeta, BlobState},
    tree::TreeHasher,
};

/// Bytes read from the source per step.
const READ_BUF: usize = 1 << 20;
/// The outboard stays in memory up to this size (a 2 GiB blob), then spills
/// to a temporary file.
const OUTBOARD_IN_MEMORY: usize = 8 << 20;
/// Writeback of the data file is started every this many bytes, so the
/// final fsync has little left to wait for.
const WRITEBACK_STEP: u64 = 32 << 20;

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The blob's hash.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// False if the store already had the blob complete (no second copy was
    /// kept).
    pub new: bool,
    /// Keeps the blob from GC until dropped, for callers that pin it later.
    pub temp_pin: TempPin,
}

impl Store {
    /// Imports the file at `path`, pinning the blob under `pin` if given.
    pub fn import_file(&self, path: &Path, pin: Option<&str>) -> Result<Imported, StoreError> {
        let file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .ctx(|| format!("reading metadata of {}", path.display()))?;
        if meta.is_dir() {
            return Err(StoreError::Invalid(format!(
                "{} is a directory",
                path.display()
            )));
        }
        let hint = meta.is_file().then_some(meta.len());
        self.import_inner(file, hint, &path.display().to_string(), pin)
    }

    /// Imports everything `reader` yields, pinning the blob under `pin` if
    /// given. `source` names the reader in error messages.
    pub fn import_reader(
        &self,
        reader: impl Read,
        source: &str,
        pin: Option<&str>,
    ) -> Result<Imported, StoreError> {
        self.import_inner(reader, None, source, pin)
    }

    /// Imports a byte slice.
    pub fn import_bytes(&self, bytes: &[u8], pin: Option<&str>) -> Result<Imported, StoreError> {
        self.import_inner(bytes, Some(bytes.len() as u64), "memory", pin)
    }

    fn import_inner(
        &self,
        mut reader: impl Read,
        size_hint: Option<u64>,
        source: &str,
        pin: Option<&str>,
    ) -> Result<Imported, StoreError> {
        let inline_max = self.inner.opts.inline_max;
        let mut hasher = TreeHasher::new();
        let mut outboard = Spool::default();
        let mut pairs = Vec::with_capacity(64 * 1024);
        let mut data = if size_hint.is_some_and(|s| s > inline_max) {
            Data::File(self.temp_data_file()?)
        } else {
            Data::Mem(Vec::new())
        };
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        context: format!("reading {source}"),
                        source: e,
                    });
                }
            };
            let chunk = &buf[..n];
            hasher.update(chunk, &mut pairs);
            if pairs.len() >= 64 * 1024 {
                outboard.append(&pairs, self)?;
                pairs.clear();
            }
            data.write(chunk, inline_max, self)?;
        }
        let hash = hasher.finalize(&mut pairs);
        outboard.append(&pairs, self)?;
        self.commit_import(hash, data, outboard, pin)
    }

    fn temp_data_file(&self) -> Result<DataFile, StoreError> {
        let file = tempfile::Builder::new()
            .suffix(".data")
            .tempfile_in(&self.inner.tmp_dir)
            .ctx(|| format!("creating a file in {}", self.inner.tmp_dir.display()))?;
        Ok(DataFile::new(file))
    }

    /// Makes an imported blob durable and visible (steps 2 and 3 above).
    fn commit_import(
        &self,
        hash: Hash,
        data: Data,
        outboard: Spool,
        pin: Option<&str>,
    ) -> Result<Imported, StoreError> {
        let temp_pin = self.temp_pin(hash);
        let (size, file) = match data {
            Data::Mem(bytes) => (bytes.len() as u64, Err(bytes)),
            Data::File(f) => {
                let (size, file) = f.finish()?;
                (size, Ok(file))
            }
        };
        let txn = self.begin_write()?;
        let new = {
            let mut blobs = txn.open_table(tables::BLOBS).db()?;
            let existing = match blobs.get(hash.as_bytes()).db()? {
                Some(g) => Some(BlobMeta::decode(g.value())?),
                None => None,
            };
            let new = !existing.is_some_and(|m| m.is_complete());
            if new {
                let state = match &file {
                    Ok(temp) => {
                        temp.as_file()
                            .sync_data()
                            .ctx(|| "syncing imported data".into())?;
                        let dest = self.data_path(&hash);
                        std::fs::rename(temp.path(), &dest)
                            .ctx(|| format!("moving imported data to {}", dest.display()))?;
                        self.sync_data_dir()?;
                        BlobState::CompleteFile
                    }
                    Err(bytes) => {
                        let mut inline = txn.open_table(tables::INLINE).db()?;
                        inline.insert(hash.as_bytes(), bytes.as_slice()).db()?;
                        BlobState::CompleteInline
                    }
                };
                blobs
                    .insert(
                        hash.as_bytes(),
                        BlobMeta { size, state }.encode()?.as_slice(),
                    )
                    .db()?;
                let mut have = txn.open_table(tables::HAVE).db()?;
                have.remove(hash.as_bytes()).db()?;
                let mut segments = txn.open_table(tables::OUTBOARD).db()?;
                let mut w = SegmentWriter::new(&mut segments, &hash);
                outboard.copy_into(&mut w)?;
                w.finish()?;
            }
            if let Some(name) = pin {
                let mut pins = txn.open_table(tables::PINS).db()?;
                pins.insert((hash.as_bytes(), name), ()).db()?;
            }
            new
        };
        txn.commit().db()?;
        if new {
            tracing::debug!(%hash, size, "imported");
        }
        // An unused temporary file (duplicate content) is removed on drop.
        drop(file);
        Ok(Imported {
            hash,
            size,
            new,
            temp_pin,
        })
    }
}

/// Where imported bytes go: memory while the blob is small enough to be
/// inlined, a temporary file otherwise.
enum Data {
    Mem(Vec<u8>),
    File(DataFile),
}

impl Data {
    fn write(&mut self, chunk: &[u8], inline_max: u64, store: &Store) -> Result<(), StoreError> {
        match self {
            Data::File(f) => f.write(chunk),
            Data::Mem(bytes) => {
                bytes.extend_from_slice(chunk);
                if bytes.len() as u64 > inline_max {
                    let mut f = store.temp_data_file()?;
                    f.write(bytes)?;
                    *self = Data::File(f);
                }
                Ok(())
            }
        }
    }
}

/// A temporary data file being written, with writeback started as it grows.
struct DataFile {
    file: NamedTempFile,
    len: u64,
    flusher: Option<Flusher>,
}

impl DataFile {
    fn new(file: NamedTempFile) -> Self {
        Self {
            file,
            len: 0,
            flusher: None,
        }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        self.file
            .as_file_mut()
            .write_all(chunk)
            .ctx(|| "writing imported data".into())?;
        let before = self.len / WRITEBACK_STEP;
        self.len += chunk.len() as u64;
        if self.len / WRITEBACK_STEP != before {
            if self.flusher.is_none() {
                self.flusher = Some(Flusher::start(self.file.as_file())?);
            }
            if let Some(f) = &self.flusher {
                f.kick();
            }
        }
        Ok(())
    }

    /// Waits for the background flushes; returns the size and the file.
    fn finish(self) -> Result<(u64, NamedTempFile), StoreError> {
        if let Some(f) = self.flusher {
            f.finish()?;
        }
        Ok((self.len, self.file))
    }
}

/// A thread that fsyncs a file being written whenever kicked, so the disk
/// writes while the importer hashes (the kernel would otherwise wait for
/// the final fsync to start).
struct Flusher {
    tx: mpsc::SyncSender<()>,
    handle: thread::JoinHandle<io::Result<()>>,
}

impl Flusher {
    fn start(file: &File) -> Result<Self, StoreError> {
        let file = file
            .try_clone()
            .ctx(|| "duplicating a file handle".into())?;
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let handle = thread::Builder::new()
            .name("p2pfs-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ctx(|| "starting a writeback thread".into())?;
        Ok(Self { tx, handle })
    }

    fn kick(&self) {
        // A full channel means a flush is already queued: nothing to add.
        let _ = self.tx.try_send(());
    }

    fn finish(self) -> Result<(), StoreError> {
        drop(self.tx);
        match self.handle.join() {
            Ok(r) => r.ctx(|| "syncing imported data".into()),
            Err(_) => Err(StoreError::Io {
                context: "syncing imported data".into(),
                source: io::Error::other("writeback thread panicked"),
            }),
        }
    }
}

/// The outboard of a blob being imported: in memory while small, spilled to
/// a temporary file beyond [`OUTBOARD_IN_MEMORY`].
#[derive(Default)]
enum Spool {
    #[default]
    Empty,
    Mem(Vec<u8>),
    File(BufWriter<NamedTempFile>),
}

impl Spool {
    fn append(&mut self, bytes: &[u8], store: &Store) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Spool::Empty => *self = Spool::Mem(bytes.to_vec()),
            Spool::Mem(v) => {
                v.extend_from_slice(bytes);
                if v.len() > OUTBOARD_IN_MEMORY {
                    let file = tempfile::Builder::new()
                        .suffix(".obao")
                        .tempfile_in(&store.inner.tmp_dir)
                        .ctx(|| "creating a temporary outboard file".into())?;
                    let mut w = BufWriter::new(file);
                    w.write_all(v)
                        .ctx(|| "writing a temporary outboard".into())?;
                    *self = Spool::File(w);
                }
            }
            Spool::File(w) => w
                .write_all(bytes)
                .ctx(|| "writing a temporary outboard".into())?,
        }
        Ok(())
    }

    fn copy_into(self, w: &mut SegmentWriter<'_, '_>) -> Result<(), StoreError> {
        match self {
            Spool::Empty => Ok(()),
            Spool::Mem(v) => w.write(&v),
            Spool::File(bw) => {
                let file = bw
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .ctx(|| "writing a temporary outboard".into())?;
                let mut r = BufReader::new(
                    file.reopen()
                        .ctx(|| "reading a temporary outboard".into())?,
                );
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = r
                        .read(&mut buf)
                        .ctx(|| "reading a temporary outboard".into())?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.write(&buf[..n])?;
                }
            }
        }
    }
}
