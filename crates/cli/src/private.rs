//! The data directory is private: created 0700, every file in it 0600.
//!
//! It holds the node's key, every room's secret and chat (in
//! `store/meta.redb`) and what was shared in private rooms: nobody but its
//! owner may read any of it. Everything p2pfs creates there is created
//! owner-only whatever the umask (`mode` at `open`/`mkdir`); a directory
//! made by an older p2pfs, or loosened by hand, is tightened when a
//! command opens it, with a warning naming what changed.

use std::{
    fs::{DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;

/// Mode of the data directory and every directory in it.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Paths named in the warning; the rest are counted.
const NAMED: usize = 5;

/// How much of an existing data directory to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Everything, at any depth (a node starting: it runs for long).
    Full,
    /// The directory, what is in it and in `store/`; everything if the
    /// directory itself was open to others (it was made before p2pfs kept
    /// it private, or loosened by hand).
    Quick,
}

/// Creates the data directory (0700, parents too) or tightens an existing
/// one, warning on stderr about what was tightened.
pub(crate) fn prepare(dir: &Path, check: Check) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("reading the data directory {}", dir.display())),
        Ok(_) => {
            let report = tighten(dir, check);
            if let Some(line) = report.warning(dir) {
                eprintln!("warning: {line}");
            }
            Ok(())
        }
    }
}

/// Writes `contents` to `path`, created owner-only.
pub(crate) fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    create(path)?.write_all(contents)
}

/// Creates (or truncates) `path`, owner-only.
pub(crate) fn create(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// What [`tighten`] changed and could not change.
#[derive(Debug, Default)]
struct Report {
    /// Path, old mode, new mode.
    changed: Vec<(PathBuf, u32, u32)>,
    failed: Vec<String>,
}

impl Report {
    /// One line for stderr, if anything was (or should have been) changed.
    fn warning(&self, dir: &Path) -> Option<String> {
        if self.changed.is_empty() && self.failed.is_empty() {
            return None;
        }
        let mut line = String::new();
        if !self.changed.is_empty() {
            let named: Vec<String> = self
                .changed
                .iter()
                .take(NAMED)
                .map(|(p, old, new)| {
                    let rel = p.strip_prefix(dir).unwrap_or(p);
                    let rel = if rel.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        rel
                    };
                    format!("{} {old:04o}→{new:04o}", rel.display())
                })
                .collect();
            let more = self.changed.len().saturating_sub(NAMED);
            line = format!(
                "others could read the data directory {}; made owner-only: {}{}",
                dir.display(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        if !self.failed.is_empty() {
            if !line.is_empty() {
                line.push_str("; ");
            }
            line.push_str(&format!(
                "could not make owner-only: {}",
                self.failed.join(", ")
            ));
        }
        Some(line)
    }
}

/// Removes the group's and others' access to `dir` and what it holds
/// (files also lose the owner's execute bit). Symbolic links are left
/// alone and not followed.
fn tighten(dir: &Path, check: Check) -> Report {
    let mut report = Report::default();
    fix(dir, &mut report);
    let open = !report.changed.is_empty();
    let mut todo: Vec<(PathBuf, bool)> = vec![(dir.to_path_buf(), true)];
    let everything = check == Check::Full || open;
    while let Some((d, top)) = todo.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                report.failed.push(format!("{} ({e})", d.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = fix(&path, &mut report);
            if is_dir && (everything || (top && entry.file_name() == "store")) {
                todo.push((path, false));
            }
        }
    }
    report
}

/// Tightens one path; returns whether it is a directory (not a link).
fn fix(path: &Path, report: &mut Report) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if meta.file_type().is_symlink() {
        return false;
    }
    let mode = meta.permissions().mode() & 0o7777;
    let want = if meta.is_dir() {
        mode & !0o077
    } else {
        mode & !0o177
    };
    if want != mode {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)) {
            Ok(()) => report.changed.push((path.to_path_buf(), mode, want)),
            Err(e) => report.failed.push(format!("{} ({e})", path.display())),
        }
    }
    meta.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn a_new_directory_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/p2pfs");
        prepare(&dir, Check::Quick).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&tmp.path().join("a")), DIR_MODE);
        write(&dir.join("name"), b"x\n").unwrap();
        assert_eq!(mode(&dir.join("name")), FILE_MODE);
    }

    #[test]
    fn a_loose_directory_is_tightened_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p2pfs");
        let deep = dir.join("store/data/x");
        std::fs::create_dir_all(&deep).unwrap();
        let files = [
            dir.join("node.key"),
            dir.join("store/meta.redb"),
            deep.join("f"),
        ];
        for f in &files {
            std::fs::write(f, b"secret").unwrap();
            chmod(f, 0o755);
        }
        for d in [&dir, &dir.join("store"), &dir.join("store/data"), &deep] {
            chmod(d, 0o755);
        }
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let report = tighten(&dir, Check::Quick);
        for f in &files {
            assert_eq!(mode(f), FILE_MODE, "{}", f.display());
        }
        assert_eq!(mode(&deep), DIR_MODE);
        assert_eq!(mode(Path::new("/etc/hostname")) & 0o044, 0o044);
        assert_eq!(report.changed.len(), 7);
        let line = report.warning(&dir).unwrap();
        assert!(
            line.contains(". 0755→0700") && line.contains("and 2 more"),
            "{line}"
        );
        // Nothing left to do: no warning.
        assert!(tighten(&dir, Check::Quick).warning(&dir).is_none());
    }

    #[test]
    fn a_quick_check_of_a_private_directory_stays_shallow() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p2pfs");
        std::fs::create_dir_all(dir.join("store/data")).unwrap();
        let deep = dir.join("store/data/f");
        std::fs::write(&deep, b"x").unwrap();
        chmod(&deep, 0o644);
        std::fs::write(dir.join("port"), b"1").unwrap();
        chmod(&dir.join("port"), 0o644);
        chmod(&dir, 0o700);
        tighten(&dir, Check::Quick);
        assert_eq!(mode(&dir.join("port")), FILE_MODE);
        assert_eq!(mode(&dir.join("store/data")), DIR_MODE);
        assert_eq!(mode(&deep), 0o644);
        tighten(&dir, Check::Full);
        assert_eq!(mode(&deep), FILE_MODE);
    }
}
