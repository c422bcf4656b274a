//! The hostile-input suite's pieces: the agent process ([`agent`]), the API client
//! ([`client`]), loopback upstreams ([`upstream`]), hand-built hostile keystores ([`keys`]),
//! the table ([`cases`]) and the runner that checks each row ([`run`]).

pub(crate) mod agent;
pub(crate) mod cases;
pub(crate) mod client;
pub(crate) mod keys;
pub(crate) mod run;
pub(crate) mod upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use self::client::{Outgoing, Reply, Version};
use self::upstream::Upstream;

/// A file under the repository's `tests/fixtures`.
pub(crate) fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
}

/// Which agent process a row runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum On {
    /// The agent most rows share.
    Shared,
    /// A fresh agent for this row alone (heavy rows, and rows that crashed it before the fix,
    /// so one crash does not cascade).
    Fresh,
    /// A fresh agent in active mode with an unreachable broker on loopback.
    Rabbit,
}

/// What a row expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// An API error: this HTTP status and `error.kind`.
    Api(u16, &'static str),
    /// One of these API errors.
    ApiAny(&'static [(u16, &'static str)]),
    /// This status, whatever the body (refusals by the HTTP layer, /health).
    Status(u16),
    /// One job result with `ok: true` and this upstream status.
    Ok(u16),
    /// One job result with `ok: false` and one of these kinds.
    Job(&'static [&'static str]),
    /// 200 with this many results, each `ok: true` (listed as `"ok"`) or one of these kinds.
    Batch(usize, &'static [&'static str]),
}

/// What a row sends: `times` copies of one request (4 at a time), optionally probing
/// `/health` while they run.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) outgoing: Outgoing,
    pub(crate) times: usize,
    pub(crate) probe: bool,
    pub(crate) deadline: Duration,
    pub(crate) cap: usize,
}

/// Everything the rows share: directories, upstreams, a closed loopback port for the broker.
#[derive(Debug)]
pub(crate) struct World {
    /// The suite's scratch directory.
    pub(crate) dir: PathBuf,
    /// The agents' only certificate directory.
    pub(crate) cert_dir: PathBuf,
    /// An upstream.
    pub(crate) up: Upstream,
    /// Another upstream (another origin: another port).
    pub(crate) up2: Upstream,
    /// A loopback port nobody listens on (the broker of the active-mode agent).
    pub(crate) rabbit_port: u16,
}

/// What a row's functions see.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) world: &'a World,
    /// The job API port of the row's agent.
    pub(crate) port: u16,
    /// The row's agent (memory, log).
    pub(crate) agent: &'a agent::Agent,
    /// Where the agent's log stood when the row started.
    pub(crate) log_from: usize,
}

/// What a row got, for its extra check.
#[derive(Debug)]
pub(crate) struct Got {
    /// Every reply (one per request sent).
    pub(crate) replies: Vec<Reply>,
    /// The slowest `/health` while the requests ran (when probed).
    pub(crate) health_max: Option<Duration>,
}

/// An extra check of a row: `Err` says what was wrong.
pub(crate) type Check = fn(&Ctx<'_>, &Got) -> Result<(), String>;

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) on: On,
    pub(crate) send: fn(&Ctx<'_>) -> Req,
    pub(crate) expect: Expect,
    pub(crate) check: Option<Check>,
    /// A row whose job error message must equal this one's (paths aside): no existence oracle.
    pub(crate) twin: Option<&'static str>,
}

/// A row on the shared agent without extra checks.
pub(crate) fn row(name: &'static str, send: fn(&Ctx<'_>) -> Req, expect: Expect) -> Row {
    Row {
        name,
        on: On::Shared,
        send,
        expect,
        check: None,
        twin: None,
    }
}

impl Row {
    /// Runs on its own agent.
    pub(crate) fn on(mut self, on: On) -> Self {
        self.on = on;
        self
    }

    /// Adds a check.
    pub(crate) fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    /// Its error message must equal `twin`'s.
    pub(crate) fn twin(mut self, twin: &'static str) -> Self {
        self.twin = Some(twin);
        self
    }
}

impl Ctx<'_> {
    /// `https://127.0.0.1:PORT{path}` of the row's agent.
    pub(crate) fn agent_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The agent's log since the row started.
    pub(crate) fn new_log(&self) -> String {
        self.agent
            .log()
            .get(self.log_from..)
            .unwrap_or("")
            .to_owned()
    }
}

/// The Authorization header of the suite's credentials.
pub(crate) fn basic(apikey: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{apikey}:{secret}"))
    )
}

impl Req {
    /// An authenticated HTTP/1.1 `POST /api/v1/jobs` of `body`.
    pub(crate) fn post(body: impl Into<Bytes>) -> Self {
        Self::request("POST", "/api/v1/jobs", body).auth(agent::APIKEY, agent::SECRET)
    }

    /// An authenticated POST of one job or a batch.
    pub(crate) fn job(job: &Value) -> Self {
        Self::post(serde_json::to_vec(job).expect("JSON"))
    }

    /// An unauthenticated request.
    pub(crate) fn request(method: &'static str, path: &str, body: impl Into<Bytes>) -> Self {
        Self {
            outgoing: Outgoing {
                version: Version::H1,
                method,
                path: path.to_owned(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.into(),
            },
            times: 1,
            probe: false,
            deadline: Duration::from_secs(60),
            cap: 16 << 20,
        }
    }

    /// Adds `Authorization: Basic base64(apikey:secret)`.
    pub(crate) fn auth(self, apikey: &str, secret: &str) -> Self {
        self.header("authorization", &basic(apikey, secret))
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.outgoing.headers.push((name.into(), value.into()));
        self
    }

    /// Over HTTP/2.
    pub(crate) fn h2(mut self) -> Self {
        self.outgoing.version = Version::H2;
        self
    }

    /// Sent `times` times.
    pub(crate) fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// `/health` is probed while it runs.
    pub(crate) fn probe(mut self) -> Self {
        self.probe = true;
        self
    }

    /// The answer must come within `seconds`.
    pub(crate) fn deadline(mut self, seconds: u64) -> Self {
        self.deadline = Duration::from_secs(seconds);
        self
    }

    /// Reads at most `bytes` of the answer (more fails the row).
    pub(crate) fn cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self
    }
}
