//! Linearizability search: Wing & Gong's algorithm with Lowe's memoisation (as in Knossos and
//! Porcupine), for one object at a time (callers partition histories by key).
//!
//! Operations with an unknown outcome get a return time of "infinity": they may be placed
//! anywhere after their invocation. Their model step must accept every outcome, so placing one
//! at the very end stands for "never happened". The search has a deadline; running out of time
//! gives [`Outcome::Timeout`], which callers report as "unknown", never "valid".

use std::collections::HashSet;
use std::hash::Hash;
use std::time::Instant;

/// A sequential specification.
pub trait Model {
    /// The object's state.
    type State: Clone + Eq + Hash;
    /// An operation together with its observed result.
    type Op;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Applies `op` to `state`: the next state, or `None` when the observed result is impossible.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// An operation to place: its call and return times (`u64::MAX` = unknown outcome).
#[derive(Clone, Debug)]
pub struct Timed<O> {
    /// The operation and its result.
    pub op: O,
    /// Invocation time.
    pub call: u64,
    /// Completion time (`u64::MAX` when the outcome is unknown).
    pub ret: u64,
}

/// The result of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists. `prefix` is the longest order of operations (indices into the input) the
    /// search could justify; `blocked` is the operation that could never be placed after it.
    Violation {
        /// Longest linearizable prefix found.
        prefix: Vec<usize>,
        /// The earliest-returning operation that no order could place.
        blocked: Option<usize>,
    },
    /// The deadline passed first.
    Timeout,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Doubly linked list of call and return entries in time order, with a head and a tail sentinel.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For entry e (1..=2n): the operation, and whether it is a call.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// For a call entry: its return entry.
    ret_of: Vec<usize>,
}

const HEAD: usize = 0;

impl Entries {
    fn build<O>(ops: &[Timed<O>]) -> Self {
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            // Calls sort before returns at equal times: equal-time operations are concurrent.
            order.push((o.call, 0, i));
            order.push((o.ret.max(o.call), 1, i));
        }
        order.sort_unstable();
        let n = order.len();
        let tail = n + 1;
        let mut e = Entries {
            next: (1..=n + 1).chain([tail]).collect(),
            prev: std::iter::once(HEAD).chain(0..=n).collect(),
            op: vec![usize::MAX; n + 2],
            is_call: vec![false; n + 2],
            ret_of: vec![usize::MAX; n + 2],
        };
        let mut call_entry = vec![usize::MAX; ops.len()];
        for (pos, (_, kind, i)) in order.iter().enumerate() {
            let entry = pos + 1;
            e.op[entry] = *i;
            e.is_call[entry] = *kind == 0;
            if *kind == 0 {
                call_entry[*i] = entry;
            } else {
                e.ret_of[call_entry[*i]] = entry;
            }
        }
        e
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ret_of[call]);
    }

    fn unlift(&mut self, call: usize) {
        self.relink(self.ret_of[call]);
        self.relink(call);
    }
}

/// Searches for a linearization of `ops` under `model`, giving up at `deadline`.
pub fn check<M: Model>(model: &M, ops: &[Timed<M::Op>], deadline: Instant) -> Outcome {
    let mut list = Entries::build(ops);
    let tail = list.tail();
    let mut state = model.init();
    let mut linearized = Bits::new(ops.len());
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut best: Vec<usize> = Vec::new();
    let mut entry = list.next[HEAD];
    let mut steps: u64 = 0;
    while list.next[HEAD] != tail {
        steps += 1;
        if steps.is_multiple_of(1024) && Instant::now() >= deadline {
            return Outcome::Timeout;
        }
        if entry == tail {
            // Only possible with malformed input (a return before its call); treat as stuck.
            break;
        }
        if list.is_call[entry] {
            let i = list.op[entry];
            if let Some(next) = model.step(&state, &ops[i].op) {
                let mut bits = linearized.clone();
                bits.set(i);
                if cache.insert((bits.clone(), next.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    linearized = bits;
                    list.lift(entry);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|(e, _)| list.op[*e]).collect();
                    }
                    entry = list.next[HEAD];
                    continue;
                }
            }
            entry = list.next[entry];
        } else {
            // A return: its operation must have been placed before now. Backtrack.
            let Some((call, previous)) = stack.pop() else {
                return violation(ops, best);
            };
            state = previous;
            linearized.clear(list.op[call]);
            list.unlift(call);
            entry = list.next[call];
        }
    }
    if list.next[HEAD] == tail {
        Outcome::Linearizable
    } else {
        violation(ops, best)
    }
}

fn violation<O>(ops: &[Timed<O>], prefix: Vec<usize>) -> Outcome {
    let mut placed = Bits::new(ops.len());
    for &i in &prefix {
        placed.set(i);
    }
    let blocked = (0..ops.len()).filter(|&i| !placed.get(i)).min_by_key(|&i| (ops[i].ret, ops[i].call));
    Outcome::Violation { prefix, blocked }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A register of small integers: (write v) or (read v).
    struct Reg;
    impl Model for Reg {
        type State = i64;
        type Op = (bool, i64);
        fn init(&self) -> i64 {
            0
        }
        fn step(&self, s: &i64, (write, v): &(bool, i64)) -> Option<i64> {
            if *write {
                Some(*v)
            } else {
                (s == v).then_some(*s)
            }
        }
    }

    fn t(op: (bool, i64), call: u64, ret: u64) -> Timed<(bool, i64)> {
        Timed { op, call, ret }
    }

    fn run(ops: &[Timed<(bool, i64)>]) -> Outcome {
        check(&Reg, ops, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        let ops = [t((true, 1), 0, 10), t((false, 0), 1, 5), t((false, 1), 2, 6)];
        assert_eq!(run(&ops), Outcome::Linearizable);
    }

    #[test]
    fn read_after_write_must_see_it() {
        let ops = [t((true, 1), 0, 10), t((false, 0), 11, 12)];
        assert!(matches!(run(&ops), Outcome::Violation { blocked: Some(1), .. }));
    }

    #[test]
    fn unknown_write_may_apply_late_or_never() {
        let late = [t((true, 1), 0, u64::MAX), t((false, 0), 5, 6), t((false, 1), 7, 8)];
        assert_eq!(run(&late), Outcome::Linearizable);
        let never = [t((true, 1), 0, u64::MAX), t((false, 0), 5, 6)];
        assert_eq!(run(&never), Outcome::Linearizable);
        // But it cannot be undone once observed.
        let flip = [t((true, 1), 0, u64::MAX), t((false, 1), 5, 6), t((false, 0), 7, 8)];
        assert!(matches!(run(&flip), Outcome::Violation { .. }));
    }

    #[test]
    fn deadline_gives_timeout() {
        let ops: Vec<_> = (0..40).map(|i| t((true, i), 0, 100)).chain([t((false, 99), 101, 102)]).collect();
        assert_eq!(check(&Reg, &ops, Instant::now()), Outcome::Timeout);
    }
}
