//! `keystore` turns keystore bytes into rustls identities and trust anchors. It never opens
//! files or sockets and never spawns tasks.
//!
//! # Brief overview
//!
//! - [`Keystore::open`] reads JKS, JCEKS, PKCS#12 (OpenSSL 3, OpenSSL `-legacy`, keytool), PEM
//!   (certificates; PKCS#8, encrypted PKCS#8, PKCS#1, SEC1 and OpenSSL-encrypted keys) and DER,
//!   detected from the content. [`Keystore::open_pair`] takes a certificate file and a separate
//!   key file.
//! - [`Keystore::identity`] gives an [`Identity`]: the chain and a key that is checked to match
//!   its leaf, ready for rustls as an `Arc<CertifiedKey>`.
//! - [`TrustAnchors::parse`] reads a trust store in any of those formats;
//!   [`TrustAnchors::from_directory`] reads a directory listing of certificate files.
//! - [`inspect()`] and [`lint_chain`] describe entries and find problems before a handshake does.
//!
//! Every failure is an [`Error`] with a stable [`Error::kind`] and a [`Error::hint`]. No error
//! and no `Debug` output holds a password or key bytes; key material is zeroized on drop.
//!
//! ```
//! use keystore::{Keystore, Options};
//!
//! let bytes = include_bytes!("../../../tests/fixtures/client/p256/openssl.p12");
//! let store = Keystore::open(bytes, &Options::with_password("Fx-store-7431"))?;
//! let identity = store.identity(None)?;
//! assert_eq!(identity.chain().len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod asn1;
mod cert;
mod chain;
mod costs;
mod error;
mod export;
mod format;
mod identity;
mod inspect;
mod java_serial;
mod jceks;
mod jks;
mod key;
mod lint;
mod password;
mod pem;
mod pkcs12;
pub mod remedy;
mod store;
mod trust;

pub use cert::CertificateInfo;
pub use costs::Limits;
pub use error::Error;
pub use export::{identity_to_pem, identity_to_pkcs12, trust_to_pem, trust_to_pkcs12};
pub use format::{Format, detect};
pub use identity::Identity;
pub use inspect::{CertificateView, EntryReport, KeyReport, Report, inspect};
pub use lint::{EXPIRY_WARNING_DAYS, Finding, FindingKind, Severity, lint_chain};
pub use password::{Password, secrets_digest};
pub use store::{Entry, EntryKind, Keystore, Options};
pub use trust::TrustAnchors;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
