//! The clap definitions: one field per flag, checked only for what the user typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// HTTP(S) requests for API tests and monitors, with mutual TLS that just works.
#[derive(Debug, Parser)]
#[command(name = "downloader", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Read, check and convert keystores (JKS, JCEKS, PKCS#12, PEM, DER).
    Keystore {
        #[command(subcommand)]
        command: KeystoreCommand,
    },
}

/// `downloader keystore ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KeystoreCommand {
    /// List the entries of a keystore with their certificates and lint findings.
    Inspect(InspectArgs),
    /// Convert a keystore (any format) to PEM or PKCS#12.
    Convert(ConvertArgs),
}

/// Which keystore to open and how.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The keystore, certificate or trust store file (format detected from its content).
    pub(crate) file: PathBuf,
    /// A separate private key file (PEM or DER) for a certificate FILE.
    #[arg(long, value_name = "KEY_FILE")]
    pub(crate) key: Option<PathBuf>,
    /// Store password.
    #[arg(long, group = "store_password_source")]
    pub(crate) password: Option<String>,
    /// Read the store password from this environment variable.
    #[arg(long, value_name = "VAR", group = "store_password_source")]
    pub(crate) password_env: Option<String>,
    /// Read the store password from this file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE", group = "store_password_source")]
    pub(crate) password_file: Option<PathBuf>,
    /// Key password, when it differs from the store password.
    #[arg(long, group = "key_password_source")]
    pub(crate) key_password: Option<String>,
    /// Read the key password from this environment variable.
    #[arg(long, value_name = "VAR", group = "key_password_source")]
    pub(crate) key_password_env: Option<String>,
    /// Only this entry (aliases are matched case-insensitively, as Java does).
    #[arg(long)]
    pub(crate) alias: Option<String>,
}

/// `downloader keystore inspect`
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Print stable JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `downloader keystore convert`
#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The output format.
    #[arg(long, value_enum)]
    pub(crate) to: OutputFormat,
    /// Where to write (created with mode 0600; an existing file needs --force).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// Password of the PKCS#12 output (default: the store password).
    #[arg(long, group = "out_password_source")]
    pub(crate) out_password: Option<String>,
    /// Read the output password from this environment variable.
    #[arg(long, value_name = "VAR", group = "out_password_source")]
    pub(crate) out_password_env: Option<String>,
    /// Alias of the entry in the PKCS#12 output (default: the source alias, else "client").
    #[arg(long)]
    pub(crate) out_alias: Option<String>,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Formats `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Certificate chain and unencrypted PKCS#8 key (or a CA bundle for a trust store).
    Pem,
    /// PKCS#12 with AES-256/PBKDF2 and an HMAC-SHA256 MAC.
    Pkcs12,
}
