//! The revisioned key space (etcd's model): every key keeps its versions back to the
//! compaction point, so ranges at past revisions and watch catch-up can be served.
//!
//! Pure data structure: no clock, no I/O. Revisions are handed in by the caller.

use std::ops::Bound;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::log_entry::KeySelector;

/// A key's state as seen by readers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "crate::log_entry::bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "crate::log_entry::bytes")]
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last delete).
    pub create_revision: u64,
    /// Revision of the last change.
    pub mod_revision: u64,
    /// Number of puts since creation (1 after the first).
    pub version: u64,
    /// Session the key is bound to (0 = none).
    pub session: u64,
}

/// What a write did to one key, for events and `prev_kv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// State before the write (None = key absent).
    pub prev: Option<KeyValue>,
    /// State after the write (None = deleted).
    pub current: Option<KeyValue>,
}

/// One stored version of a key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Version {
    mod_revision: u64,
    /// `None` is a tombstone (the key was deleted at `mod_revision`).
    live: Option<Live>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Live {
    #[serde(with = "crate::log_entry::bytes")]
    value: Vec<u8>,
    create_revision: u64,
    version: u64,
    session: u64,
}

/// Revisioned key space. Both maps are persistent B-trees (`imbl::OrdMap`): a clone shares
/// every node and costs O(1), and apply copies only the path it changes while a clone is
/// alive. That is what lets a snapshot be encoded from a clone, outside the state machine's
/// lock, however big the key space (`storage/sm_store.rs`); the serialized form is the same
/// as a `BTreeMap`'s, so snapshot files did not change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mvcc {
    keys: OrdMap<Vec<u8>, Vec<Version>>,
    /// Keys changed at each retained revision (for watch catch-up).
    changed: OrdMap<u64, Vec<Vec<u8>>>,
    /// Oldest revision still readable.
    compact_revision: u64,
    /// Number of live keys.
    live_keys: u64,
}

/// The key bounds a selector covers.
pub fn bounds(selector: &KeySelector) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    match selector {
        KeySelector::Key(k) => (Bound::Included(k.clone()), Bound::Included(k.clone())),
        KeySelector::Prefix(p) => (Bound::Included(p.clone()), prefix_end(p).map_or(Bound::Unbounded, Bound::Excluded)),
        KeySelector::Interval { start, end } => (Bound::Included(start.clone()), Bound::Excluded(end.clone())),
    }
}

/// The smallest key greater than every key with this prefix, or `None` if unbounded.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Whether `key` is selected.
pub fn selects(selector: &KeySelector, key: &[u8]) -> bool {
    match selector {
        KeySelector::Key(k) => k == key,
        KeySelector::Prefix(p) => key.starts_with(p),
        KeySelector::Interval { start, end } => key >= start.as_slice() && key < end.as_slice(),
    }
}

impl Version {
    fn to_kv(&self, key: &[u8]) -> Option<KeyValue> {
        self.live.as_ref().map(|l| KeyValue {
            key: key.to_vec(),
            value: l.value.clone(),
            create_revision: l.create_revision,
            mod_revision: self.mod_revision,
            version: l.version,
            session: l.session,
        })
    }
}

fn at_revision(versions: &[Version], revision: u64) -> Option<&Version> {
    let idx = versions.partition_point(|v| v.mod_revision <= revision);
    idx.checked_sub(1).map(|i| &versions[i])
}

impl Mvcc {
    /// Oldest revision at which ranges can still be served.
    pub fn compact_revision(&self) -> u64 {
        self.compact_revision
    }

    /// Number of live keys.
    pub fn live_keys(&self) -> u64 {
        self.live_keys
    }

    /// The current state of one key.
    pub fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.keys.get(key).and_then(|vs| vs.last()).and_then(|v| v.to_kv(key))
    }

    /// Live key-values selected at `revision` (must be `>= compact_revision`, checked by the
    /// caller), in key order. Calls `visit` for each; stops when it returns false.
    pub fn scan_at(&self, selector: &KeySelector, revision: u64, mut visit: impl FnMut(&[u8], KeyRef<'_>) -> bool) {
        // An empty or reversed interval selects nothing. Validation refuses it from clients, but
        // a proposal from a peer is not validated, and `BTreeMap::range` panics on it: every
        // replica applying such an entry would crash (found by the apply_sequence fuzzer).
        if matches!(selector, KeySelector::Interval { start, end } if start >= end) {
            return;
        }
        for (key, versions) in self.keys.range(bounds(selector)) {
            if let Some(v) = at_revision(versions, revision) {
                if let Some(live) = &v.live {
                    let kref = KeyRef { live, mod_revision: v.mod_revision };
                    if !visit(key, kref) {
                        return;
                    }
                }
            }
        }
    }

    /// Writes `value` bound to a session (None = delete) to `key` at `revision`. Several writes to one key at the same
    /// revision (inside one transaction) collapse into one version. Returns the change, or None
    /// when deleting an absent key (nothing changes).
    pub fn write(&mut self, key: &[u8], value: Option<(Vec<u8>, u64)>, revision: u64) -> Option<Change> {
        let versions = self.keys.entry(key.to_vec()).or_default();
        let prev = versions.last().and_then(|v| v.to_kv(key));
        if prev.is_none() && value.is_none() {
            if versions.is_empty() {
                self.keys.remove(key);
            }
            return None;
        }
        let live = value.map(|(value, session)| match &prev {
            Some(p) => Live { value, create_revision: p.create_revision, version: p.version + 1, session },
            None => Live { value, create_revision: revision, version: 1, session },
        });
        let new = Version { mod_revision: revision, live };
        let same_revision = versions.last().is_some_and(|v| v.mod_revision == revision);
        if same_revision {
            if let Some(last) = versions.last_mut() {
                *last = new;
            }
        } else {
            versions.push(new);
            let changed = self.changed.entry(revision).or_default();
            changed.push(key.to_vec());
        }
        let current = versions.last().and_then(|v| v.to_kv(key));
        match (&prev, &current) {
            (None, Some(_)) => self.live_keys += 1,
            (Some(_), None) => self.live_keys -= 1,
            _ => {}
        }
        // A key created and deleted within one revision never existed as far as history is
        // concerned: drop the tombstone rather than record an absent-to-absent change.
        let created_and_deleted =
            same_revision && current.is_none() && versions.iter().rev().nth(1).is_none_or(|v| v.live.is_none());
        if created_and_deleted {
            versions.pop();
            if versions.is_empty() {
                self.keys.remove(key);
            }
            if let Some(changed) = self.changed.get_mut(&revision) {
                changed.retain(|k| k != key);
                if changed.is_empty() {
                    self.changed.remove(&revision);
                }
            }
        }
        Some(Change { prev, current })
    }

    /// The changes made at `revision` (which must be retained), in the order they were made:
    /// for each changed key, its state before and after that revision.
    pub fn changes_at(&self, revision: u64) -> Vec<Change> {
        self.changes_matching(revision, |_| true)
    }

    /// Like [`Mvcc::changes_at`], only for keys accepted by `filter`.
    pub fn changes_matching(&self, revision: u64, filter: impl Fn(&[u8]) -> bool) -> Vec<Change> {
        let Some(keys) = self.changed.get(&revision) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|key| filter(key))
            .filter_map(|key| {
                let versions = self.keys.get(key)?;
                // Versions are in revision order: a hot key's thousands of versions are not scanned.
                let idx = versions.binary_search_by_key(&revision, |v| v.mod_revision).ok()?;
                let prev = idx.checked_sub(1).and_then(|i| versions[i].to_kv(key));
                Some(Change { prev, current: versions[idx].to_kv(key) })
            })
            .collect()
    }

    /// Retained revisions with changes, from `from` (inclusive).
    pub fn changed_revisions_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        self.changed.range(from..).map(|(r, _)| *r)
    }

    /// Forgets history older than `revision`: afterwards, ranges at revisions `>= revision` and
    /// changes at revisions `>= revision` are still available. Never moves backwards.
    ///
    /// The work is proportional to the history dropped, not to the number of keys: only keys
    /// changed at a revision in `[compact_revision, revision)` (the `changed` index being
    /// dropped) can hold versions to forget, since every version at or above the previous
    /// compaction point is indexed there. A key never written since keeps its one version.
    pub fn compact(&mut self, revision: u64) {
        if revision <= self.compact_revision {
            return;
        }
        // Oldest first, one revision at a time: imbl's `split_lookup` rebuilds both halves of the
        // whole index (every revision's keys cloned), 60-80 ms per compaction with 1 M keys.
        let mut dropped = Vec::new();
        while let Some(oldest) = self.changed.get_min().map(|(r, _)| *r).filter(|r| *r < revision) {
            dropped.extend(self.changed.remove(&oldest).unwrap_or_default());
        }
        for key in dropped {
            let Some(versions) = self.keys.get_mut(&key) else { continue };
            // Keep the newest version older than `revision` (it is the state at revision - 1,
            // the base for reads and the previous value of the first retained change).
            let first_kept = versions.partition_point(|v| v.mod_revision < revision);
            let drop = first_kept.saturating_sub(1);
            versions.drain(..drop);
            if versions.first().is_some_and(|v| v.mod_revision < revision && v.live.is_none()) {
                versions.remove(0);
            }
            if versions.is_empty() {
                self.keys.remove(&key);
            }
        }
        self.compact_revision = revision;
    }
}

/// Borrowed view of a live key at some revision.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    live: &'a Live,
    mod_revision: u64,
}

impl KeyRef<'_> {
    /// Materializes the key-value, optionally without its value.
    pub fn to_kv(&self, key: &[u8], with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: if with_value { self.live.value.clone() } else { Vec::new() },
            create_revision: self.live.create_revision,
            mod_revision: self.mod_revision,
            version: self.live.version,
            session: self.live.session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(m: &mut Mvcc, k: &str, v: &str, rev: u64) -> Change {
        m.write(k.as_bytes(), Some((v.as_bytes().to_vec(), 0)), rev).expect("put changes")
    }

    fn read(m: &Mvcc, sel: KeySelector, rev: u64) -> Vec<(String, String, u64, u64, u64)> {
        let mut out = Vec::new();
        m.scan_at(&sel, rev, |k, r| {
            let kv = r.to_kv(k, true);
            out.push((
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            ));
            true
        });
        out
    }

    #[test]
    fn versions_and_revisions_follow_etcd() {
        let mut m = Mvcc::default();
        put(&mut m, "a", "1", 1);
        let c = put(&mut m, "a", "2", 2);
        assert_eq!(c.prev.as_ref().map(|p| p.version), Some(1));
        assert_eq!(read(&m, KeySelector::Key(b"a".to_vec()), 2), vec![("a".into(), "2".into(), 1, 2, 2)]);
        assert!(m.write(b"a", None, 3).is_some());
        assert!(m.write(b"a", None, 4).is_none(), "deleting an absent key changes nothing");
        put(&mut m, "a", "3", 4);
        assert_eq!(read(&m, KeySelector::Key(b"a".to_vec()), 4), vec![("a".into(), "3".into(), 4, 4, 1)]);
        assert_eq!(read(&m, KeySelector::Key(b"a".to_vec()), 3), vec![]);
        assert_eq!(read(&m, KeySelector::Key(b"a".to_vec()), 1), vec![("a".into(), "1".into(), 1, 1, 1)]);
        assert_eq!(m.live_keys(), 1);
    }

    #[test]
    fn prefix_and_interval_selection() {
        let mut m = Mvcc::default();
        for (i, k) in ["a", "ab", "abc", "b", "\u{7f}"].iter().enumerate() {
            put(&mut m, k, "v", i as u64 + 1);
        }
        let keys = |sel| read(&m, sel, 10).into_iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(keys(KeySelector::Prefix(b"ab".to_vec())), vec!["ab", "abc"]);
        assert_eq!(keys(KeySelector::Prefix(Vec::new())).len(), 5);
        assert_eq!(keys(KeySelector::Interval { start: b"ab".to_vec(), end: b"b".to_vec() }), vec!["ab", "abc"]);
        assert_eq!(prefix_end(&[0x61, 0xff]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn writes_in_one_revision_collapse() {
        let mut m = Mvcc::default();
        put(&mut m, "k", "1", 5);
        let c = put(&mut m, "k", "2", 5);
        assert_eq!(c.prev.map(|p| p.value), Some(b"1".to_vec()));
        assert_eq!(read(&m, KeySelector::Key(b"k".to_vec()), 5), vec![("k".into(), "2".into(), 5, 5, 2)]);
        assert_eq!(m.changes_at(5).len(), 1);
    }

    #[test]
    fn a_key_created_and_deleted_in_one_revision_leaves_no_history() {
        let mut m = Mvcc::default();
        put(&mut m, "k", "1", 7);
        let c = m.write(b"k", None, 7).expect("the delete removes the fresh key");
        assert_eq!(c.prev.map(|p| p.value), Some(b"1".to_vec()));
        assert!(m.changes_at(7).is_empty(), "no absent-to-absent change is recorded");
        assert_eq!(m.changed_revisions_from(0).count(), 0);
        assert!(m.keys.is_empty());
        assert_eq!(m.live_keys(), 0);
        // An existing key put and deleted in one revision is an ordinary delete.
        put(&mut m, "e", "0", 8);
        put(&mut m, "e", "1", 9);
        m.write(b"e", None, 9);
        let ch = m.changes_at(9);
        assert_eq!(ch.len(), 1);
        assert_eq!(
            (ch[0].prev.as_ref().map(|p| p.value.clone()), ch[0].current.is_none()),
            (Some(b"0".to_vec()), true)
        );
    }

    #[test]
    fn compaction_keeps_reads_from_the_compact_revision() {
        let mut m = Mvcc::default();
        put(&mut m, "a", "1", 1);
        put(&mut m, "b", "1", 2);
        m.write(b"b", None, 3);
        put(&mut m, "a", "2", 4);
        put(&mut m, "a", "3", 6);
        m.compact(5);
        assert_eq!(m.compact_revision(), 5);
        assert_eq!(read(&m, KeySelector::Prefix(Vec::new()), 5), vec![("a".into(), "2".into(), 1, 4, 2)]);
        assert_eq!(read(&m, KeySelector::Prefix(Vec::new()), 6), vec![("a".into(), "3".into(), 1, 6, 3)]);
        let ch = m.changes_at(6);
        assert_eq!(ch[0].prev.as_ref().map(|p| p.value.clone()), Some(b"2".to_vec()));
        assert!(m.changes_at(4).is_empty(), "history before the compact revision is gone");
        assert_eq!(m.keys.len(), 1, "the deleted key's tombstone is dropped");
        m.compact(2);
        assert_eq!(m.compact_revision(), 5, "compaction never moves backwards");
    }
    /// The definition compaction must match: every key's versions trimmed, whatever changed.
    fn compact_by_scanning_every_key(m: &mut Mvcc, revision: u64) {
        if revision <= m.compact_revision {
            return;
        }
        let mut keys = OrdMap::new();
        for (key, mut versions) in m.keys.clone() {
            let first_kept = versions.partition_point(|v| v.mod_revision < revision);
            versions.drain(..first_kept.saturating_sub(1));
            if versions.first().is_some_and(|v| v.mod_revision < revision && v.live.is_none()) {
                versions.remove(0);
            }
            if !versions.is_empty() {
                keys.insert(key, versions);
            }
        }
        m.keys = keys;
        m.changed = m.changed.clone().into_iter().filter(|(r, _)| *r >= revision).collect();
        m.compact_revision = revision;
    }

    #[test]
    fn compacting_from_the_change_index_equals_scanning_every_key() {
        // A deterministic pseudo-random mix of puts, deletes, same-revision rewrites and
        // compactions over a few keys; both compactions must leave identical states.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..50 {
            let (mut fast, mut reference) = (Mvcc::default(), Mvcc::default());
            let mut revision = 1;
            for _ in 0..200 {
                let key = format!("k{}", next(6));
                let value = (next(3) > 0).then(|| (format!("v{revision}").into_bytes(), 0));
                fast.write(key.as_bytes(), value.clone(), revision);
                reference.write(key.as_bytes(), value, revision);
                if next(3) > 0 {
                    revision += 1;
                }
                if next(10) == 0 {
                    let to = revision.saturating_sub(next(5));
                    fast.compact(to);
                    compact_by_scanning_every_key(&mut reference, to);
                    assert_eq!(fast, reference, "after compacting to {to}");
                }
            }
        }
    }
}
