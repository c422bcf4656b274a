//! The one error type of this crate, with stable kinds and hints.

use std::fmt;

use crate::Format;

/// Everything that can go wrong turning keystore bytes into identities or trust anchors.
///
/// [`Error::kind`] is stable and machine-readable (`keystore.*`); the `Display` text is for
/// people and may change. No variant ever holds a password or key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not any keystore, certificate or key format we know.
    UnrecognizedFormat {
        /// What the bytes looked like, for the message (`"empty input"`, `"text"`, ...).
        detected: &'static str,
    },
    /// A format we recognise but do not read (for example a BouncyCastle BKS file).
    UnsupportedFormat {
        /// The name of the format.
        format: &'static str,
    },
    /// The store password is wrong: the integrity check (JKS/JCEKS digest, PKCS#12 MAC) failed.
    WrongStorePassword {
        /// The format whose check failed.
        format: Format,
    },
    /// The store opened, but the private key could not be decrypted with the key password.
    WrongKeyPassword {
        /// The alias of the entry whose key did not decrypt.
        alias: String,
    },
    /// The data is encrypted and no password was given.
    PasswordRequired {
        /// What needed the password ("store", "private key").
        what: &'static str,
    },
    /// The keystore holds no private-key entry, so it cannot act as a client identity.
    NoPrivateKey,
    /// The alias that was asked for is not in the keystore.
    AliasNotFound {
        /// The alias asked for.
        alias: String,
        /// The private-key aliases that do exist.
        available: Vec<String>,
    },
    /// No alias was given and the keystore holds more than one private key.
    AmbiguousAlias {
        /// The private-key aliases to choose from.
        available: Vec<String>,
    },
    /// The private key does not belong to the first certificate of the chain.
    KeyDoesNotMatchCertificate {
        /// The alias of the entry, when the format has aliases.
        alias: Option<String>,
    },
    /// A private key entry has no certificate.
    NoCertificate {
        /// The alias of the entry.
        alias: Option<String>,
    },
    /// The data is recognisably a keystore but is truncated or malformed.
    Corrupt {
        /// The format being read.
        format: Format,
        /// What was wrong, in a few words.
        detail: String,
    },
    /// A key or encryption algorithm that we (or rustls) cannot use.
    UnsupportedAlgorithm {
        /// The algorithm, by name or OID.
        algorithm: String,
    },
    /// The entry asked for is a secret (symmetric) key, which TLS cannot use.
    SecretKeyEntry {
        /// The alias of the secret-key entry.
        alias: String,
    },
    /// A trust store was read but holds no certificate.
    NoCertificates,
    /// The key-derivation parameters ask for more work or memory than the [`crate::Limits`]
    /// allow: refused before anything is derived or allocated.
    TooCostly {
        /// What asks for it: `"the key"`, `"the PKCS#12 store"`, `"JCEKS entry 'a'"`.
        what: String,
        /// The parameters, e.g. `"scrypt N=2^40, r=8, p=1 (1 PiB of memory)"`.
        asks: String,
        /// The cap they are over, e.g. `"256 MiB"`.
        limit: String,
    },
}

impl Error {
    /// The stable machine-readable kind, e.g. `keystore.wrong_store_password`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnrecognizedFormat { .. } => "keystore.unrecognized_format",
            Self::UnsupportedFormat { .. } => "keystore.unsupported_format",
            Self::WrongStorePassword { .. } => "keystore.wrong_store_password",
            Self::WrongKeyPassword { .. } => "keystore.wrong_key_password",
            Self::PasswordRequired { .. } => "keystore.password_required",
            Self::NoPrivateKey => "keystore.no_private_key",
            Self::AliasNotFound { .. } => "keystore.alias_not_found",
            Self::AmbiguousAlias { .. } => "keystore.ambiguous_alias",
            Self::KeyDoesNotMatchCertificate { .. } => "keystore.key_mismatch",
            Self::NoCertificate { .. } => "keystore.no_certificate",
            Self::Corrupt { .. } => "keystore.corrupt",
            Self::UnsupportedAlgorithm { .. } => "keystore.unsupported_algorithm",
            Self::SecretKeyEntry { .. } => "keystore.secret_key_entry",
            Self::NoCertificates => "keystore.no_certificates",
            Self::TooCostly { .. } => "keystore.too_costly",
        }
    }

    /// A one-line suggestion of what to do about it, in plain words.
    pub fn hint(&self) -> String {
        self.hint_in(&crate::remedy::Plain)
    }

    /// The same, naming settings in the words of the surface that shows it.
    pub fn hint_in(&self, words: &dyn crate::remedy::Vocabulary) -> String {
        use crate::remedy::Setting;
        match self {
            Self::UnrecognizedFormat { .. } => {
                "give a JKS, JCEKS, PKCS#12 (.p12/.pfx), PEM or DER \
                 file; the format is detected from the content, not the file name"
                    .into()
            }
            Self::UnsupportedFormat { .. } => "convert it to PKCS#12 with the tool that made it \
                 (e.g. keytool -importkeystore -deststoretype PKCS12)"
                .into(),
            Self::WrongStorePassword { .. } => format!(
                "check {}; it is case-sensitive",
                words.name(Setting::StorePassword)
            ),
            Self::WrongKeyPassword { .. } => format!(
                "the store password is right but the key has its own password: give it as {}",
                words.name(Setting::KeyPassword)
            ),
            Self::PasswordRequired { .. } => format!(
                "the data is encrypted: give {}",
                words.name(Setting::StorePassword)
            ),
            Self::NoPrivateKey => "this is a trust store (certificates only); a client identity \
                 needs a private-key entry, e.g. made with keytool -genkeypair or openssl \
                 pkcs12 -export -inkey"
                .into(),
            Self::AliasNotFound { available, .. } | Self::AmbiguousAlias { available } => {
                format!(
                    "choose one of the private-key aliases with {}: {}",
                    words.name(Setting::Alias),
                    available.join(", ")
                )
            }
            Self::KeyDoesNotMatchCertificate { .. } => "the key and certificate are from \
                 different pairs; compare `openssl x509 -noout -pubkey` with `openssl pkey \
                 -pubout`"
                .into(),
            Self::NoCertificate { .. } => "add the certificate (and its chain) that belongs to \
                 the key"
                .into(),
            Self::Corrupt { .. } => "the file is damaged or was cut short; copy it again in \
                 binary mode"
                .into(),
            Self::UnsupportedAlgorithm { .. } => "use an RSA (2048-4096), EC P-256/P-384 or \
                 Ed25519 key, and a PBES2/AES, 3DES or RC2 protected store"
                .into(),
            Self::SecretKeyEntry { .. } => "secret (symmetric) keys cannot authenticate TLS; \
                 choose a private-key entry"
                .into(),
            Self::NoCertificates => "the trust store is empty; add CA certificates to it".into(),
            Self::TooCostly { .. } => format!(
                "re-encrypt it with common parameters (a key: openssl pkcs8 -topk8 -v2 \
                 aes-256-cbc -iter 100000; a store: openssl pkcs12 -export -iter 10000), or, if \
                 the file is trusted, raise {}",
                words.name(Setting::KdfLimits)
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnrecognizedFormat { detected } => {
                write!(f, "not a keystore, certificate or key ({detected})")
            }
            Self::UnsupportedFormat { format } => write!(f, "{format} keystores are not supported"),
            Self::WrongStorePassword { format } => {
                write!(
                    f,
                    "wrong store password: the {format} integrity check failed"
                )
            }
            Self::WrongKeyPassword { alias } => {
                write!(f, "wrong key password for entry '{alias}'")
            }
            Self::PasswordRequired { what } => {
                write!(f, "the {what} is encrypted; a password is required")
            }
            Self::NoPrivateKey => write!(f, "no private key entry in the keystore"),
            Self::AliasNotFound { alias, .. } => {
                write!(f, "no private key entry with alias '{alias}'")
            }
            Self::AmbiguousAlias { available } => write!(
                f,
                "the keystore holds {} private keys and no alias was given",
                available.len()
            ),
            Self::KeyDoesNotMatchCertificate { alias: Some(alias) } => {
                write!(
                    f,
                    "private key of entry '{alias}' does not match its certificate"
                )
            }
            Self::KeyDoesNotMatchCertificate { alias: None } => {
                write!(f, "private key does not match the certificate")
            }
            Self::NoCertificate { alias: Some(alias) } => {
                write!(f, "private key entry '{alias}' has no certificate")
            }
            Self::NoCertificate { alias: None } => write!(f, "no certificate for the private key"),
            Self::Corrupt { format, detail } => write!(f, "corrupt {format} data: {detail}"),
            Self::UnsupportedAlgorithm { algorithm } => {
                write!(f, "unsupported algorithm: {algorithm}")
            }
            Self::SecretKeyEntry { alias } => {
                write!(f, "entry '{alias}' is a secret key, not a private key")
            }
            Self::NoCertificates => write!(f, "no certificates found"),
            Self::TooCostly { what, asks, limit } => {
                write!(f, "{what} is encrypted with {asks}; the limit is {limit}")
            }
        }
    }
}

impl std::error::Error for Error {}
