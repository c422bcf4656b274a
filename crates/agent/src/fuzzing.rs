//! Entry points for the fuzz targets in `fuzz/` (`job`, `amqp_message`): the agent's job
//! decoders, reached without a server, a broker, a certificate directory or a network.
//!
//! **Not a stable API.** It is hidden from the documentation and follows the decoders whenever
//! they change; only `fuzz/` and the agent's own tests call it. Each function runs the code the
//! job API or the AMQP worker runs on a job before it starts (splitting the body, JSON,
//! templates, `config`, the caps, the engine's job builder) and stops there: nothing is
//! connected to and no file is read.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use crate::amqp::message::{Decision, Rules, decode_message};
use crate::api::{ApiJob, Rejection, SplitRefusal, split_jobs};
use crate::config::{DEFAULT_MAX_BODY, JobLimits, Limits};

/// What a decoder refused: the typed error the job's result (or the API's answer) would carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The stable kind (`request.invalid`, `request.too_large`, `api.json`, ...).
    pub kind: &'static str,
    /// The message a person reads.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

/// One AMQP delivery as the fuzz target describes it.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    /// The message body.
    pub body: &'a [u8],
    /// The `reply_to` property.
    pub reply_to: Option<String>,
    /// The broker's `redelivered` flag.
    pub redelivered: bool,
    /// The agent's redelivery count header (`x-downloader-redeliveries`), as a signed number.
    pub agent_count: Option<i64>,
    /// The quorum queue's `x-delivery-count` header.
    pub broker_count: Option<i64>,
    /// Whether the queue is a quorum queue (the broker's count is trusted).
    pub broker_counts: bool,
    /// The redelivery cap.
    pub max_redeliveries: u32,
}

/// What the AMQP worker decided for one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// No `reply_to`: rejected unrun.
    Unanswerable,
    /// Answered with this error result, then rejected.
    Refused(Value),
    /// Published again with this redelivery count, unrun.
    Requeued(u32),
    /// Run: what planning the job gave.
    Planned(Result<(), Refusal>),
}

/// Decodes `body` as `POST /api/v1/jobs` does (one job object or an array of them, at most the
/// default batch size), then parses, renders and plans every job and builds its engine job, as
/// the API does before running it.
///
/// `Err` is the refusal of the whole request (`api.json`, `api.batch_too_large`); otherwise one
/// entry per job, in order: `Ok` for a job that would run, or its refusal.
pub fn jobs(body: &[u8]) -> Result<Vec<Result<(), Refusal>>, Refusal> {
    let body = Bytes::copy_from_slice(body);
    let split =
        split_jobs(&body, Limits::default().max_batch).map_err(|refusal| match refusal {
            SplitRefusal::Json(error) => api_refusal("api.json", error.to_string()),
            SplitRefusal::Shape => api_refusal("api.json", "neither an object nor an array".into()),
            SplitRefusal::TooMany { max } => {
                api_refusal("api.batch_too_large", format!("more than {max} jobs"))
            }
        })?;
    Ok(split
        .jobs
        .iter()
        .map(|raw| match serde_json::from_slice::<Value>(raw) {
            Ok(value) => plan(value),
            // Too deeply nested for a tree: the API answers `request.invalid` for the job.
            Err(error) => Err(refusal(Rejection::invalid(error.to_string()))),
        })
        .collect())
}

/// Decides for one delivery as the AMQP worker does and, when the job would run, plans it as
/// [`jobs`] does.
pub fn amqp_message(delivery: &Delivery<'_>) -> Handled {
    let mut headers = FieldTable::default();
    if let Some(count) = delivery.agent_count {
        headers.insert(
            "x-downloader-redeliveries".into(),
            AMQPValue::LongLongInt(count),
        );
    }
    if let Some(count) = delivery.broker_count {
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(count));
    }
    let mut properties = BasicProperties::default().with_headers(headers);
    if let Some(queue) = &delivery.reply_to {
        properties = properties.with_reply_to(ShortString::from(queue.as_str()));
    }
    let rules = Rules {
        max_redeliveries: delivery.max_redeliveries,
        broker_counts: delivery.broker_counts,
        max_body: DEFAULT_MAX_BODY,
    };
    match decode_message(delivery.body, &properties, delivery.redelivered, &rules) {
        Decision::Unanswerable => Handled::Unanswerable,
        Decision::Refuse { result, .. } => Handled::Refused(result),
        Decision::Requeue { redeliveries } => Handled::Requeued(redeliveries),
        Decision::Run { job, .. } => Handled::Planned(plan(job)),
    }
}

/// One raw JSON job through what [`crate::api`] does before running it.
fn plan(raw: Value) -> Result<(), Refusal> {
    // What the result of a job that does not parse echoes.
    let _ = crate::api::job_id(&raw);
    let _ = crate::api::job_request(&raw);
    let job = serde_json::from_value::<ApiJob>(raw)
        .map_err(|error| Rejection::not_a_job(&error))
        .map_err(refusal)?;
    let plan = job
        .plan(DEFAULT_MAX_BODY, &JobLimits::default())
        .map_err(refusal)?;
    match plan.builder.build() {
        Ok(_) => Ok(()),
        Err(error) => Err(Refusal {
            kind: error.kind(),
            message: error.to_string(),
            hint: error.hint(),
        }),
    }
}

fn refusal(rejection: Rejection) -> Refusal {
    Refusal {
        kind: rejection.kind,
        message: rejection.message,
        hint: rejection.hint,
    }
}

fn api_refusal(kind: &'static str, message: String) -> Refusal {
    Refusal {
        kind,
        message,
        hint: "see docs/job-api.md".into(),
    }
}
