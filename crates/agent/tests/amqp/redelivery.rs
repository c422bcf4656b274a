//! Connection loss and poison messages, against the broker of `amqp.rs`: jobs in flight on a
//! lost connection are cancelled (an upstream that counts requests sees each job once per
//! delivery and never more than prefetch at once), and a message whose deliveries keep ending
//! without an answer is answered with `amqp.redelivery_limit` and dead-lettered, on a classic
//! queue (the agent's own count) and on a quorum queue (`x-delivery-count`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent::amqp::QueueType;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{rabbit, wait_for_state};
use crate::support;

/// A plain-HTTP upstream that counts requests by path and holds each one for `hold` before
/// answering `slow`, unless the client goes away first. It records the most requests it held
/// at once.
struct Counting {
    port: u16,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start(hold: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (s, o, p) = (seen.clone(), open.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, hold, s.clone(), o.clone(), p.clone()));
            }
        });
        Self {
            port,
            seen,
            open,
            peak,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> BTreeMap<String, usize> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn total(&self) -> usize {
        self.seen().values().sum()
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits (up to 30 s) until `total` requests arrived and `open` are held.
    async fn wait_for(&self, total: usize, open: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.total() != total || self.open() != open {
            assert!(
                Instant::now() < deadline,
                "never {total} requests with {open} open: {:?}, {} open",
                self.seen(),
                self.open()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    hold: Duration,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) {
    let mut head = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let path = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_owned();
    *seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path)
        .or_default() += 1;
    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(now, Ordering::SeqCst);
    tokio::select! {
        () = tokio::time::sleep(hold) => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow")
                .await;
        }
        // The client went away (its job was cancelled): the request ends here.
        _ = stream.read(&mut buffer) => {}
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

async fn connect(broker: &rabbit::Broker) -> Connection {
    Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .expect("connect")
}

/// Declares the durable reply queue `replies` (and, with `dead`, a fanout dead-letter exchange
/// of that name bound to a queue of the same name), then publishes each `(correlation, job)` to
/// `queue` with confirms. The connection is closed before returning, so that closing every
/// connection later only hits the agent's.
async fn publish(
    broker: &rabbit::Broker,
    queue: &str,
    replies: &str,
    dead: Option<&str>,
    jobs: &[(&str, Value)],
) {
    let connection = connect(broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(replies.into(), durable, FieldTable::default())
        .await
        .expect("reply queue");
    if let Some(dead) = dead {
        channel
            .exchange_declare(
                dead.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("dead-letter exchange");
        channel
            .queue_declare(dead.into(), durable, FieldTable::default())
            .await
            .expect("dead-letter queue");
        channel
            .queue_bind(
                dead.into(),
                dead.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for (correlation, job) in jobs {
        let body = serde_json::to_vec(job).expect("json");
        let properties = BasicProperties::default()
            .with_correlation_id((*correlation).into())
            .with_reply_to(replies.into())
            .with_delivery_mode(2);
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }
    let _ = connection.close(200, "published".into()).await;
}

/// The results on `replies`: waits for `count` of them (up to 30 s), then `quiet` more for any
/// extra one. Each result gets its `correlationId`.
async fn results(
    broker: &rabbit::Broker,
    replies: &str,
    count: usize,
    quiet: Duration,
) -> Vec<Value> {
    let connection = connect(broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            replies.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if results.len() < count {
            deadline.saturating_duration_since(Instant::now())
        } else {
            quiet
        };
        let Ok(next) = tokio::time::timeout(wait, consumer.next()).await else {
            break;
        };
        let delivery = next.expect("stream").expect("delivery");
        let mut result: Value = serde_json::from_slice(&delivery.data).expect("json result");
        let correlation = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        result["correlationId"] = json!(correlation);
        results.push(result);
    }
    let _ = connection.close(200, "read".into()).await;
    assert!(
        results.len() >= count,
        "{} of {count} results: {results:?}",
        results.len()
    );
    results
}

/// The number of messages ready in `queue`.
async fn depth(broker: &rabbit::Broker, queue: &str) -> u32 {
    let connection = connect(broker).await;
    let channel = connection.create_channel().await.expect("channel");
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue exists");
    let _ = connection.close(200, "counted".into()).await;
    declared.message_count()
}

pub(crate) async fn connection_loss_cancels_the_jobs_in_flight(broker: &rabbit::Broker) {
    const PREFETCH: usize = 3;
    let upstream = Counting::start(Duration::from_secs(4)).await;
    let mut config = support::config();
    let mut settings = rabbit(broker, "jobs.lost");
    settings.prefetch = 3;
    config.rabbit = Some(settings);
    let agent = support::start(config).await;
    wait_for_state(&agent, "consuming").await;
    let jobs: Vec<(String, Value)> = (0..PREFETCH)
        .map(|n| {
            let path = format!("/lost-{n}");
            (
                format!("lost-{n}"),
                json!({"id": path, "url": upstream.url(&path)}),
            )
        })
        .collect();
    let jobs: Vec<(&str, Value)> = jobs.iter().map(|(c, j)| (c.as_str(), j.clone())).collect();
    publish(broker, "jobs.lost", "replies.lost", None, &jobs).await;

    // All three jobs are held by the upstream when the connection goes.
    upstream.wait_for(PREFETCH, PREFETCH).await;
    broker.close_all_connections();
    // The redelivered copies reach the upstream once each, after the first copies ended.
    upstream.wait_for(2 * PREFETCH, PREFETCH).await;
    let results = results(broker, "replies.lost", PREFETCH, Duration::from_secs(1)).await;
    assert_eq!(results.len(), PREFETCH, "one answer per job: {results:?}");
    let mut answered: Vec<&str> = results
        .iter()
        .map(|result| result["correlationId"].as_str().unwrap_or(""))
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, ["lost-0", "lost-1", "lost-2"], "{results:?}");
    for result in &results {
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["response"]["body"], "slow", "{result}");
        assert_eq!(result["redelivered"], true, "{result}");
    }
    let seen = upstream.seen();
    assert!(
        seen.values().all(|count| *count == 2),
        "each job once per delivery: {seen:?}"
    );
    let peak = upstream.peak.load(Ordering::SeqCst);
    assert!(
        peak <= PREFETCH,
        "{peak} requests at once, prefetch {PREFETCH}"
    );
    let metrics = agent.metrics().await;
    for line in [
        "downloader_amqp_messages_total{event=\"requeued\"} 3",
        "downloader_amqp_messages_total{event=\"answered\"} 3",
        "downloader_amqp_reconnects_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
    agent.stop().await;
}

/// A job whose every delivery ends in a connection loss (as a downloader that crashes on it):
/// it runs `1 + max_redeliveries` times, then is answered with `amqp.redelivery_limit` and
/// dead-lettered.
async fn poison(broker: &rabbit::Broker, queue_type: QueueType, max_redeliveries: u32) {
    let name = match queue_type {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    };
    let (queue, replies, dead) = (
        format!("jobs.poison.{name}"),
        format!("replies.poison.{name}"),
        format!("dead.poison.{name}"),
    );
    let upstream = Counting::start(Duration::from_secs(120)).await;
    let mut config = support::config();
    let mut settings = rabbit(broker, &queue);
    settings.dead_letter_exchange = Some(dead.clone());
    settings.queue_type = queue_type;
    settings.max_redeliveries = max_redeliveries;
    config.rabbit = Some(settings);
    let agent = support::start(config).await;
    wait_for_state(&agent, "consuming").await;
    let job = json!({"id": "poison", "url": upstream.url("/poison")});
    publish(broker, &queue, &replies, Some(&dead), &[("poison-1", job)]).await;

    let runs = usize::try_from(max_redeliveries).expect("small") + 1;
    for run in 1..=runs {
        upstream.wait_for(run, 1).await;
        broker.close_all_connections();
    }
    let results = results(broker, &replies, 1, Duration::from_secs(1)).await;
    assert_eq!(results.len(), 1, "{results:?}");
    let result = &results[0];
    assert_eq!(result["correlationId"], "poison-1", "{result}");
    assert_eq!(result["id"], "poison", "{result}");
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["redelivered"], true, "{result}");
    assert_eq!(result["error"]["kind"], "amqp.redelivery_limit", "{result}");
    let message = result["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!("delivered {} times", runs + 1)),
        "{result}"
    );
    assert!(result["error"]["hint"].as_str().is_some(), "{result}");
    // Not run again, not left in the job queue, kept in the dead-letter queue.
    upstream.wait_for(runs, 0).await;
    assert_eq!(depth(broker, &queue).await, 0);
    assert_eq!(depth(broker, &dead).await, 1);
    let health = agent.request("GET", "/health", None, "").await.json();
    assert_eq!(health["broker"]["redeliveryLimit"], 1, "{health}");
    // A quorum queue counts deliveries itself: the agent never republished the message.
    let requeued = match queue_type {
        QueueType::Classic => runs - 1,
        QueueType::Quorum => 0,
    };
    agent
        .wait_for_metric(&format!(
            "downloader_amqp_messages_total{{event=\"requeued\"}} {requeued}"
        ))
        .await;
    assert_eq!(upstream.total(), runs, "{:?}", upstream.seen());
    agent.stop().await;
}

pub(crate) async fn poison_messages_end_at_the_redelivery_cap(broker: &rabbit::Broker) {
    poison(broker, QueueType::Classic, 2).await;
    poison(broker, QueueType::Quorum, 1).await;
}
