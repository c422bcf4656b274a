//! A job's `config` object: the reference system's per-call names plus ours, applied to the
//! plan. Numbers that become clocks are bounded here (and again by the engine), so
//! `timeout: 1e19` is `request.invalid`, not an overflow.

use engine::{HttpVersion, Job, JobBuilder, TlsVersion, TrustMode};
use keystore::Password;
use serde::Deserialize;
use serde_json::Value;

use super::{CertChoice, Fill, JobCert, JobTrust, Plan, Rejection};
use super::{boolean, decode, number, scalar, seconds, without_values};
use crate::config::{ClientCertJson, secret_text};

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

impl Plan {
    /// Applies one `config` entry (its templates rendered first).
    pub(super) fn apply(
        &mut self,
        name: &str,
        mut value: Value,
        fill: &Fill<'_>,
    ) -> Result<(), Rejection> {
        let where_ = format!("config.{name}");
        if name == "client_cert_configuration" {
            // Rendered in `client_cert`, which may first have to parse a JSON string.
            self.cert = client_cert(value, fill)?;
            return Ok(());
        }
        fill.json(&mut value, &where_)?;
        let bad = |what: &str| Rejection::invalid(format!("{where_} {what}"));
        let mut builder = std::mem::replace(&mut self.builder, Job::builder("", ""));
        match name {
            "disable_ssl_validation" => {
                self.insecure = Some(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "follow_redirects" => {
                builder = builder
                    .follow_redirects(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "keep_alive" => {
                builder = builder
                    .keep_alive(boolean(&value).ok_or_else(|| bad("must be true or false"))?);
            }
            "max_redirects" | "keep_alive_idle" | "timeout" => {
                builder = apply_limit(builder, name, &value, &bad)?;
            }
            "proxy" => self.proxy = Some(proxy(value)?),
            "footprint" => {
                self.footprint = Some(scalar(&value).ok_or_else(|| bad("must be a string"))?)
            }
            "trust" => self.trust = Some(trust(value)?),
            "sni" => builder = builder.sni(value.as_str().ok_or_else(|| bad("must be a string"))?),
            "resolve" => builder = resolve(builder, value, &bad)?,
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

/// A numeric `config` entry: `max_redirects`, `keep_alive_idle` or `timeout`, each up to the
/// engine's cap.
fn apply_limit(
    builder: JobBuilder,
    name: &str,
    value: &Value,
    bad: &dyn Fn(&str) -> Rejection,
) -> Result<JobBuilder, Rejection> {
    Ok(match name {
        "max_redirects" => {
            let most = engine::MAX_REDIRECTS_LIMIT;
            let limit = number(value)
                .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= f64::from(most))
                .ok_or_else(|| bad(&format!("must be a whole number from 0 to {most}")))?;
            // A whole number from 0 to `most` (checked above) fits a u32 exactly.
            builder.max_redirects(limit as u32)
        }
        "keep_alive_idle" => {
            let most = engine::MAX_KEEP_ALIVE_IDLE;
            builder.keep_alive_idle(seconds(value, most).ok_or_else(|| {
                bad(&format!(
                    "must be a positive number of seconds, at most {}",
                    most.as_secs()
                ))
            })?)
        }
        _ => {
            let most = engine::MAX_TIMEOUT;
            builder.timeout(seconds(value, most).ok_or_else(|| {
                bad(&format!(
                    "must be a positive number of seconds, at most {}",
                    most.as_secs()
                ))
            })?)
        }
    })
}

/// `config.resolve`: one `HOST:PORT:ADDRESS` pin or a list of them.
fn resolve(
    mut builder: JobBuilder,
    value: Value,
    bad: &dyn Fn(&str) -> Rejection,
) -> Result<JobBuilder, Rejection> {
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
    Ok(builder)
}

fn client_cert(value: Value, fill: &Fill<'_>) -> Result<CertChoice, Rejection> {
    const WHERE: &str = "config.client_cert_configuration";
    let bad = |what: String| Rejection::invalid(format!("{WHERE} {what}"));
    let mut value = match value {
        Value::Null => return Ok(CertChoice::Nothing),
        Value::String(text) if text.trim().is_empty() || text.trim() == "null" => {
            return Ok(CertChoice::Nothing);
        }
        // The reference system sends a JSON string; a template may stand for all of it.
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(parsed) => parsed,
            Err(_) => {
                let rendered = fill.text(&text, WHERE)?;
                serde_json::from_str(&rendered).map_err(|error| {
                    bad(format!(
                        "is not JSON: {}",
                        without_values(&error.to_string())
                    ))
                })?
            }
        },
        object @ Value::Object(_) => object,
        _ => return Err(bad("must be an object, a JSON string or null".into())),
    };
    if value.is_null() {
        return Ok(CertChoice::Nothing);
    }
    fill.json(&mut value, WHERE)?;
    let json = ClientCertJson::deserialize(&value).map_err(|error| {
        bad(format!(
            "{}; known keys: keystorePath, keystorePassword, keyPassword, keyAlias, keystoreBase64",
            without_values(&error.to_string())
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
    #[serde(default, alias = "keystoreBase64", deserialize_with = "secret_text")]
    base64: Option<String>,
    #[serde(default, alias = "keystorePassword", deserialize_with = "secret_text")]
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
        object @ Value::Object(_) => TrustJson::deserialize(&object).map_err(|error| {
            bad(format!(
                "{}; known keys: path, base64, password, mode",
                without_values(&error.to_string())
            ))
        })?,
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
            let password = match map.get("password") {
                None | Some(Value::Null) => None,
                Some(value) => Some(
                    scalar(value)
                        .ok_or_else(|| bad("password must be a string or a number".into()))?,
                ),
            };
            Ok(Some(match (text("username"), password) {
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
