//! Lint findings on real fixtures: validity, expiry warning, clientAuth, chain, key mismatch.

use std::path::PathBuf;

use keystore::{CertificateInfo, FindingKind, Keystore, Options, Severity, inspect, lint_chain};
use time::{Duration, OffsetDateTime};

fn read(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

fn chain(path: &str) -> Vec<CertificateInfo> {
    let store =
        Keystore::open(&read(path), &Options::with_password("Fx-store-7431")).expect("opens");
    store.entries()[0]
        .certificates()
        .iter()
        .map(|der| CertificateInfo::from_der(der).expect("parses"))
        .collect()
}

fn kinds(chain: &[CertificateInfo], now: OffsetDateTime) -> Vec<FindingKind> {
    lint_chain(chain, now).into_iter().map(|f| f.kind).collect()
}

#[test]
fn a_good_identity_has_no_findings() {
    let now = OffsetDateTime::now_utc();
    for path in [
        "client/rsa2048/openssl.p12",
        "client/p256/bundle.pem",
        "keytool/p384.jks",
    ] {
        let store =
            Keystore::open(&read(path), &Options::with_password("Fx-store-7431")).expect("opens");
        let report = inspect(&store, None, now).expect("inspects");
        let keys: Vec<_> = report.entries.iter().filter(|e| e.key.is_some()).collect();
        assert_eq!(keys.len(), 1, "{path}");
        assert_eq!(keys[0].key.as_ref().map(|k| k.status.as_str()), Some("ok"));
        assert!(
            keys[0].findings.is_empty(),
            "{path}: {:?}",
            keys[0].findings
        );
    }
}

#[test]
fn expired_and_not_yet_valid_are_errors() {
    let now = OffsetDateTime::now_utc();
    let expired = lint_chain(&chain("negative/expired/cert.pem"), now);
    assert_eq!(expired[0].kind, FindingKind::Expired);
    assert_eq!(expired[0].severity, Severity::Error);
    assert!(
        expired[0].message.contains("2021-01-01"),
        "{}",
        expired[0].message
    );
    assert_eq!(
        kinds(&chain("negative/notyetvalid/cert.pem"), now)[0],
        FindingKind::NotYetValid
    );
}

#[test]
fn expiry_within_thirty_days_warns_with_the_day_count() {
    let leaf = chain("client/p256/cert.pem");
    let not_after = OffsetDateTime::from_unix_timestamp(leaf[0].not_after_unix).expect("time");
    let findings = lint_chain(&leaf, not_after - Duration::days(9) - Duration::hours(1));
    let soon: Vec<_> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::ExpiresSoon)
        .collect();
    assert_eq!(soon.len(), 1, "{findings:?}");
    assert_eq!(soon[0].severity, Severity::Warning);
    assert!(
        soon[0].message.contains("expires in 9 days"),
        "{}",
        soon[0].message
    );
    let later = lint_chain(&leaf, not_after - Duration::days(31));
    assert!(
        later.iter().all(|f| f.kind != FindingKind::ExpiresSoon),
        "{later:?}"
    );
}

#[test]
fn server_only_certificate_lacks_client_auth() {
    let now = OffsetDateTime::now_utc();
    let findings = kinds(&chain("negative/noclientauth/openssl.p12"), now);
    assert_eq!(findings, vec![FindingKind::MissingClientAuth]);
}

#[test]
fn leaf_without_its_intermediate_is_an_incomplete_chain() {
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        kinds(&chain("negative/incomplete/bundle.pem"), now),
        vec![FindingKind::IncompleteChain]
    );
    // Self-signed, and leaf + intermediate without the root, are both complete enough.
    assert!(kinds(&chain("negative/selfsigned/openssl.p12"), now).is_empty());
    assert!(kinds(&chain("client/rsa2048/bundle.pem"), now).is_empty());
}

#[test]
fn mismatched_key_is_reported_by_inspect() {
    let store = Keystore::open(&read("negative/mismatch/bundle.pem"), &Options::default())
        .expect("opens: the mismatch is found when the identity is built");
    let report = inspect(&store, None, OffsetDateTime::now_utc()).expect("inspects");
    let entry = &report.entries[0];
    assert_eq!(
        entry.key.as_ref().map(|k| k.status.as_str()),
        Some("keystore.key_mismatch")
    );
    assert!(
        entry
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::KeyMismatch)
    );
}

#[test]
fn wrong_key_password_is_reported_per_entry_not_as_a_failure() {
    let store = Keystore::open(
        &read("keytool/rsa2048-keypass.jks"),
        &Options::with_password("Fx-store-7431"),
    )
    .expect("the store password is right");
    let report = inspect(&store, None, OffsetDateTime::now_utc()).expect("inspects");
    let key = report
        .entries
        .iter()
        .find_map(|e| e.key.as_ref())
        .expect("a key entry");
    assert_eq!(key.status, "keystore.wrong_key_password");
    assert!(key.encrypted);
}
