//! The container health check: `downloader healthcheck` asks the running agent's `GET /health`
//! over loopback, so an image needs no curl. Where the agent listens comes from the same
//! configuration `serve` reads; an active-only agent (`use_http=false`) listens on an
//! ephemeral loopback port, which it writes to [`URL_FILE`] in its data directory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Agent, Config};

/// The file in the data directory that holds the base URL the agent serves on.
pub const URL_FILE: &str = "serve.url";

/// Why the agent is not healthy.
#[derive(Debug)]
pub enum Unhealthy {
    /// The base URL could not be found (active-only agent that never started, or no data dir).
    NoUrl {
        /// The file that was looked for.
        file: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The request did not get a response.
    NoAnswer {
        /// The URL asked.
        url: String,
        /// The engine's error kind.
        kind: &'static str,
        /// The engine's message.
        message: String,
    },
    /// `/health` answered with another status than 200.
    Status {
        /// The URL asked.
        url: String,
        /// The status it answered.
        status: u16,
    },
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoUrl { file, source } => write!(
                f,
                "cannot tell where the agent listens: {}: {source}",
                file.display()
            ),
            Self::NoAnswer { url, kind, message } => write!(f, "{url}: {kind}: {message}"),
            Self::Status { url, status } => write!(f, "{url} answered {status}"),
        }
    }
}

impl std::error::Error for Unhealthy {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoUrl { source, .. } => Some(source),
            Self::NoAnswer { .. } | Self::Status { .. } => None,
        }
    }
}

/// Records where a started agent serves, for [`check`] (best effort: a read-only data
/// directory only costs active-only agents their health check).
pub fn publish(agent: &Agent, address: SocketAddr) {
    let scheme = if agent.started().https {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}", loopback(address));
    let _ = std::fs::write(agent.shared.config.data_dir.join(URL_FILE), url);
}

/// The base URL the agent configured by `config` serves on.
pub fn base_url(config: &Config) -> Result<String, Unhealthy> {
    if config.use_http {
        let scheme = if config.use_ssl { "https" } else { "http" };
        return Ok(format!("{scheme}://{}", loopback(config.listen)));
    }
    let file = config.data_dir.join(URL_FILE);
    std::fs::read_to_string(&file)
        .map(|text| text.trim().to_owned())
        .map_err(|source| Unhealthy::NoUrl { file, source })
}

/// Asks `GET {base}/health`; Ok with the agent's answer when it is 200. The agent's own
/// certificate is not verified: the request goes to this host's loopback, and what it checks
/// is that the agent answers, not who it is.
pub async fn check(base: &str, timeout: Duration) -> Result<String, Unhealthy> {
    let url = format!("{base}/health");
    let job = engine::Job::builder("GET", url.clone())
        .insecure(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .body_limit(64 * 1024)
        .build()
        .map_err(|error| Unhealthy::NoAnswer {
            url: url.clone(),
            kind: error.kind(),
            message: error.to_string(),
        })?;
    let outcome = engine::Engine::new().run(job).await;
    match (outcome.response, outcome.error) {
        (Some(response), _) if response.status_code == 200 => {
            Ok(String::from_utf8_lossy(response.body.as_bytes()).into_owned())
        }
        (Some(response), _) => Err(Unhealthy::Status {
            url,
            status: response.status_code,
        }),
        (None, Some(error)) => Err(Unhealthy::NoAnswer {
            url,
            kind: error.kind,
            message: error.message,
        }),
        (None, None) => Err(Unhealthy::NoAnswer {
            url,
            kind: "internal",
            message: "no response and no error".into(),
        }),
    }
}

/// The address to ask on this host: a wildcard listen address is asked on loopback.
fn loopback(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn wildcard_addresses_are_asked_on_loopback() {
        assert_eq!(
            loopback("0.0.0.0:8819".parse().expect("address")),
            "127.0.0.1:8819"
        );
        assert_eq!(
            loopback("[::]:8819".parse().expect("address")),
            "[::1]:8819"
        );
        assert_eq!(
            loopback("10.1.2.3:9000".parse().expect("address")),
            "10.1.2.3:9000"
        );
    }
}
