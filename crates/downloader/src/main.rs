//! `downloader`: the agent that performs HTTP(S) requests for API tests and monitors, with
//! mutual TLS that just works. This binary only parses arguments and prints results; the work
//! happens in the library crates.

#![forbid(unsafe_code)]

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::args::{Cli, Command, KeystoreCommand};
use crate::cli::{Failure, fetch, generate, healthcheck, keystore, serve, submit};

/// mimalloc returns freed memory to the system, so the agent's RSS follows its load back down
/// (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let usage = error.use_stderr();
            let _ = error.print();
            // Help and version go to stdout and succeed; bad usage exits 64 (EX_USAGE).
            return if usage {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(failure) => report(&failure),
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Keystore { command } => match command {
            KeystoreCommand::Inspect(args) => keystore::inspect(&args),
            KeystoreCommand::Convert(args) => keystore::convert(&args),
        },
        Command::Fetch(args) => fetch::fetch(args),
        Command::Serve(args) => serve::serve(args),
        Command::Submit(args) => submit::submit(args),
        Command::Healthcheck(args) => healthcheck::healthcheck(&args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
    }
}

/// Prints `error[kind]: message` and the hint on stderr, and picks the exit code.
fn report(failure: &Failure) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error[{}]: {}", failure.kind, failure.message);
    if let Some(hint) = &failure.hint {
        let _ = writeln!(stderr, "  hint: {hint}");
    }
    ExitCode::from(failure.exit_code)
}
