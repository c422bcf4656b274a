//! An in-process HTTPS upstream (rustls + hyper) that requires a client certificate from the
//! fixture CA ([`start`]) or asks for one and accepts none ([`start_optional`]). `/delay`
//! answers after 300 ms, `/redirect` is a 302 to `/after-redirect` (or to its `to` query
//! parameter); every other path echoes what it saw:
//! `subject=`, `method=`, `query=`, `version=`, `x-test=`, `body=` lines.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
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

use super::fixture;

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) port: u16,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

fn certs(path: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(fixture(path))
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs")
}

/// Starts the upstream on a free loopback port; it requires a client certificate.
pub(crate) async fn start() -> Server {
    start_with(false).await
}

/// Starts an upstream that asks for a client certificate but also serves clients without one.
pub(crate) async fn start_optional() -> Server {
    start_with(true).await
}

async fn start_with(optional: bool) -> Server {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs("ca/root.pem"));
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if optional {
        verifier.allow_unauthenticated()
    } else {
        verifier
    }
    .build()
    .expect("client verifier");
    let key = PrivateKeyDer::from_pem_file(fixture("server/localhost.key.pem")).expect("key");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("server/localhost.chain.pem"), key)
        .expect("config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
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
                let service =
                    hyper::service::service_fn(move |request| handle(request, subject.clone()));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server { port, task }
}

async fn handle(
    request: Request<Incoming>,
    subject: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let method = request.method().to_string();
    let version = format!("{:?}", request.version());
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let custom = request
        .headers()
        .get("x-test")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    if path == "/redirect" {
        let to = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "to")
            .map_or_else(|| "/after-redirect".to_owned(), |(_, to)| to.into_owned());
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::FOUND;
        response.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_str(&to).expect("location"),
        );
        return Ok(response);
    }
    if path == "/delay" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return Ok(Response::new(Full::new(Bytes::from_static(b"late"))));
    }
    Ok(Response::new(Full::new(Bytes::from(format!(
        "subject={subject}\npath={path}\nmethod={method}\nquery={query}\nversion={version}\nx-test={custom}\ncontent-type={content_type}\nbody={}\n",
        String::from_utf8_lossy(&body)
    )))))
}
