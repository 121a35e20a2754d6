//! One module per subcommand.

pub(crate) mod add;
pub(crate) mod cat;
pub(crate) mod daemon;
pub(crate) mod fetch;
pub(crate) mod gc;
pub(crate) mod ls;
pub(crate) mod pin;
pub(crate) mod status;
pub(crate) mod verify;

use anyhow::anyhow;
use p2pfs_swarm::control::Response;
use tokio::sync::mpsc;

/// The next response, or an error if the command failed or the stream ended.
pub(crate) async fn next(rx: &mut mpsc::Receiver<Response>) -> anyhow::Result<Response> {
    match rx.recv().await {
        Some(Response::Error(m)) => Err(anyhow!(m)),
        Some(r) => Ok(r),
        None => Err(anyhow!("the command ended without an answer")),
    }
}
