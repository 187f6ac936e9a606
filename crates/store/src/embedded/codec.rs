//! Byte layout of the embedded store's tables. Pure functions, no I/O.
//!
//! * `kv` value: `create_revision: u64 LE | mod_revision: u64 LE | value bytes`.
//! * `changelog` value: `tag: u8 | key_len: u32 LE | key | body`, where the body of a put (tag 0)
//!   is `create_revision: u64 LE | prev | value bytes` and of a delete (tag 1) is `prev`; `prev` is
//!   `0u8` (none) or `1u8 | create: u64 LE | mod: u64 LE | len: u32 LE | value bytes`. The
//!   change's revision is the changelog key.

use crate::types::{KeyValue, WatchEvent};

const TAG_PUT: u8 = 0;
const TAG_DELETE: u8 = 1;

/// A decoding failure; the caller adds the file path.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CodecError(pub(super) &'static str);

pub(super) fn encode_record(create_revision: u64, mod_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn decode_record(key: &str, bytes: &[u8]) -> Result<KeyValue, CodecError> {
    let mut r = Reader(bytes);
    let create_revision = r.u64()?;
    let mod_revision = r.u64()?;
    Ok(KeyValue { key: key.to_owned(), value: r.0.to_vec(), create_revision, mod_revision })
}

/// The `mod_revision` of a record without copying its value.
pub(super) fn record_mod_revision(bytes: &[u8]) -> Result<u64, CodecError> {
    let mut r = Reader(bytes);
    r.u64()?;
    r.u64()
}

pub(super) fn encode_change(event: &WatchEvent) -> Vec<u8> {
    let mut out = Vec::new();
    let (tag, key, prev) = match event {
        WatchEvent::Put { kv, prev } => (TAG_PUT, &kv.key, prev),
        WatchEvent::Delete { key, prev, .. } => (TAG_DELETE, key, prev),
    };
    out.push(tag);
    put_bytes(&mut out, key.as_bytes());
    if let WatchEvent::Put { kv, .. } = event {
        out.extend_from_slice(&kv.create_revision.to_le_bytes());
    }
    match prev {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.create_revision.to_le_bytes());
            out.extend_from_slice(&p.mod_revision.to_le_bytes());
            put_bytes(&mut out, &p.value);
        }
    }
    if let WatchEvent::Put { kv, .. } = event {
        out.extend_from_slice(&kv.value);
    }
    out
}

pub(super) fn decode_change(revision: u64, bytes: &[u8]) -> Result<WatchEvent, CodecError> {
    let mut r = Reader(bytes);
    let tag = r.u8()?;
    let key = std::str::from_utf8(r.bytes()?)
        .map_err(|_| CodecError("changelog key is not UTF-8"))?
        .to_owned();
    let create_revision = if tag == TAG_PUT { r.u64()? } else { 0 };
    let prev = match r.u8()? {
        0 => None,
        1 => {
            let create_revision = r.u64()?;
            let mod_revision = r.u64()?;
            let value = r.bytes()?.to_vec();
            Some(KeyValue { key: key.clone(), value, create_revision, mod_revision })
        }
        _ => return Err(CodecError("bad prev marker in changelog entry")),
    };
    match tag {
        TAG_PUT => Ok(WatchEvent::Put {
            kv: KeyValue { key, value: r.0.to_vec(), create_revision, mod_revision: revision },
            prev,
        }),
        TAG_DELETE if r.0.is_empty() => Ok(WatchEvent::Delete { key, revision, prev }),
        TAG_DELETE => Err(CodecError("trailing bytes in changelog delete entry")),
        _ => Err(CodecError("unknown changelog entry tag")),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("keys and values are smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError("truncated entry"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], c: u64, m: u64) -> KeyValue {
        KeyValue { key: key.into(), value: value.to_vec(), create_revision: c, mod_revision: m }
    }

    #[test]
    fn record_round_trip() {
        let b = encode_record(3, 7, b"hello");
        assert_eq!(decode_record("k", &b).unwrap(), kv("k", b"hello", 3, 7));
        assert_eq!(record_mod_revision(&b).unwrap(), 7);
        assert_eq!(decode_record("k", &b[..10]), Err(CodecError("truncated entry")));
    }

    #[test]
    fn change_round_trip() {
        let events = [
            WatchEvent::Put { kv: kv("a/b", b"v2", 4, 9), prev: Some(kv("a/b", b"v1", 4, 4)) },
            WatchEvent::Put { kv: kv("a/c", b"", 9, 9), prev: None },
            WatchEvent::Delete { key: "a/d".into(), revision: 9, prev: Some(kv("a/d", b"x", 1, 2)) },
            WatchEvent::Delete { key: "a/e".into(), revision: 9, prev: None },
        ];
        for e in events {
            let b = encode_change(&e);
            assert_eq!(decode_change(9, &b).unwrap(), e);
            for cut in 0..b.len() {
                // Every strict prefix either fails to decode or decodes a put with a shorter
                // value (a put's value runs to the end); it never panics.
                let _ = decode_change(9, &b[..cut]);
            }
        }
    }
}
