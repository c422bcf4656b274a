//! Stable JSON output.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// The inspection report, with the file it came from.
pub(crate) fn inspect(
    out: &mut impl Write,
    file: &Path,
    report: &keystore::Report,
) -> io::Result<()> {
    #[derive(Serialize)]
    struct Inspection<'a> {
        file: String,
        #[serde(flatten)]
        report: &'a keystore::Report,
    }
    let value = Inspection {
        file: file.display().to_string(),
        report,
    };
    serde_json::to_writer_pretty(&mut *out, &value).map_err(io::Error::other)?;
    writeln!(out)
}

/// The full result of a `fetch`.
pub(crate) fn outcome(out: &mut impl Write, outcome: &engine::Outcome) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, outcome).map_err(io::Error::other)?;
    writeln!(out)
}
