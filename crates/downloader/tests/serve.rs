//! `downloader serve` as a user starts it: the zero-config default (a generated identity and
//! API key kept in the data directory), a job through the real binary's HTTPS API checked with
//! the binary's own `fetch`, a second start reusing everything, and SIGTERM exiting 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_downloader")
}

/// The agent process; killed if a test fails before it stops it.
struct Agent {
    child: Child,
    banner: Vec<String>,
}

impl Agent {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("apikey")
            .env_remove("secret")
            .env_remove("port")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("piped");
        let mut banner = Vec::new();
        // The banner ends with the certificate directories line.
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("utf-8 banner");
            let done = line.contains("certificate directories");
            banner.push(line);
            if done {
                break;
            }
        }
        Self { child, banner }
    }

    fn line(&self, prefix: &str) -> Option<String> {
        self.banner.iter().find_map(|line| {
            line.trim()
                .strip_prefix(prefix)
                .map(|rest| rest.trim().to_owned())
        })
    }

    fn url(&self) -> String {
        let line = self
            .line("downloader agent listening on")
            .expect("listening line");
        line.trim_end_matches("/api/v1/jobs").to_owned()
    }

    fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch(args: &[&str]) -> Value {
    let output = Command::new(bin())
        .arg("fetch")
        .args(args)
        .arg("--json")
        .output()
        .expect("fetch runs");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "fetch {args:?}: {error}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A plain-HTTP server on loopback that answers one request with 200 `up`, then closes.
fn one_answer_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nup");
    });
    address
}

fn basic(apikey: &str, secret: &str) -> String {
    format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("{apikey}:{secret}"))
    )
}

fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn zero_config_serve_runs_jobs_and_keeps_its_identity() {
    let data = tempdir().join("data");
    let agent = Agent::start(&data);
    let url = agent.url();
    let apikey = agent.line("apikey").expect("apikey shown");
    let secret = agent
        .line("secret")
        .expect("secret shown once on first start");
    let fingerprint = agent.line("SHA-256 fingerprint").expect("fingerprint");
    let cert = data.join("agent-cert.pem");
    for file in ["agent-cert.pem", "agent-key.pem", "credentials.json"] {
        let mode = std::fs::metadata(data.join(file))
            .expect(file)
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600,
            "{file}"
        );
    }
    let cert_text = cert.to_str().expect("utf-8");

    // Health needs no credentials; the agent's certificate verifies with the generated PEM.
    let health = fetch(&[
        &format!("{url}/health"),
        "--cacert",
        cert_text,
        "--trust",
        "custom",
    ]);
    assert_eq!(health["response"]["statusCode"], 200, "{health}");
    assert_eq!(health["tls"]["verified"], true);
    let served = health["tls"]["serverCertificates"][0]["sha256"]
        .as_str()
        .expect("sha256");
    assert_eq!(served.to_uppercase(), fingerprint.replace(':', ""));

    // A job aimed at the agent itself is refused by the default egress policy, with no request
    // made; a job to another loopback server runs.
    let cert_pem = STANDARD.encode(std::fs::read(&cert).expect("cert"));
    let auth = basic(&apikey, &secret);
    let jobs_url = format!("{url}/api/v1/jobs");
    let post = |job: &Value| {
        let body = job.to_string();
        let result = fetch(&[
            &jobs_url,
            "--cacert",
            cert_text,
            "--trust",
            "custom",
            "-X",
            "POST",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ]);
        assert_eq!(result["response"]["statusCode"], 200, "{result}");
        let inner: Value = serde_json::from_str(result["response"]["body"].as_str().expect("body"))
            .expect("the agent answers JSON");
        inner
    };
    let job = serde_json::json!({
        "id": "itself",
        "url": format!("{url}/health"),
        "config": { "trust": { "base64": cert_pem, "mode": "custom" }, "timeout": 10 },
    });
    let denied = post(&job);
    assert_eq!(denied["id"], "itself", "{denied}");
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["error"]["kind"], "egress.denied", "{denied}");
    let upstream = one_answer_upstream();
    let job = serde_json::json!({
        "id": "first",
        "method": "GET",
        "url": format!("http://{upstream}/status"),
        "config": { "timeout": 10 },
    });
    let body = job.to_string();
    let inner = post(&job);
    assert_eq!(inner["id"], "first", "{inner}");
    assert_eq!(inner["ok"], true, "{inner}");
    assert_eq!(inner["response"]["statusCode"], 200, "{inner}");
    assert_eq!(inner["response"]["body"], "up", "{inner}");

    // Without credentials: 401, and the secret never shows in what the agent returns.
    let refused = fetch(&[
        &jobs_url, "--cacert", cert_text, "--trust", "custom", "-d", &body,
    ]);
    assert_eq!(refused["response"]["statusCode"], 401, "{refused}");
    assert!(!refused.to_string().contains(&secret));
    assert_eq!(agent.stop(), Some(0), "SIGTERM exits 0");

    // A second start keeps the identity and the credentials, and does not show the secret.
    let again = Agent::start(&data);
    assert_eq!(again.line("SHA-256 fingerprint"), Some(fingerprint));
    assert_eq!(again.line("apikey"), Some(apikey));
    assert!(
        again.banner.iter().all(|line| !line.contains(&secret)),
        "{:?}",
        again.banner
    );
    assert_eq!(again.stop(), Some(0));
}
