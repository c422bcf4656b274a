//! The suite's client of the job API: one fresh TLS connection per request (rustls, trusting
//! only the agent's generated certificate), HTTP/1.1 or HTTP/2 chosen by ALPN, and a response
//! read up to a byte cap so an unbounded answer fails the row instead of the test process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Which HTTP version a request uses (negotiated by ALPN, so a mismatch fails loudly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
}

/// What the agent answered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The response headers, as text.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (at most the read cap).
    pub(crate) body: Bytes,
    /// Whether the body went on past the cap.
    pub(crate) truncated: bool,
    /// How long the exchange took.
    pub(crate) took: Duration,
}

/// One request to the agent.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) version: Version,
    pub(crate) method: &'static str,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    port: u16,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl Client {
    /// A client trusting only `cert_pem` (the agent's self-signed certificate).
    pub(crate) fn new(port: u16, cert_pem: &[u8]) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(cert_pem) {
            roots.add(cert.expect("agent PEM")).expect("agent root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = |alpn: &[u8]| {
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(config)
        };
        Self {
            port,
            h1: config(b"http/1.1"),
            h2: config(b"h2"),
        }
    }

    /// Sends `outgoing` and reads at most `cap` bytes of the answer, all within `deadline`.
    pub(crate) async fn send(
        &self,
        outgoing: &Outgoing,
        cap: usize,
        deadline: Duration,
    ) -> Result<Reply, String> {
        let started = Instant::now();
        match tokio::time::timeout(deadline, self.exchange(outgoing, cap)).await {
            Ok(Ok(mut reply)) => {
                reply.took = started.elapsed();
                Ok(reply)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!("no answer within {} s", deadline.as_secs())),
        }
    }

    /// `GET /health` on a new connection: the latency of a 200, or what went wrong.
    pub(crate) async fn health(&self, deadline: Duration) -> Result<Duration, String> {
        let outgoing = Outgoing {
            version: Version::H1,
            method: "GET",
            path: "/health".into(),
            headers: Vec::new(),
            body: Bytes::new(),
        };
        let reply = self.send(&outgoing, 1 << 20, deadline).await?;
        if reply.status != 200 {
            return Err(format!("/health answered {}", reply.status));
        }
        Ok(reply.took)
    }

    async fn exchange(&self, outgoing: &Outgoing, cap: usize) -> Result<Reply, String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let _ = tcp.set_nodelay(true);
        let connector = TlsConnector::from(match outgoing.version {
            Version::H1 => self.h1.clone(),
            Version::H2 => self.h2.clone(),
        });
        let name = ServerName::from(std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS: {error}"))?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let mut request = Request::builder().method(outgoing.method);
        request = match outgoing.version {
            Version::H1 => request
                .uri(outgoing.path.as_str())
                .header("host", format!("127.0.0.1:{}", self.port)),
            Version::H2 => request.uri(format!("https://127.0.0.1:{}{}", self.port, outgoing.path)),
        };
        for (name, value) in &outgoing.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(outgoing.body.clone()))
            .map_err(|error| format!("request: {error}"))?;
        let response = match outgoing.version {
            Version::H1 => {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|error| format!("h1 handshake: {}", chain(&error)))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            Version::H2 => {
                if alpn.as_deref() != Some(b"h2") {
                    return Err(format!("ALPN did not pick h2: {alpn:?}"));
                }
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|error| format!("h2 handshake: {}", chain(&error)))?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
        }
        .map_err(|error| format!("no response: {}", chain(&error)))?;
        read(response, cap).await
    }
}

async fn read(
    response: hyper::Response<hyper::body::Incoming>,
    cap: usize,
) -> Result<Reply, String> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| format!("status {status}, body: {}", chain(&error)))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > cap {
                truncated = true;
                break;
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Reply {
        status,
        headers,
        body: Bytes::from(bytes),
        truncated,
        took: Duration::ZERO,
    })
}

/// An error with its sources, as one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
