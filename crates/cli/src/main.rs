//! `p2pfs`, the command-line interface.
//!
//! Every command prints its result on stdout and, on failure, one line
//! `error: …` on stderr with a non-zero exit status (1; 2 for usage errors).

mod args;
mod cmd;
mod config;
mod output;

use std::{io, process::ExitCode};

use clap::Parser;

use crate::args::{Cli, Command};

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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .init();
    match run(cli) {
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
fn run(cli: Cli) -> anyhow::Result<bool> {
    let data_dir = config::data_dir(cli.data_dir.as_deref())?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let store = config::open_store(&data_dir)?;
    match cli.command {
        Command::Add {
            paths,
            recursive,
            no_pin,
        } => cmd::add::run(&store, &paths, recursive, no_pin, &mut out),
        Command::Cat { hashes } => cmd::cat::run(&store, &hashes, &mut out).map(|()| true),
        Command::Ls { json } => cmd::ls::run(&store, json, &mut out).map(|()| true),
        Command::Pin { hashes } => cmd::pin::pin(&store, &hashes, &mut out).map(|()| true),
        Command::Unpin { hashes } => cmd::pin::unpin(&store, &hashes, &mut out).map(|()| true),
        Command::Gc { json } => cmd::gc::run(&store, json, &mut out).map(|()| true),
        Command::Verify { hashes } => cmd::verify::run(&store, &hashes, &mut out),
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
