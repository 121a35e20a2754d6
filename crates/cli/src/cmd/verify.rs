//! `p2pfs verify`: re-read blobs and check them against their hashes.

use std::io::Write;

use crate::control::{Request, Response};

use crate::{cmd, output, params::VerifyBlobs, session::Session};

/// Returns false if any blob failed.
pub(crate) async fn run(
    session: &Session,
    blobs: VerifyBlobs,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let mut ok = true;
    cmd::each(session, Request::Verify(blobs), |r| {
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
