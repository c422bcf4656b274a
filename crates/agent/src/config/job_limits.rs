//! Per-job input caps: what one job of the API or the queue may ask the agent to build. A job
//! over a cap ends in `request.too_large`, naming the cap and its setting.
//!
//! | setting | file key | default | what it bounds |
//! |---|---|---|---|
//! | `DOWNLOADER_MAX_TEMPLATE_OUTPUT` | `max_template_output` | 1 MiB | bytes `${name}` substitutions add to one job, all fields together |
//! | `DOWNLOADER_MAX_HEADERS` | `max_headers` | 256 | request headers of one job (each value of a list counts) |
//! | `DOWNLOADER_MAX_PARAMS` | `max_params` | 1024 | query parameters of one job (each value of a list counts) |
//! | `DOWNLOADER_MAX_PARTS` | `max_parts` | 1024 | `body.multipart` parts, or `body.form` fields, of one job |

use super::{Lookup, parse_size};
use crate::error::Error;

/// The default cap on what template substitutions add to one job: 1 MiB.
const DEFAULT_MAX_TEMPLATE_OUTPUT: usize = 1024 * 1024;
/// The default cap on request headers per job.
const DEFAULT_MAX_HEADERS: usize = 256;
/// The default cap on query parameters per job.
const DEFAULT_MAX_PARAMS: usize = 1024;
/// The default cap on multipart parts (or form fields) per job.
const DEFAULT_MAX_PARTS: usize = 1024;

/// Caps on what one job may contain once its templates are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Bytes that `${name}` substitutions may add to one job (`DOWNLOADER_MAX_TEMPLATE_OUTPUT`).
    pub template_output: usize,
    /// Request headers per job (`DOWNLOADER_MAX_HEADERS`).
    pub headers: usize,
    /// Query parameters per job (`DOWNLOADER_MAX_PARAMS`).
    pub params: usize,
    /// Multipart parts or form fields per job (`DOWNLOADER_MAX_PARTS`).
    pub parts: usize,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            template_output: DEFAULT_MAX_TEMPLATE_OUTPUT,
            headers: DEFAULT_MAX_HEADERS,
            params: DEFAULT_MAX_PARAMS,
            parts: DEFAULT_MAX_PARTS,
        }
    }
}

impl Lookup<'_> {
    /// `DOWNLOADER_MAX_TEMPLATE_OUTPUT` (a size), `DOWNLOADER_MAX_HEADERS`,
    /// `DOWNLOADER_MAX_PARAMS` and `DOWNLOADER_MAX_PARTS` (whole numbers).
    pub(super) fn job_limits(&self) -> Result<JobLimits, Error> {
        let defaults = JobLimits::default();
        let template_output = match self.new_setting("MAX_TEMPLATE_OUTPUT")? {
            Some(value) => parse_size(&value.text)
                .and_then(|size| usize::try_from(size).ok())
                .ok_or_else(|| {
                    Error::config(value.setting, "must be a size such as 1048576, 512K or 1M")
                })?,
            None => defaults.template_output,
        };
        Ok(JobLimits {
            template_output,
            headers: self.whole("MAX_HEADERS", defaults.headers, 0)?,
            params: self.whole("MAX_PARAMS", defaults.params, 0)?,
            parts: self.whole("MAX_PARTS", defaults.parts, 0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Config, Flags};

    fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        env.insert("HOME".into(), "/nonexistent-home".into());
        Config::load(&Flags::default(), &env)
    }

    #[test]
    fn defaults_settings_and_bad_values() {
        let config = load(&[]).expect("defaults");
        assert_eq!(config.job_limits, JobLimits::default());
        let config = load(&[
            ("DOWNLOADER_MAX_TEMPLATE_OUTPUT", "64K"),
            ("DOWNLOADER_MAX_HEADERS", "10"),
            ("DOWNLOADER_MAX_PARAMS", "0"),
            ("DOWNLOADER_MAX_PARTS", "3"),
        ])
        .expect("settings");
        assert_eq!(
            config.job_limits,
            JobLimits {
                template_output: 64 * 1024,
                headers: 10,
                params: 0,
                parts: 3,
            }
        );
        for (name, text) in [
            ("DOWNLOADER_MAX_TEMPLATE_OUTPUT", "lots"),
            ("DOWNLOADER_MAX_HEADERS", "-1"),
            ("DOWNLOADER_MAX_PARTS", "1e3"),
        ] {
            let error = load(&[(name, text)]).expect_err(name);
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn the_file_names_them_in_lower_case() {
        let path =
            std::env::temp_dir().join(format!("agent-job-limits-{}.toml", std::process::id()));
        std::fs::write(&path, "max_headers = 7\nmax_template_output = \"2M\"\n").expect("write");
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let env: BTreeMap<String, String> =
            [("HOME".to_owned(), "/nonexistent-home".to_owned())].into();
        let config = Config::load(&flags, &env).expect("file");
        let _ = std::fs::remove_file(&path);
        assert_eq!(config.job_limits.headers, 7);
        assert_eq!(config.job_limits.template_output, 2 * 1024 * 1024);
    }
}
