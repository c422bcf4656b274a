//! The one place that turns `io::Error`, `rustls::Error` and `hyper::Error` into [`Error`].
//!
//! The rules, in short:
//! - refused TCP is `connect.refused`; a limit running out is `connect.timeout`,
//!   `tls.handshake_timeout` or `timeout` depending on the phase it ran out in;
//! - a certificate error from our verifier is `tls.server_untrusted`,
//!   `tls.hostname_mismatch` or `tls.server_cert_expired`;
//! - a certificate-related alert from a server that asked for a client certificate is
//!   `tls.client_cert_required` when we sent none and `tls.client_cert_rejected` when we did.
//!   This holds during the handshake (TLS 1.2) and on the first read after it (TLS 1.3, where
//!   the server judges our certificate after the client has finished), so a TLS 1.3 rejection
//!   is never reported as an HTTP error;
//! - a connection closed by a server that asked for a certificate, before any response, is
//!   treated the same way (some servers close without an alert);
//! - anything else in TLS is `tls.protocol`, anything else in HTTP is `http.protocol`.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use rustls::AlertDescription;
use rustls::CertificateError;

use crate::error::{Error, HandshakeFacts};

/// The phase a job was in when something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Dns,
    Connect,
    Handshake,
    Wait,
    Download,
}

/// An I/O error as the connection wrapper saw it: its kind, and the TLS error inside, if any.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    kind: io::ErrorKind,
    tls: Option<rustls::Error>,
    text: String,
}

/// What the classification may use besides the error itself.
#[derive(Debug)]
pub(crate) struct Seen<'a> {
    /// Client-authentication facts of the handshake.
    pub(crate) facts: &'a HandshakeFacts,
    /// The name the server certificate was checked against.
    pub(crate) server_name: &'a str,
    /// The top of the chain the server sent.
    pub(crate) top: &'a ChainTop,
}

/// The top of the chain a server sent.
#[derive(Debug, Default)]
pub(crate) struct ChainTop {
    /// The issuer of the last certificate.
    pub(crate) issuer: Option<String>,
    /// Whether the server sent only its own certificate (not a CA, not self-issued): the
    /// intermediate that issued it is missing from the chain.
    pub(crate) leaf_only: bool,
}

/// Keeps what classification needs from an I/O error (which cannot be cloned).
pub(crate) fn capture(error: &io::Error) -> Captured {
    Captured {
        kind: error.kind(),
        tls: error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned(),
        text: error.to_string(),
    }
}

/// A limit ran out during `phase`.
pub(crate) fn timeout(phase: Phase, after: Duration, address: &str) -> Error {
    match phase {
        Phase::Dns => Error::Dns {
            host: address.to_owned(),
            detail: format!("no answer within {} ms", after.as_millis()),
        },
        Phase::Connect => Error::ConnectTimeout {
            address: address.to_owned(),
            after,
        },
        Phase::Handshake => Error::HandshakeTimeout { after },
        Phase::Wait => Error::Timeout {
            phase: "wait",
            after,
        },
        Phase::Download => Error::Timeout {
            phase: "download",
            after,
        },
    }
}

/// Name resolution failed.
pub(crate) fn dns(host: &str, error: &io::Error) -> Error {
    Error::Dns {
        host: host.to_owned(),
        detail: error.to_string(),
    }
}

/// The TCP connect failed.
pub(crate) fn connect(address: &str, error: &io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectRefused {
            address: address.to_owned(),
        },
        _ => Error::ConnectFailed {
            address: address.to_owned(),
            detail: error.to_string(),
        },
    }
}

/// The TLS handshake failed with `error` (tokio-rustls wraps rustls errors in `io::Error`).
pub(crate) fn handshake(error: &io::Error, seen: &Seen<'_>) -> Error {
    captured(&capture(error), seen, Phase::Handshake)
}

/// The request or body failed; `read_error` is what the connection's reads hit, if anything.
pub(crate) fn exchange(
    error: &hyper::Error,
    read_error: Option<&Captured>,
    seen: &Seen<'_>,
    phase: Phase,
) -> Error {
    if let Some(read_error) =
        read_error.filter(|error| error.tls.is_some() || is_closed(error.kind))
    {
        return captured(read_error, seen, phase);
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return captured(&capture(io_error), seen, phase);
        }
        source = cause.source();
    }
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return closed(seen, phase, &chain_text(error));
    }
    Error::HttpProtocol {
        detail: chain_text(error),
    }
}

/// The response head was larger than the job allows.
///
/// HTTP/1.1: hyper's parser says so. HTTP/2: h2 refuses a header list over the limit on our
/// side, with a GOAWAY `ENHANCE_YOUR_CALM` when it is far over (four times), else with a
/// `PROTOCOL_ERROR` reset of the stream — the reset it also uses for a malformed head, so
/// that case says it may be either.
pub(crate) fn head_too_large(error: &hyper::Error, limit: usize) -> Option<Error> {
    // `is_parse_too_large` exists only with hyper's server feature; the message is stable.
    if error.is_parse() && error.to_string().contains("too large") {
        return Some(Error::HeadersTooLarge {
            limit,
            or_malformed: false,
        });
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2_error) = cause.downcast_ref::<h2::Error>() {
            return h2_head_refused(H2Refusal::of(h2_error)?, limit);
        }
        source = cause.source();
    }
    None
}

/// How h2 refused a stream on our side (never what the server sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Refusal {
    /// It reset the stream.
    Reset(h2::Reason),
    /// It closed the whole connection.
    GoAway(h2::Reason),
}

impl H2Refusal {
    fn of(error: &h2::Error) -> Option<Self> {
        let reason = error.reason().filter(|_| error.is_library())?;
        if error.is_go_away() {
            Some(Self::GoAway(reason))
        } else if error.is_reset() {
            Some(Self::Reset(reason))
        } else {
            None
        }
    }
}

/// What h2 refusing the response head (before it reached us) means.
fn h2_head_refused(refusal: H2Refusal, limit: usize) -> Option<Error> {
    match refusal {
        H2Refusal::GoAway(h2::Reason::ENHANCE_YOUR_CALM) => Some(Error::HeadersTooLarge {
            limit,
            or_malformed: false,
        }),
        H2Refusal::Reset(h2::Reason::PROTOCOL_ERROR) => Some(Error::HeadersTooLarge {
            limit,
            or_malformed: true,
        }),
        _ => None,
    }
}

/// The TLS error inside `error`.
pub(crate) fn tls(error: &rustls::Error, seen: &Seen<'_>) -> Error {
    match error {
        rustls::Error::InvalidCertificate(certificate) => server_certificate(certificate, seen),
        rustls::Error::AlertReceived(alert) => alert_received(*alert, seen),
        other => Error::TlsProtocol {
            detail: other.to_string(),
        },
    }
}

fn captured(error: &Captured, seen: &Seen<'_>, phase: Phase) -> Error {
    if let Some(tls_error) = &error.tls {
        return tls(tls_error, seen);
    }
    if is_closed(error.kind) {
        return closed(seen, phase, &error.text);
    }
    match phase {
        Phase::Handshake => Error::TlsProtocol {
            detail: error.text.clone(),
        },
        _ => Error::HttpProtocol {
            detail: error.text.clone(),
        },
    }
}

fn server_certificate(error: &CertificateError, seen: &Seen<'_>) -> Error {
    match error {
        CertificateError::NotValidForName => Error::HostnameMismatch {
            name: seen.server_name.to_owned(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext { presented, .. } => Error::HostnameMismatch {
            name: seen.server_name.to_owned(),
            presented: presented.clone(),
        },
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            Error::ServerCertExpired {
                detail: format!("has expired ({error})"),
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            Error::ServerCertExpired {
                detail: format!("is not valid yet ({error})"),
            }
        }
        other => Error::ServerUntrusted {
            detail: rustls::Error::InvalidCertificate(other.clone()).to_string(),
            issuer: seen.top.issuer.clone(),
            leaf_only: seen.top.leaf_only,
        },
    }
}

/// Alerts a server sends when it does not like (or misses) the client certificate.
const CLIENT_CERTIFICATE_ALERTS: [AlertDescription; 9] = [
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::CertificateRevoked,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateUnknown,
    AlertDescription::UnknownCA,
    AlertDescription::AccessDenied,
    AlertDescription::HandshakeFailure,
];

fn alert_received(alert: AlertDescription, seen: &Seen<'_>) -> Error {
    let facts = seen.facts;
    let about_client = CLIENT_CERTIFICATE_ALERTS.contains(&alert);
    let presented = facts.presented_subject.is_some();
    if alert == AlertDescription::CertificateRequired || (about_client && facts.requested) {
        if presented {
            return Error::ClientCertRejected {
                alert: alert_name(alert),
                facts: Box::new(facts.clone()),
            };
        }
        return Error::ClientCertRequired {
            facts: Box::new(facts.clone()),
        };
    }
    Error::TlsProtocol {
        detail: format!("the server sent the alert {}", alert_name(alert)),
    }
}

fn closed(seen: &Seen<'_>, phase: Phase, text: &str) -> Error {
    let facts = seen.facts;
    let before_response = matches!(phase, Phase::Handshake | Phase::Wait);
    if facts.requested && before_response {
        if facts.presented_subject.is_some() {
            return Error::ClientCertRejected {
                alert: "connection closed without an alert".into(),
                facts: Box::new(facts.clone()),
            };
        }
        return Error::ClientCertRequired {
            facts: Box::new(facts.clone()),
        };
    }
    match phase {
        Phase::Handshake => Error::TlsProtocol {
            detail: format!("the server closed the connection during the handshake ({text})"),
        },
        _ => Error::HttpProtocol {
            detail: format!("the server closed the connection ({text})"),
        },
    }
}

fn is_closed(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The alert's name as the TLS RFCs write it (`unknown_ca`).
pub(crate) fn alert_name(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => "certificate_required".into(),
        AlertDescription::BadCertificate => "bad_certificate".into(),
        AlertDescription::UnsupportedCertificate => "unsupported_certificate".into(),
        AlertDescription::CertificateRevoked => "certificate_revoked".into(),
        AlertDescription::CertificateExpired => "certificate_expired".into(),
        AlertDescription::CertificateUnknown => "certificate_unknown".into(),
        AlertDescription::UnknownCA => "unknown_ca".into(),
        AlertDescription::AccessDenied => "access_denied".into(),
        AlertDescription::HandshakeFailure => "handshake_failure".into(),
        AlertDescription::ProtocolVersion => "protocol_version".into(),
        AlertDescription::InsufficientSecurity => "insufficient_security".into(),
        AlertDescription::DecryptError => "decrypt_error".into(),
        AlertDescription::InternalError => "internal_error".into(),
        AlertDescription::NoApplicationProtocol => "no_application_protocol".into(),
        AlertDescription::UnrecognisedName => "unrecognized_name".into(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{JobError, Material};

    fn facts(requested: bool, presented: bool) -> HandshakeFacts {
        HandshakeFacts {
            configured: presented,
            requested,
            acceptable_issuers: vec!["CN=Fixture Intermediate CA".into()],
            presented_subject: presented.then(|| "CN=client-p256".into()),
            presented_issuer: presented.then(|| "CN=Untrusted Root CA".into()),
            presented_not_after: None,
        }
    }

    fn io_with(error: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn a_leaf_without_its_intermediate_says_so() {
        let top = ChainTop {
            issuer: Some("CN=Fixture Intermediate CA".into()),
            leaf_only: true,
        };
        let none = facts(false, false);
        let seen = Seen {
            facts: &none,
            server_name: "localhost",
            top: &top,
        };
        let error = handshake(
            &io_with(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            &seen,
        );
        assert_eq!(error.kind(), "tls.server_untrusted");
        let hint = error.hint();
        assert!(
            hint.contains("without the intermediate CA 'CN=Fixture Intermediate CA'"),
            "{hint}"
        );
        // A complete chain ending at an untrusted CA keeps the usual hint.
        let top = ChainTop {
            issuer: Some("CN=Fixture Root CA".into()),
            leaf_only: false,
        };
        let seen = Seen { top: &top, ..seen };
        let hint = handshake(
            &io_with(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
            &seen,
        )
        .hint();
        assert!(
            hint.contains("'CN=Fixture Root CA', which is not trusted"),
            "{hint}"
        );
    }

    #[test]
    fn one_row_per_kind() {
        let none = facts(false, false);
        let asked = facts(true, false);
        let sent = facts(true, true);
        let root_top = ChainTop {
            issuer: Some("CN=Fixture Root CA".into()),
            leaf_only: false,
        };
        let seen = |facts| Seen {
            facts,
            server_name: "localhost",
            top: &root_top,
        };
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let rows: Vec<(&str, Error)> = vec![
            (
                "request.invalid",
                Error::InvalidRequest(JobError::new("bad URL")),
            ),
            (
                "dns",
                dns("nowhere.invalid", &io::Error::other("no such host")),
            ),
            ("connect.refused", connect("127.0.0.1:1", &refused)),
            ("connect.failed", connect("10.0.0.1:1", &unreachable)),
            (
                "connect.timeout",
                timeout(Phase::Connect, Duration::from_secs(1), "a"),
            ),
            (
                "tls.server_untrusted",
                handshake(
                    &io_with(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer,
                    )),
                    &seen(&none),
                ),
            ),
            (
                "tls.hostname_mismatch",
                tls(
                    &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                    &seen(&none),
                ),
            ),
            (
                "tls.server_cert_expired",
                tls(
                    &rustls::Error::InvalidCertificate(CertificateError::Expired),
                    &seen(&none),
                ),
            ),
            // TLS 1.3: the certificate_required alert.
            (
                "tls.client_cert_required",
                tls(
                    &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                    &seen(&asked),
                ),
            ),
            // TLS 1.2: OpenSSL sends handshake_failure when no certificate came.
            (
                "tls.client_cert_required",
                tls(
                    &rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
                    &seen(&asked),
                ),
            ),
            (
                "tls.client_cert_rejected",
                tls(
                    &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                    &seen(&sent),
                ),
            ),
            // A TLS 1.3 rejection read after the handshake is still a TLS failure.
            (
                "tls.client_cert_rejected",
                captured(
                    &capture(&io_with(rustls::Error::AlertReceived(
                        AlertDescription::BadCertificate,
                    ))),
                    &seen(&sent),
                    Phase::Wait,
                ),
            ),
            ("tls.client_cert_rejected", handshake(&eof, &seen(&sent))),
            (
                "tls.protocol",
                tls(
                    &rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
                    &seen(&none),
                ),
            ),
            ("tls.protocol", handshake(&eof, &seen(&none))),
            (
                "tls.handshake_timeout",
                timeout(Phase::Handshake, Duration::from_secs(1), "a"),
            ),
            (
                "http.protocol",
                captured(&capture(&eof), &seen(&none), Phase::Wait),
            ),
            ("timeout", timeout(Phase::Wait, Duration::from_secs(1), "a")),
            (
                "timeout",
                timeout(Phase::Download, Duration::from_secs(1), "a"),
            ),
            ("body.too_large", Error::BodyTooLarge { limit: 1 }),
            (
                "keystore.wrong_store_password",
                Error::Keystore {
                    material: Material::Identity,
                    source: keystore::Error::WrongStorePassword {
                        format: keystore::Format::Pkcs12,
                    },
                },
            ),
            (
                "keystore.unreadable",
                Error::Unreadable {
                    material: Material::Trust,
                    path: "/nowhere".into(),
                    detail: "not found".into(),
                },
            ),
            (
                "body.decode",
                Error::BodyDecode {
                    encoding: "gzip".into(),
                    detail: "invalid header".into(),
                },
            ),
            (
                "http.headers_too_large",
                Error::HeadersTooLarge {
                    limit: 65_536,
                    or_malformed: false,
                },
            ),
            // HTTP/2, far over the limit: h2 closes the connection.
            (
                "http.headers_too_large",
                h2_head_refused(H2Refusal::GoAway(h2::Reason::ENHANCE_YOUR_CALM), 65_536)
                    .expect("classified"),
            ),
            // HTTP/2, over the limit: h2 resets the stream (as for a malformed head).
            (
                "http.headers_too_large",
                h2_head_refused(H2Refusal::Reset(h2::Reason::PROTOCOL_ERROR), 65_536)
                    .expect("classified"),
            ),
            (
                "redirect.limit",
                Error::RedirectLimit {
                    limit: 10,
                    looped: true,
                },
            ),
            (
                "proxy.unreachable",
                Error::ProxyUnreachable {
                    proxy: "127.0.0.1:3128".into(),
                    detail: "connection refused".into(),
                },
            ),
            (
                "proxy.auth_required",
                Error::ProxyAuthRequired {
                    proxy: "127.0.0.1:3128".into(),
                    sent: false,
                },
            ),
            (
                "proxy.tunnel_refused",
                Error::ProxyTunnelRefused {
                    proxy: "127.0.0.1:3128".into(),
                    status: "403 Forbidden".into(),
                },
            ),
            (
                "egress.denied",
                Error::EgressDenied {
                    address: "127.0.0.1:8819".into(),
                    rule: "the agent itself (listen 127.0.0.1:8819)".into(),
                    explicit: false,
                    allow: "127.0.0.1:8819".into(),
                },
            ),
            ("internal", Error::Internal { detail: "x".into() }),
        ];
        for (expected, error) in rows {
            assert_eq!(error.kind(), expected, "{error:?}");
            assert!(!error.to_string().is_empty());
            assert!(!error.hint().is_empty());
        }
    }

    #[test]
    fn other_h2_refusals_are_not_head_limits() {
        for refusal in [
            H2Refusal::Reset(h2::Reason::CANCEL),
            H2Refusal::Reset(h2::Reason::FLOW_CONTROL_ERROR),
            H2Refusal::GoAway(h2::Reason::PROTOCOL_ERROR),
        ] {
            assert!(h2_head_refused(refusal, 1024).is_none(), "{refusal:?}");
        }
    }

    #[test]
    fn rejection_hint_compares_issuers() {
        let error = tls(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            &Seen {
                facts: &facts(true, true),
                server_name: "localhost",
                top: &ChainTop::default(),
            },
        );
        let hint = error.hint();
        assert!(hint.contains("CN=Fixture Intermediate CA"), "{hint}");
        assert!(hint.contains("CN=Untrusted Root CA"), "{hint}");
    }
}
