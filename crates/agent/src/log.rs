//! Log output: text or JSON lines on stderr (or any writer, for tests). Log lines carry ids,
//! hosts, statuses and error kinds, never passwords, keys, `Authorization` or `Cookie` values:
//! nothing in the agent passes those to `tracing`.

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the process-wide subscriber writing to stderr. Fails quietly when one is already
/// installed (tests, embedding).
pub fn init(format: LogFormat) {
    init_with_writer(format, std::io::stderr);
}

/// Installs the process-wide subscriber writing to `writer`.
pub fn init_with_writer<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::INFO)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The longest job-controlled value (id, method, host) a log line carries, in characters.
const FIELD_LIMIT: usize = 256;

/// A job-controlled value made safe for a text log line: control characters (CR and LF
/// above all, which would start a forged line) are escaped as `\r`, `\n`, `\t` or `\u{..}`,
/// and values longer than 256 characters end in `...`.
pub(crate) fn field(text: &str) -> std::borrow::Cow<'_, str> {
    let clean = !text.chars().any(char::is_control) && text.len() <= FIELD_LIMIT;
    if clean {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(FIELD_LIMIT * 2));
    for (n, c) in text.chars().enumerate() {
        if n == FIELD_LIMIT {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(field("GET"), "GET");
        assert_eq!(
            field("GET\r\n2026-01-01 INFO forged"),
            "GET\\r\\n2026-01-01 INFO forged"
        );
        assert_eq!(field("a\u{1b}[31mb\u{85}"), "a\\u{1b}[31mb\\u{85}");
        let long = "x".repeat(10_000);
        let cut = field(&long);
        assert_eq!(cut.len(), 256 + 3);
        assert!(cut.ends_with("..."));
        assert!(!field(&"\n".repeat(1000)).contains('\n'));
    }
}
