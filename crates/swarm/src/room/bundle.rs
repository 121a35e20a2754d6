//! A room in one file, to carry it with no network (docs/protocol.md
//! §12.2): its ticket, its log and, if asked, the blobs of its files.
//! Importing merges the log into the local room, or creates the room, the
//! way sync would: entry by entry, each verified, parents first. Two
//! exports made on the two sides of a partition import to the union.
//!
//! The file grants membership as a ticket does: it holds the room's secret.

use std::{
    collections::HashSet,
    io::BufReader,
    path::{Path, PathBuf},
};

use p2pfs_proto::{
    Hash, RoomId,
    room::{
        BUNDLE_ENTRIES, BUNDLE_ROOM, MAX_BUNDLE_ENTRIES, MAX_ENTRY, Meta, Op, RoomTicket,
        valid_display_name,
    },
};
use p2pfs_store::{Record, Store, StoreError};

use super::{FileKind, Room, entry, entry::Verified, pin_name, query};
use crate::{Node, SwarmError, blocking, error::RoomError};

/// Entries handed to the room's log task at a time.
const ACCEPT_BATCH: usize = 1024;
/// Entries read from the log at a time while exporting.
const READ_BATCH: usize = 1024;

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportReport {
    /// Entries of the log.
    pub entries: u64,
    /// Blobs (files' contents, each once).
    pub blobs: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    /// The room's local name.
    pub room: String,
    /// Whether the import created the room here.
    pub created: bool,
    /// Entries in the file.
    pub entries: u64,
    /// Entries new to the local log.
    pub new_entries: u64,
    /// Blobs in the file.
    pub blobs: u64,
}

/// What a bundle holds, read and verified, its blobs in the store.
pub(crate) struct Parsed {
    pub(crate) ticket: RoomTicket,
    pub(crate) entries: Vec<Verified>,
    pub(crate) blobs: u64,
}

impl Node {
    /// Writes `room`'s log, and with `files` the blobs of its files
    /// (fetched first where this node lacks them), to `path` (replaced
    /// whole: a failed export leaves no file).
    pub async fn export_room(
        &self,
        room: &Room,
        path: PathBuf,
        files: bool,
    ) -> Result<ExportReport, SwarmError> {
        let mut blobs = Vec::new();
        if files {
            let (store, id) = (self.store().clone(), room.id);
            let list = blocking(move || query::ls(&store, &id)).await?;
            let mut seen = HashSet::new();
            for f in list {
                if let FileKind::File { hash, .. } = f.kind
                    && seen.insert(hash)
                {
                    // Made complete here first (pinned for the room).
                    self.room_fetch(room, &f.path).await?;
                    blobs.push(hash);
                }
            }
        }
        let ticket = self.room_ticket(room);
        let (store, id) = (self.store().clone(), room.id);
        blocking(move || write(&store, &id, &ticket, &blobs, &path)).await
    }

    /// Merges the room export `path` into the local room, or creates the
    /// room (named `name`, else as the export says), with no network.
    /// Nothing of a damaged or cut-off file is kept.
    pub async fn import_room(
        &self,
        path: PathBuf,
        name: Option<String>,
    ) -> Result<ImportReport, SwarmError> {
        let rooms: Vec<(RoomId, String)> =
            self.all_rooms().iter().map(|r| (r.id, r.name())).collect();
        let store = self.store().clone();
        let parsed = {
            let name = name.clone();
            crate::off_thread(move || {
                let file = std::fs::File::open(&path).map_err(|source| StoreError::Io {
                    context: format!("opening {}", path.display()),
                    source,
                })?;
                read(&store, BufReader::new(file), &rooms, name.as_deref())
            })
            .await??
        };
        let id = parsed.ticket.secret.id();
        let (room, created) = match self.room(&id) {
            Some(r) => (r, false),
            None => {
                let name = name.unwrap_or_else(|| parsed.ticket.name.clone());
                (self.start_ticketed(&parsed.ticket, name).await?, true)
            }
        };
        room.learn_all(parsed.ticket.nodes.clone(), self.id()).await;
        let (store, rid) = (self.store().clone(), room.id);
        let before = blocking(move || store.room_len(&rid)).await?;
        let entries = parsed.entries.len() as u64;
        let mut it = parsed.entries.into_iter();
        loop {
            let batch: Vec<Verified> = it.by_ref().take(ACCEPT_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            room.log.accept(self.id(), batch).await?;
        }
        if created {
            self.post(&room, Op::Meta(Meta::MemberName(self.display_name())))
                .await?;
        }
        let (store, rid) = (self.store().clone(), room.id);
        let after = blocking(move || store.room_len(&rid)).await?;
        Ok(ImportReport {
            room: room.name(),
            created,
            entries,
            new_entries: after.saturating_sub(before + u64::from(created)),
            blobs: parsed.blobs,
        })
    }
}

/// Writes the bundle of room `id` to `path`.
fn write(
    store: &Store,
    id: &RoomId,
    ticket: &RoomTicket,
    blobs: &[Hash],
    path: &Path,
) -> Result<ExportReport, StoreError> {
    let io = |source| StoreError::Io {
        context: format!("writing {}", path.display()),
        source,
    };
    // Replaced whole once written: a failed export leaves what was there.
    let file = p2pfs_store::OutputFile::create(path).map_err(io)?;
    let mut w = store.bundle_writer(file)?;
    let encoded =
        p2pfs_proto::codec::encode(ticket).map_err(|e| StoreError::Invalid(e.to_string()))?;
    w.record(BUNDLE_ROOM, &encoded)?;
    let mut entries = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |w: &mut p2pfs_store::BundleWriter<'_, _>, batch: &mut Vec<Vec<u8>>| {
        let encoded =
            p2pfs_proto::codec::encode(&*batch).map_err(|e| StoreError::Invalid(e.to_string()))?;
        batch.clear();
        w.record(BUNDLE_ENTRIES, &encoded)
    };
    loop {
        let page = store.room_log(id, entries, READ_BATCH)?;
        if page.is_empty() {
            break;
        }
        entries += page.len() as u64;
        for e in page {
            if batch_bytes + e.len() > MAX_BUNDLE_ENTRIES - MAX_ENTRY {
                flush(&mut w, &mut batch)?;
                batch_bytes = 0;
            }
            batch_bytes += e.len() + 4;
            batch.push(e);
        }
    }
    if !batch.is_empty() {
        flush(&mut w, &mut batch)?;
    }
    for hash in blobs {
        w.blob(hash)?;
    }
    let (file, bytes) = w.finish()?;
    file.finish(true).map_err(io)?;
    Ok(ExportReport {
        entries,
        blobs: blobs.len() as u64,
        bytes,
    })
}

/// Reads and verifies the room export `r`; its blobs are taken into the
/// store pinned for the room. `rooms` are this node's rooms, to refuse a
/// new room whose name is taken before anything is stored.
pub(crate) fn read(
    store: &Store,
    r: impl std::io::Read,
    rooms: &[(RoomId, String)],
    name: Option<&str>,
) -> Result<Parsed, SwarmError> {
    let mut r = store.bundle_reader(r)?;
    let bad =
        |what: String| SwarmError::from(StoreError::Invalid(format!("not a room export: {what}")));
    let ticket = match r.next(None)? {
        Some(Record::Other {
            kind: BUNDLE_ROOM,
            payload,
        }) => RoomTicket::decode(&payload)
            .map_err(|e| bad(format!("its room record does not read: {e}")))?,
        Some(Record::Blob { .. }) | None => {
            return Err(bad(
                "it holds blobs only (import it with p2pfs import)".into()
            ));
        }
        Some(Record::Other { kind, .. }) => {
            return Err(bad(format!("a first record of kind {kind}")));
        }
    };
    let id = ticket.secret.id();
    if !rooms.iter().any(|(r, _)| *r == id) {
        let name = name.unwrap_or(&ticket.name);
        if !valid_display_name(name) {
            return Err(RoomError::BadName(name.to_string()).into());
        }
        if rooms.iter().any(|(_, n)| n == name) {
            return Err(RoomError::NameTaken(name.to_string()).into());
        }
    }
    let pin = pin_name(&id);
    let mut entries = Vec::new();
    let mut blobs = 0u64;
    while let Some(rec) = r.next(Some(&pin))? {
        match rec {
            Record::Blob { .. } => blobs += 1,
            Record::Other {
                kind: BUNDLE_ENTRIES,
                payload,
            } => {
                let batch: Vec<Vec<u8>> = p2pfs_proto::codec::decode(&payload)
                    .map_err(|e| bad(format!("a record of entries does not decode: {e}")))?;
                for bytes in batch {
                    let n = entries.len();
                    let v = entry::verify(&ticket.secret, &id, bytes)
                        .map_err(|e| bad(format!("entry {n}: {e}")))?;
                    entries.push(v);
                }
            }
            Record::Other { kind, .. } => return Err(bad(format!("a record of kind {kind}"))),
        }
    }
    r.commit();
    Ok(Parsed {
        ticket,
        entries,
        blobs,
    })
}
