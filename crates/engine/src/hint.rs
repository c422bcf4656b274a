//! What to do about an [`Error`]: a remedy built from what the handshake revealed, naming the
//! settings to change as [`Setting`]s, worded by the surface that shows it ([`Vocabulary`]).

use keystore::remedy::{Plain, Setting, Vocabulary};

use crate::error::{Error, HandshakeFacts};

impl Error {
    /// A one-line suggestion of what to do, in plain words (no surface's names).
    pub fn hint(&self) -> String {
        self.hint_in(&Plain)
    }

    /// The same, naming settings in `words` (a surface's flags, fields or settings).
    pub fn hint_in(&self, words: &dyn Vocabulary) -> String {
        self.connection_hint(words)
            .or_else(|| self.http_hint(words))
            .unwrap_or_else(|| self.other_hint(words))
    }

    /// Name resolution, TCP and TLS.
    fn connection_hint(&self, words: &dyn Vocabulary) -> Option<String> {
        let name = |setting| words.name(setting);
        let hint = match self {
            Self::Dns { .. } => format!(
                "check the host name, or pin an address with {}",
                name(Setting::Resolve)
            ),
            Self::ConnectRefused { .. } => {
                "nothing listens there: check the port and that the server is running".into()
            }
            Self::ConnectTimeout { .. } => format!(
                "the host does not answer: check firewalls and routes, or raise {}",
                name(Setting::ConnectTimeout)
            ),
            Self::ConnectFailed { .. } => "check the network route to the host".into(),
            Self::ServerUntrusted {
                issuer, leaf_only, ..
            } => untrusted_hint(issuer.as_deref(), *leaf_only, words),
            Self::HostnameMismatch { presented, .. } => format!(
                "the certificate is valid for [{}]: use one of those names in the URL (with {} \
                 to keep the address) or set {}",
                presented.join(", "),
                name(Setting::Resolve),
                name(Setting::Sni)
            ),
            Self::ServerCertExpired { .. } => format!(
                "the server must renew its certificate; {} skips the check if you must reach \
                 it now",
                name(Setting::Insecure)
            ),
            Self::ClientCertRequired { facts } => required_hint(facts, words),
            Self::ClientCertRejected { alert, facts } => rejected_hint(alert, facts),
            Self::TlsProtocol { .. } => format!(
                "the server and the job share no TLS version, cipher or protocol; check {} and \
                 that the port speaks TLS",
                name(Setting::TlsVersions)
            ),
            Self::HandshakeTimeout { .. } => "the server accepted TCP but did not complete the \
                 TLS handshake: check that the port speaks TLS (not plain HTTP)"
                .into(),
            _ => return None,
        };
        Some(hint)
    }

    /// The HTTP exchange: protocol, limits, redirects.
    fn http_hint(&self, words: &dyn Vocabulary) -> Option<String> {
        let name = |setting| words.name(setting);
        let hint = match self {
            Self::HttpProtocol { .. } => format!(
                "the server's answer is not valid HTTP; try forcing {}",
                name(Setting::HttpVersion)
            ),
            Self::Timeout { .. } => format!("the server is slow: raise {}", name(Setting::Timeout)),
            Self::BodyTooLarge { limit } => format!(
                "the response is larger than {limit} bytes; raise {} if you need all of it",
                name(Setting::BodyLimit)
            ),
            Self::BodyDecode { .. } => "the server's compressed body is corrupt; set your own \
                 Accept-Encoding (e.g. identity) to receive it undecoded"
                .into(),
            Self::HeadersTooLarge {
                or_malformed: false,
                ..
            } => format!(
                "the server sends a very large head; raise {}",
                name(Setting::HeaderLimit)
            ),
            Self::HeadersTooLarge {
                or_malformed: true, ..
            } => format!(
                "raise {}; if the error stays, the server's HTTP/2 head is malformed (a \
                 Connection or Transfer-Encoding header, say): try forcing {}",
                name(Setting::HeaderLimit),
                name(Setting::HttpVersion)
            ),
            Self::RedirectLimit { looped: true, .. } => {
                "the redirects go round in a loop: check the server's Location headers".into()
            }
            Self::RedirectLimit { .. } => format!(
                "raise {} or request the final URL directly",
                name(Setting::MaxRedirects)
            ),
            _ => return None,
        };
        Some(hint)
    }

    /// Proxies, egress, keystores and the rest.
    fn other_hint(&self, words: &dyn Vocabulary) -> String {
        let name = |setting| words.name(setting);
        match self {
            Self::InvalidRequest(error) => error.hint(),
            Self::ProxyUnreachable { .. } => {
                "check the proxy address and port, and that the proxy is running".into()
            }
            Self::ProxyAuthRequired { sent: true, .. } => {
                "the proxy rejected the credentials: check the proxy user and password".into()
            }
            Self::ProxyAuthRequired { .. } => {
                format!("give {}", name(Setting::ProxyCredentials))
            }
            Self::ProxyTunnelRefused { .. } => "the proxy does not allow a tunnel to this host \
                 and port: check its access rules, or exclude the host from the proxy"
                .into(),
            Self::EgressDenied {
                rule,
                explicit,
                allow,
                ..
            } => egress_hint(rule, *explicit, allow, words),
            Self::Keystore { source, .. } => source.hint_in(words),
            Self::Unreadable { .. } => "check the path and the file's permissions".into(),
            // Internal, and (never reached) the variants the other two functions word.
            _ => "this is a bug in the downloader; please report it".into(),
        }
    }
}

fn untrusted_hint(issuer: Option<&str>, leaf_only: bool, words: &dyn Vocabulary) -> String {
    let trust = words.name(Setting::TrustStore);
    let insecure = words.name(Setting::Insecure);
    match (issuer, leaf_only) {
        (Some(issuer), true) => format!(
            "the server sent only its own certificate, without the intermediate CA '{issuer}' \
             that issued it: fix the server's chain (send the intermediate with the \
             certificate, e.g. nginx `ssl_certificate` with the full chain), or add '{issuer}' \
             to {trust}"
        ),
        (Some(issuer), false) => format!(
            "the server's chain ends at '{issuer}', which is not trusted: add that CA to \
             {trust} ({} custom or both), or skip verification with {insecure}",
            words.name(Setting::TrustMode)
        ),
        (None, _) => {
            format!("add the server's CA to {trust}, or skip verification with {insecure}")
        }
    }
}

fn egress_hint(rule: &str, explicit: bool, allow: &str, words: &dyn Vocabulary) -> String {
    if explicit {
        let entry = rule.strip_prefix("deny ").unwrap_or(rule);
        format!(
            "the entry '{entry}' of {} denies it: remove that entry to allow it (an allow \
             entry never overrides a deny)",
            words.name(Setting::EgressDeny)
        )
    } else {
        format!(
            "denied by default: add '{allow}' to {} to allow it",
            words.name(Setting::EgressAllow)
        )
    }
}

fn required_hint(facts: &HandshakeFacts, words: &dyn Vocabulary) -> String {
    let accepts = issuer_list(facts);
    if facts.configured {
        format!(
            "a client certificate was configured but could not be used with the signature \
             schemes the server offers{accepts}"
        )
    } else {
        format!("give {}{accepts}", words.name(Setting::ClientCert))
    }
}

fn rejected_hint(alert: &str, facts: &HandshakeFacts) -> String {
    let ours = facts
        .presented_issuer
        .as_deref()
        .unwrap_or("an unknown issuer");
    if alert == "certificate_expired" {
        let until = facts
            .presented_not_after
            .as_deref()
            .unwrap_or("an earlier date");
        return format!("the server says the certificate expired (valid until {until}): renew it");
    }
    if !facts.acceptable_issuers.is_empty() {
        let known = facts
            .acceptable_issuers
            .iter()
            .any(|issuer| Some(issuer.as_str()) == facts.presented_issuer.as_deref());
        if known {
            return format!(
                "the server accepts your issuer ('{ours}'); check the certificate's validity \
                 and clientAuth usage, and that the server trusts the whole chain"
            );
        }
        return format!(
            "the server accepts certificates issued by [{}], but yours was issued by '{ours}': \
             use a certificate from one of those CAs",
            facts.acceptable_issuers.join("; ")
        );
    }
    format!(
        "the server did not name the CAs it accepts; yours was issued by '{ours}': ask the \
         server's operator which CA issues client certificates"
    )
}

fn issuer_list(facts: &HandshakeFacts) -> String {
    if facts.acceptable_issuers.is_empty() {
        String::new()
    } else {
        format!(
            " issued by one of [{}]",
            facts.acceptable_issuers.join("; ")
        )
    }
}
