//! The reference system's `client_cert_configuration` (its `proxy_configuration` is parsed by
//! [`engine::ProxyRules::from_reference_json`]).

use std::fmt;
use std::path::PathBuf;

use keystore::Password;
use serde::Deserialize;

/// A keystore named by configuration (downloader-wide or a host rule): trusted operator input,
/// so not confined to the certificate directories.
#[derive(Clone)]
pub struct CertRef {
    /// The keystore file (any format the keystore crate reads).
    pub path: PathBuf,
    /// The store password.
    pub password: Option<Password>,
    /// The key password, when it differs.
    pub key_password: Option<Password>,
    /// The private-key entry.
    pub alias: Option<String>,
}

/// `client_cert_configuration` as the reference system writes it, plus our additions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ClientCertJson {
    #[serde(default)]
    pub(crate) keystore_path: Option<String>,
    #[serde(default, deserialize_with = "secret_text")]
    pub(crate) keystore_password: Option<String>,
    #[serde(default, deserialize_with = "secret_text")]
    pub(crate) key_password: Option<String>,
    #[serde(default)]
    pub(crate) key_alias: Option<String>,
    #[serde(default, deserialize_with = "secret_text")]
    pub(crate) keystore_base64: Option<String>,
}

/// A secret field (a password, inline key material): a string, or a number as the reference
/// system's users write them (`"keystorePassword": 123456` is the password `123456`). Any
/// other type is refused with a message that does not quote the value (serde's own would).
pub(crate) fn secret_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => Ok(Some(text)),
        serde_json::Value::Number(number) => Ok(Some(number.to_string())),
        _ => Err(serde::de::Error::custom(
            "a password or inline keystore must be a string (or a number)",
        )),
    }
}

impl fmt::Debug for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertRef")
            .field("path", &self.path)
            .field("password", &self.password)
            .field("key_password", &self.key_password)
            .field("alias", &self.alias)
            .finish()
    }
}

impl fmt::Debug for ClientCertJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertJson")
            .field("keystore_path", &self.keystore_path)
            .field("key_alias", &self.key_alias)
            .field("inline", &self.keystore_base64.is_some())
            .finish_non_exhaustive()
    }
}
