//! A minimal DER reader: just enough to sniff formats and unwrap the Java key envelopes.
//!
//! Every read is bounds-checked and returns `None` on malformed input; nothing here panics.

/// DER tags used by this crate.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const SEQUENCE: u8 = 0x30;
}

/// A cursor over DER bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// How many bytes are left unread.
    pub(crate) fn rest_len(&self) -> usize {
        self.rest.len()
    }

    /// The tag of the next element, without consuming it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads one element: its tag and contents.
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Some((tag, contents))
    }

    /// Reads one element that must carry `expected` as its tag.
    pub(crate) fn expect(&mut self, expected: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (tag, contents) if tag == expected => Some(contents),
            _ => None,
        }
    }

    /// Reads a small non-negative INTEGER.
    pub(crate) fn small_uint(&mut self) -> Option<u64> {
        let bytes = self.expect(tag::INTEGER)?;
        if bytes.is_empty() || bytes.len() > 8 || bytes[0] & 0x80 != 0 {
            return None;
        }
        Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

/// Encodes `contents` under `tag` (definite length).
pub(crate) fn encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// Formats an OID's contents in dotted form, for error messages.
pub(crate) fn oid_to_string(contents: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut value: u64 = 0;
    for (index, byte) in contents.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        } else if index == contents.len() - 1 {
            parts.push("?".into());
        }
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_long_lengths() {
        let contents = vec![7u8; 300];
        let encoded = encode(tag::OCTET_STRING, &contents);
        let mut reader = Reader::new(&encoded);
        assert_eq!(reader.expect(tag::OCTET_STRING), Some(&contents[..]));
        assert!(reader.is_empty());
    }

    #[test]
    fn rejects_lengths_past_the_end() {
        assert_eq!(Reader::new(&[0x30, 0x05, 0x01]).next(), None);
        assert_eq!(
            Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).next(),
            None
        );
        assert_eq!(Reader::new(&[0x30]).next(), None);
    }

    #[test]
    fn prints_oids() {
        // 1.2.840.113549.1.12.1.3
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
        assert_eq!(oid_to_string(&oid), "1.2.840.113549.1.12.1.3");
    }
}
