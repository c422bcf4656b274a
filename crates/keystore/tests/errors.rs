//! Every error kind from a real fixture, and no secret in any message, hint or `Debug`.

use std::path::PathBuf;

use keystore::{Error, Keystore, Options, Password, TrustAnchors};

const STORE: &str = "Fx-store-7431";
const KEY: &str = "Fx-key-9265";
const PEM: &str = "Fx-pem-5820";
const WRONG: &str = "Wr0ng-Secret-8812";

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

fn open(path: &str, options: &Options) -> Result<Keystore, Error> {
    Keystore::open(&fixture(path), options)
}

fn identity(
    path: &str,
    options: &Options,
    alias: Option<&str>,
) -> Result<keystore::Identity, Error> {
    open(path, options)?.identity(alias)
}

fn both(store: &str, key: &str) -> Options {
    Options {
        store_password: Some(Password::new(store)),
        key_password: Some(Password::new(key)),
        ..Options::default()
    }
}

/// Asserts the kind, and that neither message, hint nor Debug leaks any password used.
fn assert_kind(result: Result<impl std::fmt::Debug, Error>, kind: &str) -> Error {
    let error = result.expect_err(&format!("expected {kind}"));
    assert_eq!(error.kind(), kind, "{error}");
    let shown = format!("{error} {} {error:?}", error.hint());
    for secret in [STORE, KEY, PEM, WRONG, "pässwörd-Ω", "changeit"] {
        assert!(!shown.contains(secret), "{kind} shows a secret: {shown}");
    }
    error
}

#[test]
fn wrong_store_password_per_format() {
    for path in [
        "client/rsa2048/documented.jks",
        "client/rsa2048/imported.jceks",
        "client/rsa2048/openssl.p12",
        "client/rsa2048/legacy.p12",
        "keytool/p256.p12",
    ] {
        assert_kind(
            open(path, &Options::with_password(WRONG)),
            "keystore.wrong_store_password",
        );
    }
}

#[test]
fn wrong_key_password_is_told_apart_from_the_store_password() {
    for path in [
        "keytool/rsa2048-keypass.jks",
        "keytool/rsa2048-keypass.jceks",
    ] {
        // The store opens with its password, but the key has its own.
        let error = assert_kind(
            identity(path, &Options::with_password(STORE), None),
            "keystore.wrong_key_password",
        );
        assert!(error.hint().contains("key password"));
        identity(path, &both(STORE, KEY), None).expect("right key password opens it");
        assert_kind(
            identity(path, &both(STORE, WRONG), None),
            "keystore.wrong_key_password",
        );
    }
}

#[test]
fn wrong_pem_key_password() {
    let chain = fixture("client/rsa2048/chain.pem");
    for key in ["key.enc.pem", "key.legacy-enc.pem", "key.legacy-des3.pem"] {
        let key = fixture(&format!("client/rsa2048/{key}"));
        let wrong = Keystore::open_pair(&chain, &key, &Options::with_password(WRONG))
            .and_then(|store| store.identity(None));
        assert_kind(wrong, "keystore.wrong_key_password");
        let none = Keystore::open_pair(&chain, &key, &Options::default())
            .and_then(|store| store.identity(None));
        assert_kind(none, "keystore.password_required");
        Keystore::open_pair(&chain, &key, &Options::with_password(PEM))
            .and_then(|store| store.identity(None))
            .expect("right password opens it");
    }
}

#[test]
fn no_private_key_in_a_truststore() {
    let options = Options::with_password("changeit");
    for path in [
        "trust/truststore.jks",
        "trust/truststore.p12",
        "trust/openssl-nokeys.p12",
    ] {
        assert_kind(identity(path, &options, None), "keystore.no_private_key");
    }
    assert_kind(
        identity("trust/bundle.pem", &options, None),
        "keystore.no_private_key",
    );
}

#[test]
fn alias_not_found_lists_the_aliases() {
    let error = assert_kind(
        identity(
            "multi/two-keys.jks",
            &Options::with_password(STORE),
            Some("gamma"),
        ),
        "keystore.alias_not_found",
    );
    let hint = error.hint();
    assert!(hint.contains("alpha") && hint.contains("beta"), "{hint}");
}

#[test]
fn ambiguous_alias_lists_the_aliases_and_choosing_works() {
    for path in [
        "multi/two-keys.jks",
        "multi/two-keys.jceks",
        "multi/two-keys.p12",
    ] {
        let options = Options::with_password(STORE);
        let error = assert_kind(identity(path, &options, None), "keystore.ambiguous_alias");
        assert!(error.hint().contains("alpha") && error.hint().contains("beta"));
        let alpha = identity(path, &options, Some("alpha")).expect("alpha");
        let beta = identity(path, &options, Some("BETA")).expect("aliases ignore case");
        assert_ne!(alpha.fingerprint(), beta.fingerprint(), "{path}");
    }
}

#[test]
fn key_that_does_not_match_its_certificate() {
    let bundle = identity("negative/mismatch/bundle.pem", &Options::default(), None);
    assert_kind(bundle, "keystore.key_mismatch");
    let pair = Keystore::open_pair(
        &fixture("negative/mismatch/cert.pem"),
        &fixture("negative/mismatch/key.pem"),
        &Options::default(),
    )
    .and_then(|store| store.identity(None));
    assert_kind(pair, "keystore.key_mismatch");
}

#[test]
fn truncated_files_are_corrupt() {
    for path in [
        "negative/truncated/openssl.p12",
        "negative/truncated/documented.jks",
        "negative/truncated/imported.jceks",
        "negative/truncated/chain.pem",
        "negative/truncated/key.pem",
    ] {
        assert_kind(
            open(path, &Options::with_password(STORE)),
            "keystore.corrupt",
        );
    }
}

#[test]
fn garbage_is_unrecognized_and_bks_unsupported() {
    for path in [
        "negative/garbage/random.bin",
        "negative/garbage/text.txt",
        "negative/garbage/empty.bin",
    ] {
        assert_kind(
            open(path, &Options::default()),
            "keystore.unrecognized_format",
        );
    }
    assert_kind(
        open("negative/garbage/bks-magic.bin", &Options::default()),
        "keystore.unsupported_format",
    );
}

#[test]
fn secret_key_entries_are_refused_by_name() {
    let options = Options::with_password(STORE);
    assert_kind(
        identity("secretkey/aes.jceks", &options, None),
        "keystore.secret_key_entry",
    );
    assert_kind(
        identity("secretkey/mixed.jceks", &options, Some("aeskey")),
        "keystore.secret_key_entry",
    );
    // The private key beside the secret key is still reachable.
    identity("secretkey/mixed.jceks", &options, None).expect("the private key entry");
}

#[test]
fn unsupported_key_encryption() {
    // EncryptedPrivateKeyInfo with algorithm 1.2.3.4 (unknown) and 16 bytes of data.
    let der = [
        0x30, 0x19, 0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x10, 1, 2, 3, 4, 5, 6, 7, 8,
        9, 10, 11, 12, 13, 14, 15, 16,
    ];
    let result = Keystore::open(&der, &Options::with_password(PEM)).and_then(|s| s.identity(None));
    assert_kind(result, "keystore.unsupported_algorithm");
}

#[test]
fn empty_trust_store() {
    let pem = fixture("client/rsa2048/key.pem");
    assert_kind(TrustAnchors::parse(&pem, None), "keystore.no_certificates");
}

#[test]
fn debug_output_never_shows_passwords_or_keys() {
    let options = both(STORE, KEY);
    let store = open("keytool/rsa2048-keypass.jks", &options).expect("opens");
    let identity = store.identity(None).expect("identity");
    let key = identity.private_key_pkcs8().expect("pkcs8");
    let shown = format!("{options:?} {store:?} {identity:?} {:?}", store.entries());
    for secret in [STORE, KEY] {
        assert!(!shown.contains(secret), "Debug shows a password: {shown}");
    }
    // No run of 16 key bytes appears in Debug output, as bytes or as their decimal list.
    let decimal: Vec<String> = key[..16].iter().map(u8::to_string).collect();
    assert!(
        !shown.contains(&decimal.join(", ")),
        "Debug shows key bytes"
    );
    assert!(shown.contains("***"));
}
