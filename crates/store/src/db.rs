//! The store's redb database, reopened after an I/O error.
//!
//! Once a write fails (a full disk, say), redb refuses every later
//! transaction with "previous I/O error" until the database is closed and
//! opened again. A node runs for weeks: so the first transaction that
//! meets the poisoned database closes it and opens it again (redb repairs
//! it from its last commit). If that fails (a write transaction on the old
//! one is still running, or the disk is still full), the call fails with a
//! clear error and the next one tries again.
//!
//! With the feature `fuzzing`, the database can live in memory instead
//! ([`MemoryDb`], redb's `InMemoryBackend`): a commit costs no fsync, so
//! the fuzz targets that check the store reach depth.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use crate::{
    StoreError,
    error::{self, DbContext},
};

#[derive(Debug)]
pub(crate) struct Db {
    path: PathBuf,
    cache_bytes: usize,
    /// Where the database is kept.
    backend: Backend,
    slot: RwLock<Slot>,
}

/// Where a database is kept.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The file at `Db::path`.
    File,
    /// Memory that outlives the store (so it can be opened again).
    #[cfg(feature = "fuzzing")]
    Memory(MemoryDb),
}

/// A database kept in memory, for the fuzz targets (feature `fuzzing`):
/// the handle is cheap to clone, and a store opened again on it
/// ([`crate::Store::open_in_memory`]) finds what the last one committed.
#[cfg(feature = "fuzzing")]
#[derive(Debug, Clone, Default)]
pub struct MemoryDb(Arc<redb::backends::InMemoryBackend>);

#[cfg(feature = "fuzzing")]
impl MemoryDb {
    /// A new, empty database.
    pub fn new() -> Self {
        Self::default()
    }
}

#[cfg(feature = "fuzzing")]
impl redb::StorageBackend for MemoryDb {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
}

#[derive(Debug)]
struct Slot {
    /// `None` while a reopen failed.
    db: Option<Arc<redb::Database>>,
    /// Counts reopens: a thread that met the poisoned database reopens it
    /// only if no other thread did since.
    generation: u64,
}

impl Db {
    pub(crate) fn open(
        path: PathBuf,
        cache_bytes: usize,
        backend: Backend,
        root: &Path,
    ) -> Result<Self, StoreError> {
        let db = open(&path, cache_bytes, &backend).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: root.to_path_buf(),
                holder: None,
            },
            other => db_error(&path, other),
        })?;
        Ok(Self {
            path,
            cache_bytes,
            backend,
            slot: RwLock::new(Slot {
                db: Some(Arc::new(db)),
                generation: 0,
            }),
        })
    }

    /// Starts a durable write transaction that recovers quickly after a
    /// crash.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut txn = self.with(|db| db.begin_write())?;
        // (Memory is never left half-written by a crash: no repair to
        // speed up, and the allocator's state is most of a small commit.)
        txn.set_quick_repair(matches!(self.backend, Backend::File));
        Ok(txn)
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        self.with(|db| db.begin_read())
    }

    /// Runs `begin` on the database, reopening it first if an earlier I/O
    /// error poisoned it.
    fn with<T>(
        &self,
        begin: impl Fn(&redb::Database) -> Result<T, redb::TransactionError>,
    ) -> Result<T, StoreError> {
        let (db, generation) = self.current()?;
        match begin(&db) {
            Err(redb::TransactionError::Storage(
                redb::StorageError::PreviousIo | redb::StorageError::Corrupted(_),
            )) => {
                drop(db);
                self.reopen(generation)?;
                begin(&self.current()?.0).db()
            }
            other => other.db(),
        }
    }

    /// The open database and its generation; if an earlier reopen
    /// failed, it is tried again first.
    fn current(&self) -> Result<(Arc<redb::Database>, u64), StoreError> {
        let closed = {
            let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
            match &slot.db {
                Some(db) => return Ok((db.clone(), slot.generation)),
                None => slot.generation,
            }
        };
        self.reopen(closed)?;
        let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
        match &slot.db {
            Some(db) => Ok((db.clone(), slot.generation)),
            None => Err(recovering("the database could not be opened again")),
        }
    }

    /// Closes the database and opens it again, unless another thread did
    /// since `generation`.
    fn reopen(&self, generation: u64) -> Result<(), StoreError> {
        let mut slot = self.slot.write().unwrap_or_else(|e| e.into_inner());
        if slot.generation != generation && slot.db.is_some() {
            return Ok(());
        }
        // Closed before it is opened again: redb locks the file (until its
        // last write transaction ends).
        slot.db = None;
        slot.generation += 1;
        tracing::warn!(path = %self.path.display(), "reopening the store database after an I/O error");
        match open(&self.path, self.cache_bytes, &self.backend) {
            Ok(db) => {
                slot.db = Some(Arc::new(db));
                Ok(())
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(recovering(
                "a write on the old one is still running; try again",
            )),
            Err(e) => Err(db_error(&self.path, e)),
        }
    }
}

fn recovering(why: &str) -> StoreError {
    StoreError::Io {
        context: "recovering the store database from an I/O error".into(),
        source: io::Error::new(io::ErrorKind::ResourceBusy, why.to_string()),
    }
}

/// Opens (or creates) the database file, readable by its owner only: it
/// holds every room's secret (or the database in memory).
fn open(
    path: &Path,
    cache_bytes: usize,
    backend: &Backend,
) -> Result<redb::Database, redb::DatabaseError> {
    use std::os::unix::fs::OpenOptionsExt;
    match backend {
        Backend::File => {}
        #[cfg(feature = "fuzzing")]
        Backend::Memory(mem) => {
            return redb::Database::builder()
                .set_cache_size(cache_bytes)
                .create_with_backend(mem.clone());
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::FILE_MODE)
        .open(path)?;
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(redb::backends::FileBackend::new(file)?)
}

fn db_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            error::io_error(format!("opening store database {}", path.display()), io)
        }
        other => StoreError::Db(other.into()),
    }
}
