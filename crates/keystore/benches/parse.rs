//! Parse cost per format and key type: what a cached identity saves a job.
//!
//! `open` is reading and integrity-checking the store; `identity` adds decrypting the key,
//! loading it into aws-lc-rs and checking it against the certificate.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use keystore::{Keystore, Options, TrustAnchors};

const STORE_PASSWORD: &str = "Fx-store-7431";

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

fn identities(c: &mut Criterion) {
    let cases = [
        ("pem/rsa2048", "client/rsa2048/bundle.pem"),
        ("pem/rsa4096", "client/rsa4096/bundle.pem"),
        ("pem/p256", "client/p256/bundle.pem"),
        ("pem/p384", "client/p384/bundle.pem"),
        ("pem/ed25519", "client/ed25519/bundle.pem"),
        ("pem-encrypted-pkcs8/rsa2048", "client/rsa2048/key.enc.pem"),
        ("pkcs12-openssl3/rsa2048", "client/rsa2048/openssl.p12"),
        ("pkcs12-openssl3/p256", "client/p256/openssl.p12"),
        ("pkcs12-legacy/rsa2048", "client/rsa2048/legacy.p12"),
        ("pkcs12-keytool/p256", "keytool/p256.p12"),
        ("jks/rsa2048", "client/rsa2048/documented.jks"),
        ("jks/p256", "keytool/p256.jks"),
        ("jceks/rsa2048", "client/rsa2048/imported.jceks"),
        ("jceks/p256", "keytool/p256.jceks"),
    ];
    let mut group = c.benchmark_group("identity");
    group.sample_size(20);
    for (name, path) in cases {
        let bytes = fixture(path);
        let options = if path.ends_with(".pem") {
            Options::with_password("Fx-pem-5820")
        } else {
            Options::with_password(STORE_PASSWORD)
        };
        let pair = path
            .ends_with("key.enc.pem")
            .then(|| fixture("client/rsa2048/chain.pem"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let store = match &pair {
                    Some(certs) => Keystore::open_pair(certs, &bytes, &options),
                    None => Keystore::open(&bytes, &options),
                }
                .expect("fixture opens");
                black_box(store.identity(None).expect("fixture has an identity"))
            })
        });
    }
    group.finish();
}

fn cached(c: &mut Criterion) {
    let store = Keystore::open(&fixture("client/rsa2048/bundle.pem"), &Options::default())
        .expect("fixture opens");
    let identity = store.identity(None).expect("fixture has an identity");
    c.bench_function("identity/cached-clone", |b| {
        b.iter(|| black_box(identity.certified_key()))
    });
}

fn trust(c: &mut Criterion) {
    let mut group = c.benchmark_group("trust");
    group.sample_size(20);
    for (name, path) in [
        ("pem-bundle", "trust/bundle.pem"),
        ("jks-cacerts", "trust/cacerts.jks"),
        ("pkcs12-keytool", "trust/truststore.p12"),
    ] {
        let bytes = fixture(path);
        let password = keystore::Password::new("changeit");
        group.bench_function(name, |b| {
            b.iter(|| black_box(TrustAnchors::parse(&bytes, Some(&password)).expect("parses")))
        });
    }
    group.finish();
}

criterion_group!(benches, identities, cached, trust);
criterion_main!(benches);
