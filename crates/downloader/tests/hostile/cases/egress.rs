//! Rows a job must not get away with: reaching the agent itself in every address form, through
//! a redirect, a `resolve` pin or a job `proxy` (`egress.denied`), and keystore or trust paths
//! outside the certificate directory (`keystore.path_not_allowed`, one message whether or not
//! the outside file exists). Every address here is loopback.

use serde_json::json;

use super::super::agent::{APIKEY, SECRET};
use super::super::{Ctx, Expect, Req, Row, basic, row};
use super::jobs::url;

const DENIED: Expect = Expect::Job(&["egress.denied"]);
const NOT_ALLOWED: Expect = Expect::Job(&["keystore.path_not_allowed"]);

/// The rows.
pub(crate) fn rows() -> Vec<Row> {
    vec![
        row(
            "egress_agent_127_0_0_1",
            |ctx| to_agent(&ctx.agent_url("/health")),
            DENIED,
        ),
        row(
            "egress_agent_ipv4_mapped_ipv6",
            |ctx| to_agent(&format!("https://[::ffff:127.0.0.1]:{}/health", ctx.port)),
            DENIED,
        ),
        row(
            "egress_agent_decimal_ipv4",
            |ctx| to_agent(&format!("https://2130706433:{}/health", ctx.port)),
            DENIED,
        ),
        row(
            "egress_agent_0_0_0_0",
            |ctx| to_agent(&format!("https://0.0.0.0:{}/health", ctx.port)),
            DENIED,
        ),
        row(
            "egress_agent_localhost",
            |ctx| to_agent(&format!("https://localhost:{}/health", ctx.port)),
            DENIED,
        ),
        row(
            "egress_agent_metrics_with_credentials",
            |ctx| {
                Req::job(&json!({
                    "url": format!("https://localhost:{}/metrics", ctx.port),
                    "headers": {"Authorization": basic(APIKEY, SECRET)},
                    "config": {"disable_ssl_validation": true, "timeout": 10},
                }))
            },
            DENIED,
        ),
        row(
            "egress_redirect_to_agent",
            |ctx| {
                let to = ctx.agent_url("/health");
                Req::job(&json!({
                    "url": ctx.world.up.url(&format!("/redirect?to={to}")),
                    "config": {"follow_redirects": true, "disable_ssl_validation": true, "timeout": 10},
                }))
            },
            DENIED,
        ),
        row(
            "egress_resolve_pin_to_agent",
            |ctx| {
                // `vm` is in /etc/hosts too: were the pin ignored, still no DNS packet leaves.
                Req::job(&json!({
                    "url": format!("https://vm:{}/health", ctx.port),
                    "config": {"resolve": format!("vm:{}:127.0.0.1", ctx.port),
                               "disable_ssl_validation": true, "timeout": 10},
                }))
            },
            DENIED,
        ),
        row(
            "egress_proxy_is_agent",
            |ctx| {
                Req::job(&json!({
                    "url": url(ctx, "via-proxy"),
                    "config": {"proxy": format!("http://127.0.0.1:{}", ctx.port), "timeout": 10},
                }))
            },
            DENIED,
        ),
        row(
            "confine_dotdot_existing",
            |ctx| keystore_path(ctx, "../outside.p12"),
            NOT_ALLOWED,
        ),
        row(
            "confine_dotdot_missing",
            |ctx| keystore_path(ctx, "../missing.p12"),
            NOT_ALLOWED,
        )
        .twin("confine_dotdot_existing"),
        row(
            "confine_absolute_existing",
            |ctx| {
                keystore_path(
                    ctx,
                    &ctx.world.dir.join("outside.p12").display().to_string(),
                )
            },
            NOT_ALLOWED,
        ),
        row(
            "confine_absolute_missing",
            |ctx| {
                keystore_path(
                    ctx,
                    &ctx.world.dir.join("missing.p12").display().to_string(),
                )
            },
            NOT_ALLOWED,
        )
        .twin("confine_absolute_existing"),
        row(
            "confine_symlink_out_existing",
            |ctx| keystore_path(ctx, "link-out.p12"),
            NOT_ALLOWED,
        ),
        row(
            "confine_symlink_out_dangling",
            |ctx| keystore_path(ctx, "link-dangling.p12"),
            NOT_ALLOWED,
        )
        .twin("confine_symlink_out_existing"),
        row(
            "confine_etc_shadow",
            |ctx| keystore_path(ctx, "/etc/shadow"),
            NOT_ALLOWED,
        ),
        row(
            "confine_trust_path_outside",
            |ctx| {
                Req::job(&json!({
                    "url": url(ctx, "trust"),
                    "config": {"trust": {"path": "../outside-trust.pem"}},
                }))
            },
            NOT_ALLOWED,
        ),
    ]
}

/// A job to the agent's own address, not verifying its certificate: before the egress policy
/// it reached the agent (and `/metrics` with credentials).
fn to_agent(url: &str) -> Req {
    Req::job(&json!({
        "url": url,
        "config": {"disable_ssl_validation": true, "timeout": 10},
    }))
}

fn keystore_path(ctx: &Ctx<'_>, path: &str) -> Req {
    Req::job(&json!({
        "url": url(ctx, "confine"),
        "config": {"client_cert_configuration": {
            "keystorePath": path, "keystorePassword": "Fx-store-7431"}},
    }))
}
