//! Byte strings (keys, values) encoded as serde *bytes* instead of a sequence of `u8`.
//!
//! With bincode 2's standard configuration both encode the same bytes (a varint length, then
//! the bytes), so the log and snapshot formats do not change; but a sequence goes through serde
//! once per byte, a byte string is one copy. Measured in a debug build: encoding a 64 KiB value
//! took ~3.8 ms per sequence, which made a leader replicating large values CPU-bound at a few
//! MB/s. Use with `#[serde(with = "bytes")]` on `Vec<u8>` fields. Decoding also accepts a
//! sequence, for self-describing formats.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Serializes `v` as a byte string.
pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// Deserializes a byte string (or a sequence of `u8`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::log_entry::{decode, encode};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AsBytes(#[serde(with = "super")] Vec<u8>);

    #[test]
    fn bytes_encode_exactly_as_a_sequence_of_u8() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let as_seq = encode(&v).expect("encode");
            assert_eq!(encode(&AsBytes(v.clone())).expect("encode"), as_seq, "length {len}");
            assert_eq!(decode::<AsBytes>(&as_seq).expect("decode"), AsBytes(v), "length {len}");
        }
    }
}
