//! The engine: takes a job through its phases and assembles its one outcome.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::classify::{self, Phase, Seen};
use crate::connect;
use crate::error::{Error, HandshakeFacts, JobError};
use crate::exchange::{self, Connection, ReadBody};
use crate::job::{HttpVersion, Job};
use crate::material::{LoadedIdentity, Materials};
use crate::outcome::{Outcome, RequestInfo};
use crate::report;
use crate::timing::{IoMarks, TimedIo, Timeline};
use crate::tls::{self, Recorder};

/// Runs jobs. Cheap to clone; clones share the caches of parsed identities and trust stores.
///
/// The aws-lc-rs crypto provider is chosen once, here, and passed to every rustls builder.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: Arc<CryptoProvider>,
    materials: Materials,
}

/// What a job has learned so far; it becomes the outcome, whatever happens.
#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) timeline: Timeline,
    pub(crate) recorder: Recorder,
    pub(crate) identity: Option<Arc<LoadedIdentity>>,
    /// Whether a TLS handshake was started (so TLS facts belong in the outcome).
    pub(crate) tls_started: bool,
    pub(crate) sni: Option<String>,
    pub(crate) negotiated: Option<Negotiated>,
    pub(crate) head: Option<http::response::Parts>,
    pub(crate) body: Option<ReadBody>,
}

/// What the completed handshake agreed on.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub(crate) version: Option<String>,
    pub(crate) cipher: Option<String>,
    pub(crate) alpn: Option<String>,
}

impl Engine {
    /// An engine with the aws-lc-rs provider.
    pub fn new() -> Self {
        Self::with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }

    /// An engine with the given crypto provider.
    pub fn with_provider(provider: Arc<CryptoProvider>) -> Self {
        Self {
            inner: Arc::new(Inner {
                materials: Materials::new(provider.clone()),
                provider,
            }),
        }
    }

    /// Runs one job to its one outcome. Never panics: a bug inside the job becomes an outcome
    /// with the kind `internal`.
    pub async fn run(&self, job: Job) -> Outcome {
        let id = job.id.clone();
        let request = RequestInfo {
            method: job.method.to_string(),
            url: job.display_url(),
        };
        let inner = self.inner.clone();
        let started = Instant::now();
        match tokio::spawn(async move { inner.execute(job).await }).await {
            Ok(outcome) => outcome,
            Err(error) => {
                let mut timeline = Timeline::start();
                timeline.job_start = started;
                let mut outcome = Outcome {
                    id,
                    ok: false,
                    request,
                    response: None,
                    metrics: timeline.metrics(Instant::now()),
                    tls: None,
                    warnings: Vec::new(),
                    error: None,
                    failure: None,
                };
                outcome.fail(Error::Internal {
                    detail: format!("the job's task failed: {error}"),
                });
                outcome
            }
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    async fn execute(&self, job: Job) -> Outcome {
        let mut progress = Progress {
            timeline: Timeline::start(),
            recorder: Recorder::default(),
            identity: None,
            tls_started: false,
            sni: None,
            negotiated: None,
            head: None,
            body: None,
        };
        let result = self.attempt(&job, &mut progress).await;
        report::outcome(&job, progress, result)
    }

    async fn attempt(&self, job: &Job, progress: &mut Progress) -> Result<(), Error> {
        if let Some(source) = &job.identity {
            progress.identity = Some(self.materials.identity(source).await?);
        }
        let verifier = if job.is_tls() {
            let store = job.trust_store.as_ref();
            Some(
                self.materials
                    .verifier(job.trust, store, job.insecure)
                    .await?,
            )
        } else {
            None
        };
        let deadline = progress.timeline.job_start + job.timeout;
        let (host, port) = job.host_port();
        let target = format!("{host}:{port}");
        progress.timeline.net_start = Some(Instant::now());

        let limit = Some(job.connect_timeout);
        let addresses = within(deadline, limit, job, Phase::Dns, &target, async {
            connect::lookup(job, &host, port).await
        })
        .await?
        .map_err(|error| classify::dns(&host, &error))?;
        progress.timeline.dns_end = Some(Instant::now());

        let tcp = within(deadline, limit, job, Phase::Connect, &target, async {
            connect::connect(&addresses).await
        })
        .await?
        .map_err(|(tried, error)| classify::connect(&tried, &error))?;
        progress.timeline.connect_end = Some(Instant::now());

        let marks = IoMarks::new();
        let Some(verifier) = verifier else {
            let http2 = job.http == HttpVersion::Http2;
            let io = TimedIo::new(tcp, marks.clone());
            return self
                .exchange(job, io, &marks, http2, deadline, progress)
                .await;
        };

        let name_text = job.sni.clone().unwrap_or_else(|| host.clone());
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
            provider: &self.provider,
            verifier,
            verifies: !job.insecure,
            identity: progress.identity.as_deref(),
            min: job.tls_min,
            max: job.tls_max,
            http: job.http,
        };
        let config = tls::client_config(settings, &progress.recorder).map_err(|error| {
            Error::TlsProtocol {
                detail: format!("cannot configure TLS: {error}"),
            }
        })?;
        progress.tls_started = true;
        let handshake = connect::handshake(tcp, Arc::new(config), name);
        let stream = within(deadline, limit, job, Phase::Handshake, &target, handshake)
            .await?
            .map_err(|error| {
                let (facts, top_issuer) = report::facts(progress);
                let seen = Seen {
                    facts: &facts,
                    server_name: &name_text,
                    top_issuer: top_issuer.as_deref(),
                };
                classify::handshake(&error, &seen)
            })?;
        progress.timeline.tls_end = Some(Instant::now());
        let session = stream.get_ref().1;
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
        self.exchange(job, io, &marks, http2, deadline, progress)
            .await
    }

    async fn exchange<T>(
        &self,
        job: &Job,
        io: TimedIo<T>,
        marks: &Arc<IoMarks>,
        http2: bool,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Result<(), Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let request = exchange::request(job, http2)
            .map_err(|error| Error::InvalidRequest(JobError::new(error.to_string())))?;
        let request_start = Instant::now();
        progress.timeline.request_start = Some(request_start);
        let (host, port) = job.host_port();
        let target = format!("{host}:{port}");
        let sent = within(
            deadline,
            job.first_byte_timeout,
            job,
            Phase::Wait,
            &target,
            async move {
                let mut connection = Connection::start(io, http2).await?;
                let response = connection.send(request).await?;
                Ok::<_, hyper::Error>((connection, response))
            },
        )
        .await;
        let head_time = Instant::now();
        // The request counts as sent at its last completed write before the response head.
        progress.timeline.send_end = marks
            .last_write()
            .filter(|written| *written >= request_start)
            .map(|written| written.min(head_time));
        let (connection, response) = sent?.map_err(|error| {
            let (facts, top_issuer) = report::facts(progress);
            let name = job.sni.clone().unwrap_or(host.clone());
            let seen = Seen {
                facts: &facts,
                server_name: &name,
                top_issuer: top_issuer.as_deref(),
            };
            classify::exchange(&error, marks.read_error().as_ref(), &seen, Phase::Wait)
        })?;
        progress.timeline.head = Some(head_time);
        if progress.timeline.send_end.is_none() {
            progress.timeline.send_end = Some(head_time);
        }
        let (parts, mut body) = response.into_parts();
        progress.head = Some(parts);
        let read = within(deadline, None, job, Phase::Download, &target, async {
            exchange::read_body(&mut body, job.body_limit).await
        })
        .await?
        .map_err(|error| {
            let seen = Seen {
                facts: &HandshakeFacts::default(),
                server_name: &host,
                top_issuer: None,
            };
            classify::exchange(&error, marks.read_error().as_ref(), &seen, Phase::Download)
        })?;
        progress.timeline.body_end = Some(Instant::now());
        drop(connection);
        let truncated = read.truncated;
        progress.body = Some(read);
        if truncated {
            return Err(Error::BodyTooLarge {
                limit: job.body_limit,
            });
        }
        Ok(())
    }
}

/// Runs `work` until the phase limit or the job deadline, whichever comes first; the error
/// names the limit that ran out.
async fn within<F: Future>(
    deadline: Instant,
    phase_limit: Option<Duration>,
    job: &Job,
    phase: Phase,
    target: &str,
    work: F,
) -> Result<F::Output, Error> {
    let now = Instant::now();
    let (until, after) = match phase_limit {
        Some(limit) if now + limit < deadline => (now + limit, limit),
        _ => (deadline, job.timeout),
    };
    tokio::time::timeout_at(until.into(), work)
        .await
        .map_err(|_| classify::timeout(phase, after, target))
}
