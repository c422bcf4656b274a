//! Passwords, held so they cannot leak through `Debug` and are wiped on drop.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A keystore or key password.
///
/// `Debug` prints `Password(***)`; there is no `Display`. Copies share one buffer (a clone
/// for every job is a reference count, not an allocation), zeroized when the last one drops.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(Arc<Zeroizing<String>>);

impl Password {
    /// Wrap a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(password.into())))
    }

    /// The password as text, for handing to a decryption routine.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// UTF-16BE bytes, as Java's JKS integrity check and key protector use them.
    pub(crate) fn utf16be(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.encode_utf16().flat_map(u16::to_be_bytes).collect())
    }

    /// The low byte of each UTF-16 unit, as Java's PBEWithMD5AndTripleDES key derivation uses.
    pub(crate) fn low_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.encode_utf16().map(|unit| unit as u8).collect())
    }
}

/// SHA-256 over passwords and an alias, each length-prefixed so fields cannot run together.
///
/// A cache key for what a keystore was opened with: it changes when any password or the alias
/// changes, and shows none of them.
pub fn secrets_digest(passwords: &[Option<&Password>], alias: Option<&str>) -> [u8; 32] {
    let mut sha = Sha256::new();
    for password in passwords {
        match password {
            Some(password) => {
                sha.update([1]);
                sha.update((password.0.len() as u64).to_be_bytes());
                sha.update(password.0.as_bytes());
            }
            None => sha.update([0]),
        }
    }
    if let Some(alias) = alias {
        sha.update([1]);
        sha.update(alias.as_bytes());
    }
    sha.finalize().into()
}

impl From<&str> for Password {
    fn from(password: &str) -> Self {
        Self::new(password)
    }
}

impl From<String> for Password {
    fn from(password: String) -> Self {
        Self::new(password)
    }
}

impl std::hash::Hash for Password {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}
