//! Turns what a job learned into its outcome: TLS facts, response, metrics and warnings.

use std::sync::Arc;
use std::time::Instant;

use keystore::{CertificateInfo, EXPIRY_WARNING_DAYS};
use time::OffsetDateTime;

use crate::classify::{self, ChainTop, Phase, Seen};
use crate::error::{Error, HandshakeFacts};
use crate::exchange::{self, Body, Headers};
use crate::job::Job;
use crate::outcome::{ClientCertificate, Outcome, RequestInfo, Response, TlsInfo};
use crate::run::{Handshake, Progress};
use crate::timing::IoMarks;
use crate::tls::Observed;

/// The error pages nginx serves when `ssl_verify_client on` fails after the handshake.
const NGINX_NO_CERTIFICATE: &str = "No required SSL certificate was sent";
const NGINX_CERTIFICATE_ERROR: &str = "The SSL certificate error";

/// Client-authentication facts so far, and the top of the server's chain.
pub(crate) fn facts(progress: &Progress) -> (HandshakeFacts, ChainTop) {
    let observed = observed(progress);
    let leaf = progress.identity.as_ref().map(|loaded| &loaded.leaf);
    let presented = leaf.filter(|_| observed.presented);
    let facts = HandshakeFacts {
        configured: progress.identity.is_some(),
        requested: observed.requested,
        acceptable_issuers: observed.acceptable_issuers,
        presented_subject: presented.map(|leaf| leaf.subject.clone()),
        presented_issuer: presented.map(|leaf| leaf.issuer.clone()),
        presented_not_after: presented.map(|leaf| leaf.not_after.clone()),
    };
    let parsed;
    let chain: &[CertificateInfo] = match &observed.chain_info {
        Some(chain) => chain,
        None => {
            // Only the top certificate is needed here.
            parsed = observed
                .server_chain
                .last()
                .and_then(|der| CertificateInfo::from_der(der).ok());
            parsed.as_slice()
        }
    };
    let top = chain.last().map_or_else(ChainTop::default, |top| ChainTop {
        issuer: Some(top.issuer.clone()),
        leaf_only: observed.server_chain.len() == 1 && !top.is_ca && !top.self_issued,
    });
    (facts, top)
}

/// What the job's handshake showed: the one of the reused connection, or this job's own.
fn observed(progress: &Progress) -> Observed {
    match &progress.handshake {
        Some(handshake) => handshake.observed.clone(),
        None => progress.recorder.snapshot(),
    }
}

/// The handshake prepared for reporting, with the server chain parsed: made once per
/// connection, when it goes to the pool.
pub(crate) fn handshake(progress: &Progress) -> Handshake {
    let mut observed = progress.recorder.snapshot();
    observed.chain_info = Some(observed.chain_info());
    let info = Arc::new(tls_info(progress, &observed));
    Handshake { observed, info }
}

/// An HTTP-layer failure on the job's connection, classified with what its handshake showed.
pub(crate) fn exchange_error(
    error: &hyper::Error,
    job: &Job,
    host: &str,
    progress: &Progress,
    marks: &IoMarks,
    phase: Phase,
) -> Error {
    let (facts, top) = facts(progress);
    let seen = Seen {
        facts: &facts,
        server_name: job.sni.as_deref().unwrap_or(host),
        top: &top,
    };
    classify::exchange(error, marks.read_error().as_ref(), &seen, phase)
}

/// The one outcome of a job.
pub(crate) fn outcome(job: &Job, mut progress: Progress, result: Result<(), Error>) -> Outcome {
    let now = OffsetDateTime::now_utc();
    let mut warnings = Vec::new();
    let tls = progress.tls_started.then(|| match &progress.handshake {
        Some(handshake) => {
            let chain = handshake.observed.chain_info.as_deref();
            if let Some(leaf) = chain.and_then(|chain| chain.first()) {
                expiry_warning(&mut warnings, "server", leaf, now);
            }
            handshake.info.clone()
        }
        None => {
            let mut observed = progress.recorder.snapshot();
            let chain = observed.chain_info();
            if let Some(leaf) = chain.first() {
                expiry_warning(&mut warnings, "server", leaf, now);
            }
            observed.chain_info = Some(chain);
            Arc::new(tls_info(&progress, &observed))
        }
    });
    if let Some(loaded) = &progress.identity {
        expiry_warning(&mut warnings, "client", &loaded.leaf, now);
    }
    if job.insecure && job.is_tls() {
        warnings.push("the server certificate was not verified (insecure mode)".to_owned());
    }
    let head = progress.head.take();
    let response = head.map(|parts| {
        let read = progress.body.as_ref();
        let body = read
            .map(|read| read.body.clone())
            .unwrap_or_else(|| Body::new(bytes::Bytes::new()));
        Response {
            status_code: parts.status.as_u16(),
            reason: parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|reason| {
                    String::from_utf8_lossy(reason.as_bytes())
                        .into_owned()
                        .into()
                })
                .or_else(|| parts.status.canonical_reason().map(Into::into))
                .unwrap_or_default(),
            http_version: exchange::version_text(parts.version),
            headers: Headers::new(parts.headers),
            size: read.map_or(0, |read| read.size),
            decoded: read.and_then(|read| read.decoded.clone()),
            url: job.display_url(),
            body_encoding: body.encoding(),
            body,
            truncated: read.is_some_and(|read| read.truncated),
        }
    });
    if let (Some(response), Some(tls)) = (&response, &tls) {
        client_auth_warnings(&mut warnings, &progress, response, tls);
    }
    let mut outcome = Outcome {
        id: job.id.clone(),
        ok: true,
        // The job as given (not this hop): `Engine::run` fills it in.
        request: RequestInfo::default(),
        response,
        metrics: {
            let mut metrics = progress.timeline.metrics(Instant::now());
            metrics.connection_reused = progress.reused;
            metrics
        },
        tls,
        warnings,
        error: None,
        failure: None,
    };
    if let Err(error) = result {
        outcome.fail(error);
    }
    outcome
}

/// The outcome's `tls` part.
fn tls_info(progress: &Progress, observed: &Observed) -> TlsInfo {
    let negotiated = progress.negotiated.clone();
    let presented = progress
        .identity
        .as_ref()
        .filter(|_| observed.presented)
        .map(|loaded| ClientCertificate::from(&loaded.leaf));
    TlsInfo {
        version: negotiated.as_ref().and_then(|n| n.version.clone()),
        cipher: negotiated.as_ref().and_then(|n| n.cipher.clone()),
        alpn: negotiated.and_then(|n| n.alpn),
        sni: progress.sni.clone(),
        verified: observed.verified,
        server_certificates: observed
            .chain_info()
            .iter()
            .cloned()
            .map(Into::into)
            .collect(),
        client_certificate_requested: observed.requested,
        acceptable_issuers: observed.acceptable_issuers.clone(),
        client_certificate: presented,
    }
}

fn expiry_warning(
    warnings: &mut Vec<String>,
    whose: &str,
    leaf: &CertificateInfo,
    now: OffsetDateTime,
) {
    let name = || {
        leaf.common_name()
            .map(|cn| format!("CN={cn}"))
            .unwrap_or_else(|| leaf.subject.clone())
    };
    if now.unix_timestamp() < leaf.not_before_unix {
        warnings.push(format!(
            "{whose} certificate {} is not valid before {}",
            name(),
            leaf.not_before
        ));
        return;
    }
    let days = leaf.days_left(now);
    if days < 0 {
        warnings.push(format!(
            "{whose} certificate {} expired {} days ago ({})",
            name(),
            -days,
            leaf.not_after
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        warnings.push(format!(
            "{whose} certificate {} expires in {days} days",
            name()
        ));
    }
}

fn client_auth_warnings(
    warnings: &mut Vec<String>,
    progress: &Progress,
    response: &Response,
    tls: &TlsInfo,
) {
    let configured = progress.identity.is_some();
    if configured && !tls.client_certificate_requested {
        warnings.push(
            "a client certificate was configured but the server did not ask for one, so it \
             was not sent"
                .to_owned(),
        );
    }
    if response.status_code != 400 {
        return;
    }
    let (facts, _) = facts(progress);
    let Some(text) = response.body.text() else {
        return;
    };
    if text.contains(NGINX_NO_CERTIFICATE) {
        let error = Error::ClientCertRequired {
            facts: Box::new(facts),
        };
        warnings.push(format!(
            "the server answered 400 \"{NGINX_NO_CERTIFICATE}\": it requires a client \
             certificate and none was sent; {}",
            error.hint()
        ));
    } else if text.contains(NGINX_CERTIFICATE_ERROR) {
        let subject = facts.presented_subject.clone().unwrap_or_default();
        let error = Error::ClientCertRejected {
            alert: "HTTP 400".into(),
            facts: Box::new(facts),
        };
        warnings.push(format!(
            "the server answered 400 \"{NGINX_CERTIFICATE_ERROR}\": it rejected the client \
             certificate {subject} after the handshake (untrusted issuer, expired or \
             revoked); {}",
            error.hint()
        ));
    }
}
