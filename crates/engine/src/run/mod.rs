//! The engine: takes a job through its phases and assembles its one outcome.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use tokio::time::Sleep;

use crate::classify::{self, ChainTop, Phase, Seen};
use crate::decode;
use crate::dial::{self, Dialed, TlsParts};
use crate::error::{Error, HandshakeFacts, JobError};
use crate::exchange::{self, Body, ReadBody};
use crate::job::Job;
use crate::material::{Deadline, LoadedIdentity, Materials};
use crate::outcome::{Outcome, RequestInfo};
use crate::pool::{Pool, PoolKey, Pooled};
use crate::proxy::Proxy;
use crate::redirect::{self, Redirect};
use crate::report;
use crate::timing::Timeline;
use crate::tls::Recorder;
use reuse::pool_key;

mod reuse;

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
    pool: Pool,
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
    /// Whether the request went over a kept-alive connection.
    pub(crate) reused: bool,
    /// The connection's handshake, prepared for reporting: made once per connection when it
    /// goes to the pool, then shared by every job that reuses it.
    pub(crate) handshake: Option<Arc<Handshake>>,
}

/// What a connection's handshake showed, prepared once and shared by the jobs that reuse it.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// What the verifier and resolver recorded, with the server chain parsed.
    pub(crate) observed: crate::tls::Observed,
    /// The outcome's `tls` part, shared by the outcomes of the jobs on this connection.
    pub(crate) info: Arc<crate::outcome::TlsInfo>,
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
        Self::with_keystore_limits(provider, keystore::Limits::default())
    }

    /// An engine with the given crypto provider whose keystore and trust-store parses refuse
    /// key-derivation parameters over `limits` (`keystore.too_costly`).
    pub fn with_keystore_limits(provider: Arc<CryptoProvider>, limits: keystore::Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                materials: Materials::new(provider.clone(), limits),
                provider,
                pool: Pool::default(),
            }),
        }
    }

    /// Runs one job to its one outcome. Never panics: a bug inside the job becomes an outcome
    /// with the kind `internal`.
    ///
    /// The job runs in the caller's task (no task is spawned per job: callers that want jobs
    /// on several threads spawn them, as the agent does).
    pub async fn run(&self, job: Job) -> Outcome {
        let id = job.id.clone();
        let request = RequestInfo {
            method: job.method.to_string(),
            url: job.display_url(),
        };
        let started = Instant::now();
        // Boxed: a job's state machine is several kilobytes, and every move of an unboxed one
        // (into `block_on`, into a task) would copy all of it.
        match isolate(Box::pin(self.inner.execute(job))).await {
            Ok(mut outcome) => {
                outcome.request = request;
                outcome
            }
            Err(panic) => {
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
                    detail: format!("the job panicked: {panic}"),
                });
                outcome
            }
        }
    }
}

/// Runs `work` to its end, turning a panic inside it into `Err` with the panic's message: what
/// a task boundary gives, without spawning a task.
async fn isolate<F: Future>(work: F) -> Result<F::Output, String> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    })
    .await
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    /// Runs the job and the redirects it follows; the last hop gives the outcome (whose
    /// `request`, the job as given, `Engine::run` fills in).
    async fn execute(&self, original: Job) -> Outcome {
        let job_start = Instant::now();
        let follows = redirect::follows(&original);
        // The job of the current hop, once a redirect made one (no copy before that).
        let mut redirected: Option<Job> = None;
        let mut hops: Vec<Redirect> = Vec::new();
        let mut seen: Vec<(http::Method, url::Url)> = Vec::new();
        loop {
            let current = redirected.as_ref().unwrap_or(&original);
            let mut progress = Progress::new();
            let mut result = self.attempt(current, &mut progress).await;
            let target = match (&result, &progress.head) {
                (Ok(()), Some(head)) if follows => {
                    redirect::location(head.status, &head.headers, &current.url)
                        .map(|to| (head.status, to))
                }
                _ => None,
            };
            if let Some((status, to)) = target {
                seen.push((current.method.clone(), current.url.clone()));
                let hop = Redirect {
                    url: current.display_url(),
                    method: current.method.to_string(),
                    status_code: status.as_u16(),
                    location: to.to_string(),
                    identity: progress.identity.is_some(),
                    metrics: progress.timeline.metrics(Instant::now()),
                };
                match redirect::next(&original, current, status, to, hops.len(), &seen) {
                    Ok(next) => {
                        hops.push(hop);
                        redirected = Some(next);
                        continue;
                    }
                    Err(error) => {
                        hops.push(hop);
                        result = Err(error);
                    }
                }
            }
            let mut outcome = report::outcome(current, progress, result);
            outcome.metrics.overall = crate::timing::ms(job_start.elapsed());
            outcome.metrics.redirects = u32::try_from(hops.len()).unwrap_or(u32::MAX);
            outcome.metrics.hops = hops;
            return outcome;
        }
    }

    /// One request: over a kept-alive connection when the job allows and one fits, else (or
    /// when that one turns out dead, for idempotent methods) over a fresh one.
    async fn attempt(&self, job: &Job, progress: &mut Progress) -> Result<(), Error> {
        let deadline = progress.timeline.job_start + job.timeout;
        let until = Deadline {
            at: deadline,
            after: job.timeout,
        };
        if let Some(source) = &job.identity {
            progress.identity = Some(self.materials.identity(source, until).await?);
        }
        let (verifier, trust) = if job.is_tls() {
            let store = job.trust_store.as_ref();
            let (verifier, trust) = self
                .materials
                .verifier(job.trust, store, job.insecure, until)
                .await?;
            (Some(verifier), trust)
        } else {
            (None, [0; 32])
        };
        let (host, port) = job.host_port();
        let proxy = job
            .http_options
            .proxy
            .as_ref()
            .and_then(|rules| rules.select(job.url.scheme(), &host, port))
            .cloned();
        let key = if job.http_options.keep_alive {
            Some(pool_key(
                job,
                (&host, port),
                progress,
                trust,
                proxy.as_ref(),
            ))
        } else {
            None
        };
        if let Some(result) = self
            .reuse_pooled(job, progress, proxy.as_ref(), key.as_ref(), deadline)
            .await
        {
            return result;
        }
        let tls_parts = verifier.map(|verifier| TlsParts {
            provider: &self.provider,
            verifier,
        });
        // Boxed: dialing is a large state machine, and inlining it would make every job's future
        // that large, also for jobs that reuse a connection.
        let dialed = Box::pin(dial::dial(
            job,
            progress,
            proxy.as_ref(),
            tls_parts,
            deadline,
        ))
        .await?;
        self.exchange(job, dialed, proxy.as_ref(), key, deadline, progress)
            .await
    }

    async fn exchange(
        &self,
        job: &Job,
        dialed: Dialed,
        proxy: Option<&Proxy>,
        key: Option<PoolKey>,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Result<(), Error> {
        let Dialed {
            mut connection,
            http2,
            marks,
            peer,
        } = dialed;
        let plain_proxy = proxy.filter(|_| !job.is_tls());
        let request = exchange::request(job, http2, plain_proxy)
            .map_err(|error| Error::InvalidRequest(JobError::new(error.to_string())))?;
        let request_start = Instant::now();
        progress.timeline.request_start = Some(request_start);
        marks.arm();
        let (host, port) = job.host_port();
        let target = Authority(&host, port);
        let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
        let sent = within_on(
            timer.as_mut(),
            deadline,
            job.first_byte_timeout,
            job,
            Phase::Wait,
            &target,
            connection.send(request),
        )
        .await;
        let head_time = Instant::now();
        // The request counts as sent at its last completed write before the first read after
        // it started (a later write answers what was read: not the request).
        progress.timeline.send_end = marks
            .request_written()
            .filter(|written| *written >= request_start)
            .map(|written| written.min(head_time));
        let response = sent?.map_err(|error| {
            if let Some(too_large) =
                classify::head_too_large(&error, job.http_options.response_header_limit)
            {
                return too_large;
            }
            report::exchange_error(&error, job, &host, progress, &marks, Phase::Wait)
        })?;
        progress.timeline.head = Some(head_time);
        if progress.timeline.send_end.is_none() {
            progress.timeline.send_end = Some(head_time);
        }
        let (parts, mut body) = response.into_parts();
        let encoding = parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let status = parts.status;
        progress.head = Some(parts);
        let mut read = within_on(
            timer,
            deadline,
            None,
            job,
            Phase::Download,
            &target,
            async { exchange::read_body(&mut body, job.body_limit).await },
        )
        .await?
        .map_err(|error| {
            let seen = Seen {
                facts: &HandshakeFacts::default(),
                server_name: &host,
                top: &ChainTop::default(),
            };
            classify::exchange(&error, marks.read_error().as_ref(), &seen, Phase::Download)
        })?;
        progress.timeline.body_end = Some(Instant::now());
        drop(body);
        let truncated = read.truncated;
        let decoded = match encoding {
            Some(encoding) if job.http_options.decodes && !truncated => {
                let limit = job.http_options.decoded_limit;
                decode::decode(&encoding, read.body.bytes(), limit)
                    .map(|decoded| decoded.map(|bytes| (encoding, bytes)))
            }
            _ => Ok(None),
        };
        if !truncated && let Some(key) = key {
            if progress.tls_started && progress.handshake.is_none() {
                progress.handshake = Some(Arc::new(report::handshake(progress)));
            }
            self.pool.put(
                key,
                Pooled {
                    connection,
                    http2,
                    tls: progress.handshake.clone(),
                    marks,
                    idle_since: Instant::now(),
                    idle_limit: job.http_options.idle_limit,
                    peer,
                },
            );
        }
        match decoded {
            Ok(Some((encoding, bytes))) => {
                read.body = Body::new(bytes);
                read.decoded = Some(encoding);
            }
            Ok(None) => {}
            Err(error) => {
                progress.body = Some(read);
                return Err(error);
            }
        }
        progress.body = Some(read);
        if truncated {
            return Err(Error::BodyTooLarge {
                limit: job.body_limit,
            });
        }
        if status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED
            && let Some(proxy) = plain_proxy
        {
            return Err(Error::ProxyAuthRequired {
                proxy: proxy.address(),
                sent: proxy.authorization().is_some(),
            });
        }
        Ok(())
    }
}

impl Progress {
    fn new() -> Self {
        Self::new_at(Instant::now())
    }

    fn new_at(job_start: Instant) -> Self {
        let mut timeline = Timeline::start();
        timeline.job_start = job_start;
        Self {
            timeline,
            recorder: Recorder::default(),
            identity: None,
            tls_started: false,
            sni: None,
            negotiated: None,
            head: None,
            body: None,
            reused: false,
            handshake: None,
        }
    }
}

/// Runs `work` until the phase limit or the job deadline, whichever comes first; the error
/// names the limit that ran out.
pub(crate) async fn within<F: Future>(
    deadline: Instant,
    phase_limit: Option<Duration>,
    job: &Job,
    phase: Phase,
    target: &(dyn std::fmt::Display + Sync),
    work: F,
) -> Result<F::Output, Error> {
    let timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    within_on(timer, deadline, phase_limit, job, phase, target, work).await
}

/// [`within`] on a timer the caller keeps: consecutive phases of one exchange share it (moved
/// from one limit to the next) rather than registering a timer each.
async fn within_on<F: Future>(
    mut timer: Pin<&mut Sleep>,
    deadline: Instant,
    phase_limit: Option<Duration>,
    job: &Job,
    phase: Phase,
    target: &(dyn std::fmt::Display + Sync),
    work: F,
) -> Result<F::Output, Error> {
    let (until, after) = phase_end(deadline, phase_limit, job);
    timer.as_mut().reset(until.into());
    tokio::select! {
        biased;
        output = work => Ok(output),
        () = timer => Err(classify::timeout(phase, after, &target.to_string())),
    }
}

/// When a phase starting now must end (its own limit or the job's deadline, whichever comes
/// first) and the limit that is.
fn phase_end(deadline: Instant, phase_limit: Option<Duration>, job: &Job) -> (Instant, Duration) {
    let now = Instant::now();
    match phase_limit {
        Some(limit) if now + limit < deadline => (now + limit, limit),
        _ => (deadline, job.timeout),
    }
}

/// `host:port`, written out only when an error needs it.
struct Authority<'a>(&'a str, u16);

impl std::fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::isolate;

    #[tokio::test]
    async fn a_panic_inside_a_job_becomes_an_error_with_its_message() {
        let caught = isolate(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom at step 2");
            }
            7
        })
        .await;
        assert_eq!(caught, Err("boom at step 2".to_owned()));
        let owned = isolate(async { panic!("{} {}", "formatted", 3) }).await;
        assert_eq!(owned, Err("formatted 3".to_owned()));
        assert_eq!(isolate(async { 7 }).await, Ok(7));
    }

    /// Callers spawn jobs on multi-threaded runtimes: the job's future must stay `Send`.
    #[test]
    fn a_job_can_run_on_any_thread() {
        fn send<T: Send>(_: &T) {}
        let engine = super::Engine::new();
        let job = crate::Job::builder("GET", "https://localhost/")
            .build()
            .expect("job");
        send(&engine.run(job));
    }
}
