//! Job values given as text by every surface: `--resolve` pins and seconds.

use std::time::Duration;

use crate::error::JobError;

/// Parses `HOST:PORT:ADDRESS` (curl's `--resolve`; IPv6 addresses may be in brackets).
pub fn parse_resolve(text: &str) -> Result<(String, u16, std::net::IpAddr), JobError> {
    let bad = || JobError::new(format!("'{text}' is not HOST:PORT:ADDRESS"));
    let (host, rest) = text.split_once(':').ok_or_else(bad)?;
    let (port, address) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address = address.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port, address))
}

/// Seconds (possibly fractional) as a duration; zero, negative and absurd values are refused.
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, JobError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| JobError::new(format!("'{seconds}' is not a positive number of seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_pins_parse() {
        let (host, port, address) = parse_resolve("a.test:443:[::1]").expect("valid");
        assert_eq!((host.as_str(), port), ("a.test", 443));
        assert!(address.is_loopback());
        assert!(parse_resolve("a.test:x:127.0.0.1").is_err());
    }

    #[test]
    fn seconds_must_be_positive_and_finite() {
        assert_eq!(
            seconds_to_duration(1.5).ok(),
            Some(Duration::from_millis(1500))
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e30] {
            assert!(seconds_to_duration(bad).is_err(), "{bad}");
        }
    }
}
