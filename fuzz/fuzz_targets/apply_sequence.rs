//! Fuzz target: see `conclave_server::robustness::apply_sequence` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_server::robustness::apply_sequence(data));
