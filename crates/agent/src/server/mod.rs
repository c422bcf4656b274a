//! The listener: TCP, rustls (optionally requiring the engine's client certificate), HTTP/1.1
//! and HTTP/2 through hyper-util with timeouts and a connection cap, and graceful shutdown.

mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::error::Error;
use connections::{Activity, Admitted, Counted, Registry, Throttle};

pub(crate) use connections::Connection;

/// How long a connection told to close may stay after its last request ended before it is
/// dropped (hyper closes it itself sooner unless the client stalls).
const CLOSE_AFTER: Duration = Duration::from_secs(5);

/// Builds the job API's TLS configuration; `kdf_limits` caps the key derivations the client
/// CA file (`DOWNLOADER_ENGINE_CLIENT_CA`) may ask for.
pub(crate) fn tls_config(
    provider: &Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
    client_ca: Option<&std::path::Path>,
    kdf_limits: &keystore::Limits,
) -> Result<Arc<ServerConfig>, Error> {
    let tls = |detail: String| Error::Tls { detail };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| tls(error.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let setting = "DOWNLOADER_ENGINE_CLIENT_CA";
            let bytes = std::fs::read(path)
                .map_err(|error| Error::config(setting, format!("{}: {error}", path.display())))?;
            let options = keystore::Options {
                limits: *kdf_limits,
                ..keystore::Options::default()
            };
            let anchors = keystore::TrustAnchors::open(&bytes, &options).map_err(|source| {
                Error::Keystore {
                    setting: setting.into(),
                    path: path.to_owned(),
                    source,
                }
            })?;
            let (roots, _) = anchors.root_store();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|error| Error::config(setting, error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Timeouts and caps of the listener (from [`crate::config::Limits`]).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The limits.
    pub(crate) limits: Limits,
    /// How long open connections may finish their requests after shutdown.
    pub(crate) grace: Duration,
}

/// What every connection task shares.
struct Listener {
    acceptor: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    router: axum::Router,
    limits: Limits,
    registry: Registry,
    refused: Throttle,
    evicted: Throttle,
    accept_errors: Throttle,
}

/// Accepts connections until `shutdown` completes, then lets open connections finish their
/// in-flight requests for up to the grace period.
///
/// hyper applies the header read timeout once a timer is set; a TLS handshake has its own
/// timeout; a connection must start its first request within the header timeout and is closed
/// after the idle timeout with no request open (HTTP/2 gets `GOAWAY` first). At the
/// connection cap a silent, unauthenticated or idle connection makes room, or the new one is
/// closed at once (see [`connections`]). Repeated refusals and accept errors log at most once a second.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: axum::Router,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) {
    let limits = settings.limits;
    let cap = limits.max_connections.unwrap_or_else(|| {
        connections::open_files_limit().map_or(1024, |files| (files / 2).clamp(16, 10_000))
    });
    tracing::info!(
        max_connections = cap,
        header_timeout_seconds = limits.header_timeout.as_secs_f64(),
        idle_timeout_seconds = limits.idle_timeout.as_secs_f64(),
        "job API connection limits"
    );
    let shared = Arc::new(Listener {
        acceptor: tls.map(TlsAcceptor::from),
        builder: builder(&limits),
        router,
        limits,
        registry: Registry::new(cap),
        refused: Throttle::default(),
        evicted: Throttle::default(),
        accept_errors: Throttle::default(),
    });
    let (closing, closed) = watch::channel(false);
    // Every connection task holds a sender; all gone means all connections have ended.
    let (alive, mut ended) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Some((stream, peer, activity)) = shared.admit(accepted).await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let closed = closed.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            connection(&shared, stream, peer, &activity, closed).await;
            shared.registry.remove(&activity);
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    tracing::info!("shutting down: no new connections; finishing in-flight jobs");
    let _ = closing.send(true);
    if tokio::time::timeout(settings.grace, ended.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = settings.grace.as_secs(),
            "in-flight jobs did not finish in time"
        );
    }
}

impl Listener {
    /// A new connection, registered under the cap; `None` when refused or `accept` failed.
    async fn admit(
        &self,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
    ) -> Option<(TcpStream, SocketAddr, Arc<Activity>)> {
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors: close an idle connection to get one back, and wait a
                // little rather than spin.
                let freed =
                    matches!(error.raw_os_error(), Some(23 | 24)) && self.registry.evict_one();
                if let Some(suppressed) = self.accept_errors.ready() {
                    tracing::warn!(%error, freed, suppressed, "job API accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                return None;
            }
        };
        match self.registry.admit() {
            Admitted::Fresh(activity) => Some((stream, peer, activity)),
            Admitted::InPlaceOf(activity) => {
                if let Some(suppressed) = self.evicted.ready() {
                    tracing::warn!(
                        max_connections = self.registry.limit(),
                        suppressed,
                        "job API at its connection limit: closed a silent, unauthenticated or idle \
                         connection"
                    );
                }
                Some((stream, peer, activity))
            }
            Admitted::Full => {
                if let Some(suppressed) = self.refused.ready() {
                    tracing::warn!(
                        %peer,
                        max_connections = self.registry.limit(),
                        suppressed,
                        "job API at its connection limit with every connection busy: refused"
                    );
                }
                None
            }
        }
    }
}

/// hyper's connection builder with the timer and the limits.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keepalive_interval)
        .keep_alive_timeout(limits.h2_keepalive_timeout)
        .max_concurrent_streams(limits.h2_max_streams);
    builder
}

/// One connection: the TLS handshake (bounded), then HTTP until it ends, idles out, is evicted
/// or the server shuts down.
async fn connection(
    shared: &Listener,
    stream: TcpStream,
    peer: SocketAddr,
    activity: &Arc<Activity>,
    closed: watch::Receiver<bool>,
) {
    let Some(acceptor) = &shared.acceptor else {
        return drive(shared, stream, peer, activity, closed).await;
    };
    let handshake =
        tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "job API TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "job API TLS handshake timed out");
                return;
            }
        },
        () = activity.evicted.notified() => return,
    };
    drive(shared, stream, peer, activity, closed).await;
}

/// Serves HTTP on `io`. A connection told to close gracefully (idle, shutdown) that has still
/// not ended [`CLOSE_AFTER`] after its last request is dropped.
async fn drive<I>(
    shared: &Listener,
    io: I,
    peer: SocketAddr,
    activity: &Arc<Activity>,
    mut closed: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = TowerToHyperService::new(shared.router.clone());
    let counting = activity.clone();
    let service = service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let busy = counting.begin();
        request
            .extensions_mut()
            .insert(Connection::new(counting.clone()));
        let call = inner.call(request);
        async move {
            let response = call.await?;
            Ok::<_, Infallible>(response.map(|body| Counted::body(body, busy)))
        }
    });
    let connection = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let limits = &shared.limits;
    let mut closing = false;
    loop {
        let idle = async {
            if closing {
                activity.idle(CLOSE_AFTER, CLOSE_AFTER).await;
            } else {
                activity
                    .idle(limits.header_timeout, limits.idle_timeout)
                    .await;
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "job API connection ended with an error");
                }
                return;
            }
            () = activity.evicted.notified() => return,
            () = idle => {
                if closing {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = closed.wait_for(|closed| *closed), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tls", &self.acceptor.is_some())
            .field("limits", &self.limits)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}
