//! Fresh-connection mutual-TLS jobs against a local nginx: the engine against a minimal
//! hyper + rustls loop doing the same request (the practical ceiling). Same identity, same
//! trust, same ALPN (h2), same request headers, session resumption off on both sides, one job
//! at a time.
//!
//! The `keep_alive_job` group does the same with connection reuse: the engine with
//! `keep_alive` against a hyper + rustls loop that keeps one connection and sends request after
//! request on it. Criterion runs one side after the other; on a noisy machine the interleaved
//! `ratio` bench compares them more fairly.
//!
//! Run with `cargo bench -p engine --bench jobs` (or `bench/fetch.sh`). Needs nginx.

#[path = "../../../tests/interop/peers.rs"]
mod peers;
mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use engine::Engine;

fn bench(c: &mut Criterion) {
    let Some(nginx) = peers::nginx() else {
        return;
    };
    let port = nginx.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = Engine::new();
    let job = support::engine_job(port, false);
    let check = runtime.block_on(engine.run(job.clone()));
    assert!(check.ok, "{:?}", check.error);
    let config = support::loop_config();
    assert!(runtime.block_on(support::loop_request(config.clone(), port)) > 0);

    let mut group = c.benchmark_group("fresh_mtls_job");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("engine", |b| {
        b.iter(|| runtime.block_on(engine.run(job.clone())));
    });
    group.bench_function("hyper_rustls_loop", |b| {
        b.iter(|| runtime.block_on(support::loop_request(config.clone(), port)));
    });
    group.finish();

    let kept_job = support::engine_job(port, true);
    let warm = runtime.block_on(engine.run(kept_job.clone()));
    assert!(warm.ok, "{:?}", warm.error);
    let reused = runtime.block_on(engine.run(kept_job.clone()));
    assert!(reused.metrics.connection_reused, "{:?}", reused.metrics);
    let mut kept = runtime.block_on(support::kept_alive(config, port));
    let mut group = c.benchmark_group("keep_alive_job");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("engine", |b| {
        b.iter(|| runtime.block_on(engine.run(kept_job.clone())));
    });
    group.bench_function("hyper_rustls_loop", |b| {
        b.iter(|| runtime.block_on(support::kept_alive_request(&mut kept)));
    });
    group.finish();
    drop(nginx);
}

criterion_group!(benches, bench);
criterion_main!(benches);
