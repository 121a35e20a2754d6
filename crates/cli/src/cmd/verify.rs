//! `p2pfs verify`: re-read blobs and check them against their hashes.

use std::io::Write;

use p2pfs_proto::Hash;
use p2pfs_swarm::control::{Request, Response};

use crate::{cmd, output, session::Session};

/// Returns false if any blob failed.
pub(crate) async fn run(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut rx = session
        .call(
            Request::Verify {
                hashes: hashes.to_vec(),
            },
            None,
        )
        .await?;
    let mut ok = true;
    loop {
        match cmd::next(&mut rx).await? {
            Response::Verified { hash, error: None } => output::line(out, &format!("{hash}  OK"))?,
            Response::Verified {
                hash,
                error: Some(e),
            } => {
                ok = false;
                output::line(out, &format!("{hash}  FAILED: {e}"))?;
            }
            Response::Done => return Ok(ok),
            _ => {}
        }
    }
}
