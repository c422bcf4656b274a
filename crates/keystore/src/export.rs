//! Writing identities and trust anchors out as PEM or PKCS#12 (AES-256, PBKDF2, SHA-256 MAC).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::identity::Identity;
use crate::trust::TrustAnchors;
use crate::{Error, Format, Password};

/// Iterations for PBKDF2 and the MAC, as in OpenSSL 3 and Java 17 defaults (2048 and 10000).
const ITERATIONS: u32 = 10_000;

/// The identity as PEM: the chain (leaf first), then the unencrypted PKCS#8 key.
pub fn identity_to_pem(identity: &Identity) -> Result<Zeroizing<String>, Error> {
    let mut out = Zeroizing::new(String::new());
    for cert in identity.chain() {
        push_pem(&mut out, "CERTIFICATE", cert);
    }
    push_pem(&mut out, "PRIVATE KEY", &identity.private_key_pkcs8()?);
    Ok(out)
}

/// The trust anchors as a PEM bundle.
pub fn trust_to_pem(anchors: &TrustAnchors) -> String {
    let mut out = String::new();
    for cert in anchors.certificates() {
        push_pem(&mut out, "CERTIFICATE", cert);
    }
    out
}

/// The identity as a PKCS#12 file under `alias`, encrypted with PBES2 (AES-256-CBC,
/// PBKDF2-HMAC-SHA256) and protected by an HMAC-SHA256 MAC.
pub fn identity_to_pkcs12(
    identity: &Identity,
    alias: &str,
    password: &Password,
) -> Result<Vec<u8>, Error> {
    let key = identity.private_key_pkcs8()?;
    let key = PrivateKey::from_der(&key).map_err(|_| Error::UnsupportedAlgorithm {
        algorithm: "private key type for PKCS#12 export".into(),
    })?;
    let certs = p12_certificates(identity.chain())?;
    let mut store = KeyStore::new();
    let local_key_id = identity.fingerprint()[..20].to_vec();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    write(&store, password)
}

/// The trust anchors as a PKCS#12 truststore (entries marked trusted for Java).
pub fn trust_to_pkcs12(anchors: &TrustAnchors, password: &Password) -> Result<Vec<u8>, Error> {
    let mut store = KeyStore::new();
    for (index, cert) in p12_certificates(anchors.certificates())?
        .into_iter()
        .enumerate()
    {
        store.add_entry(
            &format!("ca-{}", index + 1),
            KeyStoreEntry::Certificate(cert),
        );
    }
    write(&store, password)
}

fn p12_certificates(chain: &[CertificateDer<'static>]) -> Result<Vec<Certificate>, Error> {
    chain
        .iter()
        .map(|cert| {
            Certificate::from_der(cert).map_err(|_| Error::Corrupt {
                format: Format::Der,
                detail: "malformed certificate".into(),
            })
        })
        .collect()
}

fn write(store: &KeyStore, password: &Password) -> Result<Vec<u8>, Error> {
    store
        .writer(password.expose())
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|_| Error::UnsupportedAlgorithm {
            algorithm: "PKCS#12 encoding of this key".into(),
        })
}

fn push_pem(out: &mut String, label: &str, der: &[u8]) {
    let encoded = Zeroizing::new(STANDARD.encode(der));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}
