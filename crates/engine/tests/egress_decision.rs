//! The egress policy's decision function for every address form, every default, CIDR edges,
//! ports, host patterns and the precedence of deny over allow. Nothing here connects anywhere.

use std::net::{IpAddr, SocketAddr};

use engine::{Decision, EgressPolicy, EgressRule, EgressRuleError};

fn rules(text: &str) -> Vec<EgressRule> {
    EgressRule::parse_list(text).expect("rules")
}

fn policy_of(deny: &str, allow: &str) -> EgressPolicy {
    EgressPolicy::new(rules(deny), rules(allow))
}

fn at(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

/// The rule that denies `address` (for the name `host`), or `None` when it is allowed.
fn denied_by(policy: &EgressPolicy, host: &str, address: &str) -> Option<String> {
    match policy.decide(host, at(address)) {
        Decision::Denied { rule, .. } => Some(rule),
        _ => None,
    }
}

/// The address the URL parser makes of a URL's host, as the engine connects to it.
fn url_address(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("url");
    let port = url.port_or_known_default().expect("port");
    let ip: IpAddr = match url.host().expect("host") {
        url::Host::Ipv4(ip) => ip.into(),
        url::Host::Ipv6(ip) => ip.into(),
        url::Host::Domain(name) => panic!("{name} is not an address"),
    };
    SocketAddr::new(ip, port)
}

#[test]
fn defaults_deny_unspecified_link_local_and_metadata_and_allow_the_rest() {
    let policy = EgressPolicy::default();
    for (address, rule) in [
        ("0.0.0.0:80", "the unspecified address (0.0.0.0/8)"),
        ("0.255.255.255:80", "the unspecified address (0.0.0.0/8)"),
        ("[::]:80", "the unspecified address (::)"),
        ("169.254.169.254:80", "cloud metadata (169.254.169.254)"),
        ("[fd00:ec2::254]:80", "cloud metadata (fd00:ec2::254)"),
        ("100.100.100.200:80", "cloud metadata (100.100.100.200)"),
        ("169.254.0.1:443", "link-local (169.254.0.0/16)"),
        ("169.254.255.255:443", "link-local (169.254.0.0/16)"),
        ("[fe80::1]:443", "link-local (fe80::/10)"),
        ("[febf:ffff::1]:443", "link-local (fe80::/10)"),
        // IPv4-mapped and IPv4-compatible IPv6 are decided as the IPv4 address they carry.
        (
            "[::ffff:169.254.169.254]:80",
            "cloud metadata (169.254.169.254)",
        ),
        ("[::ffff:0.0.0.0]:80", "the unspecified address (0.0.0.0/8)"),
        ("[::169.254.1.1]:80", "link-local (169.254.0.0/16)"),
    ] {
        assert_eq!(
            denied_by(&policy, "h", address).as_deref(),
            Some(rule),
            "{address}"
        );
    }
    for address in [
        "127.0.0.1:8819",
        "127.255.255.254:1",
        "[::1]:8819",
        "[::ffff:127.0.0.1]:8819",
        "10.1.2.3:443",
        "172.16.0.1:443",
        "192.168.1.1:443",
        "[fd12::1]:443",
        "[fec0::1]:443",
        "169.253.255.255:80",
        "169.255.0.0:80",
        "1.0.0.0:80",
        "100.100.100.201:80",
        "[fd00:ec2::253]:80",
    ] {
        assert_eq!(
            policy.decide("h", at(address)),
            Decision::Allowed,
            "{address}"
        );
    }
}

#[test]
fn every_url_spelling_of_an_address_is_decided_as_that_address() {
    let policy = EgressPolicy::default();
    policy.listening(at("127.0.0.1:8819"));
    for url in [
        "https://127.0.0.1:8819/metrics",
        "https://[::ffff:127.0.0.1]:8819/",
        "https://[::ffff:7f00:1]:8819/",
        "https://2130706433:8819/",
        "https://0x7f000001:8819/",
        "https://0177.0.0.1:8819/",
        "https://127.1:8819/",
        "https://0.0.0.0:8819/",
        "https://[::]:8819/",
    ] {
        let address = url_address(url);
        let decision = policy.decide(&address.ip().to_string(), address);
        assert_eq!(
            decision,
            Decision::Denied {
                rule: "the agent itself (listen 127.0.0.1:8819)".into(),
                explicit: false
            },
            "{url} ({address})"
        );
    }
    // Another port, or another loopback address, is not the agent.
    assert_eq!(
        policy.decide("127.0.0.1", url_address("https://127.0.0.1:8820/")),
        Decision::Allowed
    );
    assert_eq!(
        policy.decide("127.0.0.2", url_address("https://127.0.0.2:8819/")),
        Decision::Allowed
    );
    assert!(
        policy
            .decide("169.254.169.254", url_address("http://2852039166/"))
            .is_denied(),
        "169.254.169.254 as a decimal number"
    );
}

#[test]
fn an_agent_on_the_unspecified_address_is_every_local_address_on_its_port() {
    for listen in ["0.0.0.0:8819", "[::]:8819"] {
        let policy = EgressPolicy::default();
        policy.listening(at(listen));
        let rule = format!("the agent itself (listen {listen})");
        for address in [
            "127.0.0.1:8819",
            "127.3.4.5:8819",
            "[::1]:8819",
            "[::ffff:127.0.0.1]:8819",
            "0.0.0.0:8819",
            "[::]:8819",
        ] {
            assert_eq!(
                denied_by(&policy, "h", address),
                Some(rule.clone()),
                "{listen}: {address}"
            );
        }
        // Not local (a documentation address no host has): allowed; other ports too.
        assert_eq!(policy.decide("h", at("192.0.2.1:8819")), Decision::Allowed);
        assert_eq!(policy.decide("h", at("127.0.0.1:8818")), Decision::Allowed);
    }
}

#[test]
fn cidr_edges_and_ports() {
    let policy = policy_of(
        "10.0.0.0/8, 192.168.1.0/25:443, [fd00::/8]:8443, 127.0.0.1:9000, ::1, 172.16.5.4/12",
        "",
    );
    for (address, rule) in [
        ("10.0.0.0:80", Some("deny 10.0.0.0/8")),
        ("10.255.255.255:80", Some("deny 10.0.0.0/8")),
        ("[::ffff:10.9.9.9]:80", Some("deny 10.0.0.0/8")),
        ("11.0.0.0:80", None),
        ("9.255.255.255:80", None),
        ("192.168.1.0:443", Some("deny 192.168.1.0/25:443")),
        ("192.168.1.127:443", Some("deny 192.168.1.0/25:443")),
        ("192.168.1.128:443", None),
        ("192.168.1.1:80", None),
        ("[fd00::1]:8443", Some("deny [fd00::/8]:8443")),
        ("[fdff:ffff::1]:8443", Some("deny [fd00::/8]:8443")),
        ("[fe00::1]:8443", None),
        ("[fd00::1]:443", None),
        ("127.0.0.1:9000", Some("deny 127.0.0.1:9000")),
        ("127.0.0.1:9001", None),
        ("[::1]:1", Some("deny ::1")),
        ("[::1]:65535", Some("deny ::1")),
        // Host bits past the prefix are ignored: 172.16.5.4/12 is 172.16.0.0/12.
        ("172.31.255.255:1", Some("deny 172.16.5.4/12")),
        ("172.32.0.0:1", None),
    ] {
        assert_eq!(
            denied_by(&policy, "h", address).as_deref(),
            rule,
            "{address}"
        );
    }
    let all = policy_of("0.0.0.0/0, ::/0", "");
    assert!(all.decide("h", at("8.8.8.8:53")).is_denied());
    assert!(all.decide("h", at("[2001:db8::1]:53")).is_denied());
}

#[test]
fn host_patterns_match_names_and_addresses_match_whatever_the_name() {
    let policy = policy_of("*.internal, metadata.example:80, 2130706433:8819", "");
    for (host, address, rule) in [
        ("api.internal", "10.0.0.1:443", Some("deny *.internal")),
        ("API.Eu.Internal", "10.0.0.1:443", Some("deny *.internal")),
        ("api.internal.", "10.0.0.1:443", Some("deny *.internal")),
        ("internal", "10.0.0.1:443", None),
        (
            "metadata.example",
            "192.0.2.7:80",
            Some("deny metadata.example:80"),
        ),
        ("metadata.example", "192.0.2.7:81", None),
        // The decimal entry is 127.0.0.1, whatever name led there.
        ("localhost", "127.0.0.1:8819", Some("deny 2130706433:8819")),
        (
            "anything",
            "[::ffff:127.0.0.1]:8819",
            Some("deny 2130706433:8819"),
        ),
    ] {
        assert_eq!(
            denied_by(&policy, host, address).as_deref(),
            rule,
            "{host} {address}"
        );
    }
    // A proxy resolves a tunnel's target itself: names by pattern, addresses and localhost
    // as addresses.
    let own = policy_of("*.internal", "");
    own.listening(at("127.0.0.1:8819"));
    assert!(own.decide_unresolved("db.internal", 5432).is_denied());
    assert!(own.decide_unresolved("localhost", 8819).is_denied());
    assert!(own.decide_unresolved("app.localhost", 8819).is_denied());
    assert!(own.decide_unresolved("::ffff:127.0.0.1", 8819).is_denied());
    assert!(own.decide_unresolved("[fe80::1]", 80).is_denied());
    assert_eq!(
        own.decide_unresolved("example.com", 8819),
        Decision::Allowed
    );
}

#[test]
fn allow_opens_the_defaults_and_never_an_explicit_deny() {
    let policy = policy_of(
        "10.0.0.5, *.blocked.test",
        "127.0.0.1:8819, 169.254.169.254, 10.0.0.0/8, *.test, *",
    );
    policy.listening(at("127.0.0.1:8819"));
    assert_eq!(
        policy.decide("h", at("127.0.0.1:8819")),
        Decision::AllowedBy("127.0.0.1:8819".into())
    );
    assert_eq!(
        policy.decide("h", at("169.254.169.254:80")),
        Decision::AllowedBy("169.254.169.254".into())
    );
    assert_eq!(
        policy.decide("h", at("10.0.0.5:80")),
        Decision::Denied {
            rule: "deny 10.0.0.5".into(),
            explicit: true
        }
    );
    assert!(
        policy
            .decide("x.blocked.test", at("10.0.0.6:80"))
            .is_denied()
    );
    // `*` allows every name, and so every address a name leads to.
    assert_eq!(
        policy.decide("h", at("[fe80::1]:80")),
        Decision::AllowedBy("*".into())
    );
    // Without `*`, the defaults stay.
    let narrow = policy_with_allow("127.0.0.1:8819");
    assert!(narrow.decide("h", at("[fe80::1]:80")).is_denied());
    assert!(
        narrow
            .decide("h", at("127.0.0.1:8819"))
            .is_denied()
            .eq(&false)
    );
}

fn policy_with_allow(allow: &str) -> EgressPolicy {
    let policy = policy_of("", allow);
    policy.listening(at("127.0.0.1:8819"));
    policy
}

#[test]
fn entries_parse_or_say_what_is_wrong() {
    for good in [
        "10.0.0.0/8",
        "10.0.0.0/8:443",
        "0.0.0.0/0",
        "::/0",
        "fe80::/10",
        "[fe80::/10]",
        "[fd00::/8]:443",
        "::1",
        "[::1]",
        "[::1]:443",
        "127.0.0.1",
        "127.0.0.1:8819",
        "2130706433",
        "0x7f.1:80",
        "*.internal",
        "*",
        "localhost",
        "localhost:8819",
        " api.example.com ",
    ] {
        assert!(EgressRule::parse(good).is_ok(), "{good}");
    }
    for (bad, error) in [
        ("", EgressRuleError::Empty),
        (
            "10.0.0.0/33",
            EgressRuleError::BadPrefix {
                entry: "10.0.0.0/33".into(),
            },
        ),
        (
            "fe80::/129",
            EgressRuleError::BadPrefix {
                entry: "fe80::/129".into(),
            },
        ),
        (
            "127.0.0.1:99999",
            EgressRuleError::BadPort {
                entry: "127.0.0.1:99999".into(),
            },
        ),
        (
            "[::1]:x",
            EgressRuleError::BadPort {
                entry: "[::1]:x".into(),
            },
        ),
        (
            "10.0.0.256",
            EgressRuleError::BadAddress {
                entry: "10.0.0.256".into(),
            },
        ),
        (
            "[not-an-ip]",
            EgressRuleError::BadAddress {
                entry: "[not-an-ip]".into(),
            },
        ),
    ] {
        assert_eq!(EgressRule::parse(bad), Err(error), "{bad}");
    }
    for bad in ["a*.internal", "https://host/", "example.com/8", "host name"] {
        let error = EgressRule::parse(bad).expect_err(bad);
        assert!(matches!(error, EgressRuleError::BadHost { .. }), "{bad}");
        assert!(std::error::Error::source(&error).is_some());
    }
    assert_eq!(rules(" 10.0.0.0/8 ,, ::1 ,").len(), 2);
    assert!(EgressRule::parse_list("10.0.0.0/8, 10.0.0.0/99").is_err());
}
