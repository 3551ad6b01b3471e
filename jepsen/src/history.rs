//! The recorded history: one JSON object per line, in the order events happened.
//!
//! Every client operation is an `invoke` followed by exactly one completion from the same
//! process: `ok` (it happened, with its result), `fail` (it certainly did not happen) or `info`
//! (unknown: it may take effect at any time after its invocation, or never). After an `info`
//! the logical process is retired and its worker continues under a new process id, as in
//! Jepsen. Nemesis actions are `info` events of process [`NEMESIS`].

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The process id of nemesis events.
pub const NEMESIS: i64 = -1;

/// What an event says about its operation.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation starts.
    Invoke,
    /// The operation happened; `value` is its result.
    Ok,
    /// The operation certainly did not happen.
    Fail,
    /// Unknown outcome (or, for the nemesis, an action).
    Info,
}

/// One line of the history.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// Position in the history (0-based).
    pub index: usize,
    /// invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Logical client process, or [`NEMESIS`].
    pub process: i64,
    /// The operation's function (`read`, `write`, `cas`, `add`, ...).
    pub f: String,
    /// The key (or object) the operation is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Argument (invoke) or result (ok).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// Nanoseconds since the test started (monotonic clock).
    pub time: u64,
    /// The client's first endpoint (invoke; the client then follows the leader) or the node that
    /// served the operation (ok, from the response header), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why an operation failed or is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// A new event; `index` and `time` are set by the [`Recorder`].
    pub fn new(kind: EventType, process: i64, f: &str, key: Option<String>, value: Value) -> Self {
        Self { index: 0, kind, process, f: f.to_owned(), key, value, time: 0, node: None, error: None }
    }
}

/// An operation: an invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Process that ran it.
    pub process: i64,
    /// Function.
    pub f: String,
    /// Key, if any.
    pub key: Option<String>,
    /// The invocation's argument.
    pub arg: Value,
    /// The completion's result (null unless `ok`).
    pub result: Value,
    /// ok / fail / info (`info` also when the completion is missing).
    pub outcome: EventType,
    /// Invocation time (ns).
    pub invoke: u64,
    /// Completion time (ns); `None` for an operation that never completed.
    pub complete: Option<u64>,
    /// Index of the invocation event.
    pub invoke_index: usize,
    /// Index of the completion event, if any.
    pub complete_index: Option<usize>,
    /// Node that served it, when known.
    pub node: Option<String>,
    /// The completion's error message.
    pub error: Option<String>,
}

impl Op {
    /// Latency in ns (None when it never completed).
    pub fn latency(&self) -> Option<u64> {
        self.complete.map(|c| c.saturating_sub(self.invoke))
    }
}

/// Pairs client invocations with their completions (nemesis events are skipped). An invocation
/// without a completion becomes an `info` operation.
///
/// # Errors
/// When a completion has no pending invocation or a process invokes twice without completing.
pub fn pair(events: &[Event]) -> anyhow::Result<Vec<Op>> {
    let mut pending: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut ops: Vec<Op> = Vec::new();
    for e in events.iter().filter(|e| e.process != NEMESIS) {
        match e.kind {
            EventType::Invoke => {
                if pending.contains_key(&e.process) {
                    anyhow::bail!("process {} invoked twice (event {})", e.process, e.index);
                }
                pending.insert(e.process, ops.len());
                ops.push(Op {
                    process: e.process,
                    f: e.f.clone(),
                    key: e.key.clone(),
                    arg: e.value.clone(),
                    result: Value::Null,
                    outcome: EventType::Info,
                    invoke: e.time,
                    complete: None,
                    invoke_index: e.index,
                    complete_index: None,
                    node: e.node.clone(),
                    error: None,
                });
            }
            kind => {
                let Some(i) = pending.remove(&e.process) else {
                    anyhow::bail!("completion without invocation: process {} (event {})", e.process, e.index);
                };
                let op = &mut ops[i];
                op.outcome = kind;
                op.result = e.value.clone();
                op.complete = Some(e.time);
                op.complete_index = Some(e.index);
                op.error = e.error.clone();
                if e.node.is_some() {
                    op.node = e.node.clone();
                }
            }
        }
    }
    Ok(ops)
}

/// Collects events as they happen and streams them to a JSON-lines file.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    events: Vec<Event>,
    out: Option<BufWriter<File>>,
    /// Client completions by kind: ok, fail, info.
    counts: [u64; 3],
    /// The fault in force ("" when healthy).
    fault: String,
}

impl Recorder {
    /// A recorder whose clock starts now, writing to `path` when given.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn new(path: Option<&Path>) -> anyhow::Result<Self> {
        let out = match path {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(Self {
            start: Instant::now(),
            inner: Mutex::new(Inner { events: Vec::new(), out, counts: [0; 3], fault: String::new() }),
        })
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends an event (its index and time are set here); returns its index.
    pub fn record(&self, mut event: Event) -> usize {
        let Ok(mut inner) = self.inner.lock() else { return 0 };
        event.index = inner.events.len();
        event.time = self.now();
        if let Some(out) = inner.out.as_mut() {
            if let Ok(line) = serde_json::to_string(&event) {
                let _ = writeln!(out, "{line}");
            }
        }
        let index = event.index;
        if event.process == NEMESIS {
            inner.fault = match event.f.as_str() {
                "start" => event.value.get("description").and_then(Value::as_str).unwrap_or("fault").to_owned(),
                _ => String::new(),
            };
        } else {
            match event.kind {
                EventType::Ok => inner.counts[0] += 1,
                EventType::Fail => inner.counts[1] += 1,
                EventType::Info => inner.counts[2] += 1,
                EventType::Invoke => {}
            }
        }
        inner.events.push(event);
        index
    }

    /// Client completions so far: (ok, fail, info), and the fault in force.
    pub fn progress(&self) -> ([u64; 3], String) {
        self.inner.lock().map(|i| (i.counts, i.fault.clone())).unwrap_or_default()
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().map(|i| i.events.clone()).unwrap_or_default()
    }

    /// Flushes the file.
    pub fn flush(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(out) = inner.out.as_mut() {
                let _ = out.flush();
            }
        }
    }
}

/// Reads a history file written by a [`Recorder`].
///
/// # Errors
/// When the file cannot be read or a line is not an event.
pub fn load(path: &Path) -> anyhow::Result<Vec<Event>> {
    let reader = BufReader::new(File::open(path)?);
    let mut events = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not a history event: {e}", path.display(), n + 1))?;
        events.push(e);
    }
    Ok(events)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod build {
    //! Hand-made histories for the checker tests.
    use super::*;

    /// Builds a history event by event; times are given explicitly.
    #[derive(Default)]
    pub struct H {
        /// Events so far.
        pub events: Vec<Event>,
    }

    impl H {
        /// Adds one event.
        pub fn ev(&mut self, t: u64, p: i64, kind: EventType, f: &str, key: Option<&str>, v: Value) -> &mut Self {
            let mut e = Event::new(kind, p, f, key.map(str::to_owned), v);
            e.index = self.events.len();
            e.time = t;
            self.events.push(e);
            self
        }
        /// An invocation.
        pub fn inv(&mut self, t: u64, p: i64, f: &str, key: Option<&str>, v: Value) -> &mut Self {
            self.ev(t, p, EventType::Invoke, f, key, v)
        }
        /// An ok completion.
        pub fn ok(&mut self, t: u64, p: i64, f: &str, key: Option<&str>, v: Value) -> &mut Self {
            self.ev(t, p, EventType::Ok, f, key, v)
        }
        /// A fail completion.
        pub fn fail(&mut self, t: u64, p: i64, f: &str, key: Option<&str>) -> &mut Self {
            self.ev(t, p, EventType::Fail, f, key, Value::Null)
        }
        /// An info completion.
        pub fn info(&mut self, t: u64, p: i64, f: &str, key: Option<&str>) -> &mut Self {
            self.ev(t, p, EventType::Info, f, key, Value::Null)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("jepsen-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let r = Recorder::new(Some(&path)).unwrap();
        r.record(Event::new(EventType::Invoke, 0, "write", Some("k".into()), json!(1)));
        r.record(Event::new(EventType::Invoke, 1, "read", Some("k".into()), Value::Null));
        r.record(Event::new(EventType::Ok, 0, "write", Some("k".into()), json!(1)));
        r.flush();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded, r.events());
        let ops = pair(&loaded).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].outcome, EventType::Ok);
        assert_eq!(ops[1].outcome, EventType::Info);
        assert!(ops[1].complete.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A fault as recorded by the nemesis: from its `start` event to the next `heal`.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultInterval {
    /// Start (ns).
    pub start: u64,
    /// End (ns); the history's last time when never healed.
    pub end: u64,
    /// Description (`partition isolate-leader n2`, ...).
    pub what: String,
}

/// The nemesis's fault intervals, in order.
pub fn fault_intervals(events: &[Event]) -> Vec<FaultInterval> {
    let last = events.iter().map(|e| e.time).max().unwrap_or(0);
    let mut out: Vec<FaultInterval> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for e in events.iter().filter(|e| e.process == NEMESIS) {
        match e.f.as_str() {
            "start" => {
                let what = e.value.get("description").and_then(Value::as_str).unwrap_or("fault").to_owned();
                open.push(out.len());
                out.push(FaultInterval { start: e.time, end: last, what });
            }
            "heal" => {
                for i in open.drain(..) {
                    out[i].end = e.time;
                }
            }
            _ => {}
        }
    }
    out
}
