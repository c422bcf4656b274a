//! PKCS#12 and DER: any input, as the format sniffer routes it.
#![no_main]

use keystore::{Keystore, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for options in [Options::default(), Options::with_password("Fx-store-7431")] {
        if let Ok(store) = Keystore::open(data, &options) {
            let _ = store.identity(None);
            let _ = store.trust_anchors();
        }
    }
});
