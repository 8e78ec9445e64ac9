#![no_main]
//! SigV4 on the main port: Authorization parsing, X-Amz-Date, canonical query strings, the port's pre-lookup checks, Verifier::verify on the fuzzed request, and sign_request → verify round trips.
//! Entry point and invariants: `otatrail::fuzzing::sigv4` (shared with tests/hostile_input.rs).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::fuzzing::sigv4(data));
