//! Checkers: each turns a history into a [`CheckResult`] with a verdict and, for an anomaly, a
//! witness (the smallest piece of history that shows it).

pub mod counter;
pub mod election;
pub mod hashkv;
pub mod linearizable;
pub mod register;
pub mod session;
pub mod set;
pub mod watch;

use serde::Serialize;
use serde_json::Value;

/// A checker's conclusion.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The history satisfies the property.
    Valid,
    /// The checker could not decide (time-out, missing final read, ...). Never "valid".
    Unknown,
    /// The history violates the property.
    Invalid,
}

impl Verdict {
    /// The worse of two verdicts (invalid > unknown > valid).
    pub fn and(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The process exit code for this verdict (0 valid, 1 invalid, 2 unknown).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Invalid => "INVALID",
        })
    }
}

/// One checker's result.
#[derive(Serialize, Clone, Debug)]
pub struct CheckResult {
    /// Checker name (`linearizable`, `counter`, ...).
    pub name: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// One line for the summary.
    pub summary: String,
    /// The evidence of an anomaly (or of why the verdict is unknown), written to a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<Value>,
}

impl CheckResult {
    /// A result without witness.
    pub fn new(name: &str, verdict: Verdict, summary: impl Into<String>) -> Self {
        Self { name: name.to_owned(), verdict, summary: summary.into(), witness: None }
    }

    /// Attaches a witness.
    pub fn with_witness(mut self, witness: Value) -> Self {
        self.witness = Some(witness);
        self
    }
}

/// The combined verdict of several results (valid when there are none).
pub fn overall(results: &[CheckResult]) -> Verdict {
    results.iter().fold(Verdict::Valid, |v, r| v.and(r.verdict))
}

/// Reads an integer out of a JSON value.
pub(crate) fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// Reads an unsigned integer out of a JSON value.
pub(crate) fn uint(v: &Value) -> Option<u64> {
    v.as_u64()
}
