//! A room's `chat.log`: reading shows the rendered chat; writing at its
//! end posts one message per line. Writes elsewhere and truncation fail
//! with EPERM, so bytes once shown never change. Opened with direct I/O,
//! so every read and `stat` sees new messages at once (`tail -f`).

use std::sync::{Arc, Mutex};

use fuser::{Errno, ReplyData, ReplyEmpty, ReplyWrite};
use p2pfs_proto::RoomId;
use p2pfs_swarm::room::query;

use crate::fs::{Fs, lock, store_errno, swarm_errno};

/// The most a partial line (no newline yet) may grow to.
const MAX_PENDING: usize = p2pfs_proto::room::MAX_TEXT;

/// An open `chat.log`.
#[derive(Debug)]
pub(crate) struct ChatHandle {
    pub(crate) room: RoomId,
    /// Opened with `O_APPEND`: every write goes at the end.
    pub(crate) append: bool,
    /// Bytes of a line not ended yet.
    pending: Mutex<Vec<u8>>,
}

impl ChatHandle {
    pub(crate) fn new(room: RoomId, append: bool) -> Self {
        Self {
            room,
            append,
            pending: Mutex::new(Vec::new()),
        }
    }
}

impl Fs {
    pub(crate) fn read_chat(&self, room: &RoomId, offset: u64, size: u32, reply: ReplyData) {
        match query::chat_read(self.node.store(), room, offset, size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(store_errno(&e)),
        }
    }

    /// A write: accepted at the end of the chat (or anywhere with
    /// `O_APPEND`); complete lines are posted before the reply.
    pub(crate) fn write_chat(
        self: &Arc<Self>,
        h: &ChatHandle,
        offset: u64,
        data: &[u8],
        reply: ReplyWrite,
    ) {
        if !h.append {
            let size = match query::chat_size(self.node.store(), &h.room) {
                Ok(s) => s,
                Err(e) => return reply.error(store_errno(&e)),
            };
            let pending = lock(&h.pending).len() as u64;
            if offset != size + pending {
                return reply.error(Errno::EPERM);
            }
        }
        let text = {
            let mut pending = lock(&h.pending);
            pending.extend_from_slice(data);
            match pending.iter().rposition(|b| *b == b'\n') {
                Some(i) => {
                    let rest = pending.split_off(i + 1);
                    std::mem::replace(&mut *pending, rest)
                }
                None if pending.len() > MAX_PENDING => {
                    let keep = pending.len() - data.len();
                    pending.truncate(keep);
                    return reply.error(Errno::EFBIG);
                }
                None => return reply.written(data.len() as u32),
            }
        };
        let n = data.len() as u32;
        self.post_chat(h.room, text, move |r| match r {
            Ok(()) => reply.written(n),
            Err(e) => reply.error(e),
        });
    }

    /// `flush`: a line left without its newline is posted.
    pub(crate) fn flush_chat(self: &Arc<Self>, h: &ChatHandle, reply: ReplyEmpty) {
        let text = std::mem::take(&mut *lock(&h.pending));
        if text.is_empty() {
            return reply.ok();
        }
        self.post_chat(h.room, text, move |r| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    fn post_chat(
        self: &Arc<Self>,
        room: RoomId,
        text: Vec<u8>,
        done: impl FnOnce(Result<(), Errno>) + Send + 'static,
    ) {
        let fs = self.clone();
        self.rt.spawn(async move {
            let Ok(text) = String::from_utf8(text) else {
                return done(Err(Errno::EINVAL));
            };
            let r = match fs.room(&room) {
                Ok(r) => r,
                Err(e) => return done(Err(e)),
            };
            done(fs.node.chat(&r, &text).await.map(|_| ()).map_err(|e| {
                tracing::warn!("posting to the chat: {e}");
                match e {
                    p2pfs_swarm::SwarmError::Room(_) => Errno::EINVAL,
                    e => swarm_errno(&e),
                }
            }));
        });
    }
}
