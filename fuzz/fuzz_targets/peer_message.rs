//! Fuzz target: see `conclave_server::robustness::peer_message` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_server::robustness::peer_message(data));
