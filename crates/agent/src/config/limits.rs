//! Limits of the job API server and of one API request: timeouts that close connections which
//! send too little, a connection cap, HTTP/2 settings, the batch size and the bytes of results
//! one request may hold.

use std::time::Duration;

use super::{Lookup, parse_size};
use crate::error::Error;

/// The default header read timeout (and TLS handshake timeout): 10 seconds.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default idle timeout of a connection with no open request: 60 seconds.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default interval of HTTP/2 keep-alive pings (and the time an answer may take).
const DEFAULT_H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// The default number of concurrent HTTP/2 streams of one connection.
const DEFAULT_H2_MAX_STREAMS: u32 = 128;
/// The default number of jobs in one request.
const DEFAULT_MAX_BATCH: usize = 1000;
/// The default budget of response bytes one API request may hold: 256 MiB.
const DEFAULT_MAX_REQUEST_RESULT_BYTES: u64 = 256 * 1024 * 1024;

/// Limits of the job API server and of each API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers (`DOWNLOADER_HEADER_TIMEOUT`,
    /// seconds). Also the time a new connection has to start its first request, and, for
    /// HTTP/1.1, the wait for the next request on a kept-alive connection.
    pub header_timeout: Duration,
    /// How long a TLS handshake may take (`DOWNLOADER_TLS_HANDSHAKE_TIMEOUT`, seconds).
    pub tls_handshake_timeout: Duration,
    /// How long a connection with no open request stays open (`DOWNLOADER_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// The interval of HTTP/2 keep-alive pings (`DOWNLOADER_H2_KEEPALIVE_INTERVAL`).
    pub h2_keepalive_interval: Duration,
    /// How long a ping may stay unanswered before the connection closes
    /// (`DOWNLOADER_H2_KEEPALIVE_TIMEOUT`).
    pub h2_keepalive_timeout: Duration,
    /// Concurrent HTTP/2 streams of one connection (`DOWNLOADER_H2_MAX_STREAMS`).
    pub h2_max_streams: u32,
    /// Open connections of the job API (`DOWNLOADER_MAX_CONNECTIONS`); `None`: half the
    /// process's open-files limit (at least 16, at most 10,000).
    pub max_connections: Option<usize>,
    /// Jobs in one request (`DOWNLOADER_MAX_BATCH`); more is 413 `api.batch_too_large`.
    pub max_batch: usize,
    /// Response bytes one API request may hold (`DOWNLOADER_MAX_REQUEST_RESULT_BYTES`): each
    /// job of a batch of n keeps at most min(`DOWNLOADER_MAX_BODY`, this / n) bytes.
    pub max_request_result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            tls_handshake_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            h2_keepalive_interval: DEFAULT_H2_KEEPALIVE,
            h2_keepalive_timeout: DEFAULT_H2_KEEPALIVE,
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
            max_connections: None,
            max_batch: DEFAULT_MAX_BATCH,
            max_request_result_bytes: DEFAULT_MAX_REQUEST_RESULT_BYTES,
        }
    }
}

impl Lookup<'_> {
    /// Reads [`Limits`]; every value must be positive.
    pub(super) fn limits(&self) -> Result<Limits, Error> {
        let defaults = Limits::default();
        let count = |name: &str, default: usize| -> Result<usize, Error> {
            match self.new_setting(name)? {
                Some(value) => value
                    .text
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::config(value.setting, "must be a whole number above 0")),
                None => Ok(default),
            }
        };
        let max_connections = match self.new_setting("MAX_CONNECTIONS")? {
            Some(_) => Some(count("MAX_CONNECTIONS", 0)?),
            None => None,
        };
        let h2_max_streams = count("H2_MAX_STREAMS", defaults.h2_max_streams as usize)?;
        let h2_max_streams = u32::try_from(h2_max_streams).map_err(|_| {
            Error::config("DOWNLOADER_H2_MAX_STREAMS", "must be at most 4294967295")
        })?;
        let max_request_result_bytes = match self.new_setting("MAX_REQUEST_RESULT_BYTES")? {
            Some(value) => parse_size(&value.text).filter(|n| *n > 0).ok_or_else(|| {
                Error::config(
                    value.setting,
                    "must be a size such as 268435456, 512K, 256M or 1G",
                )
            })?,
            None => defaults.max_request_result_bytes,
        };
        Ok(Limits {
            header_timeout: self.seconds("HEADER_TIMEOUT", defaults.header_timeout)?,
            tls_handshake_timeout: self
                .seconds("TLS_HANDSHAKE_TIMEOUT", defaults.tls_handshake_timeout)?,
            idle_timeout: self.seconds("IDLE_TIMEOUT", defaults.idle_timeout)?,
            h2_keepalive_interval: self
                .seconds("H2_KEEPALIVE_INTERVAL", defaults.h2_keepalive_interval)?,
            h2_keepalive_timeout: self
                .seconds("H2_KEEPALIVE_TIMEOUT", defaults.h2_keepalive_timeout)?,
            h2_max_streams,
            max_connections,
            max_batch: count("MAX_BATCH", defaults.max_batch)?,
            max_request_result_bytes,
        })
    }

    /// A positive number of seconds (fractions allowed).
    fn seconds(&self, name: &str, default: Duration) -> Result<Duration, Error> {
        let Some(value) = self.new_setting(name)? else {
            return Ok(default);
        };
        value
            .text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .filter(|duration| !duration.is_zero() && *duration <= Duration::from_secs(86_400))
            .ok_or_else(|| {
                Error::config(
                    value.setting,
                    "must be a number of seconds above 0, at most 86400",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Source;

    #[derive(Debug)]
    struct Env(HashMap<String, String>);

    impl Source for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, Error> {
        let env = Env(pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect());
        Lookup {
            env: &env,
            file: toml::Table::new(),
        }
        .limits()
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(limits(&[]).expect("defaults"), Limits::default());
        let set = limits(&[
            ("DOWNLOADER_HEADER_TIMEOUT", "2.5"),
            ("DOWNLOADER_MAX_CONNECTIONS", "64"),
            ("DOWNLOADER_MAX_BATCH", "10"),
            ("DOWNLOADER_MAX_REQUEST_RESULT_BYTES", "1M"),
        ])
        .expect("values");
        assert_eq!(set.header_timeout, Duration::from_millis(2500));
        assert_eq!(set.max_connections, Some(64));
        assert_eq!(set.max_batch, 10);
        assert_eq!(set.max_request_result_bytes, 1 << 20);
    }

    #[test]
    fn refuses_zero_and_garbage() {
        for (name, value) in [
            ("DOWNLOADER_HEADER_TIMEOUT", "0"),
            ("DOWNLOADER_IDLE_TIMEOUT", "1e19"),
            ("DOWNLOADER_MAX_CONNECTIONS", "0"),
            ("DOWNLOADER_MAX_BATCH", "-1"),
            ("DOWNLOADER_H2_MAX_STREAMS", "99999999999"),
            ("DOWNLOADER_MAX_REQUEST_RESULT_BYTES", "lots"),
        ] {
            let error = limits(&[(name, value)]).expect_err(name);
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
