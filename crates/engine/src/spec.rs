//! A job as JSON: what the job API and the queue worker will receive.
//!
//! ```json
//! {"id": "42", "method": "POST", "url": "https://api.internal/x", "params": {"q": "1"},
//!  "headers": {"Content-Type": "application/json"}, "body": "{}",
//!  "options": {"clientCert": {"path": "/certs/a.p12", "password": "..."},
//!              "trust": "both", "caStore": {"path": "/certs/ca.pem"}, "timeout": 5}}
//! ```

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
    /// Reuse kept-alive connections made with exactly the same identity, trust and proxy.
    #[serde(default)]
    pub keep_alive: bool,
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
            let source = source(identity.path, identity.data, "clientCert")?;
            let key = match (identity.key_path, identity.key_data) {
                (None, None) => None,
                (path, data) => Some(source_of(path, data, "clientCert key")?),
            };
            builder = builder.identity(match key {
                Some(key) => IdentitySource::Pair {
                    certificates: source,
                    key,
                    key_password: identity.key_password.or(identity.password),
                },
                None => IdentitySource::Keystore {
                    source,
                    password: identity.password,
                    key_password: identity.key_password,
                    alias: identity.alias,
                },
            });
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
mod tests {
    use super::*;

    #[test]
    fn a_json_job_builds() {
        let spec: JobSpec = serde_json::from_str(
            r#"{"id":"7","method":"post","url":"https://localhost:8443/p",
                "params":{"a":"1","b":["2","3"]},
                "headers":{"Authorization":"Bearer t0k3n-secret"},
                "body":"aGk=","bodyEncoding":"base64",
                "options":{"clientCert":{"keystorePath":"/x.p12","keystorePassword":"pw-s3cret"},
                           "resolve":["localhost:8443:127.0.0.1"],"tlsMin":"1.3","timeout":2.5}}"#,
        )
        .expect("valid JSON");
        let debug = format!("{spec:?}");
        assert!(
            !debug.contains("pw-s3cret") && !debug.contains("t0k3n-secret"),
            "{debug}"
        );
        let job = spec.into_job().expect("valid job");
        assert_eq!(job.display_url(), "https://localhost:8443/p?a=1&b=2&b=3");
        assert_eq!(&job.body[..], b"hi");
        assert_eq!(job.timeout(), Duration::from_millis(2500));
        let debug = format!("{job:?}");
        assert!(
            !debug.contains("pw-s3cret") && !debug.contains("t0k3n-secret"),
            "{debug}"
        );
    }

    #[test]
    fn forms_redirects_proxies_and_keep_alive_from_json() {
        let spec: JobSpec = serde_json::from_str(
            r#"{"method":"POST","url":"https://a.test/","form":{"a":"1","b":["2","3"]},
                "options":{"follow_redirects":"true","maxRedirects":3,"keepAlive":true,
                           "proxy_configuration":{"*":{"address":"p.test","port":3128,
                               "username":"u","password":"pr0xy-s3cret"}}}}"#,
        )
        .expect("valid JSON");
        assert!(!format!("{spec:?}").contains("pr0xy-s3cret"));
        let job = spec.into_job().expect("valid job");
        assert_eq!(&job.body[..], b"a=1&b=2&b=3");
        assert_eq!(job.http_options.follow_redirects, Some(true));
        assert_eq!(job.http_options.max_redirects, 3);
        assert!(job.http_options.keep_alive);
        assert!(!format!("{job:?}").contains("pr0xy-s3cret"));
        let spec: JobSpec = serde_json::from_str(
            r#"{"url":"https://a.test/","multipart":[{"name":"f","data":"AAE=",
                "filename":"x.bin"}],"options":{"proxy":"http://u:pr0xy-s3cret@p.test:1"}}"#,
        )
        .expect("valid JSON");
        assert!(!format!("{spec:?}").contains("pr0xy-s3cret"));
        let job = spec.into_job().expect("valid job");
        assert!(job.body.windows(2).any(|w| w == [0, 1]));
        assert!(!format!("{job:?}").contains("pr0xy-s3cret"));
    }

    #[test]
    fn resolve_pins_parse() {
        let (host, port, address) = parse_resolve("a.test:443:[::1]").expect("valid");
        assert_eq!((host.as_str(), port), ("a.test", 443));
        assert!(address.is_loopback());
        assert!(parse_resolve("a.test:x:127.0.0.1").is_err());
    }
}
