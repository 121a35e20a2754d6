//! `p2pfs pin` and `p2pfs unpin`.

use std::io::Write;

use crate::control::{Request, Response};
use p2pfs_proto::Hash;

use crate::{cmd, output, session::Session};

pub(crate) async fn pin(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let request = Request::Pin {
        hashes: hashes.to_vec(),
    };
    run(session, request, out, |r| match r {
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
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let request = Request::Unpin {
        hashes: hashes.to_vec(),
    };
    run(session, request, out, |r| match r {
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
