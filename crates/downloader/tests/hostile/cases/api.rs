//! Rows against the API itself: credentials before bodies (over HTTP/1.1 and HTTP/2), body
//! and batch limits, malformed and deep JSON, the HTTP layer's own refusals, and what an
//! unauthenticated `/health` shows.

use serde_json::{Value, json};

use super::super::agent::{APIKEY, SECRET};
use super::super::{Ctx, Expect, Got, On, Req, Row, row};

const UNAUTHORIZED: Expect = Expect::Api(401, "api.unauthorized");
/// One byte over the default `DOWNLOADER_MAX_BODY` (50 MiB).
const OVER_LIMIT: usize = 50 * 1024 * 1024 + 1;

/// The rows.
pub(crate) fn rows() -> Vec<Row> {
    vec![
        row(
            "health_unauthenticated",
            |_| Req::request("GET", "/health", ""),
            Expect::Status(200),
        )
        .check(health_is_ok),
        row(
            "jobs_no_credentials_h1",
            |ctx| Req::request("POST", "/api/v1/jobs", small_job(ctx)),
            UNAUTHORIZED,
        ),
        row(
            "jobs_wrong_secret_h1",
            |ctx| Req::request("POST", "/api/v1/jobs", small_job(ctx)).auth(APIKEY, "guess"),
            UNAUTHORIZED,
        ),
        row(
            "jobs_bearer_scheme_h1",
            |ctx| {
                Req::request("POST", "/api/v1/jobs", small_job(ctx))
                    .header("authorization", &format!("Bearer {SECRET}"))
            },
            UNAUTHORIZED,
        ),
        row(
            "metrics_no_credentials",
            |_| Req::request("GET", "/metrics", ""),
            UNAUTHORIZED,
        ),
        row(
            "jobs_no_credentials_h2_2_bytes",
            |_| Req::request("POST", "/api/v1/jobs", "{}").h2(),
            UNAUTHORIZED,
        ),
        row(
            "jobs_no_credentials_h2_200_kb",
            |_| Req::request("POST", "/api/v1/jobs", vec![b' '; 200 * 1024]).h2(),
            UNAUTHORIZED,
        ),
        row(
            "jobs_no_credentials_h2_10_mb",
            |_| Req::request("POST", "/api/v1/jobs", vec![b' '; 10 << 20]).h2(),
            UNAUTHORIZED,
        ),
        row(
            "body_over_limit_h1",
            |_| Req::post(vec![b' '; OVER_LIMIT]),
            Expect::Api(413, "api.body"),
        ),
        row(
            "body_over_limit_h2",
            |_| Req::post(vec![b' '; OVER_LIMIT]).h2(),
            Expect::Api(413, "api.body"),
        ),
        row(
            "json_malformed",
            |_| Req::post(r#"{"url": "http://127.0.0.1:1/", "#),
            Expect::Api(400, "api.json"),
        ),
        row(
            // A batch of one job nested 100k deep: the batch is split without a tree, and the
            // job's tree has a depth limit (docs of agent::api::batch).
            "json_array_nested_100k_deep",
            |_| {
                let mut deep = "[".repeat(100_000);
                deep.push_str(&"]".repeat(100_000));
                Req::post(deep)
            },
            Expect::Batch(1, &["request.invalid"]),
        ),
        row(
            "json_job_body_nested_100k_deep",
            |ctx| {
                let mut deep =
                    format!(r#"{{"url": "{}", "body": "#, ctx.world.up.url("/seen/deep"));
                deep.push_str(&r#"{"a":"#.repeat(100_000));
                deep.push('1');
                deep.push_str(&"}".repeat(100_001));
                Req::post(deep)
            },
            Expect::Job(&["request.invalid"]),
        ),
        row(
            "json_scalar_body",
            |_| Req::post("42"),
            Expect::Api(400, "api.json"),
        ),
        row(
            "json_empty_body",
            |_| Req::post(""),
            Expect::Api(400, "api.json"),
        ),
        row(
            "unknown_endpoint",
            |_| Req::request("GET", "/api/v1/../../etc/passwd", "").auth(APIKEY, SECRET),
            Expect::Api(404, "api.not_found"),
        ),
        row(
            "get_on_jobs_endpoint",
            |_| Req::request("GET", "/api/v1/jobs", "").auth(APIKEY, SECRET),
            Expect::Status(405),
        ),
        row(
            "request_with_200_headers",
            |ctx| {
                (0..200).fold(Req::post(small_job(ctx)), |send, n| {
                    send.header(&format!("x-filler-{n}"), "v")
                })
            },
            Expect::Status(431),
        ),
        row(
            "batch_over_capacity",
            |ctx| {
                // The agents run 64 and queue 64: 129 jobs could never all be admitted.
                let job = json!({"url": ctx.world.up.url("/seen/capacity")});
                Req::job(&Value::Array(vec![job; 129]))
            },
            Expect::Api(413, "api.batch_too_large"),
        )
        .check(|ctx, _| {
            let ran = ctx.world.up.seen("/seen/capacity").len();
            if ran == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{ran} jobs of a refused batch reached the upstream"
                ))
            }
        }),
        row(
            "health_hides_broker_unauthenticated",
            |_| Req::request("GET", "/health", ""),
            Expect::Status(200),
        )
        .on(On::Rabbit)
        .check(health_hides_broker),
    ]
}

fn small_job(ctx: &Ctx<'_>) -> Vec<u8> {
    serde_json::to_vec(&json!({"url": ctx.world.up.url("/seen/unauthenticated")})).expect("JSON")
}

fn health_is_ok(_: &Ctx<'_>, got: &Got) -> Result<(), String> {
    let json: Value = serde_json::from_slice(&got.replies[0].body).unwrap_or(Value::Null);
    if json["status"] == "ok" {
        Ok(())
    } else {
        Err(format!("/health body: {json}"))
    }
}

/// The active-mode agent's `/health` without credentials: alive, but no broker address, user,
/// password or last error (the queue name and the state may show).
fn health_hides_broker(ctx: &Ctx<'_>, got: &Got) -> Result<(), String> {
    let text = String::from_utf8_lossy(&got.replies[0].body).into_owned();
    let port = format!(":{}", ctx.world.rabbit_port);
    let leaks: Vec<&str> = [
        "amqp://",
        port.as_str(),
        "hostile-rabbit-user",
        "hostile-rabbit-pw",
        "lastError",
    ]
    .into_iter()
    .filter(|leak| text.contains(leak))
    .collect();
    if leaks.is_empty() {
        Ok(())
    } else {
        Err(format!("unauthenticated /health shows {leaks:?}: {text}"))
    }
}
