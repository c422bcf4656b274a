//! A job: one request and every option that shapes how it is made.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use keystore::Password;
use url::Url;

use crate::error::JobError;
pub(crate) use crate::options::HttpOptions;

mod credentials;
mod limits;
mod text;

pub use credentials::is_secret_header_name;
pub(crate) use credentials::{is_secret_header, percent_decode};
use limits::check_head_size;
pub use limits::{MAX_HEADER_COUNT, MAX_KEEP_ALIVE_IDLE, MAX_REDIRECTS_LIMIT, MAX_TIMEOUT};
pub use text::{parse_resolve, seconds_to_duration};

/// The default response body limit: 50 MiB.
pub const DEFAULT_BODY_LIMIT: u64 = 50 * 1024 * 1024;
/// The default number of redirects followed.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;
/// The default limit on the size of the request head and of the response head: 64 KiB.
pub const DEFAULT_HEADER_LIMIT: usize = 64 * 1024;
/// The default whole-job limit.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default limit for TCP connect and, separately, for the TLS handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request, checked and ready to run. Build it with [`Job::builder`].
///
/// `Debug` redacts passwords, in-memory key material, URL passwords and the values of
/// `Authorization`, `Proxy-Authorization` and `Cookie` headers.
#[derive(Clone)]
pub struct Job {
    pub(crate) id: Option<String>,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) identity: Option<IdentitySource>,
    pub(crate) trust: TrustMode,
    pub(crate) trust_store: Option<TrustSource>,
    pub(crate) insecure: bool,
    pub(crate) sni: Option<String>,
    pub(crate) resolve: Vec<(String, u16, IpAddr)>,
    pub(crate) tls_min: TlsVersion,
    pub(crate) tls_max: TlsVersion,
    pub(crate) http: HttpVersion,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Option<Duration>,
    pub(crate) body_limit: u64,
    pub(crate) http_options: HttpOptions,
    /// Checked on every connection the job makes; `None`: any address.
    pub(crate) egress: Option<std::sync::Arc<crate::egress::EgressPolicy>>,
}

/// Where keystore bytes come from.
#[derive(Clone)]
pub enum Source {
    /// A file, read (and cached by file identity) when the job runs.
    Path(PathBuf),
    /// Bytes carried by the job itself.
    Bytes(Bytes),
}

/// The client identity of a job.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// A keystore in any format the `keystore` crate reads (JKS, JCEKS, PKCS#12, PEM bundle).
    Keystore {
        /// The keystore.
        source: Source,
        /// The store password (also the key password unless `key_password` is set).
        password: Option<Password>,
        /// The key password, when it differs.
        key_password: Option<Password>,
        /// Which private-key entry; needed only when there are several.
        alias: Option<String>,
    },
    /// A certificate (chain) file and a separate key file, PEM or DER.
    Pair {
        /// The certificate or chain, leaf first.
        certificates: Source,
        /// The private key (PKCS#8, encrypted PKCS#8, PKCS#1 or SEC1).
        key: Source,
        /// The key password, for an encrypted key.
        key_password: Option<Password>,
    },
}

/// A custom trust store: any format the `keystore` crate reads.
#[derive(Clone, Debug)]
pub struct TrustSource {
    /// The store.
    pub source: Source,
    /// Its password, for JKS/JCEKS/PKCS#12 stores.
    pub password: Option<Password>,
}

/// Which roots verify the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustMode {
    /// The operating system's roots (Mozilla's when the system has none).
    System,
    /// Only the job's trust store.
    Custom,
    /// Both.
    Both,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Which HTTP version to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HttpVersion {
    /// HTTP/2 when the server offers it through ALPN, else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only (also without ALPN; fails when ALPN picks another protocol).
    Http2,
}

/// Builds a [`Job`]; nothing is checked until [`JobBuilder::build`].
#[derive(Debug, Clone)]
pub struct JobBuilder {
    id: Option<String>,
    method: String,
    url: String,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
    identity: Option<IdentitySource>,
    trust: Option<TrustMode>,
    trust_store: Option<TrustSource>,
    insecure: bool,
    sni: Option<String>,
    resolve: Vec<(String, u16, IpAddr)>,
    tls_min: TlsVersion,
    tls_max: TlsVersion,
    http: HttpVersion,
    timeout: Duration,
    connect_timeout: Duration,
    first_byte_timeout: Option<Duration>,
    body_limit: u64,
    pub(crate) http_options: HttpOptions,
    pub(crate) request_header_limit: usize,
    pub(crate) form: Option<crate::form::EncodedBody>,
    pub(crate) egress: Option<std::sync::Arc<crate::egress::EgressPolicy>>,
}

impl Job {
    /// Starts a job for `method` and `url`.
    pub fn builder(method: impl Into<String>, url: impl Into<String>) -> JobBuilder {
        JobBuilder {
            id: None,
            method: method.into(),
            url: url.into(),
            params: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
            identity: None,
            trust: None,
            trust_store: None,
            insecure: false,
            sni: None,
            resolve: Vec::new(),
            tls_min: TlsVersion::Tls12,
            tls_max: TlsVersion::Tls13,
            http: HttpVersion::Auto,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: None,
            body_limit: DEFAULT_BODY_LIMIT,
            http_options: HttpOptions {
                follow_redirects: None,
                max_redirects: DEFAULT_MAX_REDIRECTS,
                host_identities: Vec::new(),
                proxy: None,
                keep_alive: false,
                idle_limit: crate::pool::IDLE_TIMEOUT,
                decoded_limit: DEFAULT_BODY_LIMIT,
                response_header_limit: DEFAULT_HEADER_LIMIT,
                decodes: false,
            },
            request_header_limit: DEFAULT_HEADER_LIMIT,
            form: None,
            egress: None,
        }
    }

    /// The id echoed in the outcome.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL as it will be shown in results: query parameters appended, any password removed.
    pub fn display_url(&self) -> String {
        self.url.as_str().to_owned()
    }

    /// The whole-job limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The host and port the URL names.
    pub(crate) fn host_port(&self) -> (String, u16) {
        let host = match self.url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        (host, self.url.port_or_known_default().unwrap_or(443))
    }

    /// The pinned address for `host:port`, if the job has one.
    pub(crate) fn pinned(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.resolve
            .iter()
            .find(|(h, p, _)| *p == port && h.eq_ignore_ascii_case(host))
            .map(|(_, _, ip)| SocketAddr::new(*ip, port))
    }

    /// Whether the URL is `https`.
    pub(crate) fn is_tls(&self) -> bool {
        self.url.scheme() == "https"
    }
}

impl JobBuilder {
    /// An id to echo in the outcome.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Appends a query parameter (URL-encoded when the job is built).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds a header; repeated names are all sent.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The request body (text or bytes).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The client identity.
    pub fn identity(mut self, identity: IdentitySource) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Which roots verify the server (default: both when a trust store is given, else system).
    pub fn trust(mut self, mode: TrustMode) -> Self {
        self.trust = Some(mode);
        self
    }

    /// A custom trust store.
    pub fn trust_store(mut self, store: TrustSource) -> Self {
        self.trust_store = Some(store);
        self
    }

    /// Skips server certificate verification (handshake signatures are still checked). A
    /// client identity is still presented.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// The TLS server name to send and verify, instead of the URL host.
    pub fn sni(mut self, name: impl Into<String>) -> Self {
        self.sni = Some(name.into());
        self
    }

    /// Connects to `address` whenever the URL names `host:port` (no DNS lookup).
    pub fn resolve(mut self, host: impl Into<String>, port: u16, address: IpAddr) -> Self {
        self.resolve.push((host.into(), port, address));
        self
    }

    /// The lowest TLS version to offer (default 1.2).
    pub fn tls_min(mut self, version: TlsVersion) -> Self {
        self.tls_min = version;
        self
    }

    /// The highest TLS version to offer (default 1.3).
    pub fn tls_max(mut self, version: TlsVersion) -> Self {
        self.tls_max = version;
        self
    }

    /// Which HTTP version to speak.
    pub fn http(mut self, version: HttpVersion) -> Self {
        self.http = version;
        self
    }

    /// The whole-job limit (default 60 s).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The whole-job limit set so far (60 s until [`JobBuilder::timeout`] changes it): for work
    /// a caller does for the job before the engine runs it.
    pub fn current_timeout(&self) -> Duration {
        self.timeout
    }

    /// The limit for the TCP connect and, separately, for the TLS handshake (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The limit from sending the request to receiving the response head.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Self {
        self.first_byte_timeout = Some(limit);
        self
    }

    /// The largest response body kept (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, bytes: u64) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Checks everything that can be checked without the network.
    pub fn build(self) -> Result<Job, JobError> {
        let method = Method::from_bytes(self.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| JobError::new(format!("'{}' is not an HTTP method", self.method)))?;
        let mut url = self.parse_url()?;
        self.check_limits(&url)?;
        let mut headers = self.header_map(&url)?;
        let mut http_options = self.http_options;
        if add_default_headers(&mut headers) {
            http_options.decodes = true;
        }
        // Credentials in the URL become Basic authorization, as curl does, and leave the URL
        // so that it can be shown in results.
        credentials::userinfo_to_authorization(&mut url, &mut headers);
        if self.tls_min > self.tls_max {
            return Err(JobError::new(
                "the TLS minimum version is above the maximum",
            ));
        }
        let trust = match (self.trust, &self.trust_store) {
            (Some(TrustMode::Custom | TrustMode::Both), None) if !self.insecure => {
                return Err(JobError::new(
                    "trust 'custom' or 'both' needs a trust store",
                ));
            }
            (Some(mode), _) => mode,
            (None, Some(_)) => TrustMode::Both,
            (None, None) => TrustMode::System,
        };
        if let Some(sni) = &self.sni {
            rustls_pki_types::ServerName::try_from(sni.as_str())
                .map_err(|_| JobError::new(format!("'{sni}' is not a valid TLS server name")))?;
        }
        Ok(Job {
            id: self.id,
            method,
            url,
            headers,
            body: match self.form {
                Some(form) => form.data,
                None => self.body,
            },
            identity: self.identity,
            trust,
            trust_store: self.trust_store,
            insecure: self.insecure,
            sni: self.sni,
            resolve: self.resolve,
            tls_min: self.tls_min,
            tls_max: self.tls_max,
            http: self.http,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            first_byte_timeout: self.first_byte_timeout,
            body_limit: self.body_limit,
            http_options,
            egress: self.egress,
        })
    }

    /// The URL, checked (http or https, with a host), with the query parameters appended.
    fn parse_url(&self) -> Result<Url, JobError> {
        let mut url = Url::parse(self.url.trim())
            .map_err(|error| JobError::new(format!("bad URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(JobError::new(format!(
                "unsupported scheme '{}': only http and https",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(JobError::new("the URL has no host"));
        }
        if !self.params.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &self.params {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// The job's headers, checked, secrets marked sensitive, with the form's content type;
    /// the head they make with `url` must fit the request head limit.
    fn header_map(&self, url: &Url) -> Result<HeaderMap, JobError> {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 1);
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| JobError::new(format!("'{name}' is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                JobError::new(format!(
                    "header '{name}' has an invalid value (CR, LF or another control character)"
                ))
            })?;
            value.set_sensitive(is_secret_header(&header));
            headers.append(header, value);
        }
        if let Some(form) = &self.form {
            if !self.body.is_empty() {
                return Err(JobError::new("a job has either a body or a form, not both"));
            }
            if !headers.contains_key(http::header::CONTENT_TYPE)
                && let Ok(value) = HeaderValue::from_str(&form.content_type)
            {
                headers.insert(http::header::CONTENT_TYPE, value);
            }
        }
        check_head_size(
            headers
                .iter()
                .map(|(name, value)| (name.as_str().len(), value.len())),
            url,
            self.request_header_limit,
        )?;
        Ok(headers)
    }
}

/// Adds the default `User-Agent`, `Accept` and `Accept-Encoding` where the job has none (once
/// here rather than into every request sent). True when `Accept-Encoding` was added, so that
/// the engine decodes the body.
fn add_default_headers(headers: &mut HeaderMap) -> bool {
    if !headers.contains_key(http::header::USER_AGENT) {
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("downloader/", env!("CARGO_PKG_VERSION"))),
        );
    }
    if !headers.contains_key(http::header::ACCEPT) {
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    if headers.contains_key(http::header::ACCEPT_ENCODING) {
        return false;
    }
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static(crate::decode::ACCEPTED),
    );
    true
}

impl TlsVersion {
    /// Parses `1.2` / `1.3` (also `TLSv1.2`, `tls1.3`).
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let number = lower
            .strip_prefix("tlsv")
            .or_else(|| lower.strip_prefix("tls"))
            .unwrap_or(&lower);
        match number {
            "1.2" => Some(Self::Tls12),
            "1.3" => Some(Self::Tls13),
            _ => None,
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if value.is_sensitive() {
                    "***"
                } else {
                    value.to_str().unwrap_or("<binary>")
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("identity", &self.identity)
            .field("trust", &self.trust)
            .field("trust_store", &self.trust_store)
            .field("insecure", &self.insecure)
            .field("sni", &self.sni)
            .field("resolve", &self.resolve)
            .field("tls", &(self.tls_min, self.tls_max))
            .field("http", &self.http)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("body_limit", &self.body_limit)
            .field("http_options", &self.http_options)
            .field("egress", &self.egress)
            .finish()
    }
}

#[cfg(test)]
mod tests;
