//! A fresh connection for a job: name resolution, TCP connect (to the proxy, when one is
//! selected), the CONNECT tunnel, the TLS handshake and the start of HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls_pki_types::ServerName;

use crate::classify::{self, Phase, Seen};
use crate::connect;
use crate::egress;
use crate::error::{Error, JobError};
use crate::exchange::Connection;
use crate::job::{HttpVersion, Job};
use crate::proxy::{self, Proxy};
use crate::run::{Negotiated, Progress, within};
use crate::timing::{IoMarks, TimedIo};
use crate::tls;

/// A connection ready for a request.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) connection: Connection,
    pub(crate) http2: bool,
    pub(crate) marks: Arc<IoMarks>,
    /// The address the TCP connection went to (the proxy's, through a proxy): checked again
    /// against the egress policy before the connection is reused.
    pub(crate) peer: SocketAddr,
}

/// What the TLS part of dialing needs from the engine.
#[derive(Debug)]
pub(crate) struct TlsParts<'a> {
    pub(crate) provider: &'a Arc<rustls::crypto::CryptoProvider>,
    pub(crate) verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
}

/// Opens a new connection for `job`, through `proxy` when there is one.
pub(crate) async fn dial(
    job: &Job,
    progress: &mut Progress,
    proxy: Option<&Proxy>,
    tls_parts: Option<TlsParts<'_>>,
    deadline: Instant,
) -> Result<Dialed, Error> {
    let (host, port) = job.host_port();
    let target = format!("{host}:{port}");
    let limit = Some(job.connect_timeout);
    progress.timeline.net_start = Some(Instant::now());
    let (dial_host, dial_port) = match proxy {
        Some(proxy) => (proxy.host().to_owned(), proxy.port()),
        None => (host.clone(), port),
    };
    let dial_target = format!("{dial_host}:{dial_port}");
    let to_proxy = |error: Error| via_proxy(proxy, error);
    let addresses = resolve_admitted(job, progress, proxy, (&host, port), deadline).await?;

    let (mut tcp, peer) = within(deadline, limit, job, Phase::Connect, &dial_target, async {
        connect::connect(&addresses).await
    })
    .await
    .map_err(to_proxy)?
    .map_err(|(tried, error)| to_proxy(classify::connect(&tried, &error)))?;
    progress.timeline.connect_end = Some(Instant::now());

    let marks = IoMarks::new();
    let Some(tls_parts) = tls_parts else {
        let http2 = job.http == HttpVersion::Http2;
        let io = TimedIo::new(tcp, marks.clone());
        let connection = start(job, io, http2, deadline, progress, &marks).await?;
        return Ok(Dialed {
            connection,
            http2,
            marks,
            peer,
        });
    };
    if let Some(proxy) = proxy {
        within(deadline, limit, job, Phase::Connect, &dial_target, async {
            proxy::tunnel(&mut tcp, proxy, &target).await
        })
        .await
        .map_err(to_proxy)??;
        progress.timeline.proxy_end = Some(Instant::now());
    }

    let stream = handshake(job, progress, tcp, tls_parts, &host, &target, deadline).await?;
    let alpn = record_negotiated(progress, stream.get_ref().1);
    let http2 = match (job.http, alpn.as_deref()) {
        (HttpVersion::Http1, _) => false,
        (HttpVersion::Http2, Some("h2") | None) => true,
        (HttpVersion::Http2, Some(other)) => {
            return Err(Error::HttpProtocol {
                detail: format!("HTTP/2 was required but the server chose '{other}' (ALPN)"),
            });
        }
        (HttpVersion::Auto, alpn) => alpn == Some("h2"),
    };
    let io = TimedIo::new(stream, marks.clone());
    let connection = start(job, io, http2, deadline, progress, &marks).await?;
    Ok(Dialed {
        connection,
        http2,
        marks,
        peer,
    })
}

/// A dial error as the proxy's when the connection goes through one.
fn via_proxy(proxy: Option<&Proxy>, error: Error) -> Error {
    match proxy {
        Some(proxy) => Error::ProxyUnreachable {
            proxy: proxy.address(),
            detail: error.to_string(),
        },
        None => error,
    }
}

/// Resolves the dial target (the proxy, through a proxy) after the egress policy's check of
/// the names, and admits the addresses found before anything is sent to them.
async fn resolve_admitted(
    job: &Job,
    progress: &mut Progress,
    proxy: Option<&Proxy>,
    (host, port): (&str, u16),
    deadline: Instant,
) -> Result<Vec<SocketAddr>, Error> {
    let (dial_host, dial_port) = match proxy {
        Some(proxy) => (proxy.host(), proxy.port()),
        None => (host, port),
    };
    let dial_target = format!("{dial_host}:{dial_port}");
    if let Some(policy) = &job.egress {
        egress::before_lookup(policy, (host, port), proxy)?;
    }
    let limit = Some(job.connect_timeout);
    let addresses = within(deadline, limit, job, Phase::Dns, &dial_target, async {
        connect::lookup(job, dial_host, dial_port).await
    })
    .await
    .map_err(|error| via_proxy(proxy, error))?
    .map_err(|error| via_proxy(proxy, classify::dns(dial_host, &error)))?;
    progress.timeline.dns_end = Some(Instant::now());
    // Before `connect`: nothing is sent to a denied address.
    if let Some(policy) = &job.egress {
        egress::admit(policy, (host, port), proxy, &addresses)?;
    }
    Ok(addresses)
}

/// The TLS handshake over `tcp` with the job's server name and TLS settings.
async fn handshake(
    job: &Job,
    progress: &mut Progress,
    tcp: tokio::net::TcpStream,
    tls_parts: TlsParts<'_>,
    host: &str,
    target: &str,
    deadline: Instant,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Error> {
    let limit = Some(job.connect_timeout);
    let name_text = job.sni.clone().unwrap_or_else(|| host.to_owned());
    let name = ServerName::try_from(name_text.clone()).map_err(|_| {
        Error::InvalidRequest(JobError::new(format!(
            "'{name_text}' is not a valid TLS server name"
        )))
    })?;
    progress.sni = match &name {
        ServerName::DnsName(dns) => Some(dns.as_ref().to_owned()),
        _ => None,
    };
    let settings = tls::Settings {
        provider: tls_parts.provider,
        verifier: tls_parts.verifier,
        verifies: !job.insecure,
        identity: progress.identity.as_deref(),
        min: job.tls_min,
        max: job.tls_max,
        http: job.http,
    };
    let config =
        tls::client_config(settings, &progress.recorder).map_err(|error| Error::TlsProtocol {
            detail: format!("cannot configure TLS: {error}"),
        })?;
    progress.tls_started = true;
    let handshake = connect::handshake(tcp, Arc::new(config), name);
    let stream = within(deadline, limit, job, Phase::Handshake, &target, handshake)
        .await?
        .map_err(|error| {
            let (facts, top) = crate::report::facts(progress);
            let seen = Seen {
                facts: &facts,
                server_name: &name_text,
                top: &top,
            };
            classify::handshake(&error, &seen)
        })?;
    progress.timeline.tls_end = Some(Instant::now());
    Ok(stream)
}

/// Records the negotiated TLS version, cipher suite and ALPN protocol; returns the protocol.
fn record_negotiated(
    progress: &mut Progress,
    session: &rustls::ClientConnection,
) -> Option<String> {
    let alpn = session
        .alpn_protocol()
        .map(|alpn| String::from_utf8_lossy(alpn).into_owned());
    progress.negotiated = Some(Negotiated {
        version: session.protocol_version().map(|version| match version {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            other => format!("{other:?}"),
        }),
        cipher: session.negotiated_cipher_suite().map(|suite| {
            let id = suite.suite();
            id.as_str().map_or_else(|| format!("{id:?}"), str::to_owned)
        }),
        alpn: alpn.clone(),
    });
    alpn
}

/// Starts HTTP on the connection (for HTTP/2, the preface and settings exchange).
async fn start<T>(
    job: &Job,
    io: TimedIo<T>,
    http2: bool,
    deadline: Instant,
    progress: &Progress,
    marks: &Arc<IoMarks>,
) -> Result<Connection, Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (host, port) = job.host_port();
    let target = format!("{host}:{port}");
    let header_limit = job.http_options.response_header_limit;
    within(
        deadline,
        job.first_byte_timeout,
        job,
        Phase::Wait,
        &target,
        async { Connection::start(io, http2, header_limit).await },
    )
    .await?
    .map_err(|error| {
        crate::report::exchange_error(&error, job, &host, progress, marks, Phase::Wait)
    })
}
