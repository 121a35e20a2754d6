//! What an operation answers the kernel: at once (work done on the
//! calling thread: the store, the page cache), or once its work is done on
//! a task (the network, the room's log). Operations return these, as
//! `Result<_, Errno>`; only `kernel.rs` turns them into fuser replies.

use std::{future::Future, pin::Pin};

use fuser::{Errno, FileAttr, FopenFlags};

/// Work on a task, then its result.
pub(crate) type Work<T> = Pin<Box<dyn Future<Output = Result<T, Errno>> + Send + 'static>>;

/// An operation's answer.
pub(crate) enum Answer<T> {
    /// Ready now.
    Now(Result<T, Errno>),
    /// Ready when this work is done.
    Later(Work<T>),
}

impl<T> Answer<T> {
    /// The answer of `work`, done on a task.
    pub(crate) fn later(work: impl Future<Output = Result<T, Errno>> + Send + 'static) -> Self {
        Answer::Later(Box::pin(work))
    }

    /// The answer of checks done now, then (if they pass) work on a task.
    pub(crate) fn after(checked: Result<Work<T>, Errno>) -> Self {
        match checked {
            Ok(work) => Answer::Later(work),
            Err(e) => Answer::Now(Err(e)),
        }
    }
}

impl<T> From<Result<T, Errno>> for Answer<T> {
    fn from(r: Result<T, Errno>) -> Self {
        Answer::Now(r)
    }
}

/// A file opened: its handle and how the kernel may cache it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub(crate) fh: u64,
    pub(crate) flags: FopenFlags,
}

impl Opened {
    pub(crate) fn new(fh: u64) -> Self {
        Self {
            fh,
            flags: FopenFlags::empty(),
        }
    }
}

/// A file made and opened (`create`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Created {
    pub(crate) attr: FileAttr,
    pub(crate) opened: Opened,
}

/// An extended attribute's value, or the size it needs (asked with a
/// size of 0).
#[derive(Debug, Clone)]
pub(crate) enum Xattr {
    Size(u32),
    Data(Vec<u8>),
}

impl Xattr {
    /// `value` for a buffer of `size` bytes: its size if `size` is 0,
    /// `ERANGE` if it does not fit.
    pub(crate) fn of(value: &[u8], size: u32) -> Result<Self, Errno> {
        if size == 0 {
            Ok(Xattr::Size(value.len() as u32))
        } else if value.len() > size as usize {
            Err(Errno::ERANGE)
        } else {
            Ok(Xattr::Data(value.to_vec()))
        }
    }
}
