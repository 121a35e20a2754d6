//! Pins and garbage collection.
//!
//! A blob is kept if it has at least one *pin* (a name, such as `user` or a
//! room's id, recorded in redb) or is *protected* in memory: being imported,
//! being downloaded, or held by a [`TempPin`](crate::TempPin). Everything
//! else is garbage.
//!
//! The mark and the sweep of the database run in one write transaction.
//! redb allows one writer at a time, so a pin is either committed before GC
//! looks (and is seen) or after GC finished (and then pins a blob that was
//! already gone, which the caller is told). The lock that guards protection
//! is held from the mark until the data files are removed after the commit,
//! so whatever becomes protected does so either before GC looks (and is
//! kept) or after GC is done: an import then renames its file into place
//! after the removal, a download loads the state GC left, and a temporary
//! pin holds a hash whose blob is either there or already gone. This is the
//! race behind iroh-blobs#247; `tests/gc_race.rs` exercises it.

use p2pfs_proto::Hash;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::{
    Store, crash,
    error::{DbContext, IoContext, StoreError},
    outboard::delete_segments,
    tables::{self, BlobMeta, BlobState, HashKey},
};

/// The pin name `p2pfs add` and `p2pfs pin` use.
pub const USER_PIN: &str = "user";

/// What one garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Blobs removed, with their sizes.
    pub removed: Vec<(Hash, u64)>,
    /// Bytes of blob data freed (complete sizes of removed blobs).
    pub freed_bytes: u64,
    /// Data files removed that no entry referred to (left by a crash).
    pub orphan_files: u64,
}

impl Store {
    /// Pins `hash` under `name`. Returns whether the blob is in the store
    /// (a pin may be set before the blob arrives; it keeps it once it does).
    pub fn pin(&self, hash: &Hash, name: &str) -> Result<bool, StoreError> {
        if name.is_empty() {
            return Err(StoreError::Invalid("a pin needs a name".into()));
        }
        let txn = self.begin_write()?;
        let present = {
            let mut pins = txn.open_table(tables::PINS).db()?;
            pins.insert((hash.as_bytes(), name), ()).db()?;
            let blobs = txn.open_table(tables::BLOBS).db()?;
            blobs.get(hash.as_bytes()).db()?.is_some()
        };
        txn.commit().db()?;
        Ok(present)
    }

    /// Removes the pin `name` from `hash`. Returns whether it existed.
    pub fn unpin(&self, hash: &Hash, name: &str) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let existed = {
            let mut pins = txn.open_table(tables::PINS).db()?;
            pins.remove((hash.as_bytes(), name)).db()?.is_some()
        };
        txn.commit().db()?;
        Ok(existed)
    }

    /// Pins (`on`) or unpins every one of `hashes` under `name`, in one
    /// transaction.
    pub fn set_pins(&self, hashes: &[Hash], name: &str, on: bool) -> Result<(), StoreError> {
        if name.is_empty() {
            return Err(StoreError::Invalid("a pin needs a name".into()));
        }
        if hashes.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        {
            let mut pins = txn.open_table(tables::PINS).db()?;
            for h in hashes {
                if on {
                    pins.insert((h.as_bytes(), name), ()).db()?;
                } else {
                    pins.remove((h.as_bytes(), name)).db()?;
                }
            }
        }
        txn.commit().db()?;
        Ok(())
    }

    /// The names of the pins on `hash`.
    pub fn pins(&self, hash: &Hash) -> Result<Vec<String>, StoreError> {
        let txn = self.begin_read()?;
        let pins = txn.open_table(tables::PINS).db()?;
        pin_names(&pins, hash)
    }

    /// The hashes pinned under `name` (whether or not their blobs are here).
    pub fn pinned(&self, name: &str) -> Result<Vec<Hash>, StoreError> {
        let txn = self.begin_read()?;
        let pins = txn.open_table(tables::PINS).db()?;
        let mut out = Vec::new();
        for entry in pins.iter().db()? {
            let (k, _) = entry.db()?;
            let (hash, n) = k.value();
            if n == name {
                out.push(Hash::from_bytes(*hash));
            }
        }
        Ok(out)
    }

    /// Removes every blob that is neither pinned nor protected, and data
    /// files no entry refers to.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = self.collect(None)?;
        report.orphan_files = self.remove_orphan_files()?;
        Ok(report)
    }

    /// Removes those of `hashes` that are neither pinned nor protected
    /// (what an import that failed had brought: see `bundle`).
    pub fn discard(&self, hashes: &[Hash]) -> Result<GcReport, StoreError> {
        self.collect(Some(hashes))
    }

    /// Removes every unpinned, unprotected blob, or only those of `only`.
    fn collect(&self, only: Option<&[Hash]>) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut files = Vec::new();
        let txn = self.begin_write()?;
        // Hold the protection lock until the commit (see the module docs):
        // nothing can become protected, or load a download's state, between
        // the mark and the commit.
        let live = self.live();
        {
            let mut blobs = txn.open_table(tables::BLOBS).db()?;
            let pins = txn.open_table(tables::PINS).db()?;
            let mut candidates = Vec::new();
            match only {
                Some(hashes) => {
                    for hash in hashes {
                        if let Some(v) = blobs.get(hash.as_bytes()).db()? {
                            candidates.push((*hash, BlobMeta::decode(v.value())?));
                        }
                    }
                }
                None => {
                    for entry in blobs.iter().db()? {
                        let (k, v) = entry.db()?;
                        candidates
                            .push((Hash::from_bytes(*k.value()), BlobMeta::decode(v.value())?));
                    }
                }
            }
            let mut doomed = Vec::new();
            for (hash, meta) in candidates {
                if live.protected.contains_key(&hash) || is_pinned(&pins, &hash)? {
                    continue;
                }
                doomed.push((hash, meta));
            }
            let mut inline = txn.open_table(tables::INLINE).db()?;
            let mut have = txn.open_table(tables::HAVE).db()?;
            let mut segments = txn.open_table(tables::OUTBOARD).db()?;
            let mut checked = txn.open_table(tables::CHECKED).db()?;
            for (hash, meta) in doomed {
                let key: &HashKey = hash.as_bytes();
                blobs.remove(key).db()?;
                inline.remove(key).db()?;
                have.remove(key).db()?;
                checked.remove(key).db()?;
                delete_segments(&mut segments, &hash)?;
                if meta.state != BlobState::CompleteInline {
                    files.push(hash);
                }
                report.freed_bytes += meta.size;
                report.removed.push((hash, meta.size));
            }
        }
        txn.commit().db()?;
        crash::point("gc.committed");
        for (hash, _) in &report.removed {
            self.inner.checked.forget(hash);
        }
        for hash in files {
            // Still under the lock: an import that protects the hash after
            // this point renames its own file into place afterwards.
            remove_if_exists(&self.data_path(&hash))?;
            crash::point("gc.unlinked");
        }
        drop(live);
        Ok(report)
    }

    /// Removes data files whose blob has no entry or keeps its data inline.
    fn remove_orphan_files(&self) -> Result<u64, StoreError> {
        let dir = &self.inner.data_dir;
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(hash) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".data"))
                .and_then(|n| n.parse::<Hash>().ok())
            else {
                continue;
            };
            candidates.push(hash);
        }
        let mut removed = 0;
        // Hold the protection lock across the check and the removal, as in `gc`.
        let live = self.live();
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        for hash in candidates {
            if live.protected.contains_key(&hash) {
                continue;
            }
            let keep = match blobs.get(hash.as_bytes()).db()? {
                Some(v) => BlobMeta::decode(v.value())?.state != BlobState::CompleteInline,
                None => false,
            };
            if !keep {
                remove_if_exists(&self.data_path(&hash))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_pinned(
    pins: &impl ReadableTable<(&'static HashKey, &'static str), ()>,
    hash: &Hash,
) -> Result<bool, StoreError> {
    let key = hash.as_bytes();
    Ok(pins
        .range((key, "")..)
        .db()?
        .next()
        .transpose()
        .db()?
        .is_some_and(|(k, _)| k.value().0 == key))
}

/// The names of the pins on `hash`.
pub(crate) fn pin_names(
    pins: &impl ReadableTable<(&'static HashKey, &'static str), ()>,
    hash: &Hash,
) -> Result<Vec<String>, StoreError> {
    let key = hash.as_bytes();
    let mut out = Vec::new();
    for entry in pins.range((key, "")..).db()? {
        let (k, _) = entry.db()?;
        let (h, name) = k.value();
        if h != key {
            break;
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn remove_if_exists(path: &std::path::Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::io_error(
            format!("removing {}", path.display()),
            e,
        )),
    }
}
