//! Devices publish GetStream and DescribeStream requests on topics they choose, with payloads
//! they choose: the codec (`domain::filestream`) must answer any of them without panicking,
//! with bounded output, and plan blocks that obey device.md §3 for every valid request.
//!
//! The number of cases per property is `OTATRAIL_FUZZ_CASES` (default 256), so a longer run is
//! `OTATRAIL_FUZZ_CASES=20000 cargo test -p otatrail --test hostile_getstream`.
//!
//! CBOR inputs are written by a small encoder in this file (RFC 8949 heads), not by the crate
//! under test, so structured-but-wrong inputs are not shaped by the decoder's own assumptions.

use std::collections::BTreeSet;
use std::fmt;

use otatrail::domain::filestream::{
    self, BlockPlan, DataBlock, GetStreamRequest, MAX_BITMAP_BYTES, MAX_BLOCK_OFFSET, MAX_BLOCK_SIZE,
    MAX_CLIENT_TOKEN_BYTES, MAX_NAME_CHARS, MAX_NUMBER_OF_BLOCKS, MAX_RESPONSE_DATA_BYTES, MIN_BLOCK_SIZE,
    PayloadFormat, RejectCode, RejectError, StreamAction,
};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value};

const FORMATS: [PayloadFormat; 2] = [PayloadFormat::Json, PayloadFormat::Cbor];

/// A rejection is a code, a short message and at most two copies of a 64-byte token.
const MAX_REJECTION_BYTES: usize = 2048;
const MAX_REJECTION_MESSAGE_BYTES: usize = 512;

fn cases() -> u32 {
    std::env::var("OTATRAIL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// What every answer must satisfy
// ---------------------------------------------------------------------------------------------

fn assert_bounded_rejection(format: PayloadFormat, rejection: &RejectError) {
    assert!(
        rejection.message.len() <= MAX_REJECTION_MESSAGE_BYTES,
        "message of {} bytes",
        rejection.message.len()
    );
    assert!(
        rejection
            .client_token
            .as_ref()
            .is_none_or(|c| c.len() <= MAX_CLIENT_TOKEN_BYTES)
    );
    let body = filestream::encode_rejection(format, rejection);
    assert!(body.len() <= MAX_REJECTION_BYTES, "rejection of {} bytes", body.len());
}

fn assert_bounded_request(request: &GetStreamRequest) {
    assert!((MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&request.block_size));
    assert!(request.block_offset <= MAX_BLOCK_OFFSET);
    assert!(request.number_of_blocks.is_none_or(|n| n <= MAX_NUMBER_OF_BLOCKS));
    assert!(request.bitmap.as_ref().is_none_or(|b| b.len() <= MAX_BITMAP_BYTES));
    assert!(
        request
            .client_token
            .as_ref()
            .is_none_or(|c| c.len() <= MAX_CLIENT_TOKEN_BYTES)
    );
    assert!(request.requested_blocks().count() as u64 <= u64::from(request.block_count_limit()));
}

/// Decodes `payload` every way the codec can, checking each answer is bounded.
fn decode_everything(payload: &[u8]) {
    for format in FORMATS {
        match filestream::decode_get_stream(format, payload) {
            Ok(request) => assert_bounded_request(&request),
            Err(rejection) => assert_bounded_rejection(format, &rejection),
        }
        match filestream::decode_describe_stream(format, payload) {
            Ok(describe) => assert!(describe.client_token.is_none_or(|c| c.len() <= MAX_CLIENT_TOKEN_BYTES)),
            Err(rejection) => assert_bounded_rejection(format, &rejection),
        }
        if let Ok(block) = filestream::decode_data_block(format, payload) {
            assert!(block.payload.len() <= MAX_BLOCK_SIZE as usize);
        }
    }
}

fn assert_topic_answer(topic: &str) {
    if let Ok(parsed) = filestream::parse_stream_topic(topic) {
        assert_eq!(parsed.to_string(), topic);
        assert!((1..=MAX_NAME_CHARS).contains(&parsed.thing_name.len()));
        assert!((1..=MAX_NAME_CHARS).contains(&parsed.stream_id.len()));
        assert!(
            parsed
                .thing_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b))
        );
        assert!(
            parsed
                .stream_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        );
    }
}

/// Every invariant of a plan, against the request's ids computed independently here.
fn assert_plan(request: &GetStreamRequest, file_len: u64, plan: &BlockPlan) {
    let l = u64::from(request.block_size);
    let file_blocks = file_len.div_ceil(l);
    let requested = independent_requested_ids(request);
    let per_response = (MAX_RESPONSE_DATA_BYTES / request.block_size) as usize;
    assert!(plan.blocks.len() <= per_response);
    assert!(plan.blocks.iter().map(|b| u64::from(b.length)).sum::<u64>() <= u64::from(MAX_RESPONSE_DATA_BYTES));
    assert!(plan.blocks.windows(2).all(|w| w[0].block_id < w[1].block_id));
    for block in &plan.blocks {
        let id = u64::from(block.block_id);
        assert!(requested.contains(&block.block_id), "block {id} was not requested");
        assert!(id < file_blocks);
        assert_eq!(block.file_offset, id * l);
        let expected_len = l.min(file_len - id * l);
        assert_eq!(u64::from(block.length), expected_len, "l of block {id}");
    }
    if let Some(next) = plan.next_block {
        assert!(requested.contains(&next) && u64::from(next) < file_blocks);
        assert!(plan.blocks.last().is_some_and(|b| b.block_id < next));
        assert_eq!(plan.blocks.len(), per_response, "a response stops early only when full");
    }
}

/// `o..o+n` without a bitmap, else the lowest `n` set bits (LSB first) shifted by `o`: written
/// here from device.md's wording, not from the module's iterator.
fn independent_requested_ids(request: &GetStreamRequest) -> BTreeSet<u32> {
    let n = request
        .number_of_blocks
        .unwrap_or(MAX_RESPONSE_DATA_BYTES / request.block_size) as usize;
    match &request.bitmap {
        None => (0..n as u32).map(|k| request.block_offset + k).collect(),
        Some(bitmap) => (0..bitmap.len() * 8)
            .filter(|k| bitmap[k / 8] & (1 << (k % 8)) != 0)
            .take(n)
            .map(|k| request.block_offset + k as u32)
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written CBOR (RFC 8949 §3)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Cbor {
    Uint(u64),
    /// Major type 1: the value is -1 - n.
    Negative(u64),
    Bytes(Vec<u8>),
    Text(String),
    /// Indefinite-length byte string made of chunks.
    BytesChunks(Vec<Vec<u8>>),
    F64(f64),
    Half(u16),
    Simple(u8),
    Tag(u64, Box<Cbor>),
    Array(Vec<Cbor>, bool),
    Map(Vec<(Cbor, Cbor)>, bool),
    /// A raw byte, such as a stray break (0xff) or a reserved head.
    Raw(u8),
}

/// The head of an item, in its shortest form unless `wide` asks for the 8-byte form (legal,
/// non-canonical CBOR that decoders must still read).
fn head(out: &mut Vec<u8>, major: u8, value: u64, wide: bool) {
    let major = major << 5;
    match value {
        _ if wide => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

fn write_cbor(out: &mut Vec<u8>, item: &Cbor) {
    match item {
        Cbor::Uint(v) => head(out, 0, *v, *v % 7 == 3),
        Cbor::Negative(v) => head(out, 1, *v, false),
        Cbor::Bytes(b) => {
            head(out, 2, b.len() as u64, false);
            out.extend_from_slice(b);
        }
        Cbor::Text(t) => {
            head(out, 3, t.len() as u64, false);
            out.extend_from_slice(t.as_bytes());
        }
        Cbor::BytesChunks(chunks) => {
            out.push(0x5f);
            for chunk in chunks {
                head(out, 2, chunk.len() as u64, false);
                out.extend_from_slice(chunk);
            }
            out.push(0xff);
        }
        Cbor::F64(v) => {
            out.push(0xfb);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Cbor::Half(bits) => {
            out.push(0xf9);
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Cbor::Simple(v) => head(out, 7, u64::from(*v), false),
        Cbor::Tag(tag, inner) => {
            head(out, 6, *tag, false);
            write_cbor(out, inner);
        }
        Cbor::Array(items, indefinite) => {
            container_head(out, 4, items.len(), *indefinite);
            items.iter().for_each(|i| write_cbor(out, i));
            if *indefinite {
                out.push(0xff);
            }
        }
        Cbor::Map(pairs, indefinite) => {
            container_head(out, 5, pairs.len(), *indefinite);
            for (k, v) in pairs {
                write_cbor(out, k);
                write_cbor(out, v);
            }
            if *indefinite {
                out.push(0xff);
            }
        }
        Cbor::Raw(byte) => out.push(*byte),
    }
}

fn container_head(out: &mut Vec<u8>, major: u8, len: usize, indefinite: bool) {
    if indefinite {
        out.push((major << 5) | 31);
    } else {
        head(out, major, len as u64, false);
    }
}

/// Integers around every bound device.md names, and anything else.
fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0u64, 1, 8, 23, 24, 255, 256, 257, 4096, 98_303, 98_304, 98_305, 131_071, 131_072, 131_073,
            65_535, 65_536, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX,
        ]),
        2 => 0u64..300_000,
        1 => any::<u64>(),
    ]
}

fn cbor_scalar() -> impl Strategy<Value = Cbor> {
    prop_oneof![
        4 => interesting_u64().prop_map(Cbor::Uint),
        1 => interesting_u64().prop_map(Cbor::Negative),
        2 => vec(any::<u8>(), 0..40).prop_map(Cbor::Bytes),
        1 => vec(any::<u8>(), 12_280..12_300).prop_map(Cbor::Bytes),
        2 => "[ -~]{0,70}".prop_map(Cbor::Text),
        1 => any::<String>().prop_map(Cbor::Text),
        1 => vec(vec(any::<u8>(), 0..8), 0..4).prop_map(Cbor::BytesChunks),
        1 => any::<f64>().prop_map(Cbor::F64),
        1 => any::<u16>().prop_map(Cbor::Half),
        1 => prop::sample::select(vec![20u8, 21, 22, 23, 0, 255]).prop_map(Cbor::Simple),
        1 => prop::sample::select(vec![0xffu8, 0x1c, 0x3e, 0x5c, 0x7d, 0x9c, 0xbc, 0xdc, 0xfc]).prop_map(Cbor::Raw),
    ]
}

fn cbor_item() -> impl Strategy<Value = Cbor> {
    cbor_scalar().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            (vec(inner.clone(), 0..6), any::<bool>()).prop_map(|(items, indef)| Cbor::Array(items, indef)),
            (vec((inner.clone(), inner.clone()), 0..4), any::<bool>())
                .prop_map(|(pairs, indef)| Cbor::Map(pairs, indef)),
            (prop::sample::select(vec![0u64, 1, 2, 24, 55799]), inner).prop_map(|(t, i)| Cbor::Tag(t, Box::new(i))),
        ]
    })
}

/// A protocol key most of the time, something else sometimes (including non-text keys).
fn cbor_key() -> impl Strategy<Value = Cbor> {
    prop_oneof![
        8 => prop::sample::select(vec!["c", "s", "f", "l", "o", "n", "b", "i", "p"]).prop_map(|k| Cbor::Text(k.into())),
        2 => "[a-z]{0,12}".prop_map(Cbor::Text),
        1 => cbor_scalar(),
    ]
}

/// A value fitting its key most of the time, so decoding goes past the first field.
fn cbor_value_for(key: &Cbor) -> BoxedStrategy<Cbor> {
    let plausible = match key {
        Cbor::Text(k) if k == "b" || k == "p" => vec(any::<u8>(), 0..64).prop_map(Cbor::Bytes).boxed(),
        Cbor::Text(k) if k == "c" => "[ -~]{0,70}".prop_map(Cbor::Text).boxed(),
        _ => interesting_u64().prop_map(Cbor::Uint).boxed(),
    };
    prop_oneof![3 => plausible, 1 => cbor_item()].boxed()
}

/// How a structurally plausible message is then broken.
#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        8 => Just(Damage::None),
        1 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        1 => (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| Damage::Flip(i, x)),
        1 => vec(any::<u8>(), 1..4).prop_map(Damage::Append),
    ]
}

fn apply(damage: &Damage, mut bytes: Vec<u8>) -> Vec<u8> {
    match damage {
        Damage::None => {}
        Damage::Truncate(i) if !bytes.is_empty() => bytes.truncate(i.index(bytes.len())),
        Damage::Flip(i, x) if !bytes.is_empty() => {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        Damage::Append(extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
    bytes
}

/// Mostly requests with plausible fields (so decoding reaches every field and the planner),
/// sometimes maps of arbitrary keys and items.
fn cbor_request_like() -> impl Strategy<Value = Vec<u8>> {
    let shaped = shaped_fields(cbor_field, cbor_item().boxed())
        .prop_map(|fields| fields.into_iter().map(|(k, v)| (Cbor::Text(k), v)).collect::<Vec<_>>())
        .boxed();
    let pair = cbor_key().prop_flat_map(|k| {
        let value = cbor_value_for(&k);
        (Just(k), value)
    });
    let wild = vec(pair, 0..9).boxed();
    (prop_oneof![3 => shaped, 1 => wild], any::<bool>(), damage()).prop_map(|(pairs, indefinite, damage)| {
        let mut out = Vec::new();
        write_cbor(&mut out, &Cbor::Map(pairs, indefinite));
        apply(&damage, out)
    })
}

/// Values in the key's valid range most of the time.
fn in_range(key: &str) -> BoxedStrategy<u64> {
    match key {
        "f" => (0u64..=255).boxed(),
        "l" => prop_oneof![Just(4096u64), 256u64..=131_072].boxed(),
        "o" => prop_oneof![0u64..64, 0u64..=98_304].boxed(),
        "n" => prop_oneof![0u64..64, 0u64..=98_304].boxed(),
        "s" => (0u64..4).boxed(),
        _ => any::<u64>().boxed(),
    }
}

fn cbor_field(key: &'static str) -> BoxedStrategy<Cbor> {
    let plausible = match key {
        "c" => prop_oneof![6 => "[ -~]{0,64}", 1 => "[ -~]{65,70}"]
            .prop_map(Cbor::Text)
            .boxed(),
        "b" => bitmap_bytes().prop_map(Cbor::Bytes).boxed(),
        _ => prop_oneof![6 => in_range(key), 2 => interesting_u64()]
            .prop_map(Cbor::Uint)
            .boxed(),
    };
    prop_oneof![18 => plausible, 1 => interesting_u64().prop_map(Cbor::Negative), 1 => cbor_item()].boxed()
}

fn bitmap_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![6 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 12_280..12_300)]
}

/// The GetStream keys, each present with a value from `value_for` (`f` and `l` nearly always),
/// plus a few members with random names and `wild` values, in random order. Random names
/// sometimes repeat a known key: duplicates are part of the input space.
fn shaped_fields<V: Clone + fmt::Debug + 'static>(
    value_for: fn(&'static str) -> BoxedStrategy<V>,
    wild: BoxedStrategy<V>,
) -> impl Strategy<Value = Vec<(String, V)>> {
    let known: Vec<BoxedStrategy<Option<(String, V)>>> = ["c", "s", "f", "l", "o", "n", "b"]
        .into_iter()
        .map(|key| {
            let presence = if key == "f" || key == "l" { 0.95 } else { 0.4 };
            prop::option::weighted(presence, value_for(key).prop_map(move |v| (key.to_string(), v))).boxed()
        })
        .collect();
    let extras = vec(("[a-z]{0,3}", wild), 0..3);
    (known, extras).prop_flat_map(|(known, extras)| {
        let fields: Vec<(String, V)> = known.into_iter().flatten().chain(extras).collect();
        Just(fields).prop_shuffle()
    })
}

// ---------------------------------------------------------------------------------------------
// JSON shaped like a request
// ---------------------------------------------------------------------------------------------

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        4 => interesting_u64().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        2 => "(0[xX])?[0-9a-fA-F]{0,40}".prop_map(Value::from),
        1 => "[ -~]{0,70}".prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
    ]
}

fn json_item() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(("[a-z]{0,4}", inner), 0..4).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn json_field(key: &'static str) -> BoxedStrategy<Value> {
    let plausible = match key {
        "c" => prop_oneof![6 => "[ -~]{0,64}", 1 => "[ -~]{65,70}"]
            .prop_map(Value::from)
            .boxed(),
        "b" => bitmap_bytes()
            .prop_map(|b| Value::from(format!("0x{}", hex::encode(b))))
            .boxed(),
        _ => prop_oneof![6 => in_range(key), 2 => interesting_u64()]
            .prop_map(Value::from)
            .boxed(),
    };
    prop_oneof![18 => plausible, 1 => any::<i64>().prop_map(Value::from), 1 => json_item()].boxed()
}

/// Mostly requests with plausible members, sometimes objects of arbitrary members; the text
/// is written by hand so duplicate member names survive.
fn json_request_like() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        6 => prop::sample::select(vec!["c", "s", "f", "l", "o", "n", "b", "i", "p", "clientToken"]).prop_map(String::from),
        1 => "[a-z]{0,8}",
    ];
    let wild = vec((key, prop_oneof![3 => json_leaf(), 1 => json_item()]), 0..9).boxed();
    let shaped = shaped_fields(json_field, json_item().boxed()).boxed();
    (prop_oneof![3 => shaped, 1 => wild], prop::bool::weighted(0.1), damage()).prop_map(
        |(members, duplicate_first, damage)| {
            let mut text: String = members
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                .collect::<Vec<_>>()
                .join(",");
            // A Map would merge duplicate keys; the text keeps them, as a hostile client may.
            if duplicate_first && let Some((k, v)) = members.first() {
                text.push_str(&format!(",{}:{}", Value::from(k.as_str()), v));
            }
            apply(&damage, format!("{{{text}}}").into_bytes())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Valid requests and topics
// ---------------------------------------------------------------------------------------------

fn client_token() -> impl Strategy<Value = Option<String>> {
    // At most 16 characters of up to 4 bytes each stays within 64 bytes.
    prop::option::of(prop_oneof!["[ -~]{0,64}", "\\PC{0,16}"])
}

prop_compose! {
    fn valid_request(max_n: u32, max_bitmap: usize)(
        client_token in client_token(),
        stream_version in prop::option::of(any::<u64>()),
        file_id in any::<u8>(),
        block_size in prop_oneof![Just(MIN_BLOCK_SIZE), Just(4096u32), Just(MAX_BLOCK_SIZE), MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE],
        block_offset in prop_oneof![0u32..64, 0..=MAX_BLOCK_OFFSET],
        number_of_blocks in prop::option::of(0..=max_n),
        bitmap in prop::option::of(vec(any::<u8>(), 0..=max_bitmap)),
    ) -> GetStreamRequest {
        GetStreamRequest { client_token, stream_version, file_id, block_size, block_offset, number_of_blocks, bitmap }
    }
}

/// File lengths around block edges as well as anywhere up to 8 MiB.
fn file_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..40, prop::sample::select(vec![256u64, 4096, 131_072]), -1i64..=1)
            .prop_map(|(blocks, size, delta)| (blocks * size).saturating_add_signed(delta)),
        0u64..(8 << 20),
    ]
}

fn topic_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9:_-]{1,128}",
        1 => "[a-zA-Z0-9:_+#/ é-]{0,130}",
        1 => ".{0,8}",
    ]
}

fn topic_like() -> impl Strategy<Value = String> {
    let action = prop_oneof![
        4 => prop::sample::select(vec!["get", "data", "describe", "description", "rejected"]).prop_map(String::from),
        1 => "[a-zA-Z]{0,12}",
    ];
    let format =
        prop_oneof![4 => prop::sample::select(vec!["json", "cbor"]).prop_map(String::from), 1 => "[a-zA-Z/]{0,6}"];
    let prefix = prop_oneof![8 => Just("$aws/things/".to_string()), 1 => ".{0,14}"];
    (prefix, topic_segment(), topic_segment(), action, format).prop_map(|(prefix, thing, stream, action, format)| {
        format!("{prefix}{thing}/streams/{stream}/{action}/{format}")
    })
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(payload in vec(any::<u8>(), 0..2048)) {
        decode_everything(&payload);
        filestream::fuzz_get_stream(&payload);
    }

    #[test]
    fn structured_but_wrong_cbor_never_panics(payload in cbor_request_like()) {
        decode_everything(&payload);
    }

    #[test]
    fn structured_but_wrong_json_never_panics(payload in json_request_like()) {
        decode_everything(&payload);
    }

    #[test]
    fn arbitrary_topics_never_panic(topic in ".{0,300}") {
        assert_topic_answer(&topic);
    }

    #[test]
    fn topic_shaped_strings_parse_only_when_valid(topic in topic_like()) {
        assert_topic_answer(&topic);
    }

    #[test]
    fn valid_topics_parse_and_answer_on_their_reply_topics(
        thing in "[a-zA-Z0-9:_-]{1,128}",
        stream in "[a-zA-Z0-9_-]{1,128}",
        format in prop::sample::select(vec!["json", "cbor"]),
    ) {
        let topic = format!("$aws/things/{thing}/streams/{stream}/get/{format}");
        let parsed = filestream::parse_stream_topic(&topic).unwrap();
        prop_assert_eq!((parsed.thing_name, parsed.stream_id, parsed.action), (thing.as_str(), stream.as_str(), StreamAction::Get));
        prop_assert_eq!(parsed.with_action(StreamAction::Data).to_string(), format!("$aws/things/{thing}/streams/{stream}/data/{format}"));
    }

    #[test]
    fn the_fuzz_entry_point_never_panics_on_shaped_input(
        selector in any::<u8>(),
        topic in topic_like(),
        payload in prop_oneof![cbor_request_like(), json_request_like(), vec(any::<u8>(), 0..256)],
    ) {
        let topic = &topic.as_bytes()[..topic.len().min(255)];
        let mut data = vec![selector, topic.len() as u8];
        data.extend_from_slice(topic);
        data.extend_from_slice(&payload);
        filestream::fuzz_get_stream(&data);
    }

    #[test]
    fn valid_requests_round_trip_in_both_formats(request in valid_request(MAX_NUMBER_OF_BLOCKS, 64)) {
        for format in FORMATS {
            let bytes = filestream::encode_get_stream(format, &request);
            prop_assert_eq!(filestream::decode_get_stream(format, &bytes), Ok(request.clone()));
        }
    }

    #[test]
    fn plans_obey_device_md_for_any_file(request in valid_request(4096, 600), file_len in file_len()) {
        let file_blocks = file_len.div_ceil(u64::from(request.block_size));
        let plan = match filestream::plan_blocks(&request, file_len) {
            Ok(plan) => plan,
            Err(rejection) => {
                prop_assert_eq!(rejection.code, RejectCode::ResourceNotFound);
                prop_assert!(u64::from(request.block_offset) >= file_blocks);
                prop_assert_eq!(rejection.client_token, request.client_token);
                return Ok(());
            }
        };
        assert_plan(&request, file_len, &plan);

        // Continuing from next_block until done sends each requested block of the file once.
        let mut sent: Vec<u32> = plan.blocks.iter().map(|b| b.block_id).collect();
        let mut next = plan.next_block;
        while let Some(first) = next {
            let more = filestream::plan_blocks_from(&request, file_len, first).unwrap();
            assert_plan(&request, file_len, &more);
            prop_assert_eq!(more.blocks.first().map(|b| b.block_id), Some(first));
            sent.extend(more.blocks.iter().map(|b| b.block_id));
            next = more.next_block;
        }
        let expected: Vec<u32> =
            independent_requested_ids(&request).into_iter().filter(|&id| u64::from(id) < file_blocks).collect();
        prop_assert_eq!(sent, expected);
    }

    #[test]
    fn first_blocks_encode_and_decode_in_both_formats(request in valid_request(64, 16), file_len in 1u64..400_000) {
        let Ok(plan) = filestream::plan_blocks(&request, file_len) else { return Ok(()) };
        let Some(first) = plan.blocks.first() else { return Ok(()) };
        let payload: Vec<u8> = first.byte_range().map(|x| (x % 253) as u8).collect();
        let block = DataBlock {
            client_token: request.client_token.as_deref(),
            file_id: request.file_id,
            block_id: first.block_id,
            payload: &payload,
        };
        for format in FORMATS {
            let message = filestream::encode_data_block(format, &block);
            let received = filestream::decode_data_block(format, &message).unwrap();
            prop_assert_eq!(received.block_id, first.block_id);
            prop_assert_eq!(received.payload, payload.clone());
            prop_assert_eq!(received.client_token, request.client_token.clone());
        }
        // The agent's network buffer is the block size plus 128 bytes.
        prop_assert!(filestream::encode_data_block(PayloadFormat::Cbor, &block).len() <= payload.len() + 128);
    }

    #[test]
    fn json_members_with_any_values_decode_like_their_cbor_twins(
        f in interesting_u64(), l in interesting_u64(), o in prop::option::of(interesting_u64()),
        n in prop::option::of(interesting_u64()),
    ) {
        // The same fields in both encodings get the same answer: same request or same code.
        let mut json = Map::new();
        let mut pairs = vec![(Cbor::Text("f".into()), Cbor::Uint(f)), (Cbor::Text("l".into()), Cbor::Uint(l))];
        json.insert("f".into(), f.into());
        json.insert("l".into(), l.into());
        for (key, value) in [("o", o), ("n", n)] {
            if let Some(value) = value {
                json.insert(key.into(), value.into());
                pairs.push((Cbor::Text(key.into()), Cbor::Uint(value)));
            }
        }
        let mut cbor = Vec::new();
        write_cbor(&mut cbor, &Cbor::Map(pairs, false));
        let from_json = filestream::decode_get_stream(PayloadFormat::Json, Value::Object(json).to_string().as_bytes());
        let from_cbor = filestream::decode_get_stream(PayloadFormat::Cbor, &cbor);
        match (from_json, from_cbor) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.code, b.code),
            (a, b) => prop_assert!(false, "json {:?} but cbor {:?}", a, b),
        }
    }
}

/// The generators are only worth their cases if they reach past the first field: with a fixed
/// seed, shaped inputs must produce accepted requests and every field-level rejection.
#[test]
fn shaped_generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (name, format, strategy) in [
        ("cbor", PayloadFormat::Cbor, cbor_request_like().boxed()),
        ("json", PayloadFormat::Json, json_request_like().boxed()),
    ] {
        for _ in 0..3000 {
            let payload = strategy.new_tree(&mut runner).unwrap().current();
            let outcome = match filestream::decode_get_stream(format, &payload) {
                Ok(_) => "Ok".to_string(),
                Err(e) => e.code.as_str().to_string(),
            };
            *seen.entry((name, outcome)).or_default() += 1;
        }
    }
    let expected = [
        "Ok",
        "InvalidRequest",
        "BlockSizeOutOfBounds",
        "OffsetOutOfBounds",
        "BlockCountLimitExceeded",
        "BlockBitmapLimitExceeded",
    ];
    for name in ["cbor", "json"] {
        for outcome in expected {
            assert!(
                seen.contains_key(&(name, outcome.to_string())),
                "{name} never gave {outcome}"
            );
        }
    }
    assert!(seen.contains_key(&("cbor", "InvalidCbor".to_string())));
    assert!(seen.contains_key(&("json", "InvalidJson".to_string())));
}
