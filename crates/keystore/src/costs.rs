//! Caps on the key-derivation work an input may ask for, checked before any derivation runs.
//!
//! A keystore names its own KDF parameters: a 4 KB PEM key can ask for scrypt with N=2^40
//! (a 1 PiB allocation, which aborts the process) or PBKDF2 with 4e9 iterations (minutes of
//! CPU). Every derivation is added to a [`Budget`] before it runs, and the open fails with
//! [`Error::TooCostly`] as soon as the total passes a [`Limits`] cap.

use crate::Error;

/// The most key-derivation work one open of a keystore (or one key of it) may ask for.
///
/// Both caps count every derivation that opening needs: a PEM key is one derivation; a
/// PKCS#12 store is its MAC, each encrypted bag list twice (it is decrypted once to find the
/// keys inside, then again to read it) and each encrypted key (legacy PKCS#12 encryption
/// derives key and IV separately: two derivations). A store over a cap is refused with
/// `keystore.too_costly` before anything is derived or allocated.
///
/// The defaults open every store real tools make and refuse what only an attacker makes:
///
/// - **Iterations: 4,000,000 in all.** Real stores use 2,048 (OpenSSL's PKCS#12 default),
///   10,000 (keytool's PKCS#12), 200,000 (keytool's JCEKS) and up to 600,000 (OWASP's PBKDF2
///   recommendation). A PKCS#12 made with OpenSSL's defaults asks for 8,192 (MAC, certificate
///   list twice, key bag); one made with `-iter 600000` asks for 2,400,000, and one with three
///   keys at 600,000 for 3,600,000. 4,000,000 is two to four seconds of one core; stores beyond
///   it need the cap raised on purpose.
/// - **scrypt memory: 256 MiB in all** (`128 * N * r * p` bytes, which also measures its work).
///   OpenSSL's default (N=2^14, r=8, p=1) takes 16 MiB; 256 MiB allows up to N=2^18 with r=8.
///   Keys made with the scrypt paper's file-encryption setting (N=2^20, 1 GiB) need the cap
///   raised on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The most iterations (PBKDF2, the PKCS#12 KDF, JCEKS's MD5 rounds), summed over the
    /// derivations one open needs.
    pub max_iterations: u64,
    /// The most scrypt memory in bytes (`128 * N * r * p`), summed over the derivations one
    /// open needs.
    pub max_memory: u64,
}

impl Limits {
    /// The default iteration cap: 4,000,000.
    pub const DEFAULT_MAX_ITERATIONS: u64 = 4_000_000;
    /// The default scrypt memory cap: 256 MiB.
    pub const DEFAULT_MAX_MEMORY: u64 = 256 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
            max_memory: Self::DEFAULT_MAX_MEMORY,
        }
    }
}

/// One key derivation, as its parameters ask for it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Derivation {
    /// An iterated derivation: PBKDF2, the PKCS#12 KDF (`scheme` names it), JCEKS.
    Iterated {
        /// The scheme, for the message (`"PBKDF2"`, `"the PKCS#12 KDF"`, ...).
        scheme: &'static str,
        /// The iteration count.
        iterations: u64,
    },
    /// scrypt with its cost (N), block size (r) and parallelization (p).
    Scrypt {
        /// N.
        n: u64,
        /// r.
        r: u64,
        /// p.
        p: u64,
    },
}

/// The work one open has asked for so far, checked against the limits at every step.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    limits: &'a Limits,
    /// What asks, for the message: `"the key"`, `"the PKCS#12 store"`, `"entry 'a'"`.
    what: String,
    derivations: u64,
    iterations: u64,
    scrypts: u64,
    memory: u128,
}

impl<'a> Budget<'a> {
    pub(crate) fn new(limits: &'a Limits, what: impl Into<String>) -> Self {
        Self {
            limits,
            what: what.into(),
            derivations: 0,
            iterations: 0,
            scrypts: 0,
            memory: 0,
        }
    }

    /// Adds one derivation; fails when it, or the total so far, is over a cap (or over
    /// `ceiling`, a cap the library that will run it keeps for itself).
    pub(crate) fn charge(
        &mut self,
        derivation: Derivation,
        ceiling: Option<&Limits>,
    ) -> Result<(), Error> {
        self.derivations += 1;
        match derivation {
            Derivation::Iterated { scheme, iterations } => {
                self.iterations = self.iterations.saturating_add(iterations);
                if let Some(ceiling) = ceiling.filter(|c| iterations > c.max_iterations) {
                    return Err(self.too_costly(
                        format!("{scheme} with {} iterations", grouped(iterations)),
                        format!(
                            "{} iterations per derivation (the most the PKCS#12 reader takes)",
                            grouped(ceiling.max_iterations)
                        ),
                    ));
                }
                if self.iterations > self.limits.max_iterations {
                    let asks = if self.derivations == 1 {
                        format!("{scheme} with {} iterations", grouped(iterations))
                    } else {
                        format!(
                            "{} key derivations of {} iterations in all",
                            self.derivations,
                            grouped(self.iterations)
                        )
                    };
                    let limit = format!("{} iterations", grouped(self.limits.max_iterations));
                    return Err(self.too_costly(asks, limit));
                }
            }
            Derivation::Scrypt { n, r, p } => {
                self.scrypts += 1;
                let parameters = format!("scrypt N={}, r={r}, p={p}", power_of_two(n));
                // 128 * N * r * p can pass u128 with u64 parameters: that is too costly.
                let lane = 128u128
                    .checked_mul(u128::from(n))
                    .and_then(|product| product.checked_mul(u128::from(r)));
                let Some((lane, memory)) =
                    lane.and_then(|lane| Some((lane, lane.checked_mul(u128::from(p))?)))
                else {
                    return Err(self.too_costly(
                        format!("{parameters} (more memory than can be counted)"),
                        bytes(u128::from(self.limits.max_memory)),
                    ));
                };
                self.memory = self.memory.saturating_add(memory);
                if let Some(ceiling) = ceiling
                    && (lane > u128::from(ceiling.max_memory) || p > P12_MAX_SCRYPT_P)
                {
                    return Err(self.too_costly(
                        format!("{parameters} ({} of memory)", bytes(memory)),
                        format!(
                            "{} per lane and p={P12_MAX_SCRYPT_P} (the most the PKCS#12 \
                             reader takes)",
                            bytes(u128::from(ceiling.max_memory))
                        ),
                    ));
                }
                if self.memory > u128::from(self.limits.max_memory) {
                    let asks = if self.scrypts == 1 {
                        format!("{parameters} ({} of memory)", bytes(memory))
                    } else {
                        format!(
                            "{} scrypt derivations of {} of memory in all",
                            self.scrypts,
                            bytes(self.memory)
                        )
                    };
                    return Err(self.too_costly(asks, bytes(u128::from(self.limits.max_memory))));
                }
            }
        }
        Ok(())
    }

    /// How many derivations were charged.
    pub(crate) fn derivations(&self) -> u64 {
        self.derivations
    }

    fn too_costly(&self, asks: String, limit: String) -> Error {
        Error::TooCostly {
            what: self.what.clone(),
            asks,
            limit,
        }
    }
}

/// scrypt parallelization that p12-keystore refuses above.
const P12_MAX_SCRYPT_P: u64 = 16;

/// `2^k` for powers of two, else the number.
fn power_of_two(n: u64) -> String {
    if n.is_power_of_two() && n >= 1024 {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

/// `1234567` as `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A byte count in binary units: `256 MiB`, `1 PiB`, `1.5 GiB`.
pub(crate) fn bytes(count: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && count >= 1u128 << (10 * (unit + 1)) {
        unit += 1;
    }
    let scale = 1u128 << (10 * unit);
    if count.is_multiple_of(scale) {
        format!("{} {}", count / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", count as f64 / scale as f64, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_numbers_for_people() {
        assert_eq!(grouped(4_000_000_000), "4,000,000,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(bytes(1 << 50), "1 PiB");
        assert_eq!(bytes(256 << 20), "256 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(power_of_two(1 << 40), "2^40");
        assert_eq!(power_of_two(1000), "1000");
    }

    #[test]
    fn the_total_counts_and_names_the_derivations() {
        let limits = Limits {
            max_iterations: 10,
            max_memory: 1 << 20,
        };
        let mut budget = Budget::new(&limits, "the PKCS#12 store");
        let step = Derivation::Iterated {
            scheme: "PBKDF2",
            iterations: 6,
        };
        assert!(budget.charge(step, None).is_ok());
        let error = budget.charge(step, None).expect_err("over");
        assert_eq!(error.kind(), "keystore.too_costly");
        assert_eq!(
            error.to_string(),
            "the PKCS#12 store is encrypted with 2 key derivations of 12 iterations in all; \
             the limit is 10 iterations"
        );
    }

    #[test]
    fn scrypt_memory_is_computed_without_overflow() {
        let limits = Limits::default();
        let mut budget = Budget::new(&limits, "the key");
        let error = budget
            .charge(
                Derivation::Scrypt {
                    n: u64::MAX,
                    r: u64::from(u16::MAX),
                    p: u64::from(u16::MAX),
                },
                None,
            )
            .expect_err("over");
        assert_eq!(error.kind(), "keystore.too_costly");
    }

    #[test]
    fn scrypt_parameters_past_u128_are_too_costly() {
        let limits = Limits {
            max_iterations: u64::MAX,
            max_memory: u64::MAX,
        };
        let ceiling = limits;
        for ceiling in [None, Some(&ceiling)] {
            let mut budget = Budget::new(&limits, "the key");
            let error = budget
                .charge(
                    Derivation::Scrypt {
                        n: u64::MAX,
                        r: u64::MAX,
                        p: u64::MAX,
                    },
                    ceiling,
                )
                .expect_err("over");
            assert_eq!(error.kind(), "keystore.too_costly");
            assert!(
                error
                    .to_string()
                    .contains("more memory than can be counted"),
                "{error}"
            );
        }
    }
}
