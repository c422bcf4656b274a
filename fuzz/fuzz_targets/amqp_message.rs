//! The AMQP worker's message decoding: one delivery (body, `reply_to`, `redelivered`, the
//! redelivery count headers, the cap) to the worker's decision, and the job it would run
//! planned as the job API plans it. The first four bytes choose the delivery's properties, the
//! rest is the body. Fails on a panic and on a decision that breaks the worker's rules.
#![no_main]

use agent::fuzzing::{Delivery, Handled};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let [flags, agent_count, broker_count, cap, body @ ..] = data else {
        return;
    };
    let delivery = Delivery {
        body,
        reply_to: (flags & 1 != 0).then(|| "amq.rabbitmq.reply-to".to_owned()),
        redelivered: flags & 2 != 0,
        agent_count: (flags & 4 != 0).then_some(i64::from(*agent_count as i8)),
        broker_count: (flags & 8 != 0).then_some(i64::from(*broker_count as i8)),
        broker_counts: flags & 16 != 0,
        max_redeliveries: u32::from(cap % 8),
    };
    let handled = agent::fuzzing::amqp_message(&delivery);
    match &handled {
        Handled::Unanswerable => assert!(delivery.reply_to.is_none()),
        Handled::Refused(result) => {
            assert!(delivery.reply_to.is_some());
            assert_eq!(result.get("ok"), Some(&Value::Bool(false)), "{result}");
            let kind = result.pointer("/error/kind").and_then(Value::as_str);
            assert!(kind.is_some_and(|kind| !kind.is_empty()), "{result}");
        }
        Handled::Requeued(count) => assert!(delivery.redelivered && *count > 0),
        Handled::Planned(_) => {
            // Only one JSON object is ever run.
            assert!(serde_json::from_slice::<Value>(body).is_ok_and(|value| value.is_object()));
        }
    }
});
