//! `p2pfs`, the command-line interface.
//!
//! Every command prints its result on stdout and, on failure, one line
//! `error: …` on stderr with a non-zero exit status (1; 2 for usage errors).
//! Commands run in the node already running for the data directory
//! (`p2pfs daemon`), through its control socket, or in this process when
//! none runs (see `session`).

mod api;
mod args;
mod cmd;
mod config;
mod control;
mod error;
mod output;
mod params;
mod private;
mod session;
mod turns;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{io, process::ExitCode};

use clap::Parser;

use crate::{
    args::{Cli, Command, RoomCommand},
    session::Session,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line, like every other error; `--help` explains the rest.
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P2PFS_LOG")
                // (A socket's send failing, "network unreachable" on a
                // machine with no network, is the dial's to report.)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,quinn_udp=error")),
        )
        .with_writer(io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` means it reported partial failure itself.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let data_dir = config::data_dir(cli.data_dir.as_deref())?;
    let who = format!("p2pfs {} (pid {})", cli.command.name(), std::process::id());
    let check = match cli.command {
        Command::Umount { .. } => None,
        Command::Daemon { .. } | Command::Mount { daemon: false, .. } => Some(private::Check::Full),
        _ => Some(private::Check::Quick),
    };
    if let Some(check) = check {
        private::prepare(&data_dir, check)?;
    }
    match cli.command {
        Command::Daemon { node } => {
            cmd::daemon::run(&data_dir, node, None, &who).await?;
            return Ok(true);
        }
        Command::Mount {
            mountpoint,
            daemon: true,
            ..
        } => {
            cmd::mount::background(&data_dir, &mountpoint).await?;
            return Ok(true);
        }
        Command::Mount {
            mountpoint,
            node,
            allow_other,
            ..
        } => {
            let at = p2pfs_fuse::MountOptions {
                mountpoint: mountpoint.clone(),
                allow_other,
            };
            cmd::daemon::run(&data_dir, node, Some(&at), &who).await?;
            return Ok(true);
        }
        Command::Umount { mountpoint, lazy } => {
            cmd::mount::umount(&data_dir, &mountpoint, lazy).await?;
            return Ok(true);
        }
        Command::Web => {
            cmd::web::print_link(&data_dir, &mut io::stdout().lock()).await?;
            return Ok(true);
        }
        _ => {}
    }
    // A fetch starts its node only if the blob is not here already.
    let needs_node = matches!(
        cli.command,
        Command::Status { .. }
            | Command::Share { .. }
            | Command::Room { .. }
            | Command::Chat { .. }
    ) || matches!(cli.command, Command::Add { ticket: true, .. });
    let session = Session::open(&data_dir, needs_node, &who).await?;
    let result = dispatch(&session, cli.command).await;
    session.close().await;
    result
}

async fn dispatch(session: &Session, command: Command) -> anyhow::Result<bool> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match command {
        Command::Add {
            paths,
            recursive,
            no_pin,
            ticket,
        } => cmd::add::run(session, &paths, recursive, no_pin, ticket, &mut out).await,
        Command::Export { hash, file } => cmd::add::export(session, hash, &file, &mut out)
            .await
            .map(|()| true),
        Command::Import { file } => cmd::add::import(session, &file, &mut out)
            .await
            .map(|()| true),
        Command::Share { path } => cmd::add::share(session, &path, &mut out)
            .await
            .map(|()| true),
        Command::Cat { hashes } => cmd::cat::run(session, &hashes, &mut out)
            .await
            .map(|()| true),
        Command::Fetch {
            output,
            fetch,
            verbose,
        } => {
            drop(out);
            cmd::fetch::run(session, fetch, output.as_deref(), verbose)
                .await
                .map(|()| true)
        }
        Command::Status { json } => cmd::status::run(session, json, &mut out)
            .await
            .map(|()| true),
        Command::Ls { json } => cmd::ls::run(session, json, &mut out).await.map(|()| true),
        Command::Pin(blobs) => cmd::pin::pin(session, blobs, &mut out).await.map(|()| true),
        Command::Unpin(blobs) => cmd::pin::unpin(session, blobs, &mut out)
            .await
            .map(|()| true),
        Command::Gc { json } => cmd::gc::run(session, json, &mut out).await.map(|()| true),
        Command::Verify(blobs) => cmd::verify::run(session, blobs, &mut out).await,
        Command::Room { command } => room(session, command, &mut out).await.map(|()| true),
        Command::Chat { room, text, follow } => {
            cmd::room::chat(session, &room, text, follow, &mut out)
                .await
                .map(|()| true)
        }
        Command::Daemon { .. } | Command::Mount { .. } | Command::Umount { .. } | Command::Web => {
            Ok(true)
        }
    }
}

async fn room(
    session: &Session,
    command: RoomCommand,
    out: &mut impl io::Write,
) -> anyhow::Result<()> {
    use cmd::room;
    match command {
        RoomCommand::Create(create) => room::create(session, create, out).await,
        RoomCommand::Join(join) => room::join(session, join, out).await,
        RoomCommand::List { json } => room::list(session, json, out).await,
        RoomCommand::Ticket(room) => room::ticket(session, room, out).await,
        RoomCommand::Leave(room) => room::leave(session, room).await,
        RoomCommand::Put(put) => room::put(session, put, out).await,
        RoomCommand::Get { file, output } => room::get(session, file, output, out).await,
        RoomCommand::Rm(file) => room::rm(session, file).await,
        RoomCommand::Ls { room, json } => room::ls(session, room, json, out).await,
        RoomCommand::Set(set) => room::set(session, set).await,
        RoomCommand::Status { room, json } => room::status(session, room, json, out).await,
        RoomCommand::Members { room, json } => room::members(session, room, json, out).await,
        RoomCommand::Promote(m) => room::set_role(session, m, true, out).await,
        RoomCommand::Demote(m) => room::set_role(session, m, false, out).await,
        RoomCommand::Remove(m) => room::remove(session, m, out).await,
        RoomCommand::Export(export) => room::export(session, export, out).await,
        RoomCommand::Import(import) => room::import(session, import, out).await,
        RoomCommand::Pin(file) => room::pin(session, file, true, out).await,
        RoomCommand::Unpin(file) => room::pin(session, file, false, out).await,
    }
}

/// Prints an error as one line on stderr, with its causes.
pub(crate) fn report(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
