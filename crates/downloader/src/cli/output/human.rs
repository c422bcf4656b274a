//! Text output for people.

use std::io::{self, Write};
use std::path::Path;

use keystore::{EntryKind, Report, Severity};

/// The inspection report as text.
pub(crate) fn inspect(out: &mut impl Write, file: &Path, report: &Report) -> io::Result<()> {
    writeln!(
        out,
        "{}: {}, {} entries",
        file.display(),
        report.format,
        report.entries.len()
    )?;
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
                format!(
                    " - key {}ok, matches the certificate",
                    encrypted(key.encrypted)
                )
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
            writeln!(
                out,
                "      key:      {} ({} bits)",
                info.key_algorithm, info.key_bits
            )?;
            if !info.extended_key_usage.is_empty() {
                writeln!(
                    out,
                    "      usage:    {}",
                    info.extended_key_usage.join(", ")
                )?;
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
                writeln!(
                    out,
                    "    {level}[{}]: {}",
                    finding.kind.as_str(),
                    finding.message
                )?;
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

/// A `fetch` result for people: status line, headers, body, timings, then the TLS summary.
pub(crate) fn outcome(out: &mut impl Write, outcome: &engine::Outcome) -> io::Result<()> {
    for hop in outcome.redirects() {
        writeln!(
            out,
            "< {} {} {} -> {}",
            hop.status_code, hop.method, hop.url, hop.location
        )?;
    }
    if !outcome.redirects().is_empty() {
        writeln!(out)?;
    }
    if let Some(response) = &outcome.response {
        response_text(out, response)?;
    }
    let metrics = &outcome.metrics;
    writeln!(out, "timing (ms)")?;
    for (name, value) in [
        ("dns", metrics.dns),
        ("connect", metrics.connect),
        ("tls", metrics.tls),
        ("send", metrics.send),
        ("wait", metrics.wait),
        ("download", metrics.download),
        ("proxy", metrics.proxy),
        ("total", metrics.total),
        ("overall", Some(metrics.overall)),
    ] {
        match value {
            Some(ms) => writeln!(out, "  {name:<9}{ms:>10.3}")?,
            None => writeln!(out, "  {name:<9}{:>10}", "-")?,
        }
    }
    if let Some(tls) = &outcome.tls {
        tls_summary(out, tls)?;
    }
    Ok(())
}

/// The status line, headers and body of a response.
fn response_text(out: &mut impl Write, response: &engine::Response) -> io::Result<()> {
    writeln!(
        out,
        "{} {} {}",
        response.http_version, response.status_code, response.reason
    )?;
    for (name, values) in response.headers.iter() {
        for value in values {
            writeln!(out, "{name}: {value}")?;
        }
    }
    writeln!(out)?;
    match response.body.text() {
        Some(text) => {
            out.write_all(text.as_bytes())?;
            if !text.is_empty() && !text.ends_with('\n') {
                writeln!(out)?;
            }
        }
        None => writeln!(
            out,
            "<{} bytes of binary data; use --json to get them>",
            response.size
        )?,
    }
    if response.truncated {
        writeln!(out, "<body cut at the body limit>")?;
    }
    if let Some(encoding) = &response.decoded {
        writeln!(
            out,
            "<decoded from {encoding}: {} bytes received>",
            response.size
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// Who the server is, what it asked for and who we were.
fn tls_summary(out: &mut impl Write, tls: &engine::TlsInfo) -> io::Result<()> {
    writeln!(out)?;
    let version = tls.version.as_deref().unwrap_or("handshake not completed");
    let cipher = tls.cipher.as_deref().unwrap_or("");
    let alpn = tls
        .alpn
        .as_deref()
        .map(|a| format!(" alpn={a}"))
        .unwrap_or_default();
    let sni = tls
        .sni
        .as_deref()
        .map(|s| format!(" sni={s}"))
        .unwrap_or_default();
    let verified = if tls.verified {
        "verified"
    } else {
        "NOT verified"
    };
    writeln!(out, "TLS {version} {cipher}{alpn}{sni}, server {verified}")?;
    match tls.server_certificates.first() {
        Some(leaf) => writeln!(
            out,
            "  they are:  {} (issued by {}, valid until {})",
            leaf.subject, leaf.issuer, leaf.not_after
        )?,
        None => writeln!(out, "  they are:  no certificate seen")?,
    }
    for cert in tls.server_certificates.iter().skip(1) {
        writeln!(
            out,
            "             + {} (issued by {})",
            cert.subject, cert.issuer
        )?;
    }
    if tls.client_certificate_requested {
        if tls.acceptable_issuers.is_empty() {
            writeln!(out, "  they asked for a client certificate (any issuer)")?;
        } else {
            writeln!(
                out,
                "  they asked for a client certificate issued by: {}",
                tls.acceptable_issuers.join("; ")
            )?;
        }
    } else {
        writeln!(out, "  they did not ask for a client certificate")?;
    }
    match &tls.client_certificate {
        Some(cert) => writeln!(
            out,
            "  we are:    {} (issued by {}, valid until {}, sha256 {})",
            cert.subject,
            cert.issuer,
            cert.not_after,
            colons(&cert.sha256)
        )?,
        None => writeln!(out, "  we are:    anonymous (no client certificate sent)")?,
    }
    Ok(())
}
