//! Criterion micro-benchmarks of the server's hot paths, without network or Raft:
//! - `apply/*`: `StateMachine::apply_batch` of put, txn (compare mod_revision, then put) and
//!   counter-add proposals, each carrying a request id as the client sends them, in batches of
//!   1 and 256 proposals (one Raft entry each);
//! - `storage/append_flush/{file,sled}`: `LogEngine::append` (which fsyncs) of one log entry holding a batch
//!   of N 256-byte puts, for several N: the cost of one durable point, amortized by batching.
//!
//! `cargo bench -p conclave-bench --bench micro`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use conclave_server::log_entry::{
    encode, BatchV1, Command, Compare, CompareOp, KeyField, LogPayload, Proposal, RequestId, TxnOp,
};
use conclave_server::state_machine::{SmConfig, StateMachine};
use conclave_server::storage::engine::{LogEngine, SledEngine};
use conclave_server::storage::file_engine::FileEngine;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const VALUE: [u8; 256] = [b'v'; 256];
const KEYS: u64 = 1024;

/// Makes the `i`-th command of a kind.
type MakeCommand = fn(u64) -> Command;

fn put(i: u64) -> Command {
    Command::Put { key: format!("key-{}", i % KEYS).into_bytes(), value: VALUE.to_vec(), prev_kv: false, session: 0 }
}

fn txn(i: u64) -> Command {
    // Compare against a revision that does not match: the failure branch (empty) runs after the
    // compare, and the success branch is the put, as in an optimistic update.
    Command::Txn {
        compares: vec![Compare::Key {
            key: format!("key-{}", i % KEYS).into_bytes(),
            op: CompareOp::Greater,
            field: KeyField::ModRevision(0),
        }],
        success: vec![TxnOp::Put {
            key: format!("key-{}", i % KEYS).into_bytes(),
            value: VALUE.to_vec(),
            prev_kv: false,
            session: 0,
        }],
        failure: vec![],
    }
}

fn counter(_: u64) -> Command {
    Command::CounterAdd { name: "checkpoint-id".into(), delta: 1 }
}

/// A batch of `n` proposals from one client, numbered from `seq`.
fn batch(n: u64, seq: &mut u64, make: MakeCommand) -> BatchV1 {
    let proposals = (0..n)
        .map(|_| {
            *seq += 1;
            Proposal {
                request_id: Some(RequestId { client_id: 7, seq: *seq, first_incomplete: *seq }),
                command: make(*seq),
            }
        })
        .collect();
    BatchV1 { leader_time_ms: 1_700_000_000_000, proposals }
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    let kinds: [(&str, MakeCommand); 3] = [("put", put), ("txn", txn), ("counter", counter)];
    for (name, make) in kinds {
        for n in [1u64, 256] {
            g.throughput(Throughput::Elements(n));
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                let mut sm = StateMachine::new(SmConfig::default());
                let (mut seq, mut index) = (0u64, 0u64);
                // Pre-fill every key so puts overwrite (steady state with history).
                let _ = sm.apply_batch(&batch(KEYS, &mut seq, put), 1);
                b.iter_batched(
                    || batch(n, &mut seq, make),
                    |bt| {
                        index += 1;
                        black_box(sm.apply_batch(&bt, index))
                    },
                    criterion::BatchSize::SmallInput,
                );
            });
        }
    }
    g.finish();
}

fn storage(c: &mut Criterion) {
    let mut g = c.benchmark_group("storage");
    g.sample_size(20);
    for n in [1u64, 16, 256, 2048] {
        let mut seq = 0;
        let entry = match encode(&LogPayload::V1(batch(n, &mut seq, put))) {
            Ok(e) => e,
            Err(e) => panic!("encode: {e}"),
        };
        g.throughput(Throughput::Elements(n));
        for engine_name in ["file", "sled"] {
            g.bench_with_input(BenchmarkId::new(format!("append_flush/{engine_name}"), n), &entry, |b, entry| {
                let dir = match tempfile::tempdir() {
                    Ok(d) => d,
                    Err(e) => panic!("tempdir: {e}"),
                };
                let opened: Result<Box<dyn LogEngine>, String> = match engine_name {
                    "file" => FileEngine::open(dir.path())
                        .map(|e| Box::new(e) as Box<dyn LogEngine>)
                        .map_err(|e| e.to_string()),
                    _ => SledEngine::open(dir.path())
                        .map(|e| Box::new(e) as Box<dyn LogEngine>)
                        .map_err(|e| e.to_string()),
                };
                let engine = match opened {
                    Ok(e) => e,
                    Err(e) => panic!("open {engine_name}: {e}"),
                };
                let mut index = 0u64;
                b.iter(|| {
                    index += 1;
                    if let Err(e) = engine.append(vec![(index, entry.clone())]) {
                        panic!("append: {e}");
                    }
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, apply, storage);
criterion_main!(benches);
