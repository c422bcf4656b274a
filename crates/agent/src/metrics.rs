//! Prometheus metrics: jobs by outcome and error kind, phase duration histograms, in-flight
//! and queued jobs, refusals, and the expiry of every configured identity and trust anchor.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use engine::Outcome;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The phases, in the same vocabulary as results.
const PHASES: [&str; 7] = ["dns", "connect", "tls", "send", "wait", "download", "total"];

/// Counters and histograms of the agent.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
    refused: AtomicU64,
    /// The AMQP worker's connection state and counters (active mode).
    pub(crate) broker: crate::amqp::Status,
}

#[derive(Debug, Default)]
struct Counts {
    jobs: BTreeMap<(&'static str, &'static str), u64>,
    phases: [Histogram; 7],
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; 14],
    count: u64,
    sum: f64,
}

/// Gauges read at scrape time.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub(crate) in_flight: usize,
    pub(crate) queued: usize,
    pub(crate) uptime_seconds: f64,
    pub(crate) expiries: Vec<(&'static str, String, String, i64)>,
}

impl Metrics {
    /// Counts one finished job.
    pub(crate) fn record(&self, outcome: &Outcome, kind: Option<&'static str>) {
        let phases = [
            outcome.metrics.dns,
            outcome.metrics.connect,
            outcome.metrics.tls,
            outcome.metrics.send,
            outcome.metrics.wait,
            outcome.metrics.download,
            outcome.metrics.total,
        ];
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = match kind {
            None => ("ok", ""),
            Some(kind) => ("error", kind),
        };
        *counts.jobs.entry(key).or_default() += 1;
        for (histogram, ms) in counts.phases.iter_mut().zip(phases) {
            if let Some(ms) = ms {
                histogram.observe(ms / 1000.0);
            }
        }
    }

    /// Counts a request refused for back-pressure.
    pub(crate) fn refused(&self, jobs: usize) {
        self.refused.fetch_add(jobs as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_view();
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP downloader_jobs_total Finished jobs by outcome and error kind."
        );
        let _ = writeln!(out, "# TYPE downloader_jobs_total counter");
        for ((outcome, kind), n) in &counts.jobs {
            let _ = writeln!(
                out,
                "downloader_jobs_total{{outcome=\"{outcome}\",kind=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP downloader_jobs_refused_total Jobs refused with 503 because the queue was full."
        );
        let _ = writeln!(out, "# TYPE downloader_jobs_refused_total counter");
        let _ = writeln!(
            out,
            "downloader_jobs_refused_total {}",
            self.refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP downloader_job_phase_seconds Duration of each job phase."
        );
        let _ = writeln!(out, "# TYPE downloader_job_phase_seconds histogram");
        for (phase, histogram) in PHASES.iter().zip(&counts.phases) {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "downloader_job_phase_seconds_bucket{{phase=\"{phase}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "downloader_job_phase_seconds_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "downloader_job_phase_seconds_sum{{phase=\"{phase}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "downloader_job_phase_seconds_count{{phase=\"{phase}\"}} {}",
                histogram.count
            );
        }
        let _ = writeln!(out, "# HELP downloader_jobs_in_flight Jobs running now.");
        let _ = writeln!(out, "# TYPE downloader_jobs_in_flight gauge");
        let _ = writeln!(out, "downloader_jobs_in_flight {}", gauges.in_flight);
        let _ = writeln!(
            out,
            "# HELP downloader_jobs_queued Accepted jobs waiting for a slot."
        );
        let _ = writeln!(out, "# TYPE downloader_jobs_queued gauge");
        let _ = writeln!(out, "downloader_jobs_queued {}", gauges.queued);
        let _ = writeln!(
            out,
            "# HELP downloader_uptime_seconds Seconds since the agent started."
        );
        let _ = writeln!(out, "# TYPE downloader_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "downloader_uptime_seconds {:.3}",
            gauges.uptime_seconds
        );
        let _ = writeln!(
            out,
            "# HELP downloader_certificate_expiry_timestamp_seconds Expiry (Unix time) of configured client identities and trust anchors."
        );
        let _ = writeln!(
            out,
            "# TYPE downloader_certificate_expiry_timestamp_seconds gauge"
        );
        for (kind, label, subject, not_after) in &gauges.expiries {
            let _ = writeln!(
                out,
                "downloader_certificate_expiry_timestamp_seconds{{kind=\"{kind}\",source=\"{}\",subject=\"{}\"}} {not_after}",
                escape(label),
                escape(subject)
            );
        }
        self.broker.render(&mut out);
        out
    }
}

impl Counts {
    fn clone_view(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            phases: self.phases.clone(),
        }
    }
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
