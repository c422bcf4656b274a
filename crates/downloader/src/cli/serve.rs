//! `downloader serve`: loads the configuration, starts the agent and prints how to reach it.

use std::io::Write;
use std::process::ExitCode;

use agent::{Agent, Config, Environment, Flags};

use crate::cli::args::ServeArgs;
use crate::cli::{EXIT_FAILURE, EXIT_USAGE, Failure};

/// Runs the agent until SIGTERM/SIGINT, or checks the configuration with `--check`.
pub(crate) fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let flags = Flags {
        config: args.config,
        listen: args.listen,
        port: args.port,
        data_dir: args.data_dir,
        cert_dirs: args.cert_dirs,
        log_format: args.log_format,
        max_jobs: args.max_jobs,
        queue_limit: args.queue_limit,
    };
    let config = Config::load(&flags, &Environment).map_err(|error| failure(&error, EXIT_USAGE))?;
    let runtime = crate::cli::runtime(true)?;
    if args.check {
        let lines = runtime
            .block_on(Agent::check(&config))
            .map_err(|error| failure(&error, EXIT_USAGE))?;
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(stdout, "ok  {line}");
        }
        let _ = writeln!(stdout, "configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    agent::log::init(config.log_format);
    let active = config.rabbit.as_ref().map(|rabbit| {
        format!(
            "active mode: consuming '{}' on {} as {} (prefetch {})",
            rabbit.queue,
            rabbit.display(),
            rabbit.username,
            rabbit.prefetch
        )
    });
    let passive = config.use_http;
    let notices = config.notices.clone();
    runtime.block_on(async {
        // Before the banner: a SIGTERM right after it must drain, not kill.
        let shutdown = agent::shutdown_signal();
        let agent = Agent::build(config)
            .await
            .map_err(|error| failure(&error, EXIT_USAGE))?;
        let listener = agent
            .bind()
            .await
            .map_err(|error| failure(&error, EXIT_FAILURE))?;
        let address = listener.local_addr().unwrap_or(agent.started().listen);
        print_banner(agent.started(), address, passive, active.as_deref());
        agent::health::publish(&agent, address);
        let mut stdout = std::io::stdout().lock();
        for notice in &notices {
            let _ = writeln!(stdout, "  notice: {notice}");
        }
        drop(stdout);
        agent.serve(listener, shutdown).await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_banner(
    started: &agent::Started,
    address: std::net::SocketAddr,
    passive: bool,
    active: Option<&str>,
) {
    let mut out = std::io::stdout().lock();
    let scheme = if started.https { "https" } else { "http" };
    if passive {
        let _ = writeln!(
            out,
            "downloader agent listening on {scheme}://{address}/api/v1/jobs"
        );
    } else {
        let _ = writeln!(
            out,
            "downloader agent (use_http=false: job API, /health and /metrics only on \
             {scheme}://{address})"
        );
    }
    if let Some(active) = active {
        let _ = writeln!(out, "  {active}");
    }
    if let Some(fingerprint) = &started.fingerprint {
        let origin = started
            .identity_file
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        let generated = if started.identity_generated {
            " (generated now)"
        } else {
            ""
        };
        let _ = writeln!(out, "  TLS certificate {origin}{generated}");
        let _ = writeln!(out, "  SHA-256 fingerprint {fingerprint}");
    } else {
        let _ = writeln!(
            out,
            "  plain HTTP (use_ssl=false): the apikey and secret travel in clear text"
        );
    }
    let _ = writeln!(out, "  apikey {}", started.apikey);
    match (&started.new_secret, &started.credentials_file) {
        (Some(secret), Some(file)) => {
            let _ = writeln!(out, "  secret {secret}");
            let _ = writeln!(
                out,
                "  (shown once; kept in {} with mode 0600)",
                file.display()
            );
        }
        (None, Some(file)) => {
            let _ = writeln!(out, "  secret: kept in {}", file.display());
        }
        _ => {
            let _ = writeln!(out, "  secret: as configured");
        }
    }
    if started.cert_dirs.is_empty() {
        let _ = writeln!(
            out,
            "  certificate directories: none (jobs may not name keystore paths)"
        );
    } else {
        let dirs: Vec<String> = started
            .cert_dirs
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        let _ = writeln!(out, "  certificate directories: {}", dirs.join(", "));
    }
    for line in &started.loaded {
        let _ = writeln!(out, "  loaded {line}");
    }
    let _ = out.flush();
}

fn failure(error: &agent::Error, exit_code: u8) -> Failure {
    Failure {
        kind: error.kind().into(),
        message: error.to_string(),
        hint: Some(error.hint()),
        exit_code,
    }
}
