//! Sends jobs over AMQP and waits for their results: the engine side of active mode, used by
//! `downloader submit --amqp` and by the tests.
//!
//! Jobs are published persistent, with publisher confirms, to the default exchange with the job
//! queue as routing key; each carries `reply_to` and a unique `correlation_id`. Results are read
//! from an exclusive, server-named reply queue, or from a named durable one (`reply_queue`),
//! which survives a broker restart: then a lost connection is re-established while waiting.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde_json::Value;

/// Where to send jobs.
#[derive(Clone)]
pub struct Target {
    /// `amqp://user:password@host:port/vhost` or `amqps://…` (the password is never shown).
    pub url: String,
    /// The job queue (`downloader.jobs` by default).
    pub queue: String,
    /// Extra CA certificates (PEM) to verify an `amqps` broker, besides the system roots.
    pub ca_pem: Option<String>,
    /// A named durable reply queue instead of an exclusive one; deleted when every job is
    /// answered. Survives broker restarts.
    pub reply_queue: Option<String>,
    /// How long to wait for all results.
    pub timeout: Duration,
    /// At most this many jobs outstanding at once (`None`: all at once; 1 measures latency).
    pub window: Option<usize>,
}

/// What happened to a submission.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Jobs published and confirmed by the broker.
    pub sent: usize,
    /// Jobs with at least one result.
    pub answered: usize,
    /// Results beyond the first for a job (a redelivered job answered twice).
    pub duplicates: usize,
    /// Answered jobs whose result has `ok: true`.
    pub ok: usize,
    /// Correlation ids with no result when the wait ended.
    pub missing: Vec<String>,
}

/// A passive agent to send jobs to over HTTPS (`downloader submit --agent`).
pub struct AgentTarget {
    /// `https://host:8819`.
    pub url: String,
    /// The agent's apikey.
    pub apikey: String,
    /// The agent's secret.
    pub secret: keystore::Password,
    /// CA certificates (file) that verify the agent, besides the system roots.
    pub cacert: Option<std::path::PathBuf>,
    /// Do not verify the agent's certificate.
    pub insecure: bool,
    /// How long one batch may take.
    pub timeout: Duration,
    /// Jobs per request (`None`: 1,000).
    pub window: Option<usize>,
}

/// Jobs per HTTP request to a passive agent (under its default queue limit).
const AGENT_BATCH: usize = 1000;

/// Why a submission could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubmitError {
    /// The broker could not be reached or refused the login.
    Connect(String),
    /// The job queue does not exist: no downloader has declared it yet.
    NoQueue(String),
    /// A channel operation failed, or the broker refused a job.
    Broker(String),
    /// The passive agent could not be reached (the engine's error message).
    AgentUnreachable(String),
    /// The passive agent answered with an error status or not with a JSON array.
    AgentRefused(String),
}

impl SubmitError {
    /// A stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "amqp.connect",
            Self::NoQueue(_) => "amqp.no_queue",
            Self::Broker(_) => "amqp.broker",
            Self::AgentUnreachable(_) => "agent.unreachable",
            Self::AgentRefused(_) => "agent.refused",
        }
    }
}

/// Publishes `jobs` and calls `on_result` with each result (with `correlationId` added) as it
/// arrives, until every job is answered or `target.timeout` passes.
pub async fn submit(
    target: &Target,
    jobs: Vec<Value>,
    mut on_result: impl FnMut(Value),
) -> Result<Report, SubmitError> {
    let started = Instant::now();
    let run = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros())
            .unwrap_or_default()
    );
    let (connection, channel, reply_queue, consumer) = open(target).await?;
    let window = target.window.filter(|window| *window > 0);
    let mut waiter = Waiter {
        consumer,
        connection: Some(connection),
        pending: HashSet::with_capacity(jobs.len()),
        seen: HashSet::with_capacity(jobs.len()),
        report: Report::default(),
        deadline: started + target.timeout,
    };
    let mut confirms = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        let correlation = format!("{run}-{index}");
        let body = serde_json::to_vec(job).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_reply_to(reply_queue.as_str().into())
            .with_correlation_id(correlation.as_str().into());
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                target.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(broker)?;
        confirms.push(confirm);
        waiter.pending.insert(correlation);
        if let Some(window) = window
            && waiter.pending.len() >= window
        {
            for confirm in confirms.drain(..) {
                waiter.confirmed(confirm.await.map_err(broker)?)?;
            }
            if !waiter.until(target, window - 1, &mut on_result).await? {
                break;
            }
        }
    }
    for confirm in confirms {
        waiter.confirmed(confirm.await.map_err(broker)?)?;
    }
    waiter.until(target, 0, &mut on_result).await?;
    let Waiter {
        pending,
        mut report,
        connection,
        ..
    } = waiter;
    report.missing = pending.into_iter().collect();
    report.missing.sort();
    if let Some(connection) = connection {
        if target.reply_queue.is_some()
            && report.missing.is_empty()
            && let Ok(channel) = connection.create_channel().await
        {
            let _ = channel
                .queue_delete(reply_queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = connection.close(200, "done".into()).await;
    }
    Ok(report)
}

/// Posts the jobs to a passive agent in batches, through the engine, and calls `on_result`
/// with each result.
pub async fn to_agent(
    target: &AgentTarget,
    jobs: Vec<Value>,
    mut on_result: impl FnMut(Value),
) -> Result<Report, SubmitError> {
    use base64::Engine as _;
    let engine = engine::Engine::new();
    let url = format!("{}/api/v1/jobs", target.url.trim_end_matches('/'));
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            target.apikey,
            target.secret.expose()
        ))
    );
    let mut report = Report::default();
    let batch_size = target.window.filter(|n| *n > 0).unwrap_or(AGENT_BATCH);
    for batch in jobs.chunks(batch_size) {
        let body = serde_json::to_vec(batch).unwrap_or_default();
        let mut builder = engine::Job::builder("POST", url.clone())
            .header("Content-Type", "application/json")
            .header("Authorization", authorization.clone())
            .body(body)
            .timeout(target.timeout)
            .insecure(target.insecure);
        if let Some(path) = &target.cacert {
            builder = builder
                .trust(engine::TrustMode::Both)
                .trust_store(engine::TrustSource {
                    source: engine::Source::Path(path.clone()),
                    password: None,
                });
        }
        let job = builder
            .build()
            .map_err(|error| SubmitError::AgentUnreachable(error.to_string()))?;
        let outcome = engine.run(job).await;
        let Some(response) = outcome.response else {
            let error = outcome.error.map(|error| error.message).unwrap_or_default();
            return Err(SubmitError::AgentUnreachable(error));
        };
        let text = response.body.text().unwrap_or_default();
        if response.status_code != 200 {
            return Err(SubmitError::AgentRefused(format!(
                "status {}: {text}",
                response.status_code
            )));
        }
        let results: Vec<Value> = serde_json::from_str(text)
            .map_err(|error| SubmitError::AgentRefused(format!("not a JSON array: {error}")))?;
        report.sent += batch.len();
        for result in results {
            report.answered += 1;
            if result.get("ok") == Some(&Value::Bool(true)) {
                report.ok += 1;
            }
            on_result(result);
        }
    }
    Ok(report)
}

/// Results being waited for.
struct Waiter {
    consumer: Consumer,
    connection: Option<Connection>,
    pending: HashSet<String>,
    seen: HashSet<String>,
    report: Report,
    deadline: Instant,
}

impl Waiter {
    fn confirmed(&mut self, confirmation: Confirmation) -> Result<(), SubmitError> {
        match confirmation {
            Confirmation::Nack(_) => Err(SubmitError::Broker("the broker refused a job".into())),
            Confirmation::Ack(_) | Confirmation::NotRequested => {
                self.report.sent += 1;
                Ok(())
            }
        }
    }

    /// Reads results until at most `limit` jobs are pending; false when the time is up.
    async fn until(
        &mut self,
        target: &Target,
        limit: usize,
        on_result: &mut impl FnMut(Value),
    ) -> Result<bool, SubmitError> {
        while self.pending.len() > limit {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let next = match tokio::time::timeout(left, self.consumer.next()).await {
                Err(_) => return Ok(false),
                Ok(next) => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                lost => {
                    // Only a named durable reply queue outlives its connection.
                    let detail = match lost {
                        Some(Err(error)) => error.to_string(),
                        _ => "consumer ended".into(),
                    };
                    if target.reply_queue.is_none() {
                        return Err(SubmitError::Broker(format!(
                            "connection lost while waiting for results ({detail}); use a named \
                             reply queue to survive broker restarts"
                        )));
                    }
                    let (again, _, _, resumed) = reopen(target, self.deadline).await?;
                    self.connection = Some(again);
                    self.consumer = resumed;
                    continue;
                }
            };
            let Some(correlation) = delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
            else {
                continue;
            };
            let mut result: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            if self.pending.remove(&correlation) {
                self.report.answered += 1;
                if result.get("ok") == Some(&Value::Bool(true)) {
                    self.report.ok += 1;
                }
                self.seen.insert(correlation.clone());
            } else if self.seen.contains(&correlation) {
                self.report.duplicates += 1;
            } else {
                continue;
            }
            if let Some(object) = result.as_object_mut() {
                object.insert("correlationId".into(), Value::String(correlation));
            }
            on_result(result);
        }
        Ok(true)
    }
}

async fn connect(target: &Target) -> Result<Connection, SubmitError> {
    let tls = lapin::tcp::OwnedTLSConfig {
        identity: None,
        cert_chain: target.ca_pem.clone(),
    };
    let runtime = lapin::runtime::default_runtime()
        .map_err(|error| SubmitError::Connect(error.to_string()))?;
    let properties = lapin::ConnectionProperties::default()
        .with_connection_name(format!("downloader submit pid {}", std::process::id()).into());
    match tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect_with_config(&target.url, properties, tls, runtime),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(SubmitError::Connect(error.to_string())),
        Err(_) => Err(SubmitError::Connect("no answer within 10 s".into())),
    }
}

/// Connects, checks the job queue exists, declares the reply queue and consumes it.
async fn open(target: &Target) -> Result<(Connection, Channel, String, Consumer), SubmitError> {
    let connection = connect(target).await?;
    let check = connection.create_channel().await.map_err(broker)?;
    check
        .queue_declare(
            target.queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|error| {
            SubmitError::NoQueue(format!(
                "queue '{}': {error}; start a downloader with use_rabbit=true first (it declares \
                 the queue)",
                target.queue
            ))
        })?;
    let channel = connection.create_channel().await.map_err(broker)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker)?;
    let (reply_queue, consumer) = consume_replies(&connection, target).await?;
    Ok((connection, channel, reply_queue, consumer))
}

async fn reopen(
    target: &Target,
    deadline: Instant,
) -> Result<(Connection, Channel, String, Consumer), SubmitError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match open(target).await {
            Ok(opened) => return Ok(opened),
            Err(error) if Instant::now() + delay >= deadline => return Err(error),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn consume_replies(
    connection: &Connection,
    target: &Target,
) -> Result<(String, Consumer), SubmitError> {
    let channel = connection.create_channel().await.map_err(broker)?;
    let options = match &target.reply_queue {
        Some(_) => QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        None => QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        },
    };
    let name = target.reply_queue.clone().unwrap_or_default();
    let queue = channel
        .queue_declare(name.as_str().into(), options, FieldTable::default())
        .await
        .map_err(broker)?;
    let name = queue.name().as_str().to_owned();
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            ShortString::from(""),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok((name, consumer))
}

fn broker(error: lapin::Error) -> SubmitError {
    SubmitError::Broker(error.to_string())
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(detail) => write!(f, "cannot connect to the broker: {detail}"),
            Self::NoQueue(detail) => write!(f, "no job queue: {detail}"),
            Self::Broker(detail) => write!(f, "broker error: {detail}"),
            Self::AgentUnreachable(detail) => write!(f, "cannot reach the agent: {detail}"),
            Self::AgentRefused(detail) => write!(f, "the agent refused the jobs: {detail}"),
        }
    }
}

impl std::error::Error for SubmitError {}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("url", &engine::redact_url(&self.url))
            .field("queue", &self.queue)
            .field("reply_queue", &self.reply_queue)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AgentTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTarget")
            .field("url", &self.url)
            .field("apikey", &self.apikey)
            .field("secret", &self.secret)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}
