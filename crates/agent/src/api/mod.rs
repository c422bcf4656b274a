//! The HTTP surface: `POST /api/v1/jobs` (Basic auth), `GET /health` (no auth), `GET /metrics`
//! (auth), with one JSON error envelope for everything the API itself refuses.

mod job;
mod run;
mod template;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::certs::Certs;
use crate::config::{Config, Credentials};
use crate::metrics::{Gauges, Metrics};

pub(crate) use job::CONFIG_NAMES;
pub(crate) use job::{raw_id as job_id, raw_request as job_request};
pub(crate) use run::{internal as internal_result, run as run_job};

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: engine::Engine,
    pub(crate) certs: Certs,
    pub(crate) config: Config,
    pub(crate) metrics: Metrics,
    pub(crate) started: Instant,
    auth: AuthDigest,
    admission: Admission,
}

/// SHA-256 of the apikey and of the secret, compared in constant time.
struct AuthDigest {
    apikey: [u8; 32],
    secret: [u8; 32],
}

/// Back-pressure: at most `max_jobs` run, at most `queue_limit` more wait.
#[derive(Debug)]
struct Admission {
    admitted: AtomicUsize,
    running: AtomicUsize,
    capacity: usize,
    slots: Semaphore,
}

/// An error of the API itself (not of a job): `{"error": {"kind", "message", "hint"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u32>,
}

impl Shared {
    pub(crate) fn new(
        engine: engine::Engine,
        certs: Certs,
        config: Config,
        credentials: &Credentials,
    ) -> Self {
        let capacity = config.max_jobs.saturating_add(config.queue_limit);
        Self {
            engine,
            certs,
            metrics: Metrics::default(),
            started: Instant::now(),
            auth: AuthDigest {
                apikey: Sha256::digest(credentials.apikey.as_bytes()).into(),
                secret: Sha256::digest(credentials.secret.expose().as_bytes()).into(),
            },
            admission: Admission {
                admitted: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                capacity,
                slots: Semaphore::new(config.max_jobs),
            },
            config,
        }
    }

    fn gauges(&self) -> Gauges {
        let admitted = self.admission.admitted.load(Ordering::Relaxed);
        let running = self.admission.running.load(Ordering::Relaxed);
        Gauges {
            in_flight: running,
            queued: admitted.saturating_sub(running),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            expiries: self.certs.expiries(),
        }
    }
}

/// The router of the job API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = usize::try_from(shared.config.max_body).unwrap_or(usize::MAX);
    Router::new()
        .route("/api/v1/jobs", post(jobs))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

async fn jobs(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    // Credentials first: an unauthenticated client never gets its body read.
    authorize(&shared, request.headers())?;
    let limit = usize::try_from(shared.config.max_body).unwrap_or(usize::MAX);
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|error| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "api.body",
            message: format!("cannot read the request body: {error}"),
            retry_after: None,
        })?;
    let parsed: Value = serde_json::from_slice(&body).map_err(|error| ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "api.json",
        message: format!("the body is not valid JSON: {error}"),
        retry_after: None,
    })?;
    let (jobs, batch) = match parsed {
        Value::Array(items) => (items, true),
        object @ Value::Object(_) => (vec![object], false),
        _ => {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                kind: "api.json",
                message: "the body must be one job object or an array of jobs".into(),
                retry_after: None,
            });
        }
    };
    let count = jobs.len();
    let _ticket = shared.admission.admit(count).ok_or_else(|| {
        shared.metrics.refused(count);
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "api.overloaded",
            message: format!("the agent is at its queue limit; {count} job(s) not accepted"),
            retry_after: Some(1),
        }
    })?;
    let mut handles = Vec::with_capacity(count);
    for raw in jobs {
        let shared = shared.clone();
        let fallback = job::raw_request(&raw);
        let id = job::raw_id(&raw);
        let handle = tokio::spawn(async move {
            let _slot = shared.admission.slot().await;
            run::run(&shared, raw).await
        });
        handles.push((handle, id, fallback));
    }
    let mut results = Vec::with_capacity(count);
    for (handle, id, (method, url)) in handles {
        // A panic inside a job becomes that job's `internal` result, never the agent's.
        results.push(match handle.await {
            Ok(result) => result,
            Err(error) => run::internal(&shared, id, method, url, &error.to_string()),
        });
    }
    let body = if batch {
        Value::Array(results)
    } else {
        results.pop().unwrap_or(Value::Null)
    };
    Ok(json_response(StatusCode::OK, &body))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": shared.started.elapsed().as_secs(),
    });
    // Active mode: the broker connection (the process is alive even while it reconnects).
    if let (Some(rabbit), Some(object)) = (&shared.config.rabbit, body.as_object_mut()) {
        object.insert(
            "broker".into(),
            shared
                .metrics
                .broker
                .health(&rabbit.display(), &rabbit.queue),
        );
    }
    json_response(StatusCode::OK, &body)
}

async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&shared, &headers)?;
    let text = shared.metrics.render(&shared.gauges());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "api.not_found",
        message: "no such endpoint: use POST /api/v1/jobs, GET /health or GET /metrics".into(),
        retry_after: None,
    }
}

/// HTTP Basic `apikey:secret`, compared in constant time (over SHA-256 digests, so lengths do
/// not leak either).
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = || ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "api.unauthorized",
        message: "missing or wrong credentials: use HTTP Basic auth with the apikey and secret"
            .into(),
        retry_after: None,
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(unauthorized)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| unauthorized())?;
    let split = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(unauthorized)?;
    let apikey: [u8; 32] = Sha256::digest(&decoded[..split]).into();
    let secret: [u8; 32] = Sha256::digest(&decoded[split + 1..]).into();
    let good = apikey.ct_eq(&shared.auth.apikey) & secret.ct_eq(&shared.auth.secret);
    if bool::from(good) {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let hint = match self.kind {
            "api.unauthorized" => "send Authorization: Basic base64(apikey:secret)",
            "api.overloaded" => {
                "retry after the Retry-After delay, or raise DOWNLOADER_QUEUE_LIMIT"
            }
            "api.body" => "keep the request under DOWNLOADER_MAX_BODY",
            _ => "see docs/job-api.md",
        };
        let mut response = json_response(
            self.status,
            &json!({"error": {"kind": self.kind, "message": self.message, "hint": hint}}),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"downloader\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Admitted jobs of one request; released when the response is built.
struct Ticket<'a> {
    admission: &'a Admission,
    count: usize,
}

/// A running slot.
struct Slot<'a> {
    admission: &'a Admission,
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Admission {
    fn admit(&self, count: usize) -> Option<Ticket<'_>> {
        let before = self.admitted.fetch_add(count, Ordering::AcqRel);
        if before.saturating_add(count) > self.capacity {
            self.admitted.fetch_sub(count, Ordering::AcqRel);
            return None;
        }
        Some(Ticket {
            admission: self,
            count,
        })
    }

    async fn slot(&self) -> Slot<'_> {
        // The semaphore is never closed, so acquiring only fails if that changes; run anyway.
        let permit = self.slots.acquire().await.ok();
        self.running.fetch_add(1, Ordering::AcqRel);
        Slot {
            admission: self,
            _permit: permit,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.admission
            .admitted
            .fetch_sub(self.count, Ordering::AcqRel);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.admission.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for AuthDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthDigest(***)")
    }
}
