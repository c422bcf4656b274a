//! Where setting values come from: flags, the environment, the configuration file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Environment-like values. The agent reads the process environment through [`Environment`];
/// tests pass a map, so they never touch the real environment.
pub trait Source: Send + Sync {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment;

impl Source for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Source for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Settings given as command-line flags: the highest precedence.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// The TOML configuration file (`--config`).
    pub config: Option<PathBuf>,
    /// `--listen ADDRESS:PORT`.
    pub listen: Option<String>,
    /// `--port PORT`.
    pub port: Option<u16>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--cert-dir DIR` (repeatable).
    pub cert_dirs: Vec<PathBuf>,
    /// `--log-format text|json`.
    pub log_format: Option<String>,
    /// `--max-jobs N`.
    pub max_jobs: Option<usize>,
    /// `--queue-limit N`.
    pub queue_limit: Option<usize>,
}

/// How much a value's origin weighs: flags beat the environment, which beats the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Origin {
    File,
    Environment,
    Flag,
}

/// One setting's value and where it came from (for error messages).
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub(crate) text: String,
    pub(crate) origin: Origin,
    /// The name as the user wrote it: `DOWNLOADER_MAX_JOBS (environment)`.
    pub(crate) setting: String,
}

impl Value {
    pub(crate) fn flag(name: &str, text: String) -> Self {
        Self {
            text,
            origin: Origin::Flag,
            setting: format!("--{name}"),
        }
    }
}

/// The largest `NAME_FILE` file read (a secret or a JSON setting): 1 MiB.
const MAX_SETTING_FILE: u64 = 1 << 20;

/// The value a `NAME_FILE` setting names: UTF-8, at most [`MAX_SETTING_FILE`] bytes, one
/// trailing newline (`\n` or `\r\n`) removed. Messages name the file, never its content.
pub fn read_setting_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SETTING_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if bytes.len() as u64 > MAX_SETTING_FILE {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    let mut text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
