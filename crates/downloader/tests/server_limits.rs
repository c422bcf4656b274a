//! `downloader serve` under a lowered open-files limit (`prlimit --nofile=128:128`), flooded with
//! silent connections: the connection cap closes the longest-idle ones, `/health` still answers
//! from a new connection, and the agent logs about it at most about once a second. Twice: with
//! the default cap (half the limit) and with a cap above the limit, where `accept` itself runs
//! out of descriptors and an idle connection is closed to get one back.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const APIKEY: &str = "limits-apikey";
const SECRET: &str = "limits-secret-51";

/// The agent process under `prlimit`; killed on drop.
struct Agent {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Agent {
    /// Starts `downloader serve` with at most 128 open files and `env`.
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join("stderr.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new("prlimit")
            .arg("--nofile=128:128")
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_downloader"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .env("apikey", APIKEY)
            .env("secret", SECRET)
            .env_remove("port")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("prlimit and the binary start (prlimit is required for this test)");
        let stdout = child.stdout.take().expect("piped");
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("utf-8 banner");
            if let Some(rest) = line.trim().strip_prefix("downloader agent listening on") {
                url = Some(rest.trim().trim_end_matches("/api/v1/jobs").to_owned());
            }
            if line.contains("certificate directories") {
                break;
            }
        }
        let url = url.expect("the banner names the listening address");
        Self { child, url, log }
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port in the URL")
    }

    /// The status of `GET /health` from a new connection (curl, 5 s at most), or 0.
    fn health(&self) -> u16 {
        let output = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(format!("{}/health", self.url))
            .output()
            .expect("curl runs (it is required for this test)");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn log_lines(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("server-limits-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Opens 200 connections that never send a byte, checks `/health` answers from a new one
/// within a few seconds, and that `needle` log lines came at most about once a second.
fn flood(agent: &Agent, needle: &str) {
    assert_eq!(agent.health(), 200, "before the flood");
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", agent.port())) {
            silent.push(stream);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = agent.health();
    while status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        status = agent.health();
    }
    assert_eq!(status, 200, "/health did not answer during the flood");
    // Keep flooding for a few seconds; the log must not follow every refusal.
    while started.elapsed() < Duration::from_secs(4) {
        for _ in 0..50 {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", agent.port())) {
                silent.push(stream);
            }
        }
        silent.drain(..silent.len().saturating_sub(300));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(agent.health(), 200, "after the flood");
    let seconds = started.elapsed().as_secs() as usize;
    let lines = agent.log_lines(needle);
    assert!(lines >= 1, "the agent never said it was at its limit");
    assert!(
        lines <= seconds + 2,
        "{lines} '{needle}' lines in {seconds} s"
    );
}

#[test]
fn a_flood_of_silent_connections_leaves_health_reachable() {
    // Long timeouts, so the cap (64: half of 128) is what keeps the agent reachable.
    let dir = tempdir("cap");
    let agent = Agent::start(
        &dir,
        &[
            ("DOWNLOADER_HEADER_TIMEOUT", "60"),
            ("DOWNLOADER_TLS_HANDSHAKE_TIMEOUT", "60"),
        ],
    );
    flood(&agent, "connection limit");
}

#[test]
fn out_of_descriptors_an_idle_connection_is_closed_for_the_next() {
    // A cap above the open-files limit: `accept` fails with EMFILE first.
    let dir = tempdir("emfile");
    let agent = Agent::start(
        &dir,
        &[
            ("DOWNLOADER_HEADER_TIMEOUT", "60"),
            ("DOWNLOADER_TLS_HANDSHAKE_TIMEOUT", "60"),
            ("DOWNLOADER_MAX_CONNECTIONS", "1000"),
        ],
    );
    flood(&agent, "accept failed");
}
