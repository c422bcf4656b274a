//! The job API's job object: parsing, templates, the reference `config` names, and the plan the
//! agent turns into an [`engine::Job`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use engine::{HttpVersion, Job, JobBuilder, TlsVersion, TrustMode};
use keystore::Password;
use serde::Deserialize;
use serde_json::Value;

use super::template::{render, render_json};
use crate::config::{ClientCertJson, parse_bool};

/// Every `config` name a job may use.
pub(crate) const CONFIG_NAMES: &[&str] = &[
    "client_cert_configuration",
    "disable_ssl_validation",
    "follow_redirects",
    "max_redirects",
    "timeout",
    "footprint",
    "trust",
    "sni",
    "resolve",
    "tls_min",
    "tls_max",
    "http_version",
    "keep_alive",
    "keep_alive_idle",
    "proxy",
];

/// A job as posted to the API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiJob {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    config: serde_json::Map<String, Value>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
}

/// Why a job was refused before it ran.
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) hint: String,
}

/// Which client certificate a job asked for.
pub(crate) enum CertChoice {
    /// `client_cert_configuration: null`: none, whatever the defaults say.
    Nothing,
    /// No `client_cert_configuration`: host rules, then the downloader default.
    Inherit,
    /// The job's own.
    Job(JobCert),
}

/// A job's own keystore.
pub(crate) struct JobCert {
    pub(crate) path: Option<String>,
    pub(crate) inline: Option<Bytes>,
    pub(crate) password: Option<Password>,
    pub(crate) key_password: Option<Password>,
    pub(crate) alias: Option<String>,
}

/// A job's extra trust store.
pub(crate) struct JobTrust {
    pub(crate) path: Option<String>,
    pub(crate) inline: Option<Bytes>,
    pub(crate) password: Option<Password>,
    pub(crate) mode: Option<TrustMode>,
}

/// Everything the agent needs to finish building the engine job.
pub(crate) struct Plan {
    pub(crate) id: Option<String>,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) builder: JobBuilder,
    pub(crate) cert: CertChoice,
    pub(crate) trust: Option<JobTrust>,
    pub(crate) insecure: Option<bool>,
    pub(crate) footprint: Option<String>,
    /// The job's own proxy (`Some(None)`: direct, whatever `proxy_configuration` says).
    pub(crate) proxy: Option<Option<engine::Proxy>>,
}

impl Rejection {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: "request.invalid",
            message: message.into(),
            hint: "fix the job (see docs/job-api.md)".into(),
        }
    }
}

/// The job's `id` as text, from a raw JSON job (also when the rest does not parse).
pub(crate) fn raw_id(value: &Value) -> Option<String> {
    value.get("id").and_then(scalar)
}

/// The method and URL of a raw JSON job, for results of jobs that do not parse.
pub(crate) fn raw_request(value: &Value) -> (String, String) {
    let text = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let method = text("method");
    (
        if method.is_empty() {
            "GET".into()
        } else {
            method
        },
        text("url"),
    )
}

impl ApiJob {
    /// Applies templates and `config`, and starts the engine job.
    pub(crate) fn plan(self, max_body: u64) -> Result<Plan, Rejection> {
        let mut vars = BTreeMap::new();
        for (name, value) in &self.vars {
            let text = scalar(value).ok_or_else(|| {
                Rejection::invalid(format!("vars.{name} must be a string, number or boolean"))
            })?;
            vars.insert(name.clone(), text);
        }
        let fill = |text: &str| render(text, &vars).map_err(Rejection::invalid);
        let id = self.id.as_ref().and_then(scalar);
        let method = self.method.clone().unwrap_or_else(|| "GET".into());
        let url = fill(&self.url)?;
        let parsed = url::Url::parse(url.trim())
            .map_err(|error| Rejection::invalid(format!("bad URL: {error}")))?;
        let host = match parsed.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(Rejection::invalid("the URL has no host")),
        };
        let port = parsed.port_or_known_default().unwrap_or(443);
        let mut builder = Job::builder(method.clone(), url.clone()).body_limit(max_body);
        if let Some(id) = &id {
            builder = builder.id(id.clone());
        }
        for (name, value) in &self.params {
            for value in many(value, "params", name)? {
                builder = builder.param(name.clone(), fill(&value)?);
            }
        }
        let mut has_content_type = false;
        for (name, value) in &self.headers {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            for value in many(value, "headers", name)? {
                builder = builder.header(name.clone(), fill(&value)?);
            }
        }
        if let Some(body) = &self.body {
            let (bytes, content_type) = body_bytes(body, &fill)?;
            builder = builder.body(bytes);
            if let (Some(content_type), false) = (content_type, has_content_type) {
                builder = builder.header("Content-Type", content_type);
            }
        }
        let mut plan = Plan {
            id,
            method,
            url,
            host,
            port,
            builder,
            cert: CertChoice::Inherit,
            trust: None,
            insecure: None,
            footprint: None,
            proxy: None,
        };
        for (name, value) in self.config {
            let mut value = value;
            if name != "client_cert_configuration" {
                render_json(&mut value, &vars).map_err(Rejection::invalid)?;
            }
            plan.apply(&name, value, &vars)?;
        }
        Ok(plan)
    }
}

impl Plan {
    fn apply(
        &mut self,
        name: &str,
        value: Value,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), Rejection> {
        let bad = |what: &str| Rejection::invalid(format!("config.{name} {what}"));
        let mut builder = std::mem::replace(&mut self.builder, Job::builder("", ""));
        match name {
            "client_cert_configuration" => self.cert = client_cert(value, vars)?,
            "disable_ssl_validation" => {
                self.insecure = Some(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "follow_redirects" => {
                builder = builder
                    .follow_redirects(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "max_redirects" => {
                let limit = number(&value)
                    .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= f64::from(u32::MAX))
                    .ok_or_else(|| bad("must be a whole number"))?;
                builder = builder.max_redirects(limit as u32);
            }
            "keep_alive" => {
                builder = builder
                    .keep_alive(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "keep_alive_idle" => {
                builder = builder.keep_alive_idle(
                    seconds(&value).ok_or_else(|| bad("must be a positive number of seconds"))?,
                )
            }
            "proxy" => self.proxy = Some(proxy(value)?),
            "timeout" => {
                builder = builder.timeout(
                    seconds(&value).ok_or_else(|| bad("must be a positive number of seconds"))?,
                );
            }
            "footprint" => {
                self.footprint = Some(scalar(&value).ok_or_else(|| bad("must be a string"))?)
            }
            "trust" => self.trust = Some(trust(value)?),
            "sni" => builder = builder.sni(value.as_str().ok_or_else(|| bad("must be a string"))?),
            "resolve" => {
                let pins: Vec<String> = match value {
                    Value::String(one) => vec![one],
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect(),
                    _ => return Err(bad("must be HOST:PORT:ADDRESS or a list of them")),
                };
                for pin in pins {
                    let (host, port, address) =
                        engine::parse_resolve(&pin).map_err(|error| bad(&error.to_string()))?;
                    builder = builder.resolve(host, port, address);
                }
            }
            "tls_min" | "tls_max" => {
                let text = scalar(&value).ok_or_else(|| bad("must be 1.2 or 1.3"))?;
                let version = TlsVersion::parse(&text).ok_or_else(|| bad("must be 1.2 or 1.3"))?;
                builder = if name == "tls_min" {
                    builder.tls_min(version)
                } else {
                    builder.tls_max(version)
                };
            }
            "http_version" => {
                let text = scalar(&value).ok_or_else(|| bad("must be auto, http1.1 or http2"))?;
                builder = builder.http(match text.to_ascii_lowercase().as_str() {
                    "auto" => HttpVersion::Auto,
                    "http1.1" | "http/1.1" | "1.1" => HttpVersion::Http1,
                    "http2" | "h2" | "2" => HttpVersion::Http2,
                    _ => return Err(bad("must be auto, http1.1 or http2")),
                });
            }
            unknown => {
                return Err(Rejection::invalid(format!(
                    "unknown config name '{unknown}'; known names: {}",
                    CONFIG_NAMES.join(", ")
                )));
            }
        }
        self.builder = builder;
        Ok(())
    }
}

fn client_cert(value: Value, vars: &BTreeMap<String, String>) -> Result<CertChoice, Rejection> {
    let bad = |what: String| Rejection::invalid(format!("config.client_cert_configuration {what}"));
    let mut value = match value {
        Value::Null => return Ok(CertChoice::Nothing),
        Value::String(text) if text.trim().is_empty() || text.trim() == "null" => {
            return Ok(CertChoice::Nothing);
        }
        // The reference system sends a JSON string; a template may stand for all of it.
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(parsed) => parsed,
            Err(_) => {
                let rendered = render(&text, vars).map_err(Rejection::invalid)?;
                serde_json::from_str(&rendered)
                    .map_err(|error| bad(format!("is not JSON: {error}")))?
            }
        },
        object @ Value::Object(_) => object,
        _ => return Err(bad("must be an object, a JSON string or null".into())),
    };
    if value.is_null() {
        return Ok(CertChoice::Nothing);
    }
    render_json(&mut value, vars).map_err(Rejection::invalid)?;
    let json: ClientCertJson = serde_json::from_value(value).map_err(|error| {
        bad(format!(
            "{error}; known keys: keystorePath, keystorePassword, keyPassword, keyAlias, keystoreBase64"
        ))
    })?;
    let inline = match json.keystore_base64 {
        Some(text) => {
            Some(decode(&text).ok_or_else(|| bad("keystoreBase64 is not valid base64".into()))?)
        }
        None => None,
    };
    if inline.is_some() == json.keystore_path.is_some() {
        return Err(bad(
            "needs exactly one of keystorePath and keystoreBase64".into()
        ));
    }
    Ok(CertChoice::Job(JobCert {
        path: json.keystore_path,
        inline,
        password: json.keystore_password.map(Password::new),
        key_password: json.key_password.map(Password::new),
        alias: json.key_alias,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrustJson {
    #[serde(default, alias = "keystorePath")]
    path: Option<String>,
    #[serde(default, alias = "keystoreBase64")]
    base64: Option<String>,
    #[serde(default, alias = "keystorePassword")]
    password: Option<String>,
    #[serde(default)]
    mode: Option<TrustMode>,
}

fn trust(value: Value) -> Result<JobTrust, Rejection> {
    let bad = |what: String| Rejection::invalid(format!("config.trust {what}"));
    let json = match value {
        Value::String(path) => TrustJson {
            path: Some(path),
            base64: None,
            password: None,
            mode: None,
        },
        object @ Value::Object(_) => serde_json::from_value(object)
            .map_err(|error| bad(format!("{error}; known keys: path, base64, password, mode")))?,
        _ => {
            return Err(bad(
                "must be a path or {\"path\"|\"base64\", \"password\", \"mode\"}".into(),
            ));
        }
    };
    let inline = match json.base64 {
        Some(text) => Some(decode(&text).ok_or_else(|| bad("base64 is not valid base64".into()))?),
        None => None,
    };
    if inline.is_some() && json.path.is_some() {
        return Err(bad("takes one of path and base64".into()));
    }
    if inline.is_none() && json.path.is_none() && json.mode.is_none() {
        return Err(bad("needs a path, base64 or mode".into()));
    }
    Ok(JobTrust {
        path: json.path,
        inline,
        password: json.password.map(Password::new),
        mode: json.mode,
    })
}

/// The body bytes and a default Content-Type.
fn body_bytes(
    body: &Value,
    fill: &dyn Fn(&str) -> Result<String, Rejection>,
) -> Result<(Bytes, Option<String>), Rejection> {
    match body {
        Value::Null => Ok((Bytes::new(), None)),
        Value::String(text) => Ok((Bytes::from(fill(text)?), None)),
        Value::Object(map) if map.len() == 1 => {
            let (kind, value) = map
                .iter()
                .next()
                .ok_or_else(|| Rejection::invalid("empty body object"))?;
            match kind.as_str() {
                "base64" => {
                    let text = value
                        .as_str()
                        .ok_or_else(|| Rejection::invalid("body.base64 must be a string"))?;
                    Ok((
                        decode(text)
                            .ok_or_else(|| Rejection::invalid("body.base64 is not valid base64"))?,
                        None,
                    ))
                }
                "form" => {
                    let fields = value.as_object().ok_or_else(|| {
                        Rejection::invalid("body.form must be an object of fields")
                    })?;
                    let mut form = url::form_urlencoded::Serializer::new(String::new());
                    for (name, value) in fields {
                        for value in many(value, "body.form", name)? {
                            form.append_pair(name, &fill(&value)?);
                        }
                    }
                    Ok((
                        Bytes::from(form.finish()),
                        Some("application/x-www-form-urlencoded".to_owned()),
                    ))
                }
                "multipart" => {
                    let parts = value.as_array().ok_or_else(|| {
                        Rejection::invalid("body.multipart must be a list of parts")
                    })?;
                    let parts = parts
                        .iter()
                        .map(|part| multipart_part(part, fill))
                        .collect::<Result<Vec<_>, _>>()?;
                    let encoded = engine::multipart(&parts);
                    Ok((encoded.data, Some(encoded.content_type)))
                }
                other => Err(Rejection::invalid(format!(
                    "unknown body kind '{other}': use a string, {{\"base64\"}}, {{\"form\"}} or {{\"multipart\"}}"
                ))),
            }
        }
        _ => Err(Rejection::invalid(
            "body must be a string, {\"base64\": ...}, {\"form\": {...}} or {\"multipart\": [...]}",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartJson {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    base64: Option<String>,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
}

/// One multipart part: `{"name", "value"}` (templates allowed) or `{"name", "base64",
/// "filename", "contentType"}`.
fn multipart_part(
    part: &Value,
    fill: &dyn Fn(&str) -> Result<String, Rejection>,
) -> Result<engine::Part, Rejection> {
    let json: PartJson = serde_json::from_value(part.clone()).map_err(|error| {
        Rejection::invalid(format!(
            "body.multipart part: {error}; known keys: name, value, base64, filename, contentType"
        ))
    })?;
    let data = match (json.value, json.base64) {
        (Some(text), None) => Bytes::from(fill(&text)?),
        (None, Some(text)) => decode(&text).ok_or_else(|| {
            Rejection::invalid(format!(
                "body.multipart part '{}': base64 is not valid",
                json.name
            ))
        })?,
        _ => {
            return Err(Rejection::invalid(format!(
                "body.multipart part '{}' needs exactly one of value and base64",
                json.name
            )));
        }
    };
    Ok(engine::Part {
        name: json.name,
        data,
        filename: json.filename,
        content_type: json.content_type,
    })
}

/// `config.proxy`: null or `"NONE"` = direct; `"http://[user:password@]host:port"`; or the
/// reference shape `{"address", "port", "username", "password"}`.
fn proxy(value: Value) -> Result<Option<engine::Proxy>, Rejection> {
    let bad = |what: String| Rejection::invalid(format!("config.proxy {what}"));
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.trim().eq_ignore_ascii_case("none") => Ok(None),
        Value::String(text) => engine::Proxy::parse(&text)
            .map(Some)
            .map_err(|error| bad(error.to_string())),
        Value::Object(map) => {
            let text = |name: &str| map.get(name).and_then(scalar);
            let address = text("address").ok_or_else(|| bad("needs \"address\"".into()))?;
            if address.trim().eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            let address = match text("port") {
                Some(port) => format!("{}:{port}", address.trim().trim_end_matches('/')),
                None => address,
            };
            let proxy = engine::Proxy::parse(&address).map_err(|error| bad(error.to_string()))?;
            Ok(Some(match (text("username"), text("password")) {
                (Some(user), password) => {
                    proxy.with_credentials(user, Password::new(password.unwrap_or_default()))
                }
                (None, _) => proxy,
            }))
        }
        _ => Err(bad(
            "must be null, a proxy URL or {\"address\", \"port\", ...}".into(),
        )),
    }
}

fn many(value: &Value, what: &str, name: &str) -> Result<Vec<String>, Rejection> {
    let bad = || {
        Rejection::invalid(format!(
            "{what}.{name} must be a string, number, boolean or a list of them"
        ))
    };
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| scalar(item).ok_or_else(bad))
            .collect(),
        other => Ok(vec![scalar(other).ok_or_else(bad)?]),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(text) => parse_bool(text),
        Value::Null => Some(false),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A positive number of seconds (fractions allowed), as a JSON number or a string.
fn seconds(value: &Value) -> Option<Duration> {
    Duration::try_from_secs_f64(number(value)?)
        .ok()
        .filter(|limit| !limit.is_zero())
}

fn decode(text: &str) -> Option<Bytes> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .map(Bytes::from)
}

impl fmt::Debug for ApiJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiJob")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("config", &self.config.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CertChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nothing => f.write_str("Nothing"),
            Self::Inherit => f.write_str("Inherit"),
            Self::Job(cert) => f.debug_tuple("Job").field(&cert.path).finish(),
        }
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("host", &self.host)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}
