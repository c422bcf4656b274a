//! Hostile keystores built by hand: a PEM bundle (a fixture certificate and an
//! `ENCRYPTED PRIVATE KEY`) whose PBES2 parameters ask for absurd work: scrypt with N = 2^40
//! (a 1 PiB allocation), scrypt with a huge parallelization, PBKDF2 with 4e9 iterations. The
//! ciphertext is random: decryption can only fail, and must be refused before any work.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The password every hostile keystore is sent with.
pub(crate) const PASSWORD: &str = "hostile-key-pw-77";

/// PBES2 key derivation parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kdf {
    /// scrypt (RFC 7914): cost N, block size r, parallelization p.
    Scrypt { n: u64, r: u64, p: u64 },
    /// PBKDF2 with HMAC-SHA256.
    Pbkdf2 { iterations: u64 },
}

const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const SCRYPT: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b];
const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];

/// `keystoreBase64` of a PEM bundle: the fixture p256 client certificate and a key encrypted
/// with `kdf`.
pub(crate) fn inline_keystore(kdf: Kdf) -> String {
    let cert = std::fs::read_to_string(super::fixture("client/p256/cert.pem")).expect("fixture");
    let mut pem = cert;
    pem.push_str(&pem_block("ENCRYPTED PRIVATE KEY", &encrypted_key(kdf)));
    STANDARD.encode(pem)
}

/// An `EncryptedPrivateKeyInfo` (RFC 5958) with PBES2 (RFC 8018) and AES-256-CBC.
pub(crate) fn encrypted_key(kdf: Kdf) -> Vec<u8> {
    let salt = octets(&[7; 16]);
    let kdf = match kdf {
        Kdf::Scrypt { n, r, p } => {
            seq(&[oid(SCRYPT), seq(&[salt, int(n), int(r), int(p), int(32)])])
        }
        Kdf::Pbkdf2 { iterations } => seq(&[
            oid(PBKDF2),
            seq(&[
                salt,
                int(iterations),
                int(32),
                seq(&[oid(HMAC_SHA256), vec![0x05, 0x00]]),
            ]),
        ]),
    };
    let cipher = seq(&[oid(AES256_CBC), octets(&[9; 16])]);
    let algorithm = seq(&[oid(PBES2), seq(&[kdf, cipher])]);
    seq(&[algorithm, octets(&[0x5a; 48])])
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(encoded: &[u8]) -> Vec<u8> {
    tlv(0x06, encoded)
}

fn octets(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

/// A non-negative DER INTEGER, minimal, with a leading zero when the top bit is set.
fn int(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|byte| *byte == 0)
        .collect();
    if bytes.first().is_none_or(|first| first & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

#[test]
fn hostile_keys_are_well_formed_der() {
    // openssl parses them: the suite tests the agent's caps, not its DER parser.
    for kdf in [
        Kdf::Scrypt {
            n: 1 << 40,
            r: 8,
            p: 1,
        },
        Kdf::Pbkdf2 {
            iterations: 4_000_000_000,
        },
    ] {
        let path = std::env::temp_dir().join(format!("hostile-key-{}.der", std::process::id()));
        std::fs::write(&path, encrypted_key(kdf)).expect("write");
        let output = std::process::Command::new("openssl")
            .args(["asn1parse", "-inform", "DER", "-in"])
            .arg(&path)
            .output()
            .expect("openssl runs");
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{kdf:?}: {text}");
        assert!(text.contains("PBES2"), "{text}");
    }
}
