//! The job API's job object: parsing, templates, the per-job caps, and the plan the agent turns
//! into an [`engine::Job`]. The reference `config` names are in `config.rs`, the body kinds in
//! `body.rs`.
//!
//! A job over one of its caps ([`JobLimits`]: template output, headers, params, multipart
//! parts) is refused with `request.too_large` before anything is built for it. Messages never
//! carry the values of the job's fields: a serde error says what type was wrong, not what was
//! there (a misplaced password stays unseen).

mod body;
mod config;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use engine::{Job, JobBuilder, TrustMode};
use keystore::Password;
use serde::Deserialize;
use serde_json::Value;

use super::template::{TemplateError, Templates};
use crate::config::JobLimits;

pub(crate) use config::CONFIG_NAMES;

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

/// What rendering needs: the job's templates and its caps.
struct Fill<'a> {
    templates: Templates<'a>,
    limits: &'a JobLimits,
}

impl Rejection {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: "request.invalid",
            message: message.into(),
            hint: "fix the job (see docs/job-api.md)".into(),
        }
    }

    /// A job over a per-job cap: `what` says what was counted, `setting` names the cap.
    pub(crate) fn too_large(what: impl fmt::Display, cap: usize, setting: &str) -> Self {
        Self {
            kind: "request.too_large",
            message: format!("{what}, above the cap of {cap} ({setting})"),
            hint: format!("make the job smaller, or raise {setting} on the downloader"),
        }
    }

    /// A raw job that does not deserialize; the message says what was wrong, never the value.
    pub(crate) fn not_a_job(error: &serde_json::Error) -> Self {
        Self::invalid(format!("not a job: {}", without_values(&error.to_string())))
    }

    fn template(error: TemplateError, where_: &str) -> Self {
        match error {
            TemplateError::TooLarge { cap } => Self::too_large(
                format_args!("templates would add more than {cap} bytes to the job ({where_})"),
                cap,
                "DOWNLOADER_MAX_TEMPLATE_OUTPUT",
            ),
            other => Self::invalid(format!("{where_}: {other}")),
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
    /// Applies templates and `config` within `limits`, and starts the engine job.
    pub(crate) fn plan(self, max_body: u64, limits: &JobLimits) -> Result<Plan, Rejection> {
        let mut vars = BTreeMap::new();
        for (name, value) in &self.vars {
            let text = scalar(value).ok_or_else(|| {
                Rejection::invalid(format!("vars.{name} must be a string, number or boolean"))
            })?;
            vars.insert(name.clone(), text);
        }
        let fill = Fill {
            templates: Templates::new(&vars, limits.template_output),
            limits,
        };
        let id = self.id.as_ref().and_then(scalar);
        let method = self.method.clone().unwrap_or_else(|| "GET".into());
        check_method(&method)?;
        let url = fill.text(&self.url, "url")?;
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
        builder = fill.add_params(builder, &self.params)?;
        let (mut builder, has_content_type) = fill.add_headers(builder, &self.headers)?;
        if let Some(body) = &self.body {
            let (bytes, content_type) = body::bytes(body, &fill)?;
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
            plan.apply(&name, value, &fill)?;
        }
        Ok(plan)
    }
}

impl Fill<'_> {
    /// Adds the job's query parameters (each value of a list counts against the cap).
    fn add_params(
        &self,
        mut builder: JobBuilder,
        params: &BTreeMap<String, Value>,
    ) -> Result<JobBuilder, Rejection> {
        let limit = self.limits.params;
        check_count(params, limit, "query parameters", "DOWNLOADER_MAX_PARAMS")?;
        for (name, value) in params {
            for value in many(value, "params", name)? {
                builder = builder.param(name.clone(), self.text(&value, "params")?);
            }
        }
        Ok(builder)
    }

    /// Adds the job's headers (each value of a list counts against the cap); true when one of
    /// them is `Content-Type`.
    fn add_headers(
        &self,
        mut builder: JobBuilder,
        headers: &BTreeMap<String, Value>,
    ) -> Result<(JobBuilder, bool), Rejection> {
        let limit = self.limits.headers;
        check_count(headers, limit, "headers", "DOWNLOADER_MAX_HEADERS")?;
        let mut has_content_type = false;
        for (name, value) in headers {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            for value in many(value, "headers", name)? {
                builder = builder.header(name.clone(), self.text(&value, "headers")?);
            }
        }
        Ok((builder, has_content_type))
    }

    /// `text` with its templates rendered; `where_` names the field for messages.
    fn text(&self, text: &str, where_: &str) -> Result<String, Rejection> {
        self.templates
            .render(text)
            .map_err(|error| Rejection::template(error, where_))
    }

    /// Every string inside `value`, rendered.
    fn json(&self, value: &mut Value, where_: &str) -> Result<(), Rejection> {
        self.templates
            .render_json(value)
            .map_err(|error| Rejection::template(error, where_))
    }
}

/// A method is an HTTP token (RFC 9110 §5.6.2): anything else (CR, LF, spaces, control
/// characters) could forge a request line or a log line.
fn check_method(method: &str) -> Result<(), Rejection> {
    let token = |byte: u8| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
    // Spaces around it are dropped (as the engine does); CR and LF anywhere are refused.
    let method = method.trim_matches([' ', '\t']);
    if method.is_empty() || method.len() > 64 || !method.bytes().all(token) {
        return Err(Rejection::invalid(
            "method must be an HTTP token of at most 64 characters (letters, digits and !#$%&'*+-.^_`|~)",
        ));
    }
    Ok(())
}

/// How many values the fields give (each item of a list counts).
/// Refuses more values in `fields` than `limit` (`request.too_large`, naming `setting`).
fn check_count(
    fields: &BTreeMap<String, Value>,
    limit: usize,
    what: &str,
    setting: &str,
) -> Result<(), Rejection> {
    let count = count_values(fields);
    if count > limit {
        return Err(Rejection::too_large(
            format_args!("the job has {count} {what}"),
            limit,
            setting,
        ));
    }
    Ok(())
}

fn count_values(fields: &BTreeMap<String, Value>) -> usize {
    fields
        .values()
        .map(|value| value.as_array().map_or(1, Vec::len))
        .sum()
}

/// A serde message without the values it quotes: `invalid type: integer `123456`, expected a
/// string` becomes `invalid type: integer, expected a string`. Field names (after `field`)
/// stay, so `unknown field `follow_redirect`` still says which, and so does what was
/// expected (serde writes it from the types, never from the input).
pub(crate) fn without_values(message: &str) -> String {
    // The last one: a quoted value may itself contain ", expected".
    let (head, expected) = match message.rfind(", expected") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = head;
    while let Some(at) = rest.find(['`', '"']) {
        let (before, from) = rest.split_at(at);
        let quote = from.as_bytes()[0];
        let quoted = &from[1..];
        let end = if quote == b'"' {
            closing_quote(quoted)
        } else {
            quoted.find('`')
        };
        let Some(end) = end else {
            // An unbalanced quote: drop the rest rather than risk showing a value.
            out.push_str(before.trim_end());
            out.push_str(expected);
            return out;
        };
        if quote == b'`' && before.ends_with("field ") {
            out.push_str(before);
            out.push('`');
            out.push_str(&quoted[..end]);
            out.push('`');
        } else {
            out.push_str(before.trim_end());
        }
        rest = &quoted[end + 1..];
    }
    out.push_str(rest);
    out.push_str(expected);
    out
}

/// Where a Debug-quoted string (`"..."` with `\"` escapes) ends.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(at),
            _ => escaped = false,
        }
    }
    None
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
        Value::String(text) => crate::config::parse_bool(text),
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

/// A positive number of seconds up to `most` (fractions allowed), as a JSON number or a string.
fn seconds(value: &Value, most: Duration) -> Option<Duration> {
    Duration::try_from_secs_f64(number(value)?)
        .ok()
        .filter(|limit| !limit.is_zero() && *limit <= most)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_their_values_but_keep_field_names() {
        for (message, expected) in [
            (
                "invalid type: integer `123456`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                r#"invalid type: string "s3cr\"et", expected a map"#,
                "invalid type: string, expected a map",
            ),
            (
                "unknown variant `hunter2`, expected one of `system`, `custom`",
                "unknown variant, expected one of `system`, `custom`",
            ),
            (
                "unknown field `keystorePasword`, expected one of `keystorePath`",
                "unknown field `keystorePasword`, expected one of `keystorePath`",
            ),
            ("missing field `url`", "missing field `url`"),
            ("invalid type: boolean `true", "invalid type: boolean"),
            (
                r#"invalid type: string "Bearer t0k, expected x", expected a map"#,
                "invalid type: string, expected a map",
            ),
        ] {
            assert_eq!(without_values(message), expected, "{message}");
        }
    }

    #[test]
    fn methods_are_tokens() {
        for good in ["GET", "post", "M-SEARCH", "PROPFIND", "X_1!~"] {
            assert!(check_method(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "G ET",
            "GET\r\nX-Forged: 1",
            "GET\n",
            "GÉT",
            "(GET)",
            "A\u{0}",
        ] {
            let error = check_method(bad).expect_err(bad);
            assert_eq!(error.kind, "request.invalid");
            assert!(!error.message.contains('\n'));
        }
        assert!(check_method(&"A".repeat(65)).is_err());
    }
}
