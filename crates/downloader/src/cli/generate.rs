//! `downloader completions` and `downloader man`: shell completion scripts and roff man pages,
//! generated from the clap definitions in [`crate::cli::args`] so they never drift from the
//! flags the binary accepts.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::args::{Cli, CompletionsArgs, ManArgs};
use crate::cli::{EXIT_IO, Failure};

/// The name the scripts complete and the pages describe: the installed binary's.
const BIN_NAME: &str = "downloader";

/// Prints the completion script for `args.shell` on stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<ExitCode, Failure> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, BIN_NAME, &mut script);
    print(&script)
}

/// Prints the main man page on stdout, or with `--dir` writes one page per command there.
pub(crate) fn man(args: &ManArgs) -> Result<ExitCode, Failure> {
    // `help` is clap's own subcommand, not one of ours: no page for it.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let Some(dir) = &args.dir else {
        return print(&render(command)?);
    };
    std::fs::create_dir_all(dir).map_err(|error| Failure::io(dir, &error))?;
    let mut written = Vec::new();
    write_pages(command, dir, &mut written)?;
    let mut listing = String::new();
    for path in &written {
        listing.push_str(&path.display().to_string());
        listing.push('\n');
    }
    print(listing.as_bytes())
}

/// Writes the page of `command`, then those of its subcommands, depth first.
fn write_pages(
    command: clap::Command,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> Result<(), Failure> {
    let page = clap_mangen::Man::new(command.clone());
    let path = dir.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff)
        .map_err(|error| Failure::io(&path, &error))?;
    std::fs::write(&path, roff).map_err(|error| Failure::io(&path, &error))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    Ok(())
}

/// The roff source of the page of `command`.
fn render(command: clap::Command) -> Result<Vec<u8>, Failure> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut roff)
        .map_err(|error| stdout_failure(&error))?;
    Ok(roff)
}

/// Writes `bytes` to stdout. A closed pipe (`downloader man | head`) is success, as in ripgrep.
fn print(bytes: &[u8]) -> Result<ExitCode, Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(stdout_failure(&error)),
    }
}

fn stdout_failure(error: &io::Error) -> Failure {
    Failure {
        kind: "io".into(),
        message: format!("cannot write to stdout: {error}"),
        hint: None,
        exit_code: EXIT_IO,
    }
}
