//! The JSON job: parsing, checks and secrets kept out of `Debug`.

use super::*;

#[test]
fn a_json_job_builds() {
    let spec: JobSpec = serde_json::from_str(
        r#"{"id":"7","method":"post","url":"https://localhost:8443/p",
            "params":{"a":"1","b":["2","3"]},
            "headers":{"Authorization":"Bearer t0k3n-secret"},
            "body":"aGk=","bodyEncoding":"base64",
            "options":{"clientCert":{"keystorePath":"/x.p12","keystorePassword":"pw-s3cret"},
                       "resolve":["localhost:8443:127.0.0.1"],"tlsMin":"1.3","timeout":2.5}}"#,
    )
    .expect("valid JSON");
    let debug = format!("{spec:?}");
    assert!(
        !debug.contains("pw-s3cret") && !debug.contains("t0k3n-secret"),
        "{debug}"
    );
    let job = spec.into_job().expect("valid job");
    assert_eq!(job.display_url(), "https://localhost:8443/p?a=1&b=2&b=3");
    assert_eq!(&job.body[..], b"hi");
    assert_eq!(job.timeout(), Duration::from_millis(2500));
    let debug = format!("{job:?}");
    assert!(
        !debug.contains("pw-s3cret") && !debug.contains("t0k3n-secret"),
        "{debug}"
    );
}

#[test]
fn forms_redirects_proxies_and_keep_alive_from_json() {
    let spec: JobSpec = serde_json::from_str(
        r#"{"method":"POST","url":"https://a.test/","form":{"a":"1","b":["2","3"]},
            "options":{"follow_redirects":"true","maxRedirects":3,"keepAlive":true,
                       "proxy_configuration":{"*":{"address":"p.test","port":3128,
                           "username":"u","password":"pr0xy-s3cret"}}}}"#,
    )
    .expect("valid JSON");
    assert!(!format!("{spec:?}").contains("pr0xy-s3cret"));
    let job = spec.into_job().expect("valid job");
    assert_eq!(&job.body[..], b"a=1&b=2&b=3");
    assert_eq!(job.http_options.follow_redirects, Some(true));
    assert_eq!(job.http_options.max_redirects, 3);
    assert!(job.http_options.keep_alive);
    assert!(!format!("{job:?}").contains("pr0xy-s3cret"));
    let spec: JobSpec = serde_json::from_str(
        r#"{"url":"https://a.test/","multipart":[{"name":"f","data":"AAE=",
            "filename":"x.bin"}],"options":{"proxy":"http://u:pr0xy-s3cret@p.test:1"}}"#,
    )
    .expect("valid JSON");
    assert!(!format!("{spec:?}").contains("pr0xy-s3cret"));
    let job = spec.into_job().expect("valid job");
    assert!(job.body.windows(2).any(|w| w == [0, 1]));
    assert!(!format!("{job:?}").contains("pr0xy-s3cret"));
}

#[test]
fn host_certs_and_keep_alive_idle_from_json() {
    let spec: JobSpec = serde_json::from_str(
        r#"{"url":"https://a.test/","options":{"keepAlive":true,"keepAliveIdle":2.5,
            "hostCerts":[{"hosts":["*.b.test","c.test:8443"],
                          "clientCert":{"path":"/b.p12","password":"h0st-s3cret"}},
                         {"hosts":["*"],
                          "clientCert":{"path":"/cert.pem","keyPath":"/key.pem"}}]}}"#,
    )
    .expect("valid JSON");
    assert!(!format!("{spec:?}").contains("h0st-s3cret"));
    let job = spec.into_job().expect("valid job");
    assert_eq!(job.http_options.idle_limit, Duration::from_millis(2500));
    let patterns: Vec<String> = job
        .http_options
        .host_identities
        .iter()
        .map(|(pattern, _)| pattern.to_string())
        .collect();
    assert_eq!(patterns, ["*.b.test", "c.test:8443", "*"]);
    assert!(matches!(
        job.http_options.host_identities[2].1,
        IdentitySource::Pair { .. }
    ));
    assert!(!format!("{job:?}").contains("h0st-s3cret"));
    for (options, needle) in [
        (r#"{"keepAliveIdle":0}"#, "keepAliveIdle"),
        (r#"{"keepAliveIdle":-1}"#, "keepAliveIdle"),
        (
            r#"{"hostCerts":[{"hosts":[],"clientCert":{"path":"/b.p12"}}]}"#,
            "hostCerts[0] needs at least one host",
        ),
        (
            r#"{"hostCerts":[{"hosts":["a.*.test"],"clientCert":{"path":"/b.p12"}}]}"#,
            "hostCerts[0]: 'a.*.test' is not a host pattern",
        ),
        (
            r#"{"hostCerts":[{"hosts":["b.test"],"clientCert":{}}]}"#,
            "hostCerts[0].clientCert needs exactly one of path and data",
        ),
    ] {
        let spec: JobSpec = serde_json::from_str(&format!(
            r#"{{"url":"https://a.test/","options":{options}}}"#
        ))
        .expect("valid JSON");
        let error = spec.into_job().expect_err(options);
        assert!(error.to_string().contains(needle), "{error}");
    }
    let unknown = serde_json::from_str::<JobSpec>(
        r#"{"url":"https://a.test/","options":{"hostCerts":[{"host":["b.test"],
            "clientCert":{"path":"/b.p12"}}]}}"#,
    );
    assert!(unknown.is_err());
}

#[test]
fn resolve_pins_parse() {
    let (host, port, address) = parse_resolve("a.test:443:[::1]").expect("valid");
    assert_eq!((host.as_str(), port), ("a.test", 443));
    assert!(address.is_loopback());
    assert!(parse_resolve("a.test:x:127.0.0.1").is_err());
}
