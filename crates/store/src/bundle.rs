//! Bundles: blobs in one file, to carry them with no network (a USB
//! stick, an email), each verified against its hash on import
//! (docs/protocol.md §12, to be written).
//!
//! ```text
//! bundle = MAGIC record* END
//! record = kind:u8 len:u64le payload[len]
//! BLOB (1): hash[32] proof_len:u64le proof[proof_len] full
//!   proof: the §3.4 stream of the last chunk group (the size proof)
//!   full:  the §3.4 stream of the whole blob
//! END (0): len 0; a file without it was cut off.
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

impl Store {
    /// Writes the complete blobs `hashes` to `w` as a bundle.
    pub fn export_bundle(&self, hashes: &[Hash], w: impl Write) -> Result<(), StoreError> {
        let mut w = Counting { inner: w, n: 0 };
        let io = |e| crate::error::io_error("writing the bundle".into(), e);
        w.write_all(MAGIC).map_err(io)?;
        for hash in hashes {
            let size = match self.info(hash)? {
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
            self.encode_ranges(hash, &proof_ranges(), &mut proof)?;
            let full = full_len(size);
            let len = 32 + 8 + proof.len() as u64 + full;
            w.write_all(&[BLOB]).map_err(io)?;
            w.write_all(&len.to_le_bytes()).map_err(io)?;
            w.write_all(hash.as_bytes()).map_err(io)?;
            w.write_all(&(proof.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&proof).map_err(io)?;
            let before = w.n;
            self.encode_ranges(hash, &ChunkRanges::all(), &mut w)?;
            if w.n - before != full {
                return Err(StoreError::Invalid(format!(
                    "blob {hash}: its stream is {} bytes, not {full}",
                    w.n - before
                )));
            }
        }
        w.write_all(&[END]).map_err(io)?;
        w.write_all(&0u64.to_le_bytes()).map_err(io)?;
        w.flush().map_err(io)
    }

    /// Imports the blobs of the bundle `r`, each verified, pinned with
    /// `pin`; returns each blob's hash and size, in order. A bundle that
    /// fails (damaged, cut off) leaves nothing it brought: the blobs it
    /// added are removed again.
    pub fn import_bundle(
        &self,
        r: impl Read,
        pin: Option<&str>,
    ) -> Result<Vec<(Hash, u64)>, StoreError> {
        let mut new = Vec::new();
        match self.read_bundle(r, pin, &mut new) {
            Ok(out) => Ok(out),
            Err(e) => {
                // (Pins set by this import go with them.)
                if let Some(pin) = pin {
                    for hash in &new {
                        self.unpin(hash, pin)?;
                    }
                }
                self.discard(&new)?;
                Err(e)
            }
        }
    }

    /// Reads a bundle; `new` collects the blobs it adds that the store did
    /// not have.
    fn read_bundle(
        &self,
        mut r: impl Read,
        pin: Option<&str>,
        new: &mut Vec<Hash>,
    ) -> Result<Vec<(Hash, u64)>, StoreError> {
        let bad = |what: &str| StoreError::Invalid(format!("not a p2pfs bundle: {what}"));
        let mut magic = [0u8; 15];
        r.read_exact(&mut magic).map_err(|_| bad("too short"))?;
        if &magic != MAGIC {
            return Err(bad("wrong magic bytes"));
        }
        let mut out = Vec::new();
        loop {
            let mut head = [0u8; 9];
            r.read_exact(&mut head)
                .map_err(|_| bad("cut off (no end record)"))?;
            let len = u64::from_le_bytes(head[1..].try_into().unwrap_or_default());
            match head[0] {
                END if len == 0 => return Ok(out),
                BLOB if len >= 40 => {
                    let mut rec = (&mut r).take(len);
                    let mut h = [0u8; 32];
                    rec.read_exact(&mut h).ctx(|| "reading the bundle".into())?;
                    let hash = Hash::from_bytes(h);
                    let mut pl = [0u8; 8];
                    rec.read_exact(&mut pl)
                        .ctx(|| "reading the bundle".into())?;
                    let proof_len = u64::from_le_bytes(pl);
                    if proof_len > len - 40 {
                        return Err(bad("a size proof longer than its record"));
                    }
                    if self.info(&hash)?.is_none() {
                        new.push(hash);
                    }
                    let partial = self.partial(hash)?;
                    {
                        let mut proof = (&mut rec).take(proof_len);
                        partial.ingest(&proof_ranges(), &mut proof)?;
                        io::copy(&mut proof, &mut io::sink())
                            .ctx(|| "reading the bundle".into())?;
                    }
                    partial.ingest(&ChunkRanges::all(), &mut rec)?;
                    io::copy(&mut rec, &mut io::sink()).ctx(|| "reading the bundle".into())?;
                    partial.flush()?;
                    let size = match (partial.is_complete(), partial.size()) {
                        (true, Some(size)) => size,
                        _ => return Err(bad(&format!("blob {hash} is incomplete"))),
                    };
                    drop(partial);
                    if let Some(pin) = pin {
                        self.pin(&hash, pin)?;
                    }
                    out.push((hash, size));
                }
                kind => {
                    return Err(bad(&format!(
                        "record of unknown kind {kind} or length {len}"
                    )));
                }
            }
        }
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
