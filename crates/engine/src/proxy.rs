//! Proxies: which one a request goes through, and the CONNECT tunnel for https.
//!
//! An http URL goes to an HTTP proxy as an absolute-form request; an https URL goes through a
//! `CONNECT host:port` tunnel, and the TLS handshake (with the client certificate) runs end
//! to end inside it, so the proxy never sees the key or the plaintext.
//!
//! Selection follows the reference system's `proxy_configuration` (see `docs/proxy.md`):
//! selectors are [`HostPattern`]s — an exact `host:port` or host, `*.domain` (any depth below
//! `domain`) or `*`. When several match, the most specific wins: `host:port`, an exact host,
//! then the `*.domain` with the most labels, then `*` (so `*` is evaluated last wherever it
//! appears). `"address": "NONE"` means direct.

use std::fmt;

use base64::Engine as _;
use http::HeaderValue;
use keystore::Password;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, JobError};
use crate::host_pattern::HostPattern;
use crate::job::JobBuilder;

/// The largest CONNECT response head we read.
const CONNECT_HEAD_LIMIT: usize = 16 * 1024;

/// A proxy server: `http://[user:password@]host:port`.
#[derive(Clone)]
pub struct Proxy {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<Password>,
}

/// Which proxy serves which host. Build from `proxy_configuration` JSON
/// ([`ProxyRules::from_reference_json`]), from the standard environment values
/// ([`ProxyRules::from_env_values`]) or with [`ProxyRules::all`].
#[derive(Clone, Debug, Default)]
pub struct ProxyRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    selector: HostPattern,
    scheme: Option<&'static str>,
    /// `None`: direct.
    proxy: Option<Proxy>,
}

impl Proxy {
    /// Parses `http://host:port`, `host:port` or `host` (port 80), with optional
    /// `user:password@`.
    pub fn parse(text: &str) -> Result<Self, JobError> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme)
            .map_err(|_| JobError::new("the proxy is not a valid http://host:port"))?;
        if url.scheme() != "http" {
            return Err(JobError::new(format!(
                "unsupported proxy scheme '{}': only http:// proxies",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| JobError::new("the proxy has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut proxy = Self {
            host,
            port: url.port().unwrap_or(80),
            user: None,
            password: None,
        };
        if !url.username().is_empty() {
            proxy.user = Some(percent_decode(url.username()));
            proxy.password = Some(Password::new(
                url.password().map(percent_decode).unwrap_or_default(),
            ));
        }
        Ok(proxy)
    }

    /// Sets Basic credentials for the proxy.
    pub fn with_credentials(mut self, user: impl Into<String>, password: Password) -> Self {
        self.user = Some(user.into());
        self.password = Some(password);
        self
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, for messages.
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `Proxy-Authorization` value, when the proxy has credentials.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        let user = self.user.as_ref()?;
        let password = self.password.as_ref().map(Password::expose).unwrap_or("");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl ProxyRules {
    /// One proxy for every request.
    pub fn all(proxy: Proxy) -> Self {
        Self {
            rules: vec![Rule {
                selector: HostPattern::any(),
                scheme: None,
                proxy: Some(proxy),
            }],
        }
    }

    /// The reference system's `proxy_configuration`: a JSON object of host selector to
    /// `{address, port, authentication?, username?, password?}`; `"address": "NONE"` = direct.
    pub fn from_reference_json(text: &str) -> Result<Self, JobError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|error| JobError::new(format!("proxy_configuration is not JSON: {error}")))?;
        let Value::Object(map) = value else {
            return Err(JobError::new("proxy_configuration must be a JSON object"));
        };
        let mut rules = Vec::new();
        for (selector, entry) in map {
            let selector = HostPattern::parse(&selector).map_err(|error| {
                JobError::new(format!("'{selector}' is not a proxy selector: {error}"))
            })?;
            let field = |name: &str| match entry.get(name) {
                Some(Value::String(text)) => Some(text.clone()),
                Some(Value::Number(number)) => Some(number.to_string()),
                _ => None,
            };
            let address = field("address")
                .ok_or_else(|| JobError::new("each proxy_configuration entry needs an address"))?;
            let proxy = if address.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                let mut proxy = Proxy::parse(&address)?;
                if let Some(port) = field("port") {
                    proxy.port = port
                        .trim()
                        .parse()
                        .map_err(|_| JobError::new(format!("'{port}' is not a proxy port")))?;
                }
                if let Some(user) = field("username") {
                    let password = Password::new(field("password").unwrap_or_default());
                    proxy = proxy.with_credentials(user, password);
                }
                Some(proxy)
            };
            rules.push(Rule {
                selector,
                scheme: None,
                proxy,
            });
        }
        Ok(Self { rules })
    }

    /// The standard variables' values (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`): the first
    /// serves http URLs, the second https URLs; `NO_PROXY` is a comma-separated list of hosts
    /// (each also covering its subdomains, a leading dot allowed), `host:port` entries (that
    /// port only) or `*`. Entries that name no host (such as CIDR ranges) never match and are
    /// skipped, as other tools that do not support them do.
    pub fn from_env_values(
        http: Option<&str>,
        https: Option<&str>,
        no_proxy: Option<&str>,
    ) -> Result<Self, JobError> {
        let mut rules = Vec::new();
        for (scheme, value) in [("http", http), ("https", https)] {
            if let Some(text) = value.filter(|text| !text.trim().is_empty()) {
                rules.push(Rule {
                    selector: HostPattern::any(),
                    scheme: Some(scheme),
                    proxy: Some(Proxy::parse(text)?),
                });
            }
        }
        for entry in no_proxy.unwrap_or_default().split(',') {
            let entry = entry
                .trim()
                .trim_start_matches("*.")
                .trim_start_matches('.');
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                // Direct for everything: nothing else may match.
                return Ok(Self::default());
            }
            let Ok(selector) = HostPattern::parse(entry) else {
                continue;
            };
            let below = selector.subdomains();
            for selector in std::iter::once(selector).chain(below) {
                rules.push(Rule {
                    selector,
                    scheme: None,
                    proxy: None,
                });
            }
        }
        Ok(Self { rules })
    }

    /// Applies `add` (typically [`Proxy::with_credentials`]) to every proxy of the rules that
    /// has no credentials of its own.
    pub fn with_credentials(mut self, add: impl Fn(Proxy) -> Proxy) -> Self {
        for rule in &mut self.rules {
            if let Some(proxy) = rule.proxy.take() {
                rule.proxy = Some(if proxy.user.is_some() {
                    proxy
                } else {
                    add(proxy)
                });
            }
        }
        self
    }

    /// How many selectors there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The proxy for a request to `host` on `port` over `scheme`, or `None` for a direct
    /// connection.
    pub fn select(&self, scheme: &str, host: &str, port: u16) -> Option<&Proxy> {
        let candidates = self
            .rules
            .iter()
            .filter(|rule| rule.scheme.is_none_or(|only| only == scheme))
            .map(|rule| (&rule.selector, rule));
        HostPattern::most_specific(candidates, host, port).and_then(|(_, rule)| rule.proxy.as_ref())
    }
}

impl JobBuilder {
    /// The proxy rules for this job's requests (each redirect hop is selected again).
    pub fn proxy(mut self, rules: ProxyRules) -> Self {
        self.http_options.proxy = Some(rules);
        self
    }
}

/// Opens a CONNECT tunnel to `target` (`host:port`) through `proxy` over `tcp`.
pub(crate) async fn tunnel(tcp: &mut TcpStream, proxy: &Proxy, target: &str) -> Result<(), Error> {
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(value) = proxy.authorization() {
        head.push_str("Proxy-Authorization: ");
        head.push_str(value.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let unreachable = |error: std::io::Error| Error::ProxyUnreachable {
        proxy: proxy.address(),
        detail: error.to_string(),
    };
    tcp.write_all(head.as_bytes()).await.map_err(unreachable)?;
    // Read byte by byte up to the end of the head: nothing of the tunnel may be consumed.
    let mut response = Vec::with_capacity(256);
    while !response.ends_with(b"\r\n\r\n") {
        if response.len() > CONNECT_HEAD_LIMIT {
            return Err(Error::ProxyTunnelRefused {
                proxy: proxy.address(),
                status: "an oversized response".into(),
            });
        }
        let byte = tcp.read_u8().await.map_err(unreachable)?;
        response.push(byte);
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    match code {
        "200" => Ok(()),
        "407" => Err(Error::ProxyAuthRequired {
            proxy: proxy.address(),
            sent: proxy.user.is_some(),
        }),
        _ => Err(Error::ProxyTunnelRefused {
            proxy: proxy.address(),
            status: status_line,
        }),
    }
}

/// URL userinfo, percent-decoded exactly (RFC 3986: `+` stays `+`). Proxy credentials are
/// text; bytes that are not UTF-8 become U+FFFD.
fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&crate::job::percent_decode(text)).into_owned()
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user.as_ref().map(|_| "***"))
            .field("password", &self.password)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the reference system's documentation, with our overlap rule.
    #[test]
    fn reference_selectors_choose_the_most_specific() {
        let rules = ProxyRules::from_reference_json(
            r#"{"*": {"address":"proxy1.com","port":8080,"authentication":"basic",
                      "username":"u","password":"p"},
                "foo.com": {"address":"http://proxy2.com/","port":"3128"},
                "*.domain.com": {"address":"10.0.0.3","port":3128},
                "*.deep.domain.com": {"address":"10.0.0.4","port":3128},
                "direct.domain.com": {"address":"NONE"}}"#,
        )
        .expect("rules");
        let chosen = |host: &str| rules.select("https", host, 443).map(Proxy::address);
        assert_eq!(chosen("foo.com").as_deref(), Some("proxy2.com:3128"));
        assert_eq!(chosen("a.domain.com").as_deref(), Some("10.0.0.3:3128"));
        assert_eq!(chosen("a.b.c.domain.com").as_deref(), Some("10.0.0.3:3128"));
        assert_eq!(
            chosen("x.deep.domain.com").as_deref(),
            Some("10.0.0.4:3128")
        );
        assert_eq!(chosen("direct.domain.com"), None);
        assert_eq!(chosen("domain.com").as_deref(), Some("proxy1.com:8080"));
        assert_eq!(chosen("other.org").as_deref(), Some("proxy1.com:8080"));
        let catch_all = rules.select("https", "other.org", 443).expect("proxy");
        assert!(catch_all.authorization().is_some());
        assert!(!format!("{rules:?}").contains("\"p\""));
    }

    #[test]
    fn port_and_ipv6_selectors_match_and_bad_ones_are_refused() {
        let rules = ProxyRules::from_reference_json(
            r#"{"*": {"address":"NONE"},
                "api.test:8443": {"address":"p1.test","port":1},
                "[::1]": {"address":"p2.test","port":2}}"#,
        )
        .expect("rules");
        let chosen = |host: &str, port: u16| rules.select("https", host, port).map(Proxy::address);
        assert_eq!(chosen("api.test", 8443).as_deref(), Some("p1.test:1"));
        assert_eq!(chosen("api.test", 443), None);
        assert_eq!(chosen("::1", 443).as_deref(), Some("p2.test:2"));
        assert_eq!(chosen("[::1]", 8443).as_deref(), Some("p2.test:2"));
        for selector in ["a.*.test", "*.test:443", "http://a.test/", ""] {
            let json = format!(r#"{{"{selector}": {{"address":"NONE"}}}}"#);
            let error = ProxyRules::from_reference_json(&json).expect_err(selector);
            assert!(
                error.to_string().contains("not a proxy selector"),
                "{error}"
            );
        }
    }

    #[test]
    fn url_credentials_are_percent_decoded_exactly() {
        let proxy = Proxy::parse("http://us%2Ber+1:p%26ss+%3A%25@proxy.test:3128").expect("proxy");
        let expected = base64::engine::general_purpose::STANDARD.encode("us+er+1:p&ss+:%");
        assert_eq!(
            proxy.authorization().expect("credentials"),
            format!("Basic {expected}").as_str()
        );
    }

    #[test]
    fn environment_values_and_no_proxy() {
        let rules = ProxyRules::from_env_values(
            Some("http://plain:3128"),
            Some("http://u:s3cr3t@secure:3129"),
            Some("localhost,.internal.test,10.0.0.0/8,api.test:8443"),
        )
        .expect("rules");
        let chosen = |scheme: &str, host: &str| rules.select(scheme, host, 443).map(Proxy::address);
        assert_eq!(chosen("http", "a.org").as_deref(), Some("plain:3128"));
        assert_eq!(chosen("https", "a.org").as_deref(), Some("secure:3129"));
        assert_eq!(chosen("https", "localhost"), None);
        assert_eq!(chosen("https", "x.internal.test"), None);
        assert_eq!(chosen("https", "internal.test"), None);
        assert_eq!(chosen("https", "10.0.0.1").as_deref(), Some("secure:3129"));
        assert_eq!(
            rules.select("https", "api.test", 8443).map(Proxy::address),
            None
        );
        assert_eq!(chosen("https", "api.test").as_deref(), Some("secure:3129"));
        let all = ProxyRules::from_env_values(None, Some("secure:1"), Some("*")).expect("rules");
        assert!(all.select("https", "a.org", 443).is_none());
        assert!(!format!("{rules:?}").contains("s3cr3t"));
    }
}
