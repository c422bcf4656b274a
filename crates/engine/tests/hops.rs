//! Client identities on redirect hops: a hop to another host presents the certificate of the
//! most specific host rule that matches it, and nothing without one (in-process servers that
//! require a client certificate, on loopback).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{STORE, Setup, describe, fixture, identity, start};
use engine::{Engine, HostPattern, IdentitySource, Job, JobBuilder, Outcome, Source, TrustSource};
use keystore::Password;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn keystore_at(path: std::path::PathBuf) -> IdentitySource {
    IdentitySource::Keystore {
        source: Source::Path(path),
        password: Some(Password::from(STORE)),
        key_password: None,
        alias: None,
    }
}

fn pattern(text: &str) -> HostPattern {
    HostPattern::parse(text).expect("pattern")
}

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn body(outcome: &Outcome) -> &str {
    outcome
        .response
        .as_ref()
        .and_then(|response| response.body.text())
        .unwrap_or_default()
}

fn presented(outcome: &Outcome) -> Option<&str> {
    outcome
        .tls
        .as_ref()
        .and_then(|tls| tls.client_certificate.as_ref())
        .map(|certificate| certificate.subject.as_str())
}

/// Two servers that require a client certificate from the fixture CA: `localhost:A` (the
/// job's URL) and `b.localhost:B` (pinned to loopback), plus a job from A to `path` on B.
struct Hosts {
    a: common::Server,
    b: common::Server,
}

impl Hosts {
    async fn start() -> Self {
        Self {
            a: start(Setup::default()).await,
            b: start(Setup::default()).await,
        }
    }

    fn b_url(&self, path: &str) -> String {
        format!("https://b.localhost:{}{path}", self.b.port)
    }

    /// A job to A that redirects to `to`, with A's own certificate and credentials.
    fn job(&self, to: &str) -> JobBuilder {
        Job::builder("GET", self.a.url(&format!("/redirect?to={}", encoded(to))))
            .identity(identity("p256"))
            .header("Authorization", "Bearer t0k")
            .resolve("b.localhost", self.b.port, LOOPBACK)
            .trust_store(TrustSource {
                source: Source::Path(fixture("ca/root.pem")),
                password: None,
            })
    }
}

async fn run(builder: JobBuilder) -> Outcome {
    Engine::new().run(builder.build().expect("job")).await
}

#[tokio::test]
async fn without_a_matching_rule_the_other_host_sees_no_certificate() {
    let hosts = Hosts::start().await;
    let to = hosts.b_url("/headers");
    for rules in [
        Vec::new(),
        // Neither matches b.localhost:B: another domain, and the right host on another port.
        vec![
            (pattern("*.example.test"), identity("rsa2048")),
            (pattern("b.localhost:1"), identity("rsa2048")),
            (pattern("localhost"), identity("rsa2048")),
        ],
    ] {
        let mut job = hosts.job(&to);
        for (hosts, identity) in rules {
            job = job.identity_for_hosts(hosts, identity);
        }
        let outcome = run(job).await;
        assert_eq!(
            outcome.kind(),
            Some("tls.client_cert_required"),
            "{}",
            describe(&outcome)
        );
        assert_eq!(outcome.redirects().len(), 1);
        assert!(outcome.redirects()[0].identity, "A got its certificate");
        let tls = outcome.tls.as_ref().expect("tls facts");
        assert!(tls.client_certificate_requested);
        assert!(tls.client_certificate.is_none(), "{}", describe(&outcome));
    }
}

#[tokio::test]
async fn a_wildcard_rule_gives_the_other_host_exactly_its_certificate() {
    let hosts = Hosts::start().await;
    let job = hosts
        .job(&hosts.b_url("/headers"))
        // Never loaded: no hop goes there.
        .identity_for_hosts(
            pattern("*.example.test"),
            keystore_at(fixture("client/missing.p12")),
        )
        .identity_for_hosts(pattern("*.localhost"), identity("rsa2048"));
    let outcome = run(job).await;
    let text = body(&outcome);
    assert!(
        text.contains(&format!("port={}\n", hosts.b.port)),
        "{}",
        describe(&outcome)
    );
    assert!(text.contains("CN=client-rsa2048\n"), "{text}");
    assert!(text.contains("authorization=-\n"), "{text}");
    assert!(presented(&outcome).is_some_and(|subject| subject.ends_with("CN=client-rsa2048")));
    assert!(outcome.redirects()[0].identity);

    // The most specific rule wins, wherever it was given.
    let job = hosts
        .job(&hosts.b_url("/headers"))
        .identity_for_hosts(pattern("*.localhost"), identity("rsa2048"))
        .identity_for("B.localhost", hosts.b.port, identity("p384"));
    let outcome = run(job).await;
    assert!(
        body(&outcome).contains("CN=client-p384\n"),
        "{}",
        describe(&outcome)
    );

    // The rule's keystore is read when the hop matches it, and its errors are the job's.
    let job = hosts.job(&hosts.b_url("/headers")).identity_for_hosts(
        pattern("*.localhost"),
        keystore_at(fixture("client/missing.p12")),
    );
    let outcome = run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("keystore.unreadable"),
        "{}",
        describe(&outcome)
    );
}

#[tokio::test]
async fn hops_back_home_present_the_jobs_own_certificate_and_flags_stay_accurate() {
    let hosts = Hosts::start().await;
    let optional = start(Setup {
        optional_client_auth: true,
        ..Setup::default()
    })
    .await;
    let home = hosts.a.url("/headers");
    // A -> b.localhost (rule) -> A: A gets its own certificate and credentials again.
    let via_b = hosts.b_url(&format!("/redirect?to={}", encoded(&home)));
    let job = hosts
        .job(&via_b)
        .identity_for_hosts(pattern("*.localhost"), identity("rsa2048"));
    let outcome = run(job).await;
    let text = body(&outcome);
    assert!(text.contains("CN=client-p256\n"), "{}", describe(&outcome));
    assert!(text.contains("authorization=Bearer t0k\n"), "{text}");
    let flags: Vec<bool> = outcome.redirects().iter().map(|hop| hop.identity).collect();
    assert_eq!(flags, [true, true]);

    // A -> another server that only asks (no rule for it) -> A: that hop offered nothing.
    let via_optional = format!(
        "https://127.0.0.1:{}/redirect?to={}",
        optional.port,
        encoded(&home)
    );
    let job = hosts
        .job(&via_optional)
        .identity_for_hosts(pattern("*.localhost"), identity("rsa2048"));
    let outcome = run(job).await;
    assert!(
        body(&outcome).contains("CN=client-p256\n"),
        "{}",
        describe(&outcome)
    );
    let flags: Vec<bool> = outcome.redirects().iter().map(|hop| hop.identity).collect();
    assert_eq!(flags, [true, false]);
}
