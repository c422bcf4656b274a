//! Active mode against a real RabbitMQ (one broker for this file, started in a temp directory):
//! a job end to end with mutual TLS to nginx; malformed messages answered and dead-lettered,
//! never redelivered; `/health` showing the broker state; the broker password kept out of
//! `Debug`, `/health` and errors; jobs cancelled on connection loss and poison messages ended by
//! the redelivery cap (`amqp/redelivery.rs`). Skipped loudly without rabbitmq-server unless `CI`
//! is set.

#[path = "support/rabbit.rs"]
mod rabbit;
#[path = "amqp/redelivery.rs"]
mod redelivery;
mod support;

use std::time::{Duration, Instant};

use agent::amqp::Rabbit;
use agent::amqp::submit::{self, Target};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use support::{STORE, install, peers};

const RABBIT_PASSWORD: &str = "Rb-wrong-pw-5521";

fn rabbit(broker: &rabbit::Broker, queue: &str) -> Rabbit {
    Rabbit {
        host: "127.0.0.1".into(),
        port: broker.port,
        tls: false,
        username: "guest".into(),
        password: keystore::Password::new("guest"),
        vhost: "/".into(),
        queue: queue.into(),
        prefetch: 8,
        dead_letter_exchange: Some("downloader.dead".into()),
        queue_type: agent::amqp::QueueType::Classic,
        max_redeliveries: agent::amqp::DEFAULT_MAX_REDELIVERIES,
    }
}

async fn health(agent: &support::TestAgent) -> Value {
    // With credentials: unauthenticated `/health` leaves out the broker's address and error.
    let auth = support::basic(support::APIKEY, support::SECRET);
    agent
        .request("GET", "/health", Some(&auth), "")
        .await
        .json()
}

async fn wait_for_state(agent: &support::TestAgent, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = health(agent).await;
        if health["broker"]["state"] == state {
            return health;
        }
        assert!(Instant::now() < deadline, "never {state}: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_against_rabbitmq() {
    let Some(broker) = rabbit::Broker::start() else {
        return;
    };
    end_to_end_with_mutual_tls(&broker).await;
    malformed_messages_are_answered_then_dead_lettered(&broker).await;
    tls_to_the_broker_uses_the_trust_store(&broker).await;
    shutdown_finishes_and_answers_the_job_in_flight(&broker).await;
    wrong_password_is_retried_and_never_shown(&broker).await;
    redelivery::connection_loss_cancels_the_jobs_in_flight(&broker).await;
    redelivery::poison_messages_end_at_the_redelivery_cap(&broker).await;
}

async fn end_to_end_with_mutual_tls(broker: &rabbit::Broker) {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let port = nginx.port;
    let dir = support::temp_dir("amqp-certs");
    install("client/p384/documented.jks", &dir, "a-client.jks");
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    config.rabbit = Some(rabbit(broker, "jobs.e2e"));
    let agent = support::start(config).await;
    let health = wait_for_state(&agent, "consuming").await;
    assert_eq!(health["broker"]["queue"], "jobs.e2e", "{health}");

    let target = Target {
        url: broker.url(),
        queue: "jobs.e2e".into(),
        ca_pem: None,
        reply_queue: None,
        timeout: Duration::from_secs(60),
        window: None,
    };
    let job = json!({"id": "mtls-1", "url": format!("https://a.localhost:{port}/"), "config": {
        "resolve": [format!("a.localhost:{port}:127.0.0.1")],
        "client_cert_configuration": {"keystorePath": "a-client.jks", "keystorePassword": STORE}}});
    let mut results = Vec::new();
    let report = submit::submit(&target, vec![job], |result| results.push(result))
        .await
        .expect("submit");
    assert_eq!(
        (report.sent, report.answered, report.ok),
        (1, 1, 1),
        "{results:?}\n{}",
        nginx.log()
    );
    let result = &results[0];
    assert_eq!(result["id"], "mtls-1");
    assert!(result["correlationId"].as_str().is_some(), "{result}");
    assert!(result.get("redelivered").is_none(), "{result}");
    let body = result["response"]["body"].as_str().unwrap_or("");
    assert!(
        body.contains("server=a") && body.contains("verify=SUCCESS"),
        "{body}"
    );
    assert_eq!(result["tls"]["clientCertificate"]["source"], "job");

    // The ack (and its count) follows the result's confirmation.
    agent
        .wait_for_metric("downloader_amqp_messages_total{event=\"answered\"} 1")
        .await;
    agent.wait_for_metric("downloader_amqp_connected 1").await;

    // SIGTERM path: the consumer stops and the agent returns.
    let started = Instant::now();
    agent.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn malformed_messages_are_answered_then_dead_lettered(broker: &rabbit::Broker) {
    let mut config = support::config();
    config.rabbit = Some(rabbit(broker, "jobs.malformed"));
    let agent = support::start(config).await;
    wait_for_state(&agent, "consuming").await;

    let connection = Connection::connect(&broker.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            "downloader.dead".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dead-letter exchange");
    channel
        .queue_declare(
            "dead".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dead queue");
    channel
        .queue_bind(
            "dead".into(),
            "downloader.dead".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let replies = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
    let reply_to = replies.name().as_str().to_owned();
    let sends: [(&[u8], bool); 4] = [
        (b"this is not json", true),
        (b"[{\"url\": \"http://127.0.0.1:1/\"}]", true),
        (b"42", true),
        (b"{\"url\": \"http://127.0.0.1:1/\"}", false),
    ];
    for (index, (body, with_reply)) in sends.iter().enumerate() {
        let mut properties =
            BasicProperties::default().with_correlation_id(format!("bad-{index}").into());
        if *with_reply {
            properties = properties.with_reply_to(reply_to.as_str().into());
        }
        channel
            .basic_publish(
                "".into(),
                "jobs.malformed".into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
    }
    let mut answers = channel
        .basic_consume(
            reply_to.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), answers.next())
            .await
            .expect("an answer in time")
            .expect("stream")
            .expect("delivery");
        let result: Value = serde_json::from_slice(&delivery.data).expect("json answer");
        assert_eq!(result["ok"], false, "{result}");
        assert_eq!(result["error"]["kind"], "request.invalid", "{result}");
        seen.push(
            delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default(),
        );
    }
    seen.sort();
    assert_eq!(seen, ["bad-0", "bad-1", "bad-2"]);

    // All four end in the dead-letter queue, once: no redelivery loop.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dead = channel
            .queue_declare(
                "dead".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("dead queue");
        if dead.message_count() == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters: {}",
            dead.message_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&agent).await["broker"]["rejected"] != 4 {
        assert!(Instant::now() < deadline, "{}", health(&agent).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Still four a moment later: rejected messages are not redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = health(&agent).await;
    assert_eq!(health["broker"]["consumed"], 4, "{health}");
    assert_eq!(health["broker"]["rejected"], 4, "{health}");
    let _ = connection.close(200, "done".into()).await;
    agent.stop().await;
}

async fn tls_to_the_broker_uses_the_trust_store(broker: &rabbit::Broker) {
    // `support::config()` trusts the fixture root (DOWNLOADER_TRUST_STORE).
    let mut config = support::config();
    let mut settings = rabbit(broker, "jobs.tls");
    settings.host = "localhost".into();
    settings.port = broker.tls_port;
    settings.tls = true;
    config.rabbit = Some(settings.clone());
    let agent = support::start(config).await;
    let health = wait_for_state(&agent, "consuming").await;
    assert!(
        health["broker"]["broker"]
            .as_str()
            .unwrap_or("")
            .starts_with("amqps://localhost:"),
        "{health}"
    );
    let target = Target {
        url: broker.url(),
        queue: "jobs.tls".into(),
        ca_pem: None,
        reply_queue: None,
        timeout: Duration::from_secs(30),
        window: None,
    };
    let job = json!({"id": "over-tls", "url": "http://127.0.0.1:1/"});
    let mut results = Vec::new();
    let report = submit::submit(&target, vec![job], |result| results.push(result))
        .await
        .expect("submit");
    assert_eq!(report.answered, 1, "{results:?}");
    assert_eq!(results[0]["id"], "over-tls");
    assert_eq!(
        results[0]["error"]["kind"], "connect.refused",
        "{results:?}"
    );
    agent.stop().await;

    // Without the fixture root the broker's certificate is not trusted: retried, and said.
    let mut config = support::config();
    config.trust_store = None;
    config.trust_mode = engine::TrustMode::System;
    config.rabbit = Some(settings);
    let agent = support::start(config).await;
    let health = wait_for_state(&agent, "disconnected").await;
    let error = health["broker"]["lastError"].as_str().unwrap_or("");
    assert!(error.to_lowercase().contains("certificate"), "{health}");
    agent.stop().await;
}

/// A plain-HTTP upstream that answers each request after `delay`.
async fn slow_upstream(delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                tokio::time::sleep(delay).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                    )
                    .await;
            });
        }
    });
    port
}

async fn shutdown_finishes_and_answers_the_job_in_flight(broker: &rabbit::Broker) {
    let upstream = slow_upstream(Duration::from_millis(1500)).await;
    let mut config = support::config();
    config.rabbit = Some(rabbit(broker, "jobs.drain"));
    let mut agent = support::start(config).await;
    wait_for_state(&agent, "consuming").await;
    let target = Target {
        url: broker.url(),
        queue: "jobs.drain".into(),
        ca_pem: None,
        reply_queue: None,
        timeout: Duration::from_secs(30),
        window: None,
    };
    let submitted = tokio::spawn(async move {
        let mut results = Vec::new();
        let report = submit::submit(
            &target,
            vec![json!({"id": "in-flight", "url": format!("http://127.0.0.1:{upstream}/")})],
            |result| results.push(result),
        )
        .await;
        (report, results)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&agent).await["broker"]["consumed"] != 1 {
        assert!(Instant::now() < deadline, "the job never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM while the job runs: the agent finishes it, publishes, acks, then returns.
    let task = agent.begin_shutdown().expect("agent task");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("drained in time")
        .expect("agent task");
    let (report, results) = submitted.await.expect("submit task");
    let report = report.expect("submit");
    assert_eq!((report.answered, report.ok), (1, 1), "{results:?}");
    assert_eq!(results[0]["response"]["body"], "slow", "{results:?}");
    assert!(results[0].get("redelivered").is_none(), "{results:?}");
}

async fn wrong_password_is_retried_and_never_shown(broker: &rabbit::Broker) {
    let mut config = support::config();
    let mut settings = rabbit(broker, "jobs.denied");
    settings.password = keystore::Password::new(RABBIT_PASSWORD);
    config.rabbit = Some(settings);
    let debug = format!("{config:?}");
    assert!(!debug.contains(RABBIT_PASSWORD), "{debug}");
    let agent = support::start(config).await;
    let health = wait_for_state(&agent, "disconnected").await;
    let text = health.to_string();
    assert!(health["broker"]["lastError"].as_str().is_some(), "{text}");
    assert!(!text.contains(RABBIT_PASSWORD), "{text}");
    let metrics = agent.metrics().await;
    assert!(metrics.contains("downloader_amqp_connected 0"), "{metrics}");
    assert!(!metrics.contains(RABBIT_PASSWORD));

    // The submit side keeps the password out of Debug and errors too.
    let target = Target {
        url: format!(
            "amqp://guest:{RABBIT_PASSWORD}@127.0.0.1:{}/%2f",
            broker.port
        ),
        queue: "jobs.denied".into(),
        ca_pem: None,
        reply_queue: None,
        timeout: Duration::from_secs(5),
        window: None,
    };
    assert!(!format!("{target:?}").contains(RABBIT_PASSWORD));
    let error = submit::submit(&target, vec![json!({"url": "http://127.0.0.1:1/"})], |_| {})
        .await
        .expect_err("wrong password");
    assert!(!error.to_string().contains(RABBIT_PASSWORD), "{error}");
    // Shutdown while the worker retries is immediate.
    let started = Instant::now();
    agent.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
