//! The `fuser::Filesystem` glue, and the only place that talks to fuser's
//! reply objects: each kernel request goes to the operation that handles
//! it, which returns `Result<_, Errno>` or an [`Answer`]. Local work (the
//! store, the page cache) is done on the calling thread; an answer that
//! waits on the network or on a room write is sent from a tokio task.

use std::{ffi::OsStr, io, sync::Arc, time::Duration};

use fuser::{
    Errno, FileHandle, Filesystem, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::{
    answer::{Answer, Created, Opened, Xattr},
    file::Handle,
    fs::{Fs, attr_ttl, ttl},
};

/// Bytes per read and write request (the kernel's `max_pages` follows).
pub(crate) const MAX_IO: u32 = 1 << 20;

/// The filesystem as fuser sees it.
#[derive(Debug)]
pub(crate) struct Kernel(pub(crate) Arc<Fs>);

impl Kernel {
    /// Sends `answer` with `send`: now, or from a task once its work is
    /// done.
    fn answer<T: Send + 'static>(
        &self,
        answer: Answer<T>,
        send: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        match answer {
            Answer::Now(r) => send(r),
            Answer::Later(work) => {
                self.0.rt.spawn(async move { send(work.await) });
            }
        }
    }

    /// Answers with a new name's attributes.
    fn entry(&self, answer: Answer<fuser::FileAttr>, reply: ReplyEntry) {
        self.answer(answer, move |r| match r {
            Ok(a) => reply.entry(&attr_ttl(&a), &a, fuser::Generation(0)),
            Err(e) => reply.error(e),
        });
    }

    /// Answers with nothing but success.
    fn empty(&self, answer: Answer<()>, reply: ReplyEmpty) {
        self.answer(answer, move |r| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        });
    }

    /// Answers with `ino`'s attributes once `answer` is done.
    fn attr(&self, ino: INodeNo, answer: Answer<()>, reply: ReplyAttr) {
        let fs = self.0.clone();
        self.answer(answer, move |r| match r.and_then(|()| fs.shown(ino)) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        });
    }

    fn opened(&self, answer: Answer<Opened>, reply: ReplyOpen) {
        self.answer(answer, move |r| match r {
            Ok(o) => reply.opened(FileHandle(o.fh), o.flags),
            Err(e) => reply.error(e),
        });
    }

    fn data(&self, answer: Answer<Vec<u8>>, reply: ReplyData) {
        self.answer(answer, move |r| match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        });
    }

    fn xattr(r: Result<Xattr, Errno>, reply: ReplyXattr) {
        match r {
            Ok(Xattr::Size(n)) => reply.size(n),
            Ok(Xattr::Data(d)) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for Kernel {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_IO) {
            let _ = config.set_max_readahead(max);
        }
        for cap in [
            InitFlags::FUSE_MAX_PAGES,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // `ls -l` gets names and attributes in one request per batch.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            // `open(O_TRUNC)` comes as one request: a separate truncation
            // by path would look like a change to a closed file, which is
            // published at once (an empty version for everyone).
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            let _ = config.add_capabilities(cap);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let _ = config.set_time_granularity(Duration::from_nanos(1));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.lookup_name(parent, name) {
            Ok(attr) => {
                let ttl = self
                    .0
                    .place(attr.ino)
                    .map_or(Duration::ZERO, |p| ttl(&p, &attr));
                reply.entry(&ttl, &attr, fuser::Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.shown(ino) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let Some(done) = self.0.setattr_local(ino, mode, uid, gid, atime, mtime) {
            return match done {
                Ok(attr) => reply.attr(&attr_ttl(&attr), &attr),
                Err(e) => reply.error(e),
            };
        }
        if let Some(Err(e)) = self.0.chown(ino, uid, gid) {
            return reply.error(e);
        }
        let set = crate::write::SetAttr::of(mode, atime, mtime);
        let done = self.0.setattr_ino(ino, size, set, fh, req.pid());
        self.attr(ino, done, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let made = self
            .0
            .mknod_name(parent, name, mode, rdev, req.uid(), req.gid(), req.pid());
        self.entry(made.into(), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        self.0.own_new(parent, link_name, req.uid(), req.gid());
        self.entry(self.0.symlink_name(parent, link_name, target), reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.link_target(ino) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.entry(self.0.link_ino(ino, newparent, newname), reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.0.own_new(parent, name, req.uid(), req.gid());
        self.entry(self.0.mkdir_name(parent, name, mode), reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(self.0.unlink_name(parent, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(self.0.rmdir_name(parent, name), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let done = self.0.rename_name(parent, name, newparent, newname, flags);
        self.empty(done, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.opened(self.0.open_ino(ino, flags.0, req.pid()), reply);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let h = match self.0.handles.get(fh.0) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let data = match &*h {
            Handle::Blob(b) => self.0.read_blob(b, offset, size, req.pid()),
            Handle::Write(wh) => {
                let mut buf = vec![0u8; size as usize];
                Answer::Now(match wh.file.read(self.0.node.store(), offset, &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Err(e) => Err(crate::fs::store_errno(&e)),
                })
            }
            Handle::Chat(c) => self.0.read_chat(&c.room, offset, size).into(),
            Handle::Dir(_) => Answer::Now(Err(Errno::EISDIR)),
        };
        self.data(data, reply);
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = match self.0.handles.get(fh.0) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let written = match &*h {
            Handle::Write(wh) => self.0.write_file(wh, offset, data, req.pid()).into(),
            Handle::Chat(c) => self.0.write_chat(c, offset, data),
            Handle::Blob(_) | Handle::Dir(_) => Answer::Now(Err(Errno::EBADF)),
        };
        self.answer(written, move |r| match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let h = match self.0.handles.get(fh.0) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let done = match &*h {
            Handle::Write(wh) => self.0.flush_file(wh.file.clone(), req.pid()).into(),
            Handle::Chat(c) => self.0.flush_chat(c),
            Handle::Blob(_) | Handle::Dir(_) => Answer::Now(Ok(())),
        };
        self.empty(done, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _ = (ino, datasync);
        let done = match self.0.handles.get(fh.0).as_deref() {
            Ok(Handle::Write(wh)) => self.0.fsync_file(wh),
            Ok(_) => Answer::Now(Ok(())),
            Err(e) => Answer::Now(Err(*e)),
        };
        self.empty(done, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.0.handles.remove(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let done = match &*h {
            Handle::Write(wh) => self.0.release_file(wh).into(),
            Handle::Chat(c) => self.0.flush_chat(c),
            Handle::Blob(_) | Handle::Dir(_) => Answer::Now(Ok(())),
        };
        self.empty(done, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.list(ino) {
            Ok(entries) => {
                let fh = self.0.handles.add(Handle::Dir(entries));
                reply.opened(FileHandle(fh), fuser::FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = match self.0.handles.get(fh.0) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir(entries) = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let h = match self.0.handles.get(fh.0) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        let Handle::Dir(entries) = &*h else {
            return reply.error(Errno::ENOTDIR);
        };
        for (i, (ino, _, name)) in entries.iter().enumerate().skip(offset as usize) {
            // A name gone since `opendir` is left out.
            let Ok(place) = self.0.place(*ino) else {
                continue;
            };
            let Ok(attr) = self.0.attr_of(*ino, &place) else {
                continue;
            };
            if reply.add(
                *ino,
                i as u64 + 1,
                name,
                &ttl(&place, &attr),
                &attr,
                fuser::Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.0.handles.remove(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(self.0.node.store().path()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                crate::dir::NAME_MAX as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        Self::xattr(self.0.getxattr_of(ino, name, size), reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        Self::xattr(self.0.listxattr_of(ino, size), reply);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.empty(self.0.setxattr_of(ino, name, value), reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.empty(self.0.removexattr_of(ino, name), reply);
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let done = match self.0.handles.get(fh.0).as_deref() {
            Ok(Handle::Write(wh)) => self.0.fallocate_file(wh, offset, length, mode, req.pid()),
            Ok(_) => Err(Errno::EBADF),
            Err(e) => Err(*e),
        };
        self.empty(done.into(), reply);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.0.own_new(parent, name, req.uid(), req.gid());
        match self.0.create_file(parent, name, mode, req.pid()) {
            Ok(Created { attr, opened }) => reply.created(
                &attr_ttl(&attr),
                &attr,
                fuser::Generation(0),
                FileHandle(opened.fh),
                opened.flags,
            ),
            Err(e) => reply.error(e),
        }
    }
}
