//! The hostile-input suite (issue 10): one table of inputs against a real `downloader serve`
//! process. Each row asserts its typed result (HTTP status and `error.kind`, or the job
//! result's `ok: false` and `error.kind`), then that the agent is alive and `/health` answers
//! 200 within 2 s. After the table, every agent's peak RSS (`VmHWM`) must be under
//! [`PEAK_BOUND_KIB`]. The table is printed (row, agent, RSS after, peak, result) for the closing
//! note: run with `cargo test -p downloader --test hostile -- --nocapture`.
//!
//! Upstreams are loopback hyper servers in this process; every address a job names is
//! loopback (the agent itself included: that is what the egress rows are about).

#[path = "hostile/mod.rs"]
mod hostile;

use std::path::Path;

use hostile::run::{self, Line};
use hostile::upstream::Upstream;
use hostile::{World, cases, fixture};

/// The bound on any agent's peak RSS over the whole table. Measured (debug build, mimalloc):
/// idle 16 MiB, the shared agent 45 MiB after all its rows, 58 x 27 MB requests 385 MiB, and the
/// batch of 40 jobs at their share of the result budget (256 MiB,
/// DOWNLOADER_MAX_REQUEST_RESULT_BYTES) 700 MiB: while a job's result is made, its body, the
/// body's JSON text and the serialized result coexist for a moment, so one request's results
/// can cost up to about three times the budget. 1 GiB is that plus the agent's base; the
/// unfixed agent aborted or reached 1 to 2 GiB on these inputs (each row also checks its result).
const PEAK_BOUND_KIB: u64 = 1 << 20;

#[test]
fn hostile_inputs_neither_crash_nor_starve_the_agent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let lines = runtime.block_on(async {
        let world = world().await;
        let rows = cases::all();
        assert!(rows.len() >= 40, "the table has {} rows", rows.len());
        run::table(&world, &rows).await
    });
    print(&lines);
    let peak = lines
        .iter()
        .map(|line| line.memory.hwm_kib)
        .max()
        .unwrap_or(0);
    let failed: Vec<String> = lines
        .iter()
        .filter_map(|line| {
            line.result
                .as_ref()
                .err()
                .map(|problem| format!("{}: {problem}", line.name))
        })
        .collect();
    let mut failed = failed;
    if peak > PEAK_BOUND_KIB {
        failed.push(format!(
            "peak RSS: an agent peaked at {} MiB (bound {} MiB)",
            peak >> 10,
            PEAK_BOUND_KIB >> 10
        ));
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        lines.len(),
        failed.join("\n")
    );
}

/// The scratch directory: a certificate directory with one keystore and two symlinks out of
/// it, a keystore and a trust store outside it, two upstreams and a closed port.
async fn world() -> World {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cert_dir = dir.join("certs");
    std::fs::create_dir_all(&cert_dir).expect("cert dir");
    let dir = dir.canonicalize().expect("canonical");
    let cert_dir = cert_dir.canonicalize().expect("canonical");
    let p12 = fixture("client/p256/openssl.p12");
    std::fs::copy(&p12, cert_dir.join("inside.p12")).expect("inside keystore");
    std::fs::copy(&p12, dir.join("outside.p12")).expect("outside keystore");
    std::fs::copy(fixture("ca/root.pem"), dir.join("outside-trust.pem")).expect("outside trust");
    std::os::unix::fs::symlink(dir.join("outside.p12"), cert_dir.join("link-out.p12"))
        .expect("symlink");
    std::os::unix::fs::symlink(dir.join("missing.p12"), cert_dir.join("link-dangling.p12"))
        .expect("symlink");
    let rabbit_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    World {
        dir,
        cert_dir,
        up: Upstream::start().await,
        up2: Upstream::start().await,
        rabbit_port,
    }
}

fn print(lines: &[Line]) {
    println!();
    println!("| # | input | agent | expected | result | s | RSS after (MiB) | peak (MiB) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (index, line) in lines.iter().enumerate() {
        let result = match &line.result {
            Ok(got) => format!("pass: {got}"),
            Err(problem) => format!("FAIL: {problem}"),
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            index + 1,
            line.name,
            line.agent,
            line.expected.replace('|', "or"),
            result.replace('|', "/"),
            line.took.as_secs_f64(),
            line.memory.rss_kib >> 10,
            line.memory.hwm_kib >> 10
        );
    }
}
