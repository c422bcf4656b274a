//! One API request's jobs: the body split into raw jobs without building a JSON tree, each job
//! run in a task that owns its admission ticket, and the results joined in order.
//!
//! # Costs one request controls
//!
//! - **Parsing.** The body is checked and split on a blocking thread ([`split`]): each job stays
//!   a slice of the body (`serde_json`'s `RawValue`, no copy, no tree), so a 48 MB body costs
//!   the body plus one small handle per job, and the async workers keep serving `/health`. A
//!   job becomes a `serde_json::Value` only when it gets its running slot, in its own task
//!   (on a blocking thread when it is large).
//! - **Batch size.** At most `DOWNLOADER_MAX_BATCH` jobs, and never more than the agent could
//!   ever hold (`max_jobs + queue_limit`); counting stops at the first job too many.
//! - **Bytes in flight.** Results are held until the response is written, so each job of a
//!   batch of n keeps at most min(`DOWNLOADER_MAX_BODY`, `DOWNLOADER_MAX_REQUEST_RESULT_BYTES`
//!   / n) response bytes: the bodies of one request never total more than the budget. A job
//!   that hits the shared share fails with `body.too_large` and a hint naming the budget. Each
//!   result is serialized in its job's task, so the tree is dropped there and the response is
//!   the list of serialized results, not a copy of them.
//! - **Cancellation.** The tasks are aborted when [`Running`] is dropped, which happens when
//!   hyper drops the handler because the client disconnected or reset its stream: waiting jobs
//!   never start, running ones stop (a request already sent upstream may have reached it).

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::task::JoinHandle;

use super::admission::Ticket;
use super::{Shared, job, run};

/// Raw jobs larger than this are turned into JSON trees on a blocking thread.
const BLOCKING_PARSE: usize = 64 * 1024;

/// The jobs of one request, each a slice of the body.
#[derive(Debug)]
pub(crate) struct Split {
    /// The raw jobs.
    pub(crate) jobs: Vec<Bytes>,
    /// Whether the body was an array (the response is one then too).
    pub(crate) many: bool,
}

/// Why a body does not split into jobs.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not JSON.
    Json(serde_json::Error),
    /// Neither an object nor an array.
    Shape,
    /// More than `max` jobs.
    TooMany {
        /// The bound that was passed.
        max: usize,
    },
}

/// Checks the body is JSON and splits it into at most `max` raw jobs. CPU-bound: call it on a
/// blocking thread.
pub(crate) fn split(body: &Bytes, max: usize) -> Result<Split, Refusal> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let over = Cell::new(false);
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            let raws = Jobs { max, over: &over }
                .deserialize(&mut deserializer)
                .and_then(|raws| deserializer.end().map(|()| raws));
            match raws {
                Ok(raws) => Ok(Split {
                    jobs: raws
                        .into_iter()
                        .map(|raw| body.slice_ref(raw.get().as_bytes()))
                        .collect(),
                    many: true,
                }),
                Err(_) if over.get() => Err(Refusal::TooMany { max }),
                Err(error) => Err(Refusal::Json(error)),
            }
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_slice(body).map_err(Refusal::Json)?;
            Ok(Split {
                jobs: vec![body.slice_ref(raw.get().as_bytes())],
                many: false,
            })
        }
        // Not even JSON when it is neither; say so as `serde_json` would.
        _ => match serde_json::from_slice::<&RawValue>(body) {
            Err(error) => Err(Refusal::Json(error)),
            Ok(_) => Err(Refusal::Shape),
        },
    }
}

/// The tasks of one request's jobs; aborted when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    tasks: Vec<Task>,
}

/// One job's task, and what its result needs if the task fails.
#[derive(Debug)]
struct Task {
    handle: JoinHandle<Bytes>,
    raw: Bytes,
}

impl Running {
    /// Starts one task per job; each owns its ticket and takes its slot itself.
    pub(crate) fn start(shared: &Arc<Shared>, jobs: Vec<Bytes>, tickets: Vec<Ticket>) -> Self {
        let share = body_share(shared, jobs.len());
        let tasks = jobs
            .into_iter()
            .zip(tickets)
            .map(|(raw, ticket)| {
                let shared = shared.clone();
                let text = raw.clone();
                let handle = tokio::spawn(async move {
                    let slot = ticket.slot().await;
                    let result = match tree(text).await {
                        Ok(value) => run::run_limited(&shared, value, share.limit).await,
                        Err(message) => run::unparsable(&shared, &message),
                    };
                    drop(slot);
                    drop(ticket);
                    serialize(share.explain(result))
                });
                Task { handle, raw }
            })
            .collect();
        Self { tasks }
    }

    /// The serialized results, in the order of the jobs.
    pub(crate) async fn results(mut self, shared: &Shared) -> Vec<Bytes> {
        let mut results = Vec::with_capacity(self.tasks.len());
        for task in &mut self.tasks {
            // A panic inside a job becomes that job's `internal` result, never the agent's.
            let result = match (&mut task.handle).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    let raw = serde_json::from_slice::<Value>(&task.raw).unwrap_or(Value::Null);
                    let id = job::raw_id(&raw);
                    let (method, url) = job::raw_request(&raw);
                    serialize(run::internal(shared, id, method, url, &error.to_string()))
                }
            };
            results.push(result);
        }
        results
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.handle.abort();
        }
    }
}

/// The response-body limit of each job of a batch, and whether it is the budget's share.
#[derive(Debug, Clone, Copy)]
struct Share {
    limit: u64,
    budget: Option<u64>,
}

fn body_share(shared: &Shared, count: usize) -> Share {
    let max_body = shared.config.max_body;
    let budget = shared.config.limits.max_request_result_bytes;
    let share = budget / (count.max(1) as u64);
    if share < max_body {
        Share {
            limit: share.max(1),
            budget: Some(budget),
        }
    } else {
        Share {
            limit: max_body,
            budget: None,
        }
    }
}

impl Share {
    /// A `body.too_large` under the budget's share says which budget and how to stay in it.
    fn explain(self, mut result: Value) -> Value {
        let Some(budget) = self.budget else {
            return result;
        };
        let Some(error) = result.get_mut("error").and_then(Value::as_object_mut) else {
            return result;
        };
        if error.get("kind").and_then(Value::as_str) != Some("body.too_large") {
            return result;
        }
        error.insert(
            "hint".into(),
            Value::String(format!(
                "this job's share of the request's {budget}-byte result budget \
                 (DOWNLOADER_MAX_REQUEST_RESULT_BYTES divided among the batch's jobs) is {} \
                 bytes; send fewer jobs per request or raise the budget",
                self.limit
            )),
        );
        result
    }
}

/// The job's JSON tree. Its text was checked when the body was split, but the tree has a depth
/// limit the check has not: a job nested deeper is refused as `request.invalid`.
async fn tree(text: Bytes) -> Result<Value, String> {
    let large = text.len() > BLOCKING_PARSE;
    let parse = move || serde_json::from_slice::<Value>(&text).map_err(|error| error.to_string());
    if large {
        return tokio::task::spawn_blocking(parse)
            .await
            .unwrap_or_else(|error| Err(error.to_string()));
    }
    parse()
}

fn serialize(value: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// A sequence of raw jobs that fails after `max`.
struct Jobs<'a> {
    max: usize,
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Jobs<'_> {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Jobs<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut raws = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if raws.len() == self.max {
                self.over.set(true);
                return Err(A::Error::custom(format!("more than {} jobs", self.max)));
            }
            raws.push(raw);
        }
        Ok(raws)
    }
}
