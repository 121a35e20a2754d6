//! `p2pfs cat`: write blobs to standard output.

use std::io::Write;

use crate::control::{Request, Response};
use anyhow::Context;
use p2pfs_proto::Hash;

use crate::{cmd, session::Session};

pub(crate) async fn run(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for hash in hashes {
        write_blob(session, *hash, out).await?;
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}

/// Writes one blob to `out`: straight from the store when it is ours (the
/// kernel copies), else streamed from the running node.
pub(crate) async fn write_blob(
    session: &Session,
    hash: Hash,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if let Some(store) = session.local_store() {
        let mut reader = store.reader(&hash)?;
        reader
            .copy_to(out)
            .with_context(|| format!("writing blob {hash}"))?;
        return Ok(());
    }
    cmd::each(session, Request::Cat { hash }, |r| {
        if let Response::Data(bytes) = r {
            out.write_all(&bytes)
                .with_context(|| format!("writing blob {hash}"))?;
        }
        Ok(())
    })
    .await
}
