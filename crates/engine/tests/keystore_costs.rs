//! Keystore parsing is bounded: hostile key-derivation parameters end the job with
//! `keystore.too_costly`, a slow parse ends it at its deadline, and inline keystores are not
//! kept alive by the engine's caches.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::{Engine, IdentitySource, Job, Source};
use keystore::{Limits, Password};

use common::{STORE, Setup, body, describe, fixture, start, trust};

const PEM: &str = "Fx-pem-5820";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn inline(bytes: Bytes, password: &str) -> IdentitySource {
    IdentitySource::Keystore {
        source: Source::Bytes(bytes),
        password: Some(Password::new(password)),
        key_password: None,
        alias: None,
    }
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

fn integer(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut contents = bytes[skip..].to_vec();
    if contents[0] & 0x80 != 0 {
        contents.insert(0, 0);
    }
    tlv(0x02, &[&contents])
}

/// An `ENCRYPTED PRIVATE KEY` PEM with PBES2 over `kdf` (AlgorithmIdentifier DER) and junk
/// ciphertext: whatever derives a key from it fails to decrypt afterwards.
fn encrypted_key(kdf: &[u8]) -> Bytes {
    const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    let cipher = tlv(0x30, &[&tlv(0x06, &[AES256_CBC]), &tlv(0x04, &[&[7; 16]])]);
    let parameters = tlv(0x30, &[kdf, &cipher]);
    let algorithm = tlv(0x30, &[&tlv(0x06, &[PBES2]), &parameters]);
    let der = tlv(0x30, &[&algorithm, &tlv(0x04, &[&[0; 48]])]);
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let mut pem = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64"));
        pem.push('\n');
    }
    pem.push_str("-----END ENCRYPTED PRIVATE KEY-----\n");
    Bytes::from(pem)
}

fn scrypt(log_n: u32, r: u64, p: u64) -> Vec<u8> {
    const SCRYPT: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b];
    let parameters = tlv(
        0x30,
        &[
            &tlv(0x04, &[b"saltsalt"]),
            &integer(1 << log_n),
            &integer(r),
            &integer(p),
        ],
    );
    tlv(0x30, &[&tlv(0x06, &[SCRYPT]), &parameters])
}

fn pbkdf2(iterations: u64) -> Vec<u8> {
    const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    let prf = tlv(0x30, &[&tlv(0x06, &[HMAC_SHA256]), &[0x05, 0x00]]);
    let parameters = tlv(
        0x30,
        &[&tlv(0x04, &[b"saltsalt"]), &integer(iterations), &prf],
    );
    tlv(0x30, &[&tlv(0x06, &[PBKDF2]), &parameters])
}

#[tokio::test]
async fn a_hostile_inline_keystore_ends_its_job_with_one_typed_result() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    for kdf in [scrypt(40, 8, 1), pbkdf2(4_000_000_000)] {
        let job = Job::builder("GET", server.url("/"))
            .identity(inline(encrypted_key(&kdf), PEM))
            .trust_store(trust())
            .build()
            .expect("job");
        let started = Instant::now();
        let outcome = engine.run(job).await;
        assert!(started.elapsed() < Duration::from_secs(10), "refused late");
        assert_eq!(
            outcome.kind(),
            Some("keystore.too_costly"),
            "{}",
            describe(&outcome)
        );
        let error = outcome.error.as_ref().expect("error");
        assert!(error.message.contains("the limit is"), "{}", error.message);
        assert!(
            error.hint.contains("key-derivation limits"),
            "{}",
            error.hint
        );
    }
    // The engine is unharmed: the next job presents its identity.
    let job = Job::builder("GET", server.url("/"))
        .identity(common::identity("p256"))
        .trust_store(trust())
        .build()
        .expect("job");
    let outcome = engine.run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
    assert!(body(&outcome).contains("CN="), "{}", body(&outcome));
}

#[tokio::test]
async fn the_engines_limits_apply_to_identities_and_trust_stores() {
    let server = start(Setup::default()).await;
    let strict = Engine::with_keystore_limits(
        provider(),
        Limits {
            max_iterations: 1000,
            max_memory: 1 << 20,
        },
    );
    let p12 = Bytes::from(std::fs::read(fixture("client/p256/openssl.p12")).expect("p12"));
    let job = Job::builder("GET", server.url("/"))
        .identity(inline(p12.clone(), STORE))
        .trust_store(trust())
        .build()
        .expect("job");
    let outcome = strict.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("keystore.too_costly"),
        "{}",
        describe(&outcome)
    );
    let trust_p12 = engine::TrustSource {
        source: Source::Path(fixture("trust/truststore.p12")),
        password: Some(Password::new("changeit")),
    };
    let job = Job::builder("GET", server.url("/"))
        .identity(common::identity("p256"))
        .trust_store(trust_p12.clone())
        .build()
        .expect("job");
    let outcome = strict.run(job).await;
    assert_eq!(
        outcome.kind(),
        Some("keystore.too_costly"),
        "{}",
        describe(&outcome)
    );
    // The default limits open both.
    let job = Job::builder("GET", server.url("/"))
        .identity(inline(p12, STORE))
        .trust_store(trust_p12)
        .build()
        .expect("job");
    let outcome = Engine::with_provider(provider()).run(job).await;
    assert!(outcome.ok, "{}", describe(&outcome));
}

/// A parse that takes longer than the job may (allowed by generous limits) ends the job at its
/// deadline with the engine's timeout error; the parse runs out in the background.
#[test]
fn a_slow_parse_ends_at_the_jobs_deadline() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let generous = Engine::with_keystore_limits(
        provider(),
        Limits {
            max_iterations: 1_000_000_000,
            max_memory: 1 << 30,
        },
    );
    // Seconds of PBKDF2 even in an optimised build; the job may take 200 ms.
    let slow = encrypted_key(&pbkdf2(30_000_000));
    let outcome = runtime.block_on(async {
        let job = Job::builder("GET", "https://127.0.0.1:9/")
            .identity(inline(slow, PEM))
            .timeout(Duration::from_millis(200))
            .build()
            .expect("job");
        let started = Instant::now();
        let outcome = generous.run(job).await;
        (outcome, started.elapsed())
    });
    let (outcome, took) = outcome;
    assert_eq!(outcome.kind(), Some("timeout"), "{}", describe(&outcome));
    let message = &outcome.error.as_ref().expect("error").message;
    assert!(message.contains("keystore loading"), "{message}");
    assert!(took < Duration::from_secs(3), "ended after {took:?}");
    // Do not wait for the abandoned parse.
    runtime.shutdown_background();
}

/// Inline keystores (each job its own buffer, as decoded from `keystoreBase64`) are not kept
/// alive: a large one is released when its job ends, small ones up to a bounded total.
#[tokio::test]
async fn inline_keystores_are_released_after_their_jobs() {
    let server = start(Setup::default()).await;
    let engine = Engine::new();
    let bundle = std::fs::read(fixture("client/p256/bundle.pem")).expect("bundle");
    let mut large = bundle.clone();
    large.resize(bundle.len() + (20 << 20), b'\n');
    let mut kept = Vec::new();
    for round in 0..3 {
        // A fresh 20 MB buffer per job, as decoding base64 gives.
        let buffer = Bytes::from(large.clone());
        let job = Job::builder("GET", server.url("/"))
            .identity(IdentitySource::Keystore {
                source: Source::Bytes(buffer.clone()),
                password: None,
                key_password: None,
                alias: None,
            })
            .trust_store(trust())
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        assert!(outcome.ok, "round {round}: {}", describe(&outcome));
        kept.push(buffer);
    }
    for (round, buffer) in kept.into_iter().enumerate() {
        assert!(
            buffer.is_unique(),
            "the 20 MB buffer of job {round} is still held"
        );
    }
    // 2 MB buffers: at most 16 MiB of them stay referenced (for the digest-by-address cache).
    let mut small = bundle;
    small.resize(small.len() + (2 << 20), b'\n');
    let mut buffers = Vec::new();
    for _ in 0..30 {
        let buffer = Bytes::from(small.clone());
        let job = Job::builder("GET", server.url("/"))
            .identity(IdentitySource::Keystore {
                source: Source::Bytes(buffer.clone()),
                password: None,
                key_password: None,
                alias: None,
            })
            .trust_store(trust())
            .build()
            .expect("job");
        let outcome = engine.run(job).await;
        assert!(outcome.ok, "{}", describe(&outcome));
        buffers.push(buffer);
    }
    let held: usize = buffers
        .iter()
        .filter(|b| !b.is_unique())
        .map(Bytes::len)
        .sum();
    assert!(
        held <= 16 << 20,
        "{held} bytes of inline keystores still held"
    );
}
