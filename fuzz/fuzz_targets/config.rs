//! The configuration file and the environment: the bytes up to the first NUL are the TOML file,
//! the lines after it `NAME=VALUE` environment settings (through a fake `Source`, never the real
//! environment), loaded with `agent::Config::load`. Fails on a panic, an empty error, and a
//! secret given once that shows up in the error or the `Debug` of the configuration.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;

use agent::{Config, Flags};
use libfuzzer_sys::fuzz_target;

/// Settings whose values are secret.
const SECRETS: &[&str] = &[
    "secret",
    "rabbitPassword",
    "DOWNLOADER_TRUST_STORE_PASSWORD",
    "DOWNLOADER_TLS_KEYSTORE_PASSWORD",
];

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|byte| *byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(env) = std::str::from_utf8(env) else {
        return;
    };
    // `password_file` reads the file it names: an operator's choice, not fuzzed (it could name
    // a FIFO or /dev/zero).
    let text = String::from_utf8_lossy(file);
    if text
        .parse::<toml::Table>()
        .is_ok_and(|table| names_password_file(&toml::Value::Table(table)))
    {
        return;
    }
    let mut vars: BTreeMap<String, String> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    vars.entry("HOME".into())
        .or_insert_with(|| "/nonexistent-home".into());
    let flags = Flags {
        config: Some(config_file(file)),
        ..Flags::default()
    };
    let input = String::from_utf8_lossy(data);
    let secrets: Vec<&str> = SECRETS
        .iter()
        .filter_map(|name| vars.get(*name))
        .map(String::as_str)
        .filter(|value| value.len() >= 8 && input.matches(value).count() == 1)
        .collect();
    let shown = match Config::load(&flags, &vars) {
        Ok(config) => format!("{config:?}"),
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.is_empty());
            shown
        }
    };
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "secret {secret:?} shown in {shown}"
        );
    }
});

fn names_password_file(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(table) => table
            .iter()
            .any(|(key, item)| key == "password_file" || names_password_file(item)),
        toml::Value::Array(items) => items.iter().any(names_password_file),
        _ => false,
    }
}

/// The input's TOML in this process's own file (rewritten for every input).
fn config_file(text: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "downloader-fuzz-config-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("the temp directory is writable");
    path
}
