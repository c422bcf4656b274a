//! Bad input never panics: random bytes, every truncation and bit flips of real fixtures, fed
//! to every parser. Each must end in `Err` (or, for a flip that leaves the file valid, `Ok`).

use std::path::PathBuf;

use keystore::{Keystore, Options, Password, TrustAnchors};
use proptest::prelude::*;

fn fixture(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    std::fs::read(root.join(path)).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

/// Fixtures of every format; the mutations start from real structure, so they reach deep code.
const SEEDS: &[&str] = &[
    "client/rsa2048/documented.jks",
    "client/p256/imported.jceks",
    "secretkey/mixed.jceks",
    "client/p256/openssl.p12",
    "client/rsa2048/legacy.p12",
    "client/rsa2048/bundle.pem",
    "client/rsa2048/key.legacy-enc.pem",
    "client/p384/key.enc.pem",
    "client/p256/cert.der",
    "client/p256/key.der",
];

/// Runs every entry point on `bytes`; the test fails only by panicking.
fn exercise(bytes: &[u8]) {
    let passwords = [
        Options::default(),
        Options::with_password("Fx-store-7431"),
        Options::with_password("Fx-pem-5820"),
    ];
    for options in &passwords {
        if let Ok(store) = Keystore::open(bytes, options) {
            let _ = store.identity(None);
            let _ = store.trust_anchors();
            let _ = keystore::inspect(&store, None, time::OffsetDateTime::UNIX_EPOCH);
        }
    }
    let _ = Keystore::open_pair(bytes, bytes, &passwords[2]);
    let _ = TrustAnchors::parse(bytes, Some(&Password::new("changeit")));
    let _ = keystore::detect(bytes);
}

#[test]
fn every_truncation_of_every_seed_is_an_error() {
    for seed in SEEDS {
        let bytes = fixture(seed);
        let step = (bytes.len() / 300).max(1);
        for len in (0..bytes.len()).step_by(step) {
            let cut = &bytes[..len];
            // PEM cut inside the last block loses the END line; DER and containers lose bytes.
            // The only prefixes that may still open are PEM files cut after a complete block.
            let opened = Keystore::open(cut, &Options::with_password("Fx-store-7431"))
                .and_then(|store| store.identity(None));
            if !seed.ends_with(".pem") {
                assert!(
                    opened.is_err(),
                    "{seed} cut at {len} of {} opened",
                    bytes.len()
                );
            }
            exercise(cut);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_after_a_magic_never_panic(
        magic in prop::sample::select(vec![
            vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2],
            vec![0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2],
            vec![0x30, 0x82],
            b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n".to_vec(),
            vec![0xac, 0xed, 0x00, 0x05],
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut bytes = magic;
        bytes.extend(tail);
        exercise(&bytes);
    }

    #[test]
    fn flipped_and_spliced_fixtures_never_panic(
        seed in prop::sample::select(SEEDS.to_vec()),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = fixture(seed);
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= value | 1;
        }
        let keep = cut.index(bytes.len() + 1).max(bytes.len() / 2);
        bytes.truncate(keep);
        exercise(&bytes);
    }
}
