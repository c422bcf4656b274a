//! The clap definitions: one field per flag, checked only for what the user typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cli::secret::{HeaderArg, SecretArg, UrlArg};

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
    /// Make one HTTP(S) request, with mutual TLS, timings and TLS facts (curl-like flags).
    Fetch(FetchArgs),
    /// Run the agent: the HTTPS job API (default https://127.0.0.1:8819/api/v1/jobs).
    Serve(ServeArgs),
    /// Send jobs (one JSON job, an array, or NDJSON) over AMQP or to an agent; print results
    /// as NDJSON and the counts on stderr.
    Submit(SubmitArgs),
    /// Exit 0 when the agent configured like `serve` answers GET /health (for container
    /// HEALTHCHECK and Kubernetes probes: no curl needed).
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script on stdout (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command into a directory.
    Man(ManArgs),
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
    pub(crate) password: Option<SecretArg>,
    /// Read the store password from this environment variable.
    #[arg(long, value_name = "VAR", group = "store_password_source")]
    pub(crate) password_env: Option<String>,
    /// Read the store password from this file (one trailing newline is ignored).
    #[arg(long, value_name = "FILE", group = "store_password_source")]
    pub(crate) password_file: Option<PathBuf>,
    /// Key password, when it differs from the store password.
    #[arg(long, group = "key_password_source")]
    pub(crate) key_password: Option<SecretArg>,
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
    pub(crate) out_password: Option<SecretArg>,
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

/// `downloader fetch URL`: one field per flag, as curl spells them where curl has them.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The URL (http:// or https://).
    pub(crate) url: UrlArg,
    /// The method (default GET, or POST when a body is given).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub(crate) method: Option<String>,
    /// A header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<HeaderArg>,
    /// The request body (`@FILE` reads a file).
    #[arg(short = 'd', long = "data", value_name = "DATA", group = "body_source")]
    pub(crate) data: Option<String>,
    /// Read the request body from a file.
    #[arg(long, value_name = "FILE", group = "body_source")]
    pub(crate) data_file: Option<PathBuf>,
    /// Client keystore (JKS, JCEKS, PKCS#12, PEM bundle) or certificate file (with --key).
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Keystore password.
    #[arg(long, value_name = "PASSWORD", group = "cert_password_source")]
    pub(crate) cert_password: Option<SecretArg>,
    /// Read the keystore password from this environment variable.
    #[arg(long, value_name = "VAR", group = "cert_password_source")]
    pub(crate) cert_password_env: Option<String>,
    /// Private key file for a --cert certificate (PEM or DER).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Password of the private key (encrypted PEM key, or a key password that differs).
    #[arg(long, value_name = "PASSWORD")]
    pub(crate) key_password: Option<SecretArg>,
    /// Which private-key entry of the keystore to use.
    #[arg(long, requires = "cert")]
    pub(crate) alias: Option<String>,
    /// Trust store for the server certificate, any format (PEM, DER, JKS, JCEKS, PKCS#12).
    #[arg(long, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,
    /// Password of the --cacert store.
    #[arg(long, value_name = "PASSWORD", requires = "cacert")]
    pub(crate) cacert_password: Option<SecretArg>,
    /// Which roots to trust (default: both with --cacert, else system).
    #[arg(long, value_enum)]
    pub(crate) trust: Option<TrustArg>,
    /// Do not verify the server certificate (a client certificate is still sent).
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,
    /// Connect to ADDR whenever the URL names HOST:PORT (repeatable).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub(crate) resolve: Vec<String>,
    /// The TLS server name to send and verify instead of the URL host.
    #[arg(long, value_name = "NAME")]
    pub(crate) sni: Option<String>,
    /// Lowest TLS version: 1.2 or 1.3.
    #[arg(long, value_name = "VERSION")]
    pub(crate) tls_min: Option<String>,
    /// Highest TLS version: 1.2 or 1.3.
    #[arg(long, value_name = "VERSION")]
    pub(crate) tls_max: Option<String>,
    /// Speak HTTP/1.1 only.
    #[arg(long = "http1.1", conflicts_with = "http2")]
    pub(crate) http1_1: bool,
    /// Speak HTTP/2 only.
    #[arg(long)]
    pub(crate) http2: bool,
    /// Limit for the whole request, in seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,
    /// Limit for the TCP connect and for the TLS handshake, in seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) connect_timeout: Option<f64>,
    /// Print the full result as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Exit non-zero (22) when the HTTP status is 400 or more.
    #[arg(long)]
    pub(crate) fail: bool,
    /// Redirects, forms and proxies (boxed: they would make every command as large).
    #[command(flatten)]
    pub(crate) http: Box<FetchHttpArgs>,
}

/// `downloader fetch` flags for redirects, forms and proxies.
#[derive(Debug, Args)]
pub(crate) struct FetchHttpArgs {
    /// A multipart/form-data field, NAME=VALUE, or a file upload NAME=@FILE[;type=MIME]
    /// (repeatable; makes the request a POST).
    #[arg(
        short = 'F',
        long = "form",
        value_name = "NAME=VALUE",
        conflicts_with = "body_source"
    )]
    pub(crate) form: Vec<String>,
    /// Follow redirects for any method (GET and HEAD follow by default).
    #[arg(short = 'L', long = "location", conflicts_with = "no_follow")]
    pub(crate) location: bool,
    /// Do not follow redirects, not even for GET.
    #[arg(long)]
    pub(crate) no_follow: bool,
    /// The most redirects followed (default 10).
    #[arg(long, value_name = "N")]
    pub(crate) max_redirects: Option<u32>,
    /// An HTTP proxy, http://[USER:PASSWORD@]HOST:PORT (default: HTTPS_PROXY / HTTP_PROXY
    /// with NO_PROXY; an empty value disables them).
    #[arg(short = 'x', long, value_name = "URL")]
    pub(crate) proxy: Option<UrlArg>,
    /// Proxy credentials, USER:PASSWORD (Basic).
    #[arg(short = 'U', long, value_name = "USER:PASSWORD")]
    pub(crate) proxy_user: Option<SecretArg>,
    /// Refuse connections to these CIDRs, addresses or host patterns, comma-separated
    /// (repeatable); turns the egress policy on, with its default denies.
    #[arg(long, value_name = "LIST")]
    pub(crate) egress_deny: Vec<String>,
    /// Allow these despite the egress policy's default denies (never over --egress-deny);
    /// turns the policy on.
    #[arg(long, value_name = "LIST")]
    pub(crate) egress_allow: Vec<String>,
}

/// `--trust` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TrustArg {
    /// The operating system's roots.
    System,
    /// Only --cacert.
    Custom,
    /// Both.
    Both,
}

/// `downloader healthcheck`: reads the same settings as `serve` to find the agent.
#[derive(Debug, Args)]
pub(crate) struct HealthcheckArgs {
    /// The TOML configuration file the agent was started with (also DOWNLOADER_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The agent's base URL, instead of finding it from the configuration.
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub(crate) timeout: f64,
    /// Print nothing, only set the exit code.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// `downloader serve`: flags beat environment variables, which beat the config file.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The TOML configuration file (also DOWNLOADER_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Listen address, ADDRESS:PORT (also DOWNLOADER_LISTEN; default 127.0.0.1:8819).
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub(crate) listen: Option<String>,
    /// Listen port only (also `port`).
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Where the generated identity and credentials live (also DOWNLOADER_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A directory job keystores must live in (repeatable; also DOWNLOADER_CERT_DIRS).
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub(crate) cert_dirs: Vec<PathBuf>,
    /// Log format: text or json (also DOWNLOADER_LOG_FORMAT).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
    /// Jobs that run at once (also DOWNLOADER_MAX_JOBS).
    #[arg(long, value_name = "N")]
    pub(crate) max_jobs: Option<usize>,
    /// Accepted jobs that may wait before new ones get 503 (also DOWNLOADER_QUEUE_LIMIT).
    #[arg(long, value_name = "N")]
    pub(crate) queue_limit: Option<usize>,
    /// Check the configuration (loading every keystore and trust store) and exit.
    #[arg(long)]
    pub(crate) check: bool,
}

/// `downloader submit`: one of `--amqp` or `--agent`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["amqp", "agent"])))]
pub(crate) struct SubmitArgs {
    /// The jobs: one JSON job, a JSON array of jobs, or NDJSON (`-` reads stdin).
    pub(crate) file: PathBuf,
    /// The broker: amqp://user:password@host:5672/%2f (or amqps://...).
    #[arg(long, value_name = "URL")]
    pub(crate) amqp: Option<UrlArg>,
    /// The job queue (with --amqp).
    #[arg(long, default_value = agent::amqp::DEFAULT_QUEUE)]
    pub(crate) queue: String,
    /// A named durable reply queue instead of an exclusive one; survives broker restarts
    /// (with --amqp).
    #[arg(long, value_name = "NAME")]
    pub(crate) reply_queue: Option<String>,
    /// A passive agent: https://host:8819.
    #[arg(long, value_name = "URL")]
    pub(crate) agent: Option<String>,
    /// The agent's apikey (with --agent).
    #[arg(long, env = "DOWNLOADER_APIKEY", requires = "agent")]
    pub(crate) apikey: Option<String>,
    /// The agent's secret (with --agent).
    #[arg(
        long,
        env = "DOWNLOADER_SECRET",
        hide_env_values = true,
        requires = "agent"
    )]
    pub(crate) secret: Option<SecretArg>,
    /// CA certificates (PEM) that verify the agent or an amqps broker.
    #[arg(long, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,
    /// Do not verify the agent's certificate.
    #[arg(long, requires = "agent")]
    pub(crate) insecure: bool,
    /// Seconds to wait for all results.
    #[arg(long, default_value_t = 300.0)]
    pub(crate) timeout: f64,
    /// At most N jobs outstanding at once (default: all; with --agent, jobs per request).
    /// `--window 1` sends one job at a time, to measure per-job latency.
    #[arg(long, value_name = "N")]
    pub(crate) window: Option<usize>,
}

/// `downloader completions SHELL`
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `downloader man`
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write downloader.1 and one page per subcommand (downloader-serve.1, ...) into DIR
    /// (created when missing) and print their paths, instead of the main page on stdout.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}
