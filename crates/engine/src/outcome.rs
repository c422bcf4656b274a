//! The one result of a job, serialized as the result schema (camelCase JSON).

use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, JobError};
use crate::exchange::Body;

/// The result of a job: a response, or an error, with whatever was learned on the way.
///
/// The field names are a contract; fields may be added. The redirects followed are serialized
/// as `redirects` (after `response`); in Rust they are [`Outcome::redirects`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job's id, echoed.
    pub id: Option<String>,
    /// Whether a complete response arrived (whatever its status).
    pub ok: bool,
    /// What was asked.
    pub request: RequestInfo,
    /// The response, when its head arrived (also when the body then failed).
    pub response: Option<Response>,
    /// Phase timings in milliseconds.
    pub metrics: Metrics,
    /// TLS facts, for https jobs that got as far as a TCP connection.
    pub tls: Option<Arc<TlsInfo>>,
    /// Things worth knowing that did not stop the job.
    pub warnings: Vec<String>,
    /// Why the job failed, when `ok` is false.
    pub error: Option<ErrorInfo>,
    /// The typed error behind `error`, for callers in the same process (not serialized).
    pub failure: Option<Error>,
}

/// The request as shown in results: no credentials.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// The method.
    pub method: String,
    /// The URL with query parameters and without any password.
    pub url: String,
}

/// The response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The URL that gave this response (differs from the request's after redirects).
    pub url: String,
    /// The status code.
    pub status_code: u16,
    /// The reason phrase (the server's, else the standard one).
    pub reason: std::borrow::Cow<'static, str>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub http_version: &'static str,
    /// Lower-case name to all its values, in order.
    pub headers: crate::exchange::Headers,
    /// The body: text when it is UTF-8, else base64.
    pub body: Body,
    /// `utf8` or `base64`.
    pub body_encoding: &'static str,
    /// Body bytes received, before decoding and before base64.
    pub size: u64,
    /// The `Content-Encoding` the engine decoded (`gzip`, `deflate`, `br`), if any.
    pub decoded: Option<String>,
    /// Whether the body was cut at the body limit.
    pub truncated: bool,
}

/// Phase timings in milliseconds; a phase that did not happen is `null`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Name resolution.
    pub dns: Option<f64>,
    /// TCP connect.
    pub connect: Option<f64>,
    /// TLS handshake.
    pub tls: Option<f64>,
    /// Writing the request.
    pub send: Option<f64>,
    /// From the request written to the response head.
    pub wait: Option<f64>,
    /// Reading the body.
    pub download: Option<f64>,
    /// From the start of name resolution to the end of the body (or the failure).
    pub total: Option<f64>,
    /// Time to first byte: from the start of name resolution to the response head.
    pub latency: Option<f64>,
    /// The body download (the reference system's name for `download`).
    pub fetch: Option<f64>,
    /// The whole job, including loading keystores and building the result.
    pub overall: f64,
    /// How many redirects were followed before this response.
    pub redirects: u32,
    /// Whether the request went over a kept-alive connection (no dns, connect, tls).
    pub connection_reused: bool,
    /// Opening the CONNECT tunnel through a proxy (`connect` is then the TCP connect to the
    /// proxy).
    pub proxy: Option<f64>,
    /// The redirects followed (serialized at the top of the outcome, not here).
    #[serde(skip)]
    pub(crate) hops: Vec<crate::redirect::Redirect>,
}

/// What the TLS handshake showed, kept even when it failed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: Option<String>,
    /// The cipher suite, IANA name.
    pub cipher: Option<String>,
    /// The ALPN protocol the server chose.
    pub alpn: Option<String>,
    /// The server name sent (none for IP addresses).
    pub sni: Option<String>,
    /// Whether the server certificate was verified (false in insecure mode or on failure).
    pub verified: bool,
    /// The chain the server presented, leaf first.
    pub server_certificates: Vec<ServerCertificate>,
    /// Whether the server asked for a client certificate.
    pub client_certificate_requested: bool,
    /// The CA names the server said it accepts.
    pub acceptable_issuers: Vec<String>,
    /// The client certificate we presented, or null.
    pub client_certificate: Option<ClientCertificate>,
}

/// A certificate the server presented.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCertificate {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
}

/// The client certificate we presented.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificate {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
}

/// The error part of a failed outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// The stable kind.
    pub kind: &'static str,
    /// For people.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl Outcome {
    /// The outcome of a job that could not even be built.
    pub fn rejected(
        id: Option<String>,
        method: impl Into<String>,
        url: impl Into<String>,
        error: JobError,
    ) -> Self {
        let mut outcome = Self {
            id,
            ok: false,
            request: RequestInfo {
                method: method.into(),
                url: redact_url(&url.into()),
            },
            response: None,
            metrics: Metrics::default(),
            tls: None,
            warnings: Vec::new(),
            error: None,
            failure: None,
        };
        outcome.fail(Error::InvalidRequest(error));
        outcome
    }

    /// Marks the outcome as failed with `error`.
    pub(crate) fn fail(&mut self, error: Error) {
        self.ok = false;
        self.error = Some(ErrorInfo::from(&error));
        self.failure = Some(error);
    }

    /// The redirects followed before the final response (or failure), in order.
    pub fn redirects(&self) -> &[crate::redirect::Redirect] {
        &self.metrics.hops
    }

    /// The error kind, when the job failed.
    pub fn kind(&self) -> Option<&'static str> {
        self.error.as_ref().map(|error| error.kind)
    }
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Outcome", 9)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("ok", &self.ok)?;
        out.serialize_field("request", &self.request)?;
        out.serialize_field("response", &self.response)?;
        out.serialize_field("redirects", &self.metrics.hops)?;
        out.serialize_field("metrics", &self.metrics)?;
        out.serialize_field("tls", &self.tls)?;
        out.serialize_field("warnings", &self.warnings)?;
        out.serialize_field("error", &self.error)?;
        out.end()
    }
}

impl From<&Error> for ErrorInfo {
    fn from(error: &Error) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
            hint: error.hint(),
        }
    }
}

impl From<keystore::CertificateInfo> for ServerCertificate {
    fn from(info: keystore::CertificateInfo) -> Self {
        Self {
            subject: info.subject,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            sha256: info.sha256,
        }
    }
}

impl From<&keystore::CertificateInfo> for ClientCertificate {
    fn from(info: &keystore::CertificateInfo) -> Self {
        Self {
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            not_after: info.not_after.clone(),
            sha256: info.sha256.clone(),
        }
    }
}

/// A URL given as text without its password (`user:***@`): for results, logs and `Debug` of
/// every surface (jobs that failed before parsing, broker and proxy URLs). An unparsable URL
/// with `@` shows only its scheme.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => text.to_owned(),
        // An unparsable URL may still hold `user:password@`; show only its scheme.
        Err(_) => match text.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => format!("{scheme}://***"),
            _ => text.to_owned(),
        },
    }
}
