//! Files written for the user at a path they chose (`fetch -o`, `room get
//! -o`, exports).
//!
//! A regular file, or a new path, is written beside its destination as
//! `NAME.p2pfs-partial` and renamed into place once complete: a command
//! that fails leaves what was there before (and no partial file). Anything
//! else that exists (a device such as `/dev/null`, a fifo) is written
//! directly, never replaced or removed.

use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// An output file being written; see the module docs.
#[derive(Debug)]
pub struct OutputFile {
    file: io::BufWriter<File>,
    dest: PathBuf,
    /// Where the bytes go until [`OutputFile::finish`], for a regular file.
    partial: Option<PathBuf>,
}

impl OutputFile {
    /// Starts writing `dest`.
    pub fn create(dest: &Path) -> io::Result<Self> {
        let special = std::fs::metadata(dest).is_ok_and(|m| !m.is_file());
        let partial = (!special).then(|| {
            let mut p = dest.as_os_str().to_owned();
            p.push(".p2pfs-partial");
            PathBuf::from(p)
        });
        let target = partial.as_deref().unwrap_or(dest);
        let file = if special {
            std::fs::OpenOptions::new().write(true).open(target)
        } else {
            File::create(target)
        }
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", target.display())))?;
        Ok(Self {
            file: io::BufWriter::with_capacity(1 << 20, file),
            dest: dest.to_path_buf(),
            partial,
        })
    }

    /// Writes out what is buffered (and, with `sync`, to the disk) and
    /// puts the file in place.
    pub fn finish(mut self, sync: bool) -> io::Result<()> {
        let written = self.file.flush().and_then(|()| match sync {
            true => self.file.get_ref().sync_all(),
            false => Ok(()),
        });
        if let Err(e) = written {
            self.abandon();
            return Err(e);
        }
        if let Some(p) = self.partial.take() {
            std::fs::rename(&p, &self.dest)?;
        }
        Ok(())
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Gives up: removes the partial file, leaving the destination as it was.
    pub fn abandon(&mut self) {
        if let Some(p) = self.partial.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        // Neither finished nor abandoned (an error on the way out).
        self.abandon();
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_replaced_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        std::fs::write(&dest, b"before").unwrap();
        let mut f = OutputFile::create(&dest).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            b"before",
            "a failure keeps it"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no partial file"
        );
        let mut f = OutputFile::create(&dest).unwrap();
        f.write_all(b"after").unwrap();
        f.finish(false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"after");
    }

    #[test]
    fn a_device_is_written_and_never_replaced() {
        let null = Path::new("/dev/null");
        let mut f = OutputFile::create(null).unwrap();
        f.write_all(b"gone").unwrap();
        drop(f);
        let mut f = OutputFile::create(null).unwrap();
        f.write_all(b"gone").unwrap();
        f.finish(false).unwrap();
        let m = std::fs::metadata(null).unwrap();
        assert!(!m.is_file(), "/dev/null is still a device");
    }
}
