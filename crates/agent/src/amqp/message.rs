//! One job message in, one decision out: a pure function of the delivery's bytes, properties
//! and `redelivered` flag (no I/O, no clock), so it can be unit-tested and fuzzed.
//!
//! The redelivery count: a quorum queue counts deliveries itself (`x-delivery-count`, trusted
//! only with `DOWNLOADER_RABBIT_QUEUE_TYPE=quorum`, because on a classic queue that header is
//! whatever the publisher wrote). On a classic queue the broker only says `redelivered`, so the
//! agent keeps the count in the message: a redelivered message is published again with
//! [`REDELIVERIES_HEADER`] raised by one, and the redelivered copy is acknowledged without being
//! run. The count therefore survives a downloader that crashes on the job.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

use crate::api;

/// The header in which the agent counts a message's earlier deliveries that ended without an
/// answer (classic queues).
pub(crate) const REDELIVERIES_HEADER: &str = "x-downloader-redeliveries";
/// The header in which a quorum queue counts a message's earlier deliveries.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// What the decision depends on besides the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Redeliveries after which a message is refused rather than run.
    pub(crate) max_redeliveries: u32,
    /// Whether the broker counts deliveries (`x-delivery-count`, quorum queues).
    pub(crate) broker_counts: bool,
    /// The largest message body run as a job.
    pub(crate) max_body: u64,
}

/// What to do with one job message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// No `reply_to`: reject without running, since the result would have nowhere to go
    /// (dead-lettered when configured).
    Unanswerable,
    /// Publish `result` to `reply_to`, then reject without requeue (dead-lettered when
    /// configured): a malformed or oversized message, or one past the redelivery cap.
    Refuse {
        /// The typed error result.
        result: Value,
        /// Whether the message was past the redelivery cap (for the counters).
        poisoned: bool,
    },
    /// Redelivered on a queue that does not count deliveries: publish a copy carrying
    /// `redeliveries` in [`REDELIVERIES_HEADER`], then acknowledge this delivery unrun.
    Requeue {
        /// The count the copy carries.
        redeliveries: u32,
    },
    /// Run the job; its result says `redelivered: true` when `redeliveries > 0`.
    Run {
        /// The job object.
        job: Value,
        /// Earlier deliveries of this message that ended without an answer.
        redeliveries: u32,
    },
}

/// Decides what becomes of one delivery: `body` and `properties` as received, `redelivered` as
/// the broker flagged it.
pub(crate) fn decode_message(
    body: &[u8],
    properties: &BasicProperties,
    redelivered: bool,
    rules: &Rules,
) -> Decision {
    let has_reply = properties
        .reply_to()
        .as_ref()
        .is_some_and(|queue| !queue.as_str().is_empty());
    if !has_reply {
        return Decision::Unanswerable;
    }
    let body_len = u64::try_from(body.len()).unwrap_or(u64::MAX);
    if body_len > rules.max_body {
        return Decision::Refuse {
            result: refusal(
                None,
                "request.too_large",
                format!(
                    "the job message is {body_len} bytes, over the limit of {} bytes",
                    rules.max_body
                ),
                "keep job messages under DOWNLOADER_MAX_BODY",
            ),
            poisoned: false,
        };
    }
    let (redeliveries, requeue) = redeliveries(properties.headers().as_ref(), redelivered, rules);
    if redeliveries > rules.max_redeliveries {
        let raw = parse(body).ok();
        let mut result = refusal(
            raw.as_ref(),
            "amqp.redelivery_limit",
            format!(
                "the job message was delivered {} times without an answer (at most {} \
                 redeliveries); it is not run again",
                redeliveries.saturating_add(1),
                rules.max_redeliveries
            ),
            "a job that crashes or stalls its downloader comes back after each crash: see the \
             downloaders' logs for what it did; DOWNLOADER_RABBIT_MAX_REDELIVERIES sets the cap",
        );
        mark_redelivered(&mut result);
        return Decision::Refuse {
            result,
            poisoned: true,
        };
    }
    if requeue {
        return Decision::Requeue { redeliveries };
    }
    match parse(body) {
        Ok(job) => Decision::Run { job, redeliveries },
        Err(problem) => {
            let mut result = refusal(
                None,
                "request.invalid",
                problem,
                "send one job as a JSON object per message (see docs/job-api.md)",
            );
            if redeliveries > 0 {
                mark_redelivered(&mut result);
            }
            Decision::Refuse {
                result,
                poisoned: false,
            }
        }
    }
}

/// The earlier deliveries of a message that ended without an answer, and whether this delivery
/// must be requeued as a counted copy (a classic queue's redelivery) rather than decided now.
fn redeliveries(headers: Option<&FieldTable>, redelivered: bool, rules: &Rules) -> (u32, bool) {
    let agent_count = headers.and_then(|table| count(table, REDELIVERIES_HEADER));
    let broker_count = headers
        .filter(|_| rules.broker_counts)
        .and_then(|table| count(table, DELIVERY_COUNT_HEADER));
    match broker_count {
        Some(broker) => (broker.max(agent_count.unwrap_or(0)), false),
        None => (
            agent_count
                .unwrap_or(0)
                .saturating_add(u32::from(redelivered)),
            redelivered,
        ),
    }
}

/// The properties of the copy that carries `redeliveries`: the same as `properties`, with
/// [`REDELIVERIES_HEADER`] set.
pub(crate) fn requeued_properties(
    properties: &BasicProperties,
    redeliveries: u32,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        REDELIVERIES_HEADER.into(),
        AMQPValue::LongUInt(redeliveries),
    );
    properties.clone().with_headers(headers)
}

/// Adds `"redelivered": true` to a result object.
pub(crate) fn mark_redelivered(result: &mut Value) {
    if let Some(object) = result.as_object_mut() {
        object.insert("redelivered".into(), Value::Bool(true));
    }
}

/// A job message is one JSON object.
fn parse(data: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(data) {
        Ok(object @ Value::Object(_)) => Ok(object),
        Ok(Value::Array(_)) => Err("a job message holds one job object, not an array".into()),
        Ok(_) => Err("a job message must be a JSON object".into()),
        Err(error) => Err(format!("the message body is not valid JSON: {error}")),
    }
}

/// A count header as a whole number (any integer type; negative counts as 0).
fn count(headers: &FieldTable, name: &str) -> Option<u32> {
    let value = headers.inner().get(name)?;
    let number = match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    };
    Some(u32::try_from(number.max(0)).unwrap_or(u32::MAX))
}

/// A typed error result for a message that is not run (`raw`, when it parsed, names the job).
fn refusal(raw: Option<&Value>, kind: &str, message: String, hint: &str) -> Value {
    let (id, (method, url)) = match raw {
        Some(raw) => (api::job_id(raw), api::job_request(raw)),
        None => (None, (String::new(), String::new())),
    };
    json!({
        "id": id,
        "ok": false,
        "request": {"method": method, "url": engine::redact_url(&url)},
        "error": {"kind": kind, "message": message, "hint": hint},
    })
}

#[cfg(test)]
mod tests {
    use lapin::types::ShortString;

    use super::*;

    const RULES: Rules = Rules {
        max_redeliveries: 2,
        broker_counts: false,
        max_body: 1024,
    };
    const JOB: &[u8] = br#"{"id": "j1", "url": "http://127.0.0.1:1/x"}"#;

    fn properties(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert(ShortString::from(*name), value.clone());
        }
        BasicProperties::default()
            .with_reply_to("replies".into())
            .with_headers(table)
    }

    fn kind(decision: &Decision) -> &str {
        match decision {
            Decision::Refuse { result, .. } => result["error"]["kind"].as_str().unwrap_or(""),
            _ => "",
        }
    }

    #[test]
    fn a_first_delivery_runs() {
        let decision = decode_message(JOB, &properties(&[]), false, &RULES);
        let Decision::Run { job, redeliveries } = decision else {
            panic!("{decision:?}");
        };
        assert_eq!((job["id"].as_str(), redeliveries), (Some("j1"), 0));
    }

    #[test]
    fn without_reply_to_nothing_runs() {
        let bare = BasicProperties::default();
        assert_eq!(
            decode_message(JOB, &bare, false, &RULES),
            Decision::Unanswerable
        );
        let empty = BasicProperties::default().with_reply_to("".into());
        assert_eq!(
            decode_message(b"junk", &empty, true, &RULES),
            Decision::Unanswerable
        );
    }

    #[test]
    fn malformed_and_oversized_messages_are_refused() {
        for body in [&b"not json"[..], b"[{}]", b"42", b""] {
            let decision = decode_message(body, &properties(&[]), false, &RULES);
            assert_eq!(kind(&decision), "request.invalid", "{decision:?}");
        }
        let big = vec![b' '; 1025];
        let decision = decode_message(&big, &properties(&[]), false, &RULES);
        assert_eq!(kind(&decision), "request.too_large", "{decision:?}");
    }

    #[test]
    fn classic_queues_count_in_the_agent_header() {
        // Redelivered without a count: republished with 1, not run.
        let decision = decode_message(JOB, &properties(&[]), true, &RULES);
        assert_eq!(decision, Decision::Requeue { redeliveries: 1 });
        // The copy (not flagged) runs, marked as a redelivery.
        let copy = properties(&[(REDELIVERIES_HEADER, AMQPValue::LongUInt(2))]);
        let decision = decode_message(JOB, &copy, false, &RULES);
        assert!(
            matches!(
                decision,
                Decision::Run {
                    redeliveries: 2,
                    ..
                }
            ),
            "{decision:?}"
        );
        // Its redelivery is past the cap: refused with the job's id.
        let decision = decode_message(JOB, &copy, true, &RULES);
        assert_eq!(kind(&decision), "amqp.redelivery_limit", "{decision:?}");
        let Decision::Refuse { result, poisoned } = decision else {
            panic!("refused");
        };
        assert!(poisoned);
        assert_eq!(result["id"], "j1");
        assert_eq!(result["redelivered"], true);
        assert_eq!(result["request"]["url"], "http://127.0.0.1:1/x");
        assert!(
            result["error"]["hint"]
                .as_str()
                .is_some_and(|h| !h.is_empty())
        );
    }

    #[test]
    fn a_forged_delivery_count_means_nothing_on_a_classic_queue() {
        let forged = properties(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(0))]);
        assert_eq!(
            decode_message(JOB, &forged, true, &RULES),
            Decision::Requeue { redeliveries: 1 }
        );
    }

    #[test]
    fn quorum_queues_count_in_the_broker_header() {
        let rules = Rules {
            broker_counts: true,
            ..RULES
        };
        let counted = |n: i64| properties(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(n))]);
        let decision = decode_message(JOB, &counted(2), true, &rules);
        assert!(
            matches!(
                decision,
                Decision::Run {
                    redeliveries: 2,
                    ..
                }
            ),
            "{decision:?}"
        );
        let decision = decode_message(JOB, &counted(3), true, &rules);
        assert_eq!(kind(&decision), "amqp.redelivery_limit", "{decision:?}");
        // Without the broker's header (not a quorum queue after all): the agent counts.
        assert_eq!(
            decode_message(JOB, &properties(&[]), true, &rules),
            Decision::Requeue { redeliveries: 1 }
        );
        // Negative or huge counts neither wrap nor panic.
        let decision = decode_message(JOB, &counted(-5), true, &rules);
        assert!(
            matches!(
                decision,
                Decision::Run {
                    redeliveries: 0,
                    ..
                }
            ),
            "{decision:?}"
        );
        let decision = decode_message(JOB, &counted(i64::MAX), true, &rules);
        assert_eq!(kind(&decision), "amqp.redelivery_limit");
    }

    #[test]
    fn a_malformed_message_past_the_cap_is_refused_for_the_cap() {
        let copy = properties(&[(REDELIVERIES_HEADER, AMQPValue::LongUInt(u32::MAX))]);
        let decision = decode_message(b"{not json", &copy, true, &RULES);
        assert_eq!(kind(&decision), "amqp.redelivery_limit", "{decision:?}");
    }

    #[test]
    fn a_refused_job_keeps_no_url_password() {
        let job = br#"{"id": "j2", "url": "https://user:s3cret-pw@host/"}"#;
        let copy = properties(&[(REDELIVERIES_HEADER, AMQPValue::LongUInt(2))]);
        let decision = decode_message(job, &copy, true, &RULES);
        assert_eq!(kind(&decision), "amqp.redelivery_limit", "{decision:?}");
        let Decision::Refuse { result, .. } = decision else {
            panic!("refused");
        };
        let text = result.to_string();
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert_eq!(result["request"]["url"], "https://user:***@host/");
    }

    #[test]
    fn requeued_copies_keep_their_properties() {
        let original = properties(&[("trace", AMQPValue::LongUInt(7))])
            .with_correlation_id("c-1".into())
            .with_delivery_mode(2);
        let copy = requeued_properties(&original, 3);
        assert_eq!(
            copy.correlation_id().as_ref().map(|c| c.as_str()),
            Some("c-1")
        );
        assert_eq!(copy.delivery_mode(), &Some(2));
        let headers = copy.headers().clone().unwrap_or_default();
        assert_eq!(count(&headers, REDELIVERIES_HEADER), Some(3));
        assert_eq!(count(&headers, "trace"), Some(7));
    }
}
