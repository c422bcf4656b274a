//! Every fixture in `tests/fixtures/manifest.json` (made by openssl and keytool) opens with the
//! subject, chain and key type the manifest records, or fails with the kind it expects.

use std::path::{Path, PathBuf};

use keystore::{CertificateInfo, Identity, Keystore, Options, Password, TrustAnchors};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is a JSON array")
}

fn text<'a>(entry: &'a Value, field: &str) -> Option<&'a str> {
    entry.get(field).and_then(Value::as_str)
}

fn options(entry: &Value) -> Options {
    Options {
        store_password: text(entry, "store_password").map(Password::new),
        key_password: text(entry, "key_password").map(Password::new),
        ..Options::default()
    }
}

/// The key algorithm `CertificateInfo` reports for a manifest key type.
fn algorithm(key_type: &str) -> (&'static str, usize) {
    match key_type {
        "rsa2048" => ("RSA", 2048),
        "rsa4096" => ("RSA", 4096),
        "p256" => ("EC P-256", 256),
        "p384" => ("EC P-384", 384),
        "ed25519" => ("Ed25519", 256),
        other => panic!("unknown key type {other}"),
    }
}

fn check_identity(entry: &Value, identity: &Identity) {
    let path = text(entry, "path").unwrap_or_default();
    let leaf = CertificateInfo::from_der(&identity.chain()[0]).expect("leaf parses");
    if let Some(cn) = text(entry, "subject_cn") {
        assert_eq!(leaf.common_name(), Some(cn), "{path}: subject");
    }
    if let Some(len) = entry.get("chain_len").and_then(Value::as_u64) {
        assert_eq!(identity.chain().len() as u64, len, "{path}: chain length");
    }
    if let Some(key_type) = text(entry, "key_type") {
        let (name, bits) = algorithm(key_type);
        assert_eq!(
            (leaf.key_algorithm.as_str(), leaf.key_bits),
            (name, bits),
            "{path}"
        );
    }
    // The chain is in order: each certificate is issued by the next.
    for pair in identity.chain().windows(2) {
        let (child, parent) = (
            CertificateInfo::from_der(&pair[0]).expect("parses"),
            CertificateInfo::from_der(&pair[1]).expect("parses"),
        );
        assert_eq!(child.issuer, parent.subject, "{path}: chain order");
    }
}

/// Opens a manifest entry as the identity it describes.
fn identity_of(entry: &Value) -> Result<Identity, keystore::Error> {
    let path = text(entry, "path").unwrap_or_default();
    let options = options(entry);
    let store = match text(entry, "key_file") {
        Some(key) => Keystore::open_pair(&read(path), &read(key), &options)?,
        None => Keystore::open(&read(path), &options)?,
    };
    store.identity(text(entry, "alias"))
}

#[test]
fn every_identity_fixture_opens_with_its_subject_chain_and_key_type() {
    let entries: Vec<_> = manifest()
        .into_iter()
        .filter(|e| text(e, "role") == Some("identity"))
        .collect();
    assert!(
        entries.len() >= 60,
        "only {} identity fixtures",
        entries.len()
    );
    for entry in &entries {
        let identity = identity_of(entry)
            .unwrap_or_else(|error| panic!("{}: {error}", text(entry, "path").unwrap_or("?")));
        check_identity(entry, &identity);
        // The detected format is the one the manifest names.
        let store = Keystore::open(
            &read(text(entry, "path").unwrap_or_default()),
            &options(entry),
        )
        .expect("opens");
        let format = serde_json::to_value(store.format()).expect("serializes");
        assert_eq!(format.as_str(), text(entry, "format"), "{entry}");
    }
}

#[test]
fn every_certificate_opens_with_every_key_syntax_of_its_directory() {
    let manifest = manifest();
    let keys: Vec<_> = manifest
        .iter()
        .filter(|e| text(e, "role") == Some("key"))
        .collect();
    let mut pairs = 0;
    for cert in manifest.iter().filter(|e| text(e, "role") == Some("cert")) {
        let Some(key_file) = text(cert, "key_file") else {
            continue;
        };
        let directory = Path::new(key_file)
            .parent()
            .expect("key file has a directory");
        let key_prefix = Path::new(key_file)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        // ca/root.key.pem pairs with ca/root.pem only; client/x/key.* with client/x/*.
        let stem = key_prefix.split('.').next().unwrap_or("");
        for key in keys.iter().filter(|k| {
            let path = Path::new(text(k, "path").unwrap_or(""));
            path.parent() == Some(directory)
                && path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with(stem))
        }) {
            let mut entry = (*cert).clone();
            entry["key_file"] = key["path"].clone();
            entry["key_password"] = key["key_password"].clone();
            let identity = identity_of(&entry).unwrap_or_else(|error| {
                panic!(
                    "{} + {}: {error}",
                    text(cert, "path").unwrap_or("?"),
                    key["path"]
                )
            });
            check_identity(&entry, &identity);
            pairs += 1;
        }
    }
    assert!(pairs >= 60, "only {pairs} certificate + key pairs");
}

#[test]
fn every_truststore_fixture_has_its_certificates() {
    for entry in manifest()
        .iter()
        .filter(|e| text(e, "role") == Some("truststore"))
    {
        let path = text(entry, "path").unwrap_or_default();
        let password = text(entry, "store_password").map(Password::new);
        let anchors = if root().join(path).is_dir() {
            let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(root().join(path))
                .expect("directory")
                .map(|file| {
                    let file = file.expect("entry");
                    let name = file.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(file.path()).expect("readable"))
                })
                .collect();
            TrustAnchors::from_directory(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
        } else {
            TrustAnchors::parse(&read(path), password.as_ref())
        }
        .unwrap_or_else(|error| panic!("{path}: {error}"));
        let expected = entry
            .get("trust_count")
            .and_then(Value::as_u64)
            .expect("trust_count");
        assert_eq!(anchors.len() as u64, expected, "{path}");
        let (store, ignored) = anchors.root_store();
        assert_eq!((store.len(), ignored), (expected as usize, 0), "{path}");
    }
}

#[test]
fn every_negative_fixture_fails_with_its_kind_or_opens_for_lint() {
    for entry in manifest()
        .iter()
        .filter(|e| text(e, "role") == Some("negative"))
    {
        let path = text(entry, "path").unwrap_or_default();
        let result = identity_of(entry);
        match text(entry, "expect_error") {
            Some(kind) => {
                let error = result.expect_err(path);
                assert_eq!(error.kind(), kind, "{path}: {error}");
            }
            None => check_identity(entry, &result.unwrap_or_else(|e| panic!("{path}: {e}"))),
        }
    }
}
