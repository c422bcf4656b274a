//! A client identity: a certificate chain and the private key that matches its leaf.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;
use crate::key::PlainKey;

/// A ready client identity for rustls.
///
/// It can only be made from a key that matches its leaf certificate. The key stays inside
/// (zeroized on drop); `Debug` shows the alias, chain length and leaf fingerprint.
#[derive(Clone)]
pub struct Identity {
    alias: Option<String>,
    certified: Arc<CertifiedKey>,
    key: PlainKey,
    fingerprint: [u8; 32],
}

impl Identity {
    pub(crate) fn new(
        alias: Option<String>,
        chain: Vec<CertificateDer<'static>>,
        key: PlainKey,
    ) -> Result<Self, Error> {
        let signing = key
            .signing_key()
            .map_err(|error| Error::UnsupportedAlgorithm {
                algorithm: format!("private key ({})", rustls_reason(&error)),
            })?;
        let fingerprint = chain.first().map(|leaf| sha256(leaf)).unwrap_or_default();
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(Error::KeyDoesNotMatchCertificate { alias });
            }
            Err(_) => {
                return Err(Error::Corrupt {
                    format: crate::Format::Der,
                    detail: "the leaf certificate cannot be parsed".into(),
                });
            }
        }
        Ok(Self {
            alias,
            certified: Arc::new(certified),
            key,
            fingerprint,
        })
    }

    /// The alias of the keystore entry, if the format has aliases.
    pub fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }

    /// The parsed key and chain, ready for a rustls client-certificate resolver.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// The certificate chain, leaf first, as it will be sent.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// SHA-256 of the leaf certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The private key as unencrypted PKCS#8 DER (for export); zeroized when dropped.
    pub fn private_key_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.key.to_pkcs8()
    }
}

/// Tells which certificates a private key belongs to, loading the key once.
pub(crate) struct KeyMatcher {
    signing: Option<Arc<dyn rustls::sign::SigningKey>>,
}

impl KeyMatcher {
    pub(crate) fn new(key: &PlainKey) -> Self {
        Self {
            signing: key.signing_key().ok(),
        }
    }

    /// Whether the key belongs to `cert`; `None` when it cannot be told.
    pub(crate) fn matches(&self, cert: &CertificateDer<'static>) -> Option<bool> {
        let signing = self.signing.clone()?;
        match CertifiedKey::new(vec![cert.clone()], signing).keys_match() {
            Ok(()) => Some(true),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Some(false)
            }
            Err(_) => None,
        }
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn rustls_reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::General(text) => text.clone(),
        other => other.to_string(),
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("alias", &self.alias)
            .field("chain_len", &self.certified.cert.len())
            .field("leaf_sha256", &crate::hex(&self.fingerprint))
            .field("key", &"***")
            .finish()
    }
}
