//! Trust anchors: the CA certificates a server certificate must chain to.

use std::fmt;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::store::{Keystore, Options};
use crate::{Error, Password};

/// A set of CA certificates, from any trust store format.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    certificates: Vec<CertificateDer<'static>>,
}

/// File extensions read from a trust directory.
const DIRECTORY_EXTENSIONS: [&str; 4] = ["pem", "crt", "cer", "der"];

impl TrustAnchors {
    /// Reads a trust store in any format: PEM bundle, DER certificate, JKS, JCEKS or PKCS#12.
    ///
    /// Every certificate of a PEM or DER file counts; in a keystore, the trusted-certificate
    /// entries do.
    pub fn parse(bytes: &[u8], password: Option<&Password>) -> Result<Self, Error> {
        let options = Options {
            store_password: password.cloned(),
            ..Options::default()
        };
        Self::open(bytes, &options)
    }

    /// [`TrustAnchors::parse`] with [`Options`]: the store password and the caps on the
    /// key-derivation work the store may ask for (the key password is not used).
    pub fn open(bytes: &[u8], options: &Options) -> Result<Self, Error> {
        let store = Keystore::open(bytes, options)?;
        match store.format() {
            crate::Format::Pem | crate::Format::Der => {
                let certificates: Vec<_> = store
                    .entries()
                    .iter()
                    .flat_map(|entry| entry.certificates().iter().cloned())
                    .collect();
                if certificates.is_empty() {
                    return Err(Error::NoCertificates);
                }
                Ok(Self::from_certificates(certificates))
            }
            _ => store.trust_anchors(),
        }
    }

    /// Reads the `.pem`, `.crt`, `.cer` and `.der` files of a directory listing, given as
    /// (file name, contents); other files are skipped. Each file may hold several certificates.
    pub fn from_directory<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, Error> {
        let mut anchors = Self::default();
        for (name, bytes) in files {
            let extension = name
                .rsplit_once('.')
                .map(|(_, ext)| ext.to_ascii_lowercase());
            if !extension.is_some_and(|ext| DIRECTORY_EXTENSIONS.contains(&ext.as_str())) {
                continue;
            }
            anchors.extend(Self::parse(bytes, None)?);
        }
        if anchors.certificates.is_empty() {
            return Err(Error::NoCertificates);
        }
        Ok(anchors)
    }

    pub(crate) fn from_certificates(certificates: Vec<CertificateDer<'static>>) -> Self {
        let mut anchors = Self::default();
        anchors.extend(Self { certificates });
        anchors
    }

    /// Adds the certificates of `other` that are not already present.
    pub fn extend(&mut self, other: Self) {
        for cert in other.certificates {
            if !self.certificates.contains(&cert) {
                self.certificates.push(cert);
            }
        }
    }

    /// The certificates, in the order they were read.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// How many certificates there are.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// A rustls root store, and how many certificates it could not use as anchors.
    pub fn root_store(&self) -> (RootCertStore, usize) {
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(self.certificates.iter().cloned());
        (store, ignored)
    }

    /// SHA-256 over the sorted certificate digests: equal sets give equal fingerprints.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digests: Vec<[u8; 32]> = self
            .certificates
            .iter()
            .map(|cert| Sha256::digest(cert).into())
            .collect();
        digests.sort_unstable();
        let mut sha = Sha256::new();
        for digest in &digests {
            sha.update(digest);
        }
        sha.finalize().into()
    }
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("certificates", &self.certificates.len())
            .finish()
    }
}
