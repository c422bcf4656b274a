//! Where a password comes from: the command line, an environment variable or a file.

use std::path::PathBuf;

use keystore::Password;

use crate::cli::Failure;

/// Resolves the first source given; `None` when no source was given.
pub(crate) fn resolve(
    value: Option<&String>,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<Password>, Failure> {
    if let Some(value) = value {
        return Ok(Some(Password::new(value.clone())));
    }
    if let Some(name) = env {
        return std::env::var(name)
            .map(|value| Some(Password::new(value)))
            .map_err(|_| Failure::usage(format!("environment variable {name} is not set")));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| Failure::io(path, &error))?;
        // A trailing newline is how editors and `echo` end a file, never part of a password.
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        return Ok(Some(Password::new(trimmed.to_owned())));
    }
    Ok(None)
}
