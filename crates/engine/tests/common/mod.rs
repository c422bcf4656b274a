//! An in-process HTTPS server (rustls + hyper) for fast engine tests.
//!
//! Routes: `/` echoes the client certificate subject, method, query and body; `/delay` answers
//! after 300 ms; `/stall` never answers; `/slowbody` sends its head and part of the body, then
//! stalls; `/big?n=N` sends N bytes.

#![allow(dead_code)] // reason: each test file uses part of this

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

#[path = "../../../../tests/interop/peers.rs"]
pub(crate) mod peers;

pub(crate) use peers::fixture;

pub(crate) mod extra;
pub(crate) mod proxy;

/// The store (and key) password of the keystore fixtures.
pub(crate) const STORE: &str = "Fx-store-7431";

/// The fixture root CA, as a job's trust store.
pub(crate) fn trust() -> engine::TrustSource {
    trust_from("ca/root.pem")
}

/// A fixture trust store.
pub(crate) fn trust_from(path: &str) -> engine::TrustSource {
    engine::TrustSource {
        source: engine::Source::Path(fixture(path)),
        password: None,
    }
}

/// A fixture keystore opened with `password`.
pub(crate) fn store(path: &str, password: Option<&str>) -> engine::IdentitySource {
    engine::IdentitySource::Keystore {
        source: engine::Source::Path(fixture(path)),
        password: password.map(keystore::Password::from),
        key_password: None,
        alias: None,
    }
}

/// The `client/<key_type>/openssl.p12` fixture identity.
pub(crate) fn identity(key_type: &str) -> engine::IdentitySource {
    store(&format!("client/{key_type}/openssl.p12"), Some(STORE))
}

/// A fixture certificate chain and key in two files.
pub(crate) fn pair(cert: &str, key: &str, password: Option<&str>) -> engine::IdentitySource {
    engine::IdentitySource::Pair {
        certificates: engine::Source::Path(fixture(cert)),
        key: engine::Source::Path(fixture(key)),
        key_password: password.map(keystore::Password::from),
    }
}

/// The response body as text (empty without one).
pub(crate) fn body(outcome: &engine::Outcome) -> String {
    outcome
        .response
        .as_ref()
        .and_then(|response| response.body.text())
        .unwrap_or_default()
        .to_owned()
}

/// The whole outcome as pretty JSON, for assertion messages.
pub(crate) fn describe(outcome: &engine::Outcome) -> String {
    serde_json::to_string_pretty(outcome).unwrap_or_default()
}

/// How the test server is set up.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// PEM chain the server presents (fixture path).
    pub(crate) cert: &'static str,
    /// Its key.
    pub(crate) key: &'static str,
    /// Client CA (fixture path); `None` = no client authentication.
    pub(crate) client_ca: Option<&'static str>,
    /// Offer only TLS 1.2.
    pub(crate) tls12_only: bool,
    /// ALPN protocols offered.
    pub(crate) alpn: Vec<Vec<u8>>,
    /// Ask for a client certificate but accept connections without one.
    pub(crate) optional_client_auth: bool,
    /// Plain HTTP instead of HTTPS.
    pub(crate) plain: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            cert: "server/localhost.chain.pem",
            key: "server/localhost.key.pem",
            client_ca: Some("ca/root.pem"),
            tls12_only: false,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            optional_client_auth: false,
            plain: false,
        }
    }
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) plain: bool,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        let scheme = if self.plain { "http" } else { "https" };
        format!("{scheme}://localhost:{}{path}", self.port)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs")
}

/// Starts the server on a free loopback port.
pub(crate) async fn start(setup: Setup) -> Server {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone());
    let builder = if setup.tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .expect("versions");
    let builder = match setup.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs(&fixture(ca)));
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if setup.optional_client_auth {
                verifier.allow_unauthenticated()
            } else {
                verifier
            }
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(fixture(setup.key)).expect("server key");
    let mut config = builder
        .with_single_cert(certs(&fixture(setup.cert)), key)
        .expect("config");
    config.alpn_protocols = setup.alpn.clone();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let plain = setup.plain;
    let task = tokio::spawn(async move {
        let connections = Arc::new(AtomicUsize::new(0));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let connection = connections.fetch_add(1, Ordering::SeqCst) + 1;
            let requests = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                if plain {
                    let service = hyper::service::service_fn(move |request| {
                        let number = requests.fetch_add(1, Ordering::SeqCst) + 1;
                        handle(request, "none".into(), port, (connection, number))
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                    return;
                }
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let subject = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| keystore::CertificateInfo::from_der(leaf).ok())
                    .map(|info| info.subject)
                    .unwrap_or_else(|| "none".into());
                let service = hyper::service::service_fn(move |request| {
                    let number = requests.fetch_add(1, Ordering::SeqCst) + 1;
                    handle(request, subject.clone(), port, (connection, number))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server { port, plain, task }
}

async fn handle(
    request: Request<Incoming>,
    subject: String,
    port: u16,
    (connection, number): (usize, usize),
) -> Result<Response<TestBody>, Infallible> {
    if let Some(response) = extra::route(&request, &subject, port, connection) {
        let head = request.method() == hyper::Method::HEAD;
        let body = request.into_body().collect().await.map(|b| b.to_bytes());
        let mut response = extra::finish(response, body.unwrap_or_default());
        if head {
            *response.body_mut() = TestBody::Full(Bytes::new());
        }
        return Ok(response);
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().to_string();
    let version = format!("{:?}", request.version());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let custom = header("x-test");
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = match path.as_str() {
        "/delay" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            TestBody::Full(Bytes::from_static(b"late"))
        }
        "/stall" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            TestBody::Full(Bytes::new())
        }
        "/slowbody" => TestBody::Stall { sent: false },
        "/big" => {
            let n: usize = query
                .strip_prefix("n=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            TestBody::Full(Bytes::from(vec![b'x'; n]))
        }
        "/binary" => TestBody::Full(Bytes::from_static(&[0xff, 0x00, 0xfe])),
        _ => TestBody::Full(Bytes::from(format!(
            "subject={subject}\nmethod={method}\nquery={query}\nversion={version}\nx-test={custom}\nbody={}\nconnection={connection}\nrequest={number}\n",
            String::from_utf8_lossy(&body)
        ))),
    };
    Ok(Response::new(response))
}

/// A body that is either complete or stalls after its first chunk.
pub(crate) enum TestBody {
    Full(Bytes),
    Stall { sent: bool },
}

impl hyper::body::Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            Self::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            Self::Stall { sent: false } => {
                *self = Self::Stall { sent: true };
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
            }
            Self::Stall { sent: true } => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Self::Stall { .. } => SizeHint::default(),
        }
    }
}

/// A TCP server that accepts and never speaks (for handshake timeouts).
pub(crate) async fn silent() -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    (port, task)
}

/// A listener with a full accept queue, so that new connections hang in SYN (connect
/// timeouts on loopback). Returns the port and what must stay alive.
pub(crate) async fn blackhole() -> (u16, Vec<std::net::TcpStream>, TcpListener) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let port = listener.local_addr().expect("address").port();
    let mut fill = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        ) {
            Ok(stream) => fill.push(stream),
            Err(_) => break,
        }
    }
    (port, fill, listener)
}
