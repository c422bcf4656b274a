//! PEM text, also as the key half of a certificate + key pair.
#![no_main]

use keystore::{Keystore, Options, TrustAnchors};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut text = b"-----BEGIN ".to_vec();
    text.extend_from_slice(data);
    let options = Options::with_password("Fx-pem-5820");
    if let Ok(store) = Keystore::open(&text, &options) {
        let _ = store.identity(None);
    }
    let _ = Keystore::open_pair(data, &text, &options);
    let _ = TrustAnchors::parse(&text, None);
});
