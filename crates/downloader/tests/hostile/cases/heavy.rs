//! Rows that cost the unfixed agent its life, minutes of CPU or gigabytes: each runs on a
//! fresh agent, so a crash or a leak does not cascade into the next row.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

use super::super::keys::{self, Kdf};
use super::super::upstream::BIG;
use super::super::{Ctx, Expect, Got, On, Req, Row, row};
use super::jobs::url;

const TOO_COSTLY: Expect = Expect::Job(&["keystore.too_costly"]);
const TOO_LARGE: Expect = Expect::Job(&["request.too_large"]);
/// The most the agent may keep resident once 58 jobs with 20 MB inline keystores are done. Pinned
/// buffers alone would be 58 x 20 MB = 1.1 GiB (1.4 GiB measured before the fix); with them
/// freed, 342 MiB stayed resident (glibc keeps freed arena memory), so 512 MiB separates the two
/// with a margin.
const RETURNED_KIB: u64 = 512 << 10;
/// The largest answer the 40 x 20 MB batch may produce (unbounded it is 800 MB): the response
/// bytes one request may hold (`DOWNLOADER_MAX_REQUEST_RESULT_BYTES`, 256 MiB by default) plus
/// 16 MiB for the results' JSON around the bodies.
const BATCH_ANSWER_CAP: usize = (256 + 16) << 20;

/// The rows.
pub(crate) fn rows() -> Vec<Row> {
    vec![
        row(
            "keystore_scrypt_n_2_40",
            |ctx| {
                costly(
                    ctx,
                    Kdf::Scrypt {
                        n: 1 << 40,
                        r: 8,
                        p: 1,
                    },
                )
            },
            TOO_COSTLY,
        )
        .on(On::Fresh),
        row(
            // 4096 lanes of 16 MiB each: minutes of CPU, little memory at a time.
            "keystore_scrypt_p_4096",
            |ctx| {
                costly(
                    ctx,
                    Kdf::Scrypt {
                        n: 1 << 14,
                        r: 8,
                        p: 4096,
                    },
                )
            },
            TOO_COSTLY,
        )
        .on(On::Fresh),
        row(
            "keystore_pbkdf2_4e9_iterations",
            |ctx| {
                costly(
                    ctx,
                    Kdf::Pbkdf2 {
                        iterations: 4_000_000_000,
                    },
                )
            },
            TOO_COSTLY,
        )
        .on(On::Fresh),
        row(
            "template_1mb_var_used_1000_times",
            |ctx| {
                Req::job(&json!({
                    "url": url(ctx, "template"),
                    "method": "POST",
                    "vars": {"big": "a".repeat(1 << 20)},
                    "body": "${big}".repeat(1000),
                }))
            },
            TOO_LARGE,
        )
        .on(On::Fresh)
        .check(|ctx, _| {
            let sent: usize = ctx
                .world
                .up
                .seen("/seen/template")
                .iter()
                .map(|seen| seen.body_len)
                .sum();
            match sent {
                0 => Ok(()),
                sent => Err(format!(
                    "the upstream got {} MiB of rendered template",
                    sent >> 20
                )),
            }
        }),
        row(
            "multipart_300k_parts",
            |ctx| {
                let part = json!({"name": "p", "value": "v"});
                Req::job(&json!({
                    "url": url(ctx, "multipart"),
                    "method": "POST",
                    "body": {"multipart": vec![part; 300_000]},
                }))
            },
            TOO_LARGE,
        )
        .on(On::Fresh),
        row(
            "body_48_mb_of_zeros",
            |_| {
                // `[0,0,...,0]`: 24 million array items, parsed while /health is probed.
                let mut zeros = Vec::with_capacity(48_000_002);
                zeros.push(b'[');
                zeros.extend(b"0,".repeat(24_000_000 - 1));
                zeros.extend(b"0]");
                Req::post(zeros).probe()
            },
            Expect::ApiAny(&[(413, "api.batch_too_large"), (400, "api.json")]),
        )
        .on(On::Fresh),
        row(
            "batch_40_jobs_of_20_mb_responses",
            |ctx| {
                let job = json!({"url": ctx.world.up.url("/big"), "config": {"timeout": 60}});
                Req::job(&Value::Array(vec![job; 40]))
                    .cap(BATCH_ANSWER_CAP)
                    .deadline(90)
            },
            Expect::Batch(40, &["ok", "body.too_large"]),
        )
        .on(On::Fresh),
        row(
            "inline_keystores_58_jobs_of_20_mb",
            |ctx| {
                // JKS magic, then zeros: refused as corrupt at once (a blob of no known format
                // is scanned for every format, seconds per job in a debug build).
                let mut blob = vec![0u8; BIG];
                blob[..8].copy_from_slice(&[0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]);
                let blob = STANDARD.encode(blob);
                let job = json!({
                    "url": url(ctx, "blob"),
                    "config": {"client_cert_configuration": {
                        "keystoreBase64": blob, "keystorePassword": "x"}},
                });
                let body = Bytes::from(serde_json::to_vec(&job).expect("JSON"));
                Req::post(body).times(58).deadline(90)
            },
            Expect::Job(&["keystore.*"]),
        )
        .on(On::Fresh)
        .check(memory_returned),
    ]
}

/// A job whose inline PEM key asks for `kdf`; the job's own deadline is 5 s, the answer must
/// come within 20.
fn costly(ctx: &Ctx<'_>, kdf: Kdf) -> Req {
    Req::job(&json!({
        "url": url(ctx, "costly"),
        "config": {
            "timeout": 5,
            "client_cert_configuration": {
                "keystoreBase64": keys::inline_keystore(kdf),
                "keystorePassword": keys::PASSWORD,
            },
        },
    }))
    .deadline(20)
}

fn memory_returned(ctx: &Ctx<'_>, _: &Got) -> Result<(), String> {
    // Freed memory may reach the allocator a moment after the last answer.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rss = ctx.agent.memory().rss_kib;
    if rss <= RETURNED_KIB {
        Ok(())
    } else {
        Err(format!(
            "RSS {} MiB after the jobs (bound {} MiB): inline buffers kept",
            rss >> 10,
            RETURNED_KIB >> 10
        ))
    }
}
