//! JKS: the magic is fixed so every input reaches the container parser and key protector.
#![no_main]

use keystore::{Keystore, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = vec![0xfe, 0xed, 0xfe, 0xed];
    bytes.extend_from_slice(data);
    for options in [Options::default(), Options::with_password("Fx-store-7431")] {
        if let Ok(store) = Keystore::open(&bytes, &options) {
            let _ = store.identity(None);
            let _ = store.trust_anchors();
            let _ = keystore::inspect(&store, None, time::OffsetDateTime::UNIX_EPOCH);
        }
    }
});
