//! One connection's watches (the connection is one ZooKeeper watcher) and the events a
//! committed change fires, with ZooKeeper's rules: data/exists and child watches fire once;
//! persistent watches fire for their node (children changes included) until removed;
//! persistent-recursive watches fire for the node and every descendant (never
//! NodeChildrenChanged). A change fires at most one event per path on a connection.
//! `/zookeeper/config` is no key: its data watch holds the data the client was shown and fires
//! NodeDataChanged once the ensemble's description differs (`Watches::config_changed`).

use std::collections::HashSet;

use conclave_proto::zookeeper::event;

use super::paths::CONFIG_NODE;
use crate::state_machine::znodes::split_parent;

/// What a committed change did to a znode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// It was created.
    Created,
    /// It was deleted.
    Deleted,
    /// Its data changed.
    DataChanged,
}

/// `RemoveWatches` / `CheckWatches` watcher types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherType {
    /// Child watches.
    Children = 1,
    /// Data and exists watches.
    Data = 2,
    /// Every kind.
    Any = 3,
    /// Persistent watches.
    Persistent = 4,
    /// Persistent recursive watches.
    PersistentRecursive = 5,
}

impl WatcherType {
    /// From the wire value.
    pub fn from_wire(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::Children,
            2 => Self::Data,
            3 => Self::Any,
            4 => Self::Persistent,
            5 => Self::PersistentRecursive,
            _ => return None,
        })
    }
}

/// A watch to add once the events before the reply are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewWatch {
    /// Data or exists watch.
    Data,
    /// Child watch.
    Child,
    /// Persistent watch.
    Persistent,
    /// Persistent recursive watch.
    Recursive,
    /// Data watch on `/zookeeper/config`, set when the client was shown this data.
    Config(Vec<u8>),
}

/// The watches of one connection.
#[derive(Debug, Default)]
pub struct Watches {
    /// One-time data and exists watches.
    pub data: HashSet<String>,
    /// One-time child watches.
    pub child: HashSet<String>,
    /// Persistent watches.
    pub persistent: HashSet<String>,
    /// Persistent recursive watches.
    pub recursive: HashSet<String>,
    /// The one-time data watch on `/zookeeper/config`: the data the client was shown.
    pub config: Option<Vec<u8>>,
}

fn ancestors_or_self(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(path), |p| split_parent(p).map(|(parent, _)| parent))
}

impl Watches {
    /// Number of watches.
    pub fn len(&self) -> usize {
        self.data.len()
            + self.child.len()
            + self.persistent.len()
            + self.recursive.len()
            + usize::from(self.config.is_some())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every watched path (for `wchs`).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        let sets = self.data.iter().chain(&self.child).chain(&self.persistent).chain(&self.recursive);
        sets.map(String::as_str).chain(self.config.as_ref().map(|_| CONFIG_NODE))
    }

    /// Adds a watch on `path`.
    pub fn add(&mut self, kind: NewWatch, path: String) {
        match kind {
            NewWatch::Data => self.data.insert(path),
            NewWatch::Child => self.child.insert(path),
            NewWatch::Persistent => self.persistent.insert(path),
            NewWatch::Recursive => self.recursive.insert(path),
            NewWatch::Config(seen) => self.config.replace(seen).is_none(),
        };
    }

    /// Whether `/zookeeper/config` now reads `now` where its watch was set on other data; the
    /// watch is then gone (it fires once, as NodeDataChanged).
    pub fn config_changed(&mut self, now: &[u8]) -> bool {
        if self.config.as_deref().is_some_and(|seen| seen != now) {
            self.config = None;
            return true;
        }
        false
    }

    fn recursive_covers(&self, path: &str) -> bool {
        !self.recursive.is_empty() && ancestors_or_self(path).any(|p| self.recursive.contains(p))
    }

    /// The events (type, path) `kind` on `path` fires, removing the one-time watches it triggers.
    pub fn fire(&mut self, path: &str, kind: ChangeKind, out: &mut Vec<(i32, String)>) {
        let own = match kind {
            ChangeKind::Created => (event::NODE_CREATED, self.data.remove(path)),
            ChangeKind::DataChanged => (event::NODE_DATA_CHANGED, self.data.remove(path)),
            ChangeKind::Deleted => {
                let data = self.data.remove(path);
                let child = self.child.remove(path);
                (event::NODE_DELETED, data | child)
            }
        };
        if own.1 || self.persistent.contains(path) || self.recursive_covers(path) {
            out.push((own.0, path.to_string()));
        }
        if kind != ChangeKind::DataChanged {
            if let Some((parent, _)) = split_parent(path) {
                if self.child.remove(parent) | self.persistent.contains(parent) {
                    out.push((event::NODE_CHILDREN_CHANGED, parent.to_string()));
                }
            }
        }
    }

    /// Removes `path`'s watches of `kind`; returns whether any existed (`check` only reports).
    pub fn remove(&mut self, path: &str, kind: WatcherType, check: bool) -> bool {
        let sets: Vec<&mut HashSet<String>> = match kind {
            WatcherType::Children => vec![&mut self.child],
            WatcherType::Data => vec![&mut self.data],
            WatcherType::Persistent => vec![&mut self.persistent],
            WatcherType::PersistentRecursive => vec![&mut self.recursive],
            WatcherType::Any => vec![&mut self.data, &mut self.child, &mut self.persistent, &mut self.recursive],
        };
        let mut found = false;
        for set in sets {
            found |= if check { set.contains(path) } else { set.remove(path) };
        }
        if path == CONFIG_NODE && matches!(kind, WatcherType::Data | WatcherType::Any) && self.config.is_some() {
            found = true;
            if !check {
                self.config = None;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(w: &mut Watches, path: &str, kind: ChangeKind) -> Vec<(i32, String)> {
        let mut out = Vec::new();
        w.fire(path, kind, &mut out);
        out
    }

    #[test]
    fn one_time_watches_fire_once_with_zookeepers_event_types() {
        let mut w = Watches::default();
        w.data.insert("/a".into());
        w.child.insert("/".into());
        assert_eq!(
            fire(&mut w, "/a", ChangeKind::Created),
            vec![(event::NODE_CREATED, "/a".into()), (event::NODE_CHILDREN_CHANGED, "/".into())]
        );
        assert!(fire(&mut w, "/a", ChangeKind::DataChanged).is_empty(), "one-time watches are gone");
        w.data.insert("/a".into());
        w.child.insert("/a".into());
        assert_eq!(
            fire(&mut w, "/a", ChangeKind::Deleted),
            vec![(event::NODE_DELETED, "/a".into())],
            "one event per path"
        );
        assert!(w.is_empty());
    }

    #[test]
    fn persistent_and_recursive_watches_stay() {
        let mut w = Watches::default();
        w.persistent.insert("/p".into());
        w.recursive.insert("/r".into());
        for _ in 0..2 {
            assert_eq!(fire(&mut w, "/p", ChangeKind::DataChanged), vec![(event::NODE_DATA_CHANGED, "/p".into())]);
            assert_eq!(fire(&mut w, "/p/c", ChangeKind::Created), vec![(event::NODE_CHILDREN_CHANGED, "/p".into())]);
            assert_eq!(fire(&mut w, "/r/x/y", ChangeKind::Created), vec![(event::NODE_CREATED, "/r/x/y".into())]);
        }
        assert!(w.remove("/r", WatcherType::PersistentRecursive, true));
        assert!(w.remove("/r", WatcherType::Any, false));
        assert!(!w.remove("/r", WatcherType::Any, false));
        assert!(fire(&mut w, "/r/x", ChangeKind::Deleted).is_empty());
    }

    #[test]
    fn the_config_watch_fires_once_when_the_ensemble_description_changes() {
        let mut w = Watches::default();
        w.add(NewWatch::Config(b"server.1=a".to_vec()), CONFIG_NODE.into());
        assert_eq!(w.paths().collect::<Vec<_>>(), vec![CONFIG_NODE]);
        assert!(!w.config_changed(b"server.1=a"), "same data: no event");
        assert!(w.config_changed(b"server.1=a\nserver.2=b"));
        assert!(!w.config_changed(b"server.1=c"), "one-time");
        assert!(w.is_empty());
        w.add(NewWatch::Config(b"x".to_vec()), CONFIG_NODE.into());
        assert!(w.remove(CONFIG_NODE, WatcherType::Data, true));
        assert!(w.remove(CONFIG_NODE, WatcherType::Any, false));
        assert!(!w.config_changed(b"y"), "removed");
    }
}
