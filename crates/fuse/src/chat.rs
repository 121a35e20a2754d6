//! A room's `chat.log`: reading shows the rendered chat; writing at its
//! end posts one message per line. Writes elsewhere and truncation fail
//! with EPERM, so bytes once shown never change. Opened with direct I/O,
//! so every read and `stat` sees new messages at once (`tail -f`).
//!
//! A line longer than [`MAX_TEXT`] bytes is refused whole, however its
//! bytes arrive: the write that makes it too long fails with `EMSGSIZE`,
//! nothing of it is posted, and what follows until its newline is dropped
//! (those writes fail the same way). Lines that are not UTF-8 fail with
//! `EINVAL`.

use std::sync::{Arc, Mutex};

use fuser::Errno;
use p2pfs_proto::RoomId;
use p2pfs_swarm::room::query;

use crate::{
    answer::Answer,
    fs::{Fs, lock, store_errno, swarm_errno},
};

use p2pfs_proto::room::MAX_TEXT;

/// An open `chat.log`.
#[derive(Debug)]
pub(crate) struct ChatHandle {
    pub(crate) room: RoomId,
    /// Opened with `O_APPEND`: every write goes at the end.
    pub(crate) append: bool,
    /// Bytes of a line not ended yet.
    pending: Mutex<Pending>,
}

/// What a handle holds of the line being written.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The line being written is over the limit: dropped up to its end.
    overlong: bool,
}

/// What a write to `chat.log` does.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// Keep the bytes (no line ended).
    Hold,
    /// Post these complete lines.
    Post(Vec<u8>),
    /// Refuse the write: a line is over the limit.
    TooLong,
}

impl Pending {
    /// Takes in `data`: complete lines to post, or a refusal.
    fn take(&mut self, mut data: &[u8]) -> Take {
        if self.overlong {
            // The rest of a refused line: dropped up to its newline.
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.overlong = false;
                    data = &data[i + 1..];
                }
                None => return Take::TooLong,
            }
        }
        let mut all = std::mem::take(&mut self.bytes);
        all.extend_from_slice(data);
        let (complete, rest) = match all.iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                let rest = all.split_off(i + 1);
                (all, rest)
            }
            None => (Vec::new(), all),
        };
        let too_long = |line: &[u8]| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() > MAX_TEXT
        };
        if complete.split(|b| *b == b'\n').any(too_long) {
            // (The bytes held before belonged to the refused line.)
            return Take::TooLong;
        }
        if rest.len() > MAX_TEXT {
            self.overlong = true;
            return Take::TooLong;
        }
        self.bytes = rest;
        if complete.is_empty() {
            Take::Hold
        } else {
            Take::Post(complete)
        }
    }
}

impl ChatHandle {
    pub(crate) fn new(room: RoomId, append: bool) -> Self {
        Self {
            room,
            append,
            pending: Mutex::new(Pending::default()),
        }
    }
}

impl Fs {
    pub(crate) fn read_chat(
        &self,
        room: &RoomId,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        query::chat_read(self.node.store(), room, offset, size as usize)
            .map_err(|e| store_errno(&e))
    }

    /// A write: accepted at the end of the chat (or anywhere with
    /// `O_APPEND`); complete lines are posted before the reply.
    pub(crate) fn write_chat(
        self: &Arc<Self>,
        h: &ChatHandle,
        offset: u64,
        data: &[u8],
    ) -> Answer<u32> {
        if !h.append {
            let size = match query::chat_size(self.node.store(), &h.room) {
                Ok(s) => s,
                Err(e) => return Answer::Now(Err(store_errno(&e))),
            };
            let pending = lock(&h.pending).bytes.len() as u64;
            if offset != size + pending {
                return Answer::Now(Err(Errno::EPERM));
            }
        }
        let n = data.len() as u32;
        let text = match lock(&h.pending).take(data) {
            Take::Hold => return Answer::Now(Ok(n)),
            Take::TooLong => return Answer::Now(Err(Errno::EMSGSIZE)),
            Take::Post(text) => text,
        };
        let post = self.clone().post_chat(h.room, text);
        Answer::later(async move { post.await.map(|()| n) })
    }

    /// `flush`: a line left without its newline is posted.
    pub(crate) fn flush_chat(self: &Arc<Self>, h: &ChatHandle) -> Answer<()> {
        let text = {
            let mut p = lock(&h.pending);
            p.overlong = false;
            std::mem::take(&mut p.bytes)
        };
        if text.is_empty() {
            return Answer::Now(Ok(()));
        }
        Answer::later(self.clone().post_chat(h.room, text))
    }

    async fn post_chat(self: Arc<Self>, room: RoomId, text: Vec<u8>) -> Result<(), Errno> {
        let text = String::from_utf8(text).map_err(|_| Errno::EINVAL)?;
        let r = self.room(&room)?;
        self.node.chat(&r, &text).await.map(|_| ()).map_err(|e| {
            tracing::warn!("posting to the chat: {e}");
            match e {
                p2pfs_swarm::SwarmError::Room(p2pfs_swarm::RoomError::LineTooLong) => {
                    Errno::EMSGSIZE
                }
                p2pfs_swarm::SwarmError::Room(_) => Errno::EINVAL,
                e => swarm_errno(&e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_is_refused_whole_however_it_arrives() {
        let long = vec![b'x'; MAX_TEXT + 1];
        let ok = vec![b'y'; MAX_TEXT];
        // In one write, with its newline.
        let mut p = Pending::default();
        assert_eq!(p.take(&[&long[..], b"\n"].concat()), Take::TooLong);
        assert!(p.bytes.is_empty() && !p.overlong);
        // In pieces: the piece that makes it too long fails, and so do the
        // rest up to the newline; nothing of it is held or posted.
        let mut p = Pending::default();
        assert_eq!(p.take(&long[..3000]), Take::Hold);
        assert_eq!(p.take(&long[3000..]), Take::TooLong);
        assert!(p.bytes.is_empty());
        assert_eq!(p.take(b"more"), Take::TooLong);
        assert_eq!(p.take(b"end\nnext\n"), Take::Post(b"next\n".to_vec()));
        // Exactly at the limit (a CR before the newline does not count).
        let mut p = Pending::default();
        let line = [&ok[..], b"\r\n"].concat();
        assert_eq!(p.take(&line), Take::Post(line.clone()));
        // A good line then a too-long one in one write: the write is
        // refused whole.
        let mut p = Pending::default();
        assert_eq!(p.take(&[b"hi\n", &long[..], b"\n"].concat()), Take::TooLong);
    }
}
