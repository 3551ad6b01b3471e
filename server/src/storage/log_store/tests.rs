//! The flusher: a callback fires only after a sync that covers its batch, in append order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::{flush_loop, Flushed};
use crate::storage::engine::{EngineError, EngineResult, LogEngine};

/// An engine that records, for each append, how many syncs had completed before it was
/// written, and whose `sync` waits for the test to open a gate.
#[derive(Default)]
struct CountingEngine {
    syncs_done: AtomicUsize,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

impl LogEngine for CountingEngine {
    fn get_meta(&self, _key: &str) -> EngineResult<Option<Vec<u8>>> {
        Ok(None)
    }
    fn put_meta(&self, _key: &str, _value: &[u8], _durable: bool) -> EngineResult<()> {
        Ok(())
    }
    fn append(&self, _entries: Vec<(u64, Vec<u8>)>) -> EngineResult<()> {
        Ok(())
    }
    fn range(&self, _start: u64, _end: u64) -> EngineResult<Vec<(u64, Vec<u8>)>> {
        Ok(Vec::new())
    }
    fn last(&self) -> EngineResult<Option<(u64, Vec<u8>)>> {
        Ok(None)
    }
    fn truncate_from(&self, _from: u64) -> EngineResult<()> {
        Ok(())
    }
    fn purge_upto(&self, _upto: u64) -> EngineResult<()> {
        Ok(())
    }
    fn sync(&self) -> EngineResult<()> {
        if let Some(gate) = self.gate.lock().map_err(|e| EngineError(e.to_string()))?.as_ref() {
            gate.recv().map_err(|e| EngineError(e.to_string()))?;
        }
        self.syncs_done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A callback that reports (its batch, the syncs completed when it fired, its result).
struct Probe {
    batch: usize,
    engine: Arc<CountingEngine>,
    fired: mpsc::Sender<(usize, usize, bool)>,
}

impl Flushed for Probe {
    fn completed(self, result: Result<(), std::io::Error>) {
        let _ = self.fired.send((self.batch, self.engine.syncs_done.load(Ordering::SeqCst), result.is_ok()));
    }
}

#[test]
fn a_callback_fires_only_after_a_sync_that_covers_its_batch_in_append_order() {
    let (open_gate, gate) = mpsc::channel();
    let engine = Arc::new(CountingEngine { syncs_done: AtomicUsize::new(0), gate: Mutex::new(Some(gate)) });
    let (tx, rx) = mpsc::channel::<Probe>();
    let (fired_tx, fired) = mpsc::channel();
    let flusher = {
        let engine = engine.clone();
        std::thread::spawn(move || flush_loop(engine.as_ref(), &rx))
    };
    // Three batches queued while the first sync is held at the gate.
    for batch in 0..3 {
        tx.send(Probe { batch, engine: engine.clone(), fired: fired_tx.clone() }).expect("queue");
    }
    assert!(
        fired.recv_timeout(std::time::Duration::from_millis(200)).is_err(),
        "a callback fired while its sync was still running"
    );
    // Let every sync through; each callback must see at least one completed sync.
    for _ in 0..3 {
        open_gate.send(()).expect("open the gate");
    }
    let got: Vec<(usize, usize, bool)> = (0..3).map(|_| fired.recv().expect("fired")).collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 1, 2], "callbacks out of append order");
    assert!(got.iter().all(|&(_, syncs, ok)| syncs >= 1 && ok), "a callback fired before any sync: {got:?}");
    drop(tx);
    flusher.join().expect("the flusher ends when its queue closes");
    // One sync may cover several batches: never more syncs than batches.
    assert!(engine.syncs_done.load(Ordering::SeqCst) <= 3);
}
