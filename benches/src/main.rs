//! conclave-bench (work in progress)
fn main() {}
