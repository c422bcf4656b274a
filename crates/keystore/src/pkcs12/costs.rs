//! The key derivations a PKCS#12 file asks for, added up before `p12-keystore` runs any.
//!
//! `p12-keystore` refuses a single derivation over 1,000,000 iterations (or scrypt over
//! 1 GiB, p over 16), but not a file of a thousand such derivations. This walk finds every
//! derivation opening will run, in the order it will run them: the MAC, the encryption of
//! each bag list, and each encrypted key or secret bag. Bags inside an encrypted list are
//! only visible after decrypting it, so once the visible derivations are within the limits
//! the encrypted lists are decrypted here and their bags charged too. That decryption is
//! work on top of `p12-keystore`'s, so each list's derivation is charged twice: once as
//! `p12-keystore` runs it, once (before it runs) for the decryption here. A list that does
//! not decrypt ends the walk: `p12-keystore` stops there too, before the bags inside it.

use cbc::cipher::{BlockCipherDecrypt, KeyInit};
use des::TdesEde3;
use rc2::Rc2;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use crate::asn1::{self, Reader, tag};
use crate::costs::{Budget, Derivation};
use crate::key::{cbc_decrypt, pbes2_derivation};
use crate::{Error, Format, Limits};

/// 1.2.840.113549.1.7.1, PKCS#7 data.
const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// 1.2.840.113549.1.7.6, PKCS#7 encrypted data.
const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
/// 1.2.840.113549.1.12.10.1.2, pkcs8ShroudedKeyBag.
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
/// 1.2.840.113549.1.12.10.1.5, secretBag.
const SECRET_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x05,
];
/// 1.2.840.113549.1.5.13, PBES2.
const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
/// 1.2.840.113549.1.12.1.3, pbeWithSHAAnd3-KeyTripleDES-CBC.
const PBE_SHA_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
/// 1.2.840.113549.1.12.1.6, pbeWithSHAAnd40BitRC2-CBC.
const PBE_SHA_RC2_40: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];

/// What `p12-keystore` 0.4.1 refuses above, per derivation (its `MAX_KDF_ITERATIONS`,
/// `MAX_MAC_ITERATIONS` and `MAX_SCRYPT_MEMORY_BYTES` per scrypt lane).
const READER_CEILING: Limits = Limits {
    max_iterations: 1_000_000,
    max_memory: 1 << 30,
};

/// What the walk saw: derivations charged, encrypted bag lists found and decrypted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    pub(crate) derivations: u64,
    pub(crate) encrypted_lists: usize,
    pub(crate) decrypted_lists: usize,
}

/// Checks the derivations of a PKCS#12 file against `limits`; `password` is the one
/// `p12-keystore` will be given ("" for none).
pub(crate) fn check(bytes: &[u8], password: &str, limits: &Limits) -> Result<Walked, Error> {
    let corrupt = || Error::Corrupt {
        format: Format::Pkcs12,
        detail: "malformed PKCS#12 structure".into(),
    };
    let mut budget = Budget::new(limits, "the PKCS#12 store");
    let mut pfx = Reader::new(
        Reader::new(bytes)
            .expect(tag::SEQUENCE)
            .ok_or_else(corrupt)?,
    );
    pfx.small_uint().ok_or_else(corrupt)?;
    let mut auth_safe = Reader::new(pfx.expect(tag::SEQUENCE).ok_or_else(corrupt)?);
    if auth_safe.expect(tag::OID) != Some(DATA) {
        // p12-keystore refuses it (public-key integrity mode) before deriving anything.
        return Ok(Walked::default());
    }
    let safes = Reader::new(auth_safe.expect(EXPLICIT_0).ok_or_else(corrupt)?)
        .expect(tag::OCTET_STRING)
        .and_then(|list| Reader::new(list).expect(tag::SEQUENCE))
        .ok_or_else(corrupt)?;
    if let Some(mac) = pfx.expect(tag::SEQUENCE) {
        let mut mac = Reader::new(mac);
        mac.expect(tag::SEQUENCE).ok_or_else(corrupt)?;
        mac.expect(tag::OCTET_STRING).ok_or_else(corrupt)?;
        let iterations = if mac.is_empty() {
            1
        } else {
            mac.small_uint().ok_or_else(corrupt)?
        };
        budget.charge(pkcs12_kdf(iterations), Some(&READER_CEILING))?;
    }
    let mut encrypted = Vec::new();
    let mut list = Reader::new(safes);
    while let Some(content_info) = list.expect(tag::SEQUENCE) {
        let mut content_info = Reader::new(content_info);
        let content_type = content_info.expect(tag::OID).ok_or_else(corrupt)?;
        let content = content_info.expect(EXPLICIT_0).ok_or_else(corrupt)?;
        if content_type == DATA {
            let bags = Reader::new(content)
                .expect(tag::OCTET_STRING)
                .ok_or_else(corrupt)?;
            charge_bags(bags, &mut budget)?;
        } else if content_type == ENCRYPTED_DATA {
            let parts = encrypted_content(content).ok_or_else(corrupt)?;
            charge_algorithm(parts.0, parts.1, &mut budget)?;
            encrypted.push(parts);
        }
    }
    if !list.is_empty() {
        return Err(corrupt());
    }
    let mut walked = Walked {
        encrypted_lists: encrypted.len(),
        ..Walked::default()
    };
    for (algorithm, parameters, data) in encrypted {
        // This decryption derives the list's key again, before p12-keystore does.
        charge_algorithm(algorithm, parameters, &mut budget)?;
        let Some(bags) = decrypt(algorithm, parameters, data, password) else {
            break;
        };
        charge_bags(&bags, &mut budget)?;
        walked.decrypted_lists += 1;
    }
    walked.derivations = budget.derivations();
    Ok(walked)
}

/// `[0]` EXPLICIT, constructed.
const EXPLICIT_0: u8 = 0xa0;
/// `[0]` IMPLICIT OCTET STRING, primitive.
const IMPLICIT_0: u8 = 0x80;

/// The algorithm OID, its parameters (the whole element) and the ciphertext of an
/// `EncryptedData`.
type Encrypted<'a> = (&'a [u8], Option<(u8, &'a [u8])>, &'a [u8]);

fn encrypted_content(content: &[u8]) -> Option<Encrypted<'_>> {
    let mut data = Reader::new(Reader::new(content).expect(tag::SEQUENCE)?);
    data.small_uint()?;
    let mut info = Reader::new(data.expect(tag::SEQUENCE)?);
    info.expect(tag::OID)?;
    let mut algorithm = Reader::new(info.expect(tag::SEQUENCE)?);
    let oid = algorithm.expect(tag::OID)?;
    let parameters = algorithm.next();
    let ciphertext = match info.next() {
        Some((IMPLICIT_0, bytes)) => bytes,
        _ => &[],
    };
    Some((oid, parameters, ciphertext))
}

/// Charges the shrouded key bags and secret bags of a `SafeContents`.
fn charge_bags(bags: &[u8], budget: &mut Budget<'_>) -> Result<(), Error> {
    let corrupt = || Error::Corrupt {
        format: Format::Pkcs12,
        detail: "malformed PKCS#12 bag".into(),
    };
    let mut list = Reader::new(
        Reader::new(bags)
            .expect(tag::SEQUENCE)
            .ok_or_else(corrupt)?,
    );
    while let Some(bag) = list.expect(tag::SEQUENCE) {
        let mut bag = Reader::new(bag);
        let bag_id = bag.expect(tag::OID).ok_or_else(corrupt)?;
        let value = bag.expect(EXPLICIT_0).ok_or_else(corrupt)?;
        let encrypted_key = if bag_id == SHROUDED_KEY_BAG {
            Some(value)
        } else if bag_id == SECRET_BAG {
            secret_bag_key(value)
        } else {
            None
        };
        let Some(key) = encrypted_key else { continue };
        let mut info = Reader::new(Reader::new(key).expect(tag::SEQUENCE).ok_or_else(corrupt)?);
        let mut algorithm = Reader::new(info.expect(tag::SEQUENCE).ok_or_else(corrupt)?);
        let oid = algorithm.expect(tag::OID).ok_or_else(corrupt)?;
        charge_algorithm(oid, algorithm.next(), budget)?;
    }
    if list.is_empty() {
        Ok(())
    } else {
        Err(corrupt())
    }
}

/// The `EncryptedPrivateKeyInfo` that p12-keystore tries to decrypt in a secret bag.
fn secret_bag_key(value: &[u8]) -> Option<&[u8]> {
    let mut bag = Reader::new(Reader::new(value).expect(tag::SEQUENCE)?);
    bag.expect(tag::OID)?;
    Reader::new(bag.expect(EXPLICIT_0)?).expect(tag::OCTET_STRING)
}

/// Charges the derivations one encryption algorithm runs (nothing for one p12-keystore
/// refuses before deriving, or parameters it cannot read).
fn charge_algorithm(
    oid: &[u8],
    parameters: Option<(u8, &[u8])>,
    budget: &mut Budget<'_>,
) -> Result<(), Error> {
    if oid == PBES2 {
        if let Some(derivation) = pbes2(parameters).as_ref().and_then(pbes2_derivation) {
            budget.charge(derivation, Some(&READER_CEILING))?;
        }
    } else if (oid == PBE_SHA_3DES || oid == PBE_SHA_RC2_40)
        && let Some((_, iterations)) = pbes1(parameters)
    {
        // The key and the IV are derived separately.
        budget.charge(pkcs12_kdf(iterations), Some(&READER_CEILING))?;
        budget.charge(pkcs12_kdf(iterations), Some(&READER_CEILING))?;
    }
    Ok(())
}

fn pkcs12_kdf(iterations: u64) -> Derivation {
    Derivation::Iterated {
        scheme: "the PKCS#12 KDF",
        iterations,
    }
}

fn pbes2(parameters: Option<(u8, &[u8])>) -> Option<pkcs8::pkcs5::pbes2::Parameters> {
    use pkcs8::der::Decode;
    let (tag, contents) = parameters?;
    pkcs8::pkcs5::pbes2::Parameters::from_der(&asn1::encode(tag, contents)).ok()
}

/// Salt and iteration count of PKCS#12 PBES1 parameters.
fn pbes1(parameters: Option<(u8, &[u8])>) -> Option<(&[u8], u64)> {
    let (tag::SEQUENCE, contents) = parameters? else {
        return None;
    };
    let mut reader = Reader::new(contents);
    let salt = reader.expect(tag::OCTET_STRING)?;
    Some((salt, reader.small_uint()?))
}

/// Decrypts an encrypted bag list as p12-keystore will; `None` when it does not decrypt.
fn decrypt(
    oid: &[u8],
    parameters: Option<(u8, &[u8])>,
    data: &[u8],
    password: &str,
) -> Option<Zeroizing<Vec<u8>>> {
    if oid == PBES2 {
        return pbes2(parameters)?
            .decrypt(password.as_bytes(), data)
            .ok()
            .map(Zeroizing::new);
    }
    let (salt, iterations) = pbes1(parameters)?;
    if oid == PBE_SHA_3DES {
        pbes1_decrypt::<TdesEde3>(data, password, salt, iterations, 24)
    } else if oid == PBE_SHA_RC2_40 {
        pbes1_decrypt::<Rc2>(data, password, salt, iterations, 5)
    } else {
        None
    }
}

fn pbes1_decrypt<C>(
    data: &[u8],
    password: &str,
    salt: &[u8],
    iterations: u64,
    key_len: usize,
) -> Option<Zeroizing<Vec<u8>>>
where
    C: BlockCipherDecrypt + KeyInit,
    cbc::Decryptor<C>: cbc::cipher::KeyIvInit + cbc::cipher::BlockModeDecrypt,
{
    // As `BmpString::from_utf8` with the terminating NUL: UTF-16BE of each character.
    if password.chars().any(|c| u32::from(c) > 0xffff) {
        return None;
    }
    let mut bmp = Zeroizing::new(
        password
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect::<Vec<u8>>(),
    );
    bmp.extend([0, 0]);
    let key = pkcs12_derive(&bmp, salt, 1, iterations, key_len);
    let iv = pkcs12_derive(&bmp, salt, 2, iterations, 8);
    let mut buffer = Zeroizing::new(data.to_vec());
    let len = cbc_decrypt::<C>(&key, &iv, &mut buffer)?;
    buffer.truncate(len);
    Some(buffer)
}

/// The PKCS#12 key derivation (RFC 7292 appendix B.2) with SHA-1, as p12-keystore's PBES1.
fn pkcs12_derive(
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u64,
    key_len: usize,
) -> Zeroizing<Vec<u8>> {
    const BLOCK: usize = 64;
    const OUT: usize = 20;
    let fill = |source: &[u8]| -> Vec<u8> {
        if source.is_empty() {
            return Vec::new();
        }
        let len = BLOCK * source.len().div_ceil(BLOCK);
        source.iter().copied().cycle().take(len).collect()
    };
    let mut input = Zeroizing::new(fill(salt));
    input.extend_from_slice(&fill(password));
    let mut out = Zeroizing::new(Vec::with_capacity(key_len));
    loop {
        let mut sha = Sha1::new();
        sha.update([id; BLOCK]);
        sha.update(input.as_slice());
        let mut result = sha.finalize();
        for _ in 1..iterations {
            result = Sha1::digest(result);
        }
        let take = (key_len - out.len()).min(OUT);
        out.extend_from_slice(&result[..take]);
        if out.len() >= key_len {
            return out;
        }
        for chunk in input.chunks_mut(BLOCK) {
            let mut carry = 1u16;
            for k in (0..BLOCK).rev() {
                carry += u16::from(chunk[k]) + u16::from(result[k % OUT]);
                chunk[k] = carry as u8;
                carry >>= 8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
        std::fs::read(format!("{root}{path}")).expect("fixture")
    }

    /// The walk decrypts what p12-keystore will (PBES2/AES, 3DES, RC2-40, the empty
    /// password): else bags inside encrypted lists would go uncounted.
    #[test]
    fn every_encrypted_list_of_the_fixtures_is_decrypted_and_charged() {
        // MAC, the encrypted list twice (decrypted here and by p12-keystore), the key; legacy
        // PKCS#12 encryption derives key and IV separately.
        for (path, password, derivations) in [
            ("client/p256/openssl.p12", "Fx-store-7431", 4),
            ("client/p256/des3.p12", "Fx-store-7431", 7),
            ("client/rsa2048/legacy.p12", "Fx-store-7431", 7),
            ("client/p256/keytool.p12", "Fx-store-7431", 4),
            ("client/p256/empty-password.p12", "", 4),
        ] {
            let walked = check(&fixture(path), password, &Limits::default()).expect(path);
            assert!(walked.encrypted_lists > 0, "{path}: {walked:?}");
            assert_eq!(walked.decrypted_lists, walked.encrypted_lists, "{path}");
            assert_eq!(walked.derivations, derivations, "{path}: {walked:?}");
        }
        let walked = check(
            &fixture("client/p256/openssl.p12"),
            "wrong",
            &Limits::default(),
        )
        .expect("counted");
        assert_eq!(walked.decrypted_lists, 0);
    }
}
