#![no_main]
//! MQTT GetStream / DescribeStream codec (`domain::filestream`): topic parsing, request
//! decoding, block planning and response encoding, with the codec's own invariants asserted.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| otatrail::domain::filestream::fuzz_get_stream(data));
