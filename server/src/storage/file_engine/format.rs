//! The file engine's on-disk formats: log records `[len][crc32][index][payload]` in segment
//! files (and how recovery reads them back) and metadata files `[len][crc32][value]`.

use super::Loc;
use crate::storage::engine::{EngineError, EngineResult};

/// Largest record payload accepted when reading (a log entry is at most a few MiB).
pub(super) const MAX_RECORD: u32 = 256 * 1024 * 1024;
/// Bytes of a record header: length, crc32, index.
pub(super) const HEADER: u64 = 16;

/// The checksum of a record (its index and payload) or of a metadata value (its length).
pub(super) fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A metadata file: `[u32 LE length][u32 LE crc32][value]`, possibly followed by stale bytes
/// of a longer value written earlier in place.
pub(super) fn encode_meta(value: &[u8]) -> EngineResult<Vec<u8>> {
    let len = u32::try_from(value.len()).map_err(|_| EngineError("metadata value too large".into()))?;
    let mut record = Vec::with_capacity(value.len() + 8);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc(u64::from(len), value).to_le_bytes());
    record.extend_from_slice(value);
    Ok(record)
}

pub(super) fn decode_meta(bytes: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let sum = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let value = bytes.get(8..8 + len as usize)?;
    (crc(u64::from(len), value) == sum).then(|| value.to_vec())
}

/// Reads the records of a segment whose first index is `first`: their positions, the length of
/// the valid prefix, and why the rest (if any) is invalid.
pub(super) fn parse_records(bytes: &[u8], first: u64) -> (Vec<Loc>, u64, Option<&'static str>) {
    let mut locs = Vec::new();
    let mut at = 0usize;
    let bad = loop {
        if bytes[at..].iter().all(|b| *b == 0) {
            // The end of the file or of the written part of its preallocated space.
            break None;
        }
        let Some(header) = bytes.get(at..at + HEADER as usize) else { break Some("truncated header") };
        let field = |r: std::ops::Range<usize>| header.get(r).map(<[u8]>::to_vec).unwrap_or_default();
        let (Ok(len), Ok(sum), Ok(index)) =
            (<[u8; 4]>::try_from(field(0..4)), <[u8; 4]>::try_from(field(4..8)), <[u8; 8]>::try_from(field(8..16)))
        else {
            break Some("truncated header");
        };
        let (len, sum, index) = (u32::from_le_bytes(len), u32::from_le_bytes(sum), u64::from_le_bytes(index));
        if len > MAX_RECORD {
            break Some("record length out of bounds");
        }
        let start = at + HEADER as usize;
        let Some(payload) = bytes.get(start..start + len as usize) else { break Some("truncated record") };
        if crc(index, payload) != sum {
            break Some("checksum mismatch");
        }
        if index != first + locs.len() as u64 {
            break Some("index out of sequence");
        }
        locs.push(Loc { segment: first, offset: at as u64, len });
        at = start + len as usize;
    };
    (locs, at as u64, bad)
}

/// The first record at or after `from + 1` that is valid on its own (length in bounds, crc
/// matches, index at least `expected` and plausibly close), if any: evidence that the bad
/// record at `from` is not a torn last append but damage in the middle of the log.
pub(super) fn valid_record_after(bytes: &[u8], from: u64, expected: u64) -> Option<(u64, u64)> {
    const PLAUSIBLE: u64 = 1 << 20;
    let header = HEADER as usize;
    let mut at = usize::try_from(from).ok()? + 1;
    while at + header <= bytes.len() {
        // Skip zeros fast: a record header is never all zeros.
        if bytes[at..at + header].iter().all(|b| *b == 0) {
            at += bytes[at..].iter().position(|b| *b != 0)?.saturating_sub(header - 1).max(1);
            continue;
        }
        let word = |r: std::ops::Range<usize>| {
            bytes[at + r.start..at + r.end].iter().rev().fold(0u64, |a, b| a << 8 | u64::from(*b))
        };
        let (len, sum, index) = (word(0..4), word(4..8), word(8..16));
        let start = at + header;
        if (expected..expected.saturating_add(PLAUSIBLE)).contains(&index) && len <= u64::from(MAX_RECORD) {
            if let Some(payload) = bytes.get(start..start + len as usize) {
                if u64::from(crc(index, payload)) == sum {
                    return Some((at as u64, index));
                }
            }
        }
        at += 1;
    }
    None
}
