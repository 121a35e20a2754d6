//! Extended attributes, for scripts: `user.p2pfs.hash` (what `b3sum`
//! prints), `user.p2pfs.local` (bytes of the file in the local store),
//! `user.p2pfs.author` (the node that published it), `user.p2pfs.copies`
//! (complete copies on the members online) and `user.p2pfs.pin` (`1`:
//! kept here whatever the placement; set it with `setfattr -n
//! user.p2pfs.pin -v 1`, remove it or set `0` to stop); on a room's
//! directory, `user.p2pfs.room` (its id) and `user.p2pfs.online` (members
//! connected now); on the mount's root, `user.p2pfs.node` (the node id).
//! `user.p2pfs.copies` reads `1 (only here)` when this node's copy is the
//! only one on the members online.
//!
//! They are answered by name but not listed: copying tools (`rsync -aX`,
//! `cp -a`, `mv` between rooms) copy what `listxattr` names, and these
//! describe this copy, not the file. Setting one to the value it has is
//! accepted (and changes nothing), as a copy onto the same content does.

use std::sync::Arc;

use fuser::{Errno, INodeNo};
use p2pfs_proto::Hash;
use p2pfs_swarm::room::Room;

use crate::{
    answer::{Answer, Xattr},
    fs::{Found, Fs, store_errno, swarm_errno},
    inode::Place,
};

const HASH: &str = "user.p2pfs.hash";
const LOCAL: &str = "user.p2pfs.local";
const AUTHOR: &str = "user.p2pfs.author";
const ROOM: &str = "user.p2pfs.room";
const ONLINE: &str = "user.p2pfs.online";
const COPIES: &str = "user.p2pfs.copies";
const PIN: &str = "user.p2pfs.pin";
const NODE: &str = "user.p2pfs.node";

impl Fs {
    /// Every attribute of `ino` with its value.
    fn xattrs(&self, ino: INodeNo) -> Result<Vec<(&'static str, String)>, Errno> {
        Ok(match self.place(ino)? {
            Place::Root => vec![(NODE, self.node.id().to_string())],
            Place::Chat(_) => Vec::new(),
            Place::Room(r) => {
                let room = self.room(&r)?;
                vec![
                    (ROOM, r.to_string()),
                    (ONLINE, room.online().len().to_string()),
                ]
            }
            Place::Path(r, p) => match self.find(&r, &p)? {
                None => return Err(Errno::ENOENT),
                Some(Found::Dir | Found::Local(_) | Found::Link(_)) => Vec::new(),
                Some(Found::File(f)) => {
                    let (local, copies, kept) = self.replication(&r, f.hash, f.author)?;
                    vec![
                        (HASH, f.hash.to_string()),
                        (LOCAL, local.to_string()),
                        (AUTHOR, f.author.to_string()),
                        (COPIES, copies),
                        (PIN, kept),
                    ]
                }
                Some(Found::Draft(d)) => match d.published() {
                    // Unchanged since it was published (by this node).
                    Some(h) => {
                        let (_, copies, kept) = self.replication(&r, h, self.node.id())?;
                        vec![
                            (HASH, h.to_string()),
                            (LOCAL, d.stat().size.to_string()),
                            (AUTHOR, self.node.id().to_string()),
                            (COPIES, copies),
                            (PIN, kept),
                        ]
                    }
                    // Being written: no hash yet.
                    None => vec![(LOCAL, d.stat().size.to_string())],
                },
            },
        })
    }

    pub(crate) fn getxattr_of(
        &self,
        ino: INodeNo,
        name: &std::ffi::OsStr,
        size: u32,
    ) -> Result<Xattr, Errno> {
        // The kernel asks for others (`security.capability` before
        // writes): answer those without computing ours.
        if !name.as_encoded_bytes().starts_with(b"user.p2pfs.") {
            return Err(Errno::NO_XATTR);
        }
        let all = self.xattrs(ino)?;
        match all.iter().find(|(n, _)| std::ffi::OsStr::new(n) == name) {
            Some((_, v)) => Xattr::of(v.as_bytes(), size),
            None => Err(Errno::NO_XATTR),
        }
    }

    /// Bytes of blob `hash` here, its copies on the members online, and
    /// whether the user keeps it here (`1` or `0`).
    fn replication(
        &self,
        r: &p2pfs_proto::RoomId,
        hash: Hash,
        author: p2pfs_proto::NodeId,
    ) -> Result<(u64, String, String), Errno> {
        let store = self.node.store();
        let info = store.info(&hash).map_err(|e| store_errno(&e))?;
        let pins = match &info {
            Some(i) => i.pins.clone(),
            None => store.pins(&hash).map_err(|e| store_errno(&e))?,
        };
        let kept = pins.contains(&p2pfs_swarm::replica::keep_pin_name(r));
        let (copies, _, only_here) = self
            .node
            .room_copies(&*self.room(r)?, hash, author)
            .map_err(|e| store_errno(&e))?;
        let copies = if only_here {
            format!("{copies} (only here)")
        } else {
            copies.to_string()
        };
        Ok((
            info.map_or(0, |i| i.present),
            copies,
            u8::from(kept).to_string(),
        ))
    }

    /// `setxattr`: only `user.p2pfs.pin` (`1` keeps the file here, `0`
    /// stops).
    pub(crate) fn setxattr_of(
        &self,
        ino: INodeNo,
        name: &std::ffi::OsStr,
        value: &[u8],
    ) -> Answer<()> {
        if name != PIN {
            // The value it already has: nothing to change.
            let same = name.as_encoded_bytes().starts_with(b"user.p2pfs.")
                && self.xattrs(ino).is_ok_and(|all| {
                    all.iter()
                        .any(|(n, v)| std::ffi::OsStr::new(n) == name && v.as_bytes() == value)
                });
            return Answer::Now(if same { Ok(()) } else { Err(Errno::ENOTSUP) });
        }
        let keep = match value.trim_ascii() {
            b"1" | b"true" | b"yes" => true,
            b"0" | b"false" | b"no" | b"" => false,
            _ => return Answer::Now(Err(Errno::EINVAL)),
        };
        self.set_pin(ino, keep)
    }

    /// `removexattr`: only `user.p2pfs.pin` (stops keeping the file).
    pub(crate) fn removexattr_of(&self, ino: INodeNo, name: &std::ffi::OsStr) -> Answer<()> {
        if name != PIN {
            return Answer::Now(Err(Errno::NO_XATTR));
        }
        self.set_pin(ino, false)
    }

    fn set_pin(&self, ino: INodeNo, keep: bool) -> Answer<()> {
        let (room, hash) = match self.pinnable(ino) {
            Ok(x) => x,
            Err(e) => return Answer::Now(Err(e)),
        };
        let node = self.node.clone();
        Answer::later(async move {
            node.room_keep(&room, hash, keep)
                .await
                .map_err(|e| swarm_errno(&e))
        })
    }

    /// The room and content of a published file.
    fn pinnable(&self, ino: INodeNo) -> Result<(Arc<Room>, Hash), Errno> {
        let Place::Path(r, p) = self.place(ino)? else {
            return Err(Errno::ENOTSUP);
        };
        let hash = match self.find(&r, &p)? {
            None => return Err(Errno::ENOENT),
            Some(Found::Dir | Found::Local(_) | Found::Link(_)) => return Err(Errno::ENOTSUP),
            Some(Found::File(f)) => f.hash,
            Some(Found::Draft(d)) => d.published().ok_or(Errno::EBUSY)?,
        };
        Ok((self.room(&r)?, hash))
    }

    /// `listxattr`: none (see the module docs), for a place that exists.
    pub(crate) fn listxattr_of(&self, ino: INodeNo, size: u32) -> Result<Xattr, Errno> {
        self.place(ino)?;
        Xattr::of(&[], size)
    }
}
