//! What the worker is doing, for `/health` and `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Value, json};

/// The broker connection state and message counters.
#[derive(Debug, Default)]
pub(crate) struct Status {
    state: Mutex<Inner>,
    /// Job messages received.
    pub(crate) consumed: AtomicU64,
    /// Results confirmed by the broker (and their job acknowledged).
    pub(crate) answered: AtomicU64,
    /// Malformed messages rejected without requeue (dead-lettered when configured).
    pub(crate) rejected: AtomicU64,
    /// Job messages that arrived marked redelivered.
    pub(crate) redelivered: AtomicU64,
    /// Redelivered messages published again with their redelivery count raised (classic queues).
    pub(crate) requeued: AtomicU64,
    /// Messages answered with `amqp.redelivery_limit` (and rejected) instead of being run.
    pub(crate) redelivery_limit: AtomicU64,
    /// Connections made after the first.
    pub(crate) reconnects: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    since: Option<Instant>,
    last_error: Option<String>,
    connected_once: bool,
}

/// The worker's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum State {
    /// Active mode is not configured.
    #[default]
    Off,
    /// Connecting (first time or after a loss).
    Connecting,
    /// Connected and consuming.
    Consuming,
    /// Not connected; waiting before the next attempt.
    Disconnected,
    /// Consumer cancelled for shutdown.
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Connecting => "connecting",
            Self::Consuming => "consuming",
            Self::Disconnected => "disconnected",
            Self::Stopped => "stopped",
        }
    }
}

impl Status {
    pub(crate) fn set(&self, state: State) {
        let mut inner = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state == State::Consuming {
            if inner.connected_once {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            inner.connected_once = true;
            inner.last_error = None;
        }
        if inner.state != state {
            inner.since = Some(Instant::now());
        }
        inner.state = state;
    }

    pub(crate) fn failed(&self, error: String) {
        let mut inner = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.state != State::Disconnected {
            inner.since = Some(Instant::now());
        }
        inner.state = State::Disconnected;
        inner.last_error = Some(error);
    }

    pub(crate) fn state(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state
    }

    /// The `broker` object of `/health`.
    pub(crate) fn health(&self, broker: &str, queue: &str) -> Value {
        let inner = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        json!({
            "state": inner.state.name(),
            "broker": broker,
            "queue": queue,
            "sinceSeconds": inner.since.map(|since| since.elapsed().as_secs()),
            "lastError": inner.last_error,
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "consumed": self.consumed.load(Ordering::Relaxed),
            "answered": self.answered.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "redeliveryLimit": self.redelivery_limit.load(Ordering::Relaxed),
        })
    }

    /// Appends the AMQP metrics (nothing when active mode is off).
    pub(crate) fn render(&self, out: &mut String) {
        let state = self.state();
        if state == State::Off {
            return;
        }
        let connected = u8::from(state == State::Consuming);
        let _ = writeln!(
            out,
            "# HELP downloader_amqp_connected Whether the worker is connected and consuming."
        );
        let _ = writeln!(out, "# TYPE downloader_amqp_connected gauge");
        let _ = writeln!(out, "downloader_amqp_connected {connected}");
        let _ = writeln!(
            out,
            "# HELP downloader_amqp_messages_total Job messages by what became of them."
        );
        let _ = writeln!(out, "# TYPE downloader_amqp_messages_total counter");
        for (event, counter) in [
            ("consumed", &self.consumed),
            ("answered", &self.answered),
            ("rejected", &self.rejected),
            ("redelivered", &self.redelivered),
            ("requeued", &self.requeued),
            ("redelivery_limit", &self.redelivery_limit),
        ] {
            let _ = writeln!(
                out,
                "downloader_amqp_messages_total{{event=\"{event}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP downloader_amqp_reconnects_total Connections to the broker after the first."
        );
        let _ = writeln!(out, "# TYPE downloader_amqp_reconnects_total counter");
        let _ = writeln!(
            out,
            "downloader_amqp_reconnects_total {}",
            self.reconnects.load(Ordering::Relaxed)
        );
    }
}
