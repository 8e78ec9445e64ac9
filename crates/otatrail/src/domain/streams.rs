//! OTA streams (`aws-api.md` §5.1–5.5): a stream is an ordered set of files, each an object
//! in the account's bucket store, that devices download over MQTT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::error::codes;
use super::time::Millis;
use super::validate::{self, ID, NO_CONTROL, ROLE_ARN, TAG_KEY};
use super::{Scope, ServiceError};
use crate::store::StateTx;

pub const MAX_FILES: usize = 50;
pub const MAX_DESCRIPTION: usize = 2028;
pub const MAX_VERSION: i64 = 65535;
pub const MAX_TAGS: usize = 50;
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 250;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A `StreamFile` as a caller sends it: the model makes every member optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamFileInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_location: Option<S3Location>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value", skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The body members of CreateStream, by their model names.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateStreamBody {
    pub description: Option<String>,
    pub files: Option<Vec<StreamFileInput>>,
    pub role_arn: Option<String>,
    pub tags: Option<Vec<Tag>>,
}

/// The body members of UpdateStream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStreamBody {
    pub description: Option<String>,
    pub files: Option<Vec<StreamFileInput>>,
    pub role_arn: Option<String>,
}

/// A file reference that passed validation, before its object was looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub file_id: u8,
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
}

/// A stream file as stored: the object's size and SHA-256 at the time it was added, so that
/// later reads can prove they serve exactly those bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFile {
    pub file_id: u8,
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
    pub size: u64,
    pub sha256: String,
}

impl StreamFile {
    pub fn from_ref(r: FileRef, size: u64, sha256: String) -> Self {
        Self { file_id: r.file_id, bucket: r.bucket, key: r.key, version: r.version, size, sha256 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub scope: Scope,
    pub stream_id: String,
    pub description: Option<String>,
    pub version: i64,
    pub files: Vec<StreamFile>,
    pub role_arn: String,
    pub tags: Vec<Tag>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Stream {
    pub fn arn(&self) -> String {
        stream_arn(&self.scope, &self.stream_id)
    }
}

impl Stream {
    /// `StreamSummary` by model member names; also CreateStream's and UpdateStream's output.
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "streamId": self.stream_id,
            "streamArn": self.arn(),
            "streamVersion": self.version,
        });
        if let Some(d) = &self.description {
            v["description"] = serde_json::Value::String(d.clone());
        }
        v
    }

    /// `StreamInfo` by model member names (timestamps as epoch seconds).
    pub fn info(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                let mut loc = serde_json::json!({ "bucket": f.bucket, "key": f.key });
                if let Some(ver) = &f.version {
                    loc["version"] = serde_json::Value::String(ver.clone());
                }
                serde_json::json!({ "fileId": f.file_id, "s3Location": loc })
            })
            .collect();
        let mut v = self.summary();
        v["files"] = serde_json::Value::Array(files);
        v["createdAt"] = serde_json::json!(self.created_at.as_epoch_seconds());
        v["lastUpdatedAt"] = serde_json::json!(self.updated_at.as_epoch_seconds());
        v["roleArn"] = serde_json::Value::String(self.role_arn.clone());
        v
    }
}

/// The CloudTrail resource type of streams.
pub const RESOURCE_TYPE: &str = "AWS::IoT::Stream";

pub fn stream_arn(scope: &Scope, stream_id: &str) -> String {
    scope.arn("iot", &format!("stream/{stream_id}"))
}

pub fn validate_stream_id(id: &str) -> Result<(), ServiceError> {
    validate::length("streamId", id, 1, 128)?;
    validate::pattern("streamId", id, &ID, "[a-zA-Z0-9_-]+")
}

fn validate_description(d: &str) -> Result<(), ServiceError> {
    validate::length("description", d, 0, MAX_DESCRIPTION)?;
    validate::pattern("description", d, &NO_CONTROL, "[^\\p{C}]+")
}

fn validate_role_arn(arn: &str) -> Result<(), ServiceError> {
    validate::length("roleArn", arn, 20, 2048)?;
    if !ROLE_ARN.is_match(arn) {
        return Err(ServiceError::invalid_request(format!("roleArn '{arn}' is not a valid IAM role ARN.")));
    }
    Ok(())
}

pub(crate) fn validate_tags(tags: &[Tag]) -> Result<(), ServiceError> {
    validate::list_len("tags", tags.len(), 0, MAX_TAGS)?;
    for (i, t) in tags.iter().enumerate() {
        let f = format!("tags.{}.member.Key", i + 1);
        validate::length(&f, &t.key, 1, 128)?;
        validate::pattern(&f, &t.key, &TAG_KEY, "^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$")?;
        if let Some(v) = &t.value {
            validate::length(&format!("tags.{}.member.Value", i + 1), v, 0, 256)?;
        }
    }
    Ok(())
}

fn validate_files(files: &[StreamFileInput]) -> Result<Vec<FileRef>, ServiceError> {
    validate::list_len("files", files.len(), 1, MAX_FILES)?;
    let mut seen = [false; 256];
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let n = i + 1;
        let file_id = f
            .file_id
            .ok_or_else(|| ServiceError::invalid_request(format!("files.{n}.member.fileId is required.")))?;
        validate::int_range(&format!("files.{n}.member.fileId"), file_id, 0, 255)?;
        let loc = f
            .s3_location
            .as_ref()
            .ok_or_else(|| ServiceError::invalid_request(format!("files.{n}.member.s3Location is required.")))?;
        let bucket = loc.bucket.clone().unwrap_or_default();
        let key = loc.key.clone().unwrap_or_default();
        validate::length(&format!("files.{n}.member.s3Location.bucket"), &bucket, 1, 255)?;
        validate::length(&format!("files.{n}.member.s3Location.key"), &key, 1, 1024)?;
        if seen[file_id as usize] {
            return Err(ServiceError::invalid_request(format!(
                "The fileId {file_id} appears more than once in files; each file of a stream needs its own fileId."
            )));
        }
        seen[file_id as usize] = true;
        out.push(FileRef { file_id: file_id as u8, bucket, key, version: loc.version.clone() });
    }
    Ok(out)
}

/// A CreateStream request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidCreate {
    pub stream_id: String,
    pub description: Option<String>,
    pub files: Vec<FileRef>,
    pub role_arn: String,
    pub tags: Vec<Tag>,
}

pub fn validate_create(stream_id: &str, body: &CreateStreamBody) -> Result<ValidCreate, ServiceError> {
    validate_stream_id(stream_id)?;
    if let Some(d) = &body.description {
        validate_description(d)?;
    }
    let files = body
        .files
        .as_deref()
        .ok_or_else(|| ServiceError::invalid_request("files is required."))
        .and_then(validate_files)?;
    let role_arn = body.role_arn.clone().ok_or_else(|| ServiceError::invalid_request("roleArn is required."))?;
    validate_role_arn(&role_arn)?;
    let tags = body.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    Ok(ValidCreate { stream_id: stream_id.to_string(), description: body.description.clone(), files, role_arn, tags })
}

/// An UpdateStream request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidUpdate {
    pub stream_id: String,
    pub description: Option<String>,
    pub files: Option<Vec<FileRef>>,
    pub role_arn: Option<String>,
}

pub fn validate_update(stream_id: &str, body: &UpdateStreamBody) -> Result<ValidUpdate, ServiceError> {
    validate_stream_id(stream_id)?;
    if let Some(d) = &body.description {
        validate_description(d)?;
    }
    let files = body.files.as_deref().map(validate_files).transpose()?;
    if let Some(r) = &body.role_arn {
        validate_role_arn(r)?;
    }
    Ok(ValidUpdate {
        stream_id: stream_id.to_string(),
        description: body.description.clone(),
        files,
        role_arn: body.role_arn.clone(),
    })
}

fn not_found(stream_id: &str) -> ServiceError {
    ServiceError::not_found(format!("Stream {stream_id} does not exist."))
}

pub async fn create(
    tx: &mut dyn StateTx,
    scope: &Scope,
    req: ValidCreate,
    files: Vec<StreamFile>,
    now: Millis,
) -> Result<Stream, ServiceError> {
    if tx.get_stream(scope, &req.stream_id).await?.is_some() {
        return Err(ServiceError::new(
            codes::RESOURCE_ALREADY_EXISTS,
            format!("Stream {} already exists.", req.stream_id),
        )
        .with_member("resourceId", req.stream_id.clone())
        .with_member("resourceArn", stream_arn(scope, &req.stream_id)));
    }
    let stream = Stream {
        scope: scope.clone(),
        stream_id: req.stream_id,
        description: req.description,
        version: 1,
        files,
        role_arn: req.role_arn,
        tags: req.tags,
        created_at: now,
        updated_at: now,
    };
    tx.insert_stream(&stream).await?;
    Ok(stream)
}

pub async fn describe(tx: &mut dyn StateTx, scope: &Scope, stream_id: &str) -> Result<Stream, ServiceError> {
    validate_stream_id(stream_id)?;
    tx.get_stream(scope, stream_id).await?.ok_or_else(|| not_found(stream_id))
}

pub async fn update(
    tx: &mut dyn StateTx,
    scope: &Scope,
    req: ValidUpdate,
    files: Option<Vec<StreamFile>>,
    now: Millis,
) -> Result<Stream, ServiceError> {
    let mut stream = tx.get_stream(scope, &req.stream_id).await?.ok_or_else(|| not_found(&req.stream_id))?;
    if stream.version >= MAX_VERSION {
        return Err(ServiceError::new(
            codes::LIMIT_EXCEEDED,
            format!("Stream {} has reached the maximum version {MAX_VERSION}.", req.stream_id),
        ));
    }
    if let Some(d) = req.description {
        stream.description = Some(d);
    }
    if let Some(f) = files {
        stream.files = f;
    }
    if let Some(r) = req.role_arn {
        stream.role_arn = r;
    }
    stream.version += 1;
    stream.updated_at = now;
    tx.update_stream(&stream).await?;
    Ok(stream)
}

pub async fn delete(tx: &mut dyn StateTx, scope: &Scope, stream_id: &str) -> Result<(), ServiceError> {
    validate_stream_id(stream_id)?;
    if tx.get_stream(scope, stream_id).await?.is_none() {
        return Err(not_found(stream_id));
    }
    let users = tx.ota_updates_using_stream(scope, stream_id).await?;
    if !users.is_empty() {
        return Err(ServiceError::new(
            codes::DELETE_CONFLICT,
            format!("Stream {stream_id} is in use by OTA update(s) {}; delete them first.", users.join(", ")),
        ));
    }
    tx.delete_stream(scope, stream_id).await?;
    Ok(())
}

/// Where a listing resumes: the store's insertion sequence of the last stream returned, and
/// the order it was listed in (a token is valid only for the order that made it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListCursor {
    pub after_seq: i64,
    pub ascending: bool,
}

impl ListCursor {
    const PREFIX: &'static str = "s1";

    /// An opaque token.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}:{}", Self::PREFIX, u8::from(self.ascending), self.after_seq))
    }

    pub fn decode(token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let mut parts = raw.split(':');
        if parts.next()? != Self::PREFIX {
            return None;
        }
        let ascending = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let after_seq = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self { after_seq, ascending })
    }
}

pub struct ListRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub ascending: bool,
}

pub struct ListPage {
    pub streams: Vec<Stream>,
    pub next_token: Option<String>,
}

pub async fn list(tx: &mut dyn StateTx, scope: &Scope, req: ListRequest) -> Result<ListPage, ServiceError> {
    let limit = req.max_results.unwrap_or(DEFAULT_PAGE_SIZE);
    validate::int_range("maxResults", limit, 1, MAX_PAGE_SIZE)?;
    let after = match req.next_token.as_deref() {
        None | Some("") => None,
        Some(t) => {
            let c = ListCursor::decode(t)
                .ok_or_else(|| ServiceError::invalid_request("The nextToken is not valid."))?;
            if c.ascending != req.ascending {
                return Err(ServiceError::invalid_request(
                    "The nextToken was issued for a different isAscendingOrder value.",
                ));
            }
            Some(c.after_seq)
        }
    };
    let mut rows = tx.list_streams(scope, after, req.ascending, limit + 1).await?;
    let next_token = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|(seq, _)| ListCursor { after_seq: *seq, ascending: req.ascending }.encode())
    } else {
        None
    };
    Ok(ListPage { streams: rows.into_iter().map(|(_, s)| s).collect(), next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: i64) -> StreamFileInput {
        StreamFileInput {
            file_id: Some(id),
            s3_location: Some(S3Location { bucket: Some("b".into()), key: Some("k".into()), version: None }),
        }
    }

    fn body(files: Vec<StreamFileInput>) -> CreateStreamBody {
        CreateStreamBody {
            description: Some("d".into()),
            files: Some(files),
            role_arn: Some("arn:aws:iam::123456789012:role/r".into()),
            tags: None,
        }
    }

    #[test]
    fn file_limits() {
        assert!(validate_create("s", &body((0..50).map(file).collect())).is_ok());
        assert!(validate_create("s", &body((0..51).map(file).collect())).is_err());
        assert!(validate_create("s", &body(vec![file(255)])).is_ok());
        assert!(validate_create("s", &body(vec![file(256)])).is_err());
        assert!(validate_create("s", &body(vec![file(-1)])).is_err());
        assert!(validate_create("s", &body(vec![file(1), file(1)])).is_err());
        assert!(validate_create("s", &body(vec![])).is_err());
    }

    #[test]
    fn ids_and_descriptions() {
        assert!(validate_create("bad id", &body(vec![file(0)])).is_err());
        assert!(validate_create(&"a".repeat(129), &body(vec![file(0)])).is_err());
        let mut b = body(vec![file(0)]);
        b.description = Some("x".repeat(2028));
        assert!(validate_create("s", &b).is_ok());
        b.description = Some("x".repeat(2029));
        assert!(validate_create("s", &b).is_err());
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = ListCursor { after_seq: 42, ascending: true };
        assert_eq!(ListCursor::decode(&c.encode()), Some(c));
        assert_eq!(ListCursor::decode("garbage"), None);
        assert_eq!(ListCursor::decode(""), None);
    }
}
