//! Power loss under the storage: the segment-file engine and the snapshot directory on a
//! `conclave-faultfs` mount, which loses every write and every directory change not made
//! durable by an fsync. A cut is armed before the n-th fsync of an operation, for every n, so
//! each crash state the operation can leave is checked. Needs /dev/fuse and root (as CI).

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_faultfs::FaultFs;
use conclave_server::storage::engine::LogEngine;
use conclave_server::storage::file_engine::FileEngine;
use conclave_server::storage::snapshot_file::SnapshotDir;
use conclave_testkit::wait_for;
use tempfile::TempDir;

/// How long the cluster tests wait for any one condition.
const T: Duration = Duration::from_secs(30);

/// Tiny segments: a few entries each, so a test crosses segment boundaries.
const SEGMENT: u64 = 100;

struct Disk {
    fs: FaultFs,
    _tmp: TempDir,
}

impl Disk {
    fn new() -> Self {
        let tmp = TempDir::new().expect("tmp");
        let fs = FaultFs::mount(&tmp.path().join("backing"), &tmp.path().join("mnt")).expect("mount faultfs");
        Self { fs, _tmp: tmp }
    }

    /// The engine's directory, below the mount root as in a node's data dir.
    fn engine_dir(&self) -> PathBuf {
        self.fs.mountpoint().join("data").join("raftlog")
    }
}

fn open(dir: &Path) -> FileEngine {
    FileEngine::open_with_segment_bytes(dir, SEGMENT).expect("open the engine")
}

fn entry(i: u64) -> (u64, Vec<u8>) {
    (i, format!("entry-{i}").into_bytes())
}

fn all(e: &FileEngine) -> Vec<(u64, Vec<u8>)> {
    e.range(0, u64::MAX).expect("range")
}

#[test]
fn acknowledged_appends_survive_a_power_cut() {
    let disk = Disk::new();
    let e = open(&disk.engine_dir());
    for i in 1..=7 {
        e.append(vec![entry(i)]).expect("append");
    }
    drop(e);
    disk.fs.power_cut().expect("cut");
    let e = open(&disk.engine_dir());
    assert_eq!(all(&e), (1..=7).map(entry).collect::<Vec<_>>(), "every acknowledged append is kept");
}

/// A new leader's conflicting append truncates into an older segment, deleting the newer
/// ones. Whatever instant the power goes, entries 1..=4 (before the conflict) stay, and what
/// follows them is the old log (or a prefix of it), or the new entry if the append got far
/// enough; never a hole, never old entries after the new one.
/// The leader's pipelined appends: written first, fsynced later by the flusher.
#[test]
fn a_sync_makes_every_earlier_unsynced_append_durable_across_segments() {
    let disk = Disk::new();
    let e = open(&disk.engine_dir());
    // Seven entries cross several 100-byte segments; the sync must cover the rotated ones.
    for i in 1..=7 {
        e.append_unsynced(vec![entry(i)]).expect("write");
    }
    e.sync().expect("sync");
    e.append_unsynced(vec![entry(8)]).expect("write");
    drop(e);
    disk.fs.power_cut().expect("cut");
    let e = open(&disk.engine_dir());
    let kept = all(&e);
    assert_eq!(kept[..7], (1..=7).map(entry).collect::<Vec<_>>(), "an append covered by a sync was lost");
    assert!(kept.len() <= 8);
}

/// A member that stops leading appends synchronously; its earlier unsynced appends, in
/// segments it already rotated away from, must be durable when that append returns.
#[test]
fn a_synchronous_append_makes_the_unsynced_appends_before_it_durable() {
    let disk = Disk::new();
    let e = open(&disk.engine_dir());
    for i in 1..=6 {
        e.append_unsynced(vec![entry(i)]).expect("write");
    }
    e.append(vec![entry(7)]).expect("append");
    drop(e);
    disk.fs.power_cut().expect("cut");
    let e = open(&disk.engine_dir());
    assert_eq!(all(&e), (1..=7).map(entry).collect::<Vec<_>>(), "entries before a synchronous append were lost");
}

#[test]
fn a_conflicting_append_that_deletes_segments_survives_a_power_cut_at_every_sync() {
    let old: Vec<(u64, Vec<u8>)> = (1..=12).map(entry).collect();
    let new = (5, b"new leader's entry".to_vec());
    for n in 1.. {
        let disk = Disk::new();
        let e = open(&disk.engine_dir());
        for en in &old {
            e.append(vec![en.clone()]).expect("append");
        }
        assert!(e.range(0, 100).expect("range").len() == 12);
        disk.fs.power_cut_before_sync(n);
        let acked = e.append(vec![new.clone()]).is_ok();
        drop(e);
        let cut_during_append = disk.fs.cuts() > 0;
        if !cut_during_append {
            disk.fs.power_cut().expect("cut after the append");
        }
        let got = all(&open(&disk.engine_dir()));
        let mut with_new = old[..4].to_vec();
        with_new.push(new.clone());
        if acked {
            assert_eq!(got, with_new, "acknowledged append lost (cut before sync #{n})");
        } else {
            assert_eq!(got[..4.min(got.len())], old[..4], "entries before the conflict lost (cut before sync #{n})");
            let tail_ok = got == with_new || (got.len() >= 4 && got[..] == old[..got.len()]);
            assert!(tail_ok, "cut before sync #{n} left {:?}", got.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        }
        if !cut_during_append {
            break;
        }
    }
}

/// `truncate_from` on its own, likewise.
#[test]
fn a_truncate_that_deletes_segments_survives_a_power_cut_at_every_sync() {
    let old: Vec<(u64, Vec<u8>)> = (1..=12).map(entry).collect();
    for n in 1.. {
        let disk = Disk::new();
        let e = open(&disk.engine_dir());
        for en in &old {
            e.append(vec![en.clone()]).expect("append");
        }
        disk.fs.power_cut_before_sync(n);
        let acked = e.truncate_from(5).is_ok();
        drop(e);
        let cut_during = disk.fs.cuts() > 0;
        if !cut_during {
            disk.fs.power_cut().expect("cut after the truncate");
        }
        let got = all(&open(&disk.engine_dir()));
        if acked {
            assert_eq!(got, old[..4].to_vec(), "acknowledged truncate undone (cut before sync #{n})");
        } else {
            assert!(
                got.len() >= 4 && got[..] == old[..got.len()],
                "cut before sync #{n} left {:?}",
                got.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            );
        }
        if !cut_during {
            break;
        }
    }
}

/// The vote (a durable metadata write: temp file, fsync, rename, fsync of the directory) is
/// the old or the new value at every crash point, never missing.
#[test]
fn a_durable_metadata_write_is_old_or_new_at_every_sync() {
    for n in 1.. {
        let disk = Disk::new();
        let e = open(&disk.engine_dir());
        e.put_meta("vote", b"term 1", true).expect("first vote");
        disk.fs.power_cut_before_sync(n);
        let acked = e.put_meta("vote", b"term 2", true).is_ok();
        drop(e);
        let cut_during = disk.fs.cuts() > 0;
        if !cut_during {
            disk.fs.power_cut().expect("cut after the write");
        }
        let got = open(&disk.engine_dir()).get_meta("vote").expect("read");
        if acked {
            assert_eq!(got.as_deref(), Some(&b"term 2"[..]), "cut before sync #{n}");
        } else {
            assert!(matches!(got.as_deref(), Some(b"term 1" | b"term 2")), "cut before sync #{n}: {got:?}");
        }
        if !cut_during {
            break;
        }
    }
}

#[test]
fn a_saved_snapshot_survives_a_power_cut() {
    let disk = Disk::new();
    let dir = disk.fs.mountpoint().join("data").join("snapshots");
    SnapshotDir::open(&dir).expect("open").save(42, b"state at 42").expect("save");
    disk.fs.power_cut().expect("cut");
    let back = SnapshotDir::open(&dir).expect("open").load_latest().expect("load");
    assert_eq!(back.as_deref(), Some(&b"state at 42"[..]), "a saved snapshot is durable");
}

/// A large snapshot is flushed piece by piece, so that a Raft log fsync on the same disk never
/// waits behind the whole file's writeback (at 1,000,000 keys, 276 MiB flushed at once stalled
/// writes for up to 711 ms). A power cut at any of those flushes keeps the previous snapshot.
#[test]
fn a_large_snapshot_is_flushed_in_pieces_and_is_old_or_new_at_every_sync() {
    use conclave_server::storage::snapshot_file::SNAPSHOT_SYNC_BYTES;

    let big: Vec<u8> = (0..3 * SNAPSHOT_SYNC_BYTES + 1).map(|i| (i % 251) as u8).collect();
    let disk = Disk::new();
    let dir = disk.fs.mountpoint().join("data").join("snapshots");
    SnapshotDir::open(&dir).expect("open").save(1, b"state at 1").expect("save");
    let before = disk.fs.syncs();
    SnapshotDir::open(&dir).expect("open").save(2, &big).expect("save");
    let syncs = disk.fs.syncs() - before;
    assert!(syncs >= 4, "a {} MiB snapshot was flushed in {syncs} syncs, not piece by piece", big.len() >> 20);
    for n in 1..=syncs {
        let disk = Disk::new();
        let dir = disk.fs.mountpoint().join("data").join("snapshots");
        SnapshotDir::open(&dir).expect("open").save(1, b"state at 1").expect("save");
        disk.fs.power_cut_before_sync(n);
        let _ = SnapshotDir::open(&dir).expect("open").save(2, &big);
        let back = SnapshotDir::open(&dir).expect("open").load_latest().expect("load");
        assert!(
            back.as_deref() == Some(&b"state at 1"[..]) || back.as_deref() == Some(&big[..]),
            "a power cut at sync {n} left neither snapshot"
        );
    }
}

/// After a power loss of every node the committed index (saved without fsync) is gone, and
/// openraft 0.9 restores the old leader as leader of its term at once, serving linearizable
/// reads from its term's first entry on. A read must still see every write acknowledged
/// before the cut, even while the leader is re-replicating to a follower far behind (so its
/// commit index climbs back in steps). Found by the jepsen `power` nemesis.
#[tokio::test(flavor = "multi_thread")]
async fn reads_after_a_power_loss_of_every_node_see_every_acknowledged_write() -> anyhow::Result<()> {
    let (tmp, disks, mut c) = three_members_on_faultfs().await?;
    let leader = c.wait_for_leader(T).await?;
    let behind = if leader == 1 { 2 } else { 1 };
    c.kill(behind)?;
    let client = c.client_of(leader).await?;
    for i in 0..400 {
        client.put(format!("k{i}"), format!("v{i}")).await?;
    }
    drop(client);
    c.kill_all();
    for d in &disks {
        d.power_cut()?;
    }
    // The old leader comes back first (as leader, waiting for a quorum), then the follower
    // that missed the 400 writes.
    c.restart(leader)?;
    let reader = c.client_of(leader).await?;
    let read =
        tokio::spawn(
            async move { wait_for("a linearizable read", T, || async { reader.get("k399").await.ok() }).await },
        );
    c.restart(behind)?;
    let got = read.await??;
    assert_eq!(got.map(|kv| kv.value), Some(b"v399".to_vec()), "the last acknowledged write is read back");
    drop(c);
    drop(disks);
    drop(tmp);
    Ok(())
}

/// The leader sends a write to its followers while its own fsync of it runs (pipelined
/// appends), but answers it, and lets followers apply it, only once that fsync succeeded.
/// Here the leader's power is cut instead of that fsync: the follower holds the entry (it was
/// replicated before the leader's disk had it), nobody applied it, the client was not told it
/// succeeded, and the cluster goes on without it. Before pipelining, the follower never
/// received the entry (the leader replicated only after its fsync).
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_replicates_before_its_fsync_but_answers_only_after_it() -> anyhow::Result<()> {
    let (tmp, disks, mut c) = three_members_on_faultfs().await?;
    let leader = c.wait_for_leader(T).await?;
    let follower = if leader == 1 { 2 } else { 1 };
    let other = 6 - leader - follower;
    let client = c.client_of(leader).await?;
    client.put("before", "1").await?;
    // Only the leader and one follower are left: the write can live only on these two.
    c.kill(other)?;
    let at = wait_for("the follower to apply everything so far", T, || async {
        let (l, f) = (c.status(leader).await.ok()?, c.status(follower).await.ok()?);
        (f.applied_index == l.applied_index && f.last_log_index == l.last_log_index).then_some(f)
    })
    .await?;

    disks[(leader - 1) as usize].power_cut_before_sync(1);
    let write = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(10), client.put("k", "v")).await });
    let answered = write.await?;
    assert!(
        !matches!(answered, Ok(Ok(_))),
        "a write was acknowledged although the leader's fsync of it failed: {answered:?}"
    );
    // The leader is stopped now (its fsync failed), so the follower's state is final: it holds
    // the write, sent before the leader's fsync, and has not applied it. (Anything else the
    // leader committed before the cut, it has applied by now.)
    let f = c.status(follower).await?;
    assert!(
        f.last_log_index > at.last_log_index,
        "the follower never received the write: the leader did not replicate before its fsync"
    );
    assert!(
        f.applied_index < f.last_log_index,
        "the follower applied an entry the leader's disk never held (applied {}, log {})",
        f.applied_index,
        f.last_log_index
    );

    // The two members without the entry go on; the follower that holds it rejoins and drops it.
    c.kill(leader)?;
    c.kill(follower)?;
    c.restart(leader)?;
    c.restart(other)?;
    let writer = wait_for("a leader among the members without the entry", T, || async {
        let client = c.client().await.ok()?;
        client.put("after", "2").await.ok().map(|_| client)
    })
    .await?;
    c.restart(follower)?;
    wait_for("the rejoined follower to agree", T, || async {
        let s = c.status(follower).await.ok().filter(|s| s.leader_id != 0)?;
        let l = c.status(s.leader_id).await.ok()?;
        (s.applied_index == l.applied_index && s.last_log_index == l.last_log_index).then_some(())
    })
    .await?;
    assert_eq!(writer.get("before").await?.map(|kv| kv.value), Some(b"1".to_vec()));
    assert_eq!(writer.get("after").await?.map(|kv| kv.value), Some(b"2".to_vec()));
    assert!(c.panics().is_empty(), "a member panicked: {:?}", c.panics());
    drop(c);
    drop(disks);
    drop(tmp);
    Ok(())
}

/// A 3-member cluster whose data directories are each on their own faultfs mount; the
/// directory holding them all lives as long as the returned guard.
async fn three_members_on_faultfs() -> anyhow::Result<(TempDir, Vec<FaultFs>, conclave_testkit::Cluster)> {
    use conclave_testkit::{Cluster, ClusterOptions};

    let tmp = TempDir::new()?;
    let base = tmp.path().to_path_buf();
    let disks: Vec<FaultFs> = (1..=3)
        .map(|id| FaultFs::mount(&base.join(format!("disk{id}")), &base.join(format!("node{id}"))))
        .collect::<Result<_, _>>()?;
    let c = Cluster::start_with(ClusterOptions { nodes: 3, base_dir: Some(base), ..Default::default() }).await?;
    Ok((tmp, disks, c))
}
