//! Command-line surface: arguments, the handlers that call the library crates, and output.

pub(crate) mod args;
pub(crate) mod fetch;
pub(crate) mod generate;
pub(crate) mod healthcheck;
pub(crate) mod keystore;
pub(crate) mod output;
pub(crate) mod secret;
pub(crate) mod serve;
pub(crate) mod submit;
mod words;

use std::fmt;

/// A command that failed: what the user sees on stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) exit_code: u8,
}

/// Exit code for failures of the work itself (a keystore that does not open, a failed request).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code for arguments that cannot work together (`EX_USAGE`).
pub(crate) const EXIT_USAGE: u8 = 64;
/// Exit code for files that cannot be read or written (`EX_IOERR`).
pub(crate) const EXIT_IO: u8 = 74;

impl Failure {
    /// A usage error: arguments that parse but make no sense together.
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self {
            kind: "usage".into(),
            message: message.to_string(),
            hint: Some("see --help".into()),
            exit_code: EXIT_USAGE,
        }
    }

    /// A file that could not be read or written.
    pub(crate) fn io(path: &std::path::Path, error: &std::io::Error) -> Self {
        Self {
            kind: "io".into(),
            message: format!("{}: {error}", path.display()),
            hint: None,
            exit_code: EXIT_IO,
        }
    }
}

impl From<::keystore::Error> for Failure {
    fn from(error: ::keystore::Error) -> Self {
        Self {
            kind: error.kind().into(),
            message: error.to_string(),
            hint: Some(error.hint_in(&words::KeystoreWords)),
            exit_code: EXIT_FAILURE,
        }
    }
}

/// Starts a tokio runtime: one thread for a one-shot command, the multi-threaded scheduler for
/// the long-running ones.
pub(crate) fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|error| Failure {
        kind: "internal".into(),
        message: format!("cannot start the runtime: {error}"),
        hint: None,
        exit_code: EXIT_FAILURE,
    })
}
