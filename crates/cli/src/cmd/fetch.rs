//! `p2pfs fetch`: download a blob from its providers, verified, into the
//! store, and write it out.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use p2pfs_proto::Hash;
use p2pfs_store::OutputFile;
use p2pfs_swarm::FetchStats;

use crate::{
    cmd,
    control::{Request, Response},
    output,
    params::FetchBlob,
    session::Session,
};

/// Where the bytes go.
pub(crate) enum Output {
    Stdout,
    File(PathBuf),
}

pub(crate) async fn run(
    session: &Session,
    fetch: FetchBlob,
    output: Option<&Path>,
    verbose: bool,
) -> anyhow::Result<()> {
    let (hash, ticket) = fetch.target()?;
    let name = ticket.and_then(|t| t.name);
    let dest = match output {
        Some(p) if p.as_os_str() == "-" => Output::Stdout,
        Some(p) => Output::File(p.to_path_buf()),
        None => {
            let p = PathBuf::from(name.unwrap_or_else(|| hash.to_string()));
            if p.exists() {
                bail!("{} exists: choose where to write with -o PATH", p.display());
            }
            Output::File(p)
        }
    };
    if let Some(store) = session.local_store() {
        let (stats, path) = follow(session, store, fetch, hash, dest).await?;
        report(hash, &stats, &path, verbose);
        return Ok(());
    }
    let stats = download(session, fetch).await?;
    let report = |path: &Path| report(hash, &stats, path, verbose);
    match dest {
        Output::Stdout => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            cmd::cat::write_blob(session, hash, &mut out).await?;
            out.flush().context("writing to standard output")?;
            report(Path::new("standard output"));
        }
        Output::File(path) => {
            // Like cp, the copy is left to the kernel to write back (no
            // fsync): the store's copy is the durable one, and fetching
            // again rewrites this file from it at once.
            let mut f = OutputFile::create(&path)?;
            cmd::cat::write_blob(session, hash, &mut f)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
            output::finish(f)?;
            report(&path);
        }
    }
    Ok(())
}

/// With the node in this process: downloads while writing the output as
/// the bytes arrive (in order), so the copy costs no time after the
/// download. A file it created and left incomplete (the download failed)
/// is removed.
async fn follow(
    session: &Session,
    store: &p2pfs_store::Store,
    fetch: FetchBlob,
    hash: Hash,
    dest: Output,
) -> anyhow::Result<(FetchStats, PathBuf)> {
    let (mut out, path) = match &dest {
        Output::Stdout => (
            Sink::Stdout(std::io::stdout()),
            PathBuf::from("standard output"),
        ),
        Output::File(p) => (Sink::File(OutputFile::create(p)?), p.clone()),
    };
    let s = store.clone();
    let partial = tokio::task::spawn_blocking(move || s.partial(hash)).await??;
    let ended = Arc::new(AtomicBool::new(false));
    let follower = {
        let (store, ended) = (store.clone(), ended.clone());
        tokio::task::spawn_blocking(move || {
            let copied = store.follow(&partial, &mut out, || ended.load(Ordering::Acquire));
            (copied, out)
        })
    };
    let downloaded = download(session, fetch).await;
    ended.store(true, Ordering::Release);
    let (copied, out) = follower.await?;
    // Dropped unfinished on an error: a file that was there stays as it was.
    let stats = downloaded?;
    copied.with_context(|| format!("writing {}", path.display()))?;
    out.finish()?;
    Ok((stats, path))
}

/// Where [`follow`] writes.
enum Sink {
    Stdout(std::io::Stdout),
    File(OutputFile),
}

impl Sink {
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(mut s) => s.flush().context("writing to standard output"),
            Sink::File(f) => output::finish(f),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// The summary line on a terminal or with `-v`; with `-v`, what each
/// provider sent.
fn report(hash: Hash, stats: &FetchStats, path: &Path, verbose: bool) {
    if verbose || std::io::stderr().is_terminal() {
        eprintln!("{}", summary(hash, stats, path));
    }
    if verbose {
        for (id, bytes) in &stats.providers {
            eprintln!("  {id}  {bytes} bytes");
        }
    }
}

fn summary(hash: Hash, stats: &FetchStats, path: &Path) -> String {
    if stats.received == 0 {
        return format!(
            "{} was already here; wrote {}",
            hash.fmt_short(),
            path.display()
        );
    }
    let secs = stats.elapsed.as_secs_f64().max(0.001);
    format!(
        "fetched {} ({}) in {:.1} s, {}/s from {} provider(s); wrote {}",
        hash.fmt_short(),
        output::human_bytes(stats.size),
        secs,
        output::human_bytes((stats.received as f64 / secs) as u64),
        stats.providers.iter().filter(|p| p.1 > 0).count(),
        path.display()
    )
}

/// Runs the download, with a progress bar on a terminal.
async fn download(session: &Session, fetch: FetchBlob) -> anyhow::Result<FetchStats> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message("connecting");
        Some(bar)
    } else {
        None
    };
    let mut rx = session.call(Request::Fetch(fetch), None).await?;
    let result = loop {
        match cmd::next(&mut rx).await {
            Ok(Response::Progress(p)) => {
                if let Some(bar) = &bar {
                    if let Some(size) = p.size {
                        bar.set_length(size);
                    }
                    bar.set_position(p.present);
                    bar.set_message(format!(
                        "{} peer{}",
                        p.peers,
                        if p.peers == 1 { "" } else { "s" }
                    ));
                }
            }
            Ok(Response::Fetched(stats)) => break Ok(stats),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}
