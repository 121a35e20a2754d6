//! `p2pfs add`: import files and print `HASH  PATH` lines like b3sum.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use p2pfs_store::{Store, USER_PIN};

use crate::output;

/// Adds every path; returns false if any failed (each failure is reported
/// on stderr as it happens, and the others are still added).
pub(crate) fn run(
    store: &Store,
    paths: &[PathBuf],
    recursive: bool,
    no_pin: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let pin = (!no_pin).then_some(USER_PIN);
    let mut ok = true;
    for path in paths {
        if path.as_os_str() == "-" {
            let stdin = std::io::stdin().lock();
            let imported = store.import_reader(stdin, "standard input", pin)?;
            output::line(out, &format!("{}  -", imported.hash))?;
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect(path, recursive, &mut files) {
            crate::report(&e);
            ok = false;
        }
        for file in files {
            match store.import_file(&file, pin) {
                Ok(imported) => output::line(out, &b3sum_line(&imported.hash.to_string(), &file))?,
                Err(e @ p2pfs_store::StoreError::NoSpace { .. }) => return Err(e.into()),
                Err(e) => {
                    crate::report(&anyhow::Error::new(e));
                    ok = false;
                }
            }
        }
    }
    Ok(ok)
}

/// Lists the files to add under `path`, in a stable (sorted) order.
fn collect(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !recursive {
        bail!(
            "{} is a directory (use --recursive to add its files)",
            path.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", path.display()))?;
    entries.sort();
    for entry in entries {
        // Symbolic links to directories are not followed (no loops).
        let is_link = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && entry.is_dir() {
            continue;
        }
        collect(&entry, true, out)?;
    }
    Ok(())
}

/// Formats a line exactly as `b3sum` does, escaping `\` and newlines in the
/// path and marking such lines with a leading `\`.
fn b3sum_line(hash: &str, path: &Path) -> String {
    let name = path.to_string_lossy();
    if name.contains(['\\', '\n', '\r']) {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{hash}  {escaped}")
    } else {
        format!("{hash}  {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_b3sum() {
        assert_eq!(b3sum_line("ab", Path::new("x y")), "ab  x y");
        assert_eq!(b3sum_line("ab", Path::new("a\nb")), "\\ab  a\\nb");
        assert_eq!(b3sum_line("ab", Path::new("a\\b")), "\\ab  a\\\\b");
    }
}
