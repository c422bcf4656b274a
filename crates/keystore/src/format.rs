//! Which format a byte string is in, decided from its content alone.

use std::fmt;

use serde::Serialize;

use crate::asn1::{Reader, tag};

/// The container formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// Java KeyStore (magic `FEEDFEED`).
    Jks,
    /// Java Cryptography Extension KeyStore (magic `CECECECE`).
    Jceks,
    /// PKCS#12 (`.p12`, `.pfx`).
    Pkcs12,
    /// PEM text: certificates and keys in any of the usual syntaxes.
    Pem,
    /// A single DER certificate or DER private key.
    Der,
}

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    /// A format this crate reads.
    Known(Format),
    /// A format we recognise and do not read.
    Unsupported(&'static str),
    /// Nothing we recognise; the text says what it looked like.
    Unknown(&'static str),
}

/// The JKS magic number.
pub(crate) const JKS_MAGIC: [u8; 4] = [0xfe, 0xed, 0xfe, 0xed];
/// The JCEKS magic number.
pub(crate) const JCEKS_MAGIC: [u8; 4] = [0xce, 0xce, 0xce, 0xce];

/// Detects the format of `bytes`, never by file name.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    match sniff(bytes) {
        Detected::Known(format) => Some(format),
        _ => None,
    }
}

pub(crate) fn sniff(bytes: &[u8]) -> Detected {
    if bytes.is_empty() {
        return Detected::Unknown("empty input");
    }
    if bytes.starts_with(&JKS_MAGIC) {
        return Detected::Known(Format::Jks);
    }
    if bytes.starts_with(&JCEKS_MAGIC) {
        return Detected::Known(Format::Jceks);
    }
    if is_pem(bytes) {
        return Detected::Known(Format::Pem);
    }
    if bytes[0] == tag::SEQUENCE
        && let Some(found) = sniff_der(bytes)
    {
        return found;
    }
    // BouncyCastle BKS/UBER start with a 4-byte version 1 or 2 followed by a salt length.
    if bytes.len() > 8 && bytes[..3] == [0, 0, 0] && matches!(bytes[3], 1 | 2) {
        return Detected::Unsupported("BouncyCastle BKS");
    }
    if bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        Detected::Unknown("plain text without PEM blocks")
    } else {
        Detected::Unknown("binary data of no known format")
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn sniff_der(bytes: &[u8]) -> Option<Detected> {
    // Look inside the outer SEQUENCE even when it is cut short, so that a truncated PKCS#12
    // or certificate is reported as corrupt rather than as unknown bytes.
    let body = der_body_prefix(bytes)?;
    let mut inner = Reader::new(body);
    match inner.peek_tag()? {
        // PFX: version 3; PKCS#8: version 0 or 1; PKCS#1 RSA: 0; SEC1 EC: 1.
        tag::INTEGER => {
            let version = inner.small_uint()?;
            if version == 3 && inner.peek_tag() == Some(tag::SEQUENCE) {
                Some(Detected::Known(Format::Pkcs12))
            } else {
                Some(Detected::Known(Format::Der))
            }
        }
        // Certificate (TBSCertificate) or EncryptedPrivateKeyInfo (AlgorithmIdentifier).
        tag::SEQUENCE => Some(Detected::Known(Format::Der)),
        _ => None,
    }
}

/// The contents of the outer SEQUENCE, or as much of them as there is.
fn der_body_prefix(bytes: &[u8]) -> Option<&[u8]> {
    let first = *bytes.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let len_bytes = bytes.get(2..2 + count)?;
        (
            2 + count,
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
        )
    };
    let available = bytes.len() - header;
    // A plausible DER object: not claiming far more than a keystore could hold.
    if len > 64 * 1024 * 1024 {
        return None;
    }
    Some(&bytes[header..header + len.min(available)])
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jks => "JKS",
            Self::Jceks => "JCEKS",
            Self::Pkcs12 => "PKCS#12",
            Self::Pem => "PEM",
            Self::Der => "DER",
        })
    }
}
