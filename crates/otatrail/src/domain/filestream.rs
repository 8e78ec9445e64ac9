//! MQTT-based file delivery (`device.md` §3): the codec of the GetStream and DescribeStream
//! protocol that FreeRTOS OTA agents speak, without any transport.
//!
//! A data-plane layer hands this module an MQTT topic and payload; it gets back a typed
//! request or a [`RejectError`], asks [`plan_blocks`] which blocks of the file to send, and
//! encodes one data message per block (or the rejection). Nothing here knows the broker, the
//! stores or the clock.
//!
//! Every decoder answers hostile input without panicking, allocates at most a small multiple
//! of the payload it was given (payloads over [`MAX_MESSAGE_BYTES`] are refused before
//! parsing) and finishes in time linear in the payload: this module is a fuzzing target
//! ([`fuzz_get_stream`]).

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::ops::{Range, RangeInclusive};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use minicbor::data::Type;
use minicbor::{Decoder, Encoder};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Limits (device.md §3.2 unless noted)
// ---------------------------------------------------------------------------------------------

/// Smallest block size `l` a request may ask for.
pub const MIN_BLOCK_SIZE: u32 = 256;
/// Largest block size `l`: also the most data one request is answered with.
pub const MAX_BLOCK_SIZE: u32 = 131_072;
/// Largest block offset `o` (24 MB / 256 B).
pub const MAX_BLOCK_OFFSET: u32 = 98_304;
/// Largest number of blocks `n`.
pub const MAX_NUMBER_OF_BLOCKS: u32 = 98_304;
/// The bitmap `b` must be shorter than 12288 bytes.
pub const MAX_BITMAP_BYTES: usize = 12_287;
/// Longest client token `c`, in bytes.
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;
/// "One request never returns more than 128 KiB of data."
pub const MAX_RESPONSE_DATA_BYTES: u32 = 131_072;
/// File ids `f` are 0–255.
pub const MAX_FILE_ID: u32 = 255;
/// Thing names and stream IDs are 1–128 characters (`aws-api.md`: `ThingName`, `StreamId`).
pub const MAX_NAME_CHARS: usize = 128;
/// Largest payload any decoder here looks at. Not in device.md: it is sized so that a JSON data
/// message of the largest block (base64 grows 131072 bytes to about 175 KB) still decodes,
/// while capping what hostile input can make the parsers hold.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Library error texts go into rejections; this keeps one from echoing a large input.
const MAX_MESSAGE_TEXT_BYTES: usize = 256;

// ---------------------------------------------------------------------------------------------
// Formats and topics (§3.1)
// ---------------------------------------------------------------------------------------------

/// The payload encoding, named by the last segment of every stream topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    Json,
    Cbor,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::Cbor => "cbor",
        }
    }

    /// Topic segments are case-sensitive: `JSON` is not a format.
    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "json" => Some(PayloadFormat::Json),
            "cbor" => Some(PayloadFormat::Cbor),
            _ => None,
        }
    }
}

/// What a stream topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamAction {
    /// Device → service: a GetStream request.
    Get,
    /// Service → device: one block per message.
    Data,
    /// Device → service: a DescribeStream request.
    Describe,
    /// Service → device: the DescribeStream response.
    Description,
    /// Service → device: errors of both APIs.
    Rejected,
}

impl StreamAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamAction::Get => "get",
            StreamAction::Data => "data",
            StreamAction::Describe => "describe",
            StreamAction::Description => "description",
            StreamAction::Rejected => "rejected",
        }
    }

    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "get" => Some(StreamAction::Get),
            "data" => Some(StreamAction::Data),
            "describe" => Some(StreamAction::Describe),
            "description" => Some(StreamAction::Description),
            "rejected" => Some(StreamAction::Rejected),
            _ => None,
        }
    }

    /// Whether devices publish on this topic (the service must answer it).
    pub fn is_request(self) -> bool {
        matches!(self, StreamAction::Get | StreamAction::Describe)
    }
}

/// `$aws/things/{thingName}/streams/{streamId}/{action}/{format}`, borrowed from the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamTopic<'a> {
    pub thing_name: &'a str,
    pub stream_id: &'a str,
    pub action: StreamAction,
    pub format: PayloadFormat,
}

/// Why a topic is not a stream topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicError {
    /// Not `$aws/things/…/streams/…/…/…` with exactly seven segments.
    NotAStreamTopic,
    /// The thing name is not 1–128 characters of `[a-zA-Z0-9:_-]`.
    InvalidThingName,
    /// The stream ID is not 1–128 characters of `[a-zA-Z0-9_-]`.
    InvalidStreamId,
    /// Not one of `get`, `data`, `describe`, `description`, `rejected`.
    UnknownAction,
    /// Not `json` or `cbor`.
    UnknownFormat,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicError::NotAStreamTopic => "not a $aws/things/{thing}/streams/{stream}/{action}/{format} topic",
            TopicError::InvalidThingName => "the thing name must be 1-128 characters of [a-zA-Z0-9:_-]",
            TopicError::InvalidStreamId => "the stream ID must be 1-128 characters of [a-zA-Z0-9_-]",
            TopicError::UnknownAction => "the action must be get, data, describe, description or rejected",
            TopicError::UnknownFormat => "the format must be json or cbor",
        })
    }
}

impl std::error::Error for TopicError {}

const TOPIC_PREFIX: &str = "$aws/things/";

/// Recognises a stream topic of any action (§3.1). Names are checked against the API models'
/// patterns, so MQTT wildcards, empty segments and extra segments are all refused.
pub fn parse_stream_topic(topic: &str) -> Result<StreamTopic<'_>, TopicError> {
    let rest = topic.strip_prefix(TOPIC_PREFIX).ok_or(TopicError::NotAStreamTopic)?;
    // Five segments after the prefix; a sixth (even an empty one after a trailing `/`) is wrong.
    let mut segments = rest.split('/');
    let mut next = || segments.next().ok_or(TopicError::NotAStreamTopic);
    let (thing_name, streams, stream_id, action, format) = (next()?, next()?, next()?, next()?, next()?);
    if streams != "streams" || segments.next().is_some() {
        return Err(TopicError::NotAStreamTopic);
    }
    StreamTopic::new(
        thing_name,
        stream_id,
        StreamAction::from_segment(action).ok_or(TopicError::UnknownAction)?,
        PayloadFormat::from_segment(format).ok_or(TopicError::UnknownFormat)?,
    )
}

impl<'a> StreamTopic<'a> {
    /// A topic from its parts, with the same name checks as [`parse_stream_topic`].
    pub fn new(
        thing_name: &'a str,
        stream_id: &'a str,
        action: StreamAction,
        format: PayloadFormat,
    ) -> Result<Self, TopicError> {
        if !is_valid_thing_name(thing_name) {
            return Err(TopicError::InvalidThingName);
        }
        if !is_valid_stream_id(stream_id) {
            return Err(TopicError::InvalidStreamId);
        }
        Ok(Self {
            thing_name,
            stream_id,
            action,
            format,
        })
    }

    /// The topic of the same thing, stream and format for another action: a request on
    /// `…/get/cbor` is answered on `…/data/cbor` or `…/rejected/cbor`.
    pub fn with_action(&self, action: StreamAction) -> Self {
        Self { action, ..*self }
    }
}

impl fmt::Display for StreamTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOPIC_PREFIX}{}/streams/{}/{}/{}",
            self.thing_name,
            self.stream_id,
            self.action.as_str(),
            self.format.as_str()
        )
    }
}

/// `ThingName`: `[a-zA-Z0-9:_-]+`, 1–128 characters.
fn is_valid_thing_name(name: &str) -> bool {
    is_valid_name(name, |b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// `StreamId`: `[a-zA-Z0-9_-]+`, 1–128 characters.
fn is_valid_stream_id(id: &str) -> bool {
    is_valid_name(id, |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Both patterns are ASCII-only, so the byte length is the character count.
fn is_valid_name(name: &str, allowed: impl Fn(u8) -> bool) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len()) && name.bytes().all(allowed)
}

// ---------------------------------------------------------------------------------------------
// Rejections (§3.4)
// ---------------------------------------------------------------------------------------------

/// The error codes of `…/rejected/{fmt}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    InvalidTopic,
    InvalidJson,
    InvalidCbor,
    InvalidRequest,
    Unauthorized,
    BlockSizeOutOfBounds,
    OffsetOutOfBounds,
    BlockCountLimitExceeded,
    BlockBitmapLimitExceeded,
    /// The stream, file, version or block does not exist.
    ResourceNotFound,
    VersionMismatch,
    /// The S3 object behind the file changed.
    ETagMismatch,
    InternalError,
}

impl RejectCode {
    pub const ALL: [RejectCode; 13] = [
        RejectCode::InvalidTopic,
        RejectCode::InvalidJson,
        RejectCode::InvalidCbor,
        RejectCode::InvalidRequest,
        RejectCode::Unauthorized,
        RejectCode::BlockSizeOutOfBounds,
        RejectCode::OffsetOutOfBounds,
        RejectCode::BlockCountLimitExceeded,
        RejectCode::BlockBitmapLimitExceeded,
        RejectCode::ResourceNotFound,
        RejectCode::VersionMismatch,
        RejectCode::ETagMismatch,
        RejectCode::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidTopic => "InvalidTopic",
            RejectCode::InvalidJson => "InvalidJson",
            RejectCode::InvalidCbor => "InvalidCbor",
            RejectCode::InvalidRequest => "InvalidRequest",
            RejectCode::Unauthorized => "Unauthorized",
            RejectCode::BlockSizeOutOfBounds => "BlockSizeOutOfBounds",
            RejectCode::OffsetOutOfBounds => "OffsetOutOfBounds",
            RejectCode::BlockCountLimitExceeded => "BlockCountLimitExceeded",
            RejectCode::BlockBitmapLimitExceeded => "BlockBitmapLimitExceeded",
            RejectCode::ResourceNotFound => "ResourceNotFound",
            RejectCode::VersionMismatch => "VersionMismatch",
            RejectCode::ETagMismatch => "ETagMismatch",
            RejectCode::InternalError => "InternalError",
        }
    }
}

/// A request the service refuses: the body of a `…/rejected/{fmt}` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectError {
    pub code: RejectCode,
    pub message: String,
    /// The request's `c`, echoed; `None` when the token itself (or the whole payload) was
    /// malformed, so there is nothing trustworthy to echo.
    pub client_token: Option<String>,
}

impl RejectError {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            client_token: None,
        }
    }

    pub fn with_client_token(mut self, client_token: Option<String>) -> Self {
        self.client_token = client_token;
        self
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(RejectCode::InvalidRequest, message)
    }

    /// A library's error text, cut so it cannot carry a large piece of the input along.
    fn from_library(code: RejectCode, error: &dyn fmt::Display) -> Self {
        Self::new(code, truncate_text(error.to_string(), MAX_MESSAGE_TEXT_BYTES))
    }
}

impl fmt::Display for RejectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RejectError {}

fn truncate_text(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// `{"o":code,"m":message,"c":token?}` plus the long names `code` and `clientToken`, which
/// §3.4 says appear for backward compatibility: clients reading either set find theirs.
pub fn encode_rejection(format: PayloadFormat, error: &RejectError) -> Vec<u8> {
    let code = error.code.as_str();
    let token = error.client_token.as_deref();
    match format {
        PayloadFormat::Json => {
            let mut body = Map::new();
            body.insert("o".into(), code.into());
            body.insert("m".into(), error.message.as_str().into());
            if let Some(token) = token {
                body.insert("c".into(), token.into());
            }
            body.insert("code".into(), code.into());
            if let Some(token) = token {
                body.insert("clientToken".into(), token.into());
            }
            json_bytes(body)
        }
        PayloadFormat::Cbor => cbor_bytes(64 + error.message.len(), |e| {
            e.map(if token.is_some() { 5 } else { 3 })?;
            e.str("o")?.str(code)?.str("m")?.str(&error.message)?;
            if let Some(token) = token {
                e.str("c")?.str(token)?;
            }
            e.str("code")?.str(code)?;
            if let Some(token) = token {
                e.str("clientToken")?.str(token)?;
            }
            Ok(())
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// GetStream requests (§3.2)
// ---------------------------------------------------------------------------------------------

/// A decoded GetStream request. Every value is within device.md's bounds once decoded;
/// [`plan_blocks`] checks them again, since the fields are public.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetStreamRequest {
    /// `c`: echoed in every response, at most 64 bytes.
    pub client_token: Option<String>,
    /// `s`: the stream version the device expects; the OTA agent v3 leaves it out.
    pub stream_version: Option<u64>,
    /// `f`.
    pub file_id: u8,
    /// `l`, 256–131072.
    pub block_size: u32,
    /// `o`, 0–98304; 0 when absent.
    pub block_offset: u32,
    /// `n` as sent, 0–98304. See [`GetStreamRequest::block_count_limit`] for its default.
    pub number_of_blocks: Option<u32>,
    /// `b`: bit *k* (least-significant bit of byte *k*/8 first) asks for block `o + k`.
    pub bitmap: Option<Vec<u8>>,
}

impl GetStreamRequest {
    /// `n`, or 131072 / `l` when absent: without a bitmap the number of blocks asked for,
    /// with one the cap on how many of its set bits are answered.
    pub fn block_count_limit(&self) -> u32 {
        // max(1) only guards hand-built requests; decoded ones have block_size >= 256.
        self.number_of_blocks
            .unwrap_or(MAX_RESPONSE_DATA_BYTES / self.block_size.max(1))
    }

    /// The absolute block ids the request names, ascending, at most
    /// [`block_count_limit`](Self::block_count_limit) of them, before any file is known:
    /// `o .. o+n` without a bitmap, the lowest set bits of the bitmap with one.
    pub fn requested_blocks(&self) -> RequestedBlocks<'_> {
        let remaining = self.block_count_limit();
        let source = match &self.bitmap {
            Some(bitmap) => BlockSource::Bitmap {
                bitmap,
                offset: self.block_offset,
                next_bit: 0,
            },
            None => BlockSource::Range {
                next: self.block_offset,
                end: self.block_offset.saturating_add(remaining),
            },
        };
        RequestedBlocks { source, remaining }
    }

    /// `VersionMismatch` when the request names a version other than the stream's.
    pub fn check_version(&self, stream_version: u64) -> Result<(), RejectError> {
        match self.stream_version {
            Some(asked) if asked != stream_version => Err(self.reject(
                RejectCode::VersionMismatch,
                format!("the request asks for stream version {asked}, the stream is at version {stream_version}"),
            )),
            _ => Ok(()),
        }
    }

    /// A rejection of this request, echoing its token (for the data plane's own checks:
    /// unknown stream or file, ETag changes, authorization).
    pub fn reject(&self, code: RejectCode, message: impl Into<String>) -> RejectError {
        RejectError::new(code, message).with_client_token(self.client_token.clone())
    }

    /// The bounds decoding enforces, for requests built by hand.
    fn check_bounds(&self) -> Result<(), RejectError> {
        let checked = check_block_size(u64::from(self.block_size))
            .and_then(|()| check_block_offset(u64::from(self.block_offset)))
            .and_then(|()| {
                self.number_of_blocks
                    .map_or(Ok(()), |n| check_block_count(u64::from(n)))
            })
            .and_then(|()| self.bitmap.as_ref().map_or(Ok(()), |b| check_bitmap_len(b.len())))
            .and_then(|()| self.client_token.as_ref().map_or(Ok(()), |c| check_token_len(c)));
        checked.map_err(|e| e.with_client_token(self.client_token.clone()))
    }
}

/// Iterator over [`GetStreamRequest::requested_blocks`]; it allocates nothing.
#[derive(Clone, Debug)]
pub struct RequestedBlocks<'a> {
    source: BlockSource<'a>,
    remaining: u32,
}

#[derive(Clone, Debug)]
enum BlockSource<'a> {
    Range {
        next: u32,
        end: u32,
    },
    Bitmap {
        bitmap: &'a [u8],
        offset: u32,
        next_bit: usize,
    },
}

impl Iterator for RequestedBlocks<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.remaining == 0 {
            return None;
        }
        let block = match &mut self.source {
            BlockSource::Range { next, end } => next_in_range(next, *end),
            BlockSource::Bitmap {
                bitmap,
                offset,
                next_bit,
            } => next_set_bit(bitmap, next_bit)
                .and_then(|bit| u32::try_from(bit).ok())
                .and_then(|bit| offset.checked_add(bit)),
        };
        if block.is_some() {
            self.remaining -= 1;
        } else {
            self.remaining = 0;
        }
        block
    }
}

fn next_in_range(next: &mut u32, end: u32) -> Option<u32> {
    (*next < end).then(|| {
        let block = *next;
        *next += 1;
        block
    })
}

/// The index of the lowest set bit at or after `*next_bit`, LSB first within each byte.
fn next_set_bit(bitmap: &[u8], next_bit: &mut usize) -> Option<usize> {
    while let Some(&byte) = bitmap.get(*next_bit >> 3) {
        let bit = *next_bit;
        let remaining_bits = byte >> (bit & 7);
        if remaining_bits == 0 {
            // Nothing left in this byte: jump to the next one.
            *next_bit = (bit | 7) + 1;
            continue;
        }
        let found = bit + remaining_bits.trailing_zeros() as usize;
        *next_bit = found + 1;
        return Some(found);
    }
    None
}

/// Decodes a GetStream request published on `…/get/{format}`.
pub fn decode_get_stream(format: PayloadFormat, payload: &[u8]) -> Result<GetStreamRequest, RejectError> {
    let mut fields = read_fields(format, payload)?;
    // The token goes first: every later rejection echoes it, and a bad one is never echoed.
    let client_token = client_token(fields.take(Key::C))?;
    match get_stream_fields(format, &mut fields) {
        Ok(request) => Ok(GetStreamRequest {
            client_token,
            ..request
        }),
        Err(rejection) => Err(rejection.with_client_token(client_token)),
    }
}

fn get_stream_fields(format: PayloadFormat, fields: &mut Fields<'_>) -> Result<GetStreamRequest, RejectError> {
    let stream_version = stream_version(fields.take(Key::S))?;
    let file_id = required(Key::F, bounded(Key::F, fields.take(Key::F), check_file_id)?)?;
    let block_size = required(Key::L, bounded(Key::L, fields.take(Key::L), check_block_size)?)?;
    let block_offset = bounded(Key::O, fields.take(Key::O), check_block_offset)?;
    let number_of_blocks = bounded(Key::N, fields.take(Key::N), check_block_count)?;
    let bitmap = bitmap(format, fields.take(Key::B))?;
    Ok(GetStreamRequest {
        client_token: None,
        stream_version,
        // check_file_id kept it within 0..=255.
        file_id: u8::try_from(file_id).unwrap_or(u8::MAX),
        block_size,
        block_offset: block_offset.unwrap_or(0),
        number_of_blocks,
        bitmap,
    })
}

fn client_token(value: Option<FieldValue<'_>>) -> Result<Option<String>, RejectError> {
    match value {
        None => Ok(None),
        Some(FieldValue::Text(token)) => check_token_len(&token).map(|()| Some(token.into_owned())),
        Some(other) => Err(RejectError::invalid_request(format!(
            "c must be a text string, not {}",
            other.kind()
        ))),
    }
}

fn check_token_len(token: &str) -> Result<(), RejectError> {
    if token.len() > MAX_CLIENT_TOKEN_BYTES {
        return Err(RejectError::invalid_request(format!(
            "c is {} bytes long; a client token has at most {MAX_CLIENT_TOKEN_BYTES}",
            token.len()
        )));
    }
    Ok(())
}

/// `s` can be any non-negative integer: whether it matches is [`GetStreamRequest::check_version`]'s call.
fn stream_version(value: Option<FieldValue<'_>>) -> Result<Option<u64>, RejectError> {
    match integer(Key::S, value)? {
        None => Ok(None),
        Some(Integer::Unsigned(version)) => Ok(Some(version)),
        Some(Integer::Negative) => Err(RejectError::invalid_request("s must not be negative")),
    }
}

/// An unknown file is `ResourceNotFound` (the data plane's call), but an id no file can have
/// is a malformed request.
fn check_file_id(id: u64) -> Result<(), RejectError> {
    check_range(id, 0..=MAX_FILE_ID, RejectCode::InvalidRequest, "the file id f")
}

fn check_block_size(size: u64) -> Result<(), RejectError> {
    check_range(
        size,
        MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE,
        RejectCode::BlockSizeOutOfBounds,
        "the block size l",
    )
}

fn check_block_offset(offset: u64) -> Result<(), RejectError> {
    check_range(
        offset,
        0..=MAX_BLOCK_OFFSET,
        RejectCode::OffsetOutOfBounds,
        "the block offset o",
    )
}

fn check_block_count(count: u64) -> Result<(), RejectError> {
    check_range(
        count,
        0..=MAX_NUMBER_OF_BLOCKS,
        RejectCode::BlockCountLimitExceeded,
        "the number of blocks n",
    )
}

/// Data messages only: block ids are u32 (the largest real one is below 2 * 98304).
fn check_block_id(id: u64) -> Result<(), RejectError> {
    check_range(id, 0..=u32::MAX, RejectCode::InvalidRequest, "the block id i")
}

/// Data messages only: a block is at most the largest block size.
fn check_block_length(length: u64) -> Result<(), RejectError> {
    check_range(
        length,
        0..=MAX_BLOCK_SIZE,
        RejectCode::InvalidRequest,
        "the block length l",
    )
}

fn check_bitmap_len(len: usize) -> Result<(), RejectError> {
    if len > MAX_BITMAP_BYTES {
        return Err(RejectError::new(
            RejectCode::BlockBitmapLimitExceeded,
            format!(
                "the bitmap b is {len} bytes long; it must be shorter than {} bytes",
                MAX_BITMAP_BYTES + 1
            ),
        ));
    }
    Ok(())
}

fn check_range(value: u64, bounds: RangeInclusive<u32>, code: RejectCode, what: &str) -> Result<(), RejectError> {
    if value < u64::from(*bounds.start()) || value > u64::from(*bounds.end()) {
        return Err(RejectError::new(
            code,
            format!(
                "{what} must be between {} and {}, inclusive",
                bounds.start(),
                bounds.end()
            ),
        ));
    }
    Ok(())
}

/// An optional integer field that must pass `check`: a non-integer is `InvalidRequest`, an
/// integer out of bounds (negative ones included) gets the check's own code.
fn bounded(
    key: Key,
    value: Option<FieldValue<'_>>,
    check: fn(u64) -> Result<(), RejectError>,
) -> Result<Option<u32>, RejectError> {
    let Some(value) = integer(key, value)? else {
        return Ok(None);
    };
    // Every lower bound is >= 0 and every upper bound < u64::MAX, so u64::MAX fails any check
    // the way a negative value should.
    let as_u64 = match value {
        Integer::Unsigned(v) => v,
        Integer::Negative => u64::MAX,
    };
    check(as_u64)?;
    // Every upper bound fits in u32, so a value that passed does too.
    u32::try_from(as_u64)
        .map(Some)
        .map_err(|_| RejectError::new(RejectCode::InternalError, "a bound does not fit in 32 bits"))
}

fn required<T>(key: Key, value: Option<T>) -> Result<T, RejectError> {
    value.ok_or_else(|| RejectError::invalid_request(format!("{} is required", key.name())))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Integer {
    Unsigned(u64),
    /// Below zero: no field accepts one, so its magnitude does not matter.
    Negative,
}

fn integer(key: Key, value: Option<FieldValue<'_>>) -> Result<Option<Integer>, RejectError> {
    match value {
        None => Ok(None),
        Some(FieldValue::Unsigned(v)) => Ok(Some(Integer::Unsigned(v))),
        Some(FieldValue::Negative) => Ok(Some(Integer::Negative)),
        Some(other) => Err(RejectError::invalid_request(format!(
            "{} must be an integer, not {}",
            key.name(),
            other.kind()
        ))),
    }
}

/// `b`: a byte string in CBOR, a hex string such as `"0x130080"` in JSON (§3.2).
fn bitmap(format: PayloadFormat, value: Option<FieldValue<'_>>) -> Result<Option<Vec<u8>>, RejectError> {
    match (format, value) {
        (_, None) => Ok(None),
        (PayloadFormat::Cbor, Some(FieldValue::Bytes(bytes))) => {
            check_bitmap_len(bytes.len()).map(|()| Some(bytes.into_owned()))
        }
        (PayloadFormat::Json, Some(FieldValue::Text(text))) => hex_bitmap(&text).map(Some),
        (PayloadFormat::Cbor, Some(other)) => Err(RejectError::invalid_request(format!(
            "b must be a byte string, not {}",
            other.kind()
        ))),
        (PayloadFormat::Json, Some(other)) => Err(RejectError::invalid_request(format!(
            "b must be a hex string such as \"0x1f\", not {}",
            other.kind()
        ))),
    }
}

/// The `0x` prefix is optional; digits come in pairs, one per byte, first byte first.
fn hex_bitmap(text: &str) -> Result<Vec<u8>, RejectError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    // The limit is checked on the text, before anything is allocated for it.
    check_bitmap_len(digits.len().div_ceil(2))?;
    hex::decode(digits)
        .map_err(|_| RejectError::invalid_request("b must be an even number of hex digits, optionally after 0x"))
}

/// Encodes a GetStream request as a device does. CBOR keys follow the OTA agent's order
/// (`c`, `f`, `l`, `o`, `b`, `n`, with `s` after `c`), so the agent's own request encodes to the
/// bytes of §3.2.
pub fn encode_get_stream(format: PayloadFormat, request: &GetStreamRequest) -> Vec<u8> {
    match format {
        PayloadFormat::Json => {
            let mut body = Map::new();
            if let Some(token) = &request.client_token {
                body.insert("c".into(), token.as_str().into());
            }
            if let Some(version) = request.stream_version {
                body.insert("s".into(), version.into());
            }
            body.insert("f".into(), request.file_id.into());
            body.insert("l".into(), request.block_size.into());
            body.insert("o".into(), request.block_offset.into());
            if let Some(bitmap) = &request.bitmap {
                body.insert("b".into(), format!("0x{}", hex::encode(bitmap)).into());
            }
            if let Some(count) = request.number_of_blocks {
                body.insert("n".into(), count.into());
            }
            json_bytes(body)
        }
        PayloadFormat::Cbor => {
            let optional = [
                request.client_token.is_some(),
                request.stream_version.is_some(),
                request.bitmap.is_some(),
                request.number_of_blocks.is_some(),
            ];
            let pairs = 3 + optional.iter().filter(|present| **present).count() as u64;
            let bitmap_len = request.bitmap.as_ref().map_or(0, Vec::len);
            cbor_bytes(64 + bitmap_len, |e| {
                e.map(pairs)?;
                if let Some(token) = &request.client_token {
                    e.str("c")?.str(token)?;
                }
                if let Some(version) = request.stream_version {
                    e.str("s")?.u64(version)?;
                }
                e.str("f")?.u8(request.file_id)?;
                e.str("l")?.u32(request.block_size)?;
                e.str("o")?.u32(request.block_offset)?;
                if let Some(bitmap) = &request.bitmap {
                    e.str("b")?.bytes(bitmap)?;
                }
                if let Some(count) = request.number_of_blocks {
                    e.str("n")?.u32(count)?;
                }
                Ok(())
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Block planning
// ---------------------------------------------------------------------------------------------

/// One block to send: where it lies in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedBlock {
    /// `i`: absolute, 0-based, not relative to `o`.
    pub block_id: u32,
    /// Where the block starts in the file: `block_id * l`.
    pub file_offset: u64,
    /// `l` of the data message: the block size, or less for the file's last block.
    pub length: u32,
}

impl PlannedBlock {
    pub fn byte_range(&self) -> Range<u64> {
        self.file_offset..self.file_offset.saturating_add(u64::from(self.length))
    }

    /// The block's bytes, when the whole file is in memory; `None` if `file` is shorter than
    /// the length the plan was made for.
    pub fn slice<'f>(&self, file: &'f [u8]) -> Option<&'f [u8]> {
        let start = usize::try_from(self.file_offset).ok()?;
        let end = start.checked_add(usize::try_from(self.length).ok()?)?;
        file.get(start..end)
    }
}

/// What one response to a GetStream request sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPlan {
    /// Ascending block ids; their data adds up to at most 128 KiB.
    pub blocks: Vec<PlannedBlock>,
    /// The first requested block that did not fit this response's 128 KiB. A data plane that
    /// continues the request (§3.2: "later requests get the rest") passes it to
    /// [`plan_blocks_from`]; `None` when the plan covers every requested block in the file.
    pub next_block: Option<u32>,
}

/// Which blocks of a `file_len`-byte file answer `request` (§3.2, §3.3).
///
/// - Without a bitmap: blocks `o .. o+n`; with one: its lowest set bits, at most `n`.
/// - Requested blocks past the file's last block are ignored (the agent's bitmap may run past
///   the end, the file-streams library's `"MQ=="` bitmap has stray bits).
/// - An offset `o` at or past the last block names no block of the file: `ResourceNotFound`.
/// - At most 131072 / `l` blocks per response (128 KiB of data); see [`BlockPlan::next_block`].
/// - Each block is `l` bytes except the file's last, which holds what is left.
pub fn plan_blocks(request: &GetStreamRequest, file_len: u64) -> Result<BlockPlan, RejectError> {
    plan_blocks_from(request, file_len, 0)
}

/// [`plan_blocks`], leaving out requested blocks below `first_block`: the continuation of a
/// request whose earlier responses already sent those.
pub fn plan_blocks_from(request: &GetStreamRequest, file_len: u64, first_block: u32) -> Result<BlockPlan, RejectError> {
    request.check_bounds()?;
    let block_size = u64::from(request.block_size);
    let file_blocks = file_len.div_ceil(block_size);
    if u64::from(request.block_offset) >= file_blocks {
        return Err(request.reject(
            RejectCode::ResourceNotFound,
            format!(
                "block {} is past the last block of file {} ({file_blocks} blocks of {block_size} bytes)",
                request.block_offset, request.file_id
            ),
        ));
    }
    let per_response = (MAX_RESPONSE_DATA_BYTES / request.block_size) as usize;
    // Requested ids ascend, so the first one past the file ends the walk.
    let mut wanted = request
        .requested_blocks()
        .skip_while(|&id| id < first_block)
        .take_while(|&id| u64::from(id) < file_blocks);
    let blocks: Vec<PlannedBlock> = wanted
        .by_ref()
        .take(per_response)
        .map(|id| planned_block(id, block_size, file_len))
        .collect();
    Ok(BlockPlan {
        blocks,
        next_block: wanted.next(),
    })
}

/// `block_id` must be a block of the file (`block_id * block_size < file_len`).
fn planned_block(block_id: u32, block_size: u64, file_len: u64) -> PlannedBlock {
    let file_offset = u64::from(block_id) * block_size;
    let length = block_size.min(file_len.saturating_sub(file_offset));
    // length <= block_size <= MAX_BLOCK_SIZE, so it fits.
    PlannedBlock {
        block_id,
        file_offset,
        length: u32::try_from(length).unwrap_or(u32::MAX),
    }
}

// ---------------------------------------------------------------------------------------------
// Data messages (§3.3)
// ---------------------------------------------------------------------------------------------

/// One data message on `…/data/{fmt}`. Its `l` is the payload's length, so it cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataBlock<'a> {
    pub client_token: Option<&'a str>,
    pub file_id: u8,
    pub block_id: u32,
    pub payload: &'a [u8],
}

/// `{"c"?,"f","l","i","p"}` in that order, nothing else: the agent's buffer is the block size
/// plus 128 bytes, so the map stays minimal. `p` is a byte string in CBOR, base64 in JSON.
pub fn encode_data_block(format: PayloadFormat, block: &DataBlock<'_>) -> Vec<u8> {
    let length = block.payload.len() as u64;
    match format {
        PayloadFormat::Json => {
            let mut body = Map::new();
            if let Some(token) = block.client_token {
                body.insert("c".into(), token.into());
            }
            body.insert("f".into(), block.file_id.into());
            body.insert("l".into(), length.into());
            body.insert("i".into(), block.block_id.into());
            body.insert("p".into(), BASE64.encode(block.payload).into());
            json_bytes(body)
        }
        PayloadFormat::Cbor => {
            let token_len = block.client_token.map_or(0, str::len);
            cbor_bytes(block.payload.len() + token_len + 32, |e| {
                e.map(if block.client_token.is_some() { 5 } else { 4 })?;
                if let Some(token) = block.client_token {
                    e.str("c")?.str(token)?;
                }
                e.str("f")?.u8(block.file_id)?;
                e.str("l")?.u64(length)?;
                e.str("i")?.u32(block.block_id)?;
                e.str("p")?.bytes(block.payload)?;
                Ok(())
            })
        }
    }
}

/// A data message as a device reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedBlock {
    pub client_token: Option<String>,
    pub file_id: u8,
    pub block_id: u32,
    pub payload: Vec<u8>,
}

/// Decodes a data message as the OTA agent does (§3.3): a map with text keys, integer `f`, `i`
/// and `l`, `p` a byte string (base64 text in JSON), extra keys tolerated, and `l` equal to
/// the payload's length. For device-side tools and tests; the error's code says what was wrong,
/// it is never published.
pub fn decode_data_block(format: PayloadFormat, payload: &[u8]) -> Result<ReceivedBlock, RejectError> {
    let mut fields = read_fields(format, payload)?;
    let client_token = match fields.take(Key::C) {
        None => None,
        Some(FieldValue::Text(token)) => Some(token.into_owned()),
        Some(other) => {
            return Err(RejectError::invalid_request(format!(
                "c must be text, not {}",
                other.kind()
            )));
        }
    };
    let file_id = required(Key::F, bounded(Key::F, fields.take(Key::F), check_file_id)?)?;
    let block_id = required(Key::I, bounded(Key::I, fields.take(Key::I), check_block_id)?)?;
    let length = required(Key::L, bounded(Key::L, fields.take(Key::L), check_block_length)?)?;
    let data = match (format, required(Key::P, fields.take(Key::P))?) {
        (PayloadFormat::Cbor, FieldValue::Bytes(bytes)) => bytes.into_owned(),
        (PayloadFormat::Json, FieldValue::Text(text)) => BASE64
            .decode(text.as_bytes())
            .map_err(|e| RejectError::from_library(RejectCode::InvalidRequest, &e))?,
        (_, other) => return Err(RejectError::invalid_request(format!("p cannot be {}", other.kind()))),
    };
    if data.len() != length as usize {
        return Err(RejectError::invalid_request(format!(
            "l is {length} but p holds {} bytes",
            data.len()
        )));
    }
    Ok(ReceivedBlock {
        client_token,
        file_id: u8::try_from(file_id).unwrap_or(u8::MAX),
        block_id,
        payload: data,
    })
}

// ---------------------------------------------------------------------------------------------
// DescribeStream (§3.1)
// ---------------------------------------------------------------------------------------------

/// A DescribeStream request: `{"c"?}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescribeStreamRequest {
    pub client_token: Option<String>,
}

/// Decodes `…/describe/{fmt}`. Other keys are ignored, and an empty payload counts as `{}`
/// (inferred: the request has no required field, so a device may send nothing).
pub fn decode_describe_stream(format: PayloadFormat, payload: &[u8]) -> Result<DescribeStreamRequest, RejectError> {
    if payload.is_empty() {
        return Ok(DescribeStreamRequest::default());
    }
    let mut fields = read_fields(format, payload)?;
    Ok(DescribeStreamRequest {
        client_token: client_token(fields.take(Key::C))?,
    })
}

/// One file of a stream, as `…/description/{fmt}` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescribedFile {
    pub file_id: u8,
    pub size: u64,
}

/// The DescribeStream response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamDescription<'a> {
    pub client_token: Option<&'a str>,
    pub stream_version: u64,
    pub description: Option<&'a str>,
    pub files: &'a [DescribedFile],
}

/// `{"c"?, "s":version, "d":description?, "r":[{"f":id,"z":size}…]}`.
pub fn encode_description(format: PayloadFormat, description: &StreamDescription<'_>) -> Vec<u8> {
    match format {
        PayloadFormat::Json => {
            let mut body = Map::new();
            if let Some(token) = description.client_token {
                body.insert("c".into(), token.into());
            }
            body.insert("s".into(), description.stream_version.into());
            if let Some(text) = description.description {
                body.insert("d".into(), text.into());
            }
            let files = description.files.iter().map(|file| {
                let mut entry = Map::new();
                entry.insert("f".into(), file.file_id.into());
                entry.insert("z".into(), file.size.into());
                Value::Object(entry)
            });
            body.insert("r".into(), Value::Array(files.collect()));
            json_bytes(body)
        }
        PayloadFormat::Cbor => {
            let pairs =
                2 + u64::from(description.client_token.is_some()) + u64::from(description.description.is_some());
            let text_len = description.description.map_or(0, str::len);
            cbor_bytes(64 + text_len + 16 * description.files.len(), |e| {
                e.map(pairs)?;
                if let Some(token) = description.client_token {
                    e.str("c")?.str(token)?;
                }
                e.str("s")?.u64(description.stream_version)?;
                if let Some(text) = description.description {
                    e.str("d")?.str(text)?;
                }
                e.str("r")?.array(description.files.len() as u64)?;
                for file in description.files {
                    e.map(2)?.str("f")?.u8(file.file_id)?.str("z")?.u64(file.size)?;
                }
                Ok(())
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a payload into its short-key fields, for both formats
// ---------------------------------------------------------------------------------------------

/// The short keys any message of the protocol uses; others are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    C,
    S,
    F,
    L,
    O,
    N,
    B,
    I,
    P,
}

impl Key {
    const ALL: [Key; 9] = [Key::C, Key::S, Key::F, Key::L, Key::O, Key::N, Key::B, Key::I, Key::P];

    fn name(self) -> &'static str {
        match self {
            Key::C => "c",
            Key::S => "s",
            Key::F => "f",
            Key::L => "l",
            Key::O => "o",
            Key::N => "n",
            Key::B => "b",
            Key::I => "i",
            Key::P => "p",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }
}

/// A field's value, reduced to what the protocol can use; containers and other types keep
/// only their kind, for the error message.
#[derive(Clone, Debug, PartialEq)]
enum FieldValue<'a> {
    Unsigned(u64),
    Negative,
    /// A number that is not an integer (a fraction, NaN, infinity, or a CBOR float).
    NotInteger,
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    /// JSON `null`, CBOR null or undefined: treated as an absent field.
    Null,
    Other(&'static str),
}

impl FieldValue<'_> {
    fn kind(&self) -> &'static str {
        match self {
            FieldValue::Unsigned(_) => "an unsigned integer",
            FieldValue::Negative => "a negative integer",
            FieldValue::NotInteger => "a non-integer number",
            FieldValue::Text(_) => "text",
            FieldValue::Bytes(_) => "a byte string",
            FieldValue::Null => "null",
            FieldValue::Other(kind) => kind,
        }
    }
}

#[derive(Default)]
struct Fields<'a> {
    values: [Option<FieldValue<'a>>; Key::ALL.len()],
}

impl<'a> Fields<'a> {
    /// A key may appear once: two values for `l` leave no right answer.
    fn put(&mut self, key: Key, value: FieldValue<'a>) -> Result<(), String> {
        let slot = &mut self.values[key as usize];
        if slot.is_some() {
            return Err(format!("the key {} appears more than once", key.name()));
        }
        *slot = Some(value);
        Ok(())
    }

    fn take(&mut self, key: Key) -> Option<FieldValue<'a>> {
        self.values[key as usize]
            .take()
            .filter(|value| *value != FieldValue::Null)
    }
}

fn read_fields(format: PayloadFormat, payload: &[u8]) -> Result<Fields<'_>, RejectError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(RejectError::invalid_request(format!(
            "the payload is {} bytes; at most {MAX_MESSAGE_BYTES} are accepted",
            payload.len()
        )));
    }
    match format {
        PayloadFormat::Json => read_json_fields(payload),
        PayloadFormat::Cbor => read_cbor_fields(payload),
    }
}

// --- CBOR ------------------------------------------------------------------------------------

/// Walks the top-level map without recursion. Every step consumes input or fails, so a map
/// that claims 2^64 entries ends at the end of the payload; byte and text strings are
/// borrowed, so a length prefix larger than the payload allocates nothing.
fn read_cbor_fields(payload: &[u8]) -> Result<Fields<'_>, RejectError> {
    let mut decoder = Decoder::new(payload);
    let mut remaining = match decoder.datatype().map_err(invalid_cbor)? {
        Type::Map | Type::MapIndef => decoder.map().map_err(invalid_cbor)?,
        other => {
            return Err(RejectError::invalid_request(format!(
                "the request must be a CBOR map, not {other}"
            )));
        }
    };
    let mut fields = Fields::default();
    while more_cbor_entries(&mut decoder, &mut remaining)? {
        let key = cbor_key(&mut decoder)?;
        let value = cbor_value(&mut decoder).map_err(invalid_cbor)?;
        if let Some(key) = key {
            fields.put(key, value).map_err(RejectError::invalid_request)?;
        }
    }
    if decoder.position() != payload.len() {
        return Err(RejectError::new(
            RejectCode::InvalidCbor,
            "bytes follow the request's map",
        ));
    }
    Ok(fields)
}

/// Counts down a definite map, or looks for the break byte that ends an indefinite one.
fn more_cbor_entries(decoder: &mut Decoder<'_>, remaining: &mut Option<u64>) -> Result<bool, RejectError> {
    match remaining {
        Some(0) => Ok(false),
        Some(n) => {
            *n -= 1;
            Ok(true)
        }
        None if decoder.datatype().map_err(invalid_cbor)? == Type::Break => {
            // minicbor reads a break only inside its own iterators; it is one byte.
            decoder.set_position(decoder.position() + 1);
            Ok(false)
        }
        None => Ok(true),
    }
}

/// A text key, known (`Some`) or to be skipped (`None`). Other key types are refused: the
/// protocol's maps have text keys only (§3.3).
fn cbor_key(decoder: &mut Decoder<'_>) -> Result<Option<Key>, RejectError> {
    match decoder.datatype().map_err(invalid_cbor)? {
        Type::String => Ok(Key::from_name(decoder.str().map_err(invalid_cbor)?)),
        Type::Break => Err(RejectError::new(
            RejectCode::InvalidCbor,
            "a break byte where a map key belongs",
        )),
        other => Err(RejectError::invalid_request(format!(
            "map keys must be text strings, not {other}"
        ))),
    }
}

fn cbor_value<'b>(decoder: &mut Decoder<'b>) -> Result<FieldValue<'b>, minicbor::decode::Error> {
    Ok(match decoder.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => FieldValue::Unsigned(decoder.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            decoder.int()?;
            FieldValue::Negative
        }
        Type::String => FieldValue::Text(Cow::Borrowed(decoder.str()?)),
        Type::Bytes => FieldValue::Bytes(Cow::Borrowed(decoder.bytes()?)),
        // skip() would take a lone break as a value; it is malformed here.
        Type::Break => return Err(minicbor::decode::Error::message("a break byte where a value belongs")),
        other => {
            // Iterative and bounded by the input: nested containers cannot exhaust the stack.
            decoder.skip()?;
            skipped_kind(other)
        }
    })
}

fn skipped_kind(datatype: Type) -> FieldValue<'static> {
    match datatype {
        Type::Null | Type::Undefined => FieldValue::Null,
        Type::F16 | Type::F32 | Type::F64 => FieldValue::NotInteger,
        Type::BytesIndef => FieldValue::Other("an indefinite-length byte string"),
        Type::StringIndef => FieldValue::Other("an indefinite-length text string"),
        Type::Array | Type::ArrayIndef => FieldValue::Other("an array"),
        Type::Map | Type::MapIndef => FieldValue::Other("a map"),
        Type::Tag => FieldValue::Other("a tagged value"),
        Type::Bool => FieldValue::Other("a boolean"),
        _ => FieldValue::Other("a simple value"),
    }
}

fn invalid_cbor(error: minicbor::decode::Error) -> RejectError {
    RejectError::from_library(RejectCode::InvalidCbor, &error)
}

// --- JSON ------------------------------------------------------------------------------------

/// Streams the top-level object through serde without building a `Value`: unknown members
/// are skipped by serde_json's iterative skipper, and nesting under a known key is limited by
/// serde_json's recursion limit.
fn read_json_fields(payload: &[u8]) -> Result<Fields<'static>, RejectError> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let fields = deserializer.deserialize_map(JsonFieldsVisitor).map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(fields)
}

/// Syntax errors are `InvalidJson`; well-formed JSON of the wrong shape is `InvalidRequest`.
fn json_error(error: serde_json::Error) -> RejectError {
    let code = match error.classify() {
        serde_json::error::Category::Data => RejectCode::InvalidRequest,
        _ => RejectCode::InvalidJson,
    };
    RejectError::from_library(code, &error)
}

struct JsonFieldsVisitor;

impl<'de> Visitor<'de> for JsonFieldsVisitor {
    type Value = Fields<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(JsonKey(key)) = map.next_key()? {
            match key {
                Some(key) => {
                    let JsonFieldValue(value) = map.next_value()?;
                    fields.put(key, value).map_err(de::Error::custom)?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A member name: a known short key, or `None` for one to skip.
struct JsonKey(Option<Key>);

impl<'de> de::Deserialize<'de> for JsonKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(JsonKeyVisitor)
    }
}

struct JsonKeyVisitor;

impl Visitor<'_> for JsonKeyVisitor {
    type Value = JsonKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<JsonKey, E> {
        Ok(JsonKey(Key::from_name(name)))
    }
}

struct JsonFieldValue(FieldValue<'static>);

impl<'de> de::Deserialize<'de> for JsonFieldValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonFieldValueVisitor).map(JsonFieldValue)
    }
}

struct JsonFieldValueVisitor;

impl<'de> Visitor<'de> for JsonFieldValueVisitor {
    type Value = FieldValue<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(FieldValue::Negative, FieldValue::Unsigned))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(json_float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Other("a boolean"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
}

/// JSON has one number type, so `4096.0` is the integer 4096. serde_json also hands integers
/// beyond u64 over as floats: those saturate, staying out of every range.
fn json_float(v: f64) -> FieldValue<'static> {
    if !v.is_finite() || v.fract() != 0.0 {
        FieldValue::NotInteger
    } else if v < 0.0 {
        FieldValue::Negative
    } else {
        // `as` saturates at u64::MAX, which is what the comment above wants.
        FieldValue::Unsigned(v as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// serde_json was built with `preserve_order`, so members keep their insertion order.
fn json_bytes(body: Map<String, Value>) -> Vec<u8> {
    Value::Object(body).to_string().into_bytes()
}

type CborResult = Result<(), minicbor::encode::Error<Infallible>>;

fn cbor_bytes(capacity: usize, build: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> CborResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    let written = build(&mut Encoder::new(&mut out));
    // Writing to a Vec is infallible, and the builders only call primitive encoders, which
    // raise nothing but write errors: this cannot fail, whatever the input.
    written.expect("CBOR encoding into a Vec<u8> cannot fail");
    out
}

// ---------------------------------------------------------------------------------------------
// Fuzzing entry point
// ---------------------------------------------------------------------------------------------

/// File lengths the fuzz target plans against: empty, tiny, around block-size edges, the
/// agent's 5-block example, and beyond one response's 128 KiB.
const SYNTHETIC_FILE_LENGTHS: [u64; 8] = [0, 1, 255, 256, 4096, 20_000, 131_073, 1_000_000];

/// Stream version of the synthetic stream; file 0 is its only file.
const SYNTHETIC_STREAM_VERSION: u64 = 1;

/// The largest rejection body: the code twice, a bounded message and the token twice, each
/// character JSON-escaped at worst as `\uXXXX`.
const MAX_REJECTION_BYTES: usize = 128 + 6 * (MAX_MESSAGE_TEXT_BYTES + 2 * MAX_CLIENT_TOKEN_BYTES);

/// One fuzz iteration: `data` is a selector byte (bit 0: format; the rest: which synthetic
/// file), a topic-length byte, that many topic bytes, then the payload. Runs topic parsing,
/// request decoding, block planning and the encoding of a rejection or of the first block,
/// asserting the invariants the codec promises (so a logic error shows up as a crash).
#[doc(hidden)]
pub fn fuzz_get_stream(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        PayloadFormat::Json
    } else {
        PayloadFormat::Cbor
    };
    let file_len = SYNTHETIC_FILE_LENGTHS[usize::from(selector >> 1) % SYNTHETIC_FILE_LENGTHS.len()];
    let (topic, payload) = split_topic(rest);

    fuzz_topic(&String::from_utf8_lossy(topic));
    if let Ok(describe) = decode_describe_stream(format, payload) {
        assert!(describe.client_token.is_none_or(|c| c.len() <= MAX_CLIENT_TOKEN_BYTES));
    }
    let _ = decode_data_block(format, payload);
    match decode_get_stream(format, payload) {
        Ok(request) => fuzz_answer(format, &request, file_len),
        Err(rejection) => fuzz_reject(format, &rejection),
    }
}

fn split_topic(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&topic_len, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(topic_len).min(rest.len()))
}

fn fuzz_topic(topic: &str) {
    if let Ok(parsed) = parse_stream_topic(topic) {
        assert_eq!(parsed.to_string(), topic, "a parsed topic prints back as itself");
        let reply = parsed.with_action(StreamAction::Rejected).to_string();
        assert_eq!(
            parse_stream_topic(&reply),
            Ok(parsed.with_action(StreamAction::Rejected))
        );
    }
}

fn fuzz_reject(format: PayloadFormat, rejection: &RejectError) {
    let body = encode_rejection(format, rejection);
    assert!(body.len() <= MAX_REJECTION_BYTES, "rejection of {} bytes", body.len());
}

fn fuzz_answer(format: PayloadFormat, request: &GetStreamRequest, file_len: u64) {
    assert_request_in_bounds(request);
    let reencoded = encode_get_stream(format, request);
    assert_eq!(
        decode_get_stream(format, &reencoded).as_ref(),
        Ok(request),
        "request round trip"
    );
    if let Err(rejection) = request.check_version(SYNTHETIC_STREAM_VERSION) {
        return fuzz_reject(format, &rejection);
    }
    if request.file_id != 0 {
        return fuzz_reject(format, &request.reject(RejectCode::ResourceNotFound, "no such file"));
    }
    match plan_blocks(request, file_len) {
        Ok(plan) => fuzz_first_block(format, request, file_len, &plan),
        Err(rejection) => fuzz_reject(format, &rejection),
    }
}

fn assert_request_in_bounds(request: &GetStreamRequest) {
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
}

fn fuzz_first_block(format: PayloadFormat, request: &GetStreamRequest, file_len: u64, plan: &BlockPlan) {
    let per_response = (MAX_RESPONSE_DATA_BYTES / request.block_size) as usize;
    assert!(plan.blocks.len() <= per_response);
    assert!(plan.blocks.windows(2).all(|pair| pair[0].block_id < pair[1].block_id));
    for block in &plan.blocks {
        assert!(block.byte_range().end <= file_len && block.length >= 1 && block.length <= request.block_size);
        let is_last = block.byte_range().end == file_len;
        assert!(
            is_last || block.length == request.block_size,
            "only the last block is short"
        );
    }
    let Some(first) = plan.blocks.first() else { return };
    // The synthetic file's byte at offset x is x mod 251: only this block is materialized.
    let payload: Vec<u8> = first.byte_range().map(|x| (x % 251) as u8).collect();
    let block = DataBlock {
        client_token: request.client_token.as_deref(),
        file_id: request.file_id,
        block_id: first.block_id,
        payload: &payload,
    };
    let message = encode_data_block(format, &block);
    if format == PayloadFormat::Cbor {
        assert!(
            message.len() <= payload.len() + 128,
            "fits the agent's block size + 128 buffer"
        );
    }
    let received = decode_data_block(format, &message);
    assert_eq!(
        received.map(|r| (r.block_id, r.payload.len())),
        Ok((first.block_id, payload.len()))
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const CBOR: PayloadFormat = PayloadFormat::Cbor;
    const JSON: PayloadFormat = PayloadFormat::Json;

    /// Hex with spaces, as device.md writes byte vectors.
    fn bytes(spaced_hex: &str) -> Vec<u8> {
        hex::decode(spaced_hex.replace(' ', "")).unwrap()
    }

    /// The OTA agent's request of §3.2, byte for byte.
    const AGENT_REQUEST: &str = "a6 6163 63726479 6166 00 616c 191000 616f 00 6162 41 1f 616e 08";

    fn agent_request() -> GetStreamRequest {
        GetStreamRequest {
            client_token: Some("rdy".into()),
            stream_version: None,
            file_id: 0,
            block_size: 4096,
            block_offset: 0,
            number_of_blocks: Some(8),
            bitmap: Some(vec![0x1f]),
        }
    }

    fn request(block_size: u32, offset: u32, count: Option<u32>, bitmap: Option<Vec<u8>>) -> GetStreamRequest {
        GetStreamRequest {
            client_token: None,
            stream_version: None,
            file_id: 0,
            block_size,
            block_offset: offset,
            number_of_blocks: count,
            bitmap,
        }
    }

    fn json(text: &str) -> Result<GetStreamRequest, RejectError> {
        decode_get_stream(JSON, text.as_bytes())
    }

    fn code_of<T: fmt::Debug>(result: Result<T, RejectError>) -> RejectCode {
        result.unwrap_err().code
    }

    fn ids(plan: &BlockPlan) -> Vec<u32> {
        plan.blocks.iter().map(|b| b.block_id).collect()
    }

    // --- topics ---

    #[test]
    fn parses_every_stream_topic_form() {
        let cases = [
            ("get", StreamAction::Get),
            ("data", StreamAction::Data),
            ("describe", StreamAction::Describe),
            ("description", StreamAction::Description),
            ("rejected", StreamAction::Rejected),
        ];
        for (segment, action) in cases {
            for format in [JSON, CBOR] {
                let topic = format!(
                    "$aws/things/dev:1_a-b/streams/AFR_OTA-9ca58abd/{segment}/{}",
                    format.as_str()
                );
                let parsed = parse_stream_topic(&topic).unwrap();
                assert_eq!(
                    parsed,
                    StreamTopic {
                        thing_name: "dev:1_a-b",
                        stream_id: "AFR_OTA-9ca58abd",
                        action,
                        format
                    }
                );
                assert_eq!(parsed.to_string(), topic);
            }
        }
    }

    #[test]
    fn reply_topics_keep_thing_stream_and_format() {
        let get = parse_stream_topic("$aws/things/t/streams/s/get/cbor").unwrap();
        assert!(get.action.is_request());
        assert_eq!(
            get.with_action(StreamAction::Data).to_string(),
            "$aws/things/t/streams/s/data/cbor"
        );
        assert_eq!(
            get.with_action(StreamAction::Rejected).to_string(),
            "$aws/things/t/streams/s/rejected/cbor"
        );
    }

    #[test]
    fn refuses_topics_of_other_shapes() {
        use TopicError::*;
        let long_name = "a".repeat(129);
        let cases: Vec<(String, TopicError)> = vec![
            ("".into(), NotAStreamTopic),
            ("$aws/things/t/jobs/$next/get".into(), NotAStreamTopic),
            ("aws/things/t/streams/s/get/json".into(), NotAStreamTopic),
            ("$aws/things/t/streams/s/get".into(), NotAStreamTopic),
            ("$aws/things/t/streams/s/get/json/".into(), NotAStreamTopic),
            ("$aws/things/t/streams/s/get/json/x".into(), NotAStreamTopic),
            ("$aws/things/t/stream/s/get/json".into(), NotAStreamTopic),
            ("$aws/things//streams/s/get/json".into(), InvalidThingName),
            ("$aws/things/+/streams/s/get/json".into(), InvalidThingName),
            ("$aws/things/#/streams/s/get/json".into(), InvalidThingName),
            ("$aws/things/a b/streams/s/get/json".into(), InvalidThingName),
            ("$aws/things/é/streams/s/get/json".into(), InvalidThingName),
            (format!("$aws/things/{long_name}/streams/s/get/json"), InvalidThingName),
            ("$aws/things/t/streams//get/json".into(), InvalidStreamId),
            ("$aws/things/t/streams/a:b/get/json".into(), InvalidStreamId),
            (format!("$aws/things/t/streams/{long_name}/get/json"), InvalidStreamId),
            ("$aws/things/t/streams/s/put/json".into(), UnknownAction),
            ("$aws/things/t/streams/s/GET/json".into(), UnknownAction),
            ("$aws/things/t/streams/s/get/JSON".into(), UnknownFormat),
            ("$aws/things/t/streams/s/get/xml".into(), UnknownFormat),
        ];
        for (topic, expected) in cases {
            assert_eq!(parse_stream_topic(&topic), Err(expected), "{topic}");
        }
    }

    #[test]
    fn names_of_128_characters_are_accepted() {
        let name = "a".repeat(128);
        let topic = format!("$aws/things/{name}/streams/{name}/get/json");
        assert!(parse_stream_topic(&topic).is_ok());
        assert_eq!(
            StreamTopic::new("t", "", StreamAction::Get, JSON),
            Err(TopicError::InvalidStreamId)
        );
    }

    // --- CBOR requests: hand-built vectors ---

    #[test]
    fn decodes_the_agents_cbor_request() {
        assert_eq!(decode_get_stream(CBOR, &bytes(AGENT_REQUEST)), Ok(agent_request()));
    }

    #[test]
    fn encodes_the_agents_cbor_request_byte_for_byte() {
        assert_eq!(encode_get_stream(CBOR, &agent_request()), bytes(AGENT_REQUEST));
    }

    #[test]
    fn decodes_the_file_streams_library_request_and_its_quirky_bitmap() {
        // {"c":"rdy","f":1,"l":1024,"o":3,"b":h'4D513D3D',"n":1}: b is the ASCII of "MQ==".
        let payload = bytes("a6 6163 63726479 6166 01 616c 190400 616f 03 6162 44 4d513d3d 616e 01");
        let request = decode_get_stream(CBOR, &payload).unwrap();
        assert_eq!(request.bitmap.as_deref(), Some(&b"MQ=="[..]));
        assert_eq!(
            request.requested_blocks().collect::<Vec<_>>(),
            vec![3],
            "lowest set bit, capped by n"
        );
    }

    #[test]
    fn accepts_indefinite_maps_wide_integers_and_extra_keys() {
        // {_ "x":[1,{"y":h''}], "l":4096 as a 4-byte integer, "f":0 as a 2-byte one, "z":null,
        //    "o":0, "w":1.5 as a half float }
        let payload = bytes("bf 6178 82 01 a1 6179 40 616c 1a00001000 6166 190000 617a f6 616f 00 6177 f93e00 ff");
        let request = decode_get_stream(CBOR, &payload).unwrap();
        assert_eq!(request, request_with(4096, None));
    }

    fn request_with(block_size: u32, count: Option<u32>) -> GetStreamRequest {
        request(block_size, 0, count, None)
    }

    #[test]
    fn a_null_field_counts_as_absent() {
        // {"f":0,"l":256,"n":null,"c":null}
        let payload = bytes("a4 6166 00 616c 190100 616e f6 6163 f6");
        assert_eq!(decode_get_stream(CBOR, &payload), Ok(request_with(256, None)));
    }

    #[test]
    fn malformed_cbor_is_invalid_cbor() {
        let cases = [
            "",                            // nothing
            "a2 6166 00 616c",             // truncated: value missing
            "a1 6166 00 00",               // a byte after the map
            "a1 6166 1b",                  // truncated integer
            "a1 62 ff fe 00",              // key is not UTF-8
            "a1 6162 5b 7fffffffffffffff", // bytes claim 2^63 bytes: must not allocate
            "a1 6162 5a ffffffff 00",      // bytes claim 4 GiB
            "bf 6166 00",                  // indefinite map without its break
            "a1 6166 ff",                  // a break as a value
            "a1 6166 1c",                  // reserved additional info
            "bb ffffffffffffffff 6166 00", // a map claiming 2^64-1 pairs
            "a1 6178 9f 9f 9f 9f",         // unterminated nested indefinite arrays
        ];
        for case in cases {
            assert_eq!(
                code_of(decode_get_stream(CBOR, &bytes(case))),
                RejectCode::InvalidCbor,
                "{case}"
            );
        }
    }

    #[test]
    fn well_formed_cbor_of_the_wrong_shape_is_invalid_request() {
        let cases = [
            "80",                               // an array
            "6166",                             // a text string
            "a1 01 00",                         // integer key
            "a1 7f6166ff 00",                   // indefinite-length text key
            "a2 6166 00 6166 01",               // duplicate key
            "a1 616c 190100",                   // f missing
            "a1 6166 00",                       // l missing
            "a2 6166 6130 616c 190100",         // f as text
            "a2 6166 00 616c f94400",           // l as a float
            "a2 6166 00 616c c2 41 01",         // l as a bignum (tag 2)
            "a3 6166 00 616c 190100 6162 6131", // b as text in CBOR
            "a3 6166 00 616c 190100 6173 20",   // s negative
            "a2 6166 190100 616c 190100",       // f = 256
            "a2 6166 20 616c 190100",           // f = -1
        ];
        for case in cases {
            assert_eq!(
                code_of(decode_get_stream(CBOR, &bytes(case))),
                RejectCode::InvalidRequest,
                "{case}"
            );
        }
    }

    // --- limits, in both formats ---

    fn cbor_request(pairs: &[(&str, Vec<u8>)]) -> Vec<u8> {
        // Map header for fewer than 24 pairs, then one-byte-length text keys and raw values.
        let mut out = vec![0xa0 + pairs.len() as u8];
        for (key, value) in pairs {
            out.push(0x60 + key.len() as u8);
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// CBOR unsigned integer, written per RFC 8949 §3.1 (major type 0).
    fn cbor_uint(v: u64) -> Vec<u8> {
        match v {
            0..=23 => vec![v as u8],
            24..=0xff => vec![0x18, v as u8],
            0x100..=0xffff => [&[0x19][..], &(v as u16).to_be_bytes()].concat(),
            0x1_0000..=0xffff_ffff => [&[0x1a][..], &(v as u32).to_be_bytes()].concat(),
            _ => [&[0x1b][..], &v.to_be_bytes()].concat(),
        }
    }

    fn both_formats(field: &str, value: u64) -> [Result<GetStreamRequest, RejectError>; 2] {
        let mut cbor_pairs = vec![("f", cbor_uint(0)), ("l", cbor_uint(4096))];
        let mut json_fields = vec![("f".to_string(), 0u64), ("l".to_string(), 4096)];
        if let Some(slot) = cbor_pairs.iter_mut().find(|(k, _)| *k == field) {
            slot.1 = cbor_uint(value);
            json_fields.iter_mut().find(|(k, _)| k == field).unwrap().1 = value;
        } else {
            cbor_pairs.push((field, cbor_uint(value)));
            json_fields.push((field.to_string(), value));
        }
        let json_text = format!(
            "{{{}}}",
            json_fields
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        [decode_get_stream(CBOR, &cbor_request(&cbor_pairs)), json(&json_text)]
    }

    #[test]
    fn block_size_bounds() {
        for [cbor, json] in [both_formats("l", 256), both_formats("l", 131_072)] {
            assert!(cbor.is_ok() && json.is_ok());
        }
        for bad in [0, 255, 131_073, u64::MAX] {
            for result in both_formats("l", bad) {
                assert_eq!(code_of(result), RejectCode::BlockSizeOutOfBounds, "l={bad}");
            }
        }
        assert_eq!(code_of(json(r#"{"f":0,"l":-4096}"#)), RejectCode::BlockSizeOutOfBounds);
    }

    #[test]
    fn offset_bounds() {
        for result in both_formats("o", 98_304) {
            assert_eq!(result.unwrap().block_offset, 98_304);
        }
        for result in both_formats("o", 98_305) {
            assert_eq!(code_of(result), RejectCode::OffsetOutOfBounds);
        }
        assert_eq!(
            code_of(json(r#"{"f":0,"l":4096,"o":-1}"#)),
            RejectCode::OffsetOutOfBounds
        );
    }

    #[test]
    fn block_count_bounds() {
        for result in both_formats("n", 98_304) {
            assert_eq!(result.unwrap().number_of_blocks, Some(98_304));
        }
        for result in both_formats("n", 0) {
            assert_eq!(result.unwrap().number_of_blocks, Some(0));
        }
        for result in both_formats("n", 98_305) {
            assert_eq!(code_of(result), RejectCode::BlockCountLimitExceeded);
        }
    }

    #[test]
    fn file_id_bounds() {
        for result in both_formats("f", 255) {
            assert_eq!(result.unwrap().file_id, 255);
        }
        for result in both_formats("f", 256) {
            assert_eq!(code_of(result), RejectCode::InvalidRequest);
        }
    }

    #[test]
    fn bitmap_bounds() {
        let largest = vec![0xffu8; MAX_BITMAP_BYTES];
        let too_large = vec![0xffu8; MAX_BITMAP_BYTES + 1];
        let with_bitmap = |b: &[u8]| {
            let mut header = vec![0x59];
            header.extend_from_slice(&(b.len() as u16).to_be_bytes());
            header.extend_from_slice(b);
            cbor_request(&[("f", vec![0]), ("l", cbor_uint(256)), ("b", header)])
        };
        let request = decode_get_stream(CBOR, &with_bitmap(&largest)).unwrap();
        assert_eq!(request.bitmap.as_ref().map(Vec::len), Some(12_287));
        assert_eq!(
            code_of(decode_get_stream(CBOR, &with_bitmap(&too_large))),
            RejectCode::BlockBitmapLimitExceeded
        );

        let hex_of = |b: &[u8]| format!(r#"{{"f":0,"l":256,"b":"0x{}"}}"#, hex::encode(b));
        assert_eq!(json(&hex_of(&largest)).unwrap().bitmap.map(|b| b.len()), Some(12_287));
        assert_eq!(code_of(json(&hex_of(&too_large))), RejectCode::BlockBitmapLimitExceeded);
        // The limit is judged on the text: an odd digit past the limit is still over it.
        let odd = format!(r#"{{"f":0,"l":256,"b":"0x{}f"}}"#, hex::encode(&largest));
        assert_eq!(code_of(json(&odd)), RejectCode::BlockBitmapLimitExceeded);
    }

    #[test]
    fn client_token_of_64_bytes_is_echoed_and_65_is_refused_without_echo() {
        let token = "t".repeat(64);
        let ok = json(&format!(r#"{{"c":"{token}","f":0,"l":100}}"#)).unwrap_err();
        assert_eq!(
            (ok.code, ok.client_token),
            (RejectCode::BlockSizeOutOfBounds, Some(token))
        );

        let long = "t".repeat(65);
        let refused = json(&format!(r#"{{"c":"{long}","f":0,"l":4096}}"#)).unwrap_err();
        assert_eq!((refused.code, refused.client_token), (RejectCode::InvalidRequest, None));
        let not_text = json(r#"{"c":7,"f":0,"l":4096}"#).unwrap_err();
        assert_eq!(
            (not_text.code, not_text.client_token),
            (RejectCode::InvalidRequest, None)
        );
    }

    // --- JSON requests ---

    #[test]
    fn decodes_the_file_streams_library_json_request() {
        let request = json(r#"{"s": 1,"f": 2,"l": 1024,"o": 5,"n": 3}"#).unwrap();
        assert_eq!(request.stream_version, Some(1));
        assert_eq!(request.requested_blocks().collect::<Vec<_>>(), vec![5, 6, 7]);
    }

    #[test]
    fn json_bitmap_is_hex_with_optional_prefix() {
        for b in [r#""0x130080""#, r#""0X130080""#, r#""130080""#] {
            let request = json(&format!(r#"{{"f":0,"l":256,"o":20,"b":{b}}}"#)).unwrap();
            assert_eq!(request.bitmap, Some(vec![0x13, 0x00, 0x80]));
        }
        assert_eq!(json(r#"{"f":0,"l":256,"b":"0x"}"#).unwrap().bitmap, Some(vec![]));
        for bad in [r#""0x1""#, r#""0xzz""#, r#""MQ==""#, "[1]", "19"] {
            assert_eq!(
                code_of(json(&format!(r#"{{"f":0,"l":256,"b":{bad}}}"#))),
                RejectCode::InvalidRequest,
                "{bad}"
            );
        }
    }

    #[test]
    fn json_numbers_that_are_integers_count_as_integers() {
        assert_eq!(json(r#"{"f":0,"l":4096.0}"#).unwrap().block_size, 4096);
        assert_eq!(json(r#"{"f":0,"l":4.096e3}"#).unwrap().block_size, 4096);
        assert_eq!(code_of(json(r#"{"f":0,"l":4096.5}"#)), RejectCode::InvalidRequest);
        // Beyond u64, serde_json yields a float: out of range, not a type error.
        assert_eq!(code_of(json(r#"{"f":0,"l":1e300}"#)), RejectCode::BlockSizeOutOfBounds);
        assert_eq!(
            code_of(json(r#"{"f":0,"l":99999999999999999999999}"#)),
            RejectCode::BlockSizeOutOfBounds
        );
        assert_eq!(
            json(r#"{"f":0,"l":4096,"s":18446744073709551615}"#)
                .unwrap()
                .stream_version,
            Some(u64::MAX)
        );
    }

    #[test]
    fn json_syntax_errors_and_shape_errors() {
        for bad in [
            "",
            "{",
            r#"{"f":0,"l":4096"#,
            r#"{"f":0,"l":4096}x"#,
            "{'f':0}",
            "nul",
            "\u{feff}{}",
        ] {
            assert_eq!(code_of(json(bad)), RejectCode::InvalidJson, "{bad:?}");
        }
        for shape in [
            "[]",
            "\"x\"",
            "12",
            "null",
            r#"{"f":0,"f":0,"l":4096}"#,
            r#"{"f":"0","l":4096}"#,
            r#"{"l":4096}"#,
        ] {
            assert_eq!(code_of(json(shape)), RejectCode::InvalidRequest, "{shape}");
        }
    }

    #[test]
    fn json_tolerates_unknown_members_and_deep_nesting_in_them() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(r#"{{"x":{deep},"clientToken":"ignored","f":0,"l":4096,"q":{{"a":[1,2,{{}}]}}}}"#);
        assert_eq!(json(&text), Ok(request_with(4096, None)));
        // Under a known key, serde_json's recursion limit applies: an error, not a stack overflow.
        let under_known = format!(r#"{{"f":{deep},"l":4096}}"#);
        assert!(json(&under_known).is_err());
    }

    #[test]
    fn json_escapes_are_decoded_in_keys_and_values() {
        let request = json(r#"{"\u0063":"r\"dy","f":0,"l":4096}"#).unwrap();
        assert_eq!(request.client_token.as_deref(), Some("r\"dy"));
    }

    #[test]
    fn oversized_payloads_are_refused_before_parsing() {
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        for format in [JSON, CBOR] {
            assert_eq!(code_of(decode_get_stream(format, &huge)), RejectCode::InvalidRequest);
        }
    }

    #[test]
    fn rejection_messages_do_not_echo_large_inputs() {
        let text = format!("\"{}\"", "x".repeat(100_000));
        let error = json(&text).unwrap_err();
        assert!(error.message.len() <= MAX_MESSAGE_TEXT_BYTES, "{}", error.message.len());
    }

    // --- round trips ---

    #[test]
    fn requests_round_trip_in_both_formats() {
        let full = GetStreamRequest {
            client_token: Some("tök\"en".into()),
            stream_version: Some(65_535),
            file_id: 255,
            block_size: 131_072,
            block_offset: 98_304,
            number_of_blocks: Some(98_304),
            bitmap: Some(vec![0, 1, 0x80, 0xff]),
        };
        for format in [JSON, CBOR] {
            for request in [agent_request(), full.clone(), request_with(256, None)] {
                assert_eq!(
                    decode_get_stream(format, &encode_get_stream(format, &request)),
                    Ok(request)
                );
            }
        }
    }

    #[test]
    fn json_request_encoding_uses_hex_bitmaps() {
        let text = String::from_utf8(encode_get_stream(JSON, &agent_request())).unwrap();
        assert_eq!(text, r#"{"c":"rdy","f":0,"l":4096,"o":0,"b":"0x1f","n":8}"#);
    }

    // --- requested blocks and the bitmap ---

    #[test]
    fn the_doc_bitmap_example_names_blocks_20_21_24_43() {
        let request = request(256, 20, None, Some(vec![0x13, 0x00, 0x80]));
        assert_eq!(request.requested_blocks().collect::<Vec<_>>(), vec![20, 21, 24, 43]);
    }

    #[test]
    fn bitmap_bits_are_lsb_first_and_capped_by_n_lowest_first() {
        let every_bit: Vec<u32> = request(256, 0, None, Some(vec![0xff, 0xff]))
            .requested_blocks()
            .collect();
        assert_eq!(every_bit, (0..16).collect::<Vec<_>>());
        let capped: Vec<u32> = request(256, 0, Some(3), Some(vec![0b1010_0000, 0x01]))
            .requested_blocks()
            .collect();
        assert_eq!(capped, vec![5, 7, 8]);
        let high_bit_only: Vec<u32> = request(256, 0, None, Some(vec![0, 0, 0x80]))
            .requested_blocks()
            .collect();
        assert_eq!(high_bit_only, vec![23]);
        assert_eq!(request(256, 0, Some(0), Some(vec![0xff])).requested_blocks().count(), 0);
        assert_eq!(request(256, 0, None, Some(vec![])).requested_blocks().count(), 0);
        assert_eq!(request(256, 0, None, Some(vec![0; 100])).requested_blocks().count(), 0);
    }

    #[test]
    fn without_a_bitmap_n_blocks_from_o_and_n_defaults_to_128_kib() {
        assert_eq!(
            request(4096, 7, Some(3), None).requested_blocks().collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(request(4096, 0, None, None).requested_blocks().count(), 32);
        assert_eq!(request(256, 0, None, None).requested_blocks().count(), 512);
        assert_eq!(request(131_072, 0, None, None).requested_blocks().count(), 1);
        // With a bitmap, the default n caps the set bits at 131072 / l too.
        assert_eq!(
            request(4096, 0, None, Some(vec![0xff; 8])).requested_blocks().count(),
            32
        );
    }

    // --- planning ---

    #[test]
    fn the_agents_20000_byte_file_is_five_blocks_and_the_last_is_3616_bytes() {
        let plan = plan_blocks(&agent_request(), 20_000).unwrap();
        assert_eq!(ids(&plan), vec![0, 1, 2, 3, 4]);
        assert!(plan.blocks[..4].iter().all(|b| b.length == 4096));
        assert_eq!(
            plan.blocks[4],
            PlannedBlock {
                block_id: 4,
                file_offset: 16_384,
                length: 3616
            }
        );
        assert_eq!(plan.next_block, None);
    }

    #[test]
    fn a_file_of_whole_blocks_ends_with_a_full_block() {
        let plan = plan_blocks(&request(4096, 0, None, None), 3 * 4096).unwrap();
        assert_eq!(plan.blocks.iter().map(|b| b.length).collect::<Vec<_>>(), vec![4096; 3]);
        let one_byte = plan_blocks(&request(4096, 0, None, None), 1).unwrap();
        assert_eq!(
            one_byte.blocks,
            vec![PlannedBlock {
                block_id: 0,
                file_offset: 0,
                length: 1
            }]
        );
    }

    #[test]
    fn bits_and_blocks_past_the_file_are_ignored() {
        // The agent's first request over-asks with n=8 and bits 0..4; a bitmap of all ones
        // over a 3-block file yields the 3 blocks.
        let plan = plan_blocks(&request(4096, 0, Some(8), Some(vec![0xff])), 10_000).unwrap();
        assert_eq!(ids(&plan), vec![0, 1, 2]);
        let plan = plan_blocks(&request(4096, 1, Some(100), None), 10_000).unwrap();
        assert_eq!(ids(&plan), vec![1, 2]);
        // Set bits only past the file: nothing to send, but the offset is in the file.
        let plan = plan_blocks(&request(4096, 0, None, Some(vec![0xf8])), 10_000).unwrap();
        assert_eq!(
            plan,
            BlockPlan {
                blocks: vec![],
                next_block: None
            }
        );
    }

    #[test]
    fn an_offset_past_the_last_block_is_resource_not_found_with_the_token() {
        let mut past = request(4096, 3, None, None);
        past.client_token = Some("rdy".into());
        let error = plan_blocks(&past, 3 * 4096).unwrap_err();
        assert_eq!(
            (error.code, error.client_token.as_deref()),
            (RejectCode::ResourceNotFound, Some("rdy"))
        );
        assert_eq!(
            code_of(plan_blocks(&request(4096, 0, None, None), 0)),
            RejectCode::ResourceNotFound
        );
    }

    #[test]
    fn one_response_carries_at_most_128_kib_and_says_where_to_resume() {
        let asked = request(256, 0, Some(MAX_NUMBER_OF_BLOCKS), None);
        let file_len = 10 * 1024 * 1024;
        let first = plan_blocks(&asked, file_len).unwrap();
        assert_eq!(first.blocks.len(), 512);
        assert_eq!(first.blocks.iter().map(|b| u64::from(b.length)).sum::<u64>(), 131_072);
        assert_eq!(first.next_block, Some(512));
        let second = plan_blocks_from(&asked, file_len, 512).unwrap();
        assert_eq!((second.blocks[0].block_id, second.next_block), (512, Some(1024)));

        let bitmap = request(131_072, 0, None, Some(vec![0b101]));
        let plan = plan_blocks(&bitmap, 3 * 131_072).unwrap();
        assert_eq!(
            (ids(&plan), plan.next_block),
            (vec![0], None),
            "n defaults to 1 block of 128 KiB"
        );
        let plan = plan_blocks(
            &GetStreamRequest {
                number_of_blocks: Some(2),
                ..bitmap
            },
            3 * 131_072,
        )
        .unwrap();
        assert_eq!((ids(&plan), plan.next_block), (vec![0], Some(2)));
    }

    #[test]
    fn hand_built_requests_out_of_bounds_are_rejected_not_divided_by_zero() {
        assert_eq!(
            code_of(plan_blocks(&request(0, 0, None, None), 100)),
            RejectCode::BlockSizeOutOfBounds
        );
        assert_eq!(
            code_of(plan_blocks(&request(4096, u32::MAX, None, None), 100)),
            RejectCode::OffsetOutOfBounds
        );
        assert_eq!(
            code_of(plan_blocks(&request(4096, 0, Some(u32::MAX), None), 100)),
            RejectCode::BlockCountLimitExceeded
        );
        let huge_bitmap = request(4096, 0, None, Some(vec![0; MAX_BITMAP_BYTES + 1]));
        assert_eq!(
            code_of(plan_blocks(&huge_bitmap, 100)),
            RejectCode::BlockBitmapLimitExceeded
        );
        assert_eq!(request(0, 0, None, None).block_count_limit(), MAX_RESPONSE_DATA_BYTES);
    }

    #[test]
    fn block_slices_come_from_the_file() {
        let file: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let plan = plan_blocks(&request(256, 3, None, None), file.len() as u64).unwrap();
        let last = plan.blocks[0];
        assert_eq!(last.slice(&file), Some(&file[768..]));
        assert_eq!(last.slice(&file[..800]), None);
    }

    #[test]
    fn version_checks() {
        let mut asked = agent_request();
        assert!(asked.check_version(7).is_ok(), "no s: any version");
        asked.stream_version = Some(1);
        assert!(asked.check_version(1).is_ok());
        let error = asked.check_version(2).unwrap_err();
        assert_eq!(
            (error.code, error.client_token.as_deref()),
            (RejectCode::VersionMismatch, Some("rdy"))
        );
    }

    // --- data messages ---

    #[test]
    fn encodes_the_doc_data_message_byte_for_byte() {
        let block = DataBlock {
            client_token: Some("rdy"),
            file_id: 0,
            block_id: 2,
            payload: &[1, 2, 3, 4],
        };
        assert_eq!(
            encode_data_block(CBOR, &block),
            bytes("a5 6163 63726479 6166 00 616c 04 6169 02 6170 44 01020304")
        );
        let untokened = DataBlock {
            client_token: None,
            ..block
        };
        assert_eq!(
            encode_data_block(CBOR, &untokened),
            bytes("a4 6166 00 616c 04 6169 02 6170 44 01020304")
        );
    }

    #[test]
    fn json_data_messages_carry_base64() {
        let block = DataBlock {
            client_token: Some("rdy"),
            file_id: 0,
            block_id: 2,
            payload: &[1, 2, 3, 4],
        };
        let text = String::from_utf8(encode_data_block(JSON, &block)).unwrap();
        assert_eq!(text, r#"{"c":"rdy","f":0,"l":4,"i":2,"p":"AQIDBA=="}"#);
    }

    #[test]
    fn data_messages_round_trip_and_fit_the_agents_buffer() {
        let token = "t".repeat(MAX_CLIENT_TOKEN_BYTES);
        for size in [1usize, 256, 3616, 4096, 131_072] {
            let payload: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let block = DataBlock {
                client_token: Some(&token),
                file_id: 255,
                block_id: 196_607,
                payload: &payload,
            };
            for format in [JSON, CBOR] {
                let message = encode_data_block(format, &block);
                let received = decode_data_block(format, &message).unwrap();
                assert_eq!(
                    received,
                    ReceivedBlock {
                        client_token: Some(token.clone()),
                        file_id: 255,
                        block_id: 196_607,
                        payload: payload.clone()
                    }
                );
            }
            assert!(
                encode_data_block(CBOR, &block).len() <= size + 128,
                "block size + 128 bytes"
            );
        }
    }

    #[test]
    fn data_decoding_checks_l_against_p() {
        // {"f":0,"l":5,"i":2,"p":h'01020304'}
        let wrong = bytes("a4 6166 00 616c 05 6169 02 6170 44 01020304");
        assert_eq!(code_of(decode_data_block(CBOR, &wrong)), RejectCode::InvalidRequest);
    }

    // --- rejections ---

    #[test]
    fn rejection_in_json_with_and_without_token() {
        let error = RejectError::new(RejectCode::BlockSizeOutOfBounds, "bad l").with_client_token(Some("rdy".into()));
        let text = String::from_utf8(encode_rejection(JSON, &error)).unwrap();
        assert_eq!(
            text,
            r#"{"o":"BlockSizeOutOfBounds","m":"bad l","c":"rdy","code":"BlockSizeOutOfBounds","clientToken":"rdy"}"#
        );
        let bare = RejectError::new(RejectCode::InvalidJson, "x");
        let text = String::from_utf8(encode_rejection(JSON, &bare)).unwrap();
        assert_eq!(text, r#"{"o":"InvalidJson","m":"x","code":"InvalidJson"}"#);
    }

    #[test]
    fn rejection_in_cbor_byte_for_byte() {
        let error = RejectError::new(RejectCode::InvalidCbor, "x").with_client_token(Some("rdy".into()));
        let expected = bytes(concat!(
            "a5",
            "616f 6b 496e76616c696443626f72",       // "o": "InvalidCbor" (11 bytes)
            "616d 6178",                            // "m": "x"
            "6163 63 726479",                       // "c": "rdy"
            "64636f6465 6b 496e76616c696443626f72", // "code": "InvalidCbor"
            "6b636c69656e74546f6b656e 63 726479",   // "clientToken": "rdy"
        ));
        assert_eq!(encode_rejection(CBOR, &error), expected);
    }

    #[test]
    fn every_code_has_its_wire_name() {
        let names: Vec<&str> = RejectCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "InvalidTopic",
                "InvalidJson",
                "InvalidCbor",
                "InvalidRequest",
                "Unauthorized",
                "BlockSizeOutOfBounds",
                "OffsetOutOfBounds",
                "BlockCountLimitExceeded",
                "BlockBitmapLimitExceeded",
                "ResourceNotFound",
                "VersionMismatch",
                "ETagMismatch",
                "InternalError",
            ]
        );
        for code in RejectCode::ALL {
            let body = encode_rejection(CBOR, &RejectError::new(code, "m"));
            let mut decoder = Decoder::new(&body);
            assert_eq!(decoder.map().unwrap(), Some(3));
            assert_eq!((decoder.str().unwrap(), decoder.str().unwrap()), ("o", code.as_str()));
        }
    }

    // --- DescribeStream ---

    #[test]
    fn describe_requests() {
        assert_eq!(decode_describe_stream(JSON, b""), Ok(DescribeStreamRequest::default()));
        assert_eq!(
            decode_describe_stream(JSON, br#"{"c":"x","zz":1}"#)
                .unwrap()
                .client_token
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            decode_describe_stream(CBOR, &bytes("a1 6163 6178"))
                .unwrap()
                .client_token
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            decode_describe_stream(CBOR, &bytes("a0")),
            Ok(DescribeStreamRequest::default())
        );
        assert_eq!(
            code_of(decode_describe_stream(CBOR, &bytes("a1 6163"))),
            RejectCode::InvalidCbor
        );
    }

    #[test]
    fn descriptions_in_both_formats() {
        let files = [
            DescribedFile {
                file_id: 0,
                size: 20_000,
            },
            DescribedFile { file_id: 1, size: 5 },
        ];
        let description = StreamDescription {
            client_token: Some("x"),
            stream_version: 2,
            description: Some("fw"),
            files: &files,
        };
        let text = String::from_utf8(encode_description(JSON, &description)).unwrap();
        assert_eq!(
            text,
            r#"{"c":"x","s":2,"d":"fw","r":[{"f":0,"z":20000},{"f":1,"z":5}]}"#
        );
        // {"c":"x","s":2,"d":"fw","r":[{"f":0,"z":20000},{"f":1,"z":5}]}
        let expected = bytes("a4 6163 6178 6173 02 6164 626677 6172 82 a2 6166 00 617a 194e20 a2 6166 01 617a 05");
        assert_eq!(encode_description(CBOR, &description), expected);
    }

    // --- the fuzz entry point ---

    #[test]
    fn fuzz_entry_point_handles_edge_inputs() {
        let topic = b"$aws/things/t/streams/s/get/cbor";
        let mut agent = vec![1 | (5 << 1), topic.len() as u8];
        agent.extend_from_slice(topic);
        agent.extend_from_slice(&bytes(AGENT_REQUEST));
        let cases: [&[u8]; 5] = [&[], &[0], &[1, 200], &[2, 0, b'{', b'}'], &agent];
        for data in cases {
            fuzz_get_stream(data);
        }
        for selector in 0..=u8::MAX {
            fuzz_get_stream(&[selector, 0, 0xa2, 0x61, b'f', 0, 0x61, b'l', 0x19, 0x01, 0x00]);
            fuzz_get_stream(&[
                selector, 0, b'{', b'"', b'f', b'"', b':', b'0', b',', b'"', b'l', b'"', b':', b'2', b'5', b'6', b'}',
            ]);
        }
    }
}
