#![doc = include_str!("../DESIGN.md")]

mod bundle;
mod checked;
pub mod crash;
mod db;
mod direct;
mod draft;
mod error;
mod export;
mod follow;
mod gc;
mod import;
mod ingest;
mod lock;
mod outboard;
mod outfile;
mod partial;
mod ranges;
mod records;
mod rooms;
mod stream;
mod tables;
mod tree;
mod window;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, Weak},
    time::Duration,
};

use bao_tree::BlockSize;
pub use bao_tree::{ChunkNum, ChunkRanges};
pub use bundle::{BundleReader, BundleWriter, MAX_RECORD, Record};
#[cfg(feature = "fuzzing")]
pub use db::MemoryDb;
pub use draft::Draft;
pub use error::StoreError;
pub use export::{BlobInfo, BlobReader, BlobState};
pub use gc::{GcReport, USER_PIN};
pub use import::Imported;
pub use ingest::{IngestReport, PartialBlob};
pub use lock::LOCK_FILE;
pub use outfile::OutputFile;
use p2pfs_proto::{Hash, chunk::CHUNK_GROUP_LOG};
pub use ranges::effective_ranges;
pub use records::{ProviderRecord, PutProvider};
use redb::ReadableTable;
pub use rooms::{RoomInfo, RoomTxn, ViewPair};

use crate::{
    error::{DbContext, IoContext},
    partial::PartialShared,
    tables::{FORMAT_KEY, FORMAT_VERSION},
};

/// The bao-tree block size: 16 KiB chunk groups.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(CHUNK_GROUP_LOG);

/// Mode of every file the store creates: the database holds room
/// secrets and chat, the data files what was shared in private rooms.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the store creates.
pub const DIR_MODE: u32 = 0o700;

/// Tunables of a [`Store`]; [`Options::default`] is what p2pfs uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Blobs up to this many bytes keep their data inside the database.
    pub inline_max: u64,
    /// Memory redb may use for its page cache.
    pub db_cache_bytes: usize,
    /// A download commits (fsync, then a redb commit) after this many new bytes…
    pub commit_bytes: u64,
    /// …or when this much time has passed since its last commit.
    pub commit_interval: Duration,
    /// Re-check data against its hash while sending it to peers, so local
    /// corruption is reported instead of served (costs one BLAKE3 pass).
    pub validate_uploads: bool,
    /// Who has the store open, as [`StoreError::Locked`] tells other
    /// processes (`p2pfs add (pid 1234)`); default: the program's name and
    /// pid.
    pub holder: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            inline_max: 16 * 1024,
            db_cache_bytes: 32 << 20,
            commit_bytes: 64 << 20,
            commit_interval: Duration::from_secs(2),
            validate_uploads: true,
            holder: lock::default_holder(),
        }
    }
}

/// A content store: BLAKE3-addressed blobs with their verification trees.
///
/// Cheap to clone; every clone is the same store. All methods block on disk
/// I/O, so async callers run them on a blocking thread.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    db: db::Db,
    root: PathBuf,
    data_dir: PathBuf,
    /// The data directory, opened to fsync it after a rename.
    data_dir_handle: File,
    tmp_dir: PathBuf,
    opts: Options,
    live: Mutex<Live>,
    /// Signalled when a download's last handle is gone (see `Store::partial`).
    live_changed: Condvar,
    /// What uploads have already checked against the hash.
    checked: checked::Checked,
    /// The bytes kept by the taps of downloads being read (see `follow`).
    pub(crate) taps: Arc<follow::TapBudget>,
    /// Uploads that checked what they sent, for tests.
    #[cfg(test)]
    validations: std::sync::atomic::AtomicU64,
    /// The lock naming this process; dropped last, after the database.
    _holder: lock::Holder,
}

/// What the store knows only in memory: which hashes are being written or
/// are held by a temporary pin (GC must not touch them), and the downloads
/// in progress.
#[derive(Debug, Default)]
struct Live {
    protected: HashMap<Hash, usize>,
    partial: HashMap<Hash, Weak<PartialShared>>,
}

impl Store {
    /// Opens the store in `dir`, creating it if needed, with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, Options::default())
    }

    /// Opens the store in `dir` with the given options.
    ///
    /// Fails with [`StoreError::Locked`] if another process (or another
    /// `Store` of this one) has it open.
    /// Leftovers of imports interrupted by a crash (in `tmp/`) are removed;
    /// nothing else is scanned, so opening is fast whatever the store holds.
    pub fn open_with(dir: impl AsRef<Path>, opts: Options) -> Result<Self, StoreError> {
        Self::open_on(dir.as_ref(), opts, db::Backend::File)
    }

    /// Opens the store in `dir` with its database in `db` rather than in
    /// `dir/meta.redb` (the blobs' data files stay in `dir`), for the fuzz
    /// targets (feature `fuzzing`): commits cost no fsync. Opening it again
    /// on the same `db` finds what was committed.
    #[cfg(feature = "fuzzing")]
    pub fn open_in_memory(
        dir: impl AsRef<Path>,
        db: &MemoryDb,
        opts: Options,
    ) -> Result<Self, StoreError> {
        Self::open_on(dir.as_ref(), opts, db::Backend::Memory(db.clone()))
    }

    fn open_on(dir: &Path, opts: Options, backend: db::Backend) -> Result<Self, StoreError> {
        let root = dir.to_path_buf();
        let data_dir = root.join("data");
        let tmp_dir = root.join("tmp");
        for d in [&root, &data_dir, &tmp_dir] {
            create_private_dir(d)?;
        }
        let holder = lock::take(&root, &opts.holder)?;
        let db_path = root.join("meta.redb");
        let db = db::Db::open(db_path, opts.db_cache_bytes, backend, &root)?;
        // We hold the database lock, so no other process is importing: any
        // file left in tmp/ belongs to an import that never committed.
        clear_dir(&tmp_dir)?;
        let data_dir_handle =
            File::open(&data_dir).ctx(|| format!("opening {}", data_dir.display()))?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                root,
                data_dir,
                data_dir_handle,
                tmp_dir,
                opts,
                live: Mutex::new(Live::default()),
                live_changed: Condvar::new(),
                checked: checked::Checked::default(),
                taps: Default::default(),
                #[cfg(test)]
                validations: Default::default(),
                _holder: holder,
            }),
        };
        store.check_format()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(tables::STORE).db()?;
            let found = t.get(FORMAT_KEY).db()?.map(|g| g.value());
            match found {
                None => {
                    t.insert(FORMAT_KEY, FORMAT_VERSION).db()?;
                }
                Some(v) if v == FORMAT_VERSION => {}
                Some(found) => {
                    return Err(StoreError::UnsupportedFormat {
                        path: self.inner.root.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            // Create every table so readers never meet a missing one.
            txn.open_table(tables::BLOBS).db()?;
            txn.open_table(tables::INLINE).db()?;
            txn.open_table(tables::OUTBOARD).db()?;
            txn.open_table(tables::HAVE).db()?;
            txn.open_table(tables::PINS).db()?;
            txn.open_table(tables::PROVIDERS).db()?;
            txn.open_table(tables::NODES).db()?;
            txn.open_table(tables::ROOMS).db()?;
            txn.open_table(tables::ROOM_ENTRIES).db()?;
            txn.open_table(tables::ROOM_LOG).db()?;
            txn.open_table(tables::ROOM_SEQ).db()?;
            txn.open_table(tables::ROOM_AUTHORS).db()?;
            txn.open_table(tables::ROOM_HEADS).db()?;
            txn.open_table(tables::ROOM_VIEW).db()?;
            txn.open_table(tables::ROOM_KEYS).db()?;
            txn.open_table(tables::CHECKED).db()?;
        }
        txn.commit().db()
    }

    /// Starts a durable write transaction that recovers quickly after a crash.
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        self.inner.db.begin_write()
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.inner.db.begin_read()
    }

    /// Path of the data file of a blob.
    fn data_path(&self, hash: &Hash) -> PathBuf {
        self.inner.data_dir.join(format!("{hash}.data"))
    }

    /// Makes renames and creations in the data directory durable.
    fn sync_data_dir(&self) -> Result<(), StoreError> {
        self.inner
            .data_dir_handle
            .sync_all()
            .ctx(|| "syncing the store's data directory".into())
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.inner.live)
    }

    /// Keeps `hash` safe from GC until the guard is dropped.
    fn protect(&self, hash: Hash) -> Protect {
        *self.live().protected.entry(hash).or_insert(0) += 1;
        Protect {
            inner: Arc::downgrade(&self.inner),
            hash,
        }
    }

    /// A temporary pin: `hash` survives GC while the returned guard lives,
    /// whether or not the blob is in the store yet.
    pub fn temp_pin(&self, hash: Hash) -> TempPin {
        TempPin(self.protect(hash))
    }
}

/// Keeps a hash safe from garbage collection while it lives (see
/// [`Store::temp_pin`]).
#[derive(Debug)]
pub struct TempPin(Protect);

impl TempPin {
    /// The protected hash.
    pub fn hash(&self) -> Hash {
        self.0.hash
    }
}

#[derive(Debug)]
struct Protect {
    inner: Weak<Inner>,
    hash: Hash,
}

impl Drop for Protect {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut live = lock(&inner.live);
        if let Some(n) = live.protected.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                live.protected.remove(&self.hash);
            }
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it:
/// every critical section leaves the state consistent before it can panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `dir` and any missing parent with [`DIR_MODE`] (whatever the
/// umask); an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .ctx(|| format!("creating store directory {}", dir.display()))
}

fn clear_dir(dir: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.ctx(|| format!("listing {}", dir.display()))?.path();
        std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
