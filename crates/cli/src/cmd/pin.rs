//! `p2pfs pin` and `p2pfs unpin`.

use std::io::Write;

use crate::control::{Request, Response};
use p2pfs_proto::Hash;

use crate::{cmd, output, params::Blobs, session::Session};

pub(crate) async fn pin(
    session: &Session,
    blobs: Blobs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    run(session, Request::Pin(blobs), out, |r| match r {
        Response::Pinned { hash, present } => Some((
            hash,
            if present {
                "pinned"
            } else {
                "pinned (not in the local store yet)"
            },
        )),
        _ => None,
    })
    .await
}

pub(crate) async fn unpin(
    session: &Session,
    blobs: Blobs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    run(session, Request::Unpin(blobs), out, |r| match r {
        Response::Unpinned { hash, existed } => Some((
            hash,
            if existed {
                "unpinned"
            } else {
                "was not pinned"
            },
        )),
        _ => None,
    })
    .await
}

/// Sends `request` and prints `HASH  NOTE` for each answer `line` maps.
async fn run(
    session: &Session,
    request: Request,
    out: &mut impl Write,
    line: impl Fn(Response) -> Option<(Hash, &'static str)>,
) -> anyhow::Result<()> {
    cmd::each(session, request, |r| {
        if let Some((hash, note)) = line(r) {
            output::line(out, &format!("{hash}  {note}"))?;
        }
        Ok(())
    })
    .await
}
