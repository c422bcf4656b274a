//! Lint of a certificate chain: the problems that make a handshake fail later.

use serde::Serialize;
use time::OffsetDateTime;

use crate::cert::CertificateInfo;

/// Certificates expiring within this many days get a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One problem found by [`lint_chain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What kind of problem (stable).
    pub kind: FindingKind,
    /// How bad it is.
    pub severity: Severity,
    /// A sentence for people.
    pub message: String,
}

/// The kinds of lint finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A certificate's validity has not started.
    NotYetValid,
    /// A certificate has expired.
    Expired,
    /// A certificate expires within [`EXPIRY_WARNING_DAYS`].
    ExpiresSoon,
    /// The leaf has an extended key usage extension without `clientAuth`.
    MissingClientAuth,
    /// The leaf's issuer is not included, so servers that know only the root reject it.
    IncompleteChain,
    /// The private key does not belong to the leaf certificate.
    KeyMismatch,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The identity will be rejected.
    Error,
    /// The identity works today but is likely to cause trouble.
    Warning,
}

impl FindingKind {
    /// The stable name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::ExpiresSoon => "expires_soon",
            Self::MissingClientAuth => "missing_client_auth",
            Self::IncompleteChain => "incomplete_chain",
            Self::KeyMismatch => "key_mismatch",
        }
    }
}

/// Lints a client certificate chain (leaf first) at time `now`.
pub fn lint_chain(chain: &[CertificateInfo], now: OffsetDateTime) -> Vec<Finding> {
    let mut findings = Vec::new();
    let now_unix = now.unix_timestamp();
    for (index, cert) in chain.iter().enumerate() {
        let which = if index == 0 {
            format!("certificate {}", cert.subject)
        } else {
            format!("chain certificate {}", cert.subject)
        };
        let days = cert.days_left(now);
        if now_unix < cert.not_before_unix {
            findings.push(Finding {
                kind: FindingKind::NotYetValid,
                severity: Severity::Error,
                message: format!("{which} is not valid before {}", cert.not_before),
            });
        } else if now_unix > cert.not_after_unix {
            findings.push(Finding {
                kind: FindingKind::Expired,
                severity: Severity::Error,
                message: format!("{which} expired on {} ({} days ago)", cert.not_after, -days),
            });
        } else if days < EXPIRY_WARNING_DAYS {
            findings.push(Finding {
                kind: FindingKind::ExpiresSoon,
                severity: Severity::Warning,
                message: format!("{which} expires in {days} days ({})", cert.not_after),
            });
        }
    }
    let Some(leaf) = chain.first() else {
        return findings;
    };
    let eku = &leaf.extended_key_usage;
    if !eku.is_empty()
        && !eku
            .iter()
            .any(|usage| usage == "clientAuth" || usage == "any")
    {
        findings.push(Finding {
            kind: FindingKind::MissingClientAuth,
            severity: Severity::Warning,
            message: format!(
                "certificate {} allows only {}, not clientAuth; servers may reject it as a \
                 client certificate",
                leaf.subject,
                eku.join(", ")
            ),
        });
    }
    if let Some(last) = chain.last() {
        // A chain may omit the root, but it must reach a CA: a lone non-CA leaf that is not
        // self-signed is missing the intermediate that issued it.
        if !last.self_issued && !last.is_ca {
            findings.push(Finding {
                kind: FindingKind::IncompleteChain,
                severity: Severity::Warning,
                message: format!(
                    "the chain ends at {} whose issuer {} is not included; servers that trust \
                     only the root will reject it",
                    last.subject, last.issuer
                ),
            });
        }
    }
    findings
}
