//! docs/openapi.yaml stays in step with the agent: its `Config` schema lists exactly the
//! `config` names a job may use, and it describes every endpoint and API error status.
//!
//! The YAML is read by a line scan of its fixed layout (two-space indentation), so the test needs
//! no YAML parser; a layout it does not recognise fails the test rather than passing it.

const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// The keys directly under `path` (a list of nested keys from the top), in order.
fn keys_under(path: &[&str]) -> Vec<String> {
    let mut depth = 0;
    let mut keys = Vec::new();
    for line in OPENAPI.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim_matches(|c| c == '\'' || c == '"');
        if depth < path.len() {
            // Looking for the next key of the path at its own indentation.
            if indent < depth * 2 && depth > 0 {
                break;
            }
            if indent == depth * 2 && key == path[depth] {
                depth += 1;
            }
            continue;
        }
        if indent < depth * 2 {
            break;
        }
        if indent == depth * 2 {
            keys.push(key.to_owned());
        }
    }
    assert!(
        depth == path.len(),
        "docs/openapi.yaml has no {}",
        path.join(".")
    );
    keys
}

#[test]
fn every_config_name_is_described_and_nothing_else() {
    let described = keys_under(&["components", "schemas", "Config", "properties"]);
    for name in agent::Agent::config_names() {
        assert!(
            described.iter().any(|key| key == name),
            "config name '{name}' is missing from docs/openapi.yaml (components.schemas.Config)"
        );
    }
    for key in &described {
        assert!(
            agent::Agent::config_names().contains(&key.as_str()),
            "docs/openapi.yaml describes config name '{key}', which the agent does not accept"
        );
    }
}

#[test]
fn every_endpoint_and_api_error_status_is_described() {
    assert_eq!(
        keys_under(&["paths"]),
        ["/api/v1/jobs", "/health", "/metrics"]
    );
    assert_eq!(
        keys_under(&["paths", "/api/v1/jobs", "post", "responses"]),
        ["200", "400", "401", "413", "503"]
    );
    assert_eq!(
        keys_under(&["components", "schemas", "ErrorInfo", "properties"]),
        ["kind", "message", "hint"]
    );
}

#[test]
fn the_line_scan_finds_nested_keys() {
    // A test of the helper itself, so a broken scan cannot pass the tests above vacuously.
    assert_eq!(
        keys_under(&["components", "securitySchemes", "basic"]),
        ["type", "scheme", "description"]
    );
    assert!(keys_under(&["components", "schemas", "Job", "properties"]).contains(&"url".into()));
}
