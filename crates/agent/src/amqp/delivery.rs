//! One delivery to its end: decide (see [`decode_message`]), then exactly one of: run the job
//! and publish its result, publish a typed refusal, or publish the message again with its
//! redelivery count; acknowledge (or reject) only after the broker confirmed that publish.
//!
//! Everything here runs inside the delivery's task of the connection's task set: nothing is
//! spawned, so cancelling that task (connection lost, shutdown grace over) cancels the job
//! with it, and a result is only ever published on the channel that received the job.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_lite::FutureExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::message::{Decision, Rules, decode_message, mark_redelivered, requeued_properties};
use super::settings::{QueueType, Rabbit};
use crate::api::{self, Shared};

/// Bodies up to this size are decoded on the async worker; larger ones on a blocking thread.
const INLINE_DECODE: usize = 64 * 1024;

/// What the deliveries of one connection share.
#[derive(Debug)]
pub(super) struct Context {
    shared: Arc<Shared>,
    channel: Channel,
    queue: String,
    rules: Rules,
    /// One permit per job in flight: never more than the prefetch run at once, even if the
    /// broker delivered more than it was asked to.
    permits: Arc<Semaphore>,
}

/// How a publish ended.
enum Published {
    /// The broker took the message.
    Confirmed,
    /// The broker refused it (a nack).
    Refused,
    /// The channel failed before the confirmation (connection lost).
    Failed(lapin::Error),
}

impl Context {
    pub(super) fn new(shared: &Arc<Shared>, channel: Channel, rabbit: &Rabbit) -> Self {
        Self {
            shared: shared.clone(),
            channel,
            queue: rabbit.queue.clone(),
            rules: Rules {
                max_redeliveries: rabbit.max_redeliveries,
                broker_counts: rabbit.queue_type == QueueType::Quorum,
                max_body: shared.config.max_body,
            },
            permits: Arc::new(Semaphore::new(usize::from(rabbit.prefetch))),
        }
    }
}

/// One message to its end (see the module documentation).
pub(super) async fn handle(context: Arc<Context>, mut delivery: Delivery) {
    // The semaphore is never closed, so acquiring only fails if that changes; run anyway.
    let _permit = context.permits.clone().acquire_owned().await.ok();
    let status = &context.shared.metrics.broker;
    status.consumed.fetch_add(1, Ordering::Relaxed);
    if delivery.redelivered {
        status.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    let decision = decide(context.rules, &mut delivery).await;
    match decision {
        Decision::Unanswerable => {
            tracing::warn!(
                correlation_id = correlation(&delivery).map_or("", ShortString::as_str),
                "job message without reply_to: rejected (dead-lettered when configured)"
            );
            reject(&context, &delivery).await;
        }
        Decision::Refuse { result, poisoned } => {
            let kind = result["error"]["kind"].as_str().unwrap_or("");
            tracing::warn!(kind, "job message not run: answered, then rejected");
            if answer(&context, &delivery, &result).await {
                if poisoned {
                    status.redelivery_limit.fetch_add(1, Ordering::Relaxed);
                }
                reject(&context, &delivery).await;
            }
        }
        Decision::Requeue { redeliveries } => requeue(&context, delivery, redeliveries).await,
        Decision::Run { job, redeliveries } => {
            let mut result = run_job(&context.shared, job).await;
            if redeliveries > 0 {
                mark_redelivered(&mut result);
            }
            if answer(&context, &delivery, &result).await {
                acknowledge(&context, &delivery).await;
            }
        }
    }
}

/// Decides on the message, off the async workers when the body is large (the JSON parse is
/// bounded by `DOWNLOADER_MAX_BODY`, but a large one would stall other tasks).
async fn decide(rules: Rules, delivery: &mut Delivery) -> Decision {
    if delivery.data.len() <= INLINE_DECODE {
        return decode_message(
            &delivery.data,
            &delivery.properties,
            delivery.redelivered,
            &rules,
        );
    }
    let body = std::mem::take(&mut delivery.data);
    let properties = delivery.properties.clone();
    let redelivered = delivery.redelivered;
    let decoded = tokio::task::spawn_blocking(move || {
        let decision = decode_message(&body, &properties, redelivered, &rules);
        (decision, body)
    })
    .await;
    match decoded {
        Ok((decision, body)) => {
            delivery.data = body;
            decision
        }
        Err(error) => {
            tracing::error!(%error, "decoding a job message failed");
            Decision::Refuse {
                result: internal_refusal(),
                poisoned: false,
            }
        }
    }
}

fn internal_refusal() -> Value {
    serde_json::json!({
        "id": null,
        "ok": false,
        "request": {"method": "", "url": ""},
        "error": {
            "kind": "internal",
            "message": "internal error: decoding the job message failed",
            "hint": "this is a bug in the downloader; please report it",
        },
    })
}

/// Runs the job inside this task; a panic becomes the job's `internal` result.
async fn run_job(shared: &Shared, raw: Value) -> Value {
    let id = api::job_id(&raw);
    let (method, url) = api::job_request(&raw);
    match AssertUnwindSafe(api::run_job(shared, raw))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => api::internal_result(shared, id, method, url, panic_text(panic.as_ref())),
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a job panicked")
}

/// Publishes `result` to the message's `reply_to`; `true` once the broker confirmed it. A
/// refused result gives the job back to the queue; a failed channel leaves it unacknowledged
/// (the broker redelivers it).
async fn answer(context: &Context, delivery: &Delivery, result: &Value) -> bool {
    let Some(reply_to) = delivery
        .properties
        .reply_to()
        .as_ref()
        .filter(|queue| !queue.as_str().is_empty())
    else {
        return false;
    };
    let body = serde_json::to_vec(result).unwrap_or_default();
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        // Persistent: a result waiting in a durable reply queue survives a broker restart.
        .with_delivery_mode(2);
    if let Some(correlation) = correlation(delivery) {
        properties = properties.with_correlation_id(correlation.clone());
    }
    match publish(&context.channel, reply_to.as_str(), &body, properties).await {
        Published::Confirmed => true,
        Published::Refused => {
            tracing::warn!("the broker refused a result; the job goes back to the queue");
            requeue_original(delivery).await;
            false
        }
        Published::Failed(error) => {
            tracing::warn!(%error, "result not confirmed; the job will be redelivered");
            false
        }
    }
}

/// A redelivered message on a classic queue: publish the copy that carries the count, then
/// acknowledge this delivery without running it.
async fn requeue(context: &Context, delivery: Delivery, redeliveries: u32) {
    let properties = requeued_properties(&delivery.properties, redeliveries);
    tracing::info!(
        redeliveries,
        max = context.rules.max_redeliveries,
        "redelivered job message: queued again with its redelivery count"
    );
    match publish(&context.channel, &context.queue, &delivery.data, properties).await {
        Published::Confirmed => {
            let status = &context.shared.metrics.broker;
            match delivery.ack(BasicAckOptions::default()).await {
                Ok(_) => {
                    status.requeued.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, "ack failed; the job may arrive twice");
                }
            }
        }
        Published::Refused => requeue_original(&delivery).await,
        Published::Failed(error) => {
            tracing::warn!(%error, "copy not confirmed; the job will be redelivered");
        }
    }
}

async fn publish(
    channel: &Channel,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Published {
    let confirmed = match channel
        .basic_publish(
            ShortString::from(""),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => Published::Confirmed,
        Ok(Confirmation::Nack(_)) => Published::Refused,
        Err(error) => Published::Failed(error),
    }
}

async fn acknowledge(context: &Context, delivery: &Delivery) {
    match delivery.ack(BasicAckOptions::default()).await {
        Ok(_) => {
            context
                .shared
                .metrics
                .broker
                .answered
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tracing::warn!(%error, "ack failed; the job will be redelivered"),
    }
}

/// Gives the message back to the queue (the broker could not take what it should cause).
async fn requeue_original(delivery: &Delivery) {
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await;
}

async fn reject(context: &Context, delivery: &Delivery) {
    match delivery.reject(BasicRejectOptions { requeue: false }).await {
        Ok(_) => {
            context
                .shared
                .metrics
                .broker
                .rejected
                .fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tracing::warn!(%error, "reject failed"),
    }
}

fn correlation(delivery: &Delivery) -> Option<&ShortString> {
    delivery.properties.correlation_id().as_ref()
}
