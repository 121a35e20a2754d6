//! Getting bytes out: whole blobs and byte ranges for local readers, and
//! bao-tree verified streams of chunk ranges for peers.

use std::{
    fs::File,
    io::{self, Read, Seek, Write},
    os::unix::fs::FileExt,
    sync::Arc,
};

use bao_tree::BaoTree;
use bytes::Bytes;
use p2pfs_proto::{
    Hash,
    chunk::{CHUNK_GROUP_SIZE, groups},
};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::{
    BLOCK_SIZE, ChunkRanges, Store,
    checked::{self, Stamp},
    error::{DbContext, IoContext, StoreError},
    outboard::{DbOutboard, OutboardTable},
    ranges::{effective_ranges, groups_to_chunks},
    stream,
    tables::{self, BlobMeta, GroupSet, SEGMENT_BYTES, decode_groups},
    tree::TreeHasher,
};

/// Whether a blob is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobState {
    /// Every byte is present and verified.
    Complete,
    /// Some chunk groups are present.
    Partial,
}

/// What the store holds of one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// The blob's hash.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// Complete or partial.
    pub state: BlobState,
    /// Bytes present locally (committed to disk).
    pub present: u64,
    /// Names of the pins that keep it from GC.
    pub pins: Vec<String>,
}

/// Read access to one complete blob.
#[derive(Debug)]
pub enum BlobReader {
    /// A small blob kept in the database.
    Inline(Vec<u8>),
    /// A blob in its own data file.
    File {
        /// The data file.
        file: File,
        /// The blob's size.
        size: u64,
    },
}

impl BlobReader {
    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Self::Inline(b) => b.len() as u64,
            Self::File { size, .. } => *size,
        }
    }

    /// Reads at `offset`; returns 0 at or past the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let n = buf.len().min((size - offset) as usize);
        match self {
            Self::Inline(b) => {
                buf[..n].copy_from_slice(&b[offset as usize..offset as usize + n]);
            }
            Self::File { file, .. } => file.read_exact_at(&mut buf[..n], offset)?,
        }
        Ok(n)
    }

    /// Copies the whole blob to `w`, letting the kernel move the bytes when
    /// it can (`copy_file_range`, `splice` or `sendfile`).
    pub fn copy_to<W: Write>(&mut self, w: &mut W) -> io::Result<u64> {
        match self {
            Self::Inline(b) => {
                w.write_all(b)?;
                Ok(b.len() as u64)
            }
            Self::File { file, size } => {
                file.seek(io::SeekFrom::Start(0))?;
                let n = io::copy(&mut (&*file).take(*size), w)?;
                if n != *size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("data file holds {n} of {size} bytes"),
                    ));
                }
                Ok(n)
            }
        }
    }
}

/// The bytes of a blob as bao-tree reads them.
pub(crate) enum DataRef {
    Mem(Vec<u8>),
    File(Arc<File>),
}

impl Store {
    /// What the store holds of `hash`, or `None`.
    pub fn info(&self, hash: &Hash) -> Result<Option<BlobInfo>, StoreError> {
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let Some(meta) = blobs.get(hash.as_bytes()).db()? else {
            return Ok(None);
        };
        let meta = BlobMeta::decode(meta.value())?;
        let have = txn.open_table(tables::HAVE).db()?;
        let pins = txn.open_table(tables::PINS).db()?;
        Ok(Some(blob_info(*hash, meta, &have, &pins)?))
    }

    /// What the store holds of each of `hashes`, read in one transaction.
    pub fn infos(&self, hashes: &[Hash]) -> Result<Vec<Option<BlobInfo>>, StoreError> {
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let have = txn.open_table(tables::HAVE).db()?;
        let pins = txn.open_table(tables::PINS).db()?;
        let mut out = Vec::with_capacity(hashes.len());
        for hash in hashes {
            out.push(match blobs.get(hash.as_bytes()).db()? {
                Some(meta) => Some(blob_info(
                    *hash,
                    BlobMeta::decode(meta.value())?,
                    &have,
                    &pins,
                )?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Bytes of blob data the store holds: the sizes of complete blobs
    /// and the bytes present of partial ones.
    pub fn usage(&self) -> Result<u64, StoreError> {
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let have = txn.open_table(tables::HAVE).db()?;
        let mut total = 0u64;
        for entry in blobs.iter().db()? {
            let (k, v) = entry.db()?;
            let meta = BlobMeta::decode(v.value())?;
            total += if meta.is_complete() {
                meta.size
            } else {
                present_bytes(&have_set(&have, &Hash::from_bytes(*k.value()))?, meta.size)
            };
        }
        Ok(total)
    }

    /// Every blob in the store, ordered by hash.
    pub fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let have = txn.open_table(tables::HAVE).db()?;
        let pins = txn.open_table(tables::PINS).db()?;
        let mut out = Vec::new();
        for entry in blobs.iter().db()? {
            let (k, v) = entry.db()?;
            let meta = BlobMeta::decode(v.value())?;
            out.push(blob_info(Hash::from_bytes(*k.value()), meta, &have, &pins)?);
        }
        Ok(out)
    }

    /// Opens a complete blob for reading.
    pub fn reader(&self, hash: &Hash) -> Result<BlobReader, StoreError> {
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let meta = match blobs.get(hash.as_bytes()).db()? {
            Some(g) => BlobMeta::decode(g.value())?,
            None => return Err(StoreError::NotFound(*hash)),
        };
        match meta.state {
            tables::BlobState::CompleteInline => {
                let inline = txn.open_table(tables::INLINE).db()?;
                let bytes = inline
                    .get(hash.as_bytes())
                    .db()?
                    .map(|g| g.value().to_vec())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("inline data of {hash} is missing"))
                    })?;
                Ok(BlobReader::Inline(bytes))
            }
            tables::BlobState::CompleteFile => {
                let path = self.data_path(hash);
                let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                Ok(BlobReader::File {
                    file,
                    size: meta.size,
                })
            }
            tables::BlobState::Partial => {
                let have = txn.open_table(tables::HAVE).db()?;
                let set = have_set(&have, hash)?;
                Err(StoreError::Incomplete {
                    hash: *hash,
                    present: present_bytes(&set, meta.size),
                    size: meta.size,
                })
            }
        }
    }

    /// Reads bytes of `hash` at `offset`, complete or not, as long as the
    /// chunk groups they touch are present. Returns 0 at or past the end.
    pub fn read_at(&self, hash: &Hash, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        if let Some(live) = self.live_partial(hash)
            && !live.is_complete()
        {
            return live.read_at(offset, buf);
        }
        match self.reader(hash) {
            Ok(r) => r
                .read_at(offset, buf)
                .ctx(|| format!("reading blob {hash}")),
            Err(StoreError::Incomplete { .. }) => {
                // Not being written right now: serve from the committed groups.
                self.partial(*hash)?.read_at(offset, buf)
            }
            Err(e) => Err(e),
        }
    }

    /// The size of `hash` and the chunk ranges the store has of it, or
    /// `None` if it has nothing.
    pub fn have(&self, hash: &Hash) -> Result<Option<(u64, ChunkRanges)>, StoreError> {
        if let Some(view) = self.live_partial(hash).and_then(|l| l.serving_view()) {
            return Ok(Some((view.size, view.have)));
        }
        let txn = self.begin_read()?;
        let blobs = txn.open_table(tables::BLOBS).db()?;
        let Some(meta) = blobs.get(hash.as_bytes()).db()? else {
            return Ok(None);
        };
        let meta = BlobMeta::decode(meta.value())?;
        let set = if meta.is_complete() {
            GroupSet::from(0..groups(meta.size))
        } else {
            have_set(&txn.open_table(tables::HAVE).db()?, hash)?
        };
        Ok(Some((meta.size, groups_to_chunks(&set, meta.size))))
    }

    /// Writes a verified stream of `ranges` of `hash` for a peer
    /// (docs/protocol.md §3.4): the size as 8 bytes little-endian, then the
    /// pre-order encoding of [`effective_ranges`]. Returns those ranges.
    ///
    /// Fails with [`StoreError::NotPresent`], before writing anything, if the
    /// store lacks part of them: a caller serving what it has asks for
    /// `ranges ∩ have` (see [`Store::have`]). Data is checked against the
    /// outboard as it is sent, so local corruption is reported
    /// ([`StoreError::Corrupt`]) instead of served.
    pub fn encode_ranges<W: Write>(
        &self,
        hash: &Hash,
        ranges: &ChunkRanges,
        mut w: W,
    ) -> Result<ChunkRanges, StoreError> {
        self.encode_chunks(hash, ranges, &mut |v| {
            v.iter().try_for_each(|b| w.write_all(b))
        })
    }

    /// Like [`Store::encode_ranges`], handing the stream to `sink` in
    /// batches of about 256 KiB of [`Bytes`] that can be sent without copying.
    ///
    /// With [`Options::validate_uploads`](crate::Options), each range is
    /// checked the first time it is sent after the store opens; ranges sent
    /// before are not hashed again (a seeder serving one blob to many peers
    /// pays one BLAKE3 pass, not one per peer).
    pub fn encode_chunks(
        &self,
        hash: &Hash,
        ranges: &ChunkRanges,
        sink: &mut dyn FnMut(Vec<Bytes>) -> io::Result<()>,
    ) -> Result<ChunkRanges, StoreError> {
        self.encode_checked(hash, ranges, sink, false)
    }

    /// [`Store::encode_chunks`]; `always_check` validates even ranges
    /// checked before (for `verify`).
    fn encode_checked(
        &self,
        hash: &Hash,
        ranges: &ChunkRanges,
        sink: &mut dyn FnMut(Vec<Bytes>) -> io::Result<()>,
        always_check: bool,
    ) -> Result<ChunkRanges, StoreError> {
        let live = self.live_partial(hash);
        let view = live.as_ref().and_then(|l| l.serving_view());
        // `whole`: a complete blob in its own file.
        let (size, have, data, whole) = match view {
            Some(v) => (v.size, v.have, v.data, false),
            None => match self.reader(hash) {
                Ok(BlobReader::Inline(b)) => {
                    let size = b.len() as u64;
                    (size, ChunkRanges::all(), DataRef::Mem(b), false)
                }
                Ok(BlobReader::File { file, size }) => (
                    size,
                    ChunkRanges::all(),
                    DataRef::File(Arc::new(file)),
                    true,
                ),
                Err(StoreError::Incomplete { size, .. }) => {
                    let (_, have) = self.have(hash)?.ok_or(StoreError::NotFound(*hash))?;
                    let path = self.data_path(hash);
                    let file = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                    (size, have, DataRef::File(Arc::new(file)), false)
                }
                Err(e) => return Err(e),
            },
        };
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let send = effective_ranges(ranges, size);
        let missing = &send - &have;
        if let Some(first) = missing.boundaries().first() {
            return Err(StoreError::NotPresent {
                hash: *hash,
                start: first.to_bytes(),
                end: missing
                    .boundaries()
                    .last()
                    .map_or(size, |c| c.to_bytes().min(size)),
            });
        }
        let peer_gone = |source| StoreError::Stream {
            hash: *hash,
            source,
        };
        sink(vec![Bytes::copy_from_slice(&size.to_le_bytes())]).map_err(peer_gone)?;
        let reopen = || self.outboard_table();
        let mut outboard = DbOutboard::new(*hash, tree, self.outboard_table()?, &reopen);
        if let Some(l) = &live {
            outboard = outboard.with_pending(l.as_ref());
        }
        let source = StoreSource {
            outboard: &outboard,
            data: &data,
        };
        // What was checked, and in which version of the file (see
        // `checked.rs`); a live download's file changes as it goes.
        let stamp = match (&data, &live) {
            (DataRef::File(f), None) => {
                Some(Stamp::of(f).ctx(|| format!("reading the times of blob {hash}'s file"))?)
            }
            _ => None,
        };
        let all = effective_ranges(&ChunkRanges::all(), size);
        let mut validate = always_check
            || (self.inner.opts.validate_uploads
                && !self.inner.checked.contains(hash, &send, stamp.as_ref()));
        if validate
            && !always_check
            && whole
            && let Some(s) = &stamp
            && checked::recorded(&self.begin_read()?, hash, s)?
        {
            self.inner.checked.insert(*hash, &all, stamp);
            validate = false;
        }
        stream::encode((*hash).into(), tree, &send, &source, validate, sink).map_err(
            |e| match e {
                stream::EncodeError::Corrupt(what) => {
                    StoreError::Corrupt(format!("{hash}: {what}"))
                }
                stream::EncodeError::Read(source) => StoreError::Io {
                    context: format!("reading blob {hash}"),
                    source,
                },
                stream::EncodeError::Sink(source) => peer_gone(source),
            },
        )?;
        if validate {
            #[cfg(test)]
            self.inner
                .validations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let now = self.inner.checked.insert(*hash, &send, stamp);
            if whole
                && let Some(s) = &stamp
                && all.is_subset(&now)
            {
                let txn = self.begin_write()?;
                checked::record(&txn, hash, s)?;
                txn.commit().db()?;
            }
        }
        Ok(send)
    }

    /// Re-reads a blob and checks it against its hash: all of it if
    /// complete, the groups it claims to have if partial.
    pub fn verify(&self, hash: &Hash) -> Result<(), StoreError> {
        match self.reader(hash) {
            Ok(reader) => self.verify_complete(hash, &reader),
            Err(StoreError::Incomplete { size, .. }) => {
                let (_, have) = self.have(hash)?.ok_or(StoreError::NotFound(*hash))?;
                // Re-encoding validates every present group and its parents.
                self.encode_checked(hash, &have, &mut |_| Ok(()), true)
                    .map_err(|e| match e {
                        StoreError::NotPresent { .. } => StoreError::Corrupt(format!(
                            "{hash}: the {size}-byte blob's have-map is inconsistent"
                        )),
                        other => other,
                    })?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_complete(&self, hash: &Hash, reader: &BlobReader) -> Result<(), StoreError> {
        let mut hasher = TreeHasher::new();
        let mut pairs = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        let mut table = self.outboard_table()?;
        let mut checked = 0u64;
        loop {
            let n = reader
                .read_at(offset, &mut buf)
                .ctx(|| format!("reading blob {hash}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n], &mut pairs);
            offset += n as u64;
            checked = compare_segments(&table, hash, &mut pairs, checked, false)?;
            if offset.is_multiple_of(1 << 30) {
                // Do not pin one snapshot for the whole of a huge blob.
                table = self.outboard_table()?;
            }
        }
        let root = hasher.finalize(&mut pairs);
        compare_segments(&table, hash, &mut pairs, checked, true)?;
        if offset != reader.size() {
            return Err(StoreError::Corrupt(format!(
                "{hash}: data holds {offset} of {} bytes",
                reader.size()
            )));
        }
        if root != *hash {
            return Err(StoreError::Corrupt(format!(
                "{hash}: data hashes to {root}"
            )));
        }
        Ok(())
    }

    fn outboard_table(&self) -> Result<OutboardTable, StoreError> {
        self.begin_read()?.open_table(tables::OUTBOARD).db()
    }
}

/// Pairs and bytes of a blob, for the stream encoder.
struct StoreSource<'a> {
    outboard: &'a DbOutboard<'a>,
    data: &'a DataRef,
}

impl stream::Source for StoreSource<'_> {
    fn pair(&self, node: bao_tree::TreeNode) -> io::Result<[u8; 64]> {
        use bao_tree::io::sync::Outboard;
        Ok(self
            .outboard
            .load(node)?
            .map(|p| crate::outboard::join_pair(&p))
            .unwrap_or([0; 64]))
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.data {
            DataRef::Mem(b) => {
                let start = usize::try_from(offset).map_err(io::Error::other)?;
                let src = b.get(start..start + buf.len()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the blob")
                })?;
                buf.copy_from_slice(src);
                Ok(())
            }
            DataRef::File(f) => f.read_exact_at(buf, offset),
        }
    }
}

/// Compares the freshly computed pairs in `pairs` with the stored segments,
/// whole segments at a time (all of them if `last`), starting at segment
/// `next`. Returns the next segment to compare.
fn compare_segments(
    table: &OutboardTable,
    hash: &Hash,
    pairs: &mut Vec<u8>,
    mut next: u64,
    last: bool,
) -> Result<u64, StoreError> {
    let seg = SEGMENT_BYTES as usize;
    let mut consumed = 0;
    while pairs.len() - consumed >= seg || (last && consumed < pairs.len()) {
        let end = (consumed + seg).min(pairs.len());
        let stored = table.get((hash.as_bytes(), next)).db()?;
        if stored.as_ref().map(|g| g.value()) != Some(&pairs[consumed..end]) {
            return Err(StoreError::Corrupt(format!(
                "{hash}: outboard segment {next} does not match the data"
            )));
        }
        consumed = end;
        next += 1;
    }
    pairs.drain(..consumed);
    Ok(next)
}

fn have_set(
    have: &impl ReadableTable<&'static tables::HashKey, &'static [u8]>,
    hash: &Hash,
) -> Result<GroupSet, StoreError> {
    match have.get(hash.as_bytes()).db()? {
        Some(g) => decode_groups(g.value()),
        None => Ok(GroupSet::empty()),
    }
}

fn blob_info(
    hash: Hash,
    meta: BlobMeta,
    have: &impl ReadableTable<&'static tables::HashKey, &'static [u8]>,
    pins: &impl ReadableTable<(&'static tables::HashKey, &'static str), ()>,
) -> Result<BlobInfo, StoreError> {
    let (state, present) = if meta.is_complete() {
        (BlobState::Complete, meta.size)
    } else {
        let set = have_set(have, &hash)?;
        (BlobState::Partial, present_bytes(&set, meta.size))
    };
    Ok(BlobInfo {
        hash,
        size: meta.size,
        state,
        present,
        pins: crate::gc::pin_names(pins, &hash)?,
    })
}

/// Bytes covered by a set of groups in a blob of `size` bytes.
pub(crate) fn present_bytes(set: &GroupSet, size: u64) -> u64 {
    set.iter()
        .map(|r| {
            let (start, end) = match r {
                range_collections::range_set::RangeSetRange::Range(r) => (*r.start, *r.end),
                range_collections::range_set::RangeSetRange::RangeFrom(r) => {
                    (*r.start, groups(size))
                }
            };
            (end * CHUNK_GROUP_SIZE).min(size) - (start * CHUNK_GROUP_SIZE).min(size)
        })
        .sum()
}
