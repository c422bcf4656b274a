//! Private keys: the sealed forms they arrive in, and unsealing them into plain DER.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aes::{Aes128, Aes192, Aes256};
use cbc::Decryptor;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyIvInit};
use des::{Des, TdesEde3};
use md5::{Digest, Md5};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::SigningKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

use crate::asn1::{self, Reader, tag};
use crate::costs::{Budget, Derivation};
use crate::{Error, Format, Limits, Password, jceks, jks};

/// A private key as found in a store, possibly still encrypted.
///
/// Key bytes are zeroized on drop; `Debug` shows only the form.
#[derive(Clone)]
pub(crate) enum SealedKey {
    /// An unencrypted key.
    Plain(PlainKey),
    /// PKCS#8 `EncryptedPrivateKeyInfo` (PBES2 or PBES1), DER.
    EncryptedPkcs8(Vec<u8>),
    /// OpenSSL's traditional `Proc-Type: 4,ENCRYPTED` PEM.
    LegacyPem {
        /// `RSA` or `EC`: the syntax of the decrypted key.
        syntax: Syntax,
        /// The `DEK-Info` cipher name, e.g. `AES-256-CBC`.
        cipher: String,
        /// The IV (its first 8 bytes are also the key-derivation salt).
        iv: Vec<u8>,
        /// The ciphertext.
        data: Vec<u8>,
    },
    /// A JKS entry protected by Sun's proprietary key protector.
    Jks(Vec<u8>),
    /// A JCEKS entry protected by PBEWithMD5AndTripleDES.
    Jceks(Vec<u8>),
    /// A key that a PKCS#12 reader already decrypted with the store password.
    Decrypted(PlainKey),
}

/// The syntax of a plain private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Pkcs8,
    Pkcs1,
    Sec1,
}

/// Plain private-key DER, wiped on drop, and the signing key loaded from it once.
#[derive(Clone)]
pub(crate) struct PlainKey {
    syntax: Syntax,
    der: Zeroizing<Vec<u8>>,
    signing: OnceLock<Result<Arc<dyn SigningKey>, rustls::Error>>,
}

impl SealedKey {
    /// Whether opening this key needs a password.
    pub(crate) fn is_encrypted(&self) -> bool {
        !matches!(self, Self::Plain(_) | Self::Decrypted(_))
    }

    /// Decrypts the key. `alias` only names the entry in errors.
    pub(crate) fn unseal(
        &self,
        password: Option<&Password>,
        alias: &str,
        limits: &Limits,
    ) -> Result<PlainKey, Error> {
        let need = || {
            password.ok_or(Error::PasswordRequired {
                what: "private key",
            })
        };
        let wrong = || Error::WrongKeyPassword {
            alias: alias.to_owned(),
        };
        match self {
            Self::Plain(key) | Self::Decrypted(key) => Ok(key.clone()),
            Self::EncryptedPkcs8(der) => decrypt_pkcs8(der, need()?, alias, limits),
            Self::LegacyPem {
                syntax,
                cipher,
                iv,
                data,
            } => {
                let der = decrypt_legacy_pem(cipher, iv, data, need()?).ok_or_else(wrong)?;
                PlainKey::checked(*syntax, der).ok_or_else(wrong)
            }
            Self::Jks(der) => jks::unprotect_key(der, need()?, alias),
            Self::Jceks(der) => jceks::unprotect_key(der, need()?, alias, limits),
        }
    }
}

impl PlainKey {
    /// Wraps DER whose outer shape has been checked to match `syntax`.
    pub(crate) fn checked(syntax: Syntax, der: Zeroizing<Vec<u8>>) -> Option<Self> {
        let mut reader = Reader::new(&der);
        let body = reader.expect(tag::SEQUENCE)?;
        if !reader.is_empty() {
            return None;
        }
        let mut inner = Reader::new(body);
        let version = inner.small_uint()?;
        let ok = match syntax {
            Syntax::Pkcs8 => version <= 1 && inner.peek_tag() == Some(tag::SEQUENCE),
            Syntax::Pkcs1 => version <= 1 && inner.peek_tag() == Some(tag::INTEGER),
            Syntax::Sec1 => version == 1 && inner.peek_tag() == Some(tag::OCTET_STRING),
        };
        ok.then_some(Self {
            syntax,
            der,
            signing: OnceLock::new(),
        })
    }

    /// Tells PKCS#8, PKCS#1 and SEC1 DER apart.
    pub(crate) fn sniff(der: Zeroizing<Vec<u8>>) -> Option<Self> {
        [Syntax::Pkcs8, Syntax::Pkcs1, Syntax::Sec1]
            .into_iter()
            .find_map(|syntax| Self::checked(syntax, der.clone()))
    }

    /// The key loaded into aws-lc-rs (RSA parsing costs hundreds of microseconds: done once).
    pub(crate) fn signing_key(&self) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        self.signing
            .get_or_init(|| any_supported_type(&self.to_der()))
            .clone()
    }

    /// The key as rustls takes it.
    pub(crate) fn to_der(&self) -> PrivateKeyDer<'static> {
        let bytes = self.der.to_vec();
        match self.syntax {
            Syntax::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)),
            Syntax::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(bytes)),
            Syntax::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(bytes)),
        }
    }

    /// The key as PKCS#8 DER, wrapping PKCS#1 and SEC1 keys as needed.
    pub(crate) fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.syntax {
            Syntax::Pkcs8 => Ok(self.der.clone()),
            Syntax::Pkcs1 => Ok(wrap_pkcs8(RSA_ALGORITHM, &self.der)),
            Syntax::Sec1 => {
                let curve = sec1_curve(&self.der).ok_or_else(|| Error::UnsupportedAlgorithm {
                    algorithm: "SEC1 EC key without named-curve parameters".into(),
                })?;
                let mut algorithm = asn1::encode(tag::OID, EC_PUBLIC_KEY_OID);
                algorithm.extend_from_slice(&asn1::encode(tag::OID, curve));
                Ok(wrap_pkcs8(
                    &asn1::encode(tag::SEQUENCE, &algorithm),
                    &self.der,
                ))
            }
        }
    }
}

/// AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// 1.2.840.10045.2.1 (id-ecPublicKey).
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

fn wrap_pkcs8(algorithm: &[u8], key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(asn1::encode(tag::INTEGER, &[0]));
    body.extend_from_slice(algorithm);
    body.extend_from_slice(&asn1::encode(tag::OCTET_STRING, key));
    Zeroizing::new(asn1::encode(tag::SEQUENCE, &body))
}

/// The named-curve OID in a SEC1 key's `[0]` parameters.
fn sec1_curve(der: &[u8]) -> Option<&[u8]> {
    let mut inner = Reader::new(Reader::new(der).expect(tag::SEQUENCE)?);
    inner.small_uint()?;
    inner.expect(tag::OCTET_STRING)?;
    while let Some((element_tag, contents)) = inner.next() {
        if element_tag == 0xa0 {
            return Reader::new(contents).expect(tag::OID);
        }
    }
    None
}

fn decrypt_pkcs8(
    der: &[u8],
    password: &Password,
    alias: &str,
    limits: &Limits,
) -> Result<PlainKey, Error> {
    let info =
        pkcs8::EncryptedPrivateKeyInfoRef::try_from(der).map_err(|_| {
            match Reader::new(der)
                .expect(tag::SEQUENCE)
                .and_then(|body| Reader::new(body).expect(tag::SEQUENCE))
                .and_then(|alg| Reader::new(alg).expect(tag::OID))
            {
                Some(oid) => Error::UnsupportedAlgorithm {
                    algorithm: format!("key encryption {}", asn1::oid_to_string(oid)),
                },
                None => Error::Corrupt {
                    format: Format::Pem,
                    detail: "malformed encrypted private key".into(),
                },
            }
        })?;
    if let pkcs8::pkcs5::EncryptionScheme::Pbes2(parameters) = &info.encryption_algorithm {
        let mut budget = Budget::new(limits, "the key");
        if let Some(derivation) = pbes2_derivation(parameters) {
            budget.charge(derivation, None)?;
        }
    }
    let wrong = || Error::WrongKeyPassword {
        alias: alias.to_owned(),
    };
    let document = info
        .decrypt(password.expose())
        .map_err(|error| match error {
            pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::UnsupportedAlgorithm {
                oid,
            }) => Error::UnsupportedAlgorithm {
                algorithm: format!("key encryption {oid}"),
            },
            _ => wrong(),
        })?;
    PlainKey::checked(Syntax::Pkcs8, Zeroizing::new(document.as_bytes().to_vec())).ok_or_else(wrong)
}

/// What a PBES2 key derivation asks for (`None` for a KDF that pkcs5 does not run).
pub(crate) fn pbes2_derivation(parameters: &pkcs8::pkcs5::pbes2::Parameters) -> Option<Derivation> {
    use pkcs8::pkcs5::pbes2::Kdf;
    match &parameters.kdf {
        Kdf::Pbkdf2(pbkdf2) => Some(Derivation::Iterated {
            scheme: "PBKDF2",
            iterations: u64::from(pbkdf2.iteration_count),
        }),
        Kdf::Scrypt(scrypt) => Some(Derivation::Scrypt {
            n: scrypt.cost_parameter,
            r: u64::from(scrypt.block_size),
            p: u64::from(scrypt.parallelization),
        }),
        _ => None,
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and one iteration, then CBC decryption.
fn decrypt_legacy_pem(
    cipher: &str,
    iv: &[u8],
    data: &[u8],
    password: &Password,
) -> Option<Zeroizing<Vec<u8>>> {
    let key_len = match cipher {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        "DES-EDE3-CBC" => 24,
        "DES-CBC" => 8,
        _ => return None,
    };
    let salt = iv.get(..8)?;
    let mut key = Zeroizing::new(Vec::with_capacity(key_len + 16));
    let mut previous: Vec<u8> = Vec::new();
    while key.len() < key_len {
        let mut md5 = Md5::new();
        md5.update(&previous);
        md5.update(password.expose().as_bytes());
        md5.update(salt);
        previous = md5.finalize().to_vec();
        key.extend_from_slice(&previous);
    }
    key.truncate(key_len);
    let mut buffer = Zeroizing::new(data.to_vec());
    let plain_len = match cipher {
        "AES-128-CBC" => cbc_decrypt::<Aes128>(&key, iv, &mut buffer),
        "AES-192-CBC" => cbc_decrypt::<Aes192>(&key, iv, &mut buffer),
        "AES-256-CBC" => cbc_decrypt::<Aes256>(&key, iv, &mut buffer),
        "DES-EDE3-CBC" => cbc_decrypt::<TdesEde3>(&key, iv, &mut buffer),
        _ => cbc_decrypt::<Des>(&key, iv, &mut buffer),
    }?;
    buffer.truncate(plain_len);
    Some(buffer)
}

/// Decrypts `buffer` in place with PKCS#7 padding; returns the plaintext length.
pub(crate) fn cbc_decrypt<C>(key: &[u8], iv: &[u8], buffer: &mut [u8]) -> Option<usize>
where
    C: BlockCipherDecrypt + cbc::cipher::KeyInit,
    Decryptor<C>: KeyIvInit + BlockModeDecrypt,
{
    let decryptor = Decryptor::<C>::new_from_slices(key, iv).ok()?;
    decryptor
        .decrypt_padded::<Pkcs7>(buffer)
        .ok()
        .map(<[u8]>::len)
}

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "SealedKey::Plain(***)",
            Self::EncryptedPkcs8(_) => "SealedKey::EncryptedPkcs8(***)",
            Self::LegacyPem { .. } => "SealedKey::LegacyPem(***)",
            Self::Jks(_) => "SealedKey::Jks(***)",
            Self::Jceks(_) => "SealedKey::Jceks(***)",
            Self::Decrypted(_) => "SealedKey::Decrypted(***)",
        })
    }
}

impl fmt::Debug for PlainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlainKey({:?}, ***)", self.syntax)
    }
}
