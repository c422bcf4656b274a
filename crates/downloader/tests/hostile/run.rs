//! The runner: each row against its agent, its expectation checked on every reply, then the
//! agent alive and `/health` answering 200 within [`HEALTH_AFTER`], then its memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use super::agent::{Agent, Memory};
use super::client::{Client, Reply};
use super::{Ctx, Expect, Got, On, Req, Row, World};

/// How long `/health` may take after a row.
pub(crate) const HEALTH_AFTER: Duration = Duration::from_secs(2);
/// How slow `/health` may get while a probed row's requests run (generous: a liveness bound,
/// not a benchmark; the unfixed agent stalled 3.5 s on 48 MB of zeros).
pub(crate) const HEALTH_DURING: Duration = Duration::from_secs(2);
/// Requests of one row in flight at once.
const PARALLEL: usize = 4;

/// One printed line of the table.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) name: &'static str,
    pub(crate) agent: &'static str,
    pub(crate) expected: String,
    /// What happened: `Ok` on a pass, `Err` with every reason otherwise.
    pub(crate) result: Result<String, String>,
    pub(crate) memory: Memory,
    /// How long the row took, checks included.
    pub(crate) took: Duration,
}

/// Runs every row in order and returns its line.
pub(crate) async fn table(world: &World, rows: &[Row]) -> Vec<Line> {
    let mut shared = start(world, On::Shared, "shared");
    let mut messages: HashMap<&'static str, String> = HashMap::new();
    let mut lines = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let mut own = match row.on {
            On::Shared => None,
            on => Some(start(world, on, &format!("row-{index:02}"))),
        };
        let agent = own.as_mut().unwrap_or(&mut shared);
        let line = one(world, agent, row, &mut messages).await;
        println!("{:<40} {}", line.name, summary(&line));
        lines.push(line);
        if own.is_none() && shared.exited().is_some() {
            // A crash of the shared agent must not fail every later row too.
            shared = start(world, On::Shared, &format!("shared-after-{index:02}"));
        }
    }
    lines
}

fn start(world: &World, on: On, label: &str) -> Agent {
    let dir = world.dir.join(format!("agent-{label}"));
    let env = match on {
        On::Rabbit => vec![
            ("use_rabbit", "true".to_owned()),
            ("rabbitHost", "127.0.0.1".to_owned()),
            ("rabbitPort", world.rabbit_port.to_string()),
            ("rabbitUsername", "hostile-rabbit-user".to_owned()),
            ("rabbitPassword", "hostile-rabbit-pw".to_owned()),
            ("DOWNLOADER_RABBIT_QUEUE", "hostile-queue".to_owned()),
        ],
        On::Shared | On::Fresh => Vec::new(),
    };
    Agent::start(&dir, &world.cert_dir, &env)
}

async fn one(
    world: &World,
    agent: &mut Agent,
    row: &Row,
    messages: &mut HashMap<&'static str, String>,
) -> Line {
    let started = std::time::Instant::now();
    let client = Client::new(agent.port, &agent.cert_pem);
    let log_from = agent.log().len();
    let mut problems = Vec::new();
    let mut passed = String::new();
    {
        let ctx = Ctx {
            world,
            port: agent.port,
            agent: &*agent,
            log_from,
        };
        let send = (row.send)(&ctx);
        match execute(&client, &send).await {
            Err(error) => problems.push(error),
            Ok(got) => {
                match verdict(row.expect, &got.replies) {
                    Ok(text) => passed = text,
                    Err(text) => problems.push(format!("got {text}")),
                }
                if let Some(slowest) = got.health_max {
                    let note = format!("/health at most {} ms during it", slowest.as_millis());
                    if slowest > HEALTH_DURING {
                        problems.push(note);
                    } else {
                        passed.push_str(&format!("; {note}"));
                    }
                }
                if let Some(check) = row.check
                    && let Err(problem) = check(&ctx, &got)
                {
                    problems.push(problem);
                }
                if let Some(message) = got.replies.first().and_then(job_message) {
                    messages.insert(row.name, unquote(&message));
                }
                if let Some(twin) = row.twin {
                    let mine = messages.get(row.name);
                    if mine != messages.get(twin) {
                        problems.push(format!(
                            "message differs from {twin}'s: {mine:?} vs {:?}",
                            messages.get(twin)
                        ));
                    }
                }
            }
        }
    }
    if let Some(status) = agent.exited() {
        problems.push(format!("the agent died: {status}"));
    } else if let Err(error) = client.health(HEALTH_AFTER).await {
        problems.push(format!("/health after: {error}"));
    }
    let memory = agent.memory();
    Line {
        name: row.name,
        agent: match row.on {
            On::Shared => "shared",
            On::Fresh => "fresh",
            On::Rabbit => "rabbit",
        },
        expected: expected(row.expect),
        took: started.elapsed(),
        result: if problems.is_empty() {
            Ok(passed)
        } else {
            Err(problems.join("; "))
        },
        memory,
    }
}

/// Sends the row's requests, [`PARALLEL`] at a time, probing `/health` meanwhile if asked.
async fn execute(client: &Client, send: &Req) -> Result<Got, String> {
    let sending = {
        let (client, send) = (client.clone(), Arc::new(send.clone()));
        tokio::spawn(async move {
            let mut set = JoinSet::new();
            let mut replies = Vec::with_capacity(send.times);
            for _ in 0..send.times {
                if set.len() == PARALLEL
                    && let Some(done) = set.join_next().await
                {
                    replies.push(done.map_err(|error| error.to_string())??);
                }
                let (client, send) = (client.clone(), send.clone());
                set.spawn(
                    async move { client.send(&send.outgoing, send.cap, send.deadline).await },
                );
            }
            while let Some(done) = set.join_next().await {
                replies.push(done.map_err(|error| error.to_string())??);
            }
            Ok::<_, String>(replies)
        })
    };
    let mut health_max = None;
    if send.probe {
        let mut slowest = Duration::ZERO;
        while !sending.is_finished() {
            let took = client
                .health(Duration::from_secs(10))
                .await
                .unwrap_or(Duration::from_secs(10));
            slowest = slowest.max(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        health_max = Some(slowest);
    }
    let replies = sending.await.map_err(|error| error.to_string())??;
    Ok(Got {
        replies,
        health_max,
    })
}

/// Checks every reply; `Ok` describes the first, `Err` the first that does not match.
fn verdict(expect: Expect, replies: &[Reply]) -> Result<String, String> {
    for reply in replies {
        if !matches(expect, reply) {
            return Err(describe(reply));
        }
    }
    Ok(replies.first().map(describe).unwrap_or_default())
}

fn matches(expect: Expect, reply: &Reply) -> bool {
    if reply.truncated {
        return false;
    }
    let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let api_kind = json.pointer("/error/kind").and_then(Value::as_str);
    match expect {
        Expect::Api(status, kind) => reply.status == status && api_kind == Some(kind),
        Expect::ApiAny(any) => any
            .iter()
            .any(|(status, kind)| reply.status == *status && api_kind == Some(*kind)),
        Expect::Status(status) => reply.status == status,
        Expect::Ok(code) => {
            reply.status == 200
                && json["ok"] == true
                && json.pointer("/response/statusCode") == Some(&Value::from(code))
        }
        Expect::Job(kinds) => reply.status == 200 && json["ok"] == false && kind_in(&json, kinds),
        Expect::Batch(count, kinds) => {
            reply.status == 200
                && json.as_array().is_some_and(|items| {
                    items.len() == count && items.iter().all(|item| kind_in(item, kinds))
                })
        }
    }
}

/// Whether a job result's kind (`"ok"` for `ok: true`) is listed; `"keystore.*"` is a prefix.
fn kind_in(result: &Value, kinds: &[&str]) -> bool {
    let kind = result_kind(result);
    kinds.iter().any(|wanted| match wanted.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => kind == *wanted,
    })
}

fn result_kind(result: &Value) -> String {
    if result["ok"] == true {
        return "ok".into();
    }
    result
        .pointer("/error/kind")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

/// A reply in a few words: status, API error kind or job result(s).
pub(crate) fn describe(reply: &Reply) -> String {
    if reply.truncated {
        return format!(
            "{} with an answer over {} MiB (unbounded)",
            reply.status,
            reply.body.len() >> 20
        );
    }
    let json: Value = match serde_json::from_slice(&reply.body) {
        Ok(json) => json,
        Err(_) => return format!("{} ({} bytes, not JSON)", reply.status, reply.body.len()),
    };
    if let Some(kind) = json.pointer("/error/kind").and_then(Value::as_str)
        && json.get("ok").is_none()
    {
        return format!("{} {kind}", reply.status);
    }
    if let Some(items) = json.as_array() {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for item in items {
            let kind = result_kind(item);
            match counts.iter_mut().find(|(known, _)| *known == kind) {
                Some((_, count)) => *count += 1,
                None => counts.push((kind, 1)),
            }
        }
        let counts: Vec<String> = counts
            .iter()
            .map(|(kind, n)| format!("{n}x {kind}"))
            .collect();
        return format!("{} [{}]", reply.status, counts.join(", "));
    }
    match json.get("ok") {
        Some(Value::Bool(true)) => format!(
            "{} ok upstream {}",
            reply.status,
            json.pointer("/response/statusCode").unwrap_or(&Value::Null)
        ),
        Some(_) => format!("{} job {}", reply.status, result_kind(&json)),
        None => format!(
            "{} {}",
            reply.status,
            truncate(&String::from_utf8_lossy(&reply.body))
        ),
    }
}

fn expected(expect: Expect) -> String {
    match expect {
        Expect::Api(status, kind) => format!("{status} {kind}"),
        Expect::ApiAny(any) => any
            .iter()
            .map(|(status, kind)| format!("{status} {kind}"))
            .collect::<Vec<_>>()
            .join(" | "),
        Expect::Status(status) => format!("{status}"),
        Expect::Ok(code) => format!("ok upstream {code}"),
        Expect::Job(kinds) => format!("job {}", kinds.join(" | ")),
        Expect::Batch(count, kinds) => format!("{count} results: {}", kinds.join(" | ")),
    }
}

/// The `error.message` of a job result.
fn job_message(reply: &Reply) -> Option<String> {
    let json: Value = serde_json::from_slice(&reply.body).ok()?;
    json.pointer("/error/message")?.as_str().map(str::to_owned)
}

/// A message with every `'quoted'` part (the requested path) replaced.
fn unquote(message: &str) -> String {
    let mut out = String::new();
    for (index, part) in message.split('\'').enumerate() {
        out.push_str(if index % 2 == 1 { "<path>" } else { part });
    }
    out
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// One line: the verdict and memory.
pub(crate) fn summary(line: &Line) -> String {
    let result = match &line.result {
        Ok(got) => format!("pass  {got}"),
        Err(problems) => format!("FAIL  {problems}"),
    };
    format!(
        "{:<7} {:>5.1} s  rss {:>5} MiB  peak {:>5} MiB  {result}",
        line.agent,
        line.took.as_secs_f64(),
        line.memory.rss_kib >> 10,
        line.memory.hwm_kib >> 10
    )
}
