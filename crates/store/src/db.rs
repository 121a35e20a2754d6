//! The store's redb database, reopened after an I/O error.
//!
//! Once a write fails (a full disk, say), redb refuses every later
//! transaction with "previous I/O error" until the database is closed and
//! opened again. A node runs for weeks: so the first transaction that
//! meets the poisoned database waits for the others to let go of it,
//! closes it and opens it again (redb repairs it from its last commit).
//! If that fails (the disk is still full), the next transaction tries
//! again.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use crate::{
    StoreError,
    error::{self, DbContext},
};

/// How long a reopen waits for transactions on the old database to end.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Db {
    path: PathBuf,
    cache_bytes: usize,
    /// `None` while a reopen failed.
    db: RwLock<Option<Arc<redb::Database>>>,
}

impl Db {
    pub(crate) fn open(
        path: PathBuf,
        cache_bytes: usize,
        root: &std::path::Path,
    ) -> Result<Self, StoreError> {
        let db = open(&path, cache_bytes).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(root.to_path_buf()),
            other => db_error(&path, other),
        })?;
        Ok(Self {
            path,
            cache_bytes,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// Starts a durable write transaction that recovers quickly after a
    /// crash.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut txn = self.with(|db| db.begin_write())?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        self.with(|db| db.begin_read())
    }

    /// Runs `begin` on the database, reopening it first if it is poisoned
    /// by an earlier I/O error.
    fn with<T>(
        &self,
        begin: impl Fn(&redb::Database) -> Result<T, redb::TransactionError>,
    ) -> Result<T, StoreError> {
        let db = self.current()?;
        match begin(&db) {
            Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => {
                let failed = Arc::as_ptr(&db);
                drop(db);
                self.reopen(failed)?;
                begin(self.current()?.as_ref()).db()
            }
            other => other.db(),
        }
    }

    fn current(&self) -> Result<Arc<redb::Database>, StoreError> {
        if let Some(db) = self.db.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        self.reopen(std::ptr::null())?;
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Corrupt("the store database is closed".into()))
    }

    /// Closes the database (if it is still the one at `failed`, or none
    /// is open) and opens it again.
    fn reopen(&self, failed: *const redb::Database) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            if Arc::as_ptr(db) != failed {
                return Ok(()); // another thread did it
            }
            // Transactions on it fail at once; wait for them to end.
            let deadline = Instant::now() + DRAIN;
            while Arc::strong_count(db) > 1 {
                if Instant::now() > deadline {
                    return Err(StoreError::Corrupt(
                        "the store database met an I/O error and is still in use; try again".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Closed before it is opened again: redb locks the file.
        *slot = None;
        tracing::warn!(path = %self.path.display(), "reopening the store database after an I/O error");
        let db = open(&self.path, self.cache_bytes).map_err(|e| db_error(&self.path, e))?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

fn open(path: &std::path::Path, cache_bytes: usize) -> Result<redb::Database, redb::DatabaseError> {
    redb::Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
}

fn db_error(path: &std::path::Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            error::io_error(format!("opening store database {}", path.display()), io)
        }
        other => StoreError::Db(other.into()),
    }
}
