//! `p2pfs pin` and `p2pfs unpin`.

use std::io::Write;

use p2pfs_proto::Hash;
use p2pfs_swarm::control::{Request, Response};

use crate::{cmd, output, session::Session};

pub(crate) async fn pin(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut rx = session
        .call(
            Request::Pin {
                hashes: hashes.to_vec(),
            },
            None,
        )
        .await?;
    loop {
        match cmd::next(&mut rx).await? {
            Response::Pinned { hash, present } => {
                let note = if present {
                    "pinned"
                } else {
                    "pinned (not in the local store yet)"
                };
                output::line(out, &format!("{hash}  {note}"))?;
            }
            Response::Done => return Ok(()),
            _ => {}
        }
    }
}

pub(crate) async fn unpin(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut rx = session
        .call(
            Request::Unpin {
                hashes: hashes.to_vec(),
            },
            None,
        )
        .await?;
    loop {
        match cmd::next(&mut rx).await? {
            Response::Unpinned { hash, existed } => {
                let note = if existed {
                    "unpinned"
                } else {
                    "was not pinned"
                };
                output::line(out, &format!("{hash}  {note}"))?;
            }
            Response::Done => return Ok(()),
            _ => {}
        }
    }
}
