//! Backup files and `conclave restore`: seeding a new cluster's data directory from a backup.
//!
//! A backup file is a snapshot file's bytes (`storage::snapshot_file`, any readable format)
//! followed by a 12-byte footer: the CRC-32 (IEEE, little-endian) of those bytes and the magic
//! `CCLVBAK1`. Restore checks the footer, then writes the snapshot into an empty data directory
//! as the node's only snapshot, with Raft metadata of a new cluster: log id (term 0, index of
//! the backup) and the `--initial-cluster` as its committed membership. On start-up openraft
//! takes that snapshot as applied and the (empty) log as purged up to it, so the node is
//! initialized: it does not bootstrap, it campaigns, and the new cluster's log continues after
//! the snapshot's index. Revisions continue from the backup's, since the state is the same.

use crate::raft::cluster_id;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use openraft::{CommittedLeaderId, Membership};

use crate::storage::snapshot_file::{SnapshotContents, SnapshotDir};
use crate::types::{LogId, PeerNode, SnapshotMeta, StoredMembership};

const MAGIC: &[u8; 8] = b"CCLVBAK1";
const FOOTER: usize = 4 + MAGIC.len();

/// A backup file's bytes: `snapshot` followed by its checksum footer (members stream theirs
/// through [`Sealer`]; this whole-buffer form is for tests).
#[cfg(test)]
pub fn seal(snapshot: Vec<u8>) -> Vec<u8> {
    let mut out = Sealer::new(Vec::with_capacity(snapshot.len() + FOOTER));
    out.write_all(&snapshot).unwrap_or_else(|_| unreachable!("writing to a Vec does not fail"));
    out.finish().unwrap_or_else(|_| unreachable!("writing to a Vec does not fail"))
}

/// Writes a backup file as its snapshot bytes are encoded: what is written passes through to
/// `out`, and [`Sealer::finish`] appends the checksum footer (the same bytes as `seal`, the tests' form).
pub struct Sealer<W> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Sealer<W> {
    /// A backup file written into `out`.
    pub fn new(out: W) -> Self {
        Self { out, crc: crc32fast::Hasher::new() }
    }

    /// Appends the footer and returns `out`.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn finish(mut self) -> std::io::Result<W> {
        let crc = self.crc.finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(MAGIC)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The snapshot bytes of a backup file, once its footer checks.
///
/// # Errors
/// When the file is too short, has no footer (not a backup file) or its checksum differs
/// (truncated or corrupt).
pub fn unseal(file: &[u8]) -> Result<&[u8], String> {
    let Some(body_len) = file.len().checked_sub(FOOTER) else {
        return Err(format!("{} bytes: too short for a backup file", file.len()));
    };
    let (body, footer) = file.split_at(body_len);
    if &footer[4..] != MAGIC {
        return Err("not a conclave backup file (no CCLVBAK1 footer)".into());
    }
    let stored = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(format!("checksum mismatch: the file says {stored:08x}, its contents hash to {actual:08x}"));
    }
    Ok(body)
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The store revision the new cluster starts from.
    pub revision: u64,
    /// The Raft log index the new cluster's log continues after.
    pub index: u64,
}

/// Seeds `data_dir` (absent or empty) from the backup file `file` as member `node_id` of a new
/// cluster of `initial_cluster`, with a new cluster id (derived from `initial_cluster`, `token`
/// and the file's checksum: the same on every restored member, never the original's). Every member must be restored from the same file with the
/// same `initial_cluster`, then started with `conclave serve` and that list.
///
/// # Errors
/// When `node_id` is not in `initial_cluster`, `data_dir` holds anything, the file cannot be
/// read or fails its checks, or the snapshot cannot be written durably.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    node_id: u64,
    initial_cluster: &BTreeMap<u64, String>,
    token: &str,
) -> Result<Restored, String> {
    if !initial_cluster.contains_key(&node_id) {
        return Err(format!("--initial-cluster does not list this node (--node-id {node_id})"));
    }
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(format!("{} is not empty: restore only into a new data directory", data_dir.display()));
        }
    }
    let bytes = std::fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    let body = unseal(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let new_id = cluster_id::derive(initial_cluster, token, &format!("restore:{:08x}", crc32fast::hash(body)));
    let mut contents = SnapshotContents::from_bytes(body).map_err(|e| format!("{}: {e}", file.display()))?;
    drop(bytes);
    contents.state.prepare_restore();
    let index = contents.meta.last_log_id.map_or(0, |l| l.index);
    contents.meta = new_cluster_meta(index, initial_cluster);
    crate::storage::file_engine::create_dir_durable(data_dir)
        .map_err(|e| format!("create {}: {e}", data_dir.display()))?;
    let dir = SnapshotDir::open(&data_dir.join("snapshots")).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    // Encoded straight into the file, as a member's own snapshots are.
    dir.save_with(index, |out| contents.write_to(out))?;
    cluster_id::write(data_dir, new_id).map_err(|e| format!("record the cluster id in {}: {e}", data_dir.display()))?;
    Ok(Restored { revision: contents.state.revision(), index })
}

/// Snapshot metadata of a new cluster whose log starts after `index`: term 0 (no leader has
/// been elected in it yet), the initial members as committed voters.
fn new_cluster_meta(index: u64, initial_cluster: &BTreeMap<u64, String>) -> SnapshotMeta {
    let log_id = LogId::new(CommittedLeaderId::new(0, 0), index);
    let voters: BTreeSet<u64> = initial_cluster.keys().copied().collect();
    let nodes: BTreeMap<u64, PeerNode> =
        initial_cluster.iter().map(|(id, addr)| (*id, PeerNode { peer_addr: addr.clone() })).collect();
    let membership = StoredMembership::new(Some(log_id), Membership::new(vec![voters], nodes));
    SnapshotMeta { last_log_id: Some(log_id), last_membership: membership, snapshot_id: format!("restored-0-{index}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_unseals_and_any_damage_is_refused() {
        let file = seal(b"snapshot bytes".to_vec());
        assert_eq!(unseal(&file), Ok(&b"snapshot bytes"[..]));
        let mut flipped = file.clone();
        flipped[3] ^= 1;
        assert!(unseal(&flipped).expect_err("corrupt").contains("checksum mismatch"));
        assert!(unseal(&file[1..]).is_err(), "truncated at the front");
        assert!(unseal(&file[..file.len() - 1]).expect_err("truncated").contains("footer"));
        assert!(unseal(b"short").is_err());
    }

    #[test]
    fn restore_refuses_a_non_empty_data_dir_and_a_node_not_listed() {
        let tmp = tempfile::TempDir::new().expect("tmp");
        let file = tmp.path().join("backup.db");
        std::fs::write(&file, seal(b"x".to_vec())).expect("write");
        let cluster = BTreeMap::from([(1, "127.0.0.1:1".to_owned())]);
        let err = restore(&file, tmp.path(), 1, &cluster, "t").expect_err("non-empty");
        assert!(err.contains("not empty"), "{err}");
        let err = restore(&file, &tmp.path().join("d"), 2, &cluster, "t").expect_err("not listed");
        assert!(err.contains("does not list"), "{err}");
        let err = restore(&file, &tmp.path().join("d"), 1, &cluster, "t").expect_err("not a snapshot");
        assert!(err.contains("backup.db: "), "{err}");
    }
}
