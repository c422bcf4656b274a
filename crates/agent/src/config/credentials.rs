//! The job API's credentials: the reference system's `apikey` and `secret`.

use std::fmt;

use keystore::Password;

use super::Lookup;
use crate::error::Error;

/// The apikey and secret the engine authenticates with.
#[derive(Clone)]
pub struct Credentials {
    /// The API key (not secret: it names the downloader).
    pub apikey: String,
    /// The secret.
    pub secret: Password,
}

impl Lookup<'_> {
    /// The job API's credentials (`apikey` and `secret`, both or neither).
    pub(super) fn credentials(&self) -> Result<Option<Credentials>, Error> {
        match (self.reference("apikey")?, self.reference("secret")?) {
            (Some(apikey), Some(secret)) => {
                if apikey.text.is_empty() || secret.text.is_empty() {
                    return Err(Error::config(
                        apikey.setting,
                        "apikey and secret must not be empty",
                    ));
                }
                if apikey.text.contains(':') {
                    return Err(Error::config(apikey.setting, "must not contain ':'"));
                }
                Ok(Some(Credentials {
                    apikey: apikey.text,
                    secret: Password::new(secret.text),
                }))
            }
            (None, None) => Ok(None),
            (Some(value), None) | (None, Some(value)) => Err(Error::config(
                value.setting,
                "apikey and secret must be set together",
            )),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("apikey", &self.apikey)
            .field("secret", &self.secret)
            .finish()
    }
}
