//! The agent's fuzz entry points (`agent::fuzzing`, used by `fuzz/`) on the committed seeds and
//! on the inputs the fuzz targets check for, so a decoder change that breaks the targets' view
//! of the agent fails here first. Inputs a fuzz target finds to crash the agent go here too.

use agent::fuzzing::{Delivery, Handled};

fn seed(name: &str) -> Vec<u8> {
    let path = format!("{}/../../fuzz/seeds/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[test]
fn the_documented_jobs_plan_without_refusal() {
    for (name, count) in [
        ("job/one.json", 1),
        ("job/templates.json", 2),
        ("job/bodies.json", 4),
        ("job/config.json", 1),
    ] {
        let jobs = agent::fuzzing::jobs(&seed(name)).expect(name);
        assert_eq!(jobs.len(), count, "{name}");
        for (index, job) in jobs.into_iter().enumerate() {
            assert_eq!(job, Ok(()), "{name} job {index}");
        }
    }
}

#[test]
fn refusals_are_typed_and_never_echo_a_password() {
    let body = br#"[
        {"url": "http://127.0.0.1:1/", "config": {"client_cert_configuration":
            {"keystorePath": "a.p12", "keystorePassword": 918273645, "bogus": true}}},
        {"url": "http://127.0.0.1:1/", "config": {"no_such_name": 1}},
        {"url": "${missing}"}
    ]"#;
    let jobs = agent::fuzzing::jobs(body).expect("an array of jobs");
    assert_eq!(jobs.len(), 3);
    for job in jobs {
        let refusal = job.expect_err("each job is refused");
        assert_eq!(refusal.kind, "request.invalid", "{refusal:?}");
        assert!(!refusal.message.contains("918273645"), "{refusal:?}");
    }
    let whole = agent::fuzzing::jobs(b"[1, 2").expect_err("not JSON");
    assert_eq!(whole.kind, "api.json");
}

#[test]
fn amqp_messages_are_decided_as_the_worker_does() {
    let job = br#"{"id": "j1", "url": "http://127.0.0.1:1/x"}"#;
    let delivery = |body: &'static [u8], reply: bool| Delivery {
        body,
        reply_to: reply.then(|| "replies".to_owned()),
        max_redeliveries: 2,
        ..Delivery::default()
    };
    assert_eq!(
        agent::fuzzing::amqp_message(&delivery(job, false)),
        Handled::Unanswerable
    );
    assert_eq!(
        agent::fuzzing::amqp_message(&delivery(job, true)),
        Handled::Planned(Ok(()))
    );
    match agent::fuzzing::amqp_message(&delivery(b"[{}]", true)) {
        Handled::Refused(result) => {
            assert_eq!(result["ok"], false);
            assert_eq!(result["error"]["kind"], "request.invalid");
        }
        other => panic!("an array message must be refused, not {other:?}"),
    }
    let poisoned = Delivery {
        redelivered: true,
        agent_count: Some(5),
        ..delivery(job, true)
    };
    match agent::fuzzing::amqp_message(&poisoned) {
        Handled::Refused(result) => {
            assert_eq!(result["error"]["kind"], "amqp.redelivery_limit")
        }
        other => panic!("a message past the cap must be refused, not {other:?}"),
    }
}
