#![no_main]
//! CloudTrail json 1.1: X-Amz-Target dispatch, JSON body decoding into the typed request, then LookupEvents/trail/selector validation.
//! Entry point and invariants: `otatrail::fuzzing::json_1_1` (shared with tests/hostile_input.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::fuzzing::json_1_1(data));
