//! The cluster id: which cluster a data dir belongs to, so a member never mixes with another
//! cluster (etcd's `--initial-cluster-token` rule).
//!
//! - Founding members derive it from `--initial-cluster` and `--initial-cluster-token` (the same
//!   on every founding member, so they agree without talking) when they bootstrap.
//! - `conclave restore` derives a new one from the same inputs plus the backup's checksum: a
//!   restored cluster never accepts members of the cluster the backup came from.
//! - A member that joins (`--join`) or rejoins after losing its data has none until the leader's
//!   first replication message, whose id it adopts (it was added by that leader).
//! - It is stored in the data dir ([`FILE`], fsynced), sent with every peer message
//!   ([`METADATA`]), and a member refuses peer messages that carry another id
//!   (`FAILED_PRECONDITION`, reason `CLUSTER_ID_MISMATCH`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// File in the data dir holding the id (16 hex digits and a newline).
pub const FILE: &str = "cluster_id";
/// Peer-request metadata carrying the sender's cluster id (hex).
pub const METADATA: &str = "x-conclave-cluster-id";

/// This member's cluster id, once known; shared by the peer client and server.
#[derive(Clone, Debug, Default)]
pub struct ClusterId {
    id: Arc<OnceLock<u64>>,
    dir: Option<PathBuf>,
}

impl ClusterId {
    /// The id recorded in `data_dir`, if any.
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed (a damaged data dir is not guessed at).
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        let me = Self { id: Arc::default(), dir: Some(data_dir.to_owned()) };
        match std::fs::read_to_string(data_dir.join(FILE)) {
            Ok(text) => {
                let id = parse(text.trim())
                    .ok_or_else(|| format!("{}: not a cluster id: {:?}", data_dir.join(FILE).display(), text.trim()))?;
                let _ = me.id.set(id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("read {}: {e}", data_dir.join(FILE).display())),
        }
        Ok(me)
    }

    /// The id, if known.
    pub fn get(&self) -> Option<u64> {
        self.id.get().copied()
    }

    /// Records `id` (durably, when backed by a data dir) unless one is known already; returns
    /// the id now in force.
    ///
    /// # Errors
    /// When the file cannot be written durably.
    pub fn record(&self, id: u64) -> std::io::Result<u64> {
        if let Some(known) = self.get() {
            return Ok(known);
        }
        if let Some(dir) = &self.dir {
            write(dir, id)?;
        }
        let _ = self.id.set(id);
        Ok(self.get().unwrap_or(id))
    }

    /// Whether a peer message carrying `theirs` may be accepted: refused only when both ids are
    /// known and differ.
    pub fn accepts(&self, theirs: Option<u64>) -> bool {
        match (self.get(), theirs) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }
}

/// The id founding members derive from the initial membership and the token (FNV-1a over a
/// canonical text: sorted `id=addr` pairs, the token, and `salt`).
pub fn derive(initial_cluster: &BTreeMap<u64, String>, token: &str, salt: &str) -> u64 {
    let mut text = String::new();
    for (id, addr) in initial_cluster {
        text.push_str(&format!("{id}={addr},"));
    }
    text.push_str(&format!("|{token}|{salt}"));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

/// Formats an id as it travels and is stored.
pub fn format(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses [`format()`]'s output.
pub fn parse(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok().filter(|id| *id != 0)
}

/// Writes the id file durably (see `write_file_durable`).
pub fn write(data_dir: &Path, id: u64) -> std::io::Result<()> {
    crate::storage::file_engine::write_file_durable(data_dir, FILE, format!("{}\n", format(id)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn founding_members_agree_and_a_restore_or_another_token_differs() {
        let a = BTreeMap::from([(1, "10.0.0.1:1".to_owned()), (2, "10.0.0.2:1".to_owned())]);
        let same = BTreeMap::from([(2, "10.0.0.2:1".to_owned()), (1, "10.0.0.1:1".to_owned())]);
        assert_eq!(derive(&a, "conclave", ""), derive(&same, "conclave", ""));
        assert_ne!(derive(&a, "conclave", ""), derive(&a, "prod", ""));
        assert_ne!(derive(&a, "conclave", ""), derive(&a, "conclave", "restore:1234"));
        assert_eq!(parse(&format(derive(&a, "t", ""))), Some(derive(&a, "t", "")));
    }

    #[test]
    fn recorded_once_survives_reopen_and_mismatches_are_refused() {
        let tmp = tempfile::TempDir::new().expect("tmp");
        let id = ClusterId::open(tmp.path()).expect("open");
        assert_eq!(id.get(), None);
        assert!(id.accepts(Some(7)), "unknown yet: accepted");
        assert_eq!(id.record(7).expect("record"), 7);
        assert_eq!(id.record(8).expect("record"), 7, "the first id stays");
        let reopened = ClusterId::open(tmp.path()).expect("reopen");
        assert_eq!(reopened.get(), Some(7));
        assert!(reopened.accepts(Some(7)) && reopened.accepts(None));
        assert!(!reopened.accepts(Some(8)));
        std::fs::write(tmp.path().join(FILE), "garbage").expect("write");
        assert!(ClusterId::open(tmp.path()).expect_err("damaged").contains("not a cluster id"));
    }
}
