//! Where the job API listens: `DOWNLOADER_LISTEN` / `--listen` and the reference's `port`.

use std::net::SocketAddr;

use super::source::{Flags, Value};
use super::{DEFAULT_LISTEN, DEFAULT_PORT, Lookup};
use crate::error::Error;

impl Lookup<'_> {
    /// The listen address: `port` changes the port of the default address, and of a listen
    /// address that names none.
    pub(super) fn listen(&self, flags: &Flags) -> Result<SocketAddr, Error> {
        let listen = match flags.listen.clone() {
            Some(text) => Some(Value::flag("listen", text)),
            None => self.new_setting("LISTEN")?,
        };
        let port = match flags.port {
            Some(port) => Some(Value::flag("port", port.to_string())),
            None => self.reference("port")?,
        };
        let (mut address, names_port) = match &listen {
            Some(value) => parse_listen(&value.text).ok_or_else(|| {
                Error::config(
                    value.setting.clone(),
                    "must be ADDRESS:PORT or ADDRESS, such as 0.0.0.0:8819 or 0.0.0.0",
                )
            })?,
            None => (
                DEFAULT_LISTEN
                    .parse()
                    .map_err(|_| Error::config("listen", "bad default"))?,
                false,
            ),
        };
        if let Some(port) = port {
            // `port` alone changes the port, and so it does when the listen address names none
            // (the image sets `DOWNLOADER_LISTEN=0.0.0.0`, the reference's compose `port`); with
            // both naming a port, the one with the higher precedence wins.
            let wins = listen
                .as_ref()
                .is_none_or(|listen| !names_port || port.origin > listen.origin);
            if wins {
                let number: u16 =
                    port.text.trim().parse().map_err(|_| {
                        Error::config(port.setting.clone(), "must be a port number")
                    })?;
                address.set_port(number);
            }
        }
        Ok(address)
    }
}

/// `ADDRESS:PORT`, `localhost:PORT`, or an address alone (`0.0.0.0`, `::`, `[::]`,
/// `localhost`) on the default port; and whether a port was named.
fn parse_listen(text: &str) -> Option<(SocketAddr, bool)> {
    let text = text.trim();
    if let Ok(address) = text.parse() {
        return Some((address, true));
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    let ip = if bare == "localhost" {
        Some(std::net::IpAddr::from([127, 0, 0, 1]))
    } else {
        bare.parse().ok()
    };
    if let Some(ip) = ip {
        return Some((SocketAddr::new(ip, DEFAULT_PORT), false));
    }
    // `localhost:8819`
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (host == "localhost").then(|| (SocketAddr::from(([127, 0, 0, 1], port)), true))
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn an_address_alone_takes_the_default_port() {
        assert_eq!(
            parse_listen("0.0.0.0"),
            Some(("0.0.0.0:8819".parse().expect("address"), false))
        );
        assert_eq!(
            parse_listen("[::]"),
            Some(("[::]:8819".parse().expect("address"), false))
        );
        assert_eq!(
            parse_listen("localhost:9000"),
            Some(("127.0.0.1:9000".parse().expect("address"), true))
        );
        assert_eq!(parse_listen("0.0.0.0:x"), None);
    }
}
