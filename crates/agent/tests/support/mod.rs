//! The agent in-process on 127.0.0.1:0, and a client that talks to it over real HTTPS (the
//! engine itself, with the agent's self-signed certificate not verified). Upstreams are an
//! in-process rustls server ([`upstream`]) and the interop peers (nginx, openssl s_server).

#![allow(dead_code)] // reason: each test file uses part of these helpers

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::{Agent, Config};
use base64::Engine as _;
use engine::{Engine, Job};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[path = "../../../../tests/interop/peers.rs"]
pub(crate) mod peers;
pub(crate) mod tls;
pub(crate) mod upstream;

pub(crate) use peers::fixture;

/// The fixture keystore password.
pub(crate) const STORE: &str = "Fx-store-7431";
/// The test credentials.
pub(crate) const APIKEY: &str = "test-apikey";
/// The test secret.
pub(crate) const SECRET: &str = "test-secret-0f9e";

/// A running agent; stopped (gracefully) by [`TestAgent::stop`] or aborted on drop.
#[derive(Debug)]
pub(crate) struct TestAgent {
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    client: Engine,
}

/// A fresh temp directory.
pub(crate) fn temp_dir(label: &str) -> PathBuf {
    peers::temp_dir(&format!("agent-{label}"))
}

/// A configuration with test credentials, a fresh data directory, and the fixture CA trusted.
pub(crate) fn config() -> Config {
    let mut config = Config::defaults(temp_dir("data"));
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.credentials = Some(agent::config::Credentials {
        apikey: APIKEY.into(),
        secret: keystore::Password::new(SECRET),
    });
    config.trust_store = Some(fixture("ca/root.pem"));
    config.trust_mode = engine::TrustMode::Both;
    config.shutdown_grace = Duration::from_secs(10);
    config
}

/// Builds and starts the agent.
pub(crate) async fn start(config: Config) -> TestAgent {
    let data_dir = config.data_dir.clone();
    let agent = Agent::build(config).await.expect("agent builds");
    let listener = agent.bind().await.expect("agent binds");
    let port = listener.local_addr().expect("address").port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(agent.serve(listener, async move {
        let _ = rx.await;
    }));
    TestAgent {
        port,
        data_dir,
        shutdown: Some(tx),
        task: Some(task),
        client: Engine::new(),
    }
}

/// `Basic base64(key:secret)`.
pub(crate) fn basic(key: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

/// What the agent answered.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: engine::Headers,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| panic!("{error}: {}", self.text))
    }
}

impl TestAgent {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Sends a request to the agent with optional Authorization.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut builder = Job::builder(method, self.url(path))
            .insecure(true)
            .timeout(Duration::from_secs(60))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(auth) = auth {
            builder = builder.header("Authorization", auth);
        }
        let outcome = self.client.run(builder.build().expect("client job")).await;
        let response = outcome
            .response
            .unwrap_or_else(|| panic!("the agent did not answer: {:?}", outcome.error));
        Reply {
            status: response.status_code,
            headers: response.headers,
            text: response.body.text().unwrap_or_default().to_owned(),
        }
    }

    /// Posts jobs with the right credentials; returns the parsed result(s).
    pub(crate) async fn jobs(&self, jobs: &Value) -> Value {
        let reply = self
            .request(
                "POST",
                "/api/v1/jobs",
                Some(&basic(APIKEY, SECRET)),
                &jobs.to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()
    }

    /// The metrics text.
    pub(crate) async fn metrics(&self) -> String {
        let reply = self
            .request("GET", "/metrics", Some(&basic(APIKEY, SECRET)), "")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.text
    }

    /// Waits (up to 10 s) until the metrics text has `line`.
    pub(crate) async fn wait_for_metric(&self, line: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics().await;
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never saw {line}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Triggers shutdown and waits for the agent to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// Triggers shutdown without waiting.
    pub(crate) fn begin_shutdown(&mut self) -> Option<JoinHandle<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Copies a fixture into `dir` under `name`, replacing atomically (write + rename).
pub(crate) fn install(fixture_path: &str, dir: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(fixture(fixture_path)).expect("fixture");
    replace(dir, name, &bytes)
}

/// Writes `bytes` to `dir/name` via a temporary file and a rename.
pub(crate) fn replace(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, bytes).expect("write");
    std::fs::rename(&temporary, &target).expect("rename");
    target
}

/// The subject the in-process upstream saw, from its echo body.
pub(crate) fn seen_subject(result: &Value) -> String {
    result["response"]["body"]
        .as_str()
        .and_then(|body| body.lines().find_map(|line| line.strip_prefix("subject=")))
        .unwrap_or("<no response>")
        .to_owned()
}
