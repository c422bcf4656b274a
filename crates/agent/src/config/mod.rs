//! The agent's configuration: a TOML file, environment variables and flags, with precedence
//! flags > environment > file > defaults. The reference system's names (`apikey`, `secret`,
//! `port`, `use_http`, `use_ssl`, `use_rabbit`, `rabbit*`, `disable_ssl_validation`,
//! `client_cert_configuration`, `proxy_configuration`) are accepted as they are; new settings
//! are `DOWNLOADER_*` in the environment and the same name in lower case without the prefix in
//! the file.
//!
//! Loading checks every value and that named directories exist; it never binds a port. Keystores
//! are loaded afterwards, by [`crate::Agent::build`].

mod client_certs;
mod credentials;
mod egress;
mod job_limits;
mod limits;
mod listen;
mod reference;
mod source;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use engine::TrustMode;
use keystore::Password;

pub use client_certs::HostRule;
pub use credentials::Credentials;
pub use engine::HostPattern;
pub use job_limits::JobLimits;
pub use limits::Limits;
pub use reference::CertRef;
pub use source::{Environment, Flags, Source, read_setting_file};

pub use crate::amqp::Rabbit;

use client_certs::parse_default_cert;
pub(crate) use reference::{ClientCertJson, secret_text};
use source::{Origin, Value};

use crate::error::Error;

/// The default job API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8819";
/// The job API's port when the listen address names none.
pub const DEFAULT_PORT: u16 = 8819;
/// The default number of jobs that run at once.
pub const DEFAULT_MAX_JOBS: usize = 1024;
/// The default number of accepted jobs that may wait for a slot.
pub const DEFAULT_QUEUE_LIMIT: usize = 4096;
/// The default request and response body limit: 50 MiB.
pub const DEFAULT_MAX_BODY: u64 = 50 * 1024 * 1024;

/// New settings: environment name and file key.
const NEW_SETTINGS: &[&str] = &[
    "LISTEN",
    "DATA_DIR",
    "CERT_DIRS",
    "TRUST_STORE",
    "TRUST_STORE_PASSWORD",
    "TRUST_MODE",
    "TLS_KEYSTORE",
    "TLS_KEYSTORE_PASSWORD",
    "TLS_KEY_ALIAS",
    "ENGINE_CLIENT_CA",
    "MAX_JOBS",
    "QUEUE_LIMIT",
    "MAX_BODY",
    "MAX_KDF_ITERATIONS",
    "MAX_KDF_MEMORY",
    "LOG_FORMAT",
    "SHUTDOWN_GRACE",
    "RABBIT_QUEUE",
    "RABBIT_VHOST",
    "RABBIT_PREFETCH",
    "RABBIT_DEAD_LETTER_EXCHANGE",
    "RABBIT_QUEUE_TYPE",
    "RABBIT_MAX_REDELIVERIES",
    // The job API server's and one API request's limits (`limits.rs`).
    "HEADER_TIMEOUT",
    "TLS_HANDSHAKE_TIMEOUT",
    "IDLE_TIMEOUT",
    "H2_KEEPALIVE_INTERVAL",
    "H2_KEEPALIVE_TIMEOUT",
    "H2_MAX_STREAMS",
    "MAX_CONNECTIONS",
    "MAX_BATCH",
    "MAX_REQUEST_RESULT_BYTES",
    // Per-job input caps (`job_limits.rs`).
    "MAX_TEMPLATE_OUTPUT",
    "MAX_HEADERS",
    "MAX_PARAMS",
    "MAX_PARTS",
    // The egress policy of jobs (`egress.rs`).
    "EGRESS_DENY",
    "EGRESS_ALLOW",
];

/// The reference system's names, the same in the environment and the file.
const REFERENCE_SETTINGS: &[&str] = &[
    "apikey",
    "secret",
    "port",
    "use_http",
    "use_ssl",
    "use_rabbit",
    "rabbitHost",
    "rabbitPort",
    "rabbitSsl",
    "rabbitUsername",
    "rabbitPassword",
    "disable_ssl_validation",
    "client_cert_configuration",
    "proxy_configuration",
    "serviceName",
    // A JVM heap setting of the reference system: accepted and ignored, with a notice.
    "java_opts",
];

/// The complete, checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the job API listens.
    pub listen: SocketAddr,
    /// Where the generated identity and credentials live.
    pub data_dir: PathBuf,
    /// Directories job-named keystores must resolve into (canonical paths).
    pub cert_dirs: Vec<PathBuf>,
    /// The downloader-wide trust store (file or directory).
    pub trust_store: Option<PathBuf>,
    /// Its password.
    pub trust_store_password: Option<Password>,
    /// Which roots verify servers.
    pub trust_mode: TrustMode,
    /// The agent's own TLS identity; generated in the data directory when absent.
    pub tls_keystore: Option<CertRef>,
    /// CAs whose client certificates the job API requires (mutual TLS engine → agent).
    pub engine_client_ca: Option<PathBuf>,
    /// Jobs that run at once.
    pub max_jobs: usize,
    /// Accepted jobs that may wait; beyond, new jobs get 503.
    pub queue_limit: usize,
    /// The largest job request body, and the default response body limit of a job.
    pub max_body: u64,
    /// Caps on the key-derivation work of every keystore and trust store the agent opens
    /// (`DOWNLOADER_MAX_KDF_ITERATIONS`, `DOWNLOADER_MAX_KDF_MEMORY`): `keystore.too_costly`.
    pub kdf_limits: keystore::Limits,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// The engine's credentials; generated in the data directory when absent.
    pub credentials: Option<Credentials>,
    /// Whether the job API runs (passive mode).
    pub use_http: bool,
    /// Whether the job API speaks HTTPS.
    pub use_ssl: bool,
    /// Skip server verification for every job that does not say otherwise.
    pub disable_ssl_validation: bool,
    /// The downloader-wide client certificate.
    pub default_cert: Option<CertRef>,
    /// Per-host client certificate rules, in file order.
    pub client_certs: Vec<HostRule>,
    /// The same, as the engine applies them (per request and per redirect hop).
    pub proxy_rules: engine::ProxyRules,
    /// How long in-flight jobs may run after SIGTERM/SIGINT (`DOWNLOADER_SHUTDOWN_GRACE`,
    /// seconds; default 30).
    pub shutdown_grace: std::time::Duration,
    /// Active mode (`use_rabbit=true`): consume jobs from RabbitMQ.
    pub rabbit: Option<Rabbit>,
    /// Timeouts and caps of the job API server and of one API request.
    pub limits: Limits,
    /// Caps on what one job may contain (`request.too_large` above them).
    pub job_limits: JobLimits,
    /// The egress policy every job is checked against (`DOWNLOADER_EGRESS_DENY`,
    /// `DOWNLOADER_EGRESS_ALLOW`, and the default denies, the agent's own address included).
    pub egress: std::sync::Arc<engine::EgressPolicy>,
    /// One-line notices for the operator: settings accepted but without effect (`java_opts`).
    pub notices: Vec<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The values of the file, environment and flags, before checking.
struct Lookup<'a> {
    env: &'a dyn Source,
    file: toml::Table,
}

impl Config {
    /// Reads and checks the configuration. Fails with one error naming the setting.
    pub fn load(flags: &Flags, env: &dyn Source) -> Result<Self, Error> {
        let file_path = flags
            .config
            .clone()
            .or_else(|| env.var("DOWNLOADER_CONFIG").map(PathBuf::from));
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        let lookup = Lookup { env, file };
        lookup.check_file_keys()?;
        lookup.build(flags)
    }

    /// A configuration with every default and the given credentials: for tests and embedding.
    pub fn defaults(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8819)),
            data_dir,
            cert_dirs: Vec::new(),
            trust_store: None,
            trust_store_password: None,
            trust_mode: TrustMode::System,
            tls_keystore: None,
            engine_client_ca: None,
            max_jobs: DEFAULT_MAX_JOBS,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            max_body: DEFAULT_MAX_BODY,
            kdf_limits: keystore::Limits::default(),
            log_format: LogFormat::Text,
            credentials: None,
            use_http: true,
            use_ssl: true,
            disable_ssl_validation: false,
            default_cert: None,
            client_certs: Vec::new(),
            proxy_rules: engine::ProxyRules::default(),
            shutdown_grace: std::time::Duration::from_secs(30),
            rabbit: None,
            limits: Limits::default(),
            job_limits: JobLimits::default(),
            egress: std::sync::Arc::default(),
            notices: Vec::new(),
        }
    }
}

fn read_file(path: &Path) -> Result<toml::Table, Error> {
    let setting = || format!("--config {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|error| Error::config(setting(), format!("cannot read: {error}")))?;
    text.parse::<toml::Table>().map_err(|error| {
        let message = error.message().to_owned();
        Error::config(setting(), format!("not valid TOML: {message}"))
    })
}

impl Lookup<'_> {
    fn check_file_keys(&self) -> Result<(), Error> {
        for key in self.file.keys() {
            let known = key == "client_certs"
                || REFERENCE_SETTINGS.contains(&key.as_str())
                || NEW_SETTINGS
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(key) && key.to_ascii_lowercase() == *key);
            if !known {
                let mut names: Vec<String> = NEW_SETTINGS
                    .iter()
                    .map(|name| name.to_ascii_lowercase())
                    .collect();
                names.extend(REFERENCE_SETTINGS.iter().map(|name| (*name).to_owned()));
                names.push("client_certs".into());
                return Err(Error::config(
                    format!("{key} (config file)"),
                    format!("unknown setting; known settings: {}", names.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// A new setting (`DOWNLOADER_<NAME>` / `<name>`), from the environment or the file.
    fn new_setting(&self, name: &str) -> Result<Option<Value>, Error> {
        if let Some(value) = self.env_value(&format!("DOWNLOADER_{name}"))? {
            return Ok(Some(value));
        }
        self.file_value(&name.to_ascii_lowercase())
    }

    /// A reference setting, same name in the environment and the file.
    fn reference(&self, name: &str) -> Result<Option<Value>, Error> {
        if let Some(value) = self.env_value(name)? {
            return Ok(Some(value));
        }
        self.file_value(name)
    }

    /// `NAME` from the environment, or the content of the file named by `NAME_FILE` (Docker
    /// and Kubernetes secrets; one trailing newline is not part of the value). Both set is an
    /// error: which one was meant cannot be guessed.
    fn env_value(&self, name: &str) -> Result<Option<Value>, Error> {
        let file_name = format!("{name}_FILE");
        match (self.env.var(name), self.env.var(&file_name)) {
            (Some(_), Some(_)) => Err(Error::config(
                format!("{name} (environment)"),
                format!("is set and so is {file_name}: give one of them"),
            )),
            (Some(text), None) => Ok(Some(Value {
                text,
                origin: Origin::Environment,
                setting: format!("{name} (environment)"),
            })),
            (None, Some(path)) => {
                let setting = format!("{file_name} (environment)");
                let text = read_setting_file(Path::new(&path))
                    .map_err(|problem| Error::config(setting.clone(), problem))?;
                Ok(Some(Value {
                    text,
                    origin: Origin::Environment,
                    setting,
                }))
            }
            (None, None) => Ok(None),
        }
    }

    fn file_value(&self, key: &str) -> Result<Option<Value>, Error> {
        let Some(value) = self.file.get(key) else {
            return Ok(None);
        };
        let setting = format!("{key} (config file)");
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) if key == "cert_dirs" => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(text) => parts.push(text.to_owned()),
                        None => {
                            return Err(Error::config(setting, "must be a list of directories"));
                        }
                    }
                }
                parts.join(":")
            }
            toml::Value::Table(_) => serde_json::to_string(value)
                .map_err(|error| Error::config(setting.clone(), error.to_string()))?,
            _ => return Err(Error::config(setting, "has an unsupported type")),
        };
        Ok(Some(Value {
            text,
            origin: Origin::File,
            setting,
        }))
    }

    fn build(&self, flags: &Flags) -> Result<Config, Error> {
        let home = self.env.var("HOME");
        let data_dir = match flags.data_dir.clone() {
            Some(dir) => dir,
            None => match self.new_setting("DATA_DIR")? {
                Some(value) => PathBuf::from(value.text),
                None => default_data_dir(self.env.var("XDG_DATA_HOME"), home)?,
            },
        };
        let mut config = Config::defaults(data_dir);
        config.listen = self.listen(flags)?;
        config.cert_dirs = self.cert_dirs(flags)?;
        self.trust(&mut config)?;
        self.capacity(flags, &mut config)?;
        config.kdf_limits = self.kdf_limits(config.kdf_limits)?;
        let log_format = match flags.log_format.clone() {
            Some(text) => Some(Value::flag("log-format", text)),
            None => self.new_setting("LOG_FORMAT")?,
        };
        if let Some(value) = log_format {
            config.log_format = match value.text.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(Error::config(value.setting, "must be text or json")),
            };
        }
        config.credentials = self.credentials()?;
        self.modes(&mut config)?;
        config.client_certs = self.host_rules()?;
        config.limits = self.limits()?;
        config.job_limits = self.job_limits()?;
        config.egress = self.egress()?;
        config.shutdown_grace = self.seconds("SHUTDOWN_GRACE", config.shutdown_grace, true)?;
        if let Some(value) = self.reference("java_opts")? {
            config.notices.push(format!(
                "{} is ignored: it sets the reference system's JVM heap, and downloader has no \
                 JVM (DOWNLOADER_MAX_JOBS and DOWNLOADER_MAX_BODY bound its memory)",
                value.setting
            ));
        }
        Ok(config)
    }

    /// The downloader-wide trust store and mode, the agent's own TLS keystore and the CA that
    /// verifies engine clients.
    fn trust(&self, config: &mut Config) -> Result<(), Error> {
        if let Some(value) = self.new_setting("TRUST_STORE")? {
            let path = PathBuf::from(&value.text);
            if !path.exists() {
                return Err(Error::config(value.setting, "no such file or directory"));
            }
            config.trust_store = Some(path);
            config.trust_mode = TrustMode::Both;
        }
        config.trust_store_password = self
            .new_setting("TRUST_STORE_PASSWORD")?
            .map(|value| Password::new(value.text));
        if let Some(value) = self.new_setting("TRUST_MODE")? {
            config.trust_mode = match value.text.trim().to_ascii_lowercase().as_str() {
                "system" => TrustMode::System,
                "custom" => TrustMode::Custom,
                "both" => TrustMode::Both,
                _ => {
                    return Err(Error::config(
                        value.setting,
                        "must be system, custom or both",
                    ));
                }
            };
            if config.trust_mode != TrustMode::System && config.trust_store.is_none() {
                return Err(Error::config(
                    value.setting,
                    "custom and both need DOWNLOADER_TRUST_STORE",
                ));
            }
        }
        if let Some(value) = self.new_setting("TLS_KEYSTORE")? {
            config.tls_keystore = Some(CertRef {
                path: PathBuf::from(value.text),
                password: self
                    .new_setting("TLS_KEYSTORE_PASSWORD")?
                    .map(|value| Password::new(value.text)),
                key_password: None,
                alias: self.new_setting("TLS_KEY_ALIAS")?.map(|value| value.text),
            });
        }
        if let Some(value) = self.new_setting("ENGINE_CLIENT_CA")? {
            let path = PathBuf::from(&value.text);
            if !path.exists() {
                return Err(Error::config(value.setting, "no such file or directory"));
            }
            config.engine_client_ca = Some(path);
        }
        Ok(())
    }

    /// The reference system's modes: HTTP, TLS, RabbitMQ, validation, the default client
    /// certificate and the proxies. Needs `config.max_jobs`.
    fn modes(&self, config: &mut Config) -> Result<(), Error> {
        config.use_http = self.boolean("use_http", true)?;
        config.use_ssl = self.boolean("use_ssl", true)?;
        if self.boolean("use_rabbit", false)? {
            let pair = |value: Option<Value>| value.map(|value| (value.text, value.setting));
            config.rabbit = Some(Rabbit::load(
                &|name| self.reference(name).map(pair),
                &|name| self.new_setting(name).map(pair),
                config.max_jobs,
            )?);
        }
        if !config.use_http && config.rabbit.is_none() {
            return Err(Error::config(
                "use_http",
                "is false and use_rabbit is not true, so the agent would do nothing",
            ));
        }
        config.disable_ssl_validation = self.boolean("disable_ssl_validation", false)?;
        if let Some(value) = self.reference("client_cert_configuration")? {
            config.default_cert = parse_default_cert(&value)?;
        }
        if let Some(value) = self.reference("proxy_configuration")? {
            config.proxy_rules = engine::ProxyRules::from_reference_json(&value.text)
                .map_err(|error| Error::config(value.setting, error.to_string()))?;
        }
        Ok(())
    }

    fn cert_dirs(&self, flags: &Flags) -> Result<Vec<PathBuf>, Error> {
        let (dirs, setting) = if !flags.cert_dirs.is_empty() {
            (flags.cert_dirs.clone(), "--cert-dir".to_owned())
        } else if let Some(value) = self.new_setting("CERT_DIRS")? {
            let dirs = value
                .text
                .split(':')
                .filter(|part| !part.trim().is_empty())
                .map(PathBuf::from)
                .collect();
            (dirs, value.setting)
        } else if Path::new("/certs").is_dir() {
            (vec![PathBuf::from("/certs")], "/certs (default)".to_owned())
        } else {
            return Ok(Vec::new());
        };
        dirs.iter()
            .map(|dir| {
                let canonical = dir.canonicalize().map_err(|error| {
                    Error::config(setting.clone(), format!("{}: {error}", dir.display()))
                })?;
                if !canonical.is_dir() {
                    return Err(Error::config(
                        setting.clone(),
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                Ok(canonical)
            })
            .collect()
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.reference(name)? {
            Some(value) => parse_bool(&value.text)
                .ok_or_else(|| Error::config(value.setting, "must be true or false")),
            None => Ok(default),
        }
    }
}

fn default_data_dir(xdg: Option<String>, home: Option<String>) -> Result<PathBuf, Error> {
    if let Some(xdg) = xdg.filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(xdg).join("downloader"));
    }
    match home.filter(|dir| !dir.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/downloader")),
        None => Err(Error::config(
            "DOWNLOADER_DATA_DIR",
            "is not set and neither XDG_DATA_HOME nor HOME is",
        )),
    }
}

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits.parse().ok()?;
    let factor: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests;
