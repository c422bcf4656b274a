//! `proxy_configuration` and host patterns: the bytes as the reference JSON (selector →
//! `{address, port, ...}`) and each line as a host pattern, matched against hosts taken from the
//! input. Fails on a panic, on a pattern that does not read back as itself from its text, and
//! on an exact pattern that does not match its own host.
#![no_main]

use engine::{HostPattern, ProxyRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let hosts: Vec<&str> = text.lines().map(str::trim).take(16).collect();
    if let Ok(rules) = ProxyRules::from_reference_json(text) {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) {
            for selector in map.keys() {
                let _ = rules.select("https", selector, 443);
                let _ = rules.select("http", selector.trim_start_matches("*."), 80);
            }
        }
        for host in &hosts {
            let _ = rules.select("https", host, 8443);
        }
    }
    let _ = ProxyRules::from_env_values(hosts.first().copied(), None, Some(text));
    let mut patterns = Vec::new();
    for line in &hosts {
        let Ok(pattern) = HostPattern::parse(line) else {
            continue;
        };
        let shown = pattern.to_string();
        assert_eq!(
            HostPattern::parse(&shown).as_ref(),
            Ok(&pattern),
            "{line:?} reads back differently from its text {shown:?}"
        );
        patterns.push(pattern);
    }
    for host in &hosts {
        let exact = HostPattern::exact(host, 443);
        assert!(
            exact.matches(host, 443).is_some(),
            "{host:?} does not match itself"
        );
        let best = HostPattern::most_specific(patterns.iter().map(|p| (p, ())), host, 443);
        if let Some((pattern, ())) = best {
            assert!(pattern.matches(host, 443).is_some());
        }
    }
});
