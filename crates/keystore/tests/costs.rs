//! Hostile key-derivation parameters are refused with `keystore.too_costly` before anything is
//! derived or allocated; stores at exactly the cap still open.
//!
//! The hostile inputs carry no real ciphertext: had anything derived a key from them (1 PiB
//! of scrypt memory aborts the process; 4e9 PBKDF2 iterations take minutes), the test would
//! abort or run into its time bound instead of getting the error.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keystore::{Error, Keystore, Limits, Options, Password, TrustAnchors};
use pkcs8::der::Encode;
use pkcs8::der::asn1::OctetStringRef;
use pkcs8::pkcs5::EncryptionScheme;
use pkcs8::pkcs5::pbes2::{self, Pbkdf2Params, Pbkdf2Prf, Salt, ScryptParams};

const STORE: &str = "Fx-store-7431";
const PEM: &str = "Fx-pem-5820";
const TRUST: &str = "changeit";

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

/// Runs `work`, which must end well within a liveness bound (refusals take microseconds).
fn quickly<T>(work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let output = work();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    output
}

fn too_costly<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    let error = result.expect_err("expected keystore.too_costly");
    assert_eq!(error.kind(), "keystore.too_costly", "{error}");
    // The remedy names the limits; each surface words them (the agent: its settings).
    assert!(
        error.hint().contains("key-derivation limits"),
        "{}",
        error.hint()
    );
    let shown = format!("{error} {} {error:?}", error.hint());
    for secret in [STORE, PEM, TRUST] {
        assert!(!shown.contains(secret), "{shown}");
    }
    error.to_string()
}

fn limits(max_iterations: u64, max_memory: u64) -> Limits {
    Limits {
        max_iterations,
        max_memory,
    }
}

fn with(password: &str, limits: Limits) -> Options {
    Options {
        limits,
        ..Options::with_password(password)
    }
}

// ---- encrypted PKCS#8 in PEM ------------------------------------------------------------

fn pbkdf2(iterations: u32) -> pbes2::Parameters {
    // A literal: pkcs5's constructor refuses counts over 10^8, its decoder does not.
    pbes2::Parameters {
        kdf: Pbkdf2Params {
            salt: Salt::new(b"saltsalt").expect("salt"),
            iteration_count: iterations,
            key_length: None,
            prf: Pbkdf2Prf::HmacWithSha256,
        }
        .into(),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [7; 16] },
    }
}

fn scrypt(log_n: u32, r: u16, p: u16) -> pbes2::Parameters {
    pbes2::Parameters {
        kdf: ScryptParams {
            salt: Salt::new(b"saltsalt").expect("salt"),
            cost_parameter: 1 << log_n,
            block_size: r,
            parallelization: p,
            key_length: Some(32),
        }
        .into(),
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [7; 16] },
    }
}

/// `EncryptedPrivateKeyInfo` DER with `params` around `ciphertext`.
fn envelope(params: pbes2::Parameters, ciphertext: &[u8]) -> Vec<u8> {
    pkcs8::EncryptedPrivateKeyInfo {
        encryption_algorithm: EncryptionScheme::from(params),
        encrypted_data: OctetStringRef::new(ciphertext).expect("octets"),
    }
    .to_der()
    .expect("der")
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    pkcs8::der::pem::encode_string(label, pkcs8::LineEnding::LF, der)
        .expect("pem")
        .into_bytes()
}

/// The fixture's certificate and its key, encrypted for real with `params` (cheap ones).
fn encrypted_identity(params: pbes2::Parameters) -> Vec<u8> {
    let (_, key) = pkcs8::der::pem::decode_vec(&fixture("client/p256/key.pem")).expect("key");
    let ciphertext = params.encrypt(PEM, &key).expect("encrypt");
    let mut bytes = fixture("client/p256/cert.pem");
    bytes.extend(pem("ENCRYPTED PRIVATE KEY", &envelope(params, &ciphertext)));
    bytes
}

/// An encrypted key with `params` and no real ciphertext.
fn hostile_key(params: pbes2::Parameters) -> Vec<u8> {
    pem("ENCRYPTED PRIVATE KEY", &envelope(params, &[0; 48]))
}

fn open_identity(bytes: &[u8], options: &Options) -> Result<keystore::Identity, Error> {
    Keystore::open(bytes, options)?.identity(None)
}

#[test]
fn scrypt_asking_for_a_pebibyte_is_refused_before_allocating() {
    let bytes = hostile_key(scrypt(40, 8, 1));
    let message = quickly(|| too_costly(open_identity(&bytes, &Options::with_password(PEM))));
    assert_eq!(
        message,
        "the key is encrypted with scrypt N=2^40, r=8, p=1 (1 PiB of memory); the limit is \
         256 MiB"
    );
    // p multiplies the memory and the work: N=2^18 is at the cap alone, over it with p=2.
    let bytes = hostile_key(scrypt(18, 8, 2));
    let message = quickly(|| too_costly(open_identity(&bytes, &Options::with_password(PEM))));
    assert!(message.contains("(512 MiB of memory)"), "{message}");
}

#[test]
fn pbkdf2_asking_for_four_billion_iterations_is_refused_before_deriving() {
    let bytes = hostile_key(pbkdf2(4_000_000_000));
    let message = quickly(|| too_costly(open_identity(&bytes, &Options::with_password(PEM))));
    assert_eq!(
        message,
        "the key is encrypted with PBKDF2 with 4,000,000,000 iterations; the limit is \
         4,000,000 iterations"
    );
}

#[test]
fn a_key_at_exactly_the_cap_opens_and_one_step_over_is_refused() {
    let bytes = encrypted_identity(pbkdf2(3000));
    let identity = open_identity(&bytes, &with(PEM, limits(3000, 0))).expect("at the cap");
    assert_eq!(identity.chain().len(), 1);
    too_costly(open_identity(&bytes, &with(PEM, limits(2999, 0))));

    let bytes = encrypted_identity(scrypt(10, 8, 1));
    let mebibyte = 1 << 20;
    open_identity(&bytes, &with(PEM, limits(0, mebibyte))).expect("at the cap");
    let message = too_costly(open_identity(&bytes, &with(PEM, limits(0, mebibyte - 1))));
    assert!(
        message.contains("N=2^10, r=8, p=1 (1 MiB of memory)"),
        "{message}"
    );
    // The default caps open what OpenSSL makes.
    open_identity(&fixture("client/p256/bundle.pem"), &Options::default()).expect("plain");
    let mut openssl_made = fixture("client/p256/cert.pem");
    openssl_made.extend(fixture("client/p256/key.enc.pem"));
    open_identity(&openssl_made, &Options::with_password(PEM)).expect("pbkdf2 2048");
}

// ---- PKCS#12 -------------------------------------------------------------------------------

const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

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

fn integer(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut contents = bytes[skip..].to_vec();
    if contents[0] & 0x80 != 0 {
        contents.insert(0, 0);
    }
    tlv(0x02, &[&contents])
}

/// A shrouded key bag encrypted (in name only) with `params`.
fn shrouded(params: pbes2::Parameters) -> Vec<u8> {
    tlv(
        0x30,
        &[
            &tlv(0x06, &[SHROUDED_KEY_BAG]),
            &tlv(0xa0, &[&envelope(params, &[0; 48])]),
        ],
    )
}

fn data_safe(bags: &[Vec<u8>]) -> Vec<u8> {
    let contents = tlv(0x30, &[&bags.concat()]);
    tlv(
        0x30,
        &[&tlv(0x06, &[DATA]), &tlv(0xa0, &[&tlv(0x04, &[&contents])])],
    )
}

/// An encrypted bag list, encrypted for real with `params` and `password`.
fn encrypted_safe(bags: &[Vec<u8>], params: pbes2::Parameters, password: &str) -> Vec<u8> {
    let contents = tlv(0x30, &[&bags.concat()]);
    let ciphertext = params.encrypt(password, &contents).expect("encrypt");
    let algorithm = EncryptionScheme::from(params).to_der().expect("algorithm");
    let info = tlv(
        0x30,
        &[&tlv(0x06, &[DATA]), &algorithm, &tlv(0x80, &[&ciphertext])],
    );
    let encrypted = tlv(0x30, &[&integer(0), &info]);
    tlv(
        0x30,
        &[&tlv(0x06, &[ENCRYPTED_DATA]), &tlv(0xa0, &[&encrypted])],
    )
}

fn pfx(safes: &[Vec<u8>], mac_iterations: Option<u64>) -> Vec<u8> {
    let authenticated = tlv(0x30, &[&safes.concat()]);
    let auth_safe = tlv(
        0x30,
        &[
            &tlv(0x06, &[DATA]),
            &tlv(0xa0, &[&tlv(0x04, &[&authenticated])]),
        ],
    );
    let mac = mac_iterations
        .map(|iterations| {
            let algorithm = tlv(0x30, &[&tlv(0x06, &[SHA256]), &[0x05, 0x00]]);
            let digest = tlv(0x30, &[&algorithm, &tlv(0x04, &[&[0; 32]])]);
            tlv(
                0x30,
                &[&digest, &tlv(0x04, &[b"macsalt!"]), &integer(iterations)],
            )
        })
        .unwrap_or_default();
    tlv(0x30, &[&integer(3), &auth_safe, &mac])
}

#[test]
fn a_pkcs12_mac_asking_for_four_billion_iterations_is_refused() {
    let bytes = pfx(&[data_safe(&[])], Some(4_000_000_000));
    let message = quickly(|| too_costly(Keystore::open(&bytes, &Options::with_password(STORE))));
    assert!(
        message.starts_with(
            "the PKCS#12 store is encrypted with the PKCS#12 KDF with 4,000,000,000 iterations"
        ),
        "{message}"
    );
}

#[test]
fn a_pkcs12_of_many_bags_each_within_the_readers_cap_is_refused_by_their_total() {
    // p12-keystore takes each of these (1,000,000 iterations is its own cap): 1,000 of them
    // would be minutes of CPU.
    let bags: Vec<Vec<u8>> = (0..1000).map(|_| shrouded(pbkdf2(1_000_000))).collect();
    let bytes = pfx(&[data_safe(&bags)], None);
    let message = quickly(|| too_costly(Keystore::open(&bytes, &Options::with_password(STORE))));
    assert_eq!(
        message,
        "the PKCS#12 store is encrypted with 5 key derivations of 5,000,000 iterations in all; \
         the limit is 4,000,000 iterations"
    );
}

#[test]
fn bags_hidden_in_an_encrypted_list_are_counted_too() {
    let bags: Vec<Vec<u8>> = (0..50).map(|_| shrouded(pbkdf2(1_000_000))).collect();
    let bytes = pfx(&[encrypted_safe(&bags, pbkdf2(2048), STORE)], None);
    let message = quickly(|| too_costly(Keystore::open(&bytes, &Options::with_password(STORE))));
    assert!(
        message.contains("6 key derivations of 4,004,096 iterations in all"),
        "{message}"
    );
    // With the wrong password the list does not decrypt, and opening stops there.
    let error = quickly(|| Keystore::open(&bytes, &Options::with_password("not-it")))
        .expect_err("wrong password");
    assert_eq!(error.kind(), "keystore.wrong_store_password", "{error}");
}

#[test]
fn a_pkcs12_key_bag_with_huge_scrypt_is_refused() {
    let bytes = pfx(&[data_safe(&[shrouded(scrypt(40, 8, 1))])], None);
    let message = quickly(|| too_costly(Keystore::open(&bytes, &Options::with_password(STORE))));
    assert!(
        message.contains("scrypt N=2^40, r=8, p=1 (1 PiB of memory)"),
        "{message}"
    );
}

#[test]
fn a_pkcs12_at_exactly_its_cost_opens_and_one_under_is_refused() {
    // OpenSSL's defaults: MAC, certificate list and key bag at 2,048 iterations each; the
    // certificate list is decrypted twice (once to count the keys inside), so charged twice.
    let bytes = fixture("client/p256/openssl.p12");
    let store = Keystore::open(&bytes, &with(STORE, limits(4 * 2048, 0))).expect("at the cap");
    store.identity(None).expect("identity");
    let message = too_costly(Keystore::open(
        &bytes,
        &with(STORE, limits(4 * 2048 - 1, 0)),
    ));
    assert!(
        message.contains("4 key derivations of 8,192 iterations in all"),
        "{message}"
    );
    let trust = fixture("trust/openssl-nokeys.p12");
    TrustAnchors::parse(&trust, Some(&Password::new(TRUST))).expect("default caps");
    too_costly(TrustAnchors::open(&trust, &with(TRUST, limits(100, 0))));
}

// ---- JCEKS ---------------------------------------------------------------------------------

/// The offset and length of the iteration count of the first JCEKS protected key.
fn jceks_iterations(bytes: &[u8]) -> (usize, usize) {
    let oid = [0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x13, 0x01];
    let at = bytes
        .windows(oid.len())
        .position(|window| window == oid)
        .expect("PBEWithMD5AndTripleDES")
        + oid.len();
    // SEQUENCE { OCTET STRING (8 bytes of salt), INTEGER }
    assert_eq!(&bytes[at..at + 4], &[0x30, bytes[at + 1], 0x04, 0x08]);
    let integer = at + 2 + 10;
    assert_eq!(bytes[integer], 0x02);
    (integer + 2, usize::from(bytes[integer + 1]))
}

#[test]
fn a_jceks_key_asking_for_more_rounds_than_the_cap_is_refused() {
    let original = fixture("client/p256/imported.jceks");
    let (at, len) = jceks_iterations(&original);
    assert_eq!(len, 3, "keytool's 200,000 rounds take 3 bytes");
    let iterations = original[at..at + len]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    // The store's integrity digest covers the count: open without checking it, as a hostile
    // store that knows its own password would pass it anyway.
    let key_only = |limits| Options {
        store_password: None,
        key_password: Some(Password::new(STORE)),
        limits,
    };
    let at_cap = Keystore::open(&original, &key_only(limits(iterations, 0)))
        .and_then(|store| store.identity(None));
    at_cap.expect("at the cap");
    too_costly(
        Keystore::open(&original, &key_only(limits(iterations - 1, 0)))
            .and_then(|store| store.identity(None)),
    );
    let mut hostile = original;
    hostile[at] = 0x7f;
    hostile[at + 1..at + len].fill(0xff);
    let message = quickly(|| {
        too_costly(
            Keystore::open(&hostile, &key_only(Limits::default()))
                .and_then(|store| store.identity(None)),
        )
    });
    assert!(
        message.contains("is encrypted with PBEWithMD5AndTripleDES with 8,388,607 iterations"),
        "{message}"
    );
    let error = Keystore::open(&hostile, &Options::with_password(STORE)).expect_err("digest");
    assert_eq!(error.kind(), "keystore.wrong_store_password");
}

#[test]
fn an_openssl_pkcs12_made_with_owasp_iterations_opens_under_the_default_cap() {
    // `openssl pkcs12 -export -iter 600000`: MAC, certificate list (charged twice) and
    // key bag at 600,000 each, 2,400,000 in all, as OWASP's PBKDF2 advice makes stores today.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/client/p256");
    let out = std::env::temp_dir().join(format!("owasp-{}.p12", std::process::id()));
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-iter",
            "600000",
            "-passout",
            "pass:owasp-pass",
        ])
        .arg("-in")
        .arg(root.join("cert.pem"))
        .arg("-inkey")
        .arg(root.join("key.pem"))
        .arg("-out")
        .arg(&out)
        .status()
        .expect("openssl runs (the test suite installs it)");
    assert!(status.success(), "openssl pkcs12 -export failed");
    let bytes = std::fs::read(&out).expect("the exported store");
    let _ = std::fs::remove_file(&out);
    let store = Keystore::open(&bytes, &Options::with_password("owasp-pass"))
        .expect("opens under the default limits");
    store
        .identity(None)
        .expect("its key unseals within the cap too");
}
