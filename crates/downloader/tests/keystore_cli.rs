//! `downloader keystore inspect|convert` end to end: the real binary on the committed fixtures,
//! with openssl (and keytool, when present) reading back what `convert` wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const STORE: &str = "Fx-store-7431";
const OUT: &str = "Out-Secret-3390";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn downloader(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downloader"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("JSON")
}

/// Password arguments for a manifest entry.
fn password_args(entry: &Value) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(password) = entry["store_password"].as_str() {
        args.extend(["--password".to_owned(), password.to_owned()]);
    }
    if let Some(password) = entry["key_password"].as_str() {
        args.extend(["--key-password".to_owned(), password.to_owned()]);
    }
    if let Some(alias) = entry["alias"].as_str() {
        args.extend(["--alias".to_owned(), alias.to_owned()]);
    }
    args
}

fn assert_no_secrets(output: &Output, secrets: &[&str]) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !all.contains(secret),
            "output shows the secret {secret:?}:\n{all}"
        );
    }
}

#[test]
fn inspect_json_shows_every_identity_fixture_with_its_subject_and_chain() {
    let mut seen = 0;
    for entry in manifest().iter().filter(|e| e["role"] == "identity") {
        let path = entry["path"].as_str().expect("path");
        let mut args = vec![
            "keystore".to_owned(),
            "inspect".into(),
            path.into(),
            "--json".into(),
        ];
        args.extend(password_args(entry));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = downloader(&args);
        assert!(output.status.success(), "{path}: {}", text(&output.stderr));
        let secrets: Vec<&str> = [&entry["store_password"], &entry["key_password"]]
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_no_secrets(&output, &secrets);
        let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
        assert_eq!(report["format"], entry["format"], "{path}");
        let key_entry = report["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["kind"] == "privateKey")
            .unwrap_or_else(|| panic!("{path}: no private key entry"));
        assert_eq!(key_entry["key"]["status"], "ok", "{path}");
        let certs = key_entry["certificates"].as_array().expect("certificates");
        assert_eq!(
            Some(certs.len() as u64),
            entry["chain_len"].as_u64(),
            "{path}"
        );
        let cn = entry["subject_cn"].as_str().expect("cn");
        let subject = certs[0]["subject"].as_str().expect("subject");
        assert!(subject.contains(&format!("CN={cn}")), "{path}: {subject}");
        for field in [
            "issuer",
            "serial",
            "notBefore",
            "notAfter",
            "keyAlgorithm",
            "sha256",
        ] {
            assert!(certs[0][field].is_string(), "{path}: {field}");
        }
        assert!(
            certs[0]["daysLeft"].as_i64().is_some_and(|d| d > 300),
            "{path}"
        );
        seen += 1;
    }
    assert!(seen >= 60, "{seen}");
}

#[test]
fn inspect_human_output_names_entries_and_findings() {
    let output = downloader(&[
        "keystore",
        "inspect",
        "multi/two-keys.jks",
        "--password",
        STORE,
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "JKS",
        "alias \"alpha\"",
        "alias \"beta\"",
        "CN=client-rsa2048",
        "days left",
        "sha256:",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let expired = downloader(&[
        "keystore",
        "inspect",
        "negative/expired/openssl.p12",
        "--password",
        STORE,
    ]);
    let stdout = text(&expired.stdout);
    assert!(
        stdout.contains("error[expired]") && stdout.contains("EXPIRED"),
        "{stdout}"
    );
}

#[test]
fn errors_are_one_line_with_kind_and_exit_non_zero_without_the_password() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "client/rsa2048/openssl.p12",
                "--password",
                "Wr0ng-Secret-8812",
            ],
            "keystore.wrong_store_password",
        ),
        (
            &[
                "keytool/rsa2048-keypass.jks",
                "--password",
                STORE,
                "--alias",
                "nope",
            ],
            "keystore.alias_not_found",
        ),
        (
            &["negative/garbage/text.txt"],
            "keystore.unrecognized_format",
        ),
        (
            &["negative/truncated/documented.jks", "--password", STORE],
            "keystore.corrupt",
        ),
        (
            &["client/rsa2048/openssl.p12"],
            "keystore.password_required",
        ),
        (&["does/not/exist.p12"], "io"),
    ];
    for (args, kind) in cases {
        let mut all = vec!["keystore", "inspect"];
        all.extend_from_slice(args);
        let output = downloader(&all);
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error[{kind}]: ")),
            "{args:?}: {stderr}"
        );
        assert_no_secrets(&output, &[STORE, "Wr0ng-Secret-8812"]);
    }
}

#[test]
fn password_from_environment_and_file() {
    let dir = tempdir();
    let file = dir.join("password.txt");
    std::fs::write(&file, format!("{STORE}\n")).expect("write");
    let by_file = downloader(&[
        "keystore",
        "inspect",
        "client/p256/documented.jks",
        "--password-file",
        file.to_str().expect("utf-8"),
    ]);
    assert!(by_file.status.success(), "{}", text(&by_file.stderr));
    let by_env = Command::new(env!("CARGO_BIN_EXE_downloader"))
        .args([
            "keystore",
            "inspect",
            "client/p256/documented.jks",
            "--password-env",
            "FX_PASS",
        ])
        .env("FX_PASS", STORE)
        .current_dir(fixtures())
        .output()
        .expect("runs");
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));
    assert_no_secrets(&by_env, &[STORE]);
}

#[test]
fn convert_to_pkcs12_is_read_back_by_openssl_with_the_same_chain() {
    let dir = tempdir();
    for (source, extra) in [
        ("client/rsa2048/documented.jks", vec!["--password", STORE]),
        ("client/p384/imported.jceks", vec!["--password", STORE]),
        ("keytool/p256.jks", vec!["--password", STORE]),
        ("client/ed25519/bundle.pem", vec![]),
        (
            "client/rsa2048/chain.pem",
            vec![
                "--key",
                "client/rsa2048/key.legacy-enc.pem",
                "--key-password",
                "Fx-pem-5820",
            ],
        ),
    ] {
        let out = dir.join(format!("{}.p12", source.replace('/', "_")));
        let out_text = out.to_str().expect("utf-8");
        let mut args = vec![
            "keystore",
            "convert",
            source,
            "--to",
            "pkcs12",
            "--out",
            out_text,
            "--out-password",
            OUT,
        ];
        args.extend(extra.iter().copied());
        let output = downloader(&args);
        assert!(
            output.status.success(),
            "{source}: {}",
            text(&output.stderr)
        );
        assert_no_secrets(&output, &[STORE, OUT, "Fx-pem-5820"]);
        let mode = std::fs::metadata(&out).expect("written").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let info = Command::new("openssl")
            .args([
                "pkcs12",
                "-info",
                "-nodes",
                "-in",
                out_text,
                "-passin",
                &format!("pass:{OUT}"),
            ])
            .output()
            .expect("openssl runs");
        let shown = format!("{}{}", text(&info.stdout), text(&info.stderr));
        assert!(
            info.status.success(),
            "{source}: openssl refused it:\n{shown}"
        );
        assert!(
            shown.contains("AES-256-CBC") && shown.contains("sha256"),
            "{shown}"
        );
        assert!(
            shown.contains("PRIVATE KEY") && shown.contains("BEGIN CERTIFICATE"),
            "{shown}"
        );

        // Our own reader agrees with what went in.
        let back = downloader(&["keystore", "inspect", out_text, "--password", OUT, "--json"]);
        assert!(back.status.success(), "{}", text(&back.stderr));
        if keytool_present() {
            let list = Command::new("keytool")
                .args([
                    "-list",
                    "-keystore",
                    out_text,
                    "-storetype",
                    "PKCS12",
                    "-storepass",
                    OUT,
                ])
                .output()
                .expect("keytool runs");
            assert!(list.status.success(), "keytool: {}", text(&list.stdout));
            assert!(
                text(&list.stdout).contains("PrivateKeyEntry"),
                "{}",
                text(&list.stdout)
            );
        }
    }
}

#[test]
fn convert_to_pem_round_trips_and_refuses_to_overwrite() {
    let dir = tempdir();
    let out = dir.join("identity.pem");
    let out_text = out.to_str().expect("utf-8");
    let args = [
        "keystore",
        "convert",
        "keytool/p384.jceks",
        "--password",
        STORE,
        "--to",
        "pem",
        "--out",
        out_text,
    ];
    assert!(downloader(&args).status.success());
    let pem = std::fs::read_to_string(&out).expect("written");
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 3);
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    let check = Command::new("openssl")
        .args(["pkey", "-in", out_text, "-noout", "-check"])
        .output()
        .expect("openssl runs");
    assert!(
        check.status.success() || text(&check.stderr).contains("not supported"),
        "{}",
        text(&check.stderr)
    );
    let again = downloader(&args);
    assert!(!again.status.success(), "overwrote without --force");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(downloader(&forced).status.success());

    // A truststore converts to a CA bundle.
    let bundle = dir.join("cacerts.pem");
    let output = downloader(&[
        "keystore",
        "convert",
        "trust/cacerts.jks",
        "--password",
        "changeit",
        "--to",
        "pem",
        "--out",
        bundle.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let text = std::fs::read_to_string(&bundle).expect("written");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 144);
}

#[test]
fn help_exists_for_every_command_and_bad_usage_exits_64() {
    for args in [
        &["--help"][..],
        &["keystore", "--help"],
        &["keystore", "inspect", "--help"],
        &["keystore", "convert", "--help"],
    ] {
        let output = downloader(args);
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output.stdout).contains("Usage"), "{args:?}");
    }
    let bad = downloader(&["keystore", "convert", "x.p12", "--to", "zip", "--out", "y"]);
    assert_eq!(bad.status.code(), Some(64));
}

fn keytool_present() -> bool {
    Command::new("keytool").arg("-help").output().is_ok()
}

/// A fresh directory under the target dir (removed at the start of the next run).
fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "keystore-cli-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
