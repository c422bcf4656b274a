//! The HTTP surface: `POST /api/v1/jobs` (Basic auth), `GET /health` (no auth; details with
//! auth), `GET /metrics` (auth), with one JSON error envelope for everything the API itself
//! refuses.

mod admission;
mod auth;
mod batch;
mod body;
mod job;
mod run;
mod template;
pub(crate) mod words;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::certs::Certs;
use crate::config::{Config, Credentials};
use crate::metrics::{Gauges, Metrics};

use admission::Admission;
use auth::AuthDigest;
use batch::{Refusal, Running};

pub(crate) use job::CONFIG_NAMES;
// The fuzz entry points (`crate::fuzzing`) plan jobs without running them.
pub(crate) use batch::{Refusal as SplitRefusal, split as split_jobs};
pub(crate) use job::{ApiJob, Rejection};
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
    admission: Arc<Admission>,
}

/// An error of the API itself (not of a job): `{"error": {"kind", "message", "hint"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: ApiKind,
    message: String,
    retry_after: Option<u32>,
    /// The unread rest of the request body, held until the answer has been sent.
    held: Option<axum::body::Body>,
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
            auth: AuthDigest::new(credentials),
            admission: Arc::new(Admission::new(config.max_jobs, capacity)),
            config,
        }
    }

    fn gauges(&self) -> Gauges {
        let (running, waiting) = self.admission.counts();
        Gauges {
            in_flight: running,
            queued: waiting,
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
    let (parts, body) = request.into_parts();
    // Credentials first: an unauthenticated client never gets its body read (only discarded).
    if let Err(error) = authorize(&shared, &parts) {
        return Err(error.early(&parts.headers, body).await);
    }
    let limit = usize::try_from(shared.config.max_body).unwrap_or(usize::MAX);
    let bytes = match body::read(&parts.headers, body, limit).await {
        Ok(bytes) => bytes,
        Err(body::Unread::TooLarge(rest)) => {
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiKind::Body,
                format!("the request body is larger than {limit} bytes"),
            );
            return Err(error.early_authenticated(&parts.headers, rest).await);
        }
        Err(body::Unread::Broken(error)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiKind::Body,
                format!("cannot read the request body: {error}"),
            ));
        }
    };
    let split = split(&shared, bytes).await?;
    let count = split.jobs.len();
    let tickets = shared.admission.admit(count).ok_or_else(|| {
        shared.metrics.refused(count);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiKind::Overloaded,
            format!("the agent is at its queue limit; {count} job(s) not accepted"),
        )
        .retry_after(1)
    })?;
    // Dropping this future (the client went away) drops `running`, which aborts the jobs.
    let running = Running::start(&shared, split.jobs, tickets);
    let mut results = running.results(&shared).await;
    let bytes = if split.many {
        let mut out = Vec::with_capacity(results.iter().map(Bytes::len).sum::<usize>() + count + 2);
        out.push(b'[');
        for (index, result) in results.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(result);
        }
        out.push(b']');
        out
    } else {
        results
            .pop()
            .map(Vec::from)
            .unwrap_or_else(|| b"null".to_vec())
    };
    Ok(bytes_response(StatusCode::OK, bytes))
}

/// The body split into raw jobs on a blocking thread, within the batch limits.
async fn split(shared: &Shared, bytes: Bytes) -> Result<batch::Split, ApiError> {
    let max_batch = shared.config.limits.max_batch;
    let capacity = shared.admission.capacity();
    let max = max_batch.min(capacity);
    let split = tokio::task::spawn_blocking(move || batch::split(&bytes, max))
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiKind::Internal,
                format!("the body parser failed: {error}"),
            )
        })?;
    split.map_err(|refusal| match refusal {
        Refusal::Json(error) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiKind::Json,
            format!("the body is not valid JSON: {error}"),
        ),
        Refusal::Shape => ApiError::new(
            StatusCode::BAD_REQUEST,
            ApiKind::Json,
            "the body must be one job object or an array of jobs",
        ),
        Refusal::TooMany { max } if max == max_batch => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiKind::BatchTooLarge,
            format!("more than {max} jobs in one request (DOWNLOADER_MAX_BATCH)"),
        ),
        Refusal::TooMany { max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiKind::BatchTooLarge,
            format!(
                "more than {max} jobs in one request: the agent can never hold that many \
                 (max_jobs + queue_limit)"
            ),
        ),
    })
}

async fn health(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let mut body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": shared.started.elapsed().as_secs(),
    });
    // Active mode: the broker connection (the process is alive even while it reconnects).
    // Where the broker is and why it failed are for authenticated callers only.
    if let (Some(rabbit), Some(object)) = (&shared.config.rabbit, body.as_object_mut()) {
        let mut broker = shared
            .metrics
            .broker
            .health(&rabbit.display(), &rabbit.queue);
        if !shared.auth.accepts(&headers)
            && let Some(broker) = broker.as_object_mut()
        {
            broker.remove("broker");
            broker.remove("lastError");
        }
        object.insert("broker".into(), broker);
    }
    json_response(StatusCode::OK, &body)
}

async fn metrics(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if let Err(error) = authorize(&shared, &parts) {
        return Err(error.early(&parts.headers, body).await);
    }
    let text = shared.metrics.render(&shared.gauges());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn not_found(request: axum::extract::Request) -> ApiError {
    let (parts, body) = request.into_parts();
    ApiError::new(
        StatusCode::NOT_FOUND,
        ApiKind::NotFound,
        "no such endpoint: use POST /api/v1/jobs, GET /health or GET /metrics",
    )
    .early(&parts.headers, body)
    .await
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Why the job API refused a request: each has its stable kind and its remedy, worded for a
/// job-API client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiKind {
    /// Missing or wrong credentials.
    Unauthorized,
    /// Every job slot and queue place is taken.
    Overloaded,
    /// The request body is too large or cannot be read.
    Body,
    /// The body is not a job or an array of jobs.
    Json,
    /// More jobs in one request than allowed.
    BatchTooLarge,
    /// No such endpoint.
    NotFound,
    /// A fault of the agent.
    Internal,
}

impl ApiKind {
    /// The stable kind.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Unauthorized => "api.unauthorized",
            Self::Overloaded => "api.overloaded",
            Self::Body => "api.body",
            Self::Json => "api.json",
            Self::BatchTooLarge => "api.batch_too_large",
            Self::NotFound => "api.not_found",
            Self::Internal => "internal",
        }
    }

    /// What the client can do.
    fn hint(self) -> &'static str {
        match self {
            Self::Unauthorized => "send Authorization: Basic base64(apikey:secret)",
            Self::Overloaded => {
                "retry after the Retry-After delay, or raise DOWNLOADER_QUEUE_LIMIT"
            }
            Self::Body => "keep the request under DOWNLOADER_MAX_BODY",
            Self::BatchTooLarge => {
                "split the jobs into smaller requests (DOWNLOADER_MAX_BATCH, DOWNLOADER_MAX_JOBS \
                 + DOWNLOADER_QUEUE_LIMIT)"
            }
            Self::Json | Self::NotFound | Self::Internal => "see docs/job-api.md",
        }
    }
}

impl ApiError {
    fn new(status: StatusCode, kind: ApiKind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            held: None,
        }
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// This error as an answer before the request body was read, to a request that has not
    /// passed authentication: a small part of the body is discarded first, the rest held until
    /// the answer is sent (see [`body`]).
    async fn early(mut self, headers: &HeaderMap, body: axum::body::Body) -> Self {
        self.held = body::drain(headers, body, body::Drain::Unauthenticated).await;
        self
    }

    /// [`Self::early`] for an authenticated request, which may have more discarded.
    async fn early_authenticated(mut self, headers: &HeaderMap, body: axum::body::Body) -> Self {
        self.held = body::drain(headers, body, body::Drain::Authenticated).await;
        self
    }
}

/// Checks the credentials and, when they pass, tells the connection registry (so that the
/// connection is no longer the first to close at the connection cap).
fn authorize(shared: &Shared, parts: &http::request::Parts) -> Result<(), ApiError> {
    shared.auth.authorize(&parts.headers)?;
    if let Some(connection) = parts.extensions.get::<crate::server::Connection>() {
        connection.authenticated();
    }
    Ok(())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&json!({"error": {
            "kind": self.kind.kind(),
            "message": self.message,
            "hint": self.kind.hint(),
        }}))
        .unwrap_or_default();
        let mut response = Response::new(body::Answer::body(bytes, self.held));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"downloader\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
