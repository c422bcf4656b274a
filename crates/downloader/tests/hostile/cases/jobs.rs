//! Rows of malformed or hostile jobs: schemes, names, CR/LF, absurd numbers, header and param
//! counts, secrets that must not be echoed, URL credentials, and headers across redirects.

use serde_json::{Map, Value, json};

use super::super::{Ctx, Expect, Got, Req, row};
use super::super::{Row, basic};

const INVALID: Expect = Expect::Job(&["request.invalid"]);
const TOO_LARGE: Expect = Expect::Job(&["request.too_large"]);
/// A numeric password (the reference system's clients send them): never echoed.
const NUMERIC_PASSWORD: u64 = 918_273_645_546_372_819;
/// The marker of a forged log line.
const FORGED: &str = "FORGED-LOG-LINE";

/// The rows.
pub(crate) fn rows() -> Vec<Row> {
    let mut rows = vec![
        row(
            "scheme_file",
            |_| Req::job(&json!({"url": "file:///etc/passwd"})),
            INVALID,
        ),
        row(
            "scheme_gopher",
            |_| Req::job(&json!({"url": "gopher://127.0.0.1:70/1"})),
            INVALID,
        ),
        row(
            // Not `http:///x`: that parses as host `x` and would be looked up in DNS.
            "url_empty_host",
            |_| Req::job(&json!({"url": "http://:8080/seen/none"})),
            INVALID,
        ),
        row(
            "config_unknown_name",
            |ctx| Req::job(&json!({"url": url(ctx, "x"), "config": {"evil": true}})),
            INVALID,
        ),
        row(
            "job_unknown_field",
            |ctx| Req::job(&json!({"url": url(ctx, "x"), "exec": "rm -rf /"})),
            INVALID,
        ),
        row("job_without_url", |_| Req::job(&json!({"method": "GET"})), INVALID),
        row(
            "crlf_in_header_value",
            |ctx| {
                Req::job(&json!({"url": url(ctx, "crlf"), "headers": {"X-Test": "a\r\nX-Injected: 1"}}))
            },
            INVALID,
        ),
        row(
            "crlf_in_header_name",
            |ctx| Req::job(&json!({"url": url(ctx, "crlf"), "headers": {"X-A\r\nX-B": "1"}})),
            INVALID,
        ),
        row(
            "crlf_in_method",
            |ctx| {
                let method = format!("GET\r\n{FORGED} INFO job id=forged");
                Req::job(&json!({"url": url(ctx, "crlf"), "method": method}))
            },
            INVALID,
        )
        .check(no_forged_log_line),
        row(
            "timeout_1e19",
            |ctx| Req::job(&json!({"url": url(ctx, "t"), "config": {"timeout": 1e19}})),
            INVALID,
        ),
        row(
            "timeout_1e19_as_text",
            |ctx| Req::job(&json!({"url": url(ctx, "t"), "config": {"timeout": "1e19"}})),
            INVALID,
        ),
        row(
            "timeout_negative",
            |ctx| Req::job(&json!({"url": url(ctx, "t"), "config": {"timeout": -5}})),
            INVALID,
        ),
        row(
            "max_redirects_1e12",
            |ctx| Req::job(&json!({"url": url(ctx, "r"), "config": {"max_redirects": 1e12}})),
            INVALID,
        ),
        row(
            "headers_100k",
            |ctx| {
                let headers: Map<String, Value> = (0..100_000)
                    .map(|n| (format!("x-h{n}"), Value::from("v")))
                    .collect();
                Req::job(&json!({"url": url(ctx, "h"), "headers": headers}))
            },
            TOO_LARGE,
        ),
        row(
            "header_values_100k",
            |ctx| {
                let values = vec![Value::from("v"); 100_000];
                Req::job(&json!({"url": url(ctx, "h"), "headers": {"x-many": values}}))
            },
            TOO_LARGE,
        ),
        row(
            "params_100k",
            |ctx| {
                let params: Map<String, Value> = (0..100_000)
                    .map(|n| (format!("p{n}"), Value::from("v")))
                    .collect();
                Req::job(&json!({"url": url(ctx, "p"), "params": params}))
            },
            TOO_LARGE,
        ),
        row(
            "keystore_password_numeric_not_echoed",
            |ctx| {
                Req::job(&json!({"url": url(ctx, "pw"), "config": {"client_cert_configuration": {
                    "keystorePath": "inside.p12", "keystorePassword": NUMERIC_PASSWORD}}}))
            },
            Expect::Job(&["request.invalid", "keystore.wrong_store_password"]),
        )
        .check(|_, got| not_echoed(got, &NUMERIC_PASSWORD.to_string())),
        row(
            "keystore_password_wrong_not_echoed",
            |ctx| {
                Req::job(&json!({"url": url(ctx, "pw"), "config": {"client_cert_configuration": {
                    "keystorePath": "inside.p12", "keystorePassword": "hostile-wrong-pw-4411"}}}))
            },
            Expect::Job(&["keystore.wrong_store_password"]),
        )
        .check(|_, got| not_echoed(got, "hostile-wrong-pw-4411")),
        row(
            "url_credentials_plus_ampersand",
            |ctx| {
                let port = ctx.world.up.port;
                Req::job(&json!({"url": format!("http://us+er:p&ss+w%40rd@127.0.0.1:{port}/seen/creds")}))
            },
            Expect::Ok(200),
        )
        .check(exact_credentials),
        row(
            "redirect_cross_origin_drops_api_key",
            |ctx| {
                let to = ctx.world.up2.url("/seen/redirected");
                Req::job(&json!({
                    "url": ctx.world.up.url(&format!("/redirect?to={to}")),
                    "headers": {"X-Api-Key": "hostile-api-key-2718", "Authorization": "Bearer hostile-token-3141"},
                    "config": {"follow_redirects": true},
                }))
            },
            Expect::Ok(200),
        )
        .check(api_key_stayed_home),
        row(
            "batch_item_not_an_object",
            |ctx| Req::job(&json!([1, {"url": url(ctx, "batch-item")}])),
            Expect::Batch(2, &["request.invalid", "ok"]),
        )
        .check(|_, got| {
            let json: Value = serde_json::from_slice(&got.replies[0].body).unwrap_or_default();
            match (json[0]["ok"].as_bool(), json[1]["ok"].as_bool()) {
                (Some(false), Some(true)) => Ok(()),
                other => Err(format!("item results {other:?}: want the bad one refused, the good one run")),
            }
        }),
        row("batch_empty", |_| Req::job(&json!([])), Expect::Batch(0, &[])),
    ];
    rows.extend(super::egress::rows());
    rows
}

/// A job URL on the first upstream.
pub(crate) fn url(ctx: &Ctx<'_>, name: &str) -> String {
    ctx.world.up.url(&format!("/seen/{name}"))
}

fn no_forged_log_line(ctx: &Ctx<'_>, _: &Got) -> Result<(), String> {
    let log = ctx.new_log();
    match log
        .split(['\n', '\r'])
        .find(|line| line.trim_start().starts_with(FORGED))
    {
        Some(line) => Err(format!("the log has a forged line: {line:?}")),
        None => Ok(()),
    }
}

fn not_echoed(got: &Got, secret: &str) -> Result<(), String> {
    let reply = &got.replies[0];
    let headers = format!("{:?}", reply.headers);
    if String::from_utf8_lossy(&reply.body).contains(secret) || headers.contains(secret) {
        Err(format!("the response echoes the password {secret}"))
    } else {
        Ok(())
    }
}

/// The upstream got exactly `Basic base64("us+er:p&ss+w@rd")`: `+` and `&` as they are.
fn exact_credentials(ctx: &Ctx<'_>, _: &Got) -> Result<(), String> {
    let want = basic("us+er", "p&ss+w@rd");
    let seen = ctx.world.up.seen("/seen/creds");
    let got: Vec<&str> = seen
        .iter()
        .flat_map(|seen| seen.headers.iter())
        .filter(|(name, _)| name == "authorization")
        .map(|(_, value)| value.as_str())
        .collect();
    if got == [want.as_str()] {
        Ok(())
    } else {
        Err(format!(
            "upstream got Authorization {got:?}, want [{want:?}]"
        ))
    }
}

/// The first hop got `X-Api-Key` (so the job sent it); the other origin got neither it nor
/// `Authorization`.
fn api_key_stayed_home(ctx: &Ctx<'_>, _: &Got) -> Result<(), String> {
    let has = |seen: &[super::super::upstream::Seen], name: &str| {
        seen.iter()
            .any(|seen| seen.headers.iter().any(|(header, _)| header == name))
    };
    let first = ctx.world.up.seen("/redirect?to=");
    let second = ctx.world.up2.seen("/seen/redirected");
    if !has(&first, "x-api-key") {
        return Err("the first hop did not get X-Api-Key".into());
    }
    if second.is_empty() {
        return Err("the redirect was not followed".into());
    }
    let leaked: Vec<&str> = ["x-api-key", "authorization"]
        .into_iter()
        .filter(|name| has(&second, name))
        .collect();
    if leaked.is_empty() {
        Ok(())
    } else {
        Err(format!("the other origin got {leaked:?}"))
    }
}
