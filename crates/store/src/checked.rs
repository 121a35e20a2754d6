//! What uploads need not hash again.
//!
//! An upload checks every hash pair and chunk group against the root
//! before it sends them (docs/protocol.md §3.4), so a damaged local file is
//! refused, never served. Checking costs a BLAKE3 pass; a seeder serving
//! one blob to many peers, or restarted, should not pay it again for bytes
//! that have not changed:
//! - ranges checked since the store opened are remembered in memory;
//! - a complete blob in a data file whose every byte was checked (verified
//!   as it was downloaded, hashed as it was imported, or checked by an
//!   upload) is remembered in the database with its file's [`Stamp`]. Any
//!   write to the file changes the stamp (its change time), and the next
//!   upload checks it again.

use std::{collections::HashMap, fs::File, os::unix::fs::MetadataExt, sync::Mutex};

use p2pfs_proto::{Hash, codec};
use serde::{Deserialize, Serialize};

use crate::{ChunkRanges, error::DbContext, lock};

/// How many blobs' checked ranges are remembered in memory (beyond that
/// the list starts over).
const MAX_CHECKED: usize = 4096;

/// The ranges of blobs that uploads have checked against their hash since
/// the store opened, with the stamp of the file they were read from (none
/// for a download in progress, whose every byte this store verified).
#[derive(Debug, Default)]
pub(crate) struct Checked(Mutex<HashMap<Hash, (ChunkRanges, Option<Stamp>)>>);

impl Checked {
    /// Whether `ranges` were checked in the file as `stamp` says it is now.
    pub(crate) fn contains(
        &self,
        hash: &Hash,
        ranges: &ChunkRanges,
        stamp: Option<&Stamp>,
    ) -> bool {
        lock(&self.0)
            .get(hash)
            .is_some_and(|(c, s)| s.as_ref() == stamp && ranges.is_subset(c))
    }

    /// Adds checked ranges; what was checked in another version of the
    /// file is forgotten. Returns every range checked in this version.
    pub(crate) fn insert(
        &self,
        hash: Hash,
        ranges: &ChunkRanges,
        stamp: Option<Stamp>,
    ) -> ChunkRanges {
        let mut m = lock(&self.0);
        if m.len() >= MAX_CHECKED && !m.contains_key(&hash) {
            m.clear();
        }
        let entry = m
            .entry(hash)
            .or_insert_with(|| (ChunkRanges::empty(), stamp));
        if entry.1 != stamp {
            *entry = (ChunkRanges::empty(), stamp);
        }
        entry.0 |= ranges.clone();
        entry.0.clone()
    }

    /// Forgets a blob (it was removed).
    pub(crate) fn forget(&self, hash: &Hash) {
        lock(&self.0).remove(hash);
    }
}

/// Which version of a data file was checked: its inode, size, and
/// modification and change times. A write changes the change time (which
/// no one can set back), a replaced file has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of an open file.
    pub(crate) fn of(file: &File) -> std::io::Result<Self> {
        let m = file.metadata()?;
        Ok(Self {
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, crate::StoreError> {
        codec::encode(self)
            .map_err(|e| crate::StoreError::Corrupt(format!("encoding a stamp: {e}")))
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        codec::decode(bytes).ok()
    }
}

/// Records that the complete blob `hash`, in a file stamped `stamp`, was
/// checked whole.
pub(crate) fn record(
    txn: &redb::WriteTransaction,
    hash: &Hash,
    stamp: &Stamp,
) -> Result<(), crate::StoreError> {
    let mut t = txn.open_table(crate::tables::CHECKED).db()?;
    t.insert(hash.as_bytes(), stamp.encode()?.as_slice()).db()?;
    Ok(())
}

/// Whether the complete blob `hash` was checked whole in its file as
/// `stamp` says it is now.
pub(crate) fn recorded(
    txn: &redb::ReadTransaction,
    hash: &Hash,
    stamp: &Stamp,
) -> Result<bool, crate::StoreError> {
    let t = txn.open_table(crate::tables::CHECKED).db()?;
    let Some(v) = t.get(hash.as_bytes()).db()? else {
        return Ok(false);
    };
    Ok(Stamp::decode(v.value()).as_ref() == Some(stamp))
}
