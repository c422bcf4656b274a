//! `downloader submit`: sends jobs from a file over AMQP (`--amqp`) or to a passive agent
//! (`--agent`), prints each result as one JSON line, and the counts on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use agent::amqp::submit::{self, Target};
use serde_json::Value;

use crate::cli::args::SubmitArgs;
use crate::cli::secret::SecretArg;
use crate::cli::{EXIT_FAILURE, Failure};

/// Runs a submission; exits 0 when every job was answered with `ok: true`, 1 otherwise.
pub(crate) fn submit(args: SubmitArgs) -> Result<ExitCode, Failure> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|error| Failure::io(std::path::Path::new("-"), &error))?
    } else {
        std::fs::read_to_string(&args.file).map_err(|error| Failure::io(&args.file, &error))?
    };
    let jobs = parse_jobs(&text)?;
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|_| Failure::usage("--timeout must be a number of seconds"))?;
    let runtime = crate::cli::runtime(true)?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut print = |result: Value| {
        let _ = serde_json::to_writer(&mut stdout, &result);
        let _ = stdout.write_all(b"\n");
    };
    let report = if let Some(url) = args.amqp {
        let ca_pem = match &args.cacert {
            Some(path) => {
                Some(std::fs::read_to_string(path).map_err(|error| Failure::io(path, &error))?)
            }
            None => None,
        };
        let target = Target {
            url: url.as_str().to_owned(),
            queue: args.queue,
            ca_pem,
            reply_queue: args.reply_queue,
            timeout,
            window: args.window,
        };
        runtime
            .block_on(submit::submit(&target, jobs, &mut print))
            .map_err(|error| failure(error.kind(), error.to_string()))?
    } else if let Some(url) = args.agent {
        let target = submit::AgentTarget {
            url,
            apikey: args.apikey.unwrap_or_default(),
            secret: keystore::Password::new(
                args.secret
                    .as_ref()
                    .map(SecretArg::expose)
                    .unwrap_or_default(),
            ),
            cacert: args.cacert,
            insecure: args.insecure,
            timeout,
            window: args.window,
        };
        runtime
            .block_on(submit::to_agent(&target, jobs, &mut print))
            .map_err(|error| failure(error.kind(), error.to_string()))?
    } else {
        return Err(Failure::usage("give --amqp URL or --agent URL"));
    };
    let _ = stdout.flush();
    let failed = report.answered - report.ok;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "submitted {}, answered {}, ok {}, failed {}, duplicates {}, missing {}",
        report.sent,
        report.answered,
        report.ok,
        failed,
        report.duplicates,
        report.missing.len()
    );
    if report.missing.is_empty() && failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}

/// One job object, an array of jobs, or NDJSON (one job per line).
fn parse_jobs(text: &str) -> Result<Vec<Value>, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(jobs)) => return Ok(jobs),
        Ok(job @ Value::Object(_)) => return Ok(vec![job]),
        _ => {}
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| match serde_json::from_str::<Value>(line) {
            Ok(job @ Value::Object(_)) => Ok(job),
            Ok(_) => Err(Failure::usage(format!(
                "line {}: not a job object",
                index + 1
            ))),
            Err(error) => Err(Failure::usage(format!("line {}: {error}", index + 1))),
        })
        .collect()
}

fn failure(kind: &str, message: String) -> Failure {
    Failure {
        kind: kind.into(),
        message,
        hint: None,
        exit_code: EXIT_FAILURE,
    }
}
