//! Decoding bounds: valid payloads round-trip at every limit tier; lying length prefixes and
//! mutated encodings are refused without panicking or allocating what they claim.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

use super::*;
use crate::types::TypeConfig;

fn put(key_len: usize, value_len: usize) -> Proposal {
    Proposal {
        request_id: None,
        command: Command::Put { key: vec![7; key_len], value: vec![9; value_len], prev_kv: false, session: 0 },
    }
}

#[test]
fn values_at_every_limit_tier_round_trip() {
    // Around the 64 KiB and 1 MiB tiers, where the limit is closest to the input's length.
    for value_len in [0, (1 << 16) - 20, (1 << 16) + 1, (1 << 20) - 20, (1 << 20) + 5, 3 << 20] {
        let p = put(16, value_len);
        let bytes = encode(&p).expect("encode");
        assert_eq!(decode::<Proposal>(&bytes).expect("decode"), p, "value of {value_len} bytes");
    }
}

#[test]
fn integer_dense_payloads_round_trip_at_every_limit_tier() {
    // One-byte varints that bincode claims as 8 bytes each: a payload claims up to 8x its length
    // (an AppendEntries of many small entries is like this).
    for n in [1_000, 65_000, 70_000, 140_000, 1_100_000] {
        let r = crate::node::SessionTimesRequest { ids: vec![0; n], renew: false };
        let back: crate::node::SessionTimesRequest = decode(&encode(&r).expect("encode")).expect("decode");
        assert_eq!(back.ids.len(), n);
    }
    let many = LogPayload::V1(BatchV1 { leader_time_ms: 1, proposals: (0..5_000).map(|_| put(1, 0)).collect() });
    assert_eq!(decode::<LogPayload>(&encode(&many).expect("encode")).expect("decode"), many);
}

#[test]
fn a_length_prefix_beyond_the_input_is_refused_without_allocating_it() {
    let mut crafted = vec![0u8, 0u8, 0xFD];
    crafted.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let e = decode::<Proposal>(&crafted).expect_err("must be refused");
    assert!(matches!(e, bincode::error::DecodeError::LimitExceeded), "{e:?}");
    // A string (CounterAdd's name), and a claim just past the input.
    let mut crafted = vec![0u8, 3u8, 0xFD];
    crafted.extend_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(decode::<Proposal>(&crafted).is_err());
    let mut short = encode(&put(4, 1000)).expect("encode");
    short.truncate(500);
    assert!(decode::<Proposal>(&short).is_err());
}

/// xorshift64*: a seeded, dependency-free generator (the test is reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn samples() -> Vec<Vec<u8>> {
    let txn = Proposal {
        request_id: Some(RequestId { client_id: 7, seq: 9, first_incomplete: 3 }),
        command: Command::Txn {
            compares: vec![
                Compare::Children { prefix: b"locks/".to_vec(), op: CompareOp::Equal, count: 0 },
                Compare::Counter { name: "c".into(), op: CompareOp::Less, value: 5 },
            ],
            success: vec![TxnOp::Put { key: b"k".to_vec(), value: vec![1; 40], prev_kv: true, session: 3 }],
            failure: vec![TxnOp::Range(RangeSpec {
                selector: KeySelector::Interval { start: b"a".to_vec(), end: b"z".to_vec() },
                limit: 10,
                keys_only: false,
                count_only: false,
            })],
        },
    };
    let batch = LogPayload::V1(BatchV1 { leader_time_ms: 1_700_000_000_000, proposals: vec![put(3, 20), txn.clone()] });
    let entry = openraft::Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(2, 1), 17),
        payload: EntryPayload::Normal(batch.clone()),
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 16)),
        entries: vec![entry.clone(), entry],
        leader_commit: None,
    };
    let vote = VoteRequest::<u64> { vote: Vote::new(3, 2), last_log_id: None };
    vec![
        encode(&put(5, 100)).expect("encode"),
        encode(&txn).expect("encode"),
        encode(&batch).expect("encode"),
        encode(&append).expect("encode"),
        encode(&vote).expect("encode"),
    ]
}

/// One mutation: flip bytes, plant a huge varint length, insert or truncate.
fn mutate(rng: &mut Rng, sample: &[u8]) -> Vec<u8> {
    let mut m = sample.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(m.len());
        match rng.below(4) {
            0 => m[at] ^= 1 << rng.below(8),
            1 => {
                let mut prefix = vec![0xFD];
                prefix.extend_from_slice(&(rng.next() >> rng.below(64)).to_le_bytes());
                m.splice(at..at, prefix);
            }
            2 => m.insert(at, rng.next() as u8),
            _ => m.truncate(at),
        }
        if m.is_empty() {
            break;
        }
    }
    m
}

#[test]
fn mutated_encodings_are_refused_or_decoded_never_a_panic() {
    let mut rng = Rng(0x5EED_C0FF_EE12_3457);
    let mut refused = 0;
    for sample in samples() {
        for _ in 0..2_000 {
            let m = mutate(&mut rng, &sample);
            // Any outcome but a panic or an abort (an allocation of what a prefix claims).
            refused += usize::from(decode::<Proposal>(&m).is_err());
            let _ = decode::<LogPayload>(&m);
            let _ = decode::<AppendEntriesRequest<TypeConfig>>(&m);
            let _ = decode::<InstallSnapshotRequest<TypeConfig>>(&m);
            let _ = decode::<VoteRequest<u64>>(&m);
            let _ = decode::<crate::node::SessionTimesRequest>(&m);
        }
    }
    assert!(refused > 1_000, "the mutations must mostly be malformed ({refused} refused)");
}

#[test]
fn a_new_command_variant_goes_last_and_leaves_the_others_numbered_as_before() {
    // bincode numbers variants by position: SessionOpen stays 6, SessionOpenOwned is the 22nd.
    assert_eq!(encode(&Command::SessionOpen { ttl_ms: 5 }).expect("encodes"), vec![6, 5]);
    let owned = Command::SessionOpenOwned { ttl_ms: 5, owner: "a".into() };
    assert_eq!(encode(&owned).expect("encodes"), vec![21, 5, 1, b'a']);
}

#[test]
fn a_command_sent_as_a_user_is_last_and_holds_no_other_one() {
    let plain = Command::SessionOpen { ttl_ms: 5 };
    let as_user = |command: Command| Command::AsUser { user: "u".into(), command: UserCommand(Box::new(command)) };
    let once = as_user(plain.clone());
    assert_eq!(encode(&once).expect("encodes"), vec![22, 1, b'u', 6, 5], "the 23rd variant, the inner one after");
    assert_eq!(decode::<Command>(&encode(&once).expect("encodes")).expect("decodes"), once);
    // Nesting decodes as an error (however deep: the second level is refused), and the next
    // decode on the thread is not affected.
    let twice = encode(&as_user(as_user(plain))).expect("encodes");
    let e = decode::<Command>(&twice).expect_err("nested");
    assert!(e.to_string().contains("holds another"), "{e}");
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend_from_slice(&[22, 1, b'u']);
    }
    deep.extend_from_slice(&[6, 5]);
    assert!(decode::<Command>(&deep).is_err());
    assert_eq!(decode::<Command>(&encode(&once).expect("encodes")).expect("decodes"), once);
}
