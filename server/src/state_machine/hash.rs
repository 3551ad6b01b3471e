//! Consistency checks and backups of the state machine: the key-space digest `hashkv` compares
//! across members, and the preparation of a restored snapshot. Pure: no clock, no I/O.

use super::{ReadError, StateMachine};
use crate::log_entry::KeySelector;

/// A key-space digest at one revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    /// The revision hashed (0 asked: the current one).
    pub revision: u64,
    /// CRC-32 (IEEE) over every live key at `revision`, in key order: key length, key, value
    /// length, value, create revision, mod revision, version (integers as little-endian u64).
    pub hash: u32,
    /// The oldest readable revision.
    pub compact_revision: u64,
}

impl StateMachine {
    /// The digest of the key space at `revision` (0 = current). Two members that applied the
    /// same log agree on it at every revision both can read; it depends on nothing but the
    /// keys' values and their create / mod revisions and versions (not on sessions, counters,
    /// history retention or the log).
    ///
    /// # Errors
    /// [`ReadError::Compacted`] when `revision` is older than the compaction point,
    /// [`ReadError::Future`] when it is newer than the current revision.
    pub fn hash_kv(&self, revision: u64) -> Result<KvHash, ReadError> {
        let at = self.readable_revision(revision)?;
        let mut hasher = crc32fast::Hasher::new();
        self.kv.scan_at(&KeySelector::Prefix(Vec::new()), at, |key, kref| {
            let kv = kref.to_kv(key, true);
            hasher.update(&(kv.key.len() as u64).to_le_bytes());
            hasher.update(&kv.key);
            hasher.update(&(kv.value.len() as u64).to_le_bytes());
            hasher.update(&kv.value);
            for n in [kv.create_revision, kv.mod_revision, kv.version] {
                hasher.update(&n.to_le_bytes());
            }
            true
        });
        Ok(KvHash { revision: at, hash: hasher.finalize(), compact_revision: self.kv.compact_revision() })
    }

    /// Prepares a state restored from a backup to seed a new cluster: forgets the client
    /// and ZooKeeper addresses the old cluster's members registered (the new members register
    /// their own). Keys, revisions, counters, sessions and settings are kept as they are.
    pub fn prepare_restore(&mut self) {
        self.client_addrs.clear();
        self.znodes.zk_addrs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_entry::{BatchV1, Command, Proposal};
    use crate::state_machine::SmConfig;

    fn apply(sm: &mut StateMachine, command: Command) {
        sm.apply_batch(&BatchV1 { leader_time_ms: 0, proposals: vec![Proposal { request_id: None, command }] }, 1);
    }

    fn put(sm: &mut StateMachine, key: &str, value: &str) {
        apply(sm, Command::Put { key: key.into(), value: value.into(), prev_kv: false, session: 0 });
    }

    #[test]
    fn equal_histories_hash_equal_and_a_past_revision_hashes_its_state() {
        let (mut a, mut b) = (StateMachine::new(SmConfig::default()), StateMachine::new(SmConfig::default()));
        for sm in [&mut a, &mut b] {
            put(sm, "k1", "v1");
            put(sm, "k2", "v2");
        }
        assert_eq!(a.hash_kv(0), b.hash_kv(0));
        let at2 = a.hash_kv(0).expect("current");
        assert_eq!(at2.revision, 2);
        put(&mut a, "k2", "changed");
        assert_ne!(a.hash_kv(0).expect("current").hash, at2.hash, "a changed value changes the hash");
        assert_eq!(a.hash_kv(2), Ok(at2), "revision 2 still hashes the state at revision 2");
        put(&mut b, "k2", "changed");
        assert_eq!(a.hash_kv(3), b.hash_kv(3));
        assert_eq!(a.hash_kv(9), Err(ReadError::Future { requested: 9, current: 3 }));
    }

    #[test]
    fn the_hash_covers_revisions_and_versions_not_only_values() {
        let (mut a, mut b) = (StateMachine::new(SmConfig::default()), StateMachine::new(SmConfig::default()));
        put(&mut a, "k", "v");
        put(&mut b, "other", "x");
        put(&mut b, "k", "v");
        apply(&mut b, Command::DeleteRange { selector: KeySelector::Key(b"other".to_vec()), prev_kv: false });
        // Same keys and values, but "k" was written at revision 1 on one and 2 on the other.
        assert_ne!(a.hash_kv(0).map(|h| h.hash), b.hash_kv(0).map(|h| h.hash));
    }

    #[test]
    fn a_compacted_revision_is_refused() {
        let mut sm = StateMachine::new(SmConfig { history_revisions: 2 });
        for i in 0..6 {
            put(&mut sm, "k", &i.to_string());
        }
        let oldest = sm.compact_revision();
        assert!(oldest > 1, "history was compacted");
        assert_eq!(sm.hash_kv(1), Err(ReadError::Compacted { requested: 1, oldest }));
        assert!(sm.hash_kv(oldest).is_ok());
    }
}
