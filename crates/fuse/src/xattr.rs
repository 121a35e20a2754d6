//! Extended attributes, for scripts: `user.p2pfs.hash` (what `b3sum`
//! prints), `user.p2pfs.local` (bytes of the file in the local store),
//! `user.p2pfs.author` (the node that published it); on a room's
//! directory, `user.p2pfs.room` (its id) and `user.p2pfs.online` (members
//! connected now).

use fuser::{Errno, INodeNo, ReplyXattr};

use crate::{
    fs::{Found, Fs},
    inode::Place,
};

const HASH: &str = "user.p2pfs.hash";
const LOCAL: &str = "user.p2pfs.local";
const AUTHOR: &str = "user.p2pfs.author";
const ROOM: &str = "user.p2pfs.room";
const ONLINE: &str = "user.p2pfs.online";

impl Fs {
    /// Every attribute of `ino` with its value.
    fn xattrs(&self, ino: INodeNo) -> Result<Vec<(&'static str, String)>, Errno> {
        Ok(match self.place(ino)? {
            Place::Root | Place::Chat(_) => Vec::new(),
            Place::Room(r) => {
                let room = self.room(&r)?;
                vec![
                    (ROOM, r.to_string()),
                    (ONLINE, room.online().len().to_string()),
                ]
            }
            Place::Path(r, p) => match self.find(&r, &p)? {
                None => return Err(Errno::ENOENT),
                Some(Found::Dir) => Vec::new(),
                Some(Found::File(f)) => {
                    let local = match self.node.store().info(&f.hash) {
                        Ok(Some(info)) => info.present,
                        _ => 0,
                    };
                    vec![
                        (HASH, f.hash.to_string()),
                        (LOCAL, local.to_string()),
                        (AUTHOR, f.author.to_string()),
                    ]
                }
                Some(Found::Draft(d)) => match d.published() {
                    // Unchanged since it was published.
                    Some(h) => vec![(HASH, h.to_string()), (LOCAL, d.stat().0.to_string())],
                    // Being written: no hash yet.
                    None => vec![(LOCAL, d.stat().0.to_string())],
                },
            },
        })
    }

    pub(crate) fn getxattr_of(
        &self,
        ino: INodeNo,
        name: &std::ffi::OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let all = match self.xattrs(ino) {
            Ok(a) => a,
            Err(e) => return reply.error(e),
        };
        match all.iter().find(|(n, _)| std::ffi::OsStr::new(n) == name) {
            Some((_, v)) => answer(reply, v.as_bytes(), size),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    pub(crate) fn listxattr_of(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino) {
            Ok(all) => {
                let mut names = Vec::new();
                for (n, _) in all {
                    names.extend_from_slice(n.as_bytes());
                    names.push(0);
                }
                answer(reply, &names, size);
            }
            Err(e) => reply.error(e),
        }
    }
}

/// The size when asked for it (`size` 0), the value if it fits, ERANGE
/// otherwise.
fn answer(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}
