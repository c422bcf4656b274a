//! Limits of the job API server and of one API request: timeouts that close connections which
//! send too little, a connection cap, HTTP/2 settings, the batch size and the bytes of results
//! one request may hold.

use std::time::Duration;

use super::{Config, Flags, Lookup, parse_size};
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

/// The longest time any seconds setting may name: one day.
const MAX_SECONDS: Duration = Duration::from_secs(86_400);

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
        let max_connections = match self.new_setting("MAX_CONNECTIONS")? {
            Some(_) => Some(self.whole("MAX_CONNECTIONS", 0, 1)?),
            None => None,
        };
        let h2_max_streams = self.whole("H2_MAX_STREAMS", defaults.h2_max_streams as usize, 1)?;
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
            header_timeout: self.seconds("HEADER_TIMEOUT", defaults.header_timeout, false)?,
            tls_handshake_timeout: self.seconds(
                "TLS_HANDSHAKE_TIMEOUT",
                defaults.tls_handshake_timeout,
                false,
            )?,
            idle_timeout: self.seconds("IDLE_TIMEOUT", defaults.idle_timeout, false)?,
            h2_keepalive_interval: self.seconds(
                "H2_KEEPALIVE_INTERVAL",
                defaults.h2_keepalive_interval,
                false,
            )?,
            h2_keepalive_timeout: self.seconds(
                "H2_KEEPALIVE_TIMEOUT",
                defaults.h2_keepalive_timeout,
                false,
            )?,
            h2_max_streams,
            max_connections,
            max_batch: self.whole("MAX_BATCH", defaults.max_batch, 1)?,
            max_request_result_bytes,
        })
    }

    /// How many jobs run and wait at once, and the body limit.
    pub(super) fn capacity(&self, flags: &Flags, config: &mut Config) -> Result<(), Error> {
        config.max_jobs = match flags.max_jobs {
            Some(n) => n,
            None => self.whole("MAX_JOBS", super::DEFAULT_MAX_JOBS, 0)?,
        };
        if config.max_jobs == 0 {
            return Err(Error::config("max_jobs", "must be at least 1"));
        }
        config.queue_limit = match flags.queue_limit {
            Some(n) => n,
            None => self.whole("QUEUE_LIMIT", super::DEFAULT_QUEUE_LIMIT, 0)?,
        };
        config.max_body = match self.new_setting("MAX_BODY")? {
            Some(value) => parse_size(&value.text).filter(|n| *n > 0).ok_or_else(|| {
                Error::config(
                    value.setting,
                    "must be a size such as 52428800, 512K, 50M or 1G",
                )
            })?,
            None => super::DEFAULT_MAX_BODY,
        };
        Ok(())
    }

    /// The KDF caps of keystores (`DOWNLOADER_MAX_KDF_ITERATIONS`, a whole number above 0,
    /// and `DOWNLOADER_MAX_KDF_MEMORY`, a size above 0); unset ones keep `defaults`.
    pub(super) fn kdf_limits(&self, defaults: keystore::Limits) -> Result<keystore::Limits, Error> {
        let default_iterations = usize::try_from(defaults.max_iterations).unwrap_or(usize::MAX);
        let max_iterations = self.whole("MAX_KDF_ITERATIONS", default_iterations, 1)?;
        let max_memory = match self.new_setting("MAX_KDF_MEMORY")? {
            Some(value) => parse_size(&value.text).filter(|n| *n > 0).ok_or_else(|| {
                Error::config(
                    value.setting,
                    "must be a size such as 268435456, 256M or 1G",
                )
            })?,
            None => defaults.max_memory,
        };
        Ok(keystore::Limits {
            max_iterations: u64::try_from(max_iterations).unwrap_or(u64::MAX),
            max_memory,
        })
    }

    /// A whole number of at least `min`; `default` when unset.
    pub(super) fn whole(&self, name: &str, default: usize, min: usize) -> Result<usize, Error> {
        let Some(value) = self.new_setting(name)? else {
            return Ok(default);
        };
        let number = value.text.trim().parse::<usize>().ok();
        match number.filter(|n| *n >= min) {
            Some(n) => Ok(n),
            None if min == 0 => Err(Error::config(value.setting, "must be a whole number")),
            None => Err(Error::config(
                value.setting,
                format!("must be a whole number above {}", min - 1),
            )),
        }
    }

    /// A number of seconds (fractions allowed), at most a day and above 0 unless `zero` is
    /// allowed; `default` when unset.
    pub(super) fn seconds(
        &self,
        name: &str,
        default: Duration,
        zero: bool,
    ) -> Result<Duration, Error> {
        let Some(value) = self.new_setting(name)? else {
            return Ok(default);
        };
        value
            .text
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .filter(|duration| (zero || !duration.is_zero()) && *duration <= MAX_SECONDS)
            .ok_or_else(|| {
                let problem = if zero {
                    "must be a number of seconds, at most 86400"
                } else {
                    "must be a number of seconds above 0, at most 86400"
                };
                Error::config(value.setting, problem)
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

    #[test]
    fn whole_and_seconds_keep_each_settings_range() {
        let env = Env([
            ("DOWNLOADER_SHUTDOWN_GRACE", "0"),
            ("DOWNLOADER_MAX_KDF_ITERATIONS", "0"),
            ("DOWNLOADER_QUEUE_LIMIT", "0"),
            ("DOWNLOADER_IDLE_TIMEOUT", "1e19"),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect());
        let lookup = Lookup {
            env: &env,
            file: toml::Table::new(),
        };
        let grace = lookup.seconds("SHUTDOWN_GRACE", Duration::from_secs(30), true);
        assert_eq!(grace.expect("0 is a grace"), Duration::ZERO);
        let error = lookup
            .seconds("IDLE_TIMEOUT", Duration::from_secs(1), true)
            .expect_err("above a day");
        assert!(error.to_string().contains("at most 86400"), "{error}");
        assert_eq!(lookup.whole("QUEUE_LIMIT", 7, 0).expect("0 is a queue"), 0);
        let error = lookup
            .kdf_limits(keystore::Limits::default())
            .expect_err("0 iterations");
        assert!(error.to_string().contains("above 0"), "{error}");
        assert_eq!(lookup.whole("MAX_BATCH", 5, 1).expect("unset"), 5);
    }
}
