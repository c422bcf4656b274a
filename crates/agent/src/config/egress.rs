//! The egress settings: `DOWNLOADER_EGRESS_DENY` and `DOWNLOADER_EGRESS_ALLOW` in the
//! environment, `egress_deny` and `egress_allow` in the file (a comma-separated string, or a list
//! of strings). Each entry is a CIDR, an address or a host pattern, optionally with a port; see
//! [`engine::EgressPolicy`] for what they match and for the precedence (an explicit deny always
//! wins; an allow entry opens a default deny).
//!
//! The policy always holds the default denies; the agent adds its own listening address when
//! it starts serving ([`crate::Agent::serve`]).

use std::sync::Arc;

use engine::{EgressPolicy, EgressRule};

use super::Lookup;
use crate::error::Error;

impl Lookup<'_> {
    /// The egress policy of every job: the default denies and the configured lists.
    pub(super) fn egress(&self) -> Result<Arc<EgressPolicy>, Error> {
        let deny = self.egress_list("EGRESS_DENY")?;
        let allow = self.egress_list("EGRESS_ALLOW")?;
        Ok(Arc::new(EgressPolicy::new(deny, allow)))
    }

    fn egress_list(&self, name: &str) -> Result<Vec<EgressRule>, Error> {
        let key = name.to_ascii_lowercase();
        let from_env = self.env.var(&format!("DOWNLOADER_{name}")).is_some();
        if !from_env && let Some(toml::Value::Array(items)) = self.file.get(&key) {
            let setting = format!("{key} (config file)");
            let mut rules = Vec::with_capacity(items.len());
            for item in items {
                let text = item.as_str().ok_or_else(|| {
                    Error::config(setting.clone(), "must be a list of strings, or one string")
                })?;
                rules.push(
                    EgressRule::parse(text)
                        .map_err(|error| Error::config(setting.clone(), error.to_string()))?,
                );
            }
            return Ok(rules);
        }
        match self.new_setting(name)? {
            Some(value) => EgressRule::parse_list(&value.text)
                .map_err(|error| Error::config(value.setting, error.to_string())),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::{Config, Flags};

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Config, crate::error::Error> {
        let mut vars: BTreeMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        vars.insert("DOWNLOADER_DATA_DIR".into(), "/nonexistent-data".into());
        let mut flags = Flags::default();
        if let Some(text) = file {
            let dir = std::env::temp_dir().join(format!(
                "downloader-egress-config-{}-{}",
                std::process::id(),
                text.len()
            ));
            std::fs::create_dir_all(&dir).expect("dir");
            let path = dir.join("config.toml");
            std::fs::write(&path, text).expect("write");
            flags.config = Some(path);
        }
        Config::load(&flags, &vars)
    }

    fn denied(config: &Config, address: &str) -> bool {
        let address = address.parse().expect("address");
        config.egress.decide("h", address).is_denied()
    }

    #[test]
    fn lists_come_from_the_environment_or_the_file() {
        let config = load(
            &[
                ("DOWNLOADER_EGRESS_DENY", "10.0.0.0/8, [::1]:443"),
                ("DOWNLOADER_EGRESS_ALLOW", "169.254.169.254"),
            ],
            None,
        )
        .expect("config");
        assert!(denied(&config, "10.1.1.1:80"));
        assert!(denied(&config, "[::1]:443"));
        assert!(!denied(&config, "[::1]:444"));
        assert!(!denied(&config, "169.254.169.254:80"));
        assert!(denied(&config, "169.254.1.1:80"));

        let file =
            "egress_deny = [\"192.168.0.0/16\", \"*.internal\"]\negress_allow = \"fe80::/10\"\n";
        let config = load(&[], Some(file)).expect("config");
        assert!(denied(&config, "192.168.3.4:80"));
        assert!(
            config
                .egress
                .decide("db.internal", "10.0.0.1:5432".parse().expect("a"))
                .is_denied()
        );
        assert!(!denied(&config, "[fe80::1]:80"));
        // The environment wins over the file.
        let config = load(&[("DOWNLOADER_EGRESS_DENY", "")], Some(file)).expect("config");
        assert!(!denied(&config, "192.168.3.4:80"));
    }

    #[test]
    fn a_bad_entry_names_the_setting_and_the_entry() {
        let error = load(
            &[("DOWNLOADER_EGRESS_DENY", "10.0.0.0/8, 10.0.0.0/40")],
            None,
        )
        .expect_err("bad prefix")
        .to_string();
        assert!(
            error.contains("DOWNLOADER_EGRESS_DENY (environment)"),
            "{error}"
        );
        assert!(error.contains("10.0.0.0/40"), "{error}");
        let error = load(&[], Some("egress_allow = [\"ok.example\", 7]\n"))
            .expect_err("not a string")
            .to_string();
        assert!(error.contains("egress_allow (config file)"), "{error}");
    }
}
