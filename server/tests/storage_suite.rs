//! openraft's storage conformance suite against Conclave's real stores (the [`LogStore`] over
//! each log engine, sled and segment files, and the snapshot-file [`SmStore`]), plus restart
//! checks of the log store on each engine.
#![allow(clippy::result_large_err)] // openraft's StorageError, as the suite returns it

use std::fmt::Display;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use conclave_server::log_entry::{BatchV1, Command, LogPayload, Proposal};
use conclave_server::raft::{LogId, NodeId, StorageError, TypeConfig};
use conclave_server::storage::engine::{EngineResult, LogEngine, SledEngine};
use conclave_server::storage::file_engine::FileEngine;
use conclave_server::storage::log_store::LogStore;
use conclave_server::storage::sm_store::SmStore;
use conclave_server::storage::snapshot_file::SnapshotDir;
use openraft::storage::{LogState, RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftLogReader, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;

fn err(e: impl Display) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, std::io::Error::other(e.to_string()))
}

/// The log engines under test.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sled,
    File,
}

const KINDS: [Kind; 2] = [Kind::Sled, Kind::File];

fn open_engine(kind: Kind, dir: &Path) -> Result<Arc<dyn LogEngine>, StorageError> {
    Ok(match kind {
        Kind::Sled => Arc::new(open_sled(dir)?),
        Kind::File => Arc::new(FileEngine::open(dir).map_err(err)?),
    })
}

/// Opens sled, waiting (bounded) for the previous handle's lock: sled's IO threads may hold the
/// database a moment after the handle of a "restarted" store in this process was dropped.
fn open_sled(dir: &Path) -> Result<SledEngine, StorageError> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledEngine::open(dir) {
            Ok(e) => return Ok(e),
            Err(e) if e.0.contains("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5)); // poll the lock
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// The member the stores belong to. openraft's suite votes for several nodes, this one among
/// them, so both the pipelined (own term) and the synchronous append are exercised.
const SUITE_NODE: u64 = 1;

fn open_log(kind: Kind, dir: &Path) -> Result<LogStore, StorageError> {
    Ok(LogStore::new(open_engine(kind, dir)?, SUITE_NODE))
}

fn open_sm(dir: &Path) -> Result<SmStore, StorageError> {
    SmStore::open(SnapshotDir::open(dir).map_err(err)?).map_err(err)
}

/// Builds both stores in a fresh temporary directory, which lives as long as the guard.
struct Builder(Kind);

impl StoreBuilder<TypeConfig, LogStore, SmStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, SmStore), StorageError> {
        let dir = TempDir::new().map_err(err)?;
        let log = open_log(self.0, &dir.path().join("log"))?;
        let sm = open_sm(&dir.path().join("snapshots"))?;
        Ok((dir, log, sm))
    }
}

type ConclaveSuite = Suite<TypeConfig, LogStore, SmStore, Builder, TempDir>;

#[test]
fn openraft_storage_suite_sled() -> Result<(), StorageError> {
    ConclaveSuite::test_all(Builder(Kind::Sled))
}

#[test]
fn openraft_storage_suite_segment_files() -> Result<(), StorageError> {
    ConclaveSuite::test_all(Builder(Kind::File))
}

/// The log id the suite's entries carry (leader node 0).
fn log_id(term: u64, index: u64) -> LogId {
    openraft::testing::log_id::<NodeId>(term, 0, index)
}

#[tokio::test]
async fn purge_point_vote_and_committed_survive_restart() -> Result<(), StorageError> {
    for kind in KINDS {
        purge_point_vote_and_committed_survive_restart_on(kind).await?;
    }
    Ok(())
}

async fn purge_point_vote_and_committed_survive_restart_on(kind: Kind) -> Result<(), StorageError> {
    let dir = TempDir::new().map_err(err)?;
    let path = dir.path().join("log");
    let before = {
        let mut log = open_log(kind, &path)?;
        ConclaveSuite::feed_10_logs_vote_self(&mut log).await?; // entries 0..=10
        log.purge(log_id(1, 4)).await?;
        log.save_committed(Some(log_id(1, 8))).await?;
        log.save_vote(&Vote::new(3, 2)).await?; // durable, and flushes the committed write too
        log.get_log_state().await?
    };
    assert_eq!(before, LogState { last_purged_log_id: Some(log_id(1, 4)), last_log_id: Some(log_id(1, 10)) });

    let mut log = open_log(kind, &path)?;
    assert_eq!(log.get_log_state().await?, before, "log state after restart");
    assert_eq!(log.read_vote().await?, Some(Vote::new(3, 2)), "vote after restart");
    assert_eq!(log.read_committed().await?, Some(log_id(1, 8)), "committed after restart");
    let indexes: Vec<u64> = log.try_get_log_entries(0..).await?.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (5..=10).collect::<Vec<_>>(), "purged entries stay purged");

    // Purging everything: the last log id is the purge point, also after a restart.
    log.purge(log_id(1, 10)).await?;
    drop(log);
    let mut log = open_log(kind, &path)?;
    let purged = Some(log_id(1, 10));
    assert_eq!(log.get_log_state().await?, LogState { last_purged_log_id: purged, last_log_id: purged });
    assert!(log.try_get_log_entries(0..).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn truncate_survives_restart() -> Result<(), StorageError> {
    for kind in KINDS {
        truncate_survives_restart_on(kind).await?;
    }
    Ok(())
}

async fn truncate_survives_restart_on(kind: Kind) -> Result<(), StorageError> {
    let dir = TempDir::new().map_err(err)?;
    let path = dir.path().join("log");
    {
        let mut log = open_log(kind, &path)?;
        ConclaveSuite::feed_10_logs_vote_self(&mut log).await?;
        log.truncate(log_id(1, 7)).await?;
    }
    let mut log = open_log(kind, &path)?;
    assert_eq!(log.get_log_state().await?, LogState { last_purged_log_id: None, last_log_id: Some(log_id(1, 6)) });
    assert_eq!(log.try_get_log_entries(0..).await?.len(), 7);
    Ok(())
}

/// An engine whose purges are lost: the state after a crash right after `purge` recorded the
/// purge point durably but before the (not necessarily durable) deletion reached the disk.
struct LostPurges(Arc<dyn LogEngine>);

impl LogEngine for LostPurges {
    fn get_meta(&self, key: &str) -> EngineResult<Option<Vec<u8>>> {
        self.0.get_meta(key)
    }
    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> EngineResult<()> {
        self.0.put_meta(key, value, durable)
    }
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        self.0.append(entries)
    }
    fn range(&self, start: u64, end: u64) -> EngineResult<Vec<(u64, Vec<u8>)>> {
        self.0.range(start, end)
    }
    fn last(&self) -> EngineResult<Option<(u64, Vec<u8>)>> {
        self.0.last()
    }
    fn truncate_from(&self, from: u64) -> EngineResult<()> {
        self.0.truncate_from(from)
    }
    fn purge_upto(&self, _upto: u64) -> EngineResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_purge_interrupted_by_a_crash_is_completed_on_restart() -> Result<(), StorageError> {
    for kind in KINDS {
        a_purge_interrupted_by_a_crash_is_completed_on_restart_on(kind).await?;
    }
    Ok(())
}

async fn a_purge_interrupted_by_a_crash_is_completed_on_restart_on(kind: Kind) -> Result<(), StorageError> {
    let dir = TempDir::new().map_err(err)?;
    let path = dir.path().join("log");
    {
        let mut log = LogStore::new(Arc::new(LostPurges(open_engine(kind, &path)?)), SUITE_NODE);
        ConclaveSuite::feed_10_logs_vote_self(&mut log).await?; // entries 0..=10 at term 1
                                                                // An installed snapshot purges beyond the end of the log; the deletion is lost.
        log.purge(log_id(2, 20)).await?;
    }
    let mut log = open_log(kind, &path)?;
    let purged = Some(log_id(2, 20));
    assert_eq!(
        log.get_log_state().await?,
        LogState { last_purged_log_id: purged, last_log_id: purged },
        "the last log id is never behind the purge point"
    );
    assert!(log.try_get_log_entries(0..).await?.is_empty(), "entries up to the purge point are gone");
    Ok(())
}

/// A log entry putting `count` keys of `size` bytes each.
fn big_entry(index: u64, count: usize, size: usize) -> openraft::Entry<TypeConfig> {
    let proposals = (0..count)
        .map(|i| Proposal {
            request_id: None,
            command: Command::Put {
                key: format!("{index}/{i}").into_bytes(),
                value: vec![7; size],
                prev_kv: false,
                session: 0,
            },
        })
        .collect();
    let batch = BatchV1 { leader_time_ms: 0, proposals };
    openraft::Entry { log_id: log_id(1, index), payload: EntryPayload::Normal(LogPayload::V1(batch)) }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_built_during_an_install_does_not_replace_the_newer_one() -> Result<(), StorageError> {
    // The newer snapshot, as a leader would send it: small, at index 100.
    let leader_dir = TempDir::new().map_err(err)?;
    let mut leader = open_sm(leader_dir.path())?;
    leader
        .apply((1..=100).map(|i| openraft::Entry::<TypeConfig> { log_id: log_id(1, i), payload: EntryPayload::Blank }))
        .await?;
    leader.get_snapshot_builder().await.build_snapshot().await?;
    // A leader sends its snapshot from the file (the builder's answer carries only metadata).
    let newer = leader.get_current_snapshot().await?.expect("the snapshot just built");

    // The follower holds a large state at index 5, so building its snapshot takes a while.
    let dir = TempDir::new().map_err(err)?;
    let mut follower = open_sm(&dir.path().join("snapshots"))?;
    follower.apply((1..=5).map(|i| big_entry(i, 2_000, 1_000))).await?;
    let mut builder = follower.get_snapshot_builder().await;
    let build = builder.build_snapshot();
    tokio::pin!(build);
    // The first poll starts the build on its own thread. Build and install are serialized, in
    // either order: the build captures index 5 before the install (usually: it has started), or
    // captures the installed state at 100 when the install got there first. Neither order may
    // leave the build's snapshot current.
    assert!(futures::poll!(&mut build).is_pending(), "building a large snapshot takes a while");
    let started = Instant::now();
    follower.install_snapshot(&newer.meta, Box::new(Cursor::new(newer.snapshot.into_inner()))).await?;
    let installed_after = started.elapsed();
    let built = build.await?;
    eprintln!(
        "install took {installed_after:?}, the build {:?}, built at {:?}",
        started.elapsed(),
        built.meta.last_log_id
    );
    assert!(
        [Some(log_id(1, 5)), Some(log_id(1, 100))].contains(&built.meta.last_log_id),
        "the build captured the state before or after the install, not {:?}",
        built.meta.last_log_id
    );

    let current = follower.get_current_snapshot().await?.expect("a snapshot");
    assert_eq!(current.meta, newer.meta, "the installed snapshot stays current");
    drop(follower);
    let mut reopened = open_sm(&dir.path().join("snapshots"))?;
    assert_eq!(reopened.applied_state().await?.0, Some(log_id(1, 100)), "and is the one on disk");
    Ok(())
}

/// Apply waits for a long holder of the state machine's read lock (a snapshot being encoded on
/// the blocking pool) without blocking its thread: on a current-thread runtime, other tasks
/// (heartbeats, reads, the network) go on meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn apply_waiting_for_the_state_lock_does_not_block_the_runtime() -> Result<(), StorageError> {
    let dir = TempDir::new().map_err(err)?;
    let mut sm = open_sm(dir.path())?;
    let shared = sm.shared();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _read = shared.sm.read().expect("read lock");
        held_tx.send(()).expect("signal");
        std::thread::sleep(std::time::Duration::from_millis(300));
    });
    held_rx.recv().map_err(err)?;
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    sm.apply([openraft::Entry::<TypeConfig> { log_id: log_id(1, 1), payload: EntryPayload::Blank }]).await?;
    ticker.abort();
    holder.join().map_err(|_| err("holder panicked"))?;
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ticks >= 10, "only {ticks} ticks of 5 ms while apply waited ~300 ms for the lock");
    assert_eq!(sm.applied_state().await?.0, Some(log_id(1, 1)));
    Ok(())
}
