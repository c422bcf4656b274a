//! `downloader healthcheck`: exit 0 when the agent answers `GET /health`, 1 when it does not.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use agent::{Config, Environment, Flags};

use crate::cli::args::HealthcheckArgs;
use crate::cli::{EXIT_FAILURE, EXIT_USAGE, Failure};

/// Finds the agent from the configuration (or `--url`), asks it, prints one line.
pub(crate) fn healthcheck(args: &HealthcheckArgs) -> Result<ExitCode, Failure> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(Failure::usage(
            "--timeout must be between 0 and 3600 seconds",
        ));
    }
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let flags = Flags {
                config: args.config.clone(),
                ..Flags::default()
            };
            let config = Config::load(&flags, &Environment).map_err(|error| Failure {
                kind: error.kind().into(),
                message: error.to_string(),
                hint: Some(error.hint()),
                exit_code: EXIT_USAGE,
            })?;
            agent::health::base_url(&config).map_err(unhealthy)?
        }
    };
    let runtime = crate::cli::runtime(false)?;
    let answer = runtime
        .block_on(agent::health::check(
            &base,
            Duration::from_secs_f64(args.timeout),
        ))
        .map_err(unhealthy)?;
    if !args.quiet {
        let _ = writeln!(std::io::stdout().lock(), "healthy: {}", answer.trim());
    }
    Ok(ExitCode::SUCCESS)
}

fn unhealthy(error: agent::health::Unhealthy) -> Failure {
    Failure {
        kind: "unhealthy".into(),
        message: error.to_string(),
        hint: Some(
            "is `downloader serve` running with the same settings (DOWNLOADER_LISTEN, port, \
             use_http, use_ssl, DOWNLOADER_DATA_DIR)? --url names the agent directly"
                .into(),
        ),
        exit_code: EXIT_FAILURE,
    }
}
