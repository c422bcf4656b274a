use base64::Engine as _;

use super::*;

#[test]
fn params_are_appended_url_encoded() {
    let job = Job::builder("get", "https://example.test/a?x=1")
        .param("q", "a b&c")
        .build()
        .expect("valid job");
    assert_eq!(job.display_url(), "https://example.test/a?x=1&q=a+b%26c");
    assert_eq!(job.method(), Method::GET);
}

#[test]
fn bad_input_is_request_invalid() {
    for builder in [
        Job::builder("GET", "ftp://example.test/"),
        Job::builder("GET", "not a url"),
        Job::builder("G ET", "https://example.test/"),
        Job::builder("GET", "https://example.test/").header("X-A", "a\r\nInjected: b"),
        Job::builder("GET", "https://example.test/").header("Bad Name", "v"),
        Job::builder("GET", "https://example.test/").trust(TrustMode::Custom),
        Job::builder("GET", "https://example.test/")
            .tls_min(TlsVersion::Tls13)
            .tls_max(TlsVersion::Tls12),
    ] {
        let error = builder.build().expect_err("must be rejected");
        assert_eq!(error.kind(), "request.invalid");
    }
}

#[test]
fn url_credentials_become_a_hidden_authorization_header() {
    let job = Job::builder("GET", "https://user:s3cr3t-pw@example.test/")
        .header("Cookie", "session=c00kie-val")
        .build()
        .expect("valid job");
    assert_eq!(job.display_url(), "https://example.test/");
    assert!(job.headers.contains_key(http::header::AUTHORIZATION));
    let debug = format!("{job:?}");
    assert!(!debug.contains("s3cr3t-pw"), "{debug}");
    assert!(!debug.contains("c00kie-val"), "{debug}");
    assert!(!debug.contains("dXNlcjpzM2NyM3QtcHc"), "{debug}");
}

#[test]
fn url_credentials_are_percent_decoded_exactly() {
    for (userinfo, expected) in [
        ("us%2Ber:p%26ss", &b"us+er:p&ss"[..]),
        ("a+b:c+d", b"a+b:c+d"),
        ("%C3%A9:%ff%00", b"\xc3\xa9:\xff\x00"),
        ("u:100%", b"u:100%"),
        ("u:%4", b"u:%4"),
        ("u:%zz", b"u:%zz"),
        ("u", b"u:"),
    ] {
        let job = Job::builder("GET", format!("https://{userinfo}@example.test/"))
            .build()
            .expect("valid job");
        let token = base64::engine::general_purpose::STANDARD.encode(expected);
        assert_eq!(
            job.headers[http::header::AUTHORIZATION],
            format!("Basic {token}").as_str(),
            "{userinfo}"
        );
    }
}

#[test]
fn numeric_limits_are_refused_not_overflowed() {
    let base = || Job::builder("GET", "https://example.test/");
    let huge = Duration::from_secs(u64::MAX / 2);
    for builder in [
        base().timeout(huge),
        base().timeout(MAX_TIMEOUT + Duration::from_secs(1)),
        base().connect_timeout(huge),
        base().first_byte_timeout(huge),
        base().first_byte_timeout(Duration::ZERO),
        base().keep_alive_idle(huge),
        base().max_redirects(u32::MAX),
    ] {
        let error = builder.build().expect_err("must be refused");
        assert_eq!(error.kind(), "request.invalid", "{error}");
    }
    base()
        .timeout(MAX_TIMEOUT)
        .build()
        .expect("the limit itself is fine");
}

#[test]
fn many_headers_are_refused_before_a_header_map_is_made() {
    // 100,000 headers: more than a header map can hold (building it would panic).
    let mut builder = Job::builder("GET", "https://example.test/");
    for n in 0..100_000 {
        builder = builder.header(format!("x-{n}"), "v");
    }
    let error = builder.build().expect_err("too many headers");
    assert_eq!(error.kind(), "request.invalid");
    assert!(error.to_string().contains("headers"), "{error}");
    let mut builder = Job::builder("GET", "https://example.test/").request_header_limit(1 << 30);
    for n in 0..MAX_HEADER_COUNT + 1 {
        builder = builder.header(format!("x-{n}"), "v");
    }
    let error = builder.build().expect_err("above the count cap");
    assert!(error.to_string().contains("16384"), "{error}");
}

#[test]
fn credential_headers_are_sensitive() {
    let job = Job::builder("GET", "https://example.test/")
        .header("X-Auth-Token", "t0ken-v4l")
        .header("Api-Key", "k3y-v4l")
        .header("X-Trace", "visible")
        .build()
        .expect("valid job");
    assert!(job.headers["x-auth-token"].is_sensitive());
    assert!(job.headers["api-key"].is_sensitive());
    assert!(!job.headers["x-trace"].is_sensitive());
    let debug = format!("{job:?}");
    assert!(
        !debug.contains("t0ken-v4l") && !debug.contains("k3y-v4l"),
        "{debug}"
    );
}

#[test]
fn tls_versions_parse() {
    assert_eq!(TlsVersion::parse("1.2"), Some(TlsVersion::Tls12));
    assert_eq!(TlsVersion::parse("TLSv1.3"), Some(TlsVersion::Tls13));
    assert_eq!(TlsVersion::parse("1.1"), None);
}
