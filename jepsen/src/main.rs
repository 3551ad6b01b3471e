//! conclave-jepsen (work in progress)
fn main() {}
