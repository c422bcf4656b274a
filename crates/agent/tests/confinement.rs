//! Confinement of job-named keystore and trust store paths by file descriptor: a path is opened
//! beneath a certificate directory without following symlinks out of it, and the bytes that
//! are used are the bytes read through that descriptor — whatever the file system does
//! meanwhile. Over real HTTPS against an upstream that reports the certificate it was shown.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustix::fs::{CWD, RenameFlags, renameat_with};
use serde_json::{Value, json};
use support::{STORE, install, seen_subject, upstream};

/// Jobs in the race, in batches of [`BATCH`].
const RACE_JOBS: usize = 3000;
const BATCH: usize = 50;

fn job(url: &str, path: &str) -> Value {
    json!({"url": url, "config": {"client_cert_configuration":
        {"keystorePath": path, "keystorePassword": STORE}}})
}

/// An agent whose only certificate directory is `dir`.
async fn agent_for(dir: &Path) -> support::TestAgent {
    let mut config = support::config();
    config.cert_dirs = vec![dir.canonicalize().expect("dir")];
    support::start(config).await
}

/// A thread that exchanges `dir/a` and `dir/b` atomically (`renameat2(RENAME_EXCHANGE)`) until
/// `stop` is set; counts the exchanges.
fn swapper(
    dir: &Path,
    a: &'static str,
    b: &'static str,
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let (a, b) = (dir.join(a), dir.join(b));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE).expect("exchange");
            swaps.fetch_add(1, Ordering::Relaxed);
            std::thread::yield_now();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_subdirectory_for_a_symlink_never_presents_an_outside_keystore() {
    let server = upstream::start().await;
    let dir = support::temp_dir("race").canonicalize().expect("dir");
    let outside = support::temp_dir("race-outside");
    // Inside: client-p256. Outside, under the same name and password: client-rsa2048.
    std::fs::create_dir_all(dir.join("sub")).expect("sub");
    install("client/p256/openssl.p12", &dir.join("sub"), "k.p12");
    install("client/rsa2048/openssl.p12", &outside, "k.p12");
    std::os::unix::fs::symlink(&outside, dir.join("swap")).expect("symlink");
    let agent = agent_for(&dir).await;
    let url = server.url("/");

    // The outside keystore is a working identity: if a job read it, the upstream would say so.
    install("client/rsa2048/openssl.p12", &dir, "control.p12");
    let control = agent.jobs(&job(&url, "control.p12")).await;
    assert!(
        seen_subject(&control).contains("client-rsa2048"),
        "{control}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let thread = swapper(&dir, "sub", "swap", stop.clone(), swaps.clone());
    let absolute = dir.join("sub/k.p12").display().to_string();
    let names = [
        "sub/k.p12",
        absolute.as_str(),
        "sub/./k.p12",
        "sub/../sub/k.p12",
    ];
    let (mut inside, mut refused, mut escaped, mut other) = (0, 0, 0, Vec::new());
    for batch in 0..RACE_JOBS / BATCH {
        let jobs: Vec<Value> = (0..BATCH)
            .map(|n| job(&url, names[(batch + n) % names.len()]))
            .collect();
        let results = agent.jobs(&Value::Array(jobs)).await;
        for result in results.as_array().expect("batch results") {
            let subject = seen_subject(result);
            if subject.contains("client-rsa2048") {
                escaped += 1;
            } else if subject.contains("client-p256") {
                inside += 1;
            } else if result["error"]["kind"] == "keystore.path_not_allowed" {
                refused += 1;
            } else {
                other.push(result.clone());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("swapper");
    agent.stop().await;
    let swaps = swaps.load(Ordering::Relaxed);
    println!(
        "{RACE_JOBS} jobs, {swaps} swaps: {inside} inside, {refused} refused, {escaped} escaped"
    );
    assert_eq!(
        escaped, 0,
        "jobs presented the keystore outside the directories"
    );
    assert!(other.is_empty(), "unexpected results: {other:?}");
    // Both states were seen, so the race was really run.
    assert!(
        inside > 0 && refused > 0,
        "{inside} inside, {refused} refused"
    );
    assert!(swaps > 100, "{swaps} swaps");
}

#[tokio::test]
async fn every_way_out_gets_one_message_whether_or_not_the_file_exists() {
    let server = upstream::start().await;
    let base = support::temp_dir("one-message");
    let (dir, outside) = (base.join("certs"), base.join("outside"));
    std::fs::create_dir_all(&dir).expect("certs");
    std::fs::create_dir_all(&outside).expect("outside");
    let (dir, outside) = (
        dir.canonicalize().expect("dir"),
        outside.canonicalize().expect("outside"),
    );
    install("client/p256/openssl.p12", &dir, "a.p12");
    install("client/rsa2048/openssl.p12", &outside, "k.p12");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.join(name)).expect("symlink");
    };
    link(&outside.join("k.p12"), "escape.p12");
    link(&outside.join("missing.p12"), "escape-missing.p12");
    link(Path::new("../outside/k.p12"), "climb.p12");
    link(Path::new("../outside/missing.p12"), "climb-missing.p12");
    link(&outside, "out-dir");
    let agent = agent_for(&dir).await;
    let url = server.url("/");
    let shown = |path: &Path| path.display().to_string();
    // Each pair: an outside path that exists, and one that does not.
    let refused = [
        ("/etc/passwd".to_owned(), "/etc/no-such-file".to_owned()),
        (
            shown(&outside.join("k.p12")),
            shown(&outside.join("missing.p12")),
        ),
        ("../outside/k.p12".into(), "../outside/missing.p12".into()),
        (
            "../../../../etc/passwd".into(),
            "../../../../etc/no-such".into(),
        ),
        (
            format!("{}/../outside/k.p12", dir.display()),
            format!("{}/../outside/missing.p12", dir.display()),
        ),
        ("escape.p12".into(), "escape-missing.p12".into()),
        ("climb.p12".into(), "climb-missing.p12".into()),
        ("out-dir/k.p12".into(), "out-dir/missing.p12".into()),
    ];
    for (exists, missing) in refused {
        for path in [exists, missing] {
            let result = agent.jobs(&job(&url, &path)).await;
            assert_eq!(
                result["error"]["kind"], "keystore.path_not_allowed",
                "{path}: {result}"
            );
            assert_eq!(
                result["error"]["message"],
                format!(
                    "keystore path '{path}' is not allowed: it is outside the certificate \
                     directories"
                ),
                "{result}"
            );
            assert!(result["response"].is_null(), "{result}");
        }
        // The same for a trust store.
        let result = agent
            .jobs(&json!({"url": url, "config": {"trust": "out-dir/k.p12"}}))
            .await;
        assert_eq!(
            result["error"]["message"],
            "trust store path 'out-dir/k.p12' is not allowed: it is outside the certificate \
             directories",
            "{result}"
        );
    }
    // Lexically inside and missing: that may say so.
    let result = agent.jobs(&job(&url, "missing.p12")).await;
    assert_eq!(
        result["error"]["kind"], "keystore.path_not_allowed",
        "{result}"
    );
    assert_eq!(
        result["error"]["message"],
        "keystore path 'missing.p12' does not exist in the certificate directories"
    );
    let result = agent.jobs(&job(&url, "a.p12")).await;
    assert!(seen_subject(&result).contains("client-p256"), "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn symlinks_that_stay_inside_work() {
    let server = upstream::start().await;
    let dir = support::temp_dir("inside-links")
        .canonicalize()
        .expect("dir");
    std::fs::create_dir_all(dir.join("real/deeper")).expect("dirs");
    install("client/p384/openssl.p12", &dir.join("real/deeper"), "k.p12");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.join(name)).expect("symlink");
    };
    link(Path::new("real/deeper/k.p12"), "relative.p12");
    link(&dir.join("real/deeper/k.p12"), "absolute.p12");
    link(Path::new("real"), "alias");
    link(&dir.join("real/deeper"), "absolute-dir");
    std::fs::create_dir_all(dir.join("trust")).expect("trust dir");
    std::os::unix::fs::symlink(support::fixture("ca/root.pem"), dir.join("trust/out.pem"))
        .expect("symlink");
    install("ca/root.pem", &dir, "root.pem");
    std::os::unix::fs::symlink("../root.pem", dir.join("real/root.pem")).expect("symlink");
    let agent = agent_for(&dir).await;
    let url = server.url("/");
    for path in [
        "relative.p12",
        "absolute.p12",
        "alias/deeper/k.p12",
        "alias/deeper/../deeper/k.p12",
        "absolute-dir/k.p12",
        "absolute-dir/../deeper/k.p12",
    ] {
        let result = agent.jobs(&job(&url, path)).await;
        assert!(
            seen_subject(&result).contains("client-p384"),
            "{path}: {result}"
        );
    }
    // A job trust store through a relative symlink inside, as the only trust.
    let trusted = |path: &str| {
        json!({"url": url, "config": {"trust": {"path": path,
        "mode": "custom"}, "client_cert_configuration":
        {"keystorePath": "relative.p12", "keystorePassword": STORE}}})
    };
    let result = agent.jobs(&trusted("real/root.pem")).await;
    assert_eq!(result["ok"], true, "{result}");
    // A trust directory whose entry leads outside is refused as a whole.
    let result = agent.jobs(&trusted("trust")).await;
    assert_eq!(result["error"]["kind"], "keystore.unreadable", "{result}");
    assert!(
        result["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("outside the certificate directories")),
        "{result}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_kubernetes_style_data_swap_rotates() {
    let server = upstream::start().await;
    let dir = support::temp_dir("kube").canonicalize().expect("dir");
    // The layout kubelet makes for a Secret volume: a timestamped directory, `..data` pointing
    // at it, and each key a symlink through `..data`.
    std::fs::create_dir_all(dir.join("..2026_01_01_00_00_00.1")).expect("dir");
    install(
        "client/p256/openssl.p12",
        &dir.join("..2026_01_01_00_00_00.1"),
        "tls.p12",
    );
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("..data")).expect("data");
    std::os::unix::fs::symlink("..data/tls.p12", dir.join("tls.p12")).expect("key");
    let agent = agent_for(&dir).await;
    let url = server.url("/");
    let result = agent.jobs(&job(&url, "tls.p12")).await;
    assert!(seen_subject(&result).contains("client-p256"), "{result}");
    // The update: a new directory, `..data_tmp` to it, renamed over `..data`, the old removed.
    std::fs::create_dir_all(dir.join("..2026_02_01_00_00_00.2")).expect("dir");
    install(
        "client/ed25519/openssl.p12",
        &dir.join("..2026_02_01_00_00_00.2"),
        "tls.p12",
    );
    std::os::unix::fs::symlink("..2026_02_01_00_00_00.2", dir.join("..data_tmp")).expect("tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    std::fs::remove_dir_all(dir.join("..2026_01_01_00_00_00.1")).expect("old");
    let result = agent.jobs(&job(&url, "tls.p12")).await;
    assert!(seen_subject(&result).contains("client-ed25519"), "{result}");
    assert_eq!(result["warnings"], json!([]), "{result}");
    agent.stop().await;
}

#[tokio::test]
async fn a_job_keystore_that_does_not_load_is_the_agents_typed_error() {
    let server = upstream::start().await;
    let dir = support::temp_dir("typed").canonicalize().expect("dir");
    install("client/p256/openssl.p12", &dir, "k.p12");
    std::fs::write(dir.join("text.p12"), "not a keystore").expect("write");
    std::fs::create_dir_all(dir.join("a-directory")).expect("dir");
    let agent = agent_for(&dir).await;
    let url = server.url("/");
    let wrong = json!({"url": url, "config": {"client_cert_configuration":
        {"keystorePath": "k.p12", "keystorePassword": "wrong"}}});
    let cases = [
        (wrong, "keystore.wrong_store_password"),
        (job(&url, "text.p12"), "keystore.unrecognized_format"),
        (job(&url, "a-directory"), "keystore.unreadable"),
    ];
    for (job, kind) in cases {
        let result = agent.jobs(&job).await;
        assert_eq!(result["error"]["kind"], kind, "{job}: {result}");
        assert!(
            result["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("client identity: ")),
            "{result}"
        );
        assert!(result["response"].is_null(), "{result}");
    }
    agent.stop().await;
}

/// A DER element (definite length).
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let contents = parts.concat();
    let mut out = vec![tag];
    let len = contents.len().to_be_bytes();
    let skip = len.iter().take_while(|b| **b == 0).count();
    if contents.len() < 0x80 {
        out.push(contents.len() as u8);
    } else {
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend(contents);
    out
}

/// An `ENCRYPTED PRIVATE KEY` PEM with PBES2 over PBKDF2-HMAC-SHA256 with `iterations` and
/// junk ciphertext.
fn costly_key(iterations: u32) -> String {
    const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    let mut count = iterations.to_be_bytes().to_vec();
    if count[0] & 0x80 != 0 {
        count.insert(0, 0);
    }
    let prf = tlv(0x30, &[&tlv(0x06, &[HMAC_SHA256]), &[0x05, 0x00]]);
    let kdf_parameters = tlv(
        0x30,
        &[&tlv(0x04, &[b"saltsalt"]), &tlv(0x02, &[&count]), &prf],
    );
    let kdf = tlv(0x30, &[&tlv(0x06, &[PBKDF2]), &kdf_parameters]);
    let cipher = tlv(0x30, &[&tlv(0x06, &[AES256_CBC]), &tlv(0x04, &[&[7; 16]])]);
    let algorithm = tlv(0x30, &[&tlv(0x06, &[PBES2]), &tlv(0x30, &[&kdf, &cipher])]);
    let der = tlv(0x30, &[&algorithm, &tlv(0x04, &[&[0; 48]])]);
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let mut pem = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64"));
        pem.push('\n');
    }
    pem.push_str("-----END ENCRYPTED PRIVATE KEY-----\n");
    pem
}

/// A job-named keystore is parsed by the engine within the job's deadline: one whose key
/// derivation takes seconds (allowed by generous limits) ends its 200 ms job promptly, and one
/// over the limits is refused as too costly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_job_keystore_ends_within_the_jobs_deadline() {
    let server = upstream::start().await;
    let dir = support::temp_dir("costly").canonicalize().expect("dir");
    std::fs::write(dir.join("slow.pem"), costly_key(30_000_000)).expect("write");
    std::fs::write(dir.join("hostile.pem"), costly_key(4_000_000_000)).expect("write");
    let mut config = support::config();
    config.cert_dirs = vec![dir.clone()];
    config.kdf_limits = keystore::Limits {
        max_iterations: 100_000_000,
        max_memory: 1 << 30,
    };
    let agent = support::start(config).await;
    for (name, kind) in [
        ("slow.pem", "timeout"),
        ("hostile.pem", "keystore.too_costly"),
    ] {
        let job = json!({"url": server.url("/"), "config": {"timeout": 0.2,
            "client_cert_configuration": {"keystorePath": name, "keystorePassword": STORE}}});
        let started = std::time::Instant::now();
        let result = agent.jobs(&job).await;
        let took = started.elapsed();
        assert_eq!(result["error"]["kind"], kind, "{name}: {result}");
        assert!(result["response"].is_null(), "{result}");
        assert!(took < std::time::Duration::from_secs(5), "{name}: {took:?}");
    }
    agent.stop().await;
}

/// Jobs that each send another wrong password for the same job-named keystore are each answered
/// with the typed error: the agent reads the bytes and the engine parses them in its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_wrong_passwords_are_each_a_typed_error() {
    let server = upstream::start().await;
    let dir = support::temp_dir("wrong-many").canonicalize().expect("dir");
    install("client/p256/openssl.p12", &dir, "k.p12");
    let agent = agent_for(&dir).await;
    let jobs: Vec<Value> = (0..24)
        .map(|n| {
            json!({"url": server.url("/"), "config": {"client_cert_configuration":
                {"keystorePath": "k.p12", "keystorePassword": format!("wrong-{n}")}}})
        })
        .collect();
    let started = std::time::Instant::now();
    let results = agent.jobs(&Value::Array(jobs)).await;
    let took = started.elapsed();
    let results = results.as_array().expect("array");
    assert_eq!(results.len(), 24);
    for result in results {
        assert_eq!(
            result["error"]["kind"], "keystore.wrong_store_password",
            "{result}"
        );
        assert!(
            result["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("client identity: ")),
            "{result}"
        );
    }
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
    // A right password afterwards still works.
    let result = agent.jobs(&job(&server.url("/"), "k.p12")).await;
    assert!(seen_subject(&result).contains("client-p256"), "{result}");
    agent.stop().await;
}

/// A job trust store merged with the configured one is parsed by the agent; that parse counts
/// against the job's deadline too. The store is a PKCS#12 trust store made by openssl with
/// 1,000,000 iterations (3,000,000 to open: MAC, and the certificate list twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_merged_job_trust_store_ends_within_the_jobs_deadline() {
    let server = upstream::start().await;
    let dir = support::temp_dir("costly-trust")
        .canonicalize()
        .expect("dir");
    let slow = dir.join("slow-trust.p12");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-nokeys", "-iter", "1000000"])
        .args(["-passout", "pass:trust-pw", "-in"])
        .arg(support::fixture("ca/root.pem"))
        .arg("-out")
        .arg(&slow)
        .status()
        .expect("openssl runs (the test suite installs it)");
    assert!(status.success(), "openssl pkcs12 -export -nokeys failed");
    let inline = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        std::fs::read(&slow).expect("the store"),
    );
    let mut config = support::config();
    config.cert_dirs = vec![dir.clone()];
    config.trust_store = Some(install("ca/other-root.pem", &dir, "configured.pem"));
    let agent = support::start(config).await;
    let job = |timeout: f64| {
        json!({"url": server.url("/"), "config": {"timeout": timeout,
            "trust": {"base64": inline, "password": "trust-pw"}}})
    };
    let started = std::time::Instant::now();
    let result = agent.jobs(&job(0.05)).await;
    let took = started.elapsed();
    assert_eq!(result["error"]["kind"], "timeout", "{result}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    // With time enough, the merged store is used: the upstream's chain verifies (the upstream
    // then asks for a client certificate this job does not have).
    let started = std::time::Instant::now();
    let result = agent.jobs(&job(60.0)).await;
    let parse = started.elapsed();
    assert_eq!(result["tls"]["verified"], true, "{result}");
    // The short job did not wait for the parse (without the deadline it would take as long).
    assert!(
        took * 2 < parse,
        "timed out after {took:?}; a whole parse takes {parse:?}"
    );
    agent.stop().await;
}
