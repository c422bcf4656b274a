//! PKCS#12 (`.p12`, `.pfx`) through `p12-keystore`, with our own key-to-certificate linking.
//!
//! `p12-keystore` verifies the MAC and decrypts every bag (PBES2/AES, 3DES, RC2-40). We take
//! its raw bags rather than its policies, because OpenSSL truststores carry no Java "trusted"
//! attribute and some keys carry no localKeyId.

use p12_keystore::Pkcs12Archive;
use p12_keystore::error::Error as P12Error;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::identity::KeyMatcher;
use crate::key::{PlainKey, SealedKey, Syntax};
use crate::store::{Entry, EntryKind, Keystore};
use crate::{Error, Format, Limits, Password, chain};

mod costs;

/// Parses and decrypts a PKCS#12 file. No password means the empty password.
///
/// The key derivations the file asks for are added up and checked against `limits` first
/// ([`costs::check`]): `p12-keystore` caps each derivation on its own, not their number.
pub(crate) fn parse(
    bytes: &[u8],
    password: Option<&Password>,
    limits: &Limits,
) -> Result<Keystore, Error> {
    costs::check(bytes, password.map(Password::expose).unwrap_or(""), limits)?;
    let archive = open(bytes, password)?;
    let certificates: Vec<CertificateDer<'static>> = archive
        .certs
        .iter()
        .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
        .collect();
    let mut used = vec![false; certificates.len()];
    let mut entries = Vec::new();
    for (index, bag) in archive.keys.iter().enumerate() {
        let key = PlainKey::checked(Syntax::Pkcs8, Zeroizing::new(bag.key.as_der().to_vec()))
            .ok_or_else(|| Error::Corrupt {
                format: Format::Pkcs12,
                detail: "malformed private key bag".into(),
            })?;
        let by_id = bag.local_key_id.as_ref().and_then(|id| {
            archive
                .certs
                .iter()
                .position(|cert| cert.local_key_id.as_deref() == Some(id.as_ref()))
        });
        let leaf = by_id.or_else(|| {
            let matcher = KeyMatcher::new(&key);
            certificates
                .iter()
                .position(|cert| matcher.matches(cert) == Some(true))
        });
        let chain = match leaf {
            Some(leaf) => {
                used[leaf] = true;
                let (chain, pool_used) = chain::build(&certificates[leaf], &certificates);
                for i in pool_used {
                    used[i] = true;
                }
                chain
            }
            None => Vec::new(),
        };
        let alias = bag
            .friendly_name
            .clone()
            .or_else(|| leaf.and_then(|i| archive.certs[i].friendly_name.clone()))
            .unwrap_or_else(|| (index + 1).to_string());
        entries.push(Entry::new(
            alias,
            EntryKind::PrivateKey,
            chain,
            Some(SealedKey::Decrypted(key)),
        ));
    }
    for (index, (bag, cert)) in archive.certs.iter().zip(certificates).enumerate() {
        if !used[index] {
            let alias = bag
                .friendly_name
                .clone()
                .unwrap_or_else(|| bag.cert.subject().to_owned());
            entries.push(Entry::new(
                alias,
                EntryKind::TrustedCertificate,
                vec![cert],
                None,
            ));
        }
    }
    for (index, secret) in archive.secrets.iter().enumerate() {
        let alias = secret
            .friendly_name
            .clone()
            .unwrap_or_else(|| format!("secret-{}", index + 1));
        entries.push(Entry::new(alias, EntryKind::SecretKey, Vec::new(), None));
    }
    Ok(Keystore::new(Format::Pkcs12, entries))
}

fn open(bytes: &[u8], password: Option<&Password>) -> Result<Pkcs12Archive, Error> {
    let text = password.map(Password::expose).unwrap_or("");
    Pkcs12Archive::from_pkcs12(bytes, text).map_err(|error| match error {
        P12Error::MacError(_) | P12Error::UnpadError | P12Error::Pkcs5Error(_) => {
            if password.is_none() {
                Error::PasswordRequired { what: "store" }
            } else {
                Error::WrongStorePassword {
                    format: Format::Pkcs12,
                }
            }
        }
        P12Error::UnsupportedEncryptionScheme => Error::UnsupportedAlgorithm {
            algorithm: "PKCS#12 encryption scheme".into(),
        },
        P12Error::UnsupportedMacAlgorithm => Error::UnsupportedAlgorithm {
            algorithm: "PKCS#12 MAC algorithm".into(),
        },
        P12Error::UnsupportedContentType => Error::UnsupportedAlgorithm {
            algorithm: "PKCS#12 content type (public-key privacy mode)".into(),
        },
        other => Error::Corrupt {
            format: Format::Pkcs12,
            detail: corrupt_detail(&other),
        },
    })
}

fn corrupt_detail(error: &P12Error) -> String {
    match error {
        P12Error::InvalidVersion => "not PKCS#12 version 3".into(),
        P12Error::DerError(_) => "malformed DER structure".into(),
        P12Error::X509Error(_) => "malformed certificate".into(),
        P12Error::InvalidPrivateKey => "malformed private key".into(),
        _ => "malformed PKCS#12 data".into(),
    }
}
