//! Where a password comes from: the command line, an environment variable or a file; and the
//! argument types that keep secrets out of `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use keystore::Password;

use crate::cli::Failure;

/// A secret given on the command line (a password, a URL or `USER:PASSWORD` that may hold
/// one): `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl SecretArg {
    /// The value, for the one place that uses it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL argument: `Debug` shows it without its password.
#[derive(Clone)]
pub(crate) struct UrlArg(String);

impl UrlArg {
    /// The URL as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UrlArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for UrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", engine::redact_url(&self.0))
    }
}

/// A `-H 'Name: value'` argument: `Debug` shows the value only when the header is not a
/// credential (the engine's list: Authorization, Cookie, X-Api-Key, ...).
#[derive(Clone)]
pub(crate) struct HeaderArg(String);

impl HeaderArg {
    /// The header line as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HeaderArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for HeaderArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once(':') {
            Some((name, _)) if engine::is_secret_header_name(name) => {
                write!(f, "{:?}", format!("{}: <redacted>", name.trim()))
            }
            Some(_) => write!(f, "{:?}", self.0),
            // Without a colon it is not a header; it may still be a pasted token.
            None => f.write_str("<redacted>"),
        }
    }
}

/// Resolves the first source given; `None` when no source was given.
pub(crate) fn resolve(
    value: Option<&SecretArg>,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<Password>, Failure> {
    if let Some(value) = value {
        return Ok(Some(Password::new(value.expose())));
    }
    if let Some(name) = env {
        return std::env::var(name)
            .map(|value| Some(Password::new(value)))
            .map_err(|_| Failure::usage(format!("environment variable {name} is not set")));
    }
    if let Some(path) = file {
        // The agent's reader: one trailing newline (how editors and `echo` end a file) is not
        // part of the password.
        let text = agent::config::read_setting_file(path).map_err(|message| Failure {
            kind: "io".into(),
            message,
            hint: None,
            exit_code: crate::cli::EXIT_IO,
        })?;
        return Ok(Some(Password::new(text)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::args::Cli;

    /// Every secret below contains `SECRET`; `Debug` of the parsed arguments must show none.
    #[test]
    fn debug_of_the_arguments_shows_no_secret() {
        let cases: &[&[&str]] = &[
            &[
                "downloader",
                "fetch",
                "https://user:SECRET1@api.example/",
                "-H",
                "Authorization: Bearer SECRET2",
                "-H",
                "x-api-key:SECRET3",
                "-H",
                "Accept: text/plain",
                "--cert",
                "client.p12",
                "--cert-password",
                "SECRET4",
                "--key-password",
                "SECRET5",
                "--cacert",
                "ca.jks",
                "--cacert-password",
                "SECRET6",
                "-x",
                "http://proxyuser:SECRET7@proxy.example:3128",
                "-U",
                "proxyuser:SECRET8",
            ],
            &[
                "downloader",
                "keystore",
                "inspect",
                "client.p12",
                "--password",
                "SECRET9",
                "--key-password",
                "SECRET10",
            ],
            &[
                "downloader",
                "keystore",
                "convert",
                "client.p12",
                "--password",
                "SECRET11",
                "--to",
                "pkcs12",
                "--out",
                "out.p12",
                "--out-password",
                "SECRET12",
            ],
            &[
                "downloader",
                "submit",
                "jobs.json",
                "--amqp",
                "amqp://guest:SECRET13@broker.example/%2f",
            ],
            &[
                "downloader",
                "submit",
                "jobs.json",
                "--agent",
                "https://agent.example:8819",
                "--apikey",
                "key",
                "--secret",
                "SECRET14",
            ],
        ];
        for args in cases {
            let cli = Cli::try_parse_from(*args).expect("the arguments parse");
            let debug = format!("{cli:?}");
            assert!(!debug.contains("SECRET"), "{debug}");
            // The rest is still shown.
            assert!(
                debug.contains(".p12") || debug.contains("jobs.json"),
                "{debug}"
            );
        }
        let fetch = format!("{:?}", Cli::try_parse_from(cases[0]).expect("parses"));
        assert!(
            fetch.contains("Accept: text/plain") && fetch.contains("Authorization: <redacted>")
        );
        assert!(fetch.contains("https://user:***@api.example/"), "{fetch}");
    }
}
