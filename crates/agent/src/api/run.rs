//! One job through the agent: parse, choose the client certificate and trust, run the engine,
//! add what the agent knows to the result, count it and log one line.

use std::time::Instant;

use engine::{
    ErrorInfo, HostPattern, IdentitySource, JobBuilder, Material, Metrics, Outcome, RequestInfo,
    Source, TrustMode, TrustSource,
};
use serde_json::Value;

use super::Shared;
use super::job::{ApiJob, CertChoice, JobCert, JobTrust, Plan, Rejection, raw_id, raw_request};
use crate::certs::{JobRefusal, Loaded, LoadedTrust, Problem, Refused};
use crate::config::Config;

/// What the agent adds to a result besides the engine's outcome.
#[derive(Debug, Default)]
struct Extra {
    source: Option<String>,
    footprint: Option<String>,
    warnings: Vec<String>,
}

/// Runs one raw JSON job to its one JSON result.
pub(crate) async fn run(shared: &Shared, raw: Value) -> Value {
    run_limited(shared, raw, shared.config.max_body).await
}

/// [`run`] keeping at most `body_limit` response bytes (a batch's share of its budget).
pub(crate) async fn run_limited(shared: &Shared, raw: Value, body_limit: u64) -> Value {
    let started = Instant::now();
    let id = raw_id(&raw);
    let (method, url) = raw_request(&raw);
    let plan = serde_json::from_value::<ApiJob>(raw)
        .map_err(|error| Rejection::not_a_job(&error))
        .and_then(|job| job.plan(body_limit, &shared.config.job_limits));
    let (outcome, extra, host) = match plan {
        Ok(plan) => {
            let host = plan.host.clone();
            let (outcome, extra) = execute(shared, plan).await;
            (outcome, extra, host)
        }
        Err(rejection) => {
            let host = url::Url::parse(&url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .unwrap_or_default();
            (rejected(id, method, url, rejection), Extra::default(), host)
        }
    };
    finish(shared, outcome, extra, &host, started)
}

/// The result of a job whose JSON text does not make a tree (nested too deeply):
/// kind `request.invalid`.
pub(crate) fn unparsable(shared: &Shared, detail: &str) -> Value {
    let outcome = rejected(
        None,
        "GET".into(),
        String::new(),
        Rejection::invalid(format!("not a job: {detail}")),
    );
    finish(shared, outcome, Extra::default(), "", Instant::now())
}

/// The result of a job whose task failed (a bug): kind `internal`.
pub(crate) fn internal(
    shared: &Shared,
    id: Option<String>,
    method: String,
    url: String,
    detail: &str,
) -> Value {
    tracing::error!(detail, "job task failed");
    let outcome = rejected(
        id,
        method,
        url,
        Rejection {
            kind: "internal",
            message: "internal error: the job's task failed".into(),
            hint: "this is a bug in the downloader; please report it".into(),
        },
    );
    finish(shared, outcome, Extra::default(), "", Instant::now())
}

async fn execute(shared: &Shared, plan: Plan) -> (Outcome, Extra) {
    let Plan {
        id,
        method,
        url,
        host,
        port,
        mut builder,
        cert,
        trust,
        insecure,
        footprint,
        proxy: plan_proxy,
    } = plan;
    let mut extra = Extra {
        footprint,
        ..Extra::default()
    };
    let config = &shared.config;
    // The job's own proxy (or explicit direct) wins over `proxy_configuration`.
    builder = match plan_proxy {
        Some(Some(proxy)) => builder.proxy(engine::ProxyRules::all(proxy)),
        Some(None) => builder.proxy(engine::ProxyRules::default()),
        None => builder.proxy(config.proxy_rules.clone()),
    };
    // `client_cert_configuration: null` means no certificate anywhere, redirect hops included.
    let hops_get_host_rules = !matches!(cert, CertChoice::Nothing);
    match choose_identity(shared, cert, &host, port, &mut extra).await {
        Ok(Some(identity)) => builder = builder.identity(identity),
        Ok(None) => {}
        Err(rejection) => return (rejected(id, method, url, rejection), extra),
    }
    if hops_get_host_rules {
        builder = hop_identities(config, builder);
    }
    // Trust parsed here (a job store merged with the configured one) counts against the job's
    // deadline too.
    let deadline = tokio::time::Instant::now() + builder.current_timeout();
    match choose_trust(shared, trust, deadline, &mut extra).await {
        Ok(Some((mode, store))) => {
            builder = builder.trust(mode);
            if let Some(store) = store {
                builder = builder.trust_store(store);
            }
        }
        Ok(None) => {}
        Err(rejection) => return (rejected(id, method, url, rejection), extra),
    }
    builder = builder.insecure(insecure.unwrap_or(config.disable_ssl_validation));
    builder = builder.egress(config.egress.clone());
    match builder.build() {
        Ok(job) => {
            let outcome = shared.engine.run(job).await;
            if let Some(source) = hop_source(config, &url, &outcome) {
                extra.source = source;
            }
            (outcome, extra)
        }
        Err(error) => (Outcome::rejected(id, method, url, error), extra),
    }
}

/// Every `[[client_certs]]` host rule, for redirect hops to another host than the job's URL:
/// the engine presents the keystore of the most specific rule matching the hop (read only
/// then) and nothing when none matches. The downloader-wide default is never given to another
/// host. These keystores go to the engine by path, so a hop reads the file as it is now.
fn hop_identities(config: &Config, mut builder: JobBuilder) -> JobBuilder {
    for rule in &config.client_certs {
        let identity = IdentitySource::Keystore {
            source: Source::Path(rule.cert.path.clone()),
            password: rule.cert.password.clone(),
            key_password: rule.cert.key_password.clone(),
            alias: rule.cert.alias.clone(),
        };
        for pattern in &rule.hosts {
            builder = builder.identity_for_hosts(pattern.clone(), identity.clone());
        }
    }
    builder
}

/// When redirects ended on another scheme, host or port than the job's URL: the `source` of
/// the certificate presented there (`Some(None)` when no host rule matched it).
fn hop_source(config: &Config, url: &str, outcome: &Outcome) -> Option<Option<String>> {
    let last = outcome.redirects().last()?;
    let reached = outcome
        .response
        .as_ref()
        .map_or(last.location.as_str(), |response| response.url.as_str());
    let authority = |text: &str| {
        url::Url::parse(text).ok().map(|url| {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            (url.scheme().to_owned(), host, url.port_or_known_default())
        })
    };
    let (from, to) = (authority(url)?, authority(reached)?);
    if from == to {
        return None;
    }
    let (_, host, port) = to;
    let rules = config
        .client_certs
        .iter()
        .flat_map(|rule| rule.hosts.iter().map(move |pattern| (pattern, rule)));
    Some(
        HostPattern::most_specific(rules, &host, port.unwrap_or(0))
            .map(|(pattern, _)| format!("host-rule:{pattern}")),
    )
}

/// Per-call config > the most specific matching host rule > downloader-wide default > none.
async fn choose_identity(
    shared: &Shared,
    choice: CertChoice,
    host: &str,
    port: u16,
    extra: &mut Extra,
) -> Result<Option<IdentitySource>, Rejection> {
    let config = &shared.config;
    let rules = config
        .client_certs
        .iter()
        .flat_map(|rule| rule.hosts.iter().map(move |pattern| (pattern, rule)));
    let (cert, label) = match choice {
        CertChoice::Nothing => return Ok(None),
        CertChoice::Job(job) => return job_identity(shared, job, extra).await.map(Some),
        CertChoice::Inherit => match (
            HostPattern::most_specific(rules, host, port),
            &config.default_cert,
        ) {
            (Some((pattern, rule)), _) => (rule.cert.clone(), format!("host-rule:{pattern}")),
            (None, Some(default)) => (default.clone(), "default".to_owned()),
            (None, None) => return Ok(None),
        },
    };
    extra.source = Some(label.clone());
    let source = match shared.certs.identity(&cert, Some(&label)).await {
        Loaded::Good(loaded, warning) => {
            extra.warnings.extend(warning);
            Source::Bytes(loaded.bytes.clone())
        }
        Loaded::Bad(problem) => return Err(unusable(Material::Identity, &problem)),
    };
    Ok(Some(IdentitySource::Keystore {
        source,
        password: cert.password,
        key_password: cert.key_password,
        alias: cert.alias,
    }))
}

/// The job's own keystore: inline, or named by path and read through the descriptor opened
/// beneath a certificate directory (never by the path again). The engine parses it, in its
/// slots and within the job's deadline, and reports a keystore that does not load.
async fn job_identity(
    shared: &Shared,
    job: JobCert,
    extra: &mut Extra,
) -> Result<IdentitySource, Rejection> {
    extra.source = Some("job".into());
    let source = match job.inline {
        Some(bytes) => Source::Bytes(bytes),
        None => {
            let requested = job.path.unwrap_or_default();
            let hint = || {
                format!(
                    "put the keystore in a certificate directory ({}) and name it there",
                    dirs(shared)
                )
            };
            match shared.certs.read_job(requested, "keystore", false).await {
                Ok(file) => Source::Bytes(file.bytes),
                Err(JobRefusal::Refused(refused)) => return Err(rejection(refused, hint())),
                Err(JobRefusal::Unusable(_, problem)) => {
                    return Err(unusable(Material::Identity, &problem));
                }
            }
        }
    };
    Ok(IdentitySource::Keystore {
        source,
        password: job.password,
        key_password: job.key_password,
        alias: job.alias,
    })
}

/// A job-named path that is not used; `hint` says where such files belong.
fn rejection(refused: Refused, hint: String) -> Rejection {
    let hint = match refused.kind {
        "keystore.path_not_allowed" => hint,
        _ => "check the file's permissions".into(),
    };
    Rejection {
        kind: refused.kind,
        message: refused.message,
        hint,
    }
}

/// A keystore or trust store the agent read that does not load: the job's error, with the
/// keystore error's own kind (`keystore.wrong_store_password`...).
fn unusable(material: Material, problem: &Problem) -> Rejection {
    Rejection {
        kind: problem.kind(),
        message: format!("{material}: {problem}"),
        hint: problem.hint(),
    }
}

/// The downloader-wide trust store plus the job's own. With only one of them, it goes to the
/// engine as it is (the engine parses the job's within the job's deadline); with both, they
/// are merged into one in-memory bundle.
async fn choose_trust(
    shared: &Shared,
    job: Option<JobTrust>,
    deadline: tokio::time::Instant,
    extra: &mut Extra,
) -> Result<Option<(TrustMode, Option<TrustSource>)>, Rejection> {
    let config = &shared.config;
    let base = match &config.trust_store {
        Some(path) => match shared
            .certs
            .trust(path, config.trust_store_password.as_ref(), Some("trust"))
            .await
        {
            Loaded::Good(loaded, warning) => {
                extra.warnings.extend(warning);
                Some(Ok(loaded))
            }
            Loaded::Bad(_) => Some(Err(TrustSource {
                source: Source::Path(path.clone()),
                password: config.trust_store_password.clone(),
            })),
        },
        None => None,
    };
    let pem = |loaded: &LoadedTrust| TrustSource {
        source: Source::Bytes(loaded.pem.clone()),
        password: None,
    };
    let Some(job) = job else {
        return Ok(base.map(|base| {
            (
                config.trust_mode,
                Some(base.map_or_else(|s| s, |l| pem(&l))),
            )
        }));
    };
    let added = job_trust(shared, &job).await?;
    let has_store = added.is_some() || matches!(base, Some(Ok(_)));
    let mode = match job.mode {
        Some(mode) => mode,
        None if added_only_system(config.trust_mode, has_store) => TrustMode::Both,
        None => config.trust_mode,
    };
    let store = match (base, added) {
        (Some(Ok(base)), Some(added)) => Some(merge_trust(shared, &base, added, deadline).await?),
        (Some(Ok(base)), None) => Some(pem(&base)),
        (_, added) => added,
    };
    Ok(Some((mode, store)))
}

/// The job's own trust store (inline, or named by path and read through the descriptor opened
/// beneath a certificate directory), unparsed.
async fn job_trust(shared: &Shared, job: &JobTrust) -> Result<Option<TrustSource>, Rejection> {
    let password = job.password.clone();
    let bytes = match (&job.inline, &job.path) {
        (Some(bytes), _) => bytes.clone(),
        (None, Some(requested)) => {
            match shared
                .certs
                .read_job(requested.clone(), "trust store", true)
                .await
            {
                Ok(file) if file.bundle => {
                    return Ok(Some(TrustSource {
                        source: Source::Bytes(file.bytes),
                        password: None,
                    }));
                }
                Ok(file) => file.bytes,
                Err(JobRefusal::Refused(refused)) => {
                    let hint = format!(
                        "put the trust store in a certificate directory ({})",
                        dirs(shared)
                    );
                    return Err(rejection(refused, hint));
                }
                Err(JobRefusal::Unusable(path, problem)) => {
                    return Err(Rejection {
                        kind: problem.kind(),
                        message: format!("config.trust: {}: {problem}", path.display()),
                        hint: problem.hint(),
                    });
                }
            }
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(TrustSource {
        source: Source::Bytes(bytes),
        password,
    }))
}

/// The configured trust store's anchors plus the job's store, as one PEM bundle. The job's
/// store is parsed off the async workers, a few at a time, its key derivations bounded by the
/// KDF limits.
async fn merge_trust(
    shared: &Shared,
    base: &LoadedTrust,
    added: TrustSource,
    deadline: tokio::time::Instant,
) -> Result<TrustSource, Rejection> {
    let Source::Bytes(bytes) = added.source else {
        return Ok(added);
    };
    let limits = shared.config.kdf_limits;
    let parsing = shared
        .certs
        .job_trust_anchors(bytes, added.password, limits);
    // An abandoned parse finishes on its own, within the KDF caps and its parsing slot.
    let parsed = tokio::time::timeout_at(deadline, parsing)
        .await
        .map_err(|_| Rejection {
            kind: "timeout",
            message: "config.trust: the job's timeout ran out while its trust store was being \
                      parsed"
                .into(),
            hint: "raise the job timeout, or use a trust store with common key-derivation \
                   parameters (a PEM bundle needs none)"
                .into(),
        })?
        .ok_or_else(|| Rejection {
            kind: "internal",
            message: "config.trust: the parsing task failed".into(),
            hint: "this is a bug in the downloader; please report it".into(),
        })?
        .map_err(|error| Rejection {
            kind: error.kind(),
            message: format!("config.trust: {error}"),
            hint: error.hint_in(&super::words::JobWords),
        })?;
    let mut anchors = base.anchors.clone();
    anchors.extend(parsed);
    Ok(TrustSource {
        source: Source::Bytes(keystore::trust_to_pem(&anchors).into()),
        password: None,
    })
}

/// A job that adds a store to a downloader that trusts only the system roots gets both.
fn added_only_system(mode: TrustMode, has_store: bool) -> bool {
    mode == TrustMode::System && has_store
}

fn dirs(shared: &Shared) -> String {
    let dirs = shared.certs.dirs();
    if dirs.is_empty() {
        return "none configured: set DOWNLOADER_CERT_DIRS".into();
    }
    dirs.iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn rejected(id: Option<String>, method: String, url: String, rejection: Rejection) -> Outcome {
    Outcome {
        id,
        ok: false,
        request: RequestInfo {
            method,
            url: engine::redact_url(&url),
        },
        response: None,
        metrics: Metrics::default(),
        tls: None,
        warnings: Vec::new(),
        error: Some(ErrorInfo {
            kind: rejection.kind,
            message: rejection.message,
            hint: rejection.hint,
        }),
        failure: None,
    }
}

/// Serializes the result with the agent's additions, counts it and logs one line.
fn finish(
    shared: &Shared,
    mut outcome: Outcome,
    extra: Extra,
    host: &str,
    started: Instant,
) -> Value {
    // The engine's remedy, in a job-API client's words (config fields, not CLI flags).
    if let (Some(failure), Some(info)) = (&outcome.failure, outcome.error.as_mut()) {
        info.hint = failure.hint_in(&super::words::JobWords);
    }
    let kind = outcome.kind();
    shared.metrics.record(&outcome, kind);
    let status = outcome
        .response
        .as_ref()
        .map(|response| response.status_code);
    let total_ms = outcome.metrics.total.unwrap_or(outcome.metrics.overall);
    let agent_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    // Job-controlled text is escaped: a CR/LF in it must not start a forged log line.
    let id = crate::log::field(outcome.id.as_deref().unwrap_or(""));
    let method = crate::log::field(&outcome.request.method);
    let host = crate::log::field(host);
    let (id, method, host) = (id.as_ref(), method.as_ref(), host.as_ref());
    match kind {
        None => tracing::info!(id, method, host, status, total_ms, agent_ms, "job"),
        Some(kind) => tracing::info!(id, method, host, error = kind, total_ms, agent_ms, "job"),
    }
    outcome.warnings.extend(extra.warnings);
    let mut value = serde_json::to_value(&outcome).unwrap_or_else(|error| {
        serde_json::json!({"ok": false, "error": {"kind": "internal", "message": error.to_string(), "hint": ""}})
    });
    if let Some(source) = extra.source
        && let Some(certificate) = value
            .pointer_mut("/tls/clientCertificate")
            .and_then(Value::as_object_mut)
    {
        certificate.insert("source".into(), Value::String(source));
    }
    if let (Some(footprint), Some(object)) = (extra.footprint, value.as_object_mut()) {
        object.insert("footprint".into(), Value::String(footprint));
    }
    value
}
