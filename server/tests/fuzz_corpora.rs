//! The fuzz targets' corpora (`fuzz/corpus/<target>/`, kept small in the repository) as
//! regression tests: every input a fuzzer kept is checked again by the same property
//! (`conclave_server::robustness`) on every `cargo test`.

use std::path::Path;

use conclave_server::robustness;

fn run_corpus(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&input);
        n += 1;
    }
    assert!(n > 0, "corpus {} is empty", dir.display());
}

#[test]
fn peer_message_corpus() {
    run_corpus("peer_message", robustness::peer_message);
}

#[test]
fn log_entry_corpus() {
    run_corpus("log_entry", robustness::log_entry);
}

#[test]
fn public_request_corpus() {
    run_corpus("public_request", robustness::public_request);
}

#[test]
fn apply_sequence_corpus() {
    run_corpus("apply_sequence", robustness::apply_sequence);
}
