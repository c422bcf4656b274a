//! A job as JSON: what the job API and the queue worker will receive.
//!
//! ```json
//! {"id": "42", "method": "POST", "url": "https://api.internal/x", "params": {"q": "1"},
//!  "headers": {"Content-Type": "application/json"}, "body": "{}",
//!  "options": {"clientCert": {"path": "/certs/a.p12", "password": "..."},
//!              "hostCerts": [{"hosts": ["*.partner.example", "sso.other:8443"],
//!                             "clientCert": {"path": "/certs/partner.p12", "password": "..."}}],
//!              "trust": "both", "caStore": {"path": "/certs/ca.pem"}, "timeout": 5,
//!              "keepAlive": true, "keepAliveIdle": 10}}
//! ```
//!
//! Durations are in seconds (fractions allowed, zero refused). `clientCert` is presented to
//! the URL's own scheme, host and port; a redirect hop anywhere else presents the
//! `hostCerts` entry whose `hosts` pattern matches it most specifically (see
//! [`crate::HostPattern`]), and no certificate when none matches.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use keystore::Password;
use serde::{Deserialize, Deserializer};

use crate::error::JobError;
use crate::form::Part;
use crate::host_pattern::HostPattern;
use crate::job::{HttpVersion, IdentitySource, Job, Source, TlsVersion, TrustMode, TrustSource};
use crate::proxy::{Proxy, ProxyRules};

/// A job as received over an API, before it is checked. `Debug` shows no secret.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Echoed in the outcome.
    #[serde(default)]
    pub id: Option<String>,
    /// The method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// The URL.
    pub url: String,
    /// Query parameters, appended URL-encoded.
    #[serde(default)]
    pub params: BTreeMap<String, OneOrMany>,
    /// Headers: name to a value or a list of values.
    #[serde(default)]
    pub headers: BTreeMap<String, OneOrMany>,
    /// The body.
    #[serde(default)]
    pub body: Option<String>,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    pub body_encoding: Option<String>,
    /// A URL-encoded form body: field name to a value or several (instead of `body`).
    #[serde(default)]
    pub form: Option<BTreeMap<String, OneOrMany>>,
    /// A `multipart/form-data` body (instead of `body`).
    #[serde(default)]
    pub multipart: Option<Vec<PartSpec>>,
    /// Per-call options.
    #[serde(default)]
    pub options: OptionsSpec,
}

/// A header or parameter value, or several.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

/// One part of a multipart body: a field, or a file when `filename` is set.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PartSpec {
    /// The field name.
    pub name: String,
    /// The content as text.
    #[serde(default)]
    pub value: Option<String>,
    /// The content as base64 (file bytes).
    #[serde(default)]
    pub data: Option<String>,
    /// The file name.
    #[serde(default)]
    pub filename: Option<String>,
    /// The part's media type.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `proxy_configuration` as received; `Debug` shows only its selectors.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct ProxyConfiguration(pub serde_json::Value);

/// Per-call options.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct OptionsSpec {
    /// The client identity.
    #[serde(default, alias = "client_cert_configuration")]
    pub client_cert: Option<StoreSpec>,
    /// `system`, `custom` or `both`.
    #[serde(default)]
    pub trust: Option<TrustMode>,
    /// The custom trust store.
    #[serde(default)]
    pub ca_store: Option<StoreSpec>,
    /// Skip server certificate verification.
    #[serde(default, alias = "disable_ssl_validation")]
    pub insecure: bool,
    /// TLS server name override.
    #[serde(default)]
    pub sni: Option<String>,
    /// `HOST:PORT:ADDRESS` pins.
    #[serde(default)]
    pub resolve: Vec<String>,
    /// `1.2` or `1.3`.
    #[serde(default)]
    pub tls_min: Option<String>,
    /// `1.2` or `1.3`.
    #[serde(default)]
    pub tls_max: Option<String>,
    /// `auto`, `http1.1` or `http2`.
    #[serde(default)]
    pub http: Option<String>,
    /// Whole-job limit in seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// TCP connect (and TLS handshake) limit in seconds.
    #[serde(default)]
    pub connect_timeout: Option<f64>,
    /// Request-to-response-head limit in seconds.
    #[serde(default)]
    pub first_byte_timeout: Option<f64>,
    /// Response body limit in bytes.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Follow redirects (default: for GET and HEAD only).
    #[serde(default, alias = "follow_redirects", deserialize_with = "flag")]
    pub follow_redirects: Option<bool>,
    /// The most redirects followed (default 10).
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// Client identities for redirect hops to other hosts than the URL's.
    #[serde(default)]
    pub host_certs: Vec<HostCertSpec>,
    /// Reuse kept-alive connections made with exactly the same identity, trust and proxy.
    #[serde(default)]
    pub keep_alive: bool,
    /// How long this job's kept-alive connection may wait idle for the next job, in seconds
    /// (default 30).
    #[serde(default)]
    pub keep_alive_idle: Option<f64>,
    /// A proxy for every request, `http://[user:password@]host:port`.
    #[serde(default, deserialize_with = "password")]
    pub proxy: Option<Password>,
    /// The reference system's `proxy_configuration` (an object, or a JSON string).
    #[serde(default, alias = "proxy_configuration")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    /// Response head limit in bytes.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Decoded (decompressed) body limit in bytes.
    #[serde(default)]
    pub max_decoded_bytes: Option<u64>,
}

/// A client identity for redirect hops to the hosts it names: the identity of the most
/// specific entry matching a hop's host and port is presented there.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostCertSpec {
    /// Host patterns: `host`, `host:port`, `*.domain` (any depth) or `*`.
    pub hosts: Vec<String>,
    /// The identity, in the same shape as `clientCert`.
    pub client_cert: StoreSpec,
}

/// A keystore, trust store or certificate/key pair, by path or inline (base64).
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// A keystore or trust store file.
    #[serde(default, alias = "keystorePath")]
    pub path: Option<PathBuf>,
    /// The same, inline, base64.
    #[serde(default)]
    pub data: Option<String>,
    /// The store password.
    #[serde(default, alias = "keystorePassword", deserialize_with = "password")]
    pub password: Option<Password>,
    /// The key password, when it differs.
    #[serde(default, deserialize_with = "password")]
    pub key_password: Option<Password>,
    /// The private-key entry to use.
    #[serde(default)]
    pub alias: Option<String>,
    /// A separate private key file (then `path`/`data` is the certificate).
    #[serde(default)]
    pub key_path: Option<PathBuf>,
    /// The same, inline, base64.
    #[serde(default)]
    pub key_data: Option<String>,
}

impl JobSpec {
    /// Checks the spec and builds the job.
    pub fn into_job(self) -> Result<Job, JobError> {
        let mut builder = Job::builder(self.method.as_deref().unwrap_or("GET"), self.url.as_str());
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        for (name, values) in self.params {
            for value in values.into_vec() {
                builder = builder.param(name.clone(), value);
            }
        }
        for (name, values) in self.headers {
            for value in values.into_vec() {
                builder = builder.header(name.clone(), value);
            }
        }
        if let Some(body) = self.body {
            builder = match self.body_encoding.as_deref() {
                None | Some("utf8") => builder.body(body),
                Some("base64") => builder.body(decode(&body, "body")?),
                Some(other) => {
                    return Err(JobError::new(format!("unknown body encoding '{other}'")));
                }
            };
        }
        match (self.form, self.multipart) {
            (Some(_), Some(_)) => {
                return Err(JobError::new(
                    "a job has either form or multipart, not both",
                ));
            }
            (Some(form), None) => {
                let fields: Vec<(String, String)> = form
                    .into_iter()
                    .flat_map(|(name, values)| {
                        values
                            .into_vec()
                            .into_iter()
                            .map(move |v| (name.clone(), v))
                    })
                    .collect();
                builder = builder.form(fields.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            }
            (None, Some(parts)) => {
                let mut built = Vec::with_capacity(parts.len());
                for part in parts {
                    let data = match (part.value, part.data) {
                        (Some(text), None) => Bytes::from(text),
                        (None, Some(data)) => decode(&data, "a multipart part")?,
                        _ => {
                            return Err(JobError::new(
                                "a multipart part needs exactly one of value and data",
                            ));
                        }
                    };
                    built.push(Part {
                        name: part.name,
                        data,
                        filename: part.filename,
                        content_type: part.content_type,
                    });
                }
                builder = builder.multipart(&built);
            }
            (None, None) => {}
        }
        let options = self.options;
        if let Some(follow) = options.follow_redirects {
            builder = builder.follow_redirects(follow);
        }
        if let Some(limit) = options.max_redirects {
            builder = builder.max_redirects(limit);
        }
        builder = builder.keep_alive(options.keep_alive);
        if let Some(seconds) = options.keep_alive_idle {
            builder = builder.keep_alive_idle(seconds_to_duration(seconds).map_err(|_| {
                JobError::new(format!(
                    "keepAliveIdle '{seconds}' is not a positive number of seconds"
                ))
            })?);
        }
        match (&options.proxy, &options.proxy_configuration) {
            (Some(_), Some(_)) => {
                return Err(JobError::new(
                    "a job has either proxy or proxyConfiguration, not both",
                ));
            }
            (Some(proxy), None) => {
                builder = builder.proxy(ProxyRules::all(Proxy::parse(proxy.expose())?));
            }
            (None, Some(ProxyConfiguration(serde_json::Value::String(text)))) => {
                builder = builder.proxy(ProxyRules::from_reference_json(text)?);
            }
            (None, Some(ProxyConfiguration(value))) => {
                builder = builder.proxy(ProxyRules::from_reference_json(&value.to_string())?);
            }
            (None, None) => {}
        }
        if let Some(limit) = options.max_header_bytes {
            builder = builder
                .request_header_limit(limit)
                .response_header_limit(limit);
        }
        if let Some(limit) = options.max_decoded_bytes {
            builder = builder.decoded_limit(limit);
        }
        if let Some(identity) = options.client_cert {
            builder = builder.identity(identity_source(identity, "clientCert")?);
        }
        for (index, rule) in options.host_certs.into_iter().enumerate() {
            let what = format!("hostCerts[{index}]");
            if rule.hosts.is_empty() {
                return Err(JobError::new(format!("{what} needs at least one host")));
            }
            let identity = identity_source(rule.client_cert, &format!("{what}.clientCert"))?;
            for host in &rule.hosts {
                let pattern = HostPattern::parse(host).map_err(|error| {
                    JobError::new(format!("{what}: '{host}' is not a host pattern: {error}"))
                })?;
                builder = builder.identity_for_hosts(pattern, identity.clone());
            }
        }
        if let Some(store) = options.ca_store {
            builder = builder.trust_store(TrustSource {
                source: source(store.path, store.data, "caStore")?,
                password: store.password,
            });
        }
        if let Some(mode) = options.trust {
            builder = builder.trust(mode);
        }
        builder = builder.insecure(options.insecure);
        if let Some(sni) = options.sni {
            builder = builder.sni(sni);
        }
        for pin in &options.resolve {
            let (host, port, address) = parse_resolve(pin)?;
            builder = builder.resolve(host, port, address);
        }
        if let Some(version) = options.tls_min {
            builder = builder.tls_min(tls_version(&version)?);
        }
        if let Some(version) = options.tls_max {
            builder = builder.tls_max(tls_version(&version)?);
        }
        if let Some(http) = options.http {
            builder = builder.http(match http.to_ascii_lowercase().as_str() {
                "auto" => HttpVersion::Auto,
                "http1.1" | "http/1.1" | "1.1" => HttpVersion::Http1,
                "http2" | "h2" | "2" => HttpVersion::Http2,
                other => return Err(JobError::new(format!("unknown HTTP version '{other}'"))),
            });
        }
        if let Some(seconds) = options.timeout {
            builder = builder.timeout(seconds_to_duration(seconds)?);
        }
        if let Some(seconds) = options.connect_timeout {
            builder = builder.connect_timeout(seconds_to_duration(seconds)?);
        }
        if let Some(seconds) = options.first_byte_timeout {
            builder = builder.first_byte_timeout(seconds_to_duration(seconds)?);
        }
        if let Some(limit) = options.max_body_bytes {
            builder = builder.body_limit(limit);
        }
        builder.build()
    }
}

/// Parses `HOST:PORT:ADDRESS` (curl's `--resolve`; IPv6 addresses may be in brackets).
pub fn parse_resolve(text: &str) -> Result<(String, u16, std::net::IpAddr), JobError> {
    let bad = || JobError::new(format!("'{text}' is not HOST:PORT:ADDRESS"));
    let (host, rest) = text.split_once(':').ok_or_else(bad)?;
    let (port, address) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address = address.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port, address))
}

/// Seconds (possibly fractional) as a duration; zero, negative and absurd values are refused.
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, JobError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| JobError::new(format!("'{seconds}' is not a positive number of seconds")))
}

/// A client identity: a keystore, or a certificate and a separate key.
fn identity_source(spec: StoreSpec, what: &str) -> Result<IdentitySource, JobError> {
    let source = source_of(spec.path, spec.data, what)?;
    Ok(match (spec.key_path, spec.key_data) {
        (None, None) => IdentitySource::Keystore {
            source,
            password: spec.password,
            key_password: spec.key_password,
            alias: spec.alias,
        },
        (path, data) => IdentitySource::Pair {
            certificates: source,
            key: source_of(path, data, &format!("{what} key"))?,
            key_password: spec.key_password.or(spec.password),
        },
    })
}

fn tls_version(text: &str) -> Result<TlsVersion, JobError> {
    TlsVersion::parse(text)
        .ok_or_else(|| JobError::new(format!("unknown TLS version '{text}': use 1.2 or 1.3")))
}

fn source(path: Option<PathBuf>, data: Option<String>, what: &str) -> Result<Source, JobError> {
    source_of(path, data, what)
}

fn source_of(path: Option<PathBuf>, data: Option<String>, what: &str) -> Result<Source, JobError> {
    match (path, data) {
        (Some(path), None) => Ok(Source::Path(path)),
        (None, Some(data)) => Ok(Source::Bytes(decode(&data, what)?)),
        _ => Err(JobError::new(format!(
            "{what} needs exactly one of path and data"
        ))),
    }
}

fn decode(text: &str, what: &str) -> Result<Bytes, JobError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Bytes::from)
        .map_err(|_| JobError::new(format!("{what} is not valid base64")))
}

fn password<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Password>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(Password::new))
}

/// `true`/`false` as a JSON boolean or as the reference system's strings `'true'`/`'false'`.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Option::<Flag>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Flag::Bool(value)) => Ok(Some(value)),
        Some(Flag::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "'{other}' is not true or false"
            ))),
        },
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(value) => vec![value],
            Self::Many(values) => values,
        }
    }
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(String::len))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ProxyConfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            serde_json::Value::Object(map) => f
                .debug_tuple("ProxyConfiguration")
                .field(&map.keys().collect::<Vec<_>>())
                .finish(),
            _ => f.write_str("ProxyConfiguration(***)"),
        }
    }
}

impl fmt::Debug for OneOrMany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests;
