//! One module per subcommand.

pub(crate) mod add;
pub(crate) mod cat;
pub(crate) mod daemon;
pub(crate) mod fetch;
pub(crate) mod gc;
pub(crate) mod ls;
pub(crate) mod mount;
pub(crate) mod pin;
pub(crate) mod room;
pub(crate) mod status;
pub(crate) mod verify;
pub(crate) mod web;

use crate::control::{Request, Response};
use anyhow::anyhow;
use tokio::sync::mpsc;

use crate::session::Session;

/// Sends `request` and hands every response to `f` until the command is
/// done (an error response ends it with that error).
pub(crate) async fn each(
    session: &Session,
    request: Request,
    mut f: impl FnMut(Response) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut rx = session.call(request, None).await?;
    loop {
        match next(&mut rx).await? {
            Response::Done => return Ok(()),
            r => f(r)?,
        }
    }
}

/// The next response, or an error if the command failed or the stream ended.
pub(crate) async fn next(rx: &mut mpsc::Receiver<Response>) -> anyhow::Result<Response> {
    match rx.recv().await {
        Some(Response::Error(m)) => Err(anyhow!(m)),
        Some(r) => Ok(r),
        None => Err(anyhow!("the command ended without an answer")),
    }
}
