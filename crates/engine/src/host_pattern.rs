//! Host patterns: which hosts a rule covers. One matcher serves the proxy selectors of
//! `proxy_configuration`, the client identities a job names for redirect hops, and the agent's
//! `[[client_certs]]` host rules, so all three agree on what `*.example.com` means.
//!
//! A pattern is one of:
//!
//! | pattern | matches |
//! |---|---|
//! | `host:port` (`[::1]:8443` for IPv6) | that host on that port only |
//! | `host` | that host on any port |
//! | `*.domain` | every name below `domain`, at any depth, not `domain` itself |
//! | `*` | every host |
//!
//! Host names compare case-insensitively. When several patterns match, the most specific wins:
//! `host:port`, then `host`, then the `*.domain` with the most labels, then `*`. Among equally
//! specific patterns the first one given wins, so the outcome never depends on anything but the
//! order the rules were written in.

use std::fmt;
use std::str::FromStr;

/// A pattern naming hosts: `host:port`, `host`, `*.domain` or `*`. Build with
/// [`HostPattern::parse`] (or `str::parse`) or [`HostPattern::exact`]; the text is normalized
/// (lower case, no IPv6 brackets), so two patterns that match the same hosts compare equal.
///
/// ```
/// use engine::HostPattern;
///
/// let pattern = HostPattern::parse("*.Example.com")?;
/// assert!(pattern.matches("api.eu.example.com", 443).is_some());
/// assert!(pattern.matches("example.com", 443).is_none());
/// let exact: HostPattern = "api.example.com:8443".parse()?;
/// assert!(exact.matches("api.example.com", 8443) > pattern.matches("api.example.com", 8443));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPattern {
    kind: Kind,
}

/// How specifically a pattern matched a host: a greater value is more specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Specificity {
    /// 0 for `*`, 1 for `*.domain`, 2 for `host`, 3 for `host:port`.
    class: u8,
    /// The number of labels of a `*.domain`'s domain (0 otherwise).
    labels: usize,
}

/// Why a text is not a host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// The text is empty (or only spaces).
    Empty,
    /// A `*` appears somewhere other than alone or as a leading `*.` before a domain.
    MisplacedWildcard,
    /// A `*.domain` pattern has a port; wildcards cover every port.
    WildcardWithPort,
    /// What follows the last `:` of `host:port` is not a port number.
    BadPort,
    /// A character that cannot be part of a host name (`/`, `@`, a space, ...), as in a URL
    /// given where a host was expected.
    InvalidCharacter(char),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    HostPort(String, u16),
    Host(String),
    /// `*.domain`: the domain, without the leading `*.`.
    Below(String),
    Any,
}

impl HostPattern {
    /// Parses `host:port`, `host`, `*.domain` or `*` (surrounding spaces ignored).
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text == "*" {
            return Ok(Self { kind: Kind::Any });
        }
        if let Some(bad) = text.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#' | ',' | '\\')
        }) {
            return Err(PatternError::InvalidCharacter(bad));
        }
        if let Some(domain) = text.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') || domain.starts_with('.') {
                return Err(PatternError::MisplacedWildcard);
            }
            if domain.contains(':') {
                return Err(PatternError::WildcardWithPort);
            }
            return Ok(Self {
                kind: Kind::Below(domain.to_owned()),
            });
        }
        if text.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        if let Some(rest) = text.strip_prefix('[') {
            // `[::1]` or `[::1]:443`.
            let (host, after) = rest
                .split_once(']')
                .ok_or(PatternError::InvalidCharacter('['))?;
            if host.is_empty() {
                return Err(PatternError::Empty);
            }
            let kind = match after {
                "" => Kind::Host(host.to_owned()),
                _ => Kind::HostPort(host.to_owned(), port(after.strip_prefix(':'))?),
            };
            return Ok(Self { kind });
        }
        // One colon: `host:443`. None, or several (a bare IPv6 address): no port.
        let kind = match text.split_once(':') {
            Some((host, after)) if !after.contains(':') => {
                if host.is_empty() {
                    return Err(PatternError::Empty);
                }
                Kind::HostPort(host.to_owned(), port(Some(after))?)
            }
            _ => Kind::Host(text),
        };
        Ok(Self { kind })
    }

    /// The pattern for exactly `host` on `port` (an IPv6 address with or without brackets).
    pub fn exact(host: &str, port: u16) -> Self {
        Self {
            kind: Kind::HostPort(unbracket(host.trim()).to_ascii_lowercase(), port),
        }
    }

    /// How specifically the pattern matches `host` on `port`, or `None` when it does not.
    /// `host` may be in any case and an IPv6 address may keep its brackets.
    pub fn matches(&self, host: &str, port: u16) -> Option<Specificity> {
        let host = unbracket(host);
        let (class, labels) = match &self.kind {
            Kind::HostPort(name, only) => {
                (*only == port && name.eq_ignore_ascii_case(host)).then_some((3, 0))?
            }
            Kind::Host(name) => name.eq_ignore_ascii_case(host).then_some((2, 0))?,
            Kind::Below(domain) => below(host, domain).then(|| (1, domain.split('.').count()))?,
            Kind::Any => (0, 0),
        };
        Some(Specificity { class, labels })
    }

    /// Whether this is `*`, which matches every host.
    pub fn is_any(&self) -> bool {
        self.kind == Kind::Any
    }

    /// `*`.
    pub(crate) fn any() -> Self {
        Self { kind: Kind::Any }
    }

    /// The most specific of `rules` whose pattern matches `host` on `port`; the first one among
    /// equally specific matches.
    pub fn most_specific<'a, T>(
        rules: impl IntoIterator<Item = (&'a Self, T)>,
        host: &str,
        port: u16,
    ) -> Option<(&'a Self, T)> {
        let mut best: Option<(Specificity, &'a Self, T)> = None;
        for (pattern, value) in rules {
            let Some(rank) = pattern.matches(host, port) else {
                continue;
            };
            // Strictly greater only: an equal rank later on does not replace the first.
            if best.as_ref().is_none_or(|(top, _, _)| rank > *top) {
                best = Some((rank, pattern, value));
            }
        }
        best.map(|(_, pattern, value)| (pattern, value))
    }

    /// `*.domain` for a host given as a name (for `NO_PROXY` entries, which cover their
    /// subdomains); `None` for other patterns.
    pub(crate) fn subdomains(&self) -> Option<Self> {
        match &self.kind {
            Kind::Host(name) => Some(Self {
                kind: Kind::Below(name.clone()),
            }),
            _ => None,
        }
    }
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, PatternError> {
        Self::parse(text)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Brackets wherever the bare text would read back as another pattern: a host with a
        // colon before a port, a host with one colon (it would be `host:port`), a leading `[`.
        match &self.kind {
            Kind::HostPort(host, port) if host.contains(':') || host.starts_with('[') => {
                write!(f, "[{host}]:{port}")
            }
            Kind::HostPort(host, port) => write!(f, "{host}:{port}"),
            Kind::Host(host) if host.matches(':').count() == 1 || host.starts_with('[') => {
                write!(f, "[{host}]")
            }
            Kind::Host(host) => f.write_str(host),
            Kind::Below(domain) => write!(f, "*.{domain}"),
            Kind::Any => f.write_str("*"),
        }
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty host pattern"),
            Self::MisplacedWildcard => f.write_str(
                "'*' may only stand alone or start '*.domain' (a wildcard covers whole labels)",
            ),
            Self::WildcardWithPort => {
                f.write_str("a '*.domain' pattern takes no port; it covers every port")
            }
            Self::BadPort => f.write_str("the port is not a number from 0 to 65535"),
            Self::InvalidCharacter(c) => write!(
                f,
                "{c:?} cannot be part of a host (use host, host:port, *.domain or *; not a URL)"
            ),
        }
    }
}

impl std::error::Error for PatternError {}

/// Whether `host` is a name below `domain` (at any depth), case-insensitively.
fn below(host: &str, domain: &str) -> bool {
    let Some(split) = host.len().checked_sub(domain.len() + 1) else {
        return false;
    };
    split > 0
        && host.as_bytes()[split] == b'.'
        && host
            .get(split + 1..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(domain))
}

fn port(text: Option<&str>) -> Result<u16, PatternError> {
    text.and_then(|text| text.parse().ok())
        .ok_or(PatternError::BadPort)
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn patterns_rank_exact_port_then_host_then_longest_wildcard_then_any() {
        let exact_port = pattern("api.corp.example:9443");
        let exact = pattern("API.corp.example");
        let wide = pattern("*.example");
        let narrow = pattern("*.corp.example");
        let any = pattern("*");
        let rank = |p: &HostPattern| p.matches("api.Corp.example", 9443).expect("match");
        assert!(rank(&exact_port) > rank(&exact));
        assert!(rank(&exact) > rank(&narrow));
        assert!(rank(&narrow) > rank(&wide));
        assert!(rank(&wide) > rank(&any));
        assert!(exact_port.matches("api.corp.example", 443).is_none());
        assert!(narrow.matches("corp.example", 443).is_none());
        assert!(narrow.matches("x.y.corp.example", 443).is_some());
        assert!(narrow.matches("evilcorp.example", 443).is_none());
        assert!(narrow.matches(".corp.example", 443).is_none());
        assert!(any.matches("anything", 1).is_some());
    }

    #[test]
    fn parsing_normalizes_and_refuses_what_is_not_a_host() {
        for (text, shown) in [
            ("  Example.COM ", "example.com"),
            ("example.com:8443", "example.com:8443"),
            ("*.Example.com", "*.example.com"),
            ("*", "*"),
            ("[::1]:443", "[::1]:443"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("127.0.0.1:80", "127.0.0.1:80"),
        ] {
            assert_eq!(pattern(text).to_string(), shown, "{text}");
            assert_eq!(pattern(shown), pattern(text), "{text}");
        }
        assert_eq!(HostPattern::exact("[::1]", 443), pattern("[::1]:443"));
        assert_eq!(HostPattern::exact("A.test", 1), pattern("a.test:1"));
        assert!(pattern("[::1]:443").matches("[::1]", 443).is_some());
        assert!(pattern("::1").matches("::1", 8443).is_some());
        for (text, error) in [
            ("", PatternError::Empty),
            ("  ", PatternError::Empty),
            ("a.*.example", PatternError::MisplacedWildcard),
            ("*example.com", PatternError::MisplacedWildcard),
            ("*.", PatternError::MisplacedWildcard),
            ("*.*.example", PatternError::MisplacedWildcard),
            ("*.example.com:443", PatternError::WildcardWithPort),
            ("example.com:http", PatternError::BadPort),
            ("example.com:70000", PatternError::BadPort),
            ("https://example.com/", PatternError::InvalidCharacter('/')),
            ("user@example.com", PatternError::InvalidCharacter('@')),
            ("a b", PatternError::InvalidCharacter(' ')),
            (":443", PatternError::Empty),
            ("[]:443", PatternError::Empty),
            ("[::1", PatternError::InvalidCharacter('[')),
            ("[::1]443", PatternError::BadPort),
        ] {
            assert_eq!(HostPattern::parse(text), Err(error), "{text:?}");
        }
        assert!(!PatternError::BadPort.to_string().is_empty());
    }

    #[test]
    fn the_most_specific_rule_wins_and_the_first_among_equals() {
        let rules = [
            (pattern("*"), "any"),
            (pattern("*.example.com"), "wide"),
            (pattern("*.eu.example.com"), "narrow"),
            (pattern("*.eu.example.com"), "narrow-later"),
            (pattern("api.eu.example.com"), "host"),
            (pattern("api.eu.example.com:8443"), "host-port"),
        ];
        let chosen = |host: &str, port: u16| {
            HostPattern::most_specific(rules.iter().map(|(p, v)| (p, *v)), host, port)
                .map(|(_, value)| value)
        };
        assert_eq!(chosen("api.eu.example.com", 8443), Some("host-port"));
        assert_eq!(chosen("api.eu.example.com", 443), Some("host"));
        assert_eq!(chosen("x.eu.example.com", 443), Some("narrow"));
        assert_eq!(chosen("eu.example.com", 443), Some("wide"));
        assert_eq!(chosen("example.com", 443), Some("any"));
        let none: [(HostPattern, &str); 0] = [];
        assert!(HostPattern::most_specific(none.iter().map(|(p, v)| (p, *v)), "a", 1).is_none());
    }
}
