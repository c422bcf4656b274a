//! Fresh-connection mutual-TLS jobs against a local nginx: the engine against a minimal
//! hyper + rustls loop doing the same request (the practical ceiling). Same identity, same
//! trust, same ALPN (h2), session resumption off on both sides, one job at a time.
//!
//! The `keep_alive_job` group does the same with connection reuse: the engine with
//! `keep_alive` against a hyper + rustls loop that keeps one connection and sends request after
//! request on it.
//!
//! Run with `cargo bench -p engine --bench jobs` (or `bench/fetch.sh`). Needs nginx.

#[path = "../../../tests/interop/peers.rs"]
mod peers;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use engine::{Engine, IdentitySource, Job, Source, TrustSource};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keystore::{Keystore, Options, Password};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const STORE: &str = "Fx-store-7431";

fn engine_job(port: u16) -> Job {
    Job::builder("GET", format!("https://localhost:{port}/"))
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
        .build()
        .expect("job")
}

/// The request the engine puts on the wire for `engine_job`, built by hand: the same default
/// headers (`User-Agent`, `Accept`, `Accept-Encoding`), so both sides send the same bytes.
fn loop_request_for(uri: &str) -> http::Request<Empty<Bytes>> {
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
fn loop_config() -> Arc<ClientConfig> {
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

async fn loop_request(config: Arc<ClientConfig>, port: u16) -> usize {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
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
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    body.len()
}

/// The minimal loop with keep-alive: one connection, opened again only when the server closes
/// it (nginx ends a connection after `keepalive_requests`, 1000 by default).
struct KeptAlive {
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    uri: String,
    config: Arc<ClientConfig>,
    port: u16,
}

async fn kept_alive(config: Arc<ClientConfig>, port: u16) -> KeptAlive {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .expect("handshake");
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

async fn kept_alive_request(kept: &mut KeptAlive) -> usize {
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
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    body.len()
}

fn bench(c: &mut Criterion) {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let port = nginx.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::new();
    let job = engine_job(port);
    let check = runtime.block_on(engine.run(job.clone()));
    assert!(check.ok, "{:?}", check.error);
    let config = loop_config();
    assert!(runtime.block_on(loop_request(config.clone(), port)) > 0);

    let mut group = c.benchmark_group("fresh_mtls_job");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("engine", |b| {
        b.iter(|| runtime.block_on(engine.run(job.clone())));
    });
    group.bench_function("hyper_rustls_loop", |b| {
        b.iter(|| runtime.block_on(loop_request(config.clone(), port)));
    });
    group.finish();

    let kept_job = {
        let mut job = engine_job(port);
        job = Job::builder("GET", job.display_url())
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
            .keep_alive(true)
            .build()
            .expect("job");
        job
    };
    let warm = runtime.block_on(engine.run(kept_job.clone()));
    assert!(warm.ok, "{:?}", warm.error);
    let reused = runtime.block_on(engine.run(kept_job.clone()));
    assert!(reused.metrics.connection_reused, "{:?}", reused.metrics);
    let mut kept = runtime.block_on(kept_alive(config, port));
    let mut group = c.benchmark_group("keep_alive_job");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("engine", |b| {
        b.iter(|| runtime.block_on(engine.run(kept_job.clone())));
    });
    group.bench_function("hyper_rustls_loop", |b| {
        b.iter(|| runtime.block_on(kept_alive_request(&mut kept)));
    });
    group.finish();
    drop(nginx);
}

criterion_group!(benches, bench);
criterion_main!(benches);
