//! The `shmarrow` command: lifecycle and jobs over segments.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod dataset;
#[cfg(feature = "flight")]
mod flight;
mod fmt;
mod format;
mod parquet_pages;
mod signals;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr(), "shmarrow: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let dir = cli
        .dir
        .map_or_else(shmarrow::SegmentDir::from_env, shmarrow::SegmentDir::new)
        .validate(cli.validate.parse().map_err(anyhow::Error::msg)?);
    if writes_files(&cli.command) {
        signals::remove_temps_on_signals()?;
    }
    let out = &mut io::stdout().lock();
    let json = cli.json;
    match cli.command {
        Command::Demo(args) => cmd::demo::run(&dir, &args, out),
        Command::Import(args) => cmd::import::run(&dir, &args, json, out),
        Command::Ls => cmd::ls::run(&dir, json, out),
        Command::Create(args) => cmd::create::run(&dir, &args, json, out),
        Command::Export(args) => cmd::export::run(&dir, &args, json, out),
        Command::Head(args) => cmd::head::run(&dir, &args, json, out),
        Command::Df => cmd::df::run(&dir, json, out),
        Command::Inspect(args) => cmd::inspect::run(&dir, &args, json, out),
        Command::Rm(args) => cmd::rm::run(&dir, &args, json, out),
        Command::Gc(args) => cmd::gc::run(&dir, &args, json, out),
        Command::Reduce(args) => cmd::reduce::run(&dir, &args, json, out),
        Command::Map(args) => cmd::map::run(&dir, &args, json, out),
        Command::Produce(args) => cmd::produce::run(&dir, &args, json, out),
        Command::Consume(args) => cmd::consume::run(&dir, &args, json, out),
        Command::Worker(args) => cmd::worker::run(&dir, &args),
        #[cfg(feature = "flight")]
        Command::Serve(args) => cmd::serve::run(&dir, &args, json, out),
        #[cfg(feature = "flight")]
        Command::Pull(args) => cmd::pull::run(&dir, &args, json, out),
        #[cfg(feature = "flight")]
        Command::Push(args) => cmd::push::run(&dir, &args, json, out),
    }
}

/// The verbs that write a temp file and rename it into place.
fn writes_files(command: &Command) -> bool {
    match command {
        Command::Import(_) | Command::Create(_) | Command::Export(_) => true,
        #[cfg(feature = "flight")]
        Command::Pull(_) => true,
        _ => false,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
