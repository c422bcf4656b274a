//! `agent` is the service around the engine: configuration (file, environment with the
//! reference system's names, flags), the HTTPS job API with apikey/secret authentication,
//! client certificates chosen per call, per host or per downloader, keystores reloaded from disk
//! without restarts, health, Prometheus metrics, back-pressure and graceful shutdown.
//!
//! It does not perform requests (that is `engine`) nor parse keystores (that is `keystore`),
//! and it prints nothing: the `downloader serve` command shows what [`Started`] says.
//!
//! # Brief overview
//!
//! - [`Config::load`] reads flags, environment ([`Source`]) and the TOML file, checks every
//!   value and binds nothing.
//! - [`Agent::build`] loads every configured keystore and trust store (an error stops here,
//!   before any port is bound), the agent's own TLS identity and the credentials — generating
//!   both on first start when none are configured.
//! - [`Agent::bind`] then [`Agent::serve`] run the job API until a shutdown future completes,
//!   then finish in-flight jobs within the grace period.
//!
//! ```no_run
//! use agent::{Agent, Config, Environment, Flags};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(&Flags::default(), &Environment)?;
//! let agent = Agent::build(config).await?;
//! let listener = agent.bind().await?;
//! agent.serve(listener, agent::shutdown_signal()).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod amqp;
mod api;
mod certs;
pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod identity;
pub mod log;
mod metrics;
mod server;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::TcpListener;

pub use config::{Config, Environment, Flags, LogFormat, Source};
pub use error::Error;

use crate::api::Shared;
use crate::certs::{Certs, Loaded};

/// A built agent: everything loaded and checked, no port bound yet.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    tls: Option<Arc<ServerConfig>>,
    started: Started,
}

/// What a start should tell the operator.
#[derive(Clone)]
pub struct Started {
    /// The configured listen address.
    pub listen: SocketAddr,
    /// Whether the job API speaks HTTPS.
    pub https: bool,
    /// SHA-256 of the agent's certificate (`AB:CD:...`), for the engine to pin.
    pub fingerprint: Option<String>,
    /// Where the agent's certificate comes from.
    pub identity_file: Option<PathBuf>,
    /// Whether this start generated the self-signed identity.
    pub identity_generated: bool,
    /// The apikey.
    pub apikey: String,
    /// The secret, only when this start generated it (show it once).
    pub new_secret: Option<String>,
    /// Where generated credentials are kept.
    pub credentials_file: Option<PathBuf>,
    /// The certificate directories job keystores must live in.
    pub cert_dirs: Vec<PathBuf>,
    /// What was loaded: one line per configured keystore or trust store.
    pub loaded: Vec<String>,
}

impl Agent {
    /// Loads the configured keystores and trust stores, the agent's identity and credentials
    /// (generated into the data directory on first start when not configured).
    pub async fn build(config: Config) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs = Certs::new(config.cert_dirs.clone()).with_limits(config.kdf_limits);
        let loaded = load_configured(&certs, &config).await?;
        let credentials = identity::credentials(&config, &provider)?;
        let (tls, fingerprint, identity_file, identity_generated) = if config.use_ssl {
            let server = identity::server_identity(&config, &provider)?;
            let tls = server::tls_config(
                &provider,
                server.certified_key.clone(),
                config.engine_client_ca.as_deref(),
                &config.kdf_limits,
            )?;
            (
                Some(tls),
                Some(server.fingerprint),
                Some(server.origin),
                server.generated,
            )
        } else {
            (None, None, None, false)
        };
        let started = Started {
            listen: config.listen,
            https: config.use_ssl,
            fingerprint,
            identity_file,
            identity_generated,
            apikey: credentials.credentials.apikey.clone(),
            new_secret: credentials
                .generated
                .then(|| credentials.credentials.secret.expose().to_owned()),
            credentials_file: credentials.file.clone(),
            cert_dirs: config.cert_dirs.clone(),
            loaded,
        };
        let engine = engine::Engine::with_keystore_limits(provider, config.kdf_limits);
        let shared = Arc::new(Shared::new(engine, certs, config, &credentials.credentials));
        Ok(Self {
            shared,
            tls,
            started,
        })
    }

    /// Checks the configuration as [`Agent::build`] would, without touching the data directory:
    /// every configured keystore and trust store is loaded. Returns one line per item.
    pub async fn check(config: &Config) -> Result<Vec<String>, Error> {
        let certs = Certs::new(config.cert_dirs.clone()).with_limits(config.kdf_limits);
        let mut lines = load_configured(&certs, config).await?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        if let Some(cert) = &config.tls_keystore {
            let server = identity::server_identity(config, &provider)?;
            server::tls_config(
                &provider,
                server.certified_key,
                config.engine_client_ca.as_deref(),
                &config.kdf_limits,
            )?;
            lines.push(format!(
                "agent identity {}: SHA-256 {}",
                cert.path.display(),
                server.fingerprint
            ));
        }
        Ok(lines)
    }

    /// What to tell the operator.
    pub fn started(&self) -> &Started {
        &self.started
    }

    /// Binds the configured listen address.
    ///
    /// With `use_http=false` (active mode only) an ephemeral loopback port is taken instead:
    /// several active-only downloaders can run on one machine, and `/health` stays reachable
    /// from the machine (or container) itself.
    pub async fn bind(&self) -> Result<TcpListener, Error> {
        let address = if self.shared.config.use_http {
            self.shared.config.listen
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        TcpListener::bind(address)
            .await
            .map_err(|error| Error::Bind {
                address: address.to_string(),
                detail: error.to_string(),
            })
    }

    /// Serves the job API on `listener` until `shutdown` completes, then gives in-flight jobs
    /// the configured grace period.
    /// With `use_rabbit`, the AMQP worker runs alongside (or instead, with `use_http=false`)
    /// and drains on the same shutdown.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        // Jobs must not reach the agent itself: its address is denied by default from now on.
        if let Ok(address) = listener.local_addr() {
            self.shared.config.egress.listening(address);
        }
        let settings = server::Settings {
            limits: self.shared.config.limits.clone(),
            grace: self.shared.config.shutdown_grace,
        };
        let router = api::router(self.shared.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker =
            self.shared.config.rabbit.clone().map(|rabbit| {
                tokio::spawn(amqp::run(self.shared.clone(), rabbit, stopped.clone()))
            });
        // With `use_http=false` the listener is an ephemeral loopback port: it still serves
        // `/health` (the container health check finds it in `serve.url`) and `/metrics`.
        let tls = self.tls;
        let http = async move {
            let mut stopped = stopped;
            let shutdown = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            server::serve(listener, tls, router, settings, shutdown).await;
        };
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        tokio::join!(signal, http);
        if let Some(worker) = worker {
            let _ = worker.await;
        }
    }

    /// The names a job's `config` object accepts.
    pub fn config_names() -> &'static [&'static str] {
        api::CONFIG_NAMES
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when
/// the future is first polled: call it before telling anyone the agent is up, so that a signal
/// sent right after the banner is not lost (its default action would kill the process).
/// Must be called within a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |stream: std::io::Result<tokio::signal::unix::Signal>| async move {
            match stream {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(terminate) => {}
            () = wait(interrupt) => {}
        }
    }
}

async fn load_configured(certs: &Certs, config: &Config) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    let mut identities = Vec::new();
    if let Some(cert) = &config.default_cert {
        identities.push((
            "client_cert_configuration".to_owned(),
            "default".to_owned(),
            cert.clone(),
        ));
    }
    for (index, rule) in config.client_certs.iter().enumerate() {
        let patterns: Vec<String> = rule.hosts.iter().map(ToString::to_string).collect();
        let label = format!(
            "host-rule:{}",
            patterns.first().cloned().unwrap_or_default()
        );
        identities.push((format!("client_certs[{index}]"), label, rule.cert.clone()));
    }
    for (setting, label, cert) in identities {
        match certs.identity(&cert, Some(&label)).await {
            Loaded::Good(loaded, _) => lines.push(format!(
                "{setting}: {} -> {} (expires {})",
                cert.path.display(),
                loaded.leaf.subject,
                loaded.leaf.not_after
            )),
            Loaded::Bad(problem) => return Err(configured(setting, &cert.path, problem)),
        }
    }
    if let Some(path) = &config.trust_store {
        match certs
            .trust(path, config.trust_store_password.as_ref(), Some("trust"))
            .await
        {
            Loaded::Good(loaded, _) => lines.push(format!(
                "DOWNLOADER_TRUST_STORE: {} -> {} certificates (trust mode {:?})",
                path.display(),
                loaded.anchors.len(),
                config.trust_mode
            )),
            Loaded::Bad(problem) => {
                return Err(configured("DOWNLOADER_TRUST_STORE".into(), path, problem));
            }
        }
    }
    Ok(lines)
}

/// A configured keystore or trust store that does not load: the keystore's own kind and hint
/// are kept (`config.keystore`); a file that cannot be read is a setting to fix.
fn configured(setting: String, path: &std::path::Path, problem: certs::Problem) -> Error {
    match problem {
        certs::Problem::Keystore(source) => Error::Keystore {
            setting,
            path: path.to_owned(),
            source,
        },
        certs::Problem::Unreadable(detail) => {
            Error::config(setting, format!("{}: {detail}", path.display()))
        }
    }
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("listen", &self.listen)
            .field("https", &self.https)
            .field("fingerprint", &self.fingerprint)
            .field("apikey", &self.apikey)
            .field("new_secret", &self.new_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}
