//! `downloader fetch URL`: one request through the engine, printed for people or as JSON.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use engine::{
    Engine, HttpVersion, IdentitySource, Job, JobBuilder, JobError, Part, Proxy, ProxyRules,
    Source, TlsVersion, TrustMode, TrustSource,
};
use keystore::Password;

use crate::cli::args::{FetchArgs, FetchHttpArgs, TrustArg};
use crate::cli::secret::{SecretArg, UrlArg};
use crate::cli::words::FetchWords;
use crate::cli::{EXIT_FAILURE, Failure, output, secret};

/// Exit code for `--fail` on an HTTP status of 400 or more (curl's).
const EXIT_HTTP_STATUS: u8 = 22;

/// Runs the request and prints the outcome.
pub(crate) fn fetch(args: FetchArgs) -> Result<ExitCode, Failure> {
    let json = args.json;
    let fail_on_status = args.fail;
    let job = args.into_job()?;
    let runtime = crate::cli::runtime(false)?;
    let mut outcome = runtime.block_on(Engine::new().run(job));
    // The engine's remedy, naming fetch's flags.
    if let (Some(failure), Some(info)) = (&outcome.failure, outcome.error.as_mut()) {
        info.hint = failure.hint_in(&FetchWords);
    }
    let mut stdout = std::io::stdout().lock();
    let written = if json {
        output::json::outcome(&mut stdout, &outcome)
    } else {
        output::human::outcome(&mut stdout, &outcome)
    };
    let _ = stdout.flush();
    drop(stdout);
    if !json {
        let mut stderr = std::io::stderr().lock();
        for warning in &outcome.warnings {
            let _ = writeln!(stderr, "warning: {warning}");
        }
    }
    if let Some(error) = &outcome.error {
        return Err(Failure {
            kind: error.kind.into(),
            message: error.message.clone(),
            hint: Some(error.hint.clone()),
            exit_code: EXIT_FAILURE,
        });
    }
    if let Err(error) = written
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(Failure::io(Path::new("<stdout>"), &error));
    }
    match &outcome.response {
        Some(response) if fail_on_status && response.status_code >= 400 => Err(Failure {
            kind: "http.status".into(),
            message: format!(
                "the server answered {} {}",
                response.status_code, response.reason
            ),
            hint: None,
            exit_code: EXIT_HTTP_STATUS,
        }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

impl FetchArgs {
    /// The engine job these flags describe; contradictions are usage errors (exit 64).
    pub(crate) fn into_job(self) -> Result<Job, Failure> {
        let builder = self.request()?;
        let builder = self.http.apply(builder)?;
        let builder = self.tls(builder)?;
        self.connection(builder)?.build().map_err(usage)
    }

    /// Method, URL, headers and body (`-d`, `--data-file` or `-F`).
    fn request(&self) -> Result<JobBuilder, Failure> {
        let body = match (&self.data, &self.data_file) {
            (Some(data), _) => match data.strip_prefix('@') {
                Some(path) => Some(read(Path::new(path))?),
                None => Some(data.clone().into_bytes()),
            },
            (None, Some(path)) => Some(read(path)?),
            (None, None) => None,
        };
        let parts = form_parts(&self.http.form)?;
        let method = match (&self.method, &body) {
            (Some(method), _) => method.clone(),
            (None, Some(_)) => "POST".to_owned(),
            (None, None) if !parts.is_empty() => "POST".to_owned(),
            (None, None) => "GET".to_owned(),
        };
        let mut builder = Job::builder(method, self.url.as_str());
        let mut has_content_type = false;
        for header in &self.headers {
            // The value is not echoed: it may be a credential.
            let (name, value) = header
                .as_str()
                .split_once(':')
                .ok_or_else(|| Failure::usage("a -H header is not 'Name: value' (no colon)"))?;
            has_content_type |= name.trim().eq_ignore_ascii_case("content-type");
            builder = builder.header(name.trim(), value.trim_start());
        }
        if let Some(body) = body {
            if !has_content_type {
                // As curl does for -d.
                builder = builder.header("Content-Type", "application/x-www-form-urlencoded");
            }
            builder = builder.body(body);
        }
        if !parts.is_empty() {
            builder = builder.multipart(&parts);
        }
        Ok(builder)
    }

    /// The client identity, the trust and the TLS options.
    fn tls(&self, mut builder: JobBuilder) -> Result<JobBuilder, Failure> {
        let cert_password = secret::resolve(
            self.cert_password.as_ref(),
            self.cert_password_env.as_ref(),
            None,
        )?;
        let key_password = secret::resolve(self.key_password.as_ref(), None, None)?;
        if let Some(cert) = &self.cert {
            builder = builder.identity(match &self.key {
                Some(key) => IdentitySource::Pair {
                    certificates: Source::Path(cert.clone()),
                    key: Source::Path(key.clone()),
                    key_password: key_password.or(cert_password),
                },
                None => IdentitySource::Keystore {
                    source: Source::Path(cert.clone()),
                    password: cert_password,
                    key_password,
                    alias: self.alias.clone(),
                },
            });
        }
        if let Some(cacert) = &self.cacert {
            builder = builder.trust_store(TrustSource {
                source: Source::Path(cacert.clone()),
                password: secret::resolve(self.cacert_password.as_ref(), None, None)?,
            });
        }
        if let Some(trust) = self.trust {
            builder = builder.trust(match trust {
                TrustArg::System => TrustMode::System,
                TrustArg::Custom => TrustMode::Custom,
                TrustArg::Both => TrustMode::Both,
            });
        }
        builder = builder.insecure(self.insecure);
        if let Some(sni) = &self.sni {
            builder = builder.sni(sni.clone());
        }
        if let Some(version) = &self.tls_min {
            builder = builder.tls_min(tls_version(version)?);
        }
        if let Some(version) = &self.tls_max {
            builder = builder.tls_max(tls_version(version)?);
        }
        Ok(builder)
    }

    /// Address pins, the HTTP version and the time limits.
    fn connection(&self, mut builder: JobBuilder) -> Result<JobBuilder, Failure> {
        for pin in &self.resolve {
            let (host, port, address) = engine::parse_resolve(pin).map_err(usage)?;
            builder = builder.resolve(host, port, address);
        }
        if self.http1_1 {
            builder = builder.http(HttpVersion::Http1);
        } else if self.http2 {
            builder = builder.http(HttpVersion::Http2);
        }
        if let Some(seconds) = self.timeout {
            builder = builder.timeout(engine::seconds_to_duration(seconds).map_err(usage)?);
        }
        if let Some(seconds) = self.connect_timeout {
            let limit = engine::seconds_to_duration(seconds).map_err(usage)?;
            builder = builder.connect_timeout(limit);
        }
        Ok(builder)
    }
}

impl FetchHttpArgs {
    /// Redirects, the proxy and the egress policy.
    fn apply(&self, mut builder: JobBuilder) -> Result<JobBuilder, Failure> {
        if self.location {
            builder = builder.follow_redirects(true);
        } else if self.no_follow {
            builder = builder.follow_redirects(false);
        }
        if let Some(limit) = self.max_redirects {
            builder = builder.max_redirects(limit);
        }
        if let Some(rules) = proxy_rules(
            self.proxy.as_ref().map(UrlArg::as_str),
            self.proxy_user.as_ref().map(SecretArg::expose),
        )? {
            builder = builder.proxy(rules);
        }
        if let Some(policy) = egress_policy(&self.egress_deny, &self.egress_allow)? {
            builder = builder.egress(policy);
        }
        Ok(builder)
    }
}

/// `NAME=VALUE` fields and `NAME=@FILE[;type=MIME]` files, as curl's `-F`.
fn form_parts(fields: &[String]) -> Result<Vec<Part>, Failure> {
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("form field '{field}' is not NAME=VALUE")))?;
        let part = match value.strip_prefix('@') {
            Some(file) => {
                let (file, content_type) = match file.rsplit_once(";type=") {
                    Some((file, content_type)) => (file, Some(content_type.to_owned())),
                    None => (file, None),
                };
                let path = Path::new(file);
                Part {
                    name: name.to_owned(),
                    data: read(path)?.into(),
                    filename: Some(
                        path.file_name()
                            .map(|name| name.to_string_lossy().into_owned())
                            .unwrap_or_else(|| file.to_owned()),
                    ),
                    content_type,
                }
            }
            None => Part {
                name: name.to_owned(),
                data: value.to_owned().into(),
                filename: None,
                content_type: None,
            },
        };
        parts.push(part);
    }
    Ok(parts)
}

/// `--proxy` (and `--proxy-user`), else the standard environment variables (upper or lower
/// case); an empty `--proxy ""` means no proxy at all.
fn proxy_rules(proxy: Option<&str>, user: Option<&str>) -> Result<Option<ProxyRules>, Failure> {
    let credentials = move |proxy: Proxy| match user.and_then(|user| user.split_once(':')) {
        Some((name, password)) => proxy.with_credentials(name, Password::new(password)),
        None => match user {
            Some(name) => proxy.with_credentials(name, Password::new("")),
            None => proxy,
        },
    };
    if let Some(text) = proxy {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let proxy = Proxy::parse(text).map_err(usage)?;
        return Ok(Some(ProxyRules::all(credentials(proxy))));
    }
    let variable = |name: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(name.to_ascii_lowercase()))
            .ok()
    };
    let (http, https, no_proxy) = (
        variable("HTTP_PROXY"),
        variable("HTTPS_PROXY"),
        variable("NO_PROXY"),
    );
    if http.is_none() && https.is_none() {
        return Ok(None);
    }
    let rules = ProxyRules::from_env_values(http.as_deref(), https.as_deref(), no_proxy.as_deref())
        .map_err(usage)?;
    // --proxy-user applies to the proxies the environment names.
    Ok(Some(match user {
        Some(_) => rules.with_credentials(credentials),
        None => rules,
    }))
}

fn tls_version(text: &str) -> Result<TlsVersion, Failure> {
    TlsVersion::parse(text)
        .ok_or_else(|| Failure::usage(format!("unknown TLS version '{text}': use 1.2 or 1.3")))
}

/// The egress policy `--egress-deny` / `--egress-allow` ask for; none without them.
fn egress_policy(
    deny: &[String],
    allow: &[String],
) -> Result<Option<std::sync::Arc<engine::EgressPolicy>>, Failure> {
    if deny.is_empty() && allow.is_empty() {
        return Ok(None);
    }
    let rules = |flag: &str, lists: &[String]| {
        let mut rules = Vec::new();
        for list in lists {
            rules.extend(
                engine::EgressRule::parse_list(list)
                    .map_err(|error| Failure::usage(format!("{flag}: {error}")))?,
            );
        }
        Ok::<_, Failure>(rules)
    };
    let policy = engine::EgressPolicy::new(
        rules("--egress-deny", deny)?,
        rules("--egress-allow", allow)?,
    );
    Ok(Some(std::sync::Arc::new(policy)))
}

fn usage(error: JobError) -> Failure {
    Failure {
        kind: error.kind().into(),
        message: error.to_string(),
        hint: Some(error.hint()),
        exit_code: crate::cli::EXIT_USAGE,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| Failure::io(path, &error))
}
