//! The properties the fuzz targets (`fuzz/`) check, as plain functions: the fuzzers call them on
//! generated inputs, and `cargo test` (`tests/fuzz_corpora.rs`) calls them on the kept corpora,
//! so every input a fuzzer once found interesting stays a regression test.
//!
//! Each function panics when the property fails (that is how libFuzzer reports a finding) and
//! returns normally for any input that is merely malformed.

use conclave_proto::v1 as pb;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use prost::Message;

use crate::log_entry::{decode, encode, BatchV1, LogPayload, Proposal};
use crate::service::validate;
use crate::state_machine::{SmConfig, StateMachine};
use crate::types::TypeConfig;

/// Peer-port payloads: every type a member decodes from another member's message is refused or
/// decoded, never a panic or an allocation of what a length prefix claims.
pub fn peer_message(bytes: &[u8]) {
    let _ = decode::<Proposal>(bytes);
    let _ = decode::<AppendEntriesRequest<TypeConfig>>(bytes);
    let _ = decode::<InstallSnapshotRequest<TypeConfig>>(bytes);
    let _ = decode::<VoteRequest<u64>>(bytes);
    let _ = decode::<crate::node::SessionTimesRequest>(bytes);
    let _ = decode::<Result<crate::state_machine::response::CommandResult, crate::error::Error>>(bytes);
}

/// Log records: a record that decodes re-encodes to a record that decodes to the same entry.
///
/// # Panics
/// When the round trip changes the entry.
pub fn log_entry(bytes: &[u8]) {
    if let Ok(entry) = decode::<openraft::Entry<TypeConfig>>(bytes) {
        let again = encode(&entry).expect("a decoded entry encodes");
        let back: openraft::Entry<TypeConfig> = decode(&again).expect("a re-encoded entry decodes");
        assert_eq!(back.log_id, entry.log_id);
        assert_eq!(format!("{:?}", back.payload), format!("{:?}", entry.payload));
    }
    let _ = decode::<LogPayload>(bytes);
}

/// Public requests: the first byte picks the message type, the rest is its protobuf encoding;
/// decoding and validation answer a value or an error, and a validated command fits the log.
///
/// # Panics
/// When validation accepts a command the log cannot encode.
pub fn public_request(bytes: &[u8]) {
    let Some((kind, body)) = bytes.split_first() else { return };
    let command = match kind % 8 {
        0 => pb::PutRequest::decode(body).ok().map(|r| validate::put(&r)),
        1 => {
            // A read, not a command: validation only.
            if let Ok(r) = pb::RangeRequest::decode(body) {
                let _ = validate::range(&r);
            }
            None
        }
        2 => pb::DeleteRangeRequest::decode(body).ok().map(|r| validate::delete_range(&r)),
        3 => pb::TxnRequest::decode(body).ok().map(|r| validate::txn(&r)),
        4 => pb::CounterAddRequest::decode(body).ok().map(|r| validate::counter_add(&r)),
        5 => pb::CounterSetRequest::decode(body).ok().map(|r| validate::counter_set(&r)),
        6 => pb::LeaseAcquireRequest::decode(body).ok().map(|r| validate::lease_acquire(&r)),
        _ => pb::LeaseReleaseRequest::decode(body).ok().map(|r| validate::lease_release(&r)),
    };
    if let Some(Ok(command)) = command {
        let proposal = Proposal { request_id: None, command };
        let bytes = encode(&proposal).expect("a validated command encodes");
        assert_eq!(decode::<Proposal>(&bytes).expect("and decodes"), proposal);
    }
}

/// Apply: a sequence of batches (bincode `Vec<BatchV1>`) applied by two replicas gives the same
/// results and the same state, also when one of them restarts from a snapshot half-way.
///
/// # Panics
/// When the replicas differ.
pub fn apply_sequence(bytes: &[u8]) {
    let Ok(batches) = decode::<Vec<BatchV1>>(bytes) else { return };
    let config = SmConfig { history_revisions: 8 };
    let (mut a, mut b) = (StateMachine::new(config), StateMachine::new(config));
    for (i, batch) in batches.iter().enumerate() {
        let index = i as u64 + 1;
        if i == batches.len() / 2 {
            let snapshot = encode(&b).expect("state encodes");
            b = decode(&snapshot).expect("a snapshot decodes");
        }
        assert_eq!(a.apply_batch(batch, index), b.apply_batch(batch, index), "results differ at batch {i}");
    }
    assert_eq!(a, b, "replicas diverged");
}
