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
