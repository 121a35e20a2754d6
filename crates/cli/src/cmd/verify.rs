//! `p2pfs verify`: re-read blobs and check them against their hashes.

use std::io::Write;

use crate::control::{Request, Response};
use p2pfs_proto::Hash;

use crate::{cmd, output, session::Session};

/// Returns false if any blob failed.
pub(crate) async fn run(
    session: &Session,
    hashes: &[Hash],
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let request = Request::Verify {
        hashes: hashes.to_vec(),
    };
    let mut ok = true;
    cmd::each(session, request, |r| {
        match r {
            Response::Verified { hash, error: None } => output::line(out, &format!("{hash}  OK"))?,
            Response::Verified {
                hash,
                error: Some(e),
            } => {
                ok = false;
                output::line(out, &format!("{hash}  FAILED: {e}"))?;
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    Ok(ok)
}
