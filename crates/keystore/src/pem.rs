//! PEM text and single DER objects: certificates, and keys in every common syntax.
//!
//! Keys: PKCS#8 (`PRIVATE KEY`), encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`), PKCS#1
//! (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`), and OpenSSL's traditional encryption of the
//! last two (`Proc-Type: 4,ENCRYPTED`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::asn1::{Reader, tag};
use crate::identity::KeyMatcher;
use crate::key::{PlainKey, SealedKey, Syntax};
use crate::store::{Entry, EntryKind, Keystore};
use crate::{Error, Format, chain};

/// One `-----BEGIN label-----` block.
struct Block {
    label: String,
    headers: Vec<(String, String)>,
    der: Zeroizing<Vec<u8>>,
}

/// Parses PEM text holding certificates and at most one private key.
pub(crate) fn parse(bytes: &[u8]) -> Result<Keystore, Error> {
    let (certificates, keys) = collect(bytes)?;
    if certificates.is_empty() && keys.is_empty() {
        return Err(Error::UnrecognizedFormat {
            detected: "PEM without certificates or private keys",
        });
    }
    assemble(Format::Pem, certificates, keys)
}

/// Parses one DER object: a certificate or a private key.
pub(crate) fn parse_der(bytes: &[u8]) -> Result<Keystore, Error> {
    let (certificates, keys) = classify_der(bytes)?;
    assemble(Format::Der, certificates, keys)
}

/// Certificates from one input and the private key from another (each PEM or DER).
pub(crate) fn parse_pair(certificates: &[u8], key: &[u8]) -> Result<Keystore, Error> {
    let (certs, cert_side_keys) = collect_any(certificates)?;
    let (key_side_certs, keys) = collect_any(key)?;
    if certs.is_empty() && key_side_certs.is_empty() {
        return Err(Error::NoCertificate { alias: None });
    }
    let mut all_keys = keys;
    all_keys.extend(cert_side_keys);
    let mut all_certs = certs;
    all_certs.extend(key_side_certs);
    if all_keys.is_empty() {
        return Err(Error::NoPrivateKey);
    }
    let format = match crate::format::detect(certificates) {
        Some(Format::Pem) => Format::Pem,
        _ => Format::Der,
    };
    assemble(format, all_certs, all_keys)
}

fn collect_any(bytes: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Vec<SealedKey>), Error> {
    match crate::format::detect(bytes) {
        Some(Format::Pem) => collect(bytes),
        Some(Format::Der) => classify_der(bytes),
        Some(other) => Err(Error::UnsupportedFormat {
            format: match other {
                Format::Jks => "JKS as a separate key file",
                Format::Jceks => "JCEKS as a separate key file",
                _ => "PKCS#12 as a separate key file",
            },
        }),
        None => Err(Error::UnrecognizedFormat {
            detected: "neither PEM nor DER",
        }),
    }
}

/// Turns loose certificates and keys into entries: each key with its chain, other
/// certificates as trusted entries.
fn assemble(
    format: Format,
    certificates: Vec<CertificateDer<'static>>,
    keys: Vec<SealedKey>,
) -> Result<Keystore, Error> {
    let mut entries = Vec::new();
    let mut used = vec![false; certificates.len()];
    for key in keys {
        // The leaf is the certificate that matches the key when we can tell (a plain key),
        // else the first certificate not used yet, as in `openssl pkcs12 -export -in`.
        let leaf = match &key {
            SealedKey::Plain(plain) => {
                let matcher = KeyMatcher::new(plain);
                certificates
                    .iter()
                    .position(|cert| matcher.matches(cert) == Some(true))
            }
            _ => None,
        }
        .or_else(|| used.iter().position(|u| !u));
        let chain = match leaf {
            Some(index) => {
                used[index] = true;
                let (chain, pool_used) = chain::build(&certificates[index], &certificates);
                for i in pool_used {
                    used[i] = true;
                }
                chain
            }
            None => Vec::new(),
        };
        entries.push(Entry::new(None, EntryKind::PrivateKey, chain, Some(key)));
    }
    for (cert, used) in certificates.into_iter().zip(used) {
        if !used {
            entries.push(Entry::new(
                None,
                EntryKind::TrustedCertificate,
                vec![cert],
                None,
            ));
        }
    }
    Ok(Keystore::new(format, entries))
}

fn collect(bytes: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Vec<SealedKey>), Error> {
    let mut certificates = Vec::new();
    let mut keys = Vec::new();
    for block in blocks(bytes)? {
        let corrupt = |what: &str| Error::Corrupt {
            format: Format::Pem,
            detail: format!("malformed {what} block"),
        };
        match block.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                // OpenSSL's TRUSTED CERTIFICATE appends trust settings after the certificate.
                let cert = first_element(&block.der).ok_or_else(|| corrupt(&block.label))?;
                check_certificate(cert, Format::Pem)?;
                certificates.push(CertificateDer::from(cert.to_vec()));
            }
            "PRIVATE KEY" => keys.push(SealedKey::Plain(
                PlainKey::checked(Syntax::Pkcs8, block.der)
                    .ok_or_else(|| corrupt("PRIVATE KEY"))?,
            )),
            "ENCRYPTED PRIVATE KEY" => keys.push(SealedKey::EncryptedPkcs8(block.der.to_vec())),
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                let syntax = if block.label.starts_with("RSA") {
                    Syntax::Pkcs1
                } else {
                    Syntax::Sec1
                };
                keys.push(traditional_key(&block, syntax)?);
            }
            _ => {} // EC PARAMETERS, PUBLIC KEY, CERTIFICATE REQUEST...: not ours to use.
        }
    }
    Ok((certificates, keys))
}

fn traditional_key(block: &Block, syntax: Syntax) -> Result<SealedKey, Error> {
    let header = |name: &str| {
        block
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let corrupt = || Error::Corrupt {
        format: Format::Pem,
        detail: format!("malformed {} block", block.label),
    };
    if header("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED")) {
        let dek = header("DEK-Info").ok_or_else(corrupt)?;
        let (cipher, iv_hex) = dek.split_once(',').ok_or_else(corrupt)?;
        let iv = decode_hex(iv_hex.trim()).ok_or_else(corrupt)?;
        let cipher = cipher.trim().to_ascii_uppercase();
        if !matches!(
            cipher.as_str(),
            "AES-128-CBC" | "AES-192-CBC" | "AES-256-CBC" | "DES-EDE3-CBC" | "DES-CBC"
        ) {
            return Err(Error::UnsupportedAlgorithm {
                algorithm: format!("PEM encryption {cipher}"),
            });
        }
        return Ok(SealedKey::LegacyPem {
            syntax,
            cipher,
            iv,
            data: block.der.to_vec(),
        });
    }
    PlainKey::checked(syntax, block.der.clone())
        .map(SealedKey::Plain)
        .ok_or_else(corrupt)
}

fn classify_der(bytes: &[u8]) -> Result<(Vec<CertificateDer<'static>>, Vec<SealedKey>), Error> {
    let corrupt = |detail: &str| Error::Corrupt {
        format: Format::Der,
        detail: detail.into(),
    };
    let element = first_element(bytes).ok_or_else(|| corrupt("not one DER element"))?;
    if element.len() != bytes.len() {
        return Err(corrupt("trailing bytes after the DER element"));
    }
    let body = Reader::new(bytes)
        .expect(tag::SEQUENCE)
        .ok_or_else(|| corrupt("not a SEQUENCE"))?;
    let mut inner = Reader::new(body);
    match inner.peek_tag() {
        Some(tag::INTEGER) => {
            let key = PlainKey::sniff(Zeroizing::new(bytes.to_vec()))
                .ok_or_else(|| corrupt("malformed private key"))?;
            Ok((Vec::new(), vec![SealedKey::Plain(key)]))
        }
        Some(tag::SEQUENCE) => {
            let first = inner
                .expect(tag::SEQUENCE)
                .ok_or_else(|| corrupt("malformed"))?;
            if Reader::new(first).peek_tag() == Some(tag::OID) {
                Ok((Vec::new(), vec![SealedKey::EncryptedPkcs8(bytes.to_vec())]))
            } else {
                check_certificate(bytes, Format::Der)?;
                Ok((vec![CertificateDer::from(bytes.to_vec())], Vec::new()))
            }
        }
        _ => Err(corrupt("neither a certificate nor a private key")),
    }
}

fn check_certificate(der: &[u8], format: Format) -> Result<(), Error> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|_| ())
        .map_err(|_| Error::Corrupt {
            format,
            detail: "malformed certificate".into(),
        })
}

/// The first complete DER element of `bytes`, with its header.
fn first_element(bytes: &[u8]) -> Option<&[u8]> {
    let mut reader = Reader::new(bytes);
    reader.next()?;
    Some(&bytes[..bytes.len() - reader.rest_len()])
}

fn blocks(bytes: &[u8]) -> Result<Vec<Block>, Error> {
    let text = String::from_utf8_lossy(bytes);
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            match line.split_once(':') {
                Some((key, value)) if body.is_empty() => {
                    headers.push((key.trim().to_owned(), value.trim().to_owned()));
                }
                _ => body.push_str(line),
            }
        }
        let corrupt = |detail: String| Error::Corrupt {
            format: Format::Pem,
            detail,
        };
        if !closed {
            return Err(corrupt(format!("no END line for the {label} block")));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| corrupt(format!("bad base64 in the {label} block")))?;
        blocks.push(Block {
            label: label.to_owned(),
            headers,
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
