//! The `hashkv` checker: after the run, every member hashes its key space at one common
//! revision (the lowest revision all have applied); members that agree on a revision must
//! agree on the hash. A member that cannot answer makes the verdict unknown, never valid.

use std::collections::BTreeMap;

use conclave_client::Client;
use serde_json::json;

use super::{CheckResult, Verdict};

const NAME: &str = "hashkv";

/// One endpoint's answer: (revision, hash), or why it did not answer.
pub type Answer = (String, Result<(u64, u32), String>);

/// Asks every endpoint for its current revision, then for its hash at the lowest of them.
pub async fn check(client: &Client, endpoints: &[String]) -> CheckResult {
    let mut current = Vec::new();
    for ep in endpoints {
        current.extend(client.hash_kv_of(ep, 0).await.ok().map(|h| h.revision));
    }
    let Some(revision) = current.into_iter().min() else {
        return CheckResult::new(NAME, Verdict::Unknown, "no member answered hashkv");
    };
    let mut answers = Vec::new();
    for ep in endpoints {
        let a = client.hash_kv_of(ep, revision).await;
        answers.push((ep.clone(), a.map(|h| (h.revision, h.hash)).map_err(|e| e.to_string())));
    }
    verdict(&answers)
}

/// The verdict over each endpoint's answer: (revision, hash) or why it did not answer.
pub fn verdict(answers: &[Answer]) -> CheckResult {
    let mut by_revision: BTreeMap<u64, BTreeMap<u32, Vec<&str>>> = BTreeMap::new();
    let mut silent = Vec::new();
    for (ep, a) in answers {
        match a {
            Ok((revision, hash)) => by_revision.entry(*revision).or_default().entry(*hash).or_default().push(ep),
            Err(e) => silent.push(json!({"endpoint": ep, "error": e})),
        }
    }
    let witness = json!({"by_revision": by_revision, "silent": silent});
    if let Some((revision, hashes)) = by_revision.iter().find(|(_, h)| h.len() > 1) {
        let summary = format!("members disagree at revision {revision}: {} different hashes", hashes.len());
        return CheckResult::new(NAME, Verdict::Invalid, summary).with_witness(witness);
    }
    if !silent.is_empty() {
        let summary = format!("{} of {} members did not answer hashkv", silent.len(), answers.len());
        return CheckResult::new(NAME, Verdict::Unknown, summary).with_witness(witness);
    }
    let revisions: Vec<&u64> = by_revision.keys().collect();
    CheckResult::new(NAME, Verdict::Valid, format!("{} members agree at revision {revisions:?}", answers.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ep: &str, r: Result<(u64, u32), &str>) -> Answer {
        (ep.to_owned(), r.map_err(str::to_owned))
    }

    #[test]
    fn agreement_is_valid_a_different_hash_invalid_silence_unknown() {
        let agree = [a("n1", Ok((10, 7))), a("n2", Ok((10, 7))), a("n3", Ok((10, 7)))];
        assert_eq!(verdict(&agree).verdict, Verdict::Valid);
        let differ = [a("n1", Ok((10, 7))), a("n2", Ok((10, 8))), a("n3", Err("timeout"))];
        let r = verdict(&differ);
        assert_eq!(r.verdict, Verdict::Invalid, "{}", r.summary);
        assert!(r.summary.contains("revision 10"), "{}", r.summary);
        let silent = [a("n1", Ok((10, 7))), a("n2", Err("compacted"))];
        assert_eq!(verdict(&silent).verdict, Verdict::Unknown);
    }
}
