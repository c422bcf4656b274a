//! One `downloader serve` process on 127.0.0.1:0 with test credentials, a certificate
//! directory, stdout and stderr in files (the banner gives the port; stderr is the log), and
//! its memory read from `/proc/<pid>/status`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key every agent of the suite is started with.
pub(crate) const APIKEY: &str = "hostile-apikey";
/// The secret (distinct, so a leak is greppable).
pub(crate) const SECRET: &str = "hostile-secret-5c1d";

/// A running agent; killed when dropped.
#[derive(Debug)]
pub(crate) struct Agent {
    child: Child,
    /// Its job API port on 127.0.0.1.
    pub(crate) port: u16,
    /// The agent's generated certificate (PEM), for the test client's trust.
    pub(crate) cert_pem: Vec<u8>,
    stderr: PathBuf,
}

/// Memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// Resident now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// The peak resident size so far (`VmHWM`).
    pub(crate) hwm_kib: u64,
}

impl Agent {
    /// Starts an agent with its data directory under `dir`, `cert_dir` as the only certificate
    /// directory, at most 64 running and 64 queued jobs (capacity 128), and `env` on top.
    pub(crate) fn start(dir: &Path, cert_dir: &Path, env: &[(&str, String)]) -> Self {
        std::fs::create_dir_all(dir).expect("agent dir");
        let stdout = dir.join("stdout.txt");
        let stderr = dir.join("stderr.txt");
        let mut command = Command::new(env!("CARGO_BIN_EXE_downloader"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--cert-dir")
            .arg(cert_dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("apikey", APIKEY)
            .env("secret", SECRET)
            .env("DOWNLOADER_MAX_JOBS", "64")
            .env("DOWNLOADER_QUEUE_LIMIT", "64")
            .env("DOWNLOADER_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the binary starts");
        let port = wait_for_port(&mut child, &stdout, &stderr);
        let cert_pem = std::fs::read(dir.join("data/agent-cert.pem")).expect("agent certificate");
        Self {
            child,
            port,
            cert_pem,
            stderr,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (and how it ended if not).
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(error) => Some(format!("cannot wait: {error}")),
        }
    }

    /// The log written so far.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// `VmRSS` and `VmHWM` now (zero once the process is gone).
    pub(crate) fn memory(&self) -> Memory {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the banner for `listening on https://127.0.0.1:PORT/`.
fn wait_for_port(child: &mut Child, stdout: &Path, stderr: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let banner = std::fs::read_to_string(stdout).unwrap_or_default();
        let port = banner
            .lines()
            .find_map(|line| line.split("listening on https://127.0.0.1:").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok());
        // The banner is complete once the certificate directories line is out.
        if let (Some(port), true) = (port, banner.contains("certificate directories")) {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the agent exited at start ({status}): {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no banner in 30 s: {banner}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
