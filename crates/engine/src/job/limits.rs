//! The caps a job must fit before anything is allocated for it or any clock is started.

use std::time::Duration;

use url::Url;

use super::JobBuilder;
use crate::error::JobError;

/// The longest whole-job, connect or first-byte limit a job may set: one day. Longer limits
/// are refused (`request.invalid`) rather than overflowing a clock.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest time a job may keep its connection idle in the pool: one hour.
pub const MAX_KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60 * 60);
/// The most redirects a job may ask to follow: each hop is kept in the outcome.
pub const MAX_REDIRECTS_LIMIT: u32 = 100;
/// The most request headers one job may have (whatever the head size limit): a header map
/// holds at most 32,768 entries.
pub const MAX_HEADER_COUNT: usize = 16 * 1024;

impl JobBuilder {
    /// The limits that must hold before anything is allocated for the job's headers, and the
    /// ones that keep every clock of the job from overflowing.
    pub(super) fn check_limits(&self, url: &Url) -> Result<(), JobError> {
        if self.headers.len() > MAX_HEADER_COUNT {
            return Err(JobError::new(format!(
                "the job has {} headers, above the limit of {MAX_HEADER_COUNT}",
                self.headers.len()
            )));
        }
        check_head_size(
            self.headers
                .iter()
                .map(|(name, value)| (name.trim().len(), value.len())),
            url,
            self.request_header_limit,
        )?;
        let timeouts = [
            Some(("timeout", self.timeout)),
            Some(("connect timeout", self.connect_timeout)),
            self.first_byte_timeout
                .map(|limit| ("first-byte timeout", limit)),
        ];
        for (what, limit) in timeouts.into_iter().flatten() {
            if limit.is_zero() {
                return Err(JobError::new("timeouts must be greater than zero"));
            }
            if limit > MAX_TIMEOUT {
                return Err(JobError::new(format!(
                    "the {what} must be at most {} seconds",
                    MAX_TIMEOUT.as_secs()
                )));
            }
        }
        if self.http_options.idle_limit > MAX_KEEP_ALIVE_IDLE {
            return Err(JobError::new(format!(
                "keep-alive idle time must be at most {} seconds",
                MAX_KEEP_ALIVE_IDLE.as_secs()
            )));
        }
        if self.http_options.max_redirects > MAX_REDIRECTS_LIMIT {
            return Err(JobError::new(format!(
                "at most {MAX_REDIRECTS_LIMIT} redirects can be followed"
            )));
        }
        Ok(())
    }
}

/// Refuses a request head (header names and values, the URL) over `limit` bytes.
pub(super) fn check_head_size(
    headers: impl Iterator<Item = (usize, usize)>,
    url: &Url,
    limit: usize,
) -> Result<(), JobError> {
    let size = headers
        .map(|(name, value)| name.saturating_add(value).saturating_add(4))
        .fold(url.as_str().len(), usize::saturating_add);
    if size > limit {
        return Err(JobError::new(format!(
            "the request head is {size} bytes, above the limit of {limit} bytes"
        )));
    }
    Ok(())
}
