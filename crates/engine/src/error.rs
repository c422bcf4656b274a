//! The errors of a job, with stable kinds and hints built from what the handshake revealed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a job ended without a complete response.
///
/// [`Error::kind`] is stable and machine-readable (documented in `docs/errors.md`); the
/// `Display` text is for people and may change. No variant holds a password, key bytes or a
/// header value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The job itself is malformed: bad URL, unsupported scheme, CR/LF in a header.
    InvalidRequest(JobError),
    /// The host name could not be resolved.
    Dns {
        /// The name that was looked up.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// Nothing listens on the address: the TCP connection was refused.
    ConnectRefused {
        /// The address (or addresses) tried.
        address: String,
    },
    /// The TCP connection was not established within the connect limit.
    ConnectTimeout {
        /// The address being connected to.
        address: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The TCP connection failed for another reason (unreachable network, reset).
    ConnectFailed {
        /// The address being connected to.
        address: String,
        /// What the operating system said.
        detail: String,
    },
    /// The server's certificate does not chain to a trusted root (or its chain is invalid).
    ServerUntrusted {
        /// What the verifier said.
        detail: String,
        /// The issuer of the top certificate the server sent, when it sent one.
        issuer: Option<String>,
        /// Whether the server sent only its own certificate, without the intermediate CA that
        /// issued it (a server misconfiguration that browsers often paper over).
        leaf_only: bool,
    },
    /// The server's certificate is not valid for the name we connected to.
    HostnameMismatch {
        /// The name that was checked (the SNI name or the URL host).
        name: String,
        /// The names the certificate is valid for.
        presented: Vec<String>,
    },
    /// The server's certificate has expired or is not valid yet.
    ServerCertExpired {
        /// What the verifier said (including the dates when known).
        detail: String,
    },
    /// The server requires a client certificate and none was sent.
    ClientCertRequired {
        /// What the handshake revealed.
        facts: Box<HandshakeFacts>,
    },
    /// The server refused the client certificate that was sent.
    ClientCertRejected {
        /// The TLS alert the server sent (`unknown_ca`, `certificate_expired`, ...), or how the
        /// connection ended when there was no alert.
        alert: String,
        /// What the handshake revealed.
        facts: Box<HandshakeFacts>,
    },
    /// Another TLS failure: no common version or cipher, a malformed message, an unexpected
    /// alert or the connection closed during the handshake.
    TlsProtocol {
        /// What happened.
        detail: String,
    },
    /// The TLS handshake did not finish within the limit.
    HandshakeTimeout {
        /// The limit that ran out.
        after: Duration,
    },
    /// The server broke the HTTP protocol or closed the connection mid-message.
    HttpProtocol {
        /// What happened.
        detail: String,
    },
    /// The whole-job or first-byte limit ran out.
    Timeout {
        /// The phase that was running (`"wait"`, `"download"`, ...).
        phase: &'static str,
        /// The limit that ran out.
        after: Duration,
    },
    /// The response body is larger than the job's body limit.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The response body is compressed and does not decode (corrupt or truncated).
    BodyDecode {
        /// The `Content-Encoding`.
        encoding: String,
        /// What the decoder said.
        detail: String,
    },
    /// The response head is larger than the job's header limit.
    HeadersTooLarge {
        /// The limit, in bytes.
        limit: usize,
        /// Whether the head may instead have been malformed: HTTP/2 refuses a head somewhat
        /// over the limit with the same stream reset as a malformed one.
        or_malformed: bool,
    },
    /// More redirects than the job allows, or a redirect loop.
    RedirectLimit {
        /// The limit.
        limit: u32,
        /// Whether a request repeated one made before.
        looped: bool,
    },
    /// The proxy could not be reached (refused, unreachable, closed, timed out).
    ProxyUnreachable {
        /// The proxy's `host:port`.
        proxy: String,
        /// What happened.
        detail: String,
    },
    /// The proxy answered 407: it wants (other) credentials.
    ProxyAuthRequired {
        /// The proxy's `host:port`.
        proxy: String,
        /// Whether credentials were sent.
        sent: bool,
    },
    /// The proxy refused to open a CONNECT tunnel.
    ProxyTunnelRefused {
        /// The proxy's `host:port`.
        proxy: String,
        /// The proxy's status line.
        status: String,
    },
    /// The egress policy refused a connection (before anything was sent to it).
    EgressDenied {
        /// The address (with the name it was for, or the proxy it goes through).
        address: String,
        /// The rule that denied it: `deny ENTRY`, or a default's name.
        rule: String,
        /// Whether an explicit deny entry denied it (no allow entry overrides one).
        explicit: bool,
        /// The allow entry that would allow it (for a default deny).
        allow: String,
    },
    /// A keystore or trust store could not be used.
    Keystore {
        /// Which one.
        material: Material,
        /// The keystore error, with its own `keystore.*` kind.
        source: keystore::Error,
    },
    /// A keystore or trust store file could not be read.
    Unreadable {
        /// Which one.
        material: Material,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        detail: String,
    },
    /// A bug: the job panicked or a task was lost. Never expected; please report it.
    Internal {
        /// What happened.
        detail: String,
    },
}

/// Which material a [`Error::Keystore`] or [`Error::Unreadable`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Material {
    /// The client identity (keystore, or certificate and key files).
    Identity,
    /// The custom trust store.
    Trust,
}

/// What a handshake revealed about client authentication, for messages and hints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeFacts {
    /// Whether the job carried a client identity at all.
    pub configured: bool,
    /// Whether the server sent a CertificateRequest.
    pub requested: bool,
    /// The CA names the server said it accepts (may be empty).
    pub acceptable_issuers: Vec<String>,
    /// Subject of the certificate we sent, if we sent one.
    pub presented_subject: Option<String>,
    /// Issuer of the certificate we sent, if we sent one.
    pub presented_issuer: Option<String>,
    /// The end of validity of the certificate we sent (RFC 3339).
    pub presented_not_after: Option<String>,
}

/// A job that cannot be built: its kind is always `request.invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
}

impl JobError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// Always `request.invalid`.
    pub fn kind(&self) -> &'static str {
        "request.invalid"
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        "fix the job: an absolute http:// or https:// URL, header names and values without \
         CR/LF or control characters, valid options"
            .into()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl Error {
    /// The stable machine-readable kind, e.g. `tls.client_cert_rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "request.invalid",
            Self::Dns { .. } => "dns",
            Self::ConnectRefused { .. } => "connect.refused",
            Self::ConnectTimeout { .. } => "connect.timeout",
            Self::ConnectFailed { .. } => "connect.failed",
            Self::ServerUntrusted { .. } => "tls.server_untrusted",
            Self::HostnameMismatch { .. } => "tls.hostname_mismatch",
            Self::ServerCertExpired { .. } => "tls.server_cert_expired",
            Self::ClientCertRequired { .. } => "tls.client_cert_required",
            Self::ClientCertRejected { .. } => "tls.client_cert_rejected",
            Self::TlsProtocol { .. } => "tls.protocol",
            Self::HandshakeTimeout { .. } => "tls.handshake_timeout",
            Self::HttpProtocol { .. } => "http.protocol",
            Self::Timeout { .. } => "timeout",
            Self::BodyTooLarge { .. } => "body.too_large",
            Self::BodyDecode { .. } => "body.decode",
            Self::HeadersTooLarge { .. } => "http.headers_too_large",
            Self::RedirectLimit { .. } => "redirect.limit",
            Self::ProxyUnreachable { .. } => "proxy.unreachable",
            Self::ProxyAuthRequired { .. } => "proxy.auth_required",
            Self::ProxyTunnelRefused { .. } => "proxy.tunnel_refused",
            Self::EgressDenied { .. } => "egress.denied",
            Self::Keystore { source, .. } => source.kind(),
            Self::Unreadable { .. } => "keystore.unreadable",
            Self::Internal { .. } => "internal",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(error) => write!(f, "invalid request: {error}"),
            Self::Dns { host, detail } => write!(f, "cannot resolve {host}: {detail}"),
            Self::ConnectRefused { address } => write!(f, "connection refused by {address}"),
            Self::ConnectTimeout { address, after } => {
                write!(f, "no TCP connection to {address} within {}", secs(*after))
            }
            Self::ConnectFailed { address, detail } => {
                write!(f, "cannot connect to {address}: {detail}")
            }
            Self::ServerUntrusted { detail, .. } => {
                write!(f, "the server certificate is not trusted: {detail}")
            }
            Self::HostnameMismatch { name, .. } => {
                write!(f, "the server certificate is not valid for '{name}'")
            }
            Self::ServerCertExpired { detail } => write!(f, "the server certificate {detail}"),
            Self::ClientCertRequired { facts } if facts.configured => write!(
                f,
                "the server requires a client certificate and the configured one was not sent"
            ),
            Self::ClientCertRequired { .. } => write!(
                f,
                "the server requires a client certificate and the job has none"
            ),
            Self::ClientCertRejected { alert, facts } => write!(
                f,
                "the server rejected the client certificate {} ({alert})",
                facts
                    .presented_subject
                    .as_deref()
                    .unwrap_or("that was sent")
            ),
            Self::TlsProtocol { detail } => write!(f, "TLS handshake failed: {detail}"),
            Self::HandshakeTimeout { after } => {
                write!(
                    f,
                    "the TLS handshake did not finish within {}",
                    secs(*after)
                )
            }
            Self::HttpProtocol { detail } => write!(f, "HTTP protocol error: {detail}"),
            Self::Timeout { phase, after } => {
                write!(f, "timed out after {} (during {phase})", secs(*after))
            }
            Self::BodyTooLarge { limit } => {
                write!(f, "the response body exceeds the limit of {limit} bytes")
            }
            Self::BodyDecode { encoding, detail } => {
                write!(f, "the {encoding} response body does not decode: {detail}")
            }
            Self::HeadersTooLarge {
                limit,
                or_malformed: false,
            } => write!(f, "the response head exceeds the limit of {limit} bytes"),
            Self::HeadersTooLarge {
                limit,
                or_malformed: true,
            } => write!(
                f,
                "the HTTP/2 response head was refused: larger than the limit of {limit} bytes, \
                 or malformed (HTTP/2 resets the stream alike for both)"
            ),
            Self::RedirectLimit { looped: true, .. } => write!(f, "the redirects loop"),
            Self::RedirectLimit { limit, .. } => {
                write!(f, "more than {limit} redirects")
            }
            Self::ProxyUnreachable { proxy, detail } => {
                write!(f, "cannot reach the proxy {proxy}: {detail}")
            }
            Self::ProxyAuthRequired { proxy, .. } => {
                write!(f, "the proxy {proxy} requires authentication (407)")
            }
            Self::ProxyTunnelRefused { proxy, status } => {
                write!(f, "the proxy {proxy} refused the tunnel: {status}")
            }
            Self::EgressDenied { address, rule, .. } => {
                write!(f, "connection to {address} denied by egress rule '{rule}'")
            }
            Self::Keystore { material, source } => write!(f, "{material}: {source}"),
            Self::Unreadable {
                material,
                path,
                detail,
            } => write!(f, "{material}: cannot read {}: {detail}", path.display()),
            Self::Internal { detail } => write!(f, "internal error: {detail}"),
        }
    }
}

impl fmt::Display for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "client identity",
            Self::Trust => "trust store",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidRequest(source) => Some(source),
            Self::Keystore { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn secs(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
