//! The web page: started by `daemon` and `mount` (`--http`), and
//! `p2pfs web`, which prints the link that opens it logged in.
//!
//! The login token is kept in `DATA/web.token` (owner-only, made on first
//! use, the same across runs so a browser stays logged in); a running
//! node writes the page's address to `DATA/web.addr` and removes it when
//! it stops.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use p2pfs_swarm::Node;
use p2pfs_web::Token;
use tokio_util::sync::CancellationToken;

use crate::{args::Http, control, private};

const TOKEN_FILE: &str = "web.token";
const ADDR_FILE: &str = "web.addr";
/// How long a stopping page waits for the answers under way.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The page's token: the one kept, or a new one saved for next time.
fn token(data_dir: &Path) -> anyhow::Result<Token> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            if let Some(t) = Token::parse(&s) {
                return Ok(t);
            }
            eprintln!(
                "warning: {} is not a token: making a new one",
                path.display()
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let t = Token::generate()?;
    // Replaced whole: a file made by hand may have loose permissions.
    let _ = std::fs::remove_file(&path);
    private::write(&path, format!("{}\n", t.as_str()).as_bytes())
        .with_context(|| format!("saving {}", path.display()))?;
    Ok(t)
}

/// The page of a running node; stops it and forgets its address on
/// [`Page::stop`].
#[derive(Debug)]
pub(crate) struct Page {
    server: p2pfs_web::Server,
    cancel: CancellationToken,
    addr_file: PathBuf,
}

impl Page {
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.server.stopped(STOP_WAIT).await;
        let _ = std::fs::remove_file(&self.addr_file);
    }
}

/// Starts the page for `node` as `--http` says. A page that cannot start
/// (its port is taken) is reported, and the node runs without it.
pub(crate) async fn start(node: &Node, data_dir: &Path, http: Http) -> Option<Page> {
    let addr_file = data_dir.join(ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);
    let Http::At(addr) = http else {
        return None;
    };
    let token = match token(data_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warning: the web page is off: {e:#}");
            return None;
        }
    };
    let cancel = CancellationToken::new();
    let config = p2pfs_web::Config { addr, token };
    let server = match p2pfs_web::serve(node.clone(), config, cancel.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: {e}: the web page is off (another address: --http IP:PORT; none: --http off)"
            );
            return None;
        }
    };
    if let Err(e) = private::write(&addr_file, format!("{}\n", server.addr()).as_bytes()) {
        eprintln!("warning: saving {}: {e}", addr_file.display());
    }
    eprintln!(
        "web page at {} (`p2pfs web` prints its login link)",
        server.base()
    );
    if !server.addr().ip().is_loopback() {
        eprintln!(
            "warning: the web page listens on {}, which other machines may reach: \
             every request to it needs the login token",
            server.addr()
        );
    }
    Some(Page {
        server,
        cancel,
        addr_file,
    })
}

/// `p2pfs web`: the running node's page, as a link that logs in.
pub(crate) async fn print_link(
    data_dir: &Path,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    if control::Client::connect(&data_dir.join(control::SOCKET))
        .await
        .is_none()
    {
        bail!(
            "no p2pfs node is running for {}: the web page is served by `p2pfs mount` and `p2pfs daemon`",
            data_dir.display()
        );
    }
    let addr: SocketAddr = match std::fs::read_to_string(data_dir.join(ADDR_FILE)) {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("reading {}", data_dir.join(ADDR_FILE).display()))?,
        Err(_) => bail!(
            "the running node serves no web page (it was started with --http off, or its address was taken)"
        ),
    };
    let token = token(data_dir)?;
    crate::output::line(
        out,
        &format!(
            "{}/login?token={}",
            p2pfs_web::base_url(addr),
            token.as_str()
        ),
    )?;
    Ok(())
}
