//! How the job API and the agent's start-up name the settings a remedy asks for: job-API
//! clients change `config` fields; operators change the agent's settings.

use keystore::remedy::{Plain, Setting, Vocabulary};

/// Job-API results: the job's `config` fields, and the agent's settings where no job field
/// exists.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JobWords;

impl Vocabulary for JobWords {
    fn name(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::StorePassword => "client_cert_configuration.keystorePassword",
            Setting::KeyPassword => "client_cert_configuration.keyPassword",
            Setting::Alias => "client_cert_configuration.keyAlias",
            Setting::KdfLimits => {
                "the agent's DOWNLOADER_MAX_KDF_ITERATIONS or DOWNLOADER_MAX_KDF_MEMORY"
            }
            Setting::ClientCert => "config.client_cert_configuration",
            Setting::TrustStore => "config.trust",
            Setting::TrustMode => "config.trust mode",
            Setting::Insecure => "config.disable_ssl_validation",
            Setting::Resolve => "config.resolve",
            Setting::Sni => "config.sni",
            Setting::TlsVersions => "config.tls_min and config.tls_max",
            Setting::HttpVersion => "config.http_version",
            Setting::Timeout | Setting::ConnectTimeout => "config.timeout",
            Setting::BodyLimit => "the agent's DOWNLOADER_MAX_BODY",
            Setting::HeaderLimit => "the response header limit (an agent limit, not a job field)",
            Setting::MaxRedirects => "config.max_redirects",
            Setting::ProxyCredentials => "username and password in config.proxy",
            Setting::EgressDeny => "the agent's DOWNLOADER_EGRESS_DENY",
            Setting::EgressAllow => "the agent's DOWNLOADER_EGRESS_ALLOW",
            _ => Plain.name(setting),
        }
    }
}

/// The agent's own configuration (start-up errors, logs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SettingsWords;

impl Vocabulary for SettingsWords {
    fn name(&self, setting: Setting) -> &'static str {
        match setting {
            Setting::StorePassword => {
                "the password of that setting (keystorePassword, password, or its _PASSWORD \
                 setting)"
            }
            Setting::KeyPassword => "its key password (keyPassword, key_password)",
            Setting::Alias => "its alias (keyAlias, alias, DOWNLOADER_TLS_KEY_ALIAS)",
            Setting::KdfLimits => "DOWNLOADER_MAX_KDF_ITERATIONS or DOWNLOADER_MAX_KDF_MEMORY",
            Setting::EgressDeny => "DOWNLOADER_EGRESS_DENY",
            Setting::EgressAllow => {
                "DOWNLOADER_EGRESS_ALLOW (egress_allow in the configuration file)"
            }
            _ => Plain.name(setting),
        }
    }
}
