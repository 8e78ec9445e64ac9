#![no_main]
//! STS/IAM/SNS query protocol: query-string and form-body parsing, recorded request parameters, per-action parameter decoding, SNS ARN parsers.
//! Entry point and invariants: `otatrail::fuzzing::query` (shared with tests/hostile_input.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::fuzzing::query(data));
