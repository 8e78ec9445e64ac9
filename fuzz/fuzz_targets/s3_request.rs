#![no_main]
//! The S3 parsing otatrail owns: bucket policies, names, keys, part numbers and lists, lifecycle rules, ranges, conditional headers, copy sources, continuation tokens.
//! Entry point and invariants: `otatrail::fuzzing::s3_request` (shared with tests/hostile_input.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::fuzzing::s3_request(data));
