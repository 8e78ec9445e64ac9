#![no_main]
//! AWS IoT rest-json: route matching (method + percent-decoded path), query and JSON body decoding into the typed request, then the domain's pure validators.
//! Entry point and invariants: `otatrail::fuzzing::rest_json` (shared with tests/hostile_input.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::fuzzing::rest_json(data));
