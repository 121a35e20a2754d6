//! Bundles: blobs in one file, to carry them with no network (a USB
//! stick, an email), each verified against its hash on import
//! (docs/protocol.md §12).
//!
//! ```text
//! bundle = MAGIC record* END
//! record = kind:u8 len:u64le payload[len]
//! BLOB (1): hash[32] proof_len:u64le proof[proof_len] full
//!   proof: the §3.4 stream of the last chunk group (the size proof)
//!   full:  the §3.4 stream of the whole blob
//! END (0): len 0; a file without it was cut off.
//! other kinds (2…): records the store hands to its caller (a room's
//!   export, `p2pfs_swarm::room::bundle`), at most MAX_RECORD bytes
//! ```
//!
//! An import ingests each blob through [`crate::PartialBlob::ingest`], the
//! path a download takes: nothing unverified is stored.
//!
//! A bundle that fails to import leaves nothing it brought.

use std::io::{self, Read, Write};

use bao_tree::{ChunkNum, ChunkRanges};
use p2pfs_proto::Hash;

use crate::{
    Store,
    error::{IoContext, StoreError},
};

/// The first bytes of a bundle.
pub(crate) const MAGIC: &[u8; 15] = b"p2pfs bundle 1\n";
const END: u8 = 0;
const BLOB: u8 = 1;
/// A chunk past any blob's end: asking for it yields the last group.
const PAST_THE_END: u64 = 1 << 50;

fn proof_ranges() -> ChunkRanges {
    ChunkRanges::from(ChunkNum(PAST_THE_END)..ChunkNum(PAST_THE_END + 1))
}

/// Bytes of the §3.4 stream of a whole blob of `size` bytes: the size,
/// the data, and a pair of hashes per parent (one parent fewer than
/// groups).
fn full_len(size: u64) -> u64 {
    8 + size + 64 * p2pfs_proto::chunk::groups(size).saturating_sub(1)
}

/// Counts what it writes.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Most bytes of a record other than a blob (read into memory whole).
pub const MAX_RECORD: u64 = 32 << 20;

/// What a bundle holds, record by record.
#[derive(Debug)]
pub enum Record {
    /// A blob, now in the store, verified and complete.
    Blob {
        /// Its hash.
        hash: Hash,
        /// Its size in bytes.
        size: u64,
    },
    /// A record of another kind (`kind` > 1), for the caller to read.
    Other {
        /// Its kind.
        kind: u8,
        /// Its bytes.
        payload: Vec<u8>,
    },
}

/// Writes a bundle: [`BundleWriter::record`]s and
/// [`BundleWriter::blob`]s, then [`BundleWriter::finish`]. A writer not
/// finished leaves a file an import refuses (it has no end record).
pub struct BundleWriter<'s, W: Write> {
    store: &'s Store,
    w: Counting<W>,
}

fn write_error(e: io::Error) -> StoreError {
    crate::error::io_error("writing the bundle".into(), e)
}

impl<W: Write> std::fmt::Debug for BundleWriter<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BundleWriter({} bytes)", self.w.n)
    }
}

impl<W: Write> BundleWriter<'_, W> {
    /// Writes a record of `kind` (not 0 or 1, which are the end and blobs).
    pub fn record(&mut self, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
        if kind <= BLOB || payload.len() as u64 > MAX_RECORD {
            return Err(StoreError::Invalid(format!(
                "a bundle record of kind {kind} and {} bytes",
                payload.len()
            )));
        }
        self.w.write_all(&[kind]).map_err(write_error)?;
        self.w
            .write_all(&(payload.len() as u64).to_le_bytes())
            .map_err(write_error)?;
        self.w.write_all(payload).map_err(write_error)
    }

    /// Writes the complete blob `hash`, with its size proof.
    pub fn blob(&mut self, hash: &Hash) -> Result<(), StoreError> {
        let size = match self.store.info(hash)? {
            Some(i) if i.state == crate::BlobState::Complete => i.size,
            Some(i) => {
                return Err(StoreError::Incomplete {
                    hash: *hash,
                    present: i.present,
                    size: i.size,
                });
            }
            None => return Err(StoreError::NotFound(*hash)),
        };
        let mut proof = Vec::new();
        self.store
            .encode_ranges(hash, &proof_ranges(), &mut proof)?;
        let full = full_len(size);
        let len = 32 + 8 + proof.len() as u64 + full;
        let w = &mut self.w;
        w.write_all(&[BLOB]).map_err(write_error)?;
        w.write_all(&len.to_le_bytes()).map_err(write_error)?;
        w.write_all(hash.as_bytes()).map_err(write_error)?;
        w.write_all(&(proof.len() as u64).to_le_bytes())
            .map_err(write_error)?;
        w.write_all(&proof).map_err(write_error)?;
        let before = w.n;
        self.store
            .encode_ranges(hash, &ChunkRanges::all(), &mut *w)?;
        if w.n - before != full {
            return Err(StoreError::Invalid(format!(
                "blob {hash}: its stream is {} bytes, not {full}",
                w.n - before
            )));
        }
        Ok(())
    }

    /// Writes the end record and flushes; the bytes written in all.
    pub fn finish(mut self) -> Result<(W, u64), StoreError> {
        self.w.write_all(&[END]).map_err(write_error)?;
        self.w.write_all(&0u64.to_le_bytes()).map_err(write_error)?;
        self.w.flush().map_err(write_error)?;
        Ok((self.w.inner, self.w.n))
    }
}

/// Reads a bundle record by record ([`BundleReader::next`]), taking its
/// blobs into the store verified. Dropped before the end (an error, or
/// the caller gives up), it takes out again the blobs it brought:
/// nothing of a failed import stays.
pub struct BundleReader<'s, R: Read> {
    store: &'s Store,
    r: R,
    /// Blobs it added that the store did not have, with the pin it set.
    new: Vec<(Hash, Option<String>)>,
    ended: bool,
}

impl<R: Read> std::fmt::Debug for BundleReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BundleReader({} new blobs)", self.new.len())
    }
}

impl<R: Read> BundleReader<'_, R> {
    /// The next record, or `None` after the end record; a blob is stored
    /// (pinned with `pin`) before it is returned.
    pub fn next(&mut self, pin: Option<&str>) -> Result<Option<Record>, StoreError> {
        if self.ended {
            return Ok(None);
        }
        let r = &mut self.r;
        let mut head = [0u8; 9];
        r.read_exact(&mut head)
            .map_err(|_| not_a_bundle("cut off (no end record)"))?;
        let len = u64::from_le_bytes(head[1..].try_into().unwrap_or_default());
        match head[0] {
            END if len == 0 => {
                self.ended = true;
                Ok(None)
            }
            BLOB if len >= 40 => {
                let mut rec = (&mut *r).take(len);
                let mut h = [0u8; 32];
                rec.read_exact(&mut h).ctx(|| "reading the bundle".into())?;
                let hash = Hash::from_bytes(h);
                let mut pl = [0u8; 8];
                rec.read_exact(&mut pl)
                    .ctx(|| "reading the bundle".into())?;
                let proof_len = u64::from_le_bytes(pl);
                if proof_len > len - 40 {
                    return Err(not_a_bundle("a size proof longer than its record"));
                }
                if self.store.info(&hash)?.is_none() {
                    self.new.push((hash, pin.map(str::to_string)));
                }
                let partial = self.store.partial(hash)?;
                {
                    let mut proof = (&mut rec).take(proof_len);
                    partial.ingest(&proof_ranges(), &mut proof)?;
                    io::copy(&mut proof, &mut io::sink()).ctx(|| "reading the bundle".into())?;
                }
                partial.ingest(&ChunkRanges::all(), &mut rec)?;
                io::copy(&mut rec, &mut io::sink()).ctx(|| "reading the bundle".into())?;
                partial.flush()?;
                let size = match (partial.is_complete(), partial.size()) {
                    (true, Some(size)) => size,
                    _ => return Err(not_a_bundle(&format!("blob {hash} is incomplete"))),
                };
                drop(partial);
                if let Some(pin) = pin {
                    self.store.pin(&hash, pin)?;
                }
                Ok(Some(Record::Blob { hash, size }))
            }
            kind if kind > BLOB && len <= MAX_RECORD => {
                let mut payload = Vec::new();
                (&mut *r)
                    .take(len)
                    .read_to_end(&mut payload)
                    .ctx(|| "reading the bundle".into())?;
                if payload.len() as u64 != len {
                    return Err(not_a_bundle("cut off inside a record"));
                }
                Ok(Some(Record::Other { kind, payload }))
            }
            kind => Err(not_a_bundle(&format!(
                "record of unknown kind {kind} or length {len}"
            ))),
        }
    }

    /// Keeps what was read: the caller took in everything it needed.
    pub fn commit(mut self) {
        self.new.clear();
    }

    fn abort(&mut self) -> Result<(), StoreError> {
        let new = std::mem::take(&mut self.new);
        // (Pins set by this import go with them.)
        for (hash, pin) in &new {
            if let Some(pin) = pin {
                self.store.unpin(hash, pin)?;
            }
        }
        let hashes: Vec<Hash> = new.into_iter().map(|(h, _)| h).collect();
        self.store.discard(&hashes)?;
        Ok(())
    }
}

impl<R: Read> Drop for BundleReader<'_, R> {
    fn drop(&mut self) {
        if !self.new.is_empty()
            && let Err(e) = self.abort()
        {
            tracing::warn!("could not take out the blobs of a failed bundle import: {e}");
        }
    }
}

fn not_a_bundle(what: &str) -> StoreError {
    StoreError::Invalid(format!("not a p2pfs bundle: {what}"))
}

impl Store {
    /// Starts a bundle on `w` (writes the magic bytes).
    pub fn bundle_writer<W: Write>(&self, w: W) -> Result<BundleWriter<'_, W>, StoreError> {
        let mut w = Counting { inner: w, n: 0 };
        w.write_all(MAGIC).map_err(write_error)?;
        Ok(BundleWriter { store: self, w })
    }

    /// Opens the bundle `r` (checks the magic bytes).
    pub fn bundle_reader<R: Read>(&self, mut r: R) -> Result<BundleReader<'_, R>, StoreError> {
        let mut magic = [0u8; 15];
        r.read_exact(&mut magic)
            .map_err(|_| not_a_bundle("too short"))?;
        if &magic != MAGIC {
            return Err(not_a_bundle("wrong magic bytes"));
        }
        Ok(BundleReader {
            store: self,
            r,
            new: Vec::new(),
            ended: false,
        })
    }

    /// Writes the complete blobs `hashes` to `w` as a bundle.
    pub fn export_bundle(&self, hashes: &[Hash], w: impl Write) -> Result<(), StoreError> {
        let mut b = self.bundle_writer(w)?;
        for hash in hashes {
            b.blob(hash)?;
        }
        b.finish().map(|_| ())
    }

    /// Imports the blobs of the bundle `r`, each verified, pinned with
    /// `pin`; returns each blob's hash and size, in order. A bundle that
    /// fails (damaged, cut off, or with records other than blobs) leaves
    /// nothing it brought.
    pub fn import_bundle(
        &self,
        r: impl Read,
        pin: Option<&str>,
    ) -> Result<Vec<(Hash, u64)>, StoreError> {
        let mut b = self.bundle_reader(r)?;
        let mut out = Vec::new();
        while let Some(rec) = b.next(pin)? {
            match rec {
                Record::Blob { hash, size } => out.push((hash, size)),
                Record::Other { kind, .. } => {
                    return Err(not_a_bundle(&format!(
                        "a record of kind {kind}: this is a room's export (use p2pfs room import)"
                    )));
                }
            }
        }
        b.commit();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(dir.path().join("s")).expect("store");
        (dir, s)
    }

    #[test]
    fn a_bundle_carries_blobs_verified_and_refuses_damage() {
        let (_a_dir, a) = store();
        let sizes = [0usize, 1, 16384, 16385, 100_000, 1_000_000];
        let mut hashes = Vec::new();
        let mut blobs = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*n).map(|j| (j * 7 + i) as u8).collect();
            hashes.push(a.import_bytes(&data, Some("user")).expect("import").hash);
            blobs.push(data);
        }
        let mut bundle = Vec::new();
        a.export_bundle(&hashes, &mut bundle).expect("export");
        let (_b_dir, b) = store();
        let got = b.import_bundle(&bundle[..], Some("user")).expect("import");
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), hashes);
        for ((h, n), data) in got.into_iter().zip(&blobs) {
            assert_eq!(n, data.len() as u64);
            let mut buf = vec![0u8; data.len()];
            let mut at = 0;
            while at < buf.len() {
                let k = b.read_at(&h, at as u64, &mut buf[at..]).expect("read");
                assert!(k > 0);
                at += k;
            }
            assert_eq!(&buf, data);
        }
        // Any flipped byte in a blob's data is refused, and nothing is
        // kept (not even the blobs before it, which verified).
        let (_c_dir, c) = store();
        let mut bad = bundle.clone();
        let at = bundle.len() - 200_000;
        bad[at] ^= 1;
        assert!(c.import_bundle(&bad[..], Some("user")).is_err());
        assert!(c.list().expect("list").is_empty());
        // Cut off, or not a bundle.
        let (_d_dir, d) = store();
        assert!(d.import_bundle(&bundle[..bundle.len() - 9], None).is_err());
        assert!(d.import_bundle(&b"hello"[..], None).is_err());
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The bundle of `T(16385)` (byte `i` is `i mod 251`), as
    /// docs/protocol.md §12 gives it: its length and BLAKE3.
    #[test]
    fn the_protocol_documents_the_bundle_vector() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(dir.path().join("s")).expect("store");
        let data: Vec<u8> = (0..16385u32).map(|i| (i % 251) as u8).collect();
        let hash = s.import_bytes(&data, None).expect("import").hash;
        let mut bundle = Vec::new();
        s.export_bundle(&[hash], &mut bundle).expect("export");
        let line = format!(
            "| `T(16385)` | {} | `{}` |",
            bundle.len(),
            blake3::hash(&bundle).to_hex()
        );
        let doc = include_str!("../../../docs/protocol.md");
        assert!(
            doc.contains(&line),
            "docs/protocol.md §12 should hold: {line}"
        );
    }
}
