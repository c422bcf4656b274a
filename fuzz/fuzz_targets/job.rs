//! The job API's decoder: bytes as the body of `POST /api/v1/jobs` (one job or an array, with
//! templates and `config`), split, parsed, rendered, planned and built into engine jobs. Fails on
//! a panic, on a refusal without a stable kind or a message, and on a password echoed in one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The kinds a job may be refused with before it runs, and the API's own.
const KINDS: &[&str] = &[
    "request.invalid",
    "request.too_large",
    "api.json",
    "api.batch_too_large",
];

fuzz_target!(|data: &[u8]| {
    let refusals = match agent::fuzzing::jobs(data) {
        Ok(jobs) => jobs.into_iter().filter_map(Result::err).collect(),
        Err(refusal) => vec![refusal],
    };
    let secrets = secrets(data);
    for refusal in refusals {
        assert!(KINDS.contains(&refusal.kind), "unexpected kind {refusal:?}");
        assert!(!refusal.message.is_empty() && !refusal.hint.is_empty());
        for secret in &secrets {
            assert!(
                !refusal.message.contains(secret.as_str()),
                "password {secret:?} echoed in {:?}",
                refusal.message
            );
        }
    }
});

/// Password values the input writes exactly once, verbatim (so a message that contains one can
/// only have taken it from the password), and long enough not to occur by chance.
fn secrets(data: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(data);
    let mut found = Vec::new();
    collect(&value, &mut found);
    found.retain(|secret| secret.len() >= 6 && text.matches(secret.as_str()).count() == 1);
    found
}

fn collect(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let secret = matches!(
                    key.as_str(),
                    "keystorePassword" | "keyPassword" | "password"
                );
                match item {
                    Value::String(text) if secret => found.push(text.clone()),
                    Value::Number(number) if secret => found.push(number.to_string()),
                    _ => collect(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}
