//! Text output for people.

use std::io::{self, Write};
use std::path::Path;

use keystore::{EntryKind, Report, Severity};

/// The inspection report as text.
pub(crate) fn inspect(out: &mut impl Write, file: &Path, report: &Report) -> io::Result<()> {
    writeln!(out, "{}: {}, {} entries", file.display(), report.format, report.entries.len())?;
    for (index, entry) in report.entries.iter().enumerate() {
        writeln!(out)?;
        let alias = entry
            .alias
            .as_deref()
            .map(|a| format!("alias \"{a}\""))
            .unwrap_or_else(|| "no alias".to_owned());
        let kind = match entry.kind {
            EntryKind::PrivateKey => "private key",
            EntryKind::TrustedCertificate => "trusted certificate",
            EntryKind::SecretKey => "secret key (not usable for TLS)",
        };
        let key = match &entry.key {
            Some(key) if key.status == "ok" => {
                format!(" - key {}ok, matches the certificate", encrypted(key.encrypted))
            }
            Some(key) => format!(
                " - key {}NOT usable: {}",
                encrypted(key.encrypted),
                key.message.as_deref().unwrap_or(&key.status)
            ),
            None => String::new(),
        };
        writeln!(out, "[{}] {alias}: {kind}{key}", index + 1)?;
        for (position, cert) in entry.certificates.iter().enumerate() {
            let role = match (entry.kind, position) {
                (EntryKind::PrivateKey, 0) => "leaf",
                (EntryKind::PrivateKey, _) if cert.info.self_issued => "root",
                (EntryKind::PrivateKey, _) => "issuer",
                _ if cert.info.is_ca => "CA",
                _ => "certificate",
            };
            let info = &cert.info;
            writeln!(out, "    certificate {} ({role})", position + 1)?;
            writeln!(out, "      subject:  {}", info.subject)?;
            writeln!(out, "      issuer:   {}", info.issuer)?;
            if !info.subject_alt_names.is_empty() {
                writeln!(out, "      SANs:     {}", info.subject_alt_names.join(", "))?;
            }
            writeln!(out, "      serial:   {}", info.serial)?;
            writeln!(
                out,
                "      valid:    {} to {} ({})",
                info.not_before,
                info.not_after,
                days(cert.days_left)
            )?;
            writeln!(out, "      key:      {} ({} bits)", info.key_algorithm, info.key_bits)?;
            if !info.extended_key_usage.is_empty() {
                writeln!(out, "      usage:    {}", info.extended_key_usage.join(", "))?;
            }
            writeln!(out, "      sha256:   {}", colons(&info.sha256))?;
        }
        if entry.kind == EntryKind::PrivateKey {
            if entry.findings.is_empty() {
                writeln!(out, "    lint: no findings")?;
            }
            for finding in &entry.findings {
                let level = match finding.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                writeln!(out, "    {level}[{}]: {}", finding.kind.as_str(), finding.message)?;
            }
        }
    }
    Ok(())
}

fn encrypted(is: bool) -> &'static str {
    if is { "(encrypted) " } else { "" }
}

fn days(left: i64) -> String {
    if left < 0 {
        format!("EXPIRED {} days ago", -left)
    } else {
        format!("{left} days left")
    }
}

/// `ab12cd` as `AB:12:CD`, the way keytool and openssl print fingerprints.
fn colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}
