//! Output formats: plain text (etcdctl-like) and JSON (one object per line).
//!
//! JSON objects are serialized from structs so their keys keep a fixed, documented order.
//! Keys and values are printed as UTF-8 strings (invalid bytes are replaced).

use std::io::Write;

use anyhow::Result;
use conclave_client::proto as pb;
use serde::Serialize;

/// `-o/--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human- and shell-friendly text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Bytes as a (lossy) UTF-8 string.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A key-value in JSON.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct JsonKv {
    /// The key.
    pub key: String,
    /// The value (empty with keys-only).
    pub value: String,
    /// Revision of the key's creation.
    pub create_revision: u64,
    /// Revision of its last change.
    pub mod_revision: u64,
    /// Number of puts since creation.
    pub version: u64,
}

impl From<&pb::KeyValue> for JsonKv {
    fn from(kv: &pb::KeyValue) -> Self {
        Self {
            key: lossy(&kv.key),
            value: lossy(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

/// Converts key-values for JSON.
pub fn json_kvs(kvs: &[pb::KeyValue]) -> Vec<JsonKv> {
    kvs.iter().map(JsonKv::from).collect()
}

/// Writes `v` as one line of JSON.
pub fn json_line(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    // As an io::Error so that a closed stdout is recognized as such.
    serde_json::to_writer(&mut *out, v).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// How a read's key-values are shown in text.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextRange {
    /// Only keys.
    pub keys_only: bool,
    /// Only the count.
    pub count_only: bool,
}

/// Writes a read's result as text: the count alone (count-only), else each key on a line
/// followed by its value on the next (only keys with keys-only).
pub fn text_range(out: &mut dyn Write, kvs: &[pb::KeyValue], count: u64, how: TextRange) -> Result<()> {
    if how.count_only {
        writeln!(out, "{count}")?;
        return Ok(());
    }
    for kv in kvs {
        writeln!(out, "{}", lossy(&kv.key))?;
        if !how.keys_only {
            writeln!(out, "{}", lossy(&kv.value))?;
        }
    }
    Ok(())
}

/// Writes a text table: a header row and aligned columns (two spaces apart).
pub fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> pb::KeyValue {
        pb::KeyValue {
            key: k.into(),
            value: v.into(),
            create_revision: 2,
            mod_revision: 3,
            version: 4,
            ..Default::default()
        }
    }

    #[test]
    fn json_kv_field_order() -> Result<()> {
        let s = serde_json::to_string(&JsonKv::from(&kv("a", "b")))?;
        assert_eq!(s, r#"{"key":"a","value":"b","create_revision":2,"mod_revision":3,"version":4}"#);
        let bad = pb::KeyValue { key: vec![0xff, b'x'], ..Default::default() };
        assert_eq!(JsonKv::from(&bad).key, "\u{fffd}x");
        Ok(())
    }

    #[test]
    fn text_range_modes() -> Result<()> {
        let kvs = [kv("a", "1"), kv("b", "2")];
        let mut buf = Vec::new();
        text_range(&mut buf, &kvs, 2, TextRange::default())?;
        assert_eq!(String::from_utf8(buf)?, "a\n1\nb\n2\n");
        let mut buf = Vec::new();
        text_range(&mut buf, &kvs, 2, TextRange { keys_only: true, count_only: false })?;
        assert_eq!(String::from_utf8(buf)?, "a\nb\n");
        let mut buf = Vec::new();
        text_range(&mut buf, &[], 7, TextRange { keys_only: false, count_only: true })?;
        assert_eq!(String::from_utf8(buf)?, "7\n");
        Ok(())
    }

    #[test]
    fn table_aligns_columns() -> Result<()> {
        let mut buf = Vec::new();
        table(&mut buf, &["ID", "NAME"], &[vec!["1".into(), "x".into()], vec!["100".into(), "y".into()]])?;
        assert_eq!(String::from_utf8(buf)?, "ID   NAME\n1    x\n100  y\n");
        Ok(())
    }
}
