//! The reference system's JSON settings: `client_cert_configuration` and
//! `proxy_configuration`, plus the host patterns shared by client-certificate rules and proxy
//! selectors.

use std::fmt;
use std::path::PathBuf;

use keystore::Password;
use serde::Deserialize;

/// A keystore named by configuration (downloader-wide or a host rule): trusted operator input,
/// so not confined to the certificate directories.
#[derive(Clone)]
pub struct CertRef {
    /// The keystore file (any format the keystore crate reads).
    pub path: PathBuf,
    /// The store password.
    pub password: Option<Password>,
    /// The key password, when it differs.
    pub key_password: Option<Password>,
    /// The private-key entry.
    pub alias: Option<String>,
}

/// `client_cert_configuration` as the reference system writes it, plus our additions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ClientCertJson {
    #[serde(default)]
    pub(crate) keystore_path: Option<String>,
    #[serde(default)]
    pub(crate) keystore_password: Option<String>,
    #[serde(default)]
    pub(crate) key_password: Option<String>,
    #[serde(default)]
    pub(crate) key_alias: Option<String>,
    #[serde(default)]
    pub(crate) keystore_base64: Option<String>,
}

/// A host pattern: `host`, `host:port` or `*.domain` (any depth below `domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `host:port`.
    HostPort(String, u16),
    /// `host`, any port.
    Host(String),
    /// `*.domain`: every name below `domain` (not `domain` itself).
    Wildcard(String),
    /// `*`: everything (proxy selectors only).
    Any,
}

/// How well a pattern matched: lower is more specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Specificity(u8, usize);

/// One proxy selector of `proxy_configuration`.
#[derive(Debug, Clone)]
pub struct ProxyRule {
    /// Which hosts it covers.
    pub pattern: HostPattern,
    /// Whether it says "no proxy" (`"address": "NONE"`).
    pub direct: bool,
    /// The proxy address as written (no credentials).
    pub address: String,
}

impl HostPattern {
    /// Parses a pattern; `None` when it is empty or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return None;
        }
        if text == "*" {
            return Some(Self::Any);
        }
        if let Some(domain) = text.strip_prefix("*.") {
            if domain.is_empty() || domain.contains(['*', ':', '/']) {
                return None;
            }
            return Some(Self::Wildcard(domain.to_owned()));
        }
        if text.contains(['*', '/']) {
            return None;
        }
        // `[::1]:443`, `host:443`; a bare IPv6 address has several colons and no port.
        if let Some((host, port)) = text.rsplit_once(':')
            && (host.starts_with('[') || !host.contains(':'))
        {
            let port = port.parse().ok()?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            return Some(Self::HostPort(host.to_owned(), port));
        }
        Some(Self::Host(
            text.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        ))
    }

    /// How specifically the pattern matches `host:port`, or `None`.
    pub(crate) fn matches(&self, host: &str, port: u16) -> Option<Specificity> {
        match self {
            Self::HostPort(h, p) => {
                (*p == port && h.eq_ignore_ascii_case(host)).then_some(Specificity(0, 0))
            }
            Self::Host(h) => h.eq_ignore_ascii_case(host).then_some(Specificity(1, 0)),
            Self::Wildcard(domain) => {
                let host = host.to_ascii_lowercase();
                let below = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
                // More labels in the domain = more specific = smaller.
                (!below.is_empty())
                    .then_some(Specificity(2, usize::MAX - domain.split('.').count()))
            }
            Self::Any => Some(Specificity(3, 0)),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostPort(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::HostPort(host, port) => write!(f, "{host}:{port}"),
            Self::Host(host) => f.write_str(host),
            Self::Wildcard(domain) => write!(f, "*.{domain}"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// Parses `proxy_configuration`: selector → `{address, port, authentication, username,
/// password}`. Matching does not depend on key order: exact host:port, exact host, the most
/// specific wildcard, then `*`.
pub(crate) fn parse_proxies(text: &str) -> Result<Vec<ProxyRule>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not valid JSON: {error}"))?;
    let object = value
        .as_object()
        .ok_or("must be a JSON object mapping host selectors to proxies")?;
    let mut rules = Vec::with_capacity(object.len());
    for (selector, proxy) in object {
        let pattern = HostPattern::parse(selector)
            .ok_or_else(|| format!("'{selector}' is not a host selector"))?;
        let address = proxy
            .get("address")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("selector '{selector}' has no \"address\""))?;
        rules.push(ProxyRule {
            pattern,
            direct: address.eq_ignore_ascii_case("NONE"),
            address: address.to_owned(),
        });
    }
    Ok(rules)
}

impl fmt::Debug for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertRef")
            .field("path", &self.path)
            .field("password", &self.password)
            .field("key_password", &self.key_password)
            .field("alias", &self.alias)
            .finish()
    }
}

impl fmt::Debug for ClientCertJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertJson")
            .field("keystore_path", &self.keystore_path)
            .field("key_alias", &self.key_alias)
            .field("inline", &self.keystore_base64.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_rank_exact_port_then_host_then_longest_wildcard() {
        let exact_port = HostPattern::parse("api.corp.example:9443").expect("valid");
        let exact = HostPattern::parse("api.corp.example").expect("valid");
        let wide = HostPattern::parse("*.example").expect("valid");
        let narrow = HostPattern::parse("*.corp.example").expect("valid");
        let a = exact_port.matches("api.corp.example", 9443).expect("match");
        let b = exact.matches("API.corp.example", 9443).expect("match");
        let c = narrow.matches("api.corp.example", 9443).expect("match");
        let d = wide.matches("api.corp.example", 9443).expect("match");
        assert!(a < b && b < c && c < d);
        assert!(exact_port.matches("api.corp.example", 443).is_none());
        assert!(narrow.matches("corp.example", 443).is_none());
        assert!(narrow.matches("x.y.corp.example", 443).is_some());
        assert!(narrow.matches("evilcorp.example", 443).is_none());
    }
}
