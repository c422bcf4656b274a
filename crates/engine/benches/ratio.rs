//! Jobs per second, interleaved: the engine with keep-alive, the engine with a fresh
//! connection per job, and the minimal hyper + rustls loop with keep-alive (and fresh), against
//! a local nginx with mutual TLS, one job at a time.
//!
//! The machines here are shared and noisy, and criterion measures one side after the other,
//! so a slow minute lands on one side only. Here every round runs a batch of each kind back to
//! back, and the result is the median over rounds of each per-round ratio.
//!
//! Run with `cargo bench -p engine --bench ratio` (`ROUNDS`, `BATCH` to change the size).
//! Needs nginx.

#[path = "../../../tests/interop/peers.rs"]
mod peers;
mod support;

use std::time::{Duration, Instant};

use engine::Engine;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only when
    // benchmarking.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let Some(nginx) = peers::nginx() else {
        eprintln!("nginx not found: nothing measured");
        return;
    };
    let rounds = setting("ROUNDS", 15);
    let batch = setting("BATCH", 400);
    let fresh_batch = (batch / 20).max(5);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let port = nginx.port;
    let engine = Engine::new();
    let kept_job = support::engine_job(port, true);
    let fresh_job = support::engine_job(port, false);
    let config = support::loop_config();
    let mut kept = runtime.block_on(support::kept_alive(config.clone(), port));

    // Each side does what it will be measured doing, once, and is checked.
    let first = runtime.block_on(engine.run(kept_job.clone()));
    assert!(first.ok, "{:?}", first.error);
    let again = runtime.block_on(engine.run(kept_job.clone()));
    assert!(again.metrics.connection_reused, "{:?}", again.metrics);
    assert!(runtime.block_on(support::kept_alive_request(&mut kept)) > 0);

    let mut per_job: [Vec<Duration>; 4] = Default::default();
    for _ in 0..rounds {
        per_job[0].push(per_job_time(batch, || {
            let outcome = runtime.block_on(engine.run(kept_job.clone()));
            assert!(outcome.ok, "{:?}", outcome.error);
        }));
        per_job[1].push(per_job_time(batch, || {
            runtime.block_on(support::kept_alive_request(&mut kept));
        }));
        per_job[2].push(per_job_time(fresh_batch, || {
            let outcome = runtime.block_on(engine.run(fresh_job.clone()));
            assert!(outcome.ok, "{:?}", outcome.error);
        }));
        per_job[3].push(per_job_time(fresh_batch, || {
            runtime.block_on(support::loop_request(config.clone(), port));
        }));
    }
    let names = [
        "engine, keep-alive",
        "hyper+rustls loop, keep-alive",
        "engine, fresh connection",
        "hyper+rustls loop, fresh connection",
    ];
    println!(
        "{rounds} rounds of {batch} kept-alive / {fresh_batch} fresh jobs each, median per job"
    );
    for (name, times) in names.iter().zip(&per_job) {
        let median = median(times.clone());
        println!(
            "  {name:<38} {:>9.1} us  {:>8.0} jobs/s",
            median.as_secs_f64() * 1e6,
            1.0 / median.as_secs_f64()
        );
    }
    let ratio = |ours: usize, theirs: usize| {
        let mut ratios: Vec<f64> = per_job[ours]
            .iter()
            .zip(&per_job[theirs])
            .map(|(ours, theirs)| theirs.as_secs_f64() / ours.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        (
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1],
        )
    };
    let (low, mid, high) = ratio(0, 1);
    println!(
        "  engine keep-alive jobs/s = {mid:.2}x the loop's (per-round min {low:.2}, max {high:.2}; target >= 0.85)"
    );
    let (low, mid, high) = ratio(2, 3);
    println!(
        "  engine fresh jobs/s = {mid:.2}x the loop's (per-round min {low:.2}, max {high:.2})"
    );
    let (low, mid, high) = ratio(0, 2);
    println!(
        "  engine keep-alive = {mid:.1}x the jobs/s of engine fresh connections (min {low:.1}, max {high:.1})"
    );
    drop(nginx);
}

/// The mean time of `job` over `count` runs.
fn per_job_time(count: u32, mut job: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        job();
    }
    started.elapsed() / count
}

fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value| *value > 0)
        .unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
