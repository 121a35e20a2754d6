//! `p2pfs add` and `p2pfs share`: import files and print `HASH  PATH` lines
//! like b3sum (and tickets when asked).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::control::{AddItem, Request, Response};
use anyhow::{Context, bail};
use p2pfs_proto::Hash;

use crate::{cmd, output, session::Session};

/// Adds every path; returns false if any failed (each failure is reported
/// on stderr as it happens, and the others are still added). With
/// `tickets`, each `HASH  PATH` line is followed by a ticket line.
pub(crate) async fn run(
    session: &Session,
    paths: &[PathBuf],
    recursive: bool,
    no_pin: bool,
    tickets: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut items = Vec::new();
    let mut names = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            items.push(AddItem::Stdin);
            names.push(PathBuf::from("-"));
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect(path, recursive, &mut files) {
            crate::report(&e);
            ok = false;
        }
        for f in files {
            let abs = std::path::absolute(&f).with_context(|| format!("{}", f.display()))?;
            items.push(AddItem::Path(abs));
            names.push(f);
        }
    }
    if items.is_empty() {
        return Ok(ok);
    }
    let input: Option<Box<dyn std::io::Read + Send>> = items
        .iter()
        .any(|i| matches!(i, AddItem::Stdin))
        .then(|| Box::new(std::io::stdin()) as _);
    let mut rx = session
        .call(
            Request::Add {
                items,
                pin: !no_pin,
            },
            input,
        )
        .await?;
    let mut added: Vec<(Hash, &Path)> = Vec::new();
    loop {
        match cmd::next(&mut rx).await? {
            Response::Added { index, hash, .. } => {
                let name = names
                    .get(index as usize)
                    .map_or(Path::new("?"), |p| p.as_path());
                if tickets {
                    added.push((hash, name));
                } else {
                    output::line(out, &b3sum_line(&hash.to_string(), name))?;
                }
            }
            Response::ItemFailed { index, message } => {
                let name = names
                    .get(index as usize)
                    .map_or(Path::new("?"), |p| p.as_path());
                crate::report(&anyhow::anyhow!("{}: {message}", name.display()));
                ok = false;
            }
            Response::Done => break,
            _ => {}
        }
    }
    for (hash, name) in added {
        output::line(out, &b3sum_line(&hash.to_string(), name))?;
        let file_name = name
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| p2pfs_proto::ticket::valid_name(n))
            .map(str::to_string);
        output::line(out, &ticket(session, hash, file_name).await?)?;
    }
    Ok(ok)
}

/// `p2pfs share`: adds one file (pinned) and prints only its ticket.
pub(crate) async fn share(
    session: &Session,
    path: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        bail!(
            "{} is a directory: share files one at a time",
            path.display()
        );
    }
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    let request = Request::Add {
        items: vec![AddItem::Path(abs)],
        pin: true,
    };
    let mut hash = None;
    cmd::each(session, request, |r| {
        match r {
            Response::Added { hash: h, .. } => hash = Some(h),
            Response::ItemFailed { message, .. } => bail!("{}: {message}", path.display()),
            _ => {}
        }
        Ok(())
    })
    .await?;
    let hash = hash.context("the node added nothing")?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| p2pfs_proto::ticket::valid_name(n))
        .map(str::to_string);
    output::line(out, &ticket(session, hash, name).await?)?;
    Ok(())
}

/// A ticket for `hash` from the running (or a short-lived) node.
pub(crate) async fn ticket(
    session: &Session,
    hash: Hash,
    name: Option<String>,
) -> anyhow::Result<String> {
    let mut ticket = None;
    cmd::each(session, Request::Ticket { hash, name }, |r| {
        if let Response::Ticket(t) = r {
            ticket = Some(t);
        }
        Ok(())
    })
    .await?;
    ticket.context("the node returned no ticket")
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

/// `p2pfs export HASH FILE`: prints `HASH  FILE`.
pub(crate) async fn export(
    session: &Session,
    hash: Hash,
    file: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let path = std::path::absolute(file).with_context(|| format!("{}", file.display()))?;
    cmd::each(session, Request::Export { hash, path }, |r| {
        if let Response::Added { hash, .. } = r {
            output::line(out, &format!("{hash}  {}", file.display()))?;
        }
        Ok(())
    })
    .await
}

/// `p2pfs import FILE`: prints `HASH  FILE` per blob taken in.
pub(crate) async fn import(
    session: &Session,
    file: &Path,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let path = std::path::absolute(file).with_context(|| format!("{}", file.display()))?;
    cmd::each(session, Request::Import { path }, |r| {
        if let Response::Added { hash, .. } = r {
            output::line(out, &format!("{hash}  {}", file.display()))?;
        }
        Ok(())
    })
    .await
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
