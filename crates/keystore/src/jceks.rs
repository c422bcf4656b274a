//! JCEKS key protection: PBEWithMD5AndTripleDES (Sun's `PBECipherCore`).
//!
//! Each salt half is hashed `iterations` times with MD5 together with the low byte of each
//! password character; the two digests give a 24-byte 3DES key and an 8-byte IV.

use des::TdesEde3;
use md5::{Digest, Md5};
use zeroize::Zeroizing;

use crate::asn1::{Reader, tag};
use crate::costs::{Budget, Derivation};
use crate::jks::{EncryptedKeyInfo, split_encrypted_key_info};
use crate::key::{PlainKey, Syntax, cbc_decrypt};
use crate::{Error, Format, Limits, Password};

/// 1.3.6.1.4.1.42.2.19.1, PBEWithMD5AndTripleDES.
const PBE_MD5_3DES_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x13, 0x01];

/// Recovers the PKCS#8 key from a JCEKS `EncryptedPrivateKeyInfo`.
pub(crate) fn unprotect_key(
    encrypted: &[u8],
    password: &Password,
    alias: &str,
    limits: &Limits,
) -> Result<PlainKey, Error> {
    let corrupt = || Error::Corrupt {
        format: Format::Jceks,
        detail: format!("malformed protected key in entry '{alias}'"),
    };
    let EncryptedKeyInfo {
        algorithm: oid,
        parameters,
        data,
    } = split_encrypted_key_info(encrypted).ok_or_else(corrupt)?;
    if oid != PBE_MD5_3DES_OID {
        return Err(Error::UnsupportedAlgorithm {
            algorithm: format!("JCEKS key protection {}", crate::asn1::oid_to_string(oid)),
        });
    }
    let (salt, iterations) = match parameters {
        Some((tag::SEQUENCE, contents)) => {
            let mut params = Reader::new(contents);
            let salt = params.expect(tag::OCTET_STRING).ok_or_else(corrupt)?;
            let iterations = params.small_uint().ok_or_else(corrupt)?;
            (salt, iterations)
        }
        _ => return Err(corrupt()),
    };
    if salt.len() != 8 || iterations == 0 {
        return Err(corrupt());
    }
    Budget::new(limits, format!("JCEKS entry '{alias}'")).charge(
        Derivation::Iterated {
            scheme: "PBEWithMD5AndTripleDES",
            iterations,
        },
        None,
    )?;
    let (key, iv) = derive(salt, iterations, password);
    let mut buffer = Zeroizing::new(data.to_vec());
    let wrong = || Error::WrongKeyPassword {
        alias: alias.to_owned(),
    };
    let len = cbc_decrypt::<TdesEde3>(&key, &iv, &mut buffer).ok_or_else(wrong)?;
    buffer.truncate(len);
    PlainKey::checked(Syntax::Pkcs8, buffer).ok_or_else(wrong)
}

fn derive(salt: &[u8], iterations: u64, password: &Password) -> (Zeroizing<Vec<u8>>, Vec<u8>) {
    let mut salt = salt.to_vec();
    if salt[..4] == salt[4..] {
        salt[..4].reverse();
    }
    let password = password.low_bytes();
    let mut derived = Zeroizing::new(Vec::with_capacity(32));
    for half in salt.chunks(4) {
        let mut hashed = half.to_vec();
        for _ in 0..iterations {
            let mut md5 = Md5::new();
            md5.update(&hashed);
            md5.update(password.as_slice());
            hashed = md5.finalize().to_vec();
        }
        derived.extend_from_slice(&hashed);
    }
    let iv = derived[24..32].to_vec();
    derived.truncate(24);
    (derived, iv)
}
