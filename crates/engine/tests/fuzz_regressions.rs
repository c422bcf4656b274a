//! Inputs the fuzz targets in `fuzz/` found (`fuzz/README.md`), kept as tests of the engine.

use engine::HostPattern;

/// `proxy_selectors`: a host pattern's text must read back as the same pattern. `[:82]` is the
/// host `:82` on any port, and was shown as `:82`, which reads as port 82 of an empty host.
#[test]
fn host_patterns_read_back_from_their_text() {
    for text in [
        "[:82]",
        "[a:b]",
        "[[x]",
        "[[a]:80",
        "[::1]",
        "[::1]:443",
        "::1",
        "a.test:1",
    ] {
        let pattern = HostPattern::parse(text).expect(text);
        let shown = pattern.to_string();
        assert_eq!(
            HostPattern::parse(&shown),
            Ok(pattern),
            "{text} shown as {shown}"
        );
    }
    assert_eq!(
        HostPattern::parse("[:82]").map(|p| p.to_string()),
        Ok("[:82]".into())
    );
    // Bare IPv6 addresses keep their plain text.
    assert_eq!(
        HostPattern::parse("[::1]").map(|p| p.to_string()),
        Ok("::1".into())
    );
}
