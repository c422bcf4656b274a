//! The errors that stop the agent from starting (jobs never fail with these: a job always gets a
//! result).

use std::fmt;
use std::path::PathBuf;

/// Why the agent cannot start.
///
/// [`Error::kind`] is stable; the message names the setting and the problem in one line and
/// never holds a password, secret or key bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value that cannot work.
    Config {
        /// The setting as the user wrote it, with where it came from
        /// (`DOWNLOADER_MAX_JOBS (environment)`).
        setting: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A keystore or trust store named by the configuration does not load.
    Keystore {
        /// The setting that names it.
        setting: String,
        /// The file.
        path: PathBuf,
        /// What the keystore reader said.
        source: keystore::Error,
    },
    /// A file of the data directory cannot be read or written.
    DataDir {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        detail: String,
    },
    /// The listening socket cannot be bound.
    Bind {
        /// The address.
        address: String,
        /// What the operating system said.
        detail: String,
    },
    /// The TLS configuration of the job API cannot be built.
    Tls {
        /// What rustls said.
        detail: String,
    },
}

impl Error {
    /// A stable, machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config.invalid",
            Self::Keystore { .. } => "config.keystore",
            Self::DataDir { .. } => "config.data_dir",
            Self::Bind { .. } => "listen.bind",
            Self::Tls { .. } => "listen.tls",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::Config { .. } => "fix the setting (see docs/configuration.md)".into(),
            Self::Keystore { source, .. } => source.hint_in(&crate::api::words::SettingsWords),
            Self::DataDir { .. } => {
                "check the data directory's permissions, or set DOWNLOADER_DATA_DIR".into()
            }
            Self::Bind { .. } => {
                "another process may use the port: set DOWNLOADER_LISTEN or port".into()
            }
            Self::Tls { .. } => "check DOWNLOADER_TLS_KEYSTORE and its password".into(),
        }
    }

    pub(crate) fn config(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Config {
            setting: setting.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn data_dir(path: impl Into<PathBuf>, error: &std::io::Error) -> Self {
        Self::DataDir {
            path: path.into(),
            detail: error.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config { setting, problem } => write!(f, "{setting}: {problem}"),
            Self::Keystore {
                setting,
                path,
                source,
            } => write!(f, "{setting}: {}: {source}", path.display()),
            Self::DataDir { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::Bind { address, detail } => write!(f, "cannot listen on {address}: {detail}"),
            Self::Tls { detail } => write!(f, "job API TLS: {detail}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Keystore { source, .. } => Some(source),
            Self::Config { .. } | Self::DataDir { .. } | Self::Bind { .. } | Self::Tls { .. } => {
                None
            }
        }
    }
}
