//! The egress policy: which addresses a job may connect to. It is decided on the resolved
//! socket address, after name resolution and before `connect`, so no packet is ever sent to a
//! denied address.
//!
//! Every connection a job makes is checked: the URL's host, each redirect hop, an address pinned
//! with `resolve`, the proxy, and the target of a CONNECT tunnel (or of an absolute-form request
//! through an HTTP proxy). The proxy resolves that target itself, so it is checked by name (host
//! patterns), by address when it is an IP address, and as loopback when it is `localhost`. A
//! connection taken from the pool is checked again, on its peer address, before it is reused.
//!
//! # Rules
//!
//! An entry is a CIDR (`10.0.0.0/8`, `fe80::/10`), a single address (`127.0.0.1`, `::1`, and
//! the other IPv4 spellings the URL parser accepts, such as `2130706433`), either one with a
//! port (`127.0.0.1:8819`, `[::1]:443`, `10.0.0.0/8:443`, `[fd00::/8]:443`), or a
//! [`HostPattern`] for names (`*.internal`, `metadata.example:80`). Addresses are compared after
//! IPv4-mapped IPv6 (`::ffff:127.0.0.1`) and IPv4-compatible IPv6 (`::127.0.0.1`) addresses are
//! turned into the IPv4 address they carry.
//!
//! # Precedence
//!
//! 1. An explicit **deny** entry that matches denies. Nothing overrides it: an allow entry,
//!    however broad (`*`, `0.0.0.0/0`), can never reopen what an operator denied, so a deny list
//!    keeps its meaning whatever is added to the allow list later.
//! 2. Else an explicit **allow** entry that matches allows, also over the defaults below.
//! 3. Else the **default denies** apply: the agent's own listening addresses on their port (when
//!    it listens on `0.0.0.0` or `::`, every local address on that port), the unspecified
//!    addresses (`0.0.0.0/8`, `::`), cloud metadata (`169.254.169.254`, `fd00:ec2::254`,
//!    `100.100.100.200`) and link-local addresses (`169.254.0.0/16`, `fe80::/10`).
//! 4. Else the connection is allowed: private ranges and loopback are reachable by default
//!    (reaching internal APIs is what the downloader is for), and deniable.
//!
//! A name is denied when **any** of its addresses is denied, so the outcome never depends on
//! which of them happens to answer first.

mod rule;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::Error;
use crate::host_pattern::HostPattern;
use crate::job::JobBuilder;
use crate::proxy::Proxy;

pub use rule::{EgressRule, EgressRuleError};
use rule::{Net, canonical};

/// Which connections the jobs given it may make. Share one with [`Arc`] between jobs
/// ([`JobBuilder::egress`]); a job without a policy may connect anywhere.
///
/// ```
/// use engine::{Decision, EgressPolicy, EgressRule};
///
/// let policy = EgressPolicy::new(EgressRule::parse_list("10.0.0.0/8")?, Vec::new());
/// assert!(policy.decide("db.internal", "10.1.2.3:5432".parse()?).is_denied());
/// assert!(policy.decide("169.254.169.254", "169.254.169.254:80".parse()?).is_denied());
/// assert_eq!(policy.decide("localhost", "127.0.0.1:8443".parse()?), Decision::Allowed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EgressPolicy {
    deny: Vec<EgressRule>,
    allow: Vec<EgressRule>,
    /// The addresses the agent listens on (registered when it starts serving).
    own: RwLock<Vec<SocketAddr>>,
}

/// What the policy decided for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No rule denies it.
    Allowed,
    /// An allow entry (named here as written) matched, so no default deny applies.
    AllowedBy(String),
    /// A rule denies it.
    Denied {
        /// The rule, for messages: `deny ENTRY` for an explicit entry, else the default's name
        /// (`the agent itself (listen 127.0.0.1:8819)`, `link-local (169.254.0.0/16)`, ...).
        rule: String,
        /// Whether an explicit deny entry matched (no allow entry overrides it); otherwise a
        /// default deny did.
        explicit: bool,
    },
}

/// The default denies, most specific first (so the message names the metadata service rather
/// than the link-local range around it).
const DEFAULT_DENIES: &[(&str, Net)] = &[
    (
        "cloud metadata (169.254.169.254)",
        Net::v4(Ipv4Addr::new(169, 254, 169, 254), 32),
    ),
    (
        "cloud metadata (fd00:ec2::254)",
        Net::v6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), 128),
    ),
    (
        "cloud metadata (100.100.100.200)",
        Net::v4(Ipv4Addr::new(100, 100, 100, 200), 32),
    ),
    (
        "the unspecified address (0.0.0.0/8)",
        Net::v4(Ipv4Addr::UNSPECIFIED, 8),
    ),
    (
        "the unspecified address (::)",
        Net::v6(Ipv6Addr::UNSPECIFIED, 128),
    ),
    (
        "link-local (169.254.0.0/16)",
        Net::v4(Ipv4Addr::new(169, 254, 0, 0), 16),
    ),
    (
        "link-local (fe80::/10)",
        Net::v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    ),
];

impl EgressPolicy {
    /// A policy with explicit `deny` and `allow` entries over the default denies (see the
    /// [module documentation](self) for the precedence).
    pub fn new(deny: Vec<EgressRule>, allow: Vec<EgressRule>) -> Self {
        Self {
            deny,
            allow,
            own: RwLock::new(Vec::new()),
        }
    }

    /// Denies `address` by default, as the agent's own: its port on that address, or on every
    /// local address (loopback, unspecified, and any address of this host) when it is `0.0.0.0`
    /// or `::`. An allow entry can still open it.
    pub fn listening(&self, address: SocketAddr) {
        let mut own = self.own.write().unwrap_or_else(PoisonError::into_inner);
        if !own.contains(&address) {
            own.push(address);
        }
    }

    /// Decides a connection to `address`, made for the name `host` (the URL's host, or the
    /// proxy's; for an IP address the address itself). Host patterns match `host`; the other
    /// rules match the address.
    pub fn decide(&self, host: &str, address: SocketAddr) -> Decision {
        let address = SocketAddr::new(canonical(address.ip()), address.port());
        let host = name(host);
        if let Some(rule) = self.deny.iter().find(|rule| rule.matches(host, address)) {
            return Decision::Denied {
                rule: format!("deny {}", rule.text),
                explicit: true,
            };
        }
        if let Some(rule) = self.allow.iter().find(|rule| rule.matches(host, address)) {
            return Decision::AllowedBy(rule.text.clone());
        }
        if let Some(listen) = self.own_match(address) {
            return Decision::Denied {
                rule: format!("the agent itself (listen {listen})"),
                explicit: false,
            };
        }
        match DEFAULT_DENIES
            .iter()
            .find(|(_, net)| net.contains(address.ip()))
        {
            Some((rule, _)) => Decision::Denied {
                rule: (*rule).to_owned(),
                explicit: false,
            },
            None => Decision::Allowed,
        }
    }

    /// Decides a target that is not resolved here but by a proxy: an IP address is decided as
    /// an address, `localhost` (and names below it) as both loopback addresses, any other name
    /// by the host patterns alone.
    pub fn decide_unresolved(&self, host: &str, port: u16) -> Decision {
        let host = name(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.decide(host, SocketAddr::new(ip, port));
        }
        if host.eq_ignore_ascii_case("localhost") || HOST_LOCALHOST.matches(host, port).is_some() {
            let loopback = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
            let decisions = loopback.map(|ip| self.decide(host, SocketAddr::new(ip, port)));
            return worst(decisions);
        }
        if let Some(rule) = self.deny_by_name(host, port) {
            return Decision::Denied {
                rule: format!("deny {}", rule.text),
                explicit: true,
            };
        }
        match self.allow.iter().find(|rule| rule.matches_name(host, port)) {
            Some(rule) => Decision::AllowedBy(rule.text.clone()),
            None => Decision::Allowed,
        }
    }

    /// The explicit deny entry naming `host` on `port` by host pattern, if any: what can be
    /// decided before the name is looked up.
    fn deny_by_name(&self, host: &str, port: u16) -> Option<&EgressRule> {
        let host = name(host);
        self.deny.iter().find(|rule| rule.matches_name(host, port))
    }

    fn own_match(&self, address: SocketAddr) -> Option<SocketAddr> {
        let own = self.own.read().unwrap_or_else(PoisonError::into_inner);
        own.iter().copied().find(|listen| {
            let ip = canonical(listen.ip());
            listen.port() == address.port()
                && (ip == address.ip()
                    // A connection to 0.0.0.0 or :: reaches this host.
                    || address.ip().is_unspecified()
                    || (ip.is_unspecified() && is_local(address.ip())))
        })
    }
}

impl Default for EgressPolicy {
    /// The default denies alone.
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

/// `*.localhost`, which resolves to loopback (RFC 6761).
static HOST_LOCALHOST: std::sync::LazyLock<HostPattern> = std::sync::LazyLock::new(|| {
    HostPattern::parse("*.localhost").unwrap_or_else(|_| HostPattern::any())
});

impl Decision {
    /// Whether the connection is denied.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Denied { .. })
    }
}

impl JobBuilder {
    /// Checks every connection of this job (its URL, redirect hops, `resolve` pins, proxies
    /// and CONNECT targets) against `policy`; a denied one ends the job with `egress.denied`
    /// before anything is sent. Without it, a job may connect anywhere.
    pub fn egress(mut self, policy: Arc<EgressPolicy>) -> Self {
        self.egress = Some(policy);
        self
    }
}

/// Checks what can be checked before the name is looked up: explicit deny entries naming the
/// host that will be resolved (the proxy's, or the URL's), and the target a proxy will connect
/// to (which the proxy resolves).
pub(crate) fn before_lookup(
    policy: &EgressPolicy,
    (host, port): (&str, u16),
    proxy: Option<&Proxy>,
) -> Result<(), Error> {
    let (dial_host, dial_port) = proxy.map_or((host, port), |proxy| (proxy.host(), proxy.port()));
    if let Some(rule) = policy.deny_by_name(dial_host, dial_port) {
        return Err(Error::EgressDenied {
            address: describe(dial_host, dial_port, None, proxy.is_some()),
            rule: format!("deny {}", rule.text),
            explicit: true,
            allow: String::new(),
        });
    }
    let Some(proxy) = proxy else {
        return Ok(());
    };
    match policy.decide_unresolved(host, port) {
        Decision::Denied { rule, explicit } => Err(Error::EgressDenied {
            address: format!(
                "{} through the proxy {}",
                Authority(name(host), port),
                proxy.address()
            ),
            rule,
            explicit,
            allow: Authority(name(host), port).to_string(),
        }),
        _ => Ok(()),
    }
}

/// Checks the addresses the dialed name resolved to (or a pooled connection's peer): all of
/// them must be allowed.
pub(crate) fn admit(
    policy: &EgressPolicy,
    (host, port): (&str, u16),
    proxy: Option<&Proxy>,
    addresses: &[SocketAddr],
) -> Result<(), Error> {
    let dial_host = proxy.map_or(host, Proxy::host);
    for address in addresses {
        if let Decision::Denied { rule, explicit } = policy.decide(dial_host, *address) {
            let allowed = SocketAddr::new(canonical(address.ip()), address.port());
            return Err(Error::EgressDenied {
                address: describe(dial_host, port, Some(*address), proxy.is_some()),
                rule,
                explicit,
                allow: allowed.to_string(),
            });
        }
    }
    Ok(())
}

/// `127.0.0.1:8819`, `127.0.0.1:8819 (localhost)`, `the proxy 127.0.0.1:3128`.
fn describe(host: &str, port: u16, address: Option<SocketAddr>, proxy: bool) -> String {
    let host = name(host);
    let what = if proxy { "the proxy " } else { "" };
    match address {
        Some(address) if host.parse::<IpAddr>().is_ok() => format!("{what}{address}"),
        Some(address) => format!("{what}{address} ({host})"),
        None => format!("{what}{}", Authority(host, port)),
    }
}

/// The most restrictive of several decisions: a denial, else an allow entry, else allowed.
fn worst<const N: usize>(decisions: [Decision; N]) -> Decision {
    let mut best = Decision::Allowed;
    for decision in decisions {
        match decision {
            Decision::Denied { .. } => return decision,
            Decision::AllowedBy(_) if best == Decision::Allowed => best = decision,
            _ => {}
        }
    }
    best
}

/// A host as rules see it: no IPv6 brackets, no trailing dot (`example.com.` is
/// `example.com`).
fn name(host: &str) -> &str {
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host)
}

/// Whether `ip` is an address of this host: loopback, unspecified, or one a socket can be bound
/// to (binding sends nothing).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// `host:port`, with brackets for an IPv6 address.
struct Authority<'a>(&'a str, u16);

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts = |rules: &[EgressRule]| -> Vec<String> {
            rules.iter().map(|rule| rule.text.clone()).collect()
        };
        let own = self.own.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("EgressPolicy")
            .field("deny", &texts(&self.deny))
            .field("allow", &texts(&self.allow))
            .field("own", &*own)
            .finish()
    }
}
