//! The egress policy through the agent: jobs cannot reach the agent itself, in any spelling
//! of its address, directly, through a redirect, a `resolve` pin or a job-chosen proxy.

mod support;

use std::sync::Arc;

use engine::{EgressPolicy, EgressRule};
use serde_json::{Value, json};
use support::upstream;

fn job(url: &str) -> Value {
    json!({"url": url, "config": {"disable_ssl_validation": true}})
}

#[tokio::test]
async fn jobs_to_the_agent_itself_are_denied_in_every_spelling() {
    let agent = support::start(support::config()).await;
    let port = agent.port;
    let hop = upstream::start_optional().await;
    let mut jobs: Vec<Value> = [
        format!("https://127.0.0.1:{port}/metrics"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("https://2130706433:{port}/"),
        format!("https://0.0.0.0:{port}/"),
        format!("https://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/api/v1/jobs"),
    ]
    .iter()
    .map(|url| job(url))
    .collect();
    // A redirect from an allowed upstream to the agent.
    jobs.push(job(
        &hop.url(&format!("/redirect?to=https://127.0.0.1:{port}/metrics"))
    ));
    // A `resolve` pin to the agent's address.
    jobs.push(
        json!({"url": format!("https://agent.test:{port}/metrics"), "config": {
        "disable_ssl_validation": true, "resolve": format!("agent.test:{port}:127.0.0.1")}}),
    );
    // The agent as a job-chosen proxy.
    jobs.push(json!({"url": "http://example.test/", "config": {
        "proxy": format!("http://127.0.0.1:{port}")}}));
    let count = jobs.len();
    let results = agent.jobs(&json!(jobs)).await;
    let results = results.as_array().expect("array");
    assert_eq!(results.len(), count);
    let rule = format!("denied by egress rule 'the agent itself (listen 127.0.0.1:{port})'");
    for result in results {
        let error = &result["error"];
        assert_eq!(error["kind"], "egress.denied", "{result}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&rule), "{message}");
        let hint = error["hint"].as_str().unwrap_or_default();
        assert!(hint.contains("DOWNLOADER_EGRESS_ALLOW"), "{hint}");
        assert!(result["response"].is_null(), "{result}");
    }
    // The redirect was followed up to the agent and stopped there.
    assert_eq!(results[6]["redirects"].as_array().map(Vec::len), Some(1));
    agent.stop().await;
}

#[tokio::test]
async fn an_allow_entry_opens_the_agent_and_a_deny_entry_closes_an_upstream() {
    let upstream = upstream::start_optional().await;
    let mut config = support::config();
    let rules = |text: &str| EgressRule::parse_list(text).expect("rules");
    config.egress = Arc::new(EgressPolicy::new(
        rules(&format!(
            "[::1]:{port}, 127.0.0.1:{port}",
            port = upstream.port
        )),
        rules("127.0.0.1"),
    ));
    let agent = support::start(config).await;
    // The control: allowed, the job reaches the agent's /health.
    let health = agent
        .jobs(&job(&format!("https://127.0.0.1:{}/health", agent.port)))
        .await;
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(health["response"]["statusCode"], 200, "{health}");
    // An explicit deny beats the allow entry covering the same address.
    let denied = agent.jobs(&job(&upstream.url("/"))).await;
    assert_eq!(denied["error"]["kind"], "egress.denied", "{denied}");
    let message = denied["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("(localhost) denied by egress rule 'deny "),
        "{message}"
    );
    agent.stop().await;
}
