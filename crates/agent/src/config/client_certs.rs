//! Client certificates from the configuration: the `[[client_certs]]` rules of the file and
//! the reference system's `client_cert_configuration`.

use std::path::PathBuf;

use keystore::Password;

use super::source::Value;
use super::{CertRef, ClientCertJson, HostPattern, Lookup};
use crate::error::Error;

/// The keys a `[[client_certs]]` table may have.
const RULE_KEYS: &[&str] = &[
    "hosts",
    "keystore",
    "password",
    "password_env",
    "password_file",
    "key_password",
    "alias",
];

/// A `[[client_certs]]` rule.
#[derive(Debug, Clone)]
pub struct HostRule {
    /// The hosts it covers.
    pub hosts: Vec<HostPattern>,
    /// The keystore.
    pub cert: CertRef,
}

impl Lookup<'_> {
    /// The `[[client_certs]]` rules of the file.
    pub(super) fn host_rules(&self) -> Result<Vec<HostRule>, Error> {
        let Some(value) = self.file.get("client_certs") else {
            return Ok(Vec::new());
        };
        let rules = value.as_array().ok_or_else(|| {
            Error::config(
                "client_certs (config file)",
                "must be [[client_certs]] tables",
            )
        })?;
        let mut parsed = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let setting = format!("client_certs[{index}] (config file)");
            let table = rule
                .as_table()
                .ok_or_else(|| Error::config(setting.clone(), "must be a table"))?;
            parsed.push(self.host_rule(table, setting)?);
        }
        Ok(parsed)
    }

    /// One `[[client_certs]]` table, named `setting` in errors.
    fn host_rule(&self, table: &toml::Table, setting: String) -> Result<HostRule, Error> {
        for key in table.keys() {
            if !RULE_KEYS.contains(&key.as_str()) {
                return Err(Error::config(
                    setting,
                    format!(
                        "unknown key '{key}'; known: hosts, keystore, password, password_env, password_file, key_password, alias"
                    ),
                ));
            }
        }
        let patterns = host_patterns(table, &setting)?;
        let keystore = table
            .get("keystore")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| Error::config(setting.clone(), "needs keystore = \"path\""))?;
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let password = self.rule_password(
            text("password"),
            text("password_env"),
            text("password_file"),
            setting,
        )?;
        Ok(HostRule {
            hosts: patterns,
            cert: CertRef {
                path: PathBuf::from(keystore),
                password,
                key_password: text("key_password").map(Password::new),
                alias: text("alias"),
            },
        })
    }

    /// A rule's password: given, from an environment variable, or from a file (at most one).
    fn rule_password(
        &self,
        password: Option<String>,
        env: Option<String>,
        file: Option<String>,
        setting: String,
    ) -> Result<Option<Password>, Error> {
        match (password, env, file) {
            (Some(password), None, None) => Ok(Some(Password::new(password))),
            (None, Some(name), None) => Ok(Some(Password::new(self.env.var(&name).ok_or_else(
                || Error::config(setting.clone(), format!("password_env: {name} is not set")),
            )?))),
            (None, None, Some(file)) => {
                let text =
                    super::read_setting_file(std::path::Path::new(&file)).map_err(|problem| {
                        Error::config(setting.clone(), format!("password_file {problem}"))
                    })?;
                Ok(Some(Password::new(text)))
            }
            (None, None, None) => Ok(None),
            _ => Err(Error::config(
                setting,
                "give at most one of password, password_env and password_file",
            )),
        }
    }
}

/// A rule's `hosts`: host, host:port or *.domain patterns, never `*`.
fn host_patterns(table: &toml::Table, setting: &str) -> Result<Vec<HostPattern>, Error> {
    let hosts = table
        .get("hosts")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| Error::config(setting, "needs hosts = [\"host\", ...]"))?;
    let mut patterns = Vec::with_capacity(hosts.len());
    for host in hosts {
        let refuse = |why: String| {
            Error::config(
                setting,
                format!("{host:?} is not host, host:port or *.domain: {why}"),
            )
        };
        let text = host
            .as_str()
            .ok_or_else(|| refuse("a host rule names hosts as strings".into()))?;
        let pattern = HostPattern::parse(text).map_err(|error| refuse(error.to_string()))?;
        if pattern.is_any() {
            return Err(refuse(
                "'*' would cover every host: use client_cert_configuration for a \
                 downloader-wide certificate"
                    .into(),
            ));
        }
        patterns.push(pattern);
    }
    Ok(patterns)
}

/// The reference system's `client_cert_configuration`: the downloader-wide certificate.
pub(super) fn parse_default_cert(value: &Value) -> Result<Option<CertRef>, Error> {
    if value.text.trim().is_empty() || value.text.trim() == "null" {
        return Ok(None);
    }
    let invalid = |error: serde_json::Error| {
        Error::config(
            value.setting.clone(),
            format!("must be JSON {{\"keystorePath\": ..., \"keystorePassword\": ...}}: {error}"),
        )
    };
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&value.text).map_err(invalid)?;
    // Passwords from files (Docker and Kubernetes secrets): for the configured certificate
    // only, never for jobs, which must not read the agent's files.
    let store_file = password_file(&mut object, "keystorePasswordFile", value)?;
    let key_file = password_file(&mut object, "keyPasswordFile", value)?;
    let json: ClientCertJson =
        serde_json::from_value(serde_json::Value::Object(object)).map_err(invalid)?;
    let both = |field: &str| {
        Error::config(
            value.setting.clone(),
            format!("give {field} or {field}File, not both"),
        )
    };
    let keystore_password = match (json.keystore_password, store_file) {
        (Some(_), Some(_)) => return Err(both("keystorePassword")),
        (password, file) => password.or(file),
    };
    let key_password = match (json.key_password, key_file) {
        (Some(_), Some(_)) => return Err(both("keyPassword")),
        (password, file) => password.or(file),
    };
    if json.keystore_base64.is_some() {
        return Err(Error::config(
            value.setting.clone(),
            "keystoreBase64 is for jobs; give keystorePath",
        ));
    }
    let path = json
        .keystore_path
        .ok_or_else(|| Error::config(value.setting.clone(), "needs keystorePath"))?;
    Ok(Some(CertRef {
        path: PathBuf::from(path),
        password: keystore_password.map(Password::new),
        key_password: key_password.map(Password::new),
        alias: json.key_alias,
    }))
}

/// Removes `field` (a file path) from `object` and reads the password it names.
fn password_file(
    object: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
    value: &Value,
) -> Result<Option<String>, Error> {
    let Some(path) = object.remove(field) else {
        return Ok(None);
    };
    let path = path
        .as_str()
        .ok_or_else(|| Error::config(value.setting.clone(), format!("{field} must be a path")))?;
    super::read_setting_file(std::path::Path::new(path))
        .map(Some)
        .map_err(|problem| Error::config(value.setting.clone(), format!("{field}: {problem}")))
}
