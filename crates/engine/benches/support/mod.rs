//! What both engine benchmarks share: the engine's job and the minimal hyper + rustls client
//! it is compared with (the practical ceiling), same identity, trust, ALPN and request bytes,
//! session resumption off on both sides.

use std::sync::Arc;

use bytes::Bytes;
use engine::{IdentitySource, Job, Source, TrustSource};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keystore::{Keystore, Options, Password};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::peers;

const STORE: &str = "Fx-store-7431";

/// The engine's mutual-TLS job against the local nginx, with or without keep-alive.
pub(crate) fn engine_job(port: u16, keep_alive: bool) -> Job {
    let job = Job::builder("GET", format!("https://localhost:{port}/"))
        .identity(IdentitySource::Keystore {
            source: Source::Path(peers::fixture("client/p256/openssl.p12")),
            password: Some(Password::from(STORE)),
            key_password: None,
            alias: None,
        })
        .trust(engine::TrustMode::Custom)
        .trust_store(TrustSource {
            source: Source::Path(peers::fixture("ca/root.pem")),
            password: None,
        })
        .keep_alive(keep_alive);
    // EGRESS=1: the agent's default egress policy (its own listen address registered), checked
    // on every dial and on every reuse of a pooled connection, as every agent job is.
    let job = if std::env::var_os("EGRESS").is_some_and(|value| value == "1") {
        let policy = engine::EgressPolicy::default();
        policy.listening(std::net::SocketAddr::from(([127, 0, 0, 1], 8819)));
        job.egress(Arc::new(policy))
    } else {
        job
    };
    job.build().expect("job")
}

/// The request the engine puts on the wire for `engine_job`, built by hand: the same default
/// headers (`User-Agent`, `Accept`, `Accept-Encoding`), so both sides send the same bytes.
pub(crate) fn loop_request_for(uri: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri)
        .header(
            http::header::USER_AGENT,
            concat!("downloader/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::ACCEPT_ENCODING, "gzip, deflate, br")
        .body(Empty::<Bytes>::new())
        .expect("request")
}

/// The minimal loop's configuration: built once, as a hand-written client would.
pub(crate) fn loop_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let bytes = std::fs::read(peers::fixture("client/p256/openssl.p12")).expect("fixture");
    let identity = Keystore::open(&bytes, &Options::with_password(STORE))
        .and_then(|store| store.identity(None))
        .expect("identity");
    let root = std::fs::read(peers::fixture("ca/root.pem")).expect("root");
    let (roots, _) = keystore::TrustAnchors::parse(&root, None)
        .expect("roots")
        .root_store();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            identity.chain().to_vec(),
            rustls_pki_types::PrivateKeyDer::Pkcs8(
                identity.private_key_pkcs8().expect("key").to_vec().into(),
            ),
        )
        .expect("client auth");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TCP (no delay) and a full TLS handshake to the local nginx, as `localhost`.
async fn connect(config: Arc<ClientConfig>, port: u16) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// Reads the whole body; its length.
async fn body_len(response: http::Response<hyper::body::Incoming>) -> usize {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    body.len()
}

pub(crate) async fn loop_request(config: Arc<ClientConfig>, port: u16) -> usize {
    let tls = connect(config, port).await;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let request = loop_request_for(&format!("https://localhost:{port}/"));
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1");
        tokio::spawn(connection);
        sender.send_request(request).await.expect("response")
    };
    body_len(response).await
}

/// The minimal loop with keep-alive: one connection, opened again only when the server closes
/// it (nginx ends a connection after `keepalive_requests`, 1000 by default).
pub(crate) struct KeptAlive {
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    uri: String,
    config: Arc<ClientConfig>,
    port: u16,
}

pub(crate) async fn kept_alive(config: Arc<ClientConfig>, port: u16) -> KeptAlive {
    let tls = connect(config.clone(), port).await;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(connection);
    KeptAlive {
        sender,
        uri: format!("https://localhost:{port}/"),
        config,
        port,
    }
}

pub(crate) async fn kept_alive_request(kept: &mut KeptAlive) -> usize {
    let request = loop_request_for(&kept.uri);
    if kept.sender.is_closed() || kept.sender.ready().await.is_err() {
        *kept = kept_alive(kept.config.clone(), kept.port).await;
    }
    let response = match kept.sender.send_request(request.clone()).await {
        Ok(response) => response,
        Err(_) => {
            *kept = kept_alive(kept.config.clone(), kept.port).await;
            kept.sender.send_request(request).await.expect("response")
        }
    };
    body_len(response).await
}
