//! `p2pfs ls`: the blobs in the store.

use std::io::Write;

use crate::control::{Request, Response};
use p2pfs_store::BlobState;

use crate::{cmd, output, session::Session};

pub(crate) async fn run(session: &Session, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let mut blobs = Vec::new();
    cmd::each(session, Request::List, |r| {
        if let Response::Blobs(b) = r {
            blobs.extend(b);
        }
        Ok(())
    })
    .await?;
    if json {
        return output::json(out, &blobs);
    }
    for b in &blobs {
        let state = match b.state {
            BlobState::Complete => "complete".to_string(),
            BlobState::Partial => {
                let pct = if b.size == 0 {
                    0.0
                } else {
                    100.0 * b.present as f64 / b.size as f64
                };
                format!("partial:{pct:.0}%")
            }
        };
        let pins = if b.pins.is_empty() {
            "-".to_string()
        } else {
            b.pins.join(",")
        };
        output::line(
            out,
            &format!("{}  {:>12}  {:<12}  {}", b.hash, b.size, state, pins),
        )?;
    }
    Ok(())
}
