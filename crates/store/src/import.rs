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
    checked::{self, Stamp},
    crash,
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
const WRITEBACK_STEP: u64 = 16 << 20;

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
        let mut spare = Vec::new();
        loop {
            let mut buf = match &mut data {
                Data::File(f) => f.buffer()?,
                Data::Mem(_) => std::mem::take(&mut spare),
            };
            buf.resize(READ_BUF, 0);
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
            buf.truncate(n);
            hasher.update(&buf, &mut pairs);
            if pairs.len() >= 64 * 1024 {
                outboard.append(&pairs, self)?;
                pairs.clear();
            }
            if let Some(back) = data.write(buf, inline_max, self)? {
                spare = back;
            }
        }
        let hash = hasher.finalize(&mut pairs);
        outboard.append(&pairs, self)?;
        let staged = match data {
            Data::Mem(bytes) => Staged::Mem(bytes),
            Data::File(f) => {
                let (size, file) = f.finish()?;
                Staged::File { file, size }
            }
        };
        self.commit_import(hash, staged, outboard, pin, true)
    }

    fn temp_data_file(&self) -> Result<DataFile, StoreError> {
        let file = tempfile::Builder::new()
            .suffix(".data")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                crate::FILE_MODE,
            ))
            .tempfile_in(&self.inner.tmp_dir)
            .ctx(|| format!("creating a file in {}", self.inner.tmp_dir.display()))?;
        DataFile::new(file)
    }

    /// Makes an imported blob durable and visible (steps 2 and 3 above).
    /// Records an imported blob. Not `durable`, a blob held inline (in the
    /// database) is committed without waiting for the disk: the next
    /// durable commit of the database (any import, a room's log entry) makes
    /// it durable too, and a crash before loses it whole. A blob in a data
    /// file is always committed durably (its file is renamed into `data/`
    /// first, and the database must never name a file a crash lost).
    pub(crate) fn commit_import(
        &self,
        hash: Hash,
        staged: Staged,
        outboard: Spool,
        pin: Option<&str>,
        durable: bool,
    ) -> Result<Imported, StoreError> {
        let temp_pin = self.temp_pin(hash);
        let (size, file) = match staged {
            Staged::Mem(bytes) => (bytes.len() as u64, Err(bytes)),
            // Written and fsynced before the transaction that makes it visible.
            Staged::File { file, size } => (size, Ok(file)),
        };
        let mut txn = self.begin_write()?;
        if !durable && file.is_err() {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Corrupt(format!("setting durability: {e}")))?;
        }
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
                        crash::point("import.synced");
                        let dest = self.data_path(&hash);
                        std::fs::rename(temp.path(), &dest)
                            .ctx(|| format!("moving imported data to {}", dest.display()))?;
                        self.sync_data_dir()?;
                        crash::point("import.renamed");
                        // Hashed as it was written: no upload checks it again.
                        let stamp = Stamp::of(temp.as_file())
                            .ctx(|| format!("reading the times of {}", dest.display()))?;
                        checked::record(&txn, &hash, &stamp)?;
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
        crash::point("import.committed");
        if let Some(live) = self.live_partial(&hash) {
            // A download of the same blob is in progress: it is finished now.
            live.mark_complete(size);
        }
        if new {
            tracing::debug!(%hash, size, "imported");
        }
        // An unused temporary file (duplicate content) is removed on drop,
        // on a thread of its own: dropping a large file's pages takes a while.
        if let Ok(temp) = file
            && !new
        {
            let _ = std::thread::Builder::new()
                .name("p2pfs-unlink".into())
                .spawn(move || drop(temp));
        }
        Ok(Imported {
            hash,
            size,
            new,
            temp_pin,
        })
    }
}

/// The bytes of a blob ready to commit: small enough to be inlined, or a
/// fsynced file in `tmp/`.
pub(crate) enum Staged {
    Mem(Vec<u8>),
    File { file: NamedTempFile, size: u64 },
}

/// Where imported bytes go: memory while the blob is small enough to be
/// inlined, a temporary file otherwise.
enum Data {
    Mem(Vec<u8>),
    File(DataFile),
}

impl Data {
    /// Takes a filled buffer; returns it if it can be reused at once.
    fn write(
        &mut self,
        buf: Vec<u8>,
        inline_max: u64,
        store: &Store,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Data::File(f) => f.submit(buf).map(|()| None),
            Data::Mem(bytes) => {
                bytes.extend_from_slice(&buf);
                if bytes.len() as u64 > inline_max {
                    let mut f = store.temp_data_file()?;
                    f.submit(std::mem::take(bytes))?;
                    *self = Data::File(f);
                }
                Ok(Some(buf))
            }
        }
    }
}

/// Buffers in flight between the importer and the writer thread.
const BUFFERS: usize = 8;

/// A temporary data file written by a background thread, so the disk is
/// busy while the importer reads and hashes.
///
/// Buffers circulate: the importer fills one, hashes it and submits it; the
/// writer writes it and hands it back. A third thread fsyncs every
/// [`WRITEBACK_STEP`] bytes, so writeback runs alongside (the kernel would
/// otherwise start it only at the final fsync) and that fsync has little
/// left to do.
struct DataFile {
    file: NamedTempFile,
    to_writer: Option<mpsc::SyncSender<Vec<u8>>>,
    free: mpsc::Receiver<Vec<u8>>,
    made: usize,
    writer: Option<thread::JoinHandle<io::Result<u64>>>,
}

impl DataFile {
    fn new(file: NamedTempFile) -> Result<Self, StoreError> {
        let out = file
            .as_file()
            .try_clone()
            .ctx(|| "duplicating a file handle".into())?;
        let (to_writer, jobs) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        let (give_back, free) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("p2pfs-import".into())
            .spawn(move || write_loop(out, jobs, give_back))
            .ctx(|| "starting the import writer thread".into())?;
        Ok(Self {
            file,
            to_writer: Some(to_writer),
            free,
            made: 0,
            writer: Some(writer),
        })
    }

    /// A buffer to fill: a returned one, a new one while fewer than
    /// [`BUFFERS`] exist, else the next one the writer returns.
    fn buffer(&mut self) -> Result<Vec<u8>, StoreError> {
        if let Ok(b) = self.free.try_recv() {
            return Ok(b);
        }
        if self.made < BUFFERS {
            self.made += 1;
            return Ok(Vec::with_capacity(READ_BUF));
        }
        match self.free.recv() {
            Ok(b) => Ok(b),
            Err(_) => Err(self.writer_error()),
        }
    }

    fn submit(&mut self, buf: Vec<u8>) -> Result<(), StoreError> {
        let sent = self.to_writer.as_ref().map(|tx| tx.send(buf).is_ok());
        if sent == Some(true) {
            Ok(())
        } else {
            Err(self.writer_error())
        }
    }

    /// The writer stopped early: why.
    fn writer_error(&mut self) -> StoreError {
        self.to_writer = None;
        match self.writer.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => crate::error::io_error("writing imported data".into(), e),
            _ => StoreError::Io {
                context: "writing imported data".into(),
                source: io::Error::other("the import writer thread stopped"),
            },
        }
    }

    /// Waits until every byte is written and fsynced; returns the size and
    /// the file.
    fn finish(mut self) -> Result<(u64, NamedTempFile), StoreError> {
        self.to_writer = None;
        let written = match self.writer.take().map(|h| h.join()) {
            Some(Ok(r)) => r.ctx(|| "writing imported data".into())?,
            _ => return Err(self.writer_error()),
        };
        Ok((written, self.file))
    }
}

/// The writer thread: writes buffers in order, returns them, and keeps a
/// flusher thread syncing behind it. Ends with a final fsync.
fn write_loop(
    mut file: File,
    jobs: mpsc::Receiver<Vec<u8>>,
    give_back: mpsc::Sender<Vec<u8>>,
) -> io::Result<u64> {
    let flusher_file = file.try_clone()?;
    let (kick, kicks) = mpsc::sync_channel::<()>(1);
    let flusher =
        thread::Builder::new()
            .name("p2pfs-flush".into())
            .spawn(move || -> io::Result<()> {
                while kicks.recv().is_ok() {
                    flusher_file.sync_data()?;
                }
                Ok(())
            })?;
    let mut written = 0u64;
    let mut result = Ok(());
    for buf in jobs {
        if let Err(e) = file.write_all(&buf) {
            result = Err(e);
            break;
        }
        let before = written / WRITEBACK_STEP;
        written += buf.len() as u64;
        if written / WRITEBACK_STEP != before {
            // A full channel means a flush is queued already.
            let _ = kick.try_send(());
        }
        let _ = give_back.send(buf);
    }
    drop(kick);
    let flushed = flusher
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("writeback thread panicked")));
    result?;
    flushed?;
    file.sync_data()?;
    Ok(written)
}

/// The outboard of a blob being imported: in memory while small, spilled to
/// a temporary file beyond [`OUTBOARD_IN_MEMORY`].
#[derive(Default)]
pub(crate) enum Spool {
    #[default]
    Empty,
    Mem(Vec<u8>),
    File(BufWriter<NamedTempFile>),
}

impl Spool {
    pub(crate) fn append(&mut self, bytes: &[u8], store: &Store) -> Result<(), StoreError> {
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
                        .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                            crate::FILE_MODE,
                        ))
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
