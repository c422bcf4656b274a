use std::collections::BTreeMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.entry("HOME".into())
        .or_insert_with(|| "/nonexistent-home".into());
    map
}

fn file(text: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("agent-config-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn defaults_listen_on_loopback_8819() {
    let config = Config::load(&Flags::default(), &env(&[])).expect("defaults load");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8819");
    assert_eq!(
        config.data_dir,
        PathBuf::from("/nonexistent-home/.local/share/downloader")
    );
    assert!(config.use_ssl && config.credentials.is_none());
}

#[test]
fn flags_beat_environment_beat_file() {
    let path =
        file("listen = \"127.0.0.1:1000\"\nmax_jobs = 3\nqueue_limit = 4\nlog_format = \"json\"\n");
    let flags = Flags {
        config: Some(path.clone()),
        max_jobs: Some(9),
        ..Flags::default()
    };
    let config = Config::load(
        &flags,
        &env(&[
            ("DOWNLOADER_LISTEN", "127.0.0.1:2000"),
            ("DOWNLOADER_QUEUE_LIMIT", "7"),
        ]),
    )
    .expect("loads");
    assert_eq!(config.listen.port(), 2000);
    assert_eq!(config.max_jobs, 9);
    assert_eq!(config.queue_limit, 7);
    assert_eq!(config.log_format, LogFormat::Json);
    // `port` alone changes the port; a lower-precedence listen keeps its address.
    let config = Config::load(
        &Flags {
            config: Some(path),
            ..Flags::default()
        },
        &env(&[("port", "3000")]),
    )
    .expect("loads");
    assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
}

#[test]
fn reference_names_are_accepted() {
    let config = Config::load(
        &Flags::default(),
        &env(&[
            ("apikey", "k1"),
            ("secret", "s3cr3t"),
            ("use_ssl", "false"),
            ("disable_ssl_validation", "true"),
            (
                "client_cert_configuration",
                r#"{"keystorePath":"/client.jks","keystorePassword":"pw"}"#,
            ),
            ("proxy_configuration", r#"{"*.corp":{"address":"NONE"}}"#),
        ]),
    )
    .expect("loads");
    assert_eq!(
        config.credentials.as_ref().map(|c| c.apikey.as_str()),
        Some("k1")
    );
    assert!(!config.use_ssl && config.disable_ssl_validation);
    assert_eq!(
        config.default_cert.as_ref().map(|c| c.path.clone()),
        Some(PathBuf::from("/client.jks"))
    );
    assert_eq!(config.proxy_rules.len(), 1);
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cr3t") && !debug.contains("\"pw\""),
        "{debug}"
    );
}

#[test]
fn invalid_settings_name_the_setting() {
    for (pairs, setting) in [
        (
            vec![("DOWNLOADER_MAX_JOBS", "lots")],
            "DOWNLOADER_MAX_JOBS (environment)",
        ),
        (
            vec![("DOWNLOADER_LISTEN", "nowhere")],
            "DOWNLOADER_LISTEN (environment)",
        ),
        (vec![("apikey", "only-key")], "apikey (environment)"),
        (vec![("use_ssl", "maybe")], "use_ssl (environment)"),
        (
            vec![("DOWNLOADER_TRUST_MODE", "custom")],
            "DOWNLOADER_TRUST_MODE (environment)",
        ),
        (
            vec![("client_cert_configuration", "{\"keystorePth\":\"x\"}")],
            "client_cert_configuration (environment)",
        ),
        (
            vec![("DOWNLOADER_CERT_DIRS", "/no/such/dir")],
            "DOWNLOADER_CERT_DIRS (environment)",
        ),
    ] {
        let error = Config::load(&Flags::default(), &env(&pairs)).expect_err("must fail");
        assert!(error.to_string().starts_with(setting), "{error}");
        assert!(!error.to_string().contains('\n'));
    }
    let path = file("max_jobz = 3\n");
    let error = Config::load(
        &Flags {
            config: Some(path),
            ..Flags::default()
        },
        &env(&[]),
    )
    .expect_err("unknown key");
    assert!(
        error
            .to_string()
            .contains("max_jobz (config file): unknown setting"),
        "{error}"
    );
}

#[test]
fn host_rules_parse_with_password_sources() {
    let path = file(
        r#"
[[client_certs]]
hosts = ["api-a.example", "*.corp.example", "api-b.example:9443"]
keystore = "/certs/a.p12"
password_env = "A_PASSWORD"
alias = "client"
"#,
    );
    let config = Config::load(
        &Flags {
            config: Some(path),
            ..Flags::default()
        },
        &env(&[("A_PASSWORD", "from-env")]),
    )
    .expect("loads");
    let rule = &config.client_certs[0];
    assert_eq!(rule.hosts.len(), 3);
    assert_eq!(
        rule.cert.password.as_ref().map(Password::expose),
        Some("from-env")
    );
    assert_eq!(parse_size("50M"), Some(50 << 20));
    assert_eq!(parse_size("512KiB"), Some(512 << 10));
}

#[test]
fn host_rules_refuse_catch_all_and_malformed_patterns() {
    for (host, why) in [
        ("*", "every host"),
        ("a.*.example", "'*' may only"),
        ("https://a.example/", "not a URL"),
        ("*.example:443", "takes no port"),
    ] {
        let path = file(&format!(
            "[[client_certs]]\nhosts = [\"{host}\"]\nkeystore = \"/certs/a.p12\"\n"
        ));
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let error = Config::load(&flags, &env(&[])).expect_err(host);
        let message = error.to_string();
        assert!(
            message.starts_with("client_certs[0] (config file)") && message.contains(why),
            "{host}: {message}"
        );
    }
}

#[test]
fn the_images_listen_address_takes_the_reference_port() {
    // The image sets `DOWNLOADER_LISTEN=0.0.0.0`; the reference's compose file sets `port`.
    let image = [("DOWNLOADER_LISTEN", "0.0.0.0")];
    let config = Config::load(&Flags::default(), &env(&image)).expect("loads");
    assert_eq!(config.listen.to_string(), "0.0.0.0:8819");
    let config =
        Config::load(&Flags::default(), &env(&[image[0], ("port", "9443")])).expect("loads");
    assert_eq!(config.listen.to_string(), "0.0.0.0:9443");
    // A listen address naming its port keeps it against `port` from the same origin.
    let config = Config::load(
        &Flags::default(),
        &env(&[("DOWNLOADER_LISTEN", "0.0.0.0:7000"), ("port", "9443")]),
    )
    .expect("loads");
    assert_eq!(config.listen.port(), 7000);
}

#[test]
fn every_setting_may_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("agent-config-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cr3t-from-a-file\n").expect("write");
    let json = dir.join("client.json");
    let password = dir.join("client-password");
    std::fs::write(&password, "p4ss-from-a-file\r\n").expect("write");
    std::fs::write(
        &json,
        format!(
            r#"{{"keystorePath":"/certs/client.p12","keystorePasswordFile":"{}"}}"#,
            password.display()
        ),
    )
    .expect("write");
    let secret_text = secret.display().to_string();
    let json_text = json.display().to_string();
    let config = Config::load(
        &Flags::default(),
        &env(&[
            ("apikey", "key"),
            ("secret_FILE", &secret_text),
            ("client_cert_configuration_FILE", &json_text),
        ]),
    )
    .expect("loads");
    let credentials = config.credentials.expect("credentials");
    assert_eq!(credentials.secret.expose(), "s3cr3t-from-a-file");
    let cert = config.default_cert.expect("default certificate");
    assert_eq!(
        cert.password.as_ref().map(Password::expose),
        Some("p4ss-from-a-file")
    );
    // Both forms at once: refused, naming both and quoting neither value.
    let error = Config::load(
        &Flags::default(),
        &env(&[
            ("secret", "inline-secret-value"),
            ("secret_FILE", &secret_text),
        ]),
    )
    .expect_err("both forms");
    let text = format!("{error} {error:?}");
    assert!(text.contains("secret_FILE"), "{text}");
    assert!(!text.contains("inline-secret-value") && !text.contains("s3cr3t-from-a-file"));
    // A missing file names the setting and the file.
    let error = Config::load(
        &Flags::default(),
        &env(&[("DOWNLOADER_TRUST_STORE_PASSWORD_FILE", "/nonexistent/pw")]),
    )
    .expect_err("missing file");
    assert!(
        error
            .to_string()
            .contains("DOWNLOADER_TRUST_STORE_PASSWORD_FILE")
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn java_opts_is_accepted_with_a_notice() {
    let config =
        Config::load(&Flags::default(), &env(&[("java_opts", "-Xmx1024m")])).expect("loads");
    assert_eq!(config.notices.len(), 1);
    assert!(
        config.notices[0].contains("java_opts"),
        "{:?}",
        config.notices
    );
    let path = file("java_opts = \"-Xms128m\"\n");
    let flags = Flags {
        config: Some(path),
        ..Flags::default()
    };
    let config = Config::load(&flags, &env(&[])).expect("loads from the file");
    assert_eq!(config.notices.len(), 1);
}
