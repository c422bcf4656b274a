//! `downloader submit` and three `downloader serve` processes in active mode sharing one
//! RabbitMQ queue (one broker for this file): 5,000 jobs spread over all three; `kill -9` of
//! one mid-run; a broker restart mid-run. Every job is answered. Skipped loudly without
//! rabbitmq-server unless `CI` is set.

#[path = "../../agent/tests/support/rabbit.rs"]
mod rabbit;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JOBS: usize = 5000;
const QUEUE: &str = "downloader.test";
/// The downloaders' broker login; must never show up in their logs.
const RABBIT_USER: &str = "downloader";
const RABBIT_PASSWORD: &str = "Rb-Pw-8812-zx";

fn temp_dir(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("downloader-submit-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A plain-HTTP upstream on 127.0.0.1 answering `200 ok` with keep-alive; counts requests.
fn upstream(runtime: &tokio::runtime::Runtime) -> (u16, Arc<AtomicUsize>) {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind upstream");
    let port = listener.local_addr().expect("address").port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    runtime.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(4096);
                let mut chunk = [0_u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        counter.fetch_add(1, Ordering::Relaxed);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, served)
}

/// One `downloader serve` in active mode only; its log is `dir/log`.
struct Downloader {
    child: Child,
    log: PathBuf,
}

impl Downloader {
    fn start(broker_port: u16, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("downloader dir");
        let log = dir.join("log");
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_downloader"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("use_rabbit", "true")
            .env("use_http", "false")
            .env("use_ssl", "false")
            .env("rabbitHost", "127.0.0.1")
            .env("rabbitPort", broker_port.to_string())
            .env("rabbitUsername", RABBIT_USER)
            .env("rabbitPassword", RABBIT_PASSWORD)
            .env("apikey", "k")
            .env("secret", "s")
            .env("DOWNLOADER_RABBIT_QUEUE", QUEUE)
            .env("DOWNLOADER_MAX_JOBS", "32")
            .env("DOWNLOADER_DATA_DIR", dir)
            .env("DOWNLOADER_LOG_FORMAT", "json")
            .env("DOWNLOADER_SHUTDOWN_GRACE", "5")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start downloader serve");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log says it consumes (`times` times: after reconnects).
    fn wait_consuming(&self, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches("consuming jobs").count() < times {
            assert!(
                Instant::now() < deadline,
                "never consuming:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn jobs_run(&self) -> usize {
        self.log().matches("\"message\":\"job\"").count()
    }
}

impl Drop for Downloader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jobs_file(dir: &Path, label: &str, upstream: u16) -> PathBuf {
    let path = dir.join(format!("{label}.ndjson"));
    let mut text = String::new();
    for index in 0..JOBS {
        text.push_str(&format!(
            "{{\"id\":\"{label}-{index}\",\"url\":\"http://127.0.0.1:{upstream}/{index}\"}}\n"
        ));
    }
    std::fs::write(&path, text).expect("jobs file");
    path
}

fn submit(broker: &rabbit::Broker, file: &Path, reply_queue: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_downloader"));
    command
        .arg("submit")
        .args([
            "--amqp",
            &broker.url(),
            "--queue",
            QUEUE,
            "--timeout",
            "150",
        ])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(name) = reply_queue {
        command.args(["--reply-queue", name]);
    }
    command.spawn().expect("start downloader submit")
}

/// Checks every job was answered once at least; returns the results per job id.
fn check(output: &Output, label: &str) -> HashMap<String, Vec<Value>> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{label}: {stderr}");
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    let mut correlations = HashSet::new();
    for line in stdout.lines() {
        let result: Value = serde_json::from_str(line).expect("NDJSON result");
        assert_eq!(result["ok"], true, "{result}");
        correlations.insert(result["correlationId"].as_str().unwrap_or("").to_owned());
        let id = result["id"].as_str().unwrap_or("").to_owned();
        by_id.entry(id).or_default().push(result);
    }
    assert_eq!(correlations.len(), JOBS, "{label}: {stderr}");
    for index in 0..JOBS {
        assert!(
            by_id.contains_key(&format!("{label}-{index}")),
            "{label}-{index} missing"
        );
    }
    // A job answered twice was redelivered, and says so.
    for results in by_id.values().filter(|results| results.len() > 1) {
        assert!(
            results[1..]
                .iter()
                .all(|result| result["redelivered"] == true),
            "{results:?}"
        );
    }
    assert!(
        stderr.contains(&format!(
            "submitted {JOBS}, answered {JOBS}, ok {JOBS}, failed 0"
        )),
        "{stderr}"
    );
    by_id
}

fn wait_served(served: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "upstream stuck at {}",
            served.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn three_downloaders_share_a_queue_and_lose_nothing() {
    let Some(mut broker) = rabbit::Broker::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (upstream, served) = upstream(&runtime);
    broker.add_user(RABBIT_USER, RABBIT_PASSWORD);
    let dir = temp_dir("scale");
    let mut downloaders: Vec<Downloader> = (0..3)
        .map(|n| Downloader::start(broker.port, &dir.join(format!("d{n}"))))
        .collect();
    for downloader in &downloaders {
        downloader.wait_consuming(1);
    }

    // 1. 5,000 jobs, three consumers: all answered, every downloader did some.
    let started = Instant::now();
    let output = submit(&broker, &jobs_file(&dir, "spread", upstream), None)
        .wait_with_output()
        .expect("submit");
    let elapsed = started.elapsed();
    check(&output, "spread");
    let shares: Vec<usize> = downloaders.iter().map(Downloader::jobs_run).collect();
    eprintln!("spread: {JOBS} jobs in {elapsed:?}, per downloader {shares:?}");
    assert!(shares.iter().all(|n| *n > 0), "{shares:?}");
    assert!(shares.iter().sum::<usize>() >= JOBS, "{shares:?}");

    // 2. kill -9 one downloader mid-run: its unacknowledged jobs go to the others.
    let before = served.load(Ordering::Relaxed);
    let child = submit(&broker, &jobs_file(&dir, "kill", upstream), None);
    wait_served(&served, before + JOBS / 4);
    let mut victim = downloaders.remove(0);
    victim.child.kill().expect("kill -9");
    let _ = victim.child.wait();
    let output = child.wait_with_output().expect("submit");
    let results = check(&output, "kill");
    let redelivered = results
        .values()
        .flatten()
        .filter(|result| result["redelivered"] == true)
        .count();
    eprintln!("kill -9: {redelivered} results marked redelivered");
    assert!(redelivered > 0, "the killed downloader held no jobs?");

    // 3. Broker restart mid-run: downloaders and submit reconnect; a durable reply queue keeps
    // the results published meanwhile.
    let before = served.load(Ordering::Relaxed);
    let child = submit(
        &broker,
        &jobs_file(&dir, "restart", upstream),
        Some("replies.restart"),
    );
    wait_served(&served, before + JOBS / 4);
    broker.restart();
    for downloader in &downloaders {
        downloader.wait_consuming(2);
    }
    let output = child.wait_with_output().expect("submit");
    check(&output, "restart");
    for downloader in &downloaders {
        assert!(downloader.log().contains("broker unavailable; retrying"));
    }

    // The broker password never reaches the logs (through connects, losses and reconnects).
    for downloader in downloaders.iter().chain([&victim]) {
        let log = downloader.log();
        assert!(log.contains("consuming jobs"));
        assert!(
            !log.contains(RABBIT_PASSWORD),
            "password in the log:\n{log}"
        );
    }

    // SIGTERM: drains and exits 0.
    for downloader in &mut downloaders {
        let _ = Command::new("kill")
            .args(["-TERM", &downloader.child.id().to_string()])
            .status();
        let status = downloader.child.wait().expect("wait");
        assert!(status.success(), "{status}\n{}", downloader.log());
    }
    drop(victim);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn submit_to_a_passive_agent_over_https() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (upstream, served) = upstream(&runtime);
    let dir = temp_dir("passive");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port");
    let log = std::fs::File::create(dir.join("log")).expect("log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .arg("serve")
        .env_clear()
        .env("apikey", "k")
        .env("secret", "s-3141")
        .env("DOWNLOADER_LISTEN", format!("127.0.0.1:{port}"))
        .env("DOWNLOADER_DATA_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start downloader serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let jobs = dir.join("jobs.json");
    let array: Vec<Value> = (0..25)
        .map(|index| {
            serde_json::json!({"id": format!("p-{index}"), "url": format!("http://127.0.0.1:{upstream}/{index}")})
        })
        .collect();
    std::fs::write(&jobs, Value::Array(array).to_string()).expect("jobs");
    let output = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .args(["submit", "--agent", &format!("https://127.0.0.1:{port}")])
        .args([
            "--apikey",
            "k",
            "--secret",
            "s-3141",
            "--insecure",
            "--window",
            "10",
        ])
        .arg(&jobs)
        .output()
        .expect("submit");
    let _ = agent.kill();
    let _ = agent.wait();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("submitted 25, answered 25, ok 25, failed 0"),
        "{stderr}"
    );
    let ids: HashSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let result: Value = serde_json::from_str(line).expect("NDJSON");
            result["id"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 25);
    assert_eq!(served.load(Ordering::Relaxed), 25);
    let _ = std::fs::remove_dir_all(&dir);
}
