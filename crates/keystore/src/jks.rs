//! JKS and JCEKS containers (they share one layout), and Sun's JKS key protector.
//!
//! Layout: magic, version (1 or 2), entry count, entries, then
//! `SHA1(UTF16BE(password) || "Mighty Aphrodite" || everything before)`.
//! Entry tags: 1 private key, 2 trusted certificate, 3 secret key (JCEKS only).

use rustls_pki_types::CertificateDer;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use crate::asn1::{Reader, tag};
use crate::format::{JCEKS_MAGIC, JKS_MAGIC};
use crate::key::{PlainKey, SealedKey, Syntax};
use crate::store::{Entry, EntryKind, Keystore};
use crate::{Error, Format, Password, java_serial};

/// 1.3.6.1.4.1.42.2.17.1.1, Sun's JKS key protector.
const JKS_KEY_PROTECTOR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01];
const DIGEST_LEN: usize = 20;

/// Parses a JKS or JCEKS store; checks its integrity when a password is given.
pub(crate) fn parse(bytes: &[u8], password: Option<&Password>) -> Result<Keystore, Error> {
    let format = if bytes.starts_with(&JKS_MAGIC) {
        Format::Jks
    } else if bytes.starts_with(&JCEKS_MAGIC) {
        Format::Jceks
    } else {
        return Err(Error::UnrecognizedFormat {
            detected: "no JKS or JCEKS magic",
        });
    };
    let corrupt = |detail: &str| Error::Corrupt {
        format,
        detail: detail.to_owned(),
    };
    if bytes.len() < 12 + DIGEST_LEN {
        return Err(corrupt("shorter than the header and digest"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    let mut input = Input {
        bytes: body,
        at: 4,
        format,
    };
    let version = input.u32()?;
    if version != 1 && version != 2 {
        return Err(corrupt("unknown version"));
    }
    let count = input.u32()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(input.entry(version)?);
    }
    if input.at != body.len() {
        return Err(corrupt("trailing bytes after the last entry"));
    }
    if let Some(password) = password {
        let mut sha = Sha1::new();
        sha.update(password.utf16be().as_slice());
        sha.update(b"Mighty Aphrodite");
        sha.update(body);
        if sha.finalize().as_slice() != digest {
            return Err(Error::WrongStorePassword { format });
        }
    }
    Ok(Keystore::new(format, entries))
}

/// Recovers the PKCS#8 key from a JKS `EncryptedPrivateKeyInfo`.
pub(crate) fn unprotect_key(
    encrypted: &[u8],
    password: &Password,
    alias: &str,
) -> Result<PlainKey, Error> {
    let corrupt = || Error::Corrupt {
        format: Format::Jks,
        detail: format!("malformed protected key in entry '{alias}'"),
    };
    let EncryptedKeyInfo {
        algorithm: oid,
        data,
        ..
    } = split_encrypted_key_info(encrypted).ok_or_else(corrupt)?;
    if oid != JKS_KEY_PROTECTOR_OID {
        return Err(Error::UnsupportedAlgorithm {
            algorithm: format!("JKS key protection {}", crate::asn1::oid_to_string(oid)),
        });
    }
    if data.len() < 2 * DIGEST_LEN {
        return Err(corrupt());
    }
    let (salt, rest) = data.split_at(DIGEST_LEN);
    let (ciphertext, check) = rest.split_at(rest.len() - DIGEST_LEN);
    let password16 = password.utf16be();
    let mut plain = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    let mut block = salt.to_vec();
    for chunk in ciphertext.chunks(DIGEST_LEN) {
        let mut sha = Sha1::new();
        sha.update(password16.as_slice());
        sha.update(&block);
        block = sha.finalize().to_vec();
        plain.extend(chunk.iter().zip(&block).map(|(c, k)| c ^ k));
    }
    let mut sha = Sha1::new();
    sha.update(password16.as_slice());
    sha.update(plain.as_slice());
    if sha.finalize().as_slice() != check {
        return Err(Error::WrongKeyPassword {
            alias: alias.to_owned(),
        });
    }
    PlainKey::checked(Syntax::Pkcs8, plain).ok_or_else(corrupt)
}

/// The parts of an `EncryptedPrivateKeyInfo`.
pub(crate) struct EncryptedKeyInfo<'a> {
    /// The algorithm OID (contents only).
    pub(crate) algorithm: &'a [u8],
    /// The algorithm parameters: tag and contents.
    pub(crate) parameters: Option<(u8, &'a [u8])>,
    /// The encrypted key.
    pub(crate) data: &'a [u8],
}

/// Splits `EncryptedPrivateKeyInfo` into algorithm, parameters and data.
pub(crate) fn split_encrypted_key_info(der: &[u8]) -> Option<EncryptedKeyInfo<'_>> {
    let mut outer = Reader::new(der);
    let mut info = Reader::new(outer.expect(tag::SEQUENCE)?);
    let mut algorithm = Reader::new(info.expect(tag::SEQUENCE)?);
    let oid = algorithm.expect(tag::OID)?;
    let parameters = algorithm.next();
    let data = info.expect(tag::OCTET_STRING)?;
    Some(EncryptedKeyInfo {
        algorithm: oid,
        parameters,
        data,
    })
}

/// A bounds-checked big-endian reader over the store body.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
    format: Format,
}

impl<'a> Input<'a> {
    fn corrupt(&self, detail: &str) -> Error {
        Error::Corrupt {
            format: self.format,
            detail: format!("{detail} at byte {}", self.at),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.corrupt("data cut short"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Java's `writeUTF`: a u16 length, then modified UTF-8.
    fn utf(&mut self) -> Result<String, Error> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        Ok(java_serial::decode_modified_utf8(bytes))
    }

    fn sized(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn certificate(&mut self, version: u32) -> Result<CertificateDer<'static>, Error> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != "X.509" {
                return Err(Error::UnsupportedAlgorithm {
                    algorithm: format!("certificate type {kind}"),
                });
            }
        }
        Ok(CertificateDer::from(self.sized()?.to_vec()))
    }

    fn entry(&mut self, version: u32) -> Result<Entry, Error> {
        let entry_tag = self.u32()?;
        let alias = self.utf()?;
        let _created_ms = self.take(8)?;
        match entry_tag {
            1 => {
                let encrypted = self.sized()?.to_vec();
                let count = self.u32()?;
                if count > 64 {
                    return Err(self.corrupt("implausible chain length"));
                }
                let chain = (0..count)
                    .map(|_| self.certificate(version))
                    .collect::<Result<Vec<_>, _>>()?;
                let key = match self.format {
                    Format::Jceks => SealedKey::Jceks(encrypted),
                    _ => SealedKey::Jks(encrypted),
                };
                Ok(Entry::new(alias, EntryKind::PrivateKey, chain, Some(key)))
            }
            2 => {
                let cert = self.certificate(version)?;
                Ok(Entry::new(
                    alias,
                    EntryKind::TrustedCertificate,
                    vec![cert],
                    None,
                ))
            }
            3 if self.format == Format::Jceks => {
                let rest = &self.bytes[self.at..];
                let used = java_serial::skip_object(rest)
                    .ok_or_else(|| self.corrupt("malformed secret key entry"))?;
                self.at += used;
                Ok(Entry::new(alias, EntryKind::SecretKey, Vec::new(), None))
            }
            _ => Err(self.corrupt("unknown entry type")),
        }
    }
}
