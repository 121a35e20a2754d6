//! Direct I/O (`O_DIRECT`): data files read and written without the page
//! cache, from aligned buffers (see `DESIGN.md`, "The data path").

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

/// The alignment direct I/O needs (of offsets, lengths and memory): the
/// page size, a multiple of any disk's logical block.
pub(crate) const ALIGN: usize = 4096;

/// Makes `backing` hold `len` bytes starting at an aligned address and
/// returns where they start in it.
pub(crate) fn aligned(backing: &mut Vec<u8>, len: usize) -> usize {
    backing.resize(len + ALIGN, 0);
    backing.as_ptr().align_offset(ALIGN).min(ALIGN)
}

/// Opens `path` for direct reads, or writes with `write`.
pub(crate) fn open(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
}

/// Whether `e` says the file system refuses this direct I/O (then it goes
/// through the page cache).
pub(crate) fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error())
}
