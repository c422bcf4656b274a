//! Active mode: jobs from RabbitMQ (AMQP 0-9-1, through lapin with rustls).
//!
//! Any number of downloaders consume one durable queue as competing consumers; each job message
//! is the same JSON job the HTTPS API takes, and its result goes to the message's `reply_to`
//! with its `correlation_id` (the RPC pattern). A job is acknowledged only after the broker has
//! confirmed its result, so a downloader that dies mid-job leaves it to another one.
//!
//! [`submit`] is the other side: it sends jobs and waits for their results on an exclusive
//! reply queue (`downloader submit --amqp`).

mod delivery;
pub(crate) mod message;
mod settings;
pub(crate) mod status;
pub mod submit;
mod worker;

use std::fmt;

pub use settings::{DEFAULT_MAX_REDELIVERIES, DEFAULT_QUEUE, QueueType, Rabbit};
pub(crate) use status::Status;
pub(crate) use worker::run;

/// Why a connection to the broker ended or never started (the worker retries all of them).
#[derive(Debug)]
pub(crate) enum Failure {
    /// TCP, TLS or the AMQP handshake failed (includes wrong credentials or vhost).
    Connect(String),
    /// The downloader-wide trust store, needed to verify the broker, cannot be read.
    Trust(String),
    /// The broker refused to declare the job queue, for example because it exists with other
    /// arguments.
    Declare(String),
    /// A channel operation failed.
    Broker(String),
    /// The connection or the consumer ended while consuming.
    Lost(String),
}

impl Failure {
    fn broker(error: lapin::Error) -> Self {
        Self::Broker(error.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(detail) => write!(f, "cannot connect to the broker: {detail}"),
            Self::Trust(detail) => {
                write!(f, "cannot load the trust store for the broker: {detail}")
            }
            Self::Declare(detail) => write!(
                f,
                "cannot declare the job queue: {detail} (does it exist with other arguments?)"
            ),
            Self::Broker(detail) => write!(f, "broker error: {detail}"),
            Self::Lost(detail) => write!(f, "connection lost: {detail}"),
        }
    }
}
