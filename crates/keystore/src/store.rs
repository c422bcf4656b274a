//! A parsed keystore: its entries, and the way to an identity or trust anchors.

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::format::{Detected, sniff};
use crate::identity::Identity;
use crate::key::SealedKey;
use crate::trust::TrustAnchors;
use crate::{Error, Format, Limits, Password, jks, pem, pkcs12};

/// How to open a keystore: its passwords, and the caps on the key-derivation work it may ask
/// for.
///
/// The key password defaults to the store password, as in keytool and OpenSSL.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Password of the store (JKS/JCEKS integrity, PKCS#12 MAC and encryption); for PEM, the
    /// key password when `key_password` is not set.
    pub store_password: Option<Password>,
    /// Password of the private key, when it differs from the store password.
    pub key_password: Option<Password>,
    /// Caps on the key-derivation work (iterations, scrypt memory) opening may ask for.
    pub limits: Limits,
}

impl Options {
    /// Options with one password for store and key, and the default [`Limits`].
    pub fn with_password(password: impl Into<Password>) -> Self {
        Self {
            store_password: Some(password.into()),
            ..Self::default()
        }
    }

    fn key_password(&self) -> Option<&Password> {
        self.key_password.as_ref().or(self.store_password.as_ref())
    }
}

/// A keystore whose integrity has been checked; private keys stay sealed until asked for.
#[derive(Debug, Clone)]
pub struct Keystore {
    format: Format,
    entries: Vec<Entry>,
    key_password: Option<Password>,
    limits: Limits,
}

/// One entry of a keystore.
#[derive(Debug, Clone)]
pub struct Entry {
    alias: Option<String>,
    kind: EntryKind,
    chain: Vec<CertificateDer<'static>>,
    key: Option<SealedKey>,
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    /// A private key with its certificate chain: usable as a client identity.
    PrivateKey,
    /// A certificate trusted as an anchor.
    TrustedCertificate,
    /// A symmetric key; TLS cannot use it.
    SecretKey,
}

impl Keystore {
    /// Opens any supported format, detected from the content.
    pub fn open(bytes: &[u8], options: &Options) -> Result<Self, Error> {
        let mut store = match sniff(bytes) {
            Detected::Known(Format::Jks | Format::Jceks) => {
                jks::parse(bytes, options.store_password.as_ref())?
            }
            Detected::Known(Format::Pkcs12) => {
                pkcs12::parse(bytes, options.store_password.as_ref(), &options.limits)?
            }
            Detected::Known(Format::Pem) => pem::parse(bytes)?,
            Detected::Known(Format::Der) => pem::parse_der(bytes)?,
            Detected::Unsupported(format) => return Err(Error::UnsupportedFormat { format }),
            Detected::Unknown(detected) => return Err(Error::UnrecognizedFormat { detected }),
        };
        store.key_password = options.key_password().cloned();
        store.limits = options.limits;
        Ok(store)
    }

    /// Opens a certificate file (PEM or DER, chain allowed) and a separate key file.
    pub fn open_pair(certificates: &[u8], key: &[u8], options: &Options) -> Result<Self, Error> {
        let mut store = pem::parse_pair(certificates, key)?;
        store.key_password = options.key_password().cloned();
        store.limits = options.limits;
        Ok(store)
    }

    pub(crate) fn new(format: Format, entries: Vec<Entry>) -> Self {
        Self {
            format,
            entries,
            key_password: None,
            limits: Limits::default(),
        }
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The aliases of the private-key entries (entries without an alias are left out).
    pub fn private_key_aliases(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::PrivateKey)
            .filter_map(|entry| entry.alias.clone())
            .collect()
    }

    /// The client identity: the private-key entry named `alias`, or the only one there is.
    pub fn identity(&self, alias: Option<&str>) -> Result<Identity, Error> {
        let entry = self.select(alias)?;
        self.identity_of(entry)
    }

    /// Builds the identity of one private-key entry.
    pub fn identity_of(&self, entry: &Entry) -> Result<Identity, Error> {
        let name = entry.alias.as_deref().unwrap_or("private key");
        let sealed = entry.key.as_ref().ok_or(Error::NoPrivateKey)?;
        let key = sealed.unseal(self.key_password.as_ref(), name, &self.limits)?;
        if entry.chain.is_empty() {
            return Err(Error::NoCertificate {
                alias: entry.alias.clone(),
            });
        }
        Identity::new(entry.alias.clone(), entry.chain.clone(), key)
    }

    /// The certificates of the trusted-certificate entries, as trust anchors.
    pub fn trust_anchors(&self) -> Result<TrustAnchors, Error> {
        let certificates: Vec<_> = self
            .entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::TrustedCertificate)
            .flat_map(|entry| entry.chain.iter().cloned())
            .collect();
        if certificates.is_empty() {
            return Err(Error::NoCertificates);
        }
        Ok(TrustAnchors::from_certificates(certificates))
    }

    fn select(&self, alias: Option<&str>) -> Result<&Entry, Error> {
        let available = self.private_key_aliases();
        if let Some(alias) = alias {
            let found = self
                .entries
                .iter()
                .find(|entry| entry.alias.as_deref() == Some(alias))
                .or_else(|| {
                    self.entries.iter().find(|entry| {
                        entry
                            .alias
                            .as_deref()
                            .is_some_and(|a| a.eq_ignore_ascii_case(alias))
                    })
                });
            return match found {
                Some(entry) if entry.kind == EntryKind::PrivateKey => Ok(entry),
                Some(entry) if entry.kind == EntryKind::SecretKey => Err(Error::SecretKeyEntry {
                    alias: alias.to_owned(),
                }),
                _ => Err(Error::AliasNotFound {
                    alias: alias.to_owned(),
                    available,
                }),
            };
        }
        let mut keys = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::PrivateKey);
        match (keys.next(), keys.next()) {
            (Some(entry), None) => Ok(entry),
            (Some(_), Some(_)) => Err(Error::AmbiguousAlias { available }),
            (None, _) => match self.entries.iter().find(|e| e.kind == EntryKind::SecretKey) {
                Some(secret) => Err(Error::SecretKeyEntry {
                    alias: secret.alias.clone().unwrap_or_default(),
                }),
                None => Err(Error::NoPrivateKey),
            },
        }
    }
}

impl Entry {
    pub(crate) fn new(
        alias: impl Into<Option<String>>,
        kind: EntryKind,
        chain: Vec<CertificateDer<'static>>,
        key: Option<SealedKey>,
    ) -> Self {
        Self {
            alias: alias.into(),
            kind,
            chain,
            key,
        }
    }

    /// The entry's alias (PEM and DER entries have none).
    pub fn alias(&self) -> Option<&str> {
        self.alias.as_deref()
    }

    /// What the entry holds.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// The certificates: the chain (leaf first) of a key entry, or the one trusted certificate.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Whether the private key is stored encrypted.
    pub fn key_is_encrypted(&self) -> bool {
        self.key.as_ref().is_some_and(SealedKey::is_encrypted)
    }
}
