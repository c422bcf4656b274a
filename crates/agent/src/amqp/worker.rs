//! The consumer: connect, declare, consume with prefetch = concurrency, run each job through the
//! same path as the HTTPS API, publish its result to `reply_to` with publisher confirms, and only
//! then acknowledge the job. Connection losses are retried with backoff; jobs in flight on a lost
//! connection are cancelled (their tasks belong to the connection's task set) and redelivered by
//! the broker, never dropped nor run twice side by side.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Failure;
use super::delivery::{Context, handle};
use super::settings::{QueueType, Rabbit};
use super::status::State;
use crate::api::Shared;
use crate::certs::Loaded;

/// The first wait after a failed connection; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// The longest a connection attempt (TCP, TLS, AMQP handshake) may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Consumes jobs until `stop` turns true, then drains: cancel the consumer, finish the jobs in
/// flight (within the shutdown grace), publish and acknowledge them, close.
pub(crate) async fn run(shared: Arc<Shared>, rabbit: Rabbit, mut stop: watch::Receiver<bool>) {
    let status = &shared.metrics.broker;
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        status.set(State::Connecting);
        match session(&shared, &rabbit, &mut stop, &mut backoff).await {
            Ok(()) => break,
            Err(failure) => {
                let error = failure.to_string();
                tracing::warn!(
                    broker = %rabbit.display(),
                    %error,
                    retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "broker unavailable; retrying"
                );
                status.failed(error);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    status.set(State::Stopped);
    tracing::info!(broker = %rabbit.display(), "consumer stopped");
}

/// One connection's life. `Ok` after a drained shutdown; `Err` when the connection is lost.
/// Every task a delivery started is cancelled, and waited for, before this returns: the broker
/// redelivers those jobs, and the next connection never runs them beside their first copies.
async fn session(
    shared: &Arc<Shared>,
    rabbit: &Rabbit,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), Failure> {
    // SIGTERM while a connection attempt hangs (a firewalled broker) need not wait for it.
    let connection = tokio::select! {
        connection = connect(shared, rabbit) => connection?,
        _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
    };
    let mut events = connection.events_listener();
    let channel = connection.create_channel().await.map_err(Failure::broker)?;
    channel
        .basic_qos(rabbit.prefetch, BasicQosOptions::default())
        .await
        .map_err(Failure::broker)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(Failure::broker)?;
    declare(&channel, rabbit).await?;
    let mut consumer = channel
        .basic_consume(
            rabbit.queue.as_str().into(),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Failure::broker)?;
    shared.metrics.broker.set(State::Consuming);
    *backoff = FIRST_BACKOFF;
    tracing::info!(
        broker = %rabbit.display(),
        queue = %rabbit.queue,
        prefetch = rabbit.prefetch,
        "consuming jobs"
    );
    let context = Arc::new(Context::new(shared, channel.clone(), rabbit));
    // Every task of this connection lives here, and only here: dropping or shutting the set
    // down cancels the jobs with it (no task is detached).
    let mut tasks = JoinSet::new();
    let lost = loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break None,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => report(joined),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    tasks.spawn(handle(context.clone(), delivery));
                }
                Some(Err(error)) => break Some(Failure::Lost(error.to_string())),
                None => break Some(Failure::Lost("the broker ended the consumer".into())),
            },
            event = events.next() => match event {
                Some(Event::Error(error)) => break Some(Failure::Lost(error.to_string())),
                Some(_) => {}
                None => break Some(Failure::Lost("the connection ended".into())),
            },
        }
    };
    if let Some(failure) = lost {
        let cancelled = tasks.len();
        // Abort and wait: when this returns, no job of this connection runs any more.
        tasks.shutdown().await;
        tracing::warn!(
            cancelled,
            "connection lost: jobs in flight cancelled; the broker redelivers them"
        );
        return Err(failure);
    }
    drain(shared, &channel, consumer.tag(), tasks).await;
    // Unacknowledged messages (prefetched, never started) go back to the queue on close.
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
}

/// Shutdown: cancel the consumer, let the jobs in flight finish within the grace, then cancel
/// the rest (the broker redelivers them).
async fn drain(shared: &Shared, channel: &Channel, tag: ShortString, mut tasks: JoinSet<()>) {
    shared.metrics.broker.set(State::Stopped);
    tracing::info!(
        in_flight = tasks.len(),
        "cancelling the consumer; finishing jobs in flight"
    );
    let _ = channel
        .basic_cancel(tag, BasicCancelOptions::default())
        .await;
    let grace = shared.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            report(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "shutdown grace over; the broker redelivers the unfinished jobs"
        );
        tasks.shutdown().await;
    }
}

fn report(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && !error.is_cancelled()
    {
        tracing::error!(%error, "job message task failed");
    }
}

async fn connect(shared: &Shared, rabbit: &Rabbit) -> Result<Connection, Failure> {
    let uri = lapin::uri::AMQPUri {
        scheme: if rabbit.tls {
            lapin::uri::AMQPScheme::AMQPS
        } else {
            lapin::uri::AMQPScheme::AMQP
        },
        authority: lapin::uri::AMQPAuthority {
            userinfo: lapin::uri::AMQPUserInfo {
                username: rabbit.username.clone(),
                password: rabbit.password.expose().to_owned(),
            },
            host: rabbit.host.clone(),
            port: rabbit.port,
        },
        vhost: rabbit.vhost.clone(),
        query: lapin::uri::AMQPQueryString {
            heartbeat: Some(20),
            connection_timeout: Some(10_000),
            ..Default::default()
        },
    };
    let mut tls = lapin::tcp::OwnedTLSConfig::default();
    if rabbit.tls
        && let Some(path) = &shared.config.trust_store
    {
        // The same trust as jobs: the system roots plus the downloader-wide trust store.
        match shared
            .certs
            .trust(
                path,
                shared.config.trust_store_password.as_ref(),
                Some("trust"),
            )
            .await
        {
            Loaded::Good(loaded, _) => {
                tls.cert_chain = Some(String::from_utf8_lossy(&loaded.pem).into_owned());
            }
            Loaded::Bad(problem) => return Err(Failure::Trust(problem.to_string())),
        }
    }
    let runtime = lapin::runtime::default_runtime().map_err(Failure::broker)?;
    let properties = lapin::ConnectionProperties::default().with_connection_name(
        format!(
            "downloader {} pid {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        )
        .into(),
    );
    match tokio::time::timeout(
        CONNECT_LIMIT,
        Connection::connect_uri_with_config(uri, properties, tls, runtime),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(Failure::Connect(error.to_string())),
        Err(_) => Err(Failure::Connect(format!(
            "no answer within {} s",
            CONNECT_LIMIT.as_secs()
        ))),
    }
}

/// Declares the durable job queue (quorum when configured, with its dead-letter exchange when
/// configured).
async fn declare(channel: &Channel, rabbit: &Rabbit) -> Result<(), Failure> {
    let mut arguments = FieldTable::default();
    if rabbit.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    if let Some(exchange) = &rabbit.dead_letter_exchange {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.as_str().into()),
        );
    }
    channel
        .queue_declare(
            rabbit.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map_err(|error| Failure::Declare(error.to_string()))?;
    Ok(())
}
