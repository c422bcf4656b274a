//! What `downloader keystore inspect` reports: every entry, its certificates and lint.

use serde::Serialize;
use time::OffsetDateTime;

use crate::cert::CertificateInfo;
use crate::lint::{Finding, FindingKind, Severity, lint_chain};
use crate::store::{EntryKind, Keystore};
use crate::{Error, Format};

/// The inspection of a whole keystore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The detected format.
    pub format: Format,
    /// The entries, in file order.
    pub entries: Vec<EntryReport>,
}

/// One entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryReport {
    /// The alias (null for PEM and DER).
    pub alias: Option<String>,
    /// What the entry holds.
    pub kind: EntryKind,
    /// For private-key entries: whether the key opened and matches.
    pub key: Option<KeyReport>,
    /// The chain (leaf first) or the trusted certificate.
    pub certificates: Vec<CertificateView>,
    /// Lint findings (private-key entries only).
    pub findings: Vec<Finding>,
}

/// The state of a private key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReport {
    /// Whether it is stored encrypted.
    pub encrypted: bool,
    /// `ok`, or the error kind that opening it gave (e.g. `keystore.wrong_key_password`).
    pub status: String,
    /// The error message, when not ok.
    pub message: Option<String>,
}

/// A certificate with its days left at inspection time.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateView {
    /// The certificate's facts.
    #[serde(flatten)]
    pub info: CertificateInfo,
    /// Whole days until it expires (negative once expired).
    pub days_left: i64,
}

/// Inspects `store` at time `now`; with `alias`, only that entry.
pub fn inspect(
    store: &Keystore,
    alias: Option<&str>,
    now: OffsetDateTime,
) -> Result<Report, Error> {
    let selected: Vec<_> = store
        .entries()
        .iter()
        .filter(|entry| match alias {
            Some(alias) => entry.alias().is_some_and(|a| a.eq_ignore_ascii_case(alias)),
            None => true,
        })
        .collect();
    if let (Some(alias), true) = (alias, selected.is_empty()) {
        return Err(Error::AliasNotFound {
            alias: alias.to_owned(),
            available: store.private_key_aliases(),
        });
    }
    let mut entries = Vec::new();
    for entry in selected {
        let infos = entry
            .certificates()
            .iter()
            .map(|cert| CertificateInfo::from_der(cert))
            .collect::<Result<Vec<_>, _>>()?;
        let mut findings = Vec::new();
        let key = if entry.kind() == EntryKind::PrivateKey {
            findings = lint_chain(&infos, now);
            let (status, message) = match store.identity_of(entry) {
                Ok(_) => ("ok".to_owned(), None),
                Err(error) => {
                    if let Error::KeyDoesNotMatchCertificate { .. } = error {
                        findings.push(Finding {
                            kind: FindingKind::KeyMismatch,
                            severity: Severity::Error,
                            message: "the private key does not belong to the leaf certificate"
                                .into(),
                        });
                    }
                    (error.kind().to_owned(), Some(error.to_string()))
                }
            };
            Some(KeyReport {
                encrypted: entry.key_is_encrypted(),
                status,
                message,
            })
        } else {
            None
        };
        let certificates = infos
            .into_iter()
            .map(|info| CertificateView {
                days_left: info.days_left(now),
                info,
            })
            .collect();
        entries.push(EntryReport {
            alias: entry.alias().map(str::to_owned),
            kind: entry.kind(),
            key,
            certificates,
            findings,
        });
    }
    Ok(Report {
        format: store.format(),
        entries,
    })
}
