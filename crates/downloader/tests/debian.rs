//! The Debian package's files (deploy/debian): the example /etc/downloader/config.toml is a valid
//! configuration as shipped and with every example setting uncommented, and the systemd unit
//! agrees with the agent (its data directory, its shutdown grace) and with the package's assets.
//! scripts/deb-check builds and installs the package itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_downloader");
const EXAMPLE: &str = include_str!("../../../deploy/debian/config.toml");
const UNIT: &str = include_str!("../../../deploy/debian/downloader.service");
const MANIFEST: &str = include_str!("../Cargo.toml");

/// Where the example's paths point; the test moves them into a temporary directory.
const ETC: &str = "/etc/downloader/";

fn temp_dir(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("downloader-debian-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_example_configuration_passes_serve_check() {
    let dir = temp_dir("check");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/debian/config.toml");
    // A clean environment: only the file (and the data directory the unit would set) counts.
    let output = Command::new(BIN)
        .args(["serve", "--check", "--config"])
        .arg(&example)
        .env_clear()
        .env("DOWNLOADER_DATA_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "serve --check {}: {}{}",
        example.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration is valid"));
}

/// The example with every `#name = value` (and `#[[table]]`) line uncommented; prose comments
/// (`# text`) stay. Returns the text and the number of lines uncommented.
fn uncommented(example: &str) -> (String, usize) {
    let mut count = 0;
    let mut text = String::with_capacity(example.len());
    for line in example.lines() {
        match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                count += 1;
                text.push_str(rest);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    (text, count)
}

/// Creates every path under `root` a string of `value` names: a file when the last component
/// has an extension, else a directory.
fn create_named_paths(value: &toml::Value, root: &Path) {
    match value {
        toml::Value::String(text) if text.starts_with(root.to_str().expect("UTF-8 path")) => {
            let path = Path::new(text);
            if path.extension().is_some() {
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                std::fs::write(path, "example\n").expect("write");
            } else {
                std::fs::create_dir_all(path).expect("mkdir");
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| create_named_paths(item, root)),
        toml::Value::Table(table) => table
            .values()
            .for_each(|item| create_named_paths(item, root)),
        _ => {}
    }
}

#[test]
fn every_example_setting_is_valid_when_uncommented() {
    let dir = temp_dir("uncommented");
    let (text, count) = uncommented(EXAMPLE);
    assert!(
        count >= 50,
        "only {count} example settings: the parser missed some"
    );
    let text = text.replace(ETC, &format!("{}/", dir.display()));
    let table: toml::Table = text.parse().expect("the uncommented example is TOML");
    create_named_paths(&toml::Value::Table(table), &dir);
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).expect("write");
    let flags = agent::Flags {
        config: Some(path),
        ..agent::Flags::default()
    };
    let env: BTreeMap<String, String> = [(
        "DOWNLOADER_DATA_DIR".to_owned(),
        dir.join("state").display().to_string(),
    )]
    .into();
    let config = agent::Config::load(&flags, &env)
        .unwrap_or_else(|error| panic!("uncommented example: {error}\n{text}"));
    // The settings were read, not ignored.
    assert_eq!(config.log_format, agent::config::LogFormat::Json);
    assert!(config.rabbit.is_some(), "use_rabbit = true was not read");
    assert!(config.trust_store.is_some() && config.engine_client_ca.is_some());
    assert_eq!(config.client_certs.len(), 1);
    assert!(config.credentials.is_some());
}

/// The value of `Key=` in the unit (the last one, as systemd reads single-valued keys).
fn unit_value(key: &str) -> String {
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_else(|| panic!("downloader.service has no {key}="))
        .trim()
        .to_owned()
}

#[test]
fn the_unit_runs_the_packaged_binary_with_the_packaged_configuration() {
    assert_eq!(
        unit_value("ExecStart"),
        "/usr/bin/downloader serve --config /etc/downloader/config.toml"
    );
    let manifest: toml::Table = MANIFEST.parse().expect("Cargo.toml");
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("assets");
    let installs = |source: &str, dest: &str| {
        assets.iter().any(|asset| {
            asset.get(0).and_then(toml::Value::as_str) == Some(source)
                && asset.get(1).and_then(toml::Value::as_str) == Some(dest)
        })
    };
    assert!(installs("target/release/downloader", "usr/bin/"));
    assert!(installs(
        "../../deploy/debian/config.toml",
        "etc/downloader/config.toml"
    ));
}

#[test]
fn the_unit_keeps_the_agent_state_and_outlasts_its_shutdown_grace() {
    let state = unit_value("StateDirectory");
    assert_eq!(
        unit_value("Environment"),
        format!("DOWNLOADER_DATA_DIR=%S/{state}")
    );
    let grace = agent::Config::defaults(PathBuf::from("/unused")).shutdown_grace;
    let stop: u64 = unit_value("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop >= grace.as_secs() + 5,
        "TimeoutStopSec={stop} leaves no margin over the {grace:?} shutdown grace"
    );
    assert_eq!(unit_value("KillSignal"), "SIGTERM");
    assert_eq!(unit_value("DynamicUser"), "yes");
    assert_eq!(unit_value("CapabilityBoundingSet"), "");
}
