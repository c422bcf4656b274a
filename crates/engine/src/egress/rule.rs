//! Egress rules: the entries of the deny and allow lists, parsed into address blocks (with an
//! optional port) or host patterns.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::host_pattern::{HostPattern, PatternError};

/// One entry of a deny or allow list: a CIDR or an address, with an optional port, or a
/// [`HostPattern`] for names. Build with [`EgressRule::parse`] or [`EgressRule::parse_list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    /// The entry as written (trimmed), for messages.
    pub(super) text: String,
    target: Target,
}

/// Why a text is not an egress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EgressRuleError {
    /// The entry is empty (or only spaces).
    Empty,
    /// The prefix length of a CIDR is not a number up to 32 (IPv4) or 128 (IPv6).
    BadPrefix {
        /// The entry.
        entry: String,
    },
    /// What follows the address's `:` is not a port number.
    BadPort {
        /// The entry.
        entry: String,
    },
    /// The entry looks like an IP address (it ends in a number, or has brackets) but is not a
    /// valid one.
    BadAddress {
        /// The entry.
        entry: String,
    },
    /// The entry is neither an address nor a host pattern.
    BadHost {
        /// The entry.
        entry: String,
        /// Why it is not a host pattern.
        source: PatternError,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Net { net: Net, port: Option<u16> },
    Host(HostPattern),
}

/// A CIDR block; `base` has no bits set past `prefix`, and IPv4-mapped blocks are IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Net {
    base: IpAddr,
    prefix: u8,
}

impl EgressRule {
    /// Parses one entry: `10.0.0.0/8`, `::1`, `127.0.0.1:8819`, `[::1]:443`,
    /// `10.0.0.0/8:443`, `[fd00::/8]:443`, `2130706433`, `*.internal`, `host:port`.
    pub fn parse(text: &str) -> Result<Self, EgressRuleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(EgressRuleError::Empty);
        }
        Ok(Self {
            text: text.to_owned(),
            target: target(text)?,
        })
    }

    /// Parses a comma-separated list (empty items are skipped).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, EgressRuleError> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    pub(super) fn matches(&self, host: &str, address: SocketAddr) -> bool {
        match &self.target {
            Target::Net { net, port } => {
                port.is_none_or(|port| port == address.port()) && net.contains(address.ip())
            }
            Target::Host(pattern) => pattern.matches(host, address.port()).is_some(),
        }
    }

    pub(super) fn matches_name(&self, host: &str, port: u16) -> bool {
        match &self.target {
            Target::Host(pattern) => pattern.matches(host, port).is_some(),
            Target::Net { .. } => false,
        }
    }
}

/// The address that is decided: an IPv6 address carrying an IPv4 one (IPv4-mapped
/// `::ffff:a.b.c.d`, or the deprecated IPv4-compatible `::a.b.c.d`) is that IPv4 address.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4.into();
    }
    let octets = v6.octets();
    let compatible = octets[..12].iter().all(|byte| *byte == 0);
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not IPv4 ones.
    if compatible && u32::from_be_bytes([octets[12], octets[13], octets[14], octets[15]]) > 1 {
        return Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]).into();
    }
    ip
}

/// Parses what an entry names (the text is trimmed and not empty).
fn target(text: &str) -> Result<Target, EgressRuleError> {
    let entry = || text.to_owned();
    let port_of = |digits: &str| {
        digits
            .parse::<u16>()
            .map_err(|_| EgressRuleError::BadPort { entry: entry() })
    };
    let net_of =
        |part: &str| net(part, text)?.ok_or(EgressRuleError::BadAddress { entry: entry() });
    if let Some(rest) = text.strip_prefix('[') {
        // `[::1]`, `[::1]:443`, `[fd00::/8]:443`.
        let (inside, after) = rest
            .split_once(']')
            .ok_or(EgressRuleError::BadAddress { entry: entry() })?;
        let port = match after {
            "" => None,
            _ => Some(port_of(after.strip_prefix(':').unwrap_or(after))?),
        };
        return Ok(Target::Net {
            net: net_of(inside)?,
            port,
        });
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Ok(Target::Net {
            net: Net::host(socket.ip()),
            port: Some(socket.port()),
        });
    }
    // A CIDR: `10.0.0.0/8`, `fe80::/10`, `10.0.0.0/8:443` (an IPv6 CIDR with a port needs
    // brackets). A `/` after anything but an address is refused as a host pattern below.
    if let Some((address, prefix)) = text.split_once('/')
        && address.parse::<IpAddr>().is_ok()
    {
        if !address.contains(':')
            && let Some((prefix, port)) = prefix.split_once(':')
        {
            return Ok(Target::Net {
                net: net_of(&format!("{address}/{prefix}"))?,
                port: Some(port_of(port)?),
            });
        }
        return Ok(Target::Net {
            net: net_of(text)?,
            port: None,
        });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Target::Net {
            net: Net::host(ip),
            port: None,
        });
    }
    // A name, or one of the IPv4 spellings the URL parser accepts (`2130706433`, `0x7f.1`).
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (text, None),
    };
    if let Ok(url::Host::Ipv4(ip)) = url::Host::parse(host) {
        return Ok(Target::Net {
            net: Net::host(ip.into()),
            port: port.map(port_of).transpose()?,
        });
    }
    // The URL parser reads a host ending in a number as IPv4: one that is no valid address
    // (`10.0.0.256`) is a mistake, not a name.
    if ends_in_number(host) {
        return Err(EgressRuleError::BadAddress { entry: entry() });
    }
    HostPattern::parse(text)
        .map(Target::Host)
        .map_err(|source| EgressRuleError::BadHost {
            entry: entry(),
            source,
        })
}

/// Whether the last label of `host` is a number (decimal, or hex with `0x`), as the URL
/// parser's IPv4 rule has it.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .map(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()));
    !last.is_empty() && (hex == Some(true) || last.chars().all(|c| c.is_ascii_digit()))
}

/// `address` or `address/prefix`; `None` when `text` is not an IP address.
fn net(text: &str, entry: &str) -> Result<Option<Net>, EgressRuleError> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(ip) = address.parse::<IpAddr>() else {
        return Ok(None);
    };
    let Some(prefix) = prefix else {
        return Ok(Some(Net::host(ip)));
    };
    let most = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix
        .parse::<u8>()
        .ok()
        .filter(|prefix| *prefix <= most)
        .ok_or_else(|| EgressRuleError::BadPrefix {
            entry: entry.to_owned(),
        })?;
    Ok(Some(Net::new(ip, prefix)))
}

impl Net {
    pub(super) const fn v4(base: Ipv4Addr, prefix: u8) -> Self {
        Self {
            base: IpAddr::V4(base),
            prefix,
        }
    }

    pub(super) const fn v6(base: Ipv6Addr, prefix: u8) -> Self {
        Self {
            base: IpAddr::V6(base),
            prefix,
        }
    }

    fn host(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        Self::new(ip, if ip.is_ipv4() { 32 } else { 128 })
    }

    /// The block of `ip/prefix` (`prefix` is at most the family's width), host bits cleared;
    /// an IPv4-mapped block (`::ffff:10.0.0.0/104`) becomes the IPv4 one (`10.0.0.0/8`).
    fn new(ip: IpAddr, prefix: u8) -> Self {
        match ip {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                let v4 = v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
                Self::new(v4.into(), prefix - 96)
            }
            IpAddr::V4(v4) => Self::v4((u32::from(v4) & mask32(prefix)).into(), prefix),
            IpAddr::V6(v6) => Self::v6((u128::from(v6) & mask128(prefix)).into(), prefix),
        }
    }

    /// Whether the block holds `ip` (already canonical).
    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                (u32::from(base) ^ u32::from(ip)) & mask32(self.prefix) == 0
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                (u128::from(base) ^ u128::from(ip)) & mask128(self.prefix) == 0
            }
            _ => false,
        }
    }
}

const fn mask32(prefix: u8) -> u32 {
    match u32::MAX.checked_shl(32 - prefix as u32) {
        Some(mask) => mask,
        None => 0,
    }
}

const fn mask128(prefix: u8) -> u128 {
    match u128::MAX.checked_shl(128 - prefix as u32) {
        Some(mask) => mask,
        None => 0,
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for EgressRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an empty egress rule"),
            Self::BadPrefix { entry } => write!(
                f,
                "'{entry}': the prefix length must be at most 32 (IPv4) or 128 (IPv6)"
            ),
            Self::BadPort { entry } => write!(f, "'{entry}': the port is not a number to 65535"),
            Self::BadAddress { entry } => write!(f, "'{entry}' is not a valid IP address"),
            Self::BadHost { entry, source } => write!(
                f,
                "'{entry}' is not an address, a CIDR or a host pattern: {source}"
            ),
        }
    }
}

impl std::error::Error for EgressRuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadHost { source, .. } => Some(source),
            _ => None,
        }
    }
}
