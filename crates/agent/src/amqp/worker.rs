//! The consumer: connect, declare, consume with prefetch = concurrency, run each job through the
//! same path as the HTTPS API, publish its result to `reply_to` with publisher confirms, and only
//! then acknowledge the job. Connection losses are retried with backoff; jobs in flight on a lost
//! connection are redelivered by the broker, never dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::Confirmation;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Failure;
use super::settings::Rabbit;
use super::status::State;
use crate::api::{self, Shared};
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

/// One connection's life. `Ok` after a drained shutdown; `Err` when the connection is lost
/// (the jobs still running are aborted: the broker redelivers them).
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
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "job message task failed");
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    tasks.spawn(handle(shared.clone(), channel.clone(), delivery));
                }
                Some(Err(error)) => return Err(Failure::Lost(error.to_string())),
                None => return Err(Failure::Lost("the broker ended the consumer".into())),
            },
        }
    }
    shared.metrics.broker.set(State::Stopped);
    tracing::info!(
        in_flight = tasks.len(),
        "cancelling the consumer; finishing jobs in flight"
    );
    let _ = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    let grace = shared.config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "job message task failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "shutdown grace over; the broker redelivers the unfinished jobs"
        );
        tasks.abort_all();
    }
    // Unacknowledged messages (prefetched, never started) go back to the queue on close.
    let _ = connection.close(200, "shutdown".into()).await;
    Ok(())
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

/// Declares the durable job queue (with its dead-letter exchange when configured).
async fn declare(channel: &Channel, rabbit: &Rabbit) -> Result<(), Failure> {
    let mut arguments = FieldTable::default();
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

/// One message to its end: exactly one published result (when it has somewhere to go), then an
/// ack; or, for a malformed message, its answer and a reject without requeue.
async fn handle(shared: Arc<Shared>, channel: Channel, delivery: Delivery) {
    let status = &shared.metrics.broker;
    status.consumed.fetch_add(1, Ordering::Relaxed);
    if delivery.redelivered {
        status.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    let reply_to = delivery
        .properties
        .reply_to()
        .as_ref()
        .map(|queue| queue.as_str().to_owned())
        .filter(|queue| !queue.is_empty());
    let correlation = delivery.properties.correlation_id().clone();
    let Some(reply_to) = reply_to else {
        tracing::warn!(
            correlation_id = correlation.as_ref().map_or("", ShortString::as_str),
            "job message without reply_to: rejected (dead-lettered when configured)"
        );
        reject(&shared, &delivery).await;
        return;
    };
    let (mut result, malformed) = match parse(&delivery.data) {
        Ok(raw) => (run_job(&shared, raw).await, false),
        Err(problem) => {
            tracing::warn!(%problem, "malformed job message: answered, then rejected");
            (invalid(&problem), true)
        }
    };
    if delivery.redelivered
        && let Some(object) = result.as_object_mut()
    {
        object.insert("redelivered".into(), Value::Bool(true));
    }
    let body = serde_json::to_vec(&result).unwrap_or_default();
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        // Persistent: a result waiting in a durable reply queue survives a broker restart.
        .with_delivery_mode(2);
    if let Some(correlation) = correlation {
        properties = properties.with_correlation_id(correlation);
    }
    let confirmed = match channel
        .basic_publish(
            ShortString::from(""),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => {}
        Ok(Confirmation::Nack(_)) => {
            // The broker could not take the result: give the job back for another try.
            tracing::warn!("the broker refused a result; the job goes back to the queue");
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return;
        }
        Err(error) => {
            // Connection lost: the broker redelivers the job, unacknowledged.
            tracing::warn!(%error, "result not confirmed; the job will be redelivered");
            return;
        }
    }
    if malformed {
        reject(&shared, &delivery).await;
        return;
    }
    match delivery.ack(BasicAckOptions::default()).await {
        Ok(_) => {
            status.answered.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tracing::warn!(%error, "ack failed; the job will be redelivered"),
    }
}

async fn reject(shared: &Shared, delivery: &Delivery) {
    match delivery.reject(BasicRejectOptions { requeue: false }).await {
        Ok(_) => {
            shared
                .metrics
                .broker
                .rejected
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tracing::warn!(%error, "reject failed"),
    }
}

/// A job message is one JSON object.
fn parse(data: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(data) {
        Ok(object @ Value::Object(_)) => Ok(object),
        Ok(Value::Array(_)) => Err("a job message holds one job object, not an array".into()),
        Ok(_) => Err("a job message must be a JSON object".into()),
        Err(error) => Err(format!("the message body is not valid JSON: {error}")),
    }
}

/// Runs the job in its own task, so a panic becomes this job's `internal` result.
async fn run_job(shared: &Arc<Shared>, raw: Value) -> Value {
    let id = api::job_id(&raw);
    let (method, url) = api::job_request(&raw);
    let task_shared = shared.clone();
    match tokio::spawn(async move { api::run_job(&task_shared, raw).await }).await {
        Ok(result) => result,
        Err(error) => api::internal_result(shared, id, method, url, &error.to_string()),
    }
}

/// The `request.invalid` result of a malformed message.
fn invalid(problem: &str) -> Value {
    json!({
        "id": null,
        "ok": false,
        "request": {"method": "", "url": ""},
        "error": {
            "kind": "request.invalid",
            "message": problem,
            "hint": "send one job as a JSON object per message (see docs/job-api.md)",
        },
    })
}
