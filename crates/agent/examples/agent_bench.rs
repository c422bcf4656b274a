//! Benchmarks of the agent (run by `bench/agent/run.sh`, release build):
//!
//! 1. per-job overhead: the median round trip of a job posted to the agent over a warm
//!    keep-alive HTTPS connection, minus the median of the same request made by the engine
//!    directly (both sequential, after a warm-up), against a plain-HTTP and an HTTPS upstream;
//! 2. jobs/s with 32 concurrent clients, through the agent and with the engine alone;
//! 3. resident memory of the real `downloader serve` process (path in `BENCH_BINARY`) idle and
//!    with 1,000 in-flight jobs (1,000 concurrent clients) against an upstream that answers after
//!    4 s.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{Agent, Config};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

type Failure = Box<dyn std::error::Error + Send + Sync>;

const APIKEY: &str = "bench";
const SECRET: &str = "bench-secret";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An upstream answering `/` at once and `/slow` after 4 s; HTTPS with the fixture localhost
/// certificate, or plain HTTP.
async fn upstream(tls: bool) -> Result<u16, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let acceptor = if tls {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixtures().join("server/localhost.chain.pem"))?
                .collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(fixtures().join("server/localhost.key.pem"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    } else {
        None
    };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(4)).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"{\"hello\":\"world\"}",
                        ))))
                    },
                );
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// A keep-alive HTTP/1.1 connection to the agent, trusting its generated certificate.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authorization: String,
}

impl Client {
    async fn connect(port: u16, agent_cert: &Path) -> Result<Self, Failure> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(agent_cert)? {
            roots.add(cert?)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{APIKEY}:{SECRET}"));
        Ok(Self {
            sender,
            authorization: format!("Basic {token}"),
        })
    }

    async fn post(&mut self, body: &str) -> Result<(u16, Bytes), Failure> {
        self.sender.ready().await?;
        let request = Request::post("/api/v1/jobs")
            .header("host", "localhost")
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn job_json(url: &str) -> String {
    job_json_with(url, false)
}

fn job_json_with(url: &str, keep_alive: bool) -> String {
    serde_json::json!({"url": url, "config": {"timeout": 30, "keep_alive": keep_alive}}).to_string()
}

fn engine_job(url: &str) -> Result<engine::Job, Failure> {
    engine_job_with(url, false)
}

fn engine_job_with(url: &str, keep_alive: bool) -> Result<engine::Job, Failure> {
    Ok(engine::Job::builder("GET", url)
        .keep_alive(keep_alive)
        .trust_store(engine::TrustSource {
            source: engine::Source::Path(fixtures().join("ca/root.pem")),
            password: None,
        })
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn overhead(client: &mut Client, url: &str, rounds: usize) -> Result<(f64, f64), Failure> {
    let engine = engine::Engine::new();
    let body = job_json(url);
    for _ in 0..200 {
        engine.run(engine_job(url)?).await;
        client.post(&body).await?;
    }
    let mut direct = Vec::with_capacity(rounds);
    let mut through = Vec::with_capacity(rounds);
    // Interleaved, so that drift affects both the same way.
    for _ in 0..rounds {
        let job = engine_job(url)?;
        let start = Instant::now();
        let outcome = engine.run(job).await;
        direct.push(start.elapsed().as_secs_f64() * 1000.0);
        if !outcome.ok {
            return Err(format!("direct job failed: {:?}", outcome.error).into());
        }
        let start = Instant::now();
        let (status, reply) = client.post(&body).await?;
        through.push(start.elapsed().as_secs_f64() * 1000.0);
        if status != 200
            || !reply.starts_with(b"{")
            || !String::from_utf8_lossy(&reply).contains("\"ok\":true")
        {
            return Err(format!("agent job failed: {}", String::from_utf8_lossy(&reply)).into());
        }
    }
    Ok((median(direct), median(through)))
}

async fn throughput_agent(
    port: u16,
    cert: &Path,
    url: &str,
    clients: usize,
    seconds: u64,
    keep_alive: bool,
) -> Result<f64, Failure> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = Client::connect(port, cert).await?;
        let body = job_json_with(url, keep_alive);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                if client.post(&body).await.is_ok() {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await?;
    }
    Ok(total as f64 / seconds as f64)
}

async fn throughput_engine(
    url: &str,
    clients: usize,
    seconds: u64,
    keep_alive: bool,
) -> Result<f64, Failure> {
    let engine = engine::Engine::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let engine = engine.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                if let Ok(job) = engine_job_with(&url, keep_alive)
                    && engine.run(job).await.ok
                {
                    done += 1;
                }
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await?;
    }
    Ok(total as f64 / seconds as f64)
}

fn rss_kib(pid: u32) -> Result<u64, Failure> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".into())
}

async fn memory(
    binary: &Path,
    slow_url: &str,
    plain_url: &str,
    rounds: usize,
) -> Result<(), Failure> {
    let data = std::env::temp_dir().join(format!("agent-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let mut child = std::process::Command::new(binary)
        .arg("serve")
        .env("DOWNLOADER_DATA_DIR", &data)
        .env("DOWNLOADER_LISTEN", format!("127.0.0.1:{port}"))
        .env("DOWNLOADER_TRUST_STORE", fixtures().join("ca/root.pem"))
        .env("apikey", APIKEY)
        .env("secret", SECRET)
        .env("DOWNLOADER_CERT_DIRS", fixtures())
        .stdout(std::process::Stdio::null())
        .env("DOWNLOADER_LOG_FORMAT", "json")
        .stderr(match std::env::var_os("BENCH_AGENT_LOG") {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path)?),
            None => std::process::Stdio::null(),
        })
        .spawn()?;
    let pid = child.id();
    let cert = data.join("agent-cert.pem");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            return Err("the agent did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(pid)?;
    let mut client = Client::connect(port, &cert).await?;
    let fast = slow_url.replace("/slow", "/");
    client.post(&job_json(&fast)).await?;
    let warm_idle = rss_kib(pid)?;
    println!("per-job overhead with the agent in its own process (the real binary), medians (ms)");
    for (label, url) in [
        ("http upstream ", plain_url.to_owned()),
        ("https upstream", fast.clone()),
    ] {
        let (direct, through) = overhead(&mut client, &url, rounds).await?;
        println!(
            "  {label}: engine {direct:.3}  via agent {through:.3}  overhead {:.3}",
            through - direct
        );
    }
    let mut tasks = Vec::new();
    let body = Arc::new(job_json(slow_url));
    for _ in 0..1000 {
        let mut client = Client::connect(port, &cert).await?;
        let body = body.clone();
        tasks.push(tokio::spawn(async move { client.post(&body).await }));
    }
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(rss_kib(pid)?);
    }
    let mut ok = 0;
    for task in tasks {
        if let Ok(Ok((200, body))) = task.await
            && String::from_utf8_lossy(&body).contains("\"ok\":true")
        {
            ok += 1;
        }
    }
    let after = rss_kib(pid)?;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "rss idle (fresh start)        {:>8.1} MiB",
        idle as f64 / 1024.0
    );
    println!(
        "rss idle (after one job)      {:>8.1} MiB",
        warm_idle as f64 / 1024.0
    );
    println!(
        "rss 1,000 in-flight (peak)    {:>8.1} MiB   ({ok}/1000 jobs ok)",
        peak as f64 / 1024.0
    );
    println!(
        "rss after they finished       {:>8.1} MiB",
        after as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let tls_port = upstream(true).await?;
    let plain_port = upstream(false).await?;
    let data = std::env::temp_dir().join(format!("agent-bench-inproc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = Config::defaults(data.clone());
    config.listen = "127.0.0.1:0".parse()?;
    config.credentials = Some(agent::config::Credentials {
        apikey: APIKEY.into(),
        secret: keystore::Password::new(SECRET),
    });
    config.trust_store = Some(fixtures().join("ca/root.pem"));
    config.trust_mode = engine::TrustMode::Both;
    let agent = Agent::build(config).await?;
    let listener = agent.bind().await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(agent.serve(listener, std::future::pending()));
    let cert = data.join("agent-cert.pem");
    let mut client = Client::connect(port, &cert).await?;

    println!("per-job overhead, {rounds} sequential jobs each, medians (ms)");
    for (label, url) in [
        ("http upstream ", format!("http://127.0.0.1:{plain_port}/")),
        ("https upstream", format!("https://localhost:{tls_port}/")),
    ] {
        let (direct, through) = overhead(&mut client, &url, rounds).await?;
        println!(
            "  {label}: engine {direct:.3}  via agent {through:.3}  overhead {:.3}",
            through - direct
        );
    }
    let seconds = 5;
    let plain_url = format!("http://127.0.0.1:{plain_port}/");
    let clients = 32;
    let skip_throughput = std::env::var_os("SKIP_THROUGHPUT").is_some();
    if !skip_throughput {
        println!("throughput, {clients} concurrent clients, {seconds} s each");
        for keep_alive in [false, true] {
            let upstream = if keep_alive {
                "kept-alive upstream connections"
            } else {
                "fresh upstream connection per job"
            };
            println!("  {upstream}");
            for (label, url) in [
                ("http upstream ", format!("http://127.0.0.1:{plain_port}/")),
                ("https upstream", format!("https://localhost:{tls_port}/")),
            ] {
                let engine_rate = throughput_engine(&url, clients, seconds, keep_alive).await?;
                let agent_rate =
                    throughput_agent(port, &cert, &url, clients, seconds, keep_alive).await?;
                println!(
                    "    {label}: engine alone {engine_rate:>8.0} jobs/s   via agent {agent_rate:>8.0} jobs/s"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    match std::env::var_os("BENCH_BINARY") {
        Some(binary) => {
            memory(
                Path::new(&binary),
                &format!("https://localhost:{tls_port}/slow"),
                &plain_url,
                rounds,
            )
            .await?
        }
        None => println!("BENCH_BINARY not set: memory benchmark skipped"),
    }
    Ok(())
}
