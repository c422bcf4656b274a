//! Just enough of Java object serialization to step over a JCEKS secret-key entry.
//!
//! JCEKS stores secret keys as a serialized `SealedObjectForKeyProtector` with no length prefix,
//! so reading past one means walking the stream grammar (Java Object Serialization
//! Specification, section 6.4). We only measure; nothing is built. Depth and sizes are bounded,
//! and malformed input yields `None`.

const STREAM_MAGIC: [u8; 4] = [0xac, 0xed, 0x00, 0x05];
const TC_NULL: u8 = 0x70;
const TC_REFERENCE: u8 = 0x71;
const TC_CLASSDESC: u8 = 0x72;
const TC_OBJECT: u8 = 0x73;
const TC_STRING: u8 = 0x74;
const TC_ARRAY: u8 = 0x75;
const TC_BLOCKDATA: u8 = 0x77;
const TC_ENDBLOCKDATA: u8 = 0x78;
const TC_BLOCKDATALONG: u8 = 0x7a;
const TC_LONGSTRING: u8 = 0x7c;
const SC_WRITE_METHOD: u8 = 0x01;
const SC_SERIALIZABLE: u8 = 0x02;
const SC_EXTERNALIZABLE: u8 = 0x04;
const MAX_DEPTH: usize = 32;

/// Returns how many bytes one serialized object (with its stream header) occupies.
pub(crate) fn skip_object(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(&STREAM_MAGIC) {
        return None;
    }
    let mut walker = Walker {
        bytes,
        at: STREAM_MAGIC.len(),
        handles: Vec::new(),
    };
    walker.content(0)?;
    Some(walker.at)
}

/// Decodes Java's modified UTF-8 (as written by `DataOutput.writeUTF`), lossily.
pub(crate) fn decode_modified_utf8(bytes: &[u8]) -> String {
    let mut units: Vec<u16> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (unit, width) = if b < 0x80 {
            (u16::from(b), 1)
        } else if b & 0xe0 == 0xc0 && i + 1 < bytes.len() {
            (
                (u16::from(b & 0x1f) << 6) | u16::from(bytes[i + 1] & 0x3f),
                2,
            )
        } else if b & 0xf0 == 0xe0 && i + 2 < bytes.len() {
            let unit = (u16::from(b & 0x0f) << 12)
                | (u16::from(bytes[i + 1] & 0x3f) << 6)
                | u16::from(bytes[i + 2] & 0x3f);
            (unit, 3)
        } else {
            (0xfffd, 1)
        };
        units.push(unit);
        i += width;
    }
    String::from_utf16_lossy(&units)
}

/// A class description: enough to know how its instances' fields are laid out.
#[derive(Debug, Clone)]
struct ClassDesc {
    name: String,
    flags: u8,
    fields: Vec<u8>,
    superclass: Option<usize>,
}

#[derive(Debug, Clone)]
enum Handle {
    Class(ClassDesc),
    Other,
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
    handles: Vec<Handle>,
}

impl Walker<'_> {
    fn take(&mut self, len: usize) -> Option<&[u8]> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn utf(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        self.take(len).map(decode_modified_utf8)
    }

    fn new_handle(&mut self, handle: Handle) -> usize {
        self.handles.push(handle);
        self.handles.len() - 1
    }

    fn reference(&mut self) -> Option<usize> {
        let handle = self.u32()?.checked_sub(0x7e_0000)? as usize;
        (handle < self.handles.len()).then_some(handle)
    }

    /// `content`: an object or block data.
    fn content(&mut self, depth: usize) -> Option<Option<usize>> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.u8()? {
            TC_NULL => Some(None),
            TC_REFERENCE => self.reference().map(Some),
            TC_CLASSDESC => self.class_desc_body(depth).map(Some),
            TC_STRING => {
                self.utf()?;
                Some(Some(self.new_handle(Handle::Other)))
            }
            TC_LONGSTRING => {
                let len =
                    usize::try_from(u64::from_be_bytes(self.take(8)?.try_into().ok()?)).ok()?;
                self.take(len)?;
                Some(Some(self.new_handle(Handle::Other)))
            }
            TC_BLOCKDATA => {
                let len = usize::from(self.u8()?);
                self.take(len).map(|_| None)
            }
            TC_BLOCKDATALONG => {
                let len = self.u32()? as usize;
                self.take(len).map(|_| None)
            }
            TC_ARRAY => {
                let class = self.class_desc(depth + 1)?;
                let handle = self.new_handle(Handle::Other);
                let size = self.u32()? as usize;
                let element = class.and_then(|c| self.class(c)).map(|c| c.name.clone());
                let element = element.as_deref().and_then(|name| name.strip_prefix('['))?;
                match primitive_size(element.bytes().next()?) {
                    Some(width) => {
                        self.take(size.checked_mul(width)?)?;
                    }
                    None => {
                        for _ in 0..size {
                            self.content(depth + 1)?;
                        }
                    }
                }
                Some(Some(handle))
            }
            TC_OBJECT => {
                let class = self.class_desc(depth + 1)?;
                let handle = self.new_handle(Handle::Other);
                self.class_data(class?, depth + 1)?;
                Some(Some(handle))
            }
            _ => None,
        }
    }

    fn class(&self, handle: usize) -> Option<&ClassDesc> {
        match self.handles.get(handle)? {
            Handle::Class(class) => Some(class),
            Handle::Other => None,
        }
    }

    /// `classDesc`: a new description, a reference to one, or null.
    fn class_desc(&mut self, depth: usize) -> Option<Option<usize>> {
        match self.u8()? {
            TC_NULL => Some(None),
            TC_REFERENCE => self.reference().map(Some),
            TC_CLASSDESC => self.class_desc_body(depth).map(Some),
            _ => None,
        }
    }

    fn class_desc_body(&mut self, depth: usize) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        let name = self.utf()?;
        self.take(8)?; // serialVersionUID
        let handle = self.new_handle(Handle::Other);
        let flags = self.u8()?;
        let count = self.u16()?;
        let mut fields = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let type_code = self.u8()?;
            self.utf()?; // field name
            if matches!(type_code, b'[' | b'L') {
                self.content(depth + 1)?; // the field's class name, a string
            } else if primitive_size(type_code).is_none() {
                return None;
            }
            fields.push(type_code);
        }
        self.annotation(depth + 1)?;
        let superclass = self.class_desc(depth + 1)?;
        self.handles[handle] = Handle::Class(ClassDesc {
            name,
            flags,
            fields,
            superclass,
        });
        Some(handle)
    }

    /// Contents up to and including `TC_ENDBLOCKDATA`.
    fn annotation(&mut self, depth: usize) -> Option<()> {
        loop {
            if self.bytes.get(self.at) == Some(&TC_ENDBLOCKDATA) {
                self.at += 1;
                return Some(());
            }
            self.content(depth + 1)?;
        }
    }

    /// The field values of an instance, superclasses first.
    fn class_data(&mut self, class: usize, depth: usize) -> Option<()> {
        let mut hierarchy = Vec::new();
        let mut next = Some(class);
        while let Some(handle) = next {
            if hierarchy.len() > MAX_DEPTH {
                return None;
            }
            let desc = self.class(handle)?.clone();
            next = desc.superclass;
            hierarchy.push(desc);
        }
        for desc in hierarchy.iter().rev() {
            if desc.flags & SC_EXTERNALIZABLE != 0 {
                self.annotation(depth)?;
                continue;
            }
            if desc.flags & SC_SERIALIZABLE == 0 {
                continue;
            }
            for type_code in &desc.fields {
                match primitive_size(*type_code) {
                    Some(width) => {
                        self.take(width)?;
                    }
                    None => {
                        self.content(depth + 1)?;
                    }
                }
            }
            if desc.flags & SC_WRITE_METHOD != 0 {
                self.annotation(depth)?;
            }
        }
        Some(())
    }
}

fn primitive_size(type_code: u8) -> Option<usize> {
    match type_code {
        b'B' | b'Z' => Some(1),
        b'C' | b'S' => Some(2),
        b'I' | b'F' => Some(4),
        b'J' | b'D' => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_modified_utf8() {
        assert_eq!(decode_modified_utf8(b"alias"), "alias");
        assert_eq!(decode_modified_utf8("ß".as_bytes()), "ß");
        // Java writes U+0000 as C0 80.
        assert_eq!(decode_modified_utf8(&[0xc0, 0x80]), "\u{0}");
    }

    #[test]
    fn refuses_streams_without_magic_or_cut_short() {
        assert_eq!(skip_object(&[0x73]), None);
        assert_eq!(skip_object(&STREAM_MAGIC), None);
        assert_eq!(
            skip_object(&[0xac, 0xed, 0x00, 0x05, TC_OBJECT, TC_CLASSDESC, 0x00]),
            None
        );
    }

    #[test]
    fn measures_a_string_and_a_byte_array() {
        let mut stream = STREAM_MAGIC.to_vec();
        stream.extend_from_slice(&[TC_STRING, 0x00, 0x02, b'h', b'i']);
        assert_eq!(skip_object(&stream), Some(stream.len()));

        let mut array = STREAM_MAGIC.to_vec();
        array.extend_from_slice(&[TC_ARRAY, TC_CLASSDESC, 0x00, 0x02, b'[', b'B']);
        array.extend_from_slice(&[0; 8]); // serialVersionUID
        array.extend_from_slice(&[SC_SERIALIZABLE, 0x00, 0x00, TC_ENDBLOCKDATA, TC_NULL]);
        array.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
        let len = array.len();
        array.extend_from_slice(&[0xff; 4]);
        assert_eq!(skip_object(&array), Some(len));
    }
}
