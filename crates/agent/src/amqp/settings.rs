//! Active-mode settings: the reference system's `use_rabbit` and `rabbit*` names, plus
//! `DOWNLOADER_RABBIT_*` for what it never had (queue, vhost, prefetch, dead-letter exchange,
//! queue type, redelivery cap).

use std::fmt;

use keystore::Password;

use crate::error::Error;

/// The default job queue.
pub const DEFAULT_QUEUE: &str = "downloader.jobs";
/// The default redelivery cap: a job message runs at most 1 + 3 times.
pub const DEFAULT_MAX_REDELIVERIES: u32 = 3;

/// The largest accepted `DOWNLOADER_RABBIT_MAX_REDELIVERIES`.
const MAX_REDELIVERIES_LIMIT: u32 = 1_000_000;

/// A setting's text and the name the user wrote it under (for error messages).
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<(String, String)>, Error>;

/// How to reach RabbitMQ and what to consume (`use_rabbit=true`).
#[derive(Clone)]
pub struct Rabbit {
    /// `rabbitHost` (default `localhost`).
    pub host: String,
    /// `rabbitPort` (default 5672, or 5671 with `rabbitSsl`).
    pub port: u16,
    /// `rabbitSsl`: TLS to the broker, verified with the system roots plus
    /// `DOWNLOADER_TRUST_STORE`.
    pub tls: bool,
    /// `rabbitUsername` (default `guest`).
    pub username: String,
    /// `rabbitPassword` (default `guest`); never logged nor shown.
    pub password: Password,
    /// `DOWNLOADER_RABBIT_VHOST` (default `/`).
    pub vhost: String,
    /// `DOWNLOADER_RABBIT_QUEUE` (default `downloader.jobs`).
    pub queue: String,
    /// `DOWNLOADER_RABBIT_PREFETCH`: unacknowledged jobs this downloader holds, which is also
    /// how many of them run at once (default: `DOWNLOADER_MAX_JOBS`, at most 65535).
    pub prefetch: u16,
    /// `DOWNLOADER_RABBIT_DEAD_LETTER_EXCHANGE`: where malformed messages go, declared on the
    /// queue as `x-dead-letter-exchange` (default: none, they are dropped after their answer).
    pub dead_letter_exchange: Option<String>,
    /// `DOWNLOADER_RABBIT_QUEUE_TYPE`: how the job queue is declared (default classic).
    pub queue_type: QueueType,
    /// `DOWNLOADER_RABBIT_MAX_REDELIVERIES`: deliveries of a message that ended without an
    /// answer (its downloader crashed, stalled or lost the broker) after which the message is
    /// answered with an `amqp.redelivery_limit` error instead of being run again (default 3).
    pub max_redeliveries: u32,
}

/// How the job queue is declared, which decides who counts redeliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// A classic queue: the broker only flags a redelivery, so the downloader counts them in a
    /// header of the message (it publishes a redelivered message again with the count raised).
    #[default]
    Classic,
    /// A quorum queue (`x-queue-type: quorum`): the broker counts deliveries itself in
    /// `x-delivery-count`.
    Quorum,
}

impl Rabbit {
    /// Reads the settings; `reference` looks up the reference system's names, `new` the
    /// `DOWNLOADER_*` ones (by their name without the prefix).
    pub(crate) fn load(
        reference: Lookup<'_>,
        new: Lookup<'_>,
        max_jobs: usize,
    ) -> Result<Self, Error> {
        let tls = match reference("rabbitSsl")? {
            Some((text, setting)) => crate::config::parse_bool(&text)
                .ok_or_else(|| Error::config(setting, "must be true or false"))?,
            None => false,
        };
        let host = match reference("rabbitHost")? {
            Some((text, setting)) => {
                let host = text.trim().to_owned();
                if host.is_empty() || host.contains(['/', '@', ' ']) {
                    return Err(Error::config(setting, "must be a host name or address"));
                }
                host
            }
            None => "localhost".to_owned(),
        };
        let port = match reference("rabbitPort")? {
            Some((text, setting)) => text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| Error::config(setting, "must be a port number"))?,
            None if tls => 5671,
            None => 5672,
        };
        let username =
            reference("rabbitUsername")?.map_or_else(|| "guest".to_owned(), |(text, _)| text);
        let password = Password::new(
            reference("rabbitPassword")?.map_or_else(|| "guest".to_owned(), |(text, _)| text),
        );
        let vhost = new("RABBIT_VHOST")?.map_or_else(|| "/".to_owned(), |(text, _)| text);
        let queue = match new("RABBIT_QUEUE")? {
            Some((text, setting)) => {
                let queue = text.trim().to_owned();
                if queue.is_empty() || queue.len() > 255 || queue.starts_with("amq.") {
                    return Err(Error::config(
                        setting,
                        "must be 1 to 255 bytes and must not start with 'amq.'",
                    ));
                }
                queue
            }
            None => DEFAULT_QUEUE.to_owned(),
        };
        let prefetch = match new("RABBIT_PREFETCH")? {
            Some((text, setting)) => text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::config(setting, "must be a whole number from 1 to 65535"))?,
            None => u16::try_from(max_jobs).unwrap_or(u16::MAX).max(1),
        };
        let dead_letter_exchange = new("RABBIT_DEAD_LETTER_EXCHANGE")?
            .map(|(text, _)| text.trim().to_owned())
            .filter(|name| !name.is_empty());
        let queue_type = match new("RABBIT_QUEUE_TYPE")? {
            Some((text, setting)) => match text.trim().to_ascii_lowercase().as_str() {
                "classic" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                _ => return Err(Error::config(setting, "must be classic or quorum")),
            },
            None => QueueType::Classic,
        };
        let max_redeliveries = match new("RABBIT_MAX_REDELIVERIES")? {
            Some((text, setting)) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_REDELIVERIES_LIMIT)
                .ok_or_else(|| {
                    Error::config(setting, "must be a whole number from 0 to 1000000")
                })?,
            None => DEFAULT_MAX_REDELIVERIES,
        };
        Ok(Self {
            host,
            port,
            tls,
            username,
            password,
            vhost,
            queue,
            prefetch,
            dead_letter_exchange,
            queue_type,
            max_redeliveries,
        })
    }

    /// `amqp://host:port/vhost` or `amqps://…`: the broker without credentials, for logs and
    /// `/health`.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        let vhost = if self.vhost == "/" {
            "%2f"
        } else {
            &self.vhost
        };
        format!("{scheme}://{}:{}/{vhost}", self.host, self.port)
    }
}

impl fmt::Debug for Rabbit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rabbit")
            .field("broker", &self.display())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("dead_letter_exchange", &self.dead_letter_exchange)
            .field("queue_type", &self.queue_type)
            .field("max_redeliveries", &self.max_redeliveries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::{Config, Flags};

    fn load(pairs: &[(&str, &str)]) -> Result<Config, crate::Error> {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let flags = Flags {
            data_dir: Some(std::env::temp_dir().join("downloader-amqp-settings")),
            ..Flags::default()
        };
        Config::load(&flags, &env)
    }

    #[test]
    fn defaults_follow_the_reference_names() {
        let config = load(&[("use_rabbit", "true")]).expect("config");
        let rabbit = config.rabbit.expect("active mode");
        assert_eq!(rabbit.display(), "amqp://localhost:5672/%2f");
        assert_eq!(rabbit.queue, "downloader.jobs");
        assert_eq!(rabbit.prefetch, 1024);
        assert_eq!(rabbit.dead_letter_exchange, None);
        assert_eq!(rabbit.queue_type, super::QueueType::Classic);
        assert_eq!(rabbit.max_redeliveries, 3);
        assert!(load(&[]).expect("config").rabbit.is_none());
    }

    #[test]
    fn every_setting_is_read_and_checked() {
        let config = load(&[
            ("use_rabbit", "true"),
            ("use_http", "false"),
            ("rabbitHost", "broker.internal"),
            ("rabbitSsl", "true"),
            ("rabbitUsername", "dl"),
            ("rabbitPassword", "Rabbit-Secret-77"),
            ("DOWNLOADER_RABBIT_QUEUE", "downloader.dmz"),
            ("DOWNLOADER_RABBIT_VHOST", "zone"),
            ("DOWNLOADER_RABBIT_DEAD_LETTER_EXCHANGE", "dead"),
            ("DOWNLOADER_MAX_JOBS", "40"),
            ("DOWNLOADER_RABBIT_QUEUE_TYPE", "Quorum"),
            ("DOWNLOADER_RABBIT_MAX_REDELIVERIES", "0"),
        ])
        .expect("config");
        let debug = format!("{config:?}");
        assert!(!debug.contains("Rabbit-Secret-77"), "{debug}");
        let rabbit = config.rabbit.expect("active mode");
        assert_eq!(rabbit.display(), "amqps://broker.internal:5671/zone");
        assert_eq!(rabbit.prefetch, 40);
        assert_eq!(rabbit.password.expose(), "Rabbit-Secret-77");
        assert_eq!(rabbit.dead_letter_exchange.as_deref(), Some("dead"));
        assert_eq!(rabbit.queue_type, super::QueueType::Quorum);
        assert_eq!(rabbit.max_redeliveries, 0);

        for (name, value) in [
            ("rabbitPort", "0"),
            ("rabbitSsl", "maybe"),
            ("DOWNLOADER_RABBIT_PREFETCH", "70000"),
            ("DOWNLOADER_RABBIT_QUEUE", "amq.reserved"),
            ("DOWNLOADER_RABBIT_QUEUE_TYPE", "stream"),
            ("DOWNLOADER_RABBIT_MAX_REDELIVERIES", "-1"),
            ("DOWNLOADER_RABBIT_MAX_REDELIVERIES", "1000001"),
        ] {
            let error = load(&[("use_rabbit", "true"), (name, value)]).expect_err(name);
            assert!(error.to_string().contains(name), "{error}");
        }
        let error = load(&[("use_http", "false")]).expect_err("nothing to do");
        assert!(error.to_string().contains("use_rabbit"), "{error}");
    }
}
