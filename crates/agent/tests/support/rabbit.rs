//! A RabbitMQ broker for tests: its own node name, free loopback ports and a temp directory
//! (owned by the `rabbitmq` user when running as root, because Debian's broker runs as that
//! user). Stopped on drop. Missing broker: a loud skip, or a failure when `CI` is set.
//!
//! Included with `#[path = ".../tests/support/rabbit.rs"] mod rabbit;`.

#![allow(dead_code)] // reason: each test crate uses a different part of these helpers

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

/// A running broker node.
#[derive(Debug)]
pub(crate) struct Broker {
    /// The AMQP port on 127.0.0.1.
    pub(crate) port: u16,
    /// The AMQP-over-TLS port on 127.0.0.1: the fixture `localhost` certificate (issued by the
    /// fixture intermediate under `ca/root.pem`), no client certificate asked.
    pub(crate) tls_port: u16,
    node: String,
    dir: PathBuf,
    root: bool,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

impl Broker {
    /// Starts a broker, or returns `None` (after a loud message) when it is not installed and
    /// `CI` is not set.
    pub(crate) fn start() -> Option<Self> {
        if !Path::new(SERVER).exists() {
            if std::env::var_os("CI").is_some() {
                panic!("rabbitmq-server is required under CI (apt-get install -y rabbitmq-server)");
            }
            eprintln!();
            eprintln!(
                "!!!! SKIPPING: rabbitmq-server is not installed; the AMQP tests did not run !!!!"
            );
            eprintln!(
                "!!!! install it (apt-get install -y rabbitmq-server) or set CI=1 to fail !!!!"
            );
            eprintln!();
            return None;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
            .unwrap_or(false);
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("downloader-rabbit-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let tls_port = free_port();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let read = |name: &str| std::fs::read(fixtures.join(name)).expect("fixture");
        std::fs::write(dir.join("server.pem"), read("server/localhost.pem")).expect("cert");
        std::fs::write(dir.join("server.key"), read("server/localhost.key.pem")).expect("key");
        let mut chain = read("ca/intermediate.pem");
        chain.extend(read("ca/root.pem"));
        std::fs::write(dir.join("ca.pem"), chain).expect("chain");
        let d = dir.display();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n\
                 listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {d}/ca.pem\nssl_options.certfile = {d}/server.pem\n\
                 ssl_options.keyfile = {d}/server.key\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n"
            ),
        )
        .expect("rabbitmq.conf");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        if root {
            let status = Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the broker directory");
        }
        let mut broker = Self {
            port,
            tls_port,
            node: format!("dltest{}x{port}@localhost", std::process::id()),
            dir,
            root,
            child: None,
        };
        broker.boot();
        Some(broker)
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = if self.root {
            let mut command = Command::new("runuser");
            command.args(["-u", "rabbitmq", "--", program]);
            // The rabbitmq user's Erlang cookie lives there.
            command.env("HOME", "/var/lib/rabbitmq");
            command
        } else {
            Command::new(program)
        };
        let dist = self.port.wrapping_add(20_000).max(1024);
        command
            .current_dir(&self.dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .stdin(Stdio::null());
        command
    }

    fn boot(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("out.log"))
            .expect("broker log");
        let err = log.try_clone().expect("broker log");
        let child = self
            .command(SERVER)
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("rabbitmq-server exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "rabbitmq-server did not listen within 60 s:\n{}",
            self.log()
        );
    }

    /// The broker's console output so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }

    /// Stops the node (durable queues and persistent messages stay on disk).
    pub(crate) fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let _ = self
            .command(CTL)
            .args(["-n", &self.node, "stop"])
            .arg(self.dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the node again on the same port and data.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// Adds a user with full permissions on `/`.
    pub(crate) fn add_user(&self, name: &str, password: &str) {
        for args in [
            vec!["add_user", name, password],
            vec!["set_permissions", "-p", "/", name, ".*", ".*", ".*"],
        ] {
            let output = self
                .command(CTL)
                .args(["-n", &self.node])
                .args(&args)
                .output()
                .expect("rabbitmqctl");
            assert!(
                output.status.success(),
                "rabbitmqctl {}: {}",
                args[0],
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Closes every client connection from the broker side (`rabbitmqctl close_all_connections`),
    /// as a crash of the clients or a network loss would end them: their unacknowledged
    /// messages go back to their queues.
    pub(crate) fn close_all_connections(&self) {
        let output = self
            .command(CTL)
            .args([
                "-n",
                &self.node,
                "close_all_connections",
                "test: connection loss",
            ])
            .output()
            .expect("rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl close_all_connections: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `rabbitmqctl list_queues name messages consumers` as text.
    pub(crate) fn queues(&self) -> String {
        self.command(CTL)
            .args([
                "-n",
                &self.node,
                "list_queues",
                "name",
                "messages",
                "consumers",
            ])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
