//! OTA updates (`aws-api.md` §5.6–5.9, §6; `device.md` §1): the CreateOTAUpdate request and
//! its constraints, the update's lifecycle, the job it becomes (`AFR_OTA-<id>`) and the
//! `afr_ota` job document FreeRTOS agents parse. No I/O: the app layer resolves targets,
//! objects, streams and signatures and hands the results in.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codesign::SignatureScheme;
use super::error::codes;
use super::streams::{Tag, validate_tags};
use super::time::Millis;
use super::{Scope, ServiceError, jobs, things, validate};
use crate::store::StateTx;

/// `AFR_OTA-`: the prefix of the job (and of streams the update creates) devices expect.
pub const JOB_PREFIX: &str = "AFR_OTA-";
/// Job IDs are at most 64 characters.
pub const MAX_JOB_ID: usize = 64;
/// The OTA agent's stream-name buffer: `AFR_OTA-` and a 36-character UUID.
pub const MAX_STREAM_NAME: usize = 44;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OtaStatus {
    CreatePending,
    CreateInProgress,
    CreateComplete,
    CreateFailed,
    DeleteInProgress,
    DeleteFailed,
}

impl OtaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OtaStatus::CreatePending => "CREATE_PENDING",
            OtaStatus::CreateInProgress => "CREATE_IN_PROGRESS",
            OtaStatus::CreateComplete => "CREATE_COMPLETE",
            OtaStatus::CreateFailed => "CREATE_FAILED",
            OtaStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
            OtaStatus::DeleteFailed => "DELETE_FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OtaStatus::CreatePending,
            OtaStatus::CreateInProgress,
            OtaStatus::CreateComplete,
            OtaStatus::CreateFailed,
            OtaStatus::DeleteInProgress,
            OtaStatus::DeleteFailed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRef {
    pub stream_id: Option<String>,
    pub file_id: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileLocation {
    pub stream: Option<StreamRef>,
    pub s3_location: Option<S3Location>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineDocument {
    pub inline_document: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateChain {
    pub certificate_name: Option<String>,
    pub inline_document: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomCodeSigning {
    pub signature: Option<InlineDocument>,
    pub certificate_chain: Option<CertificateChain>,
    pub hash_algorithm: Option<String>,
    pub signature_algorithm: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningProfileParameter {
    pub certificate_arn: Option<String>,
    pub platform: Option<String>,
    pub certificate_path_on_device: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub s3_destination: Option<S3Destination>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartSigningJobParameter {
    pub signing_profile_parameter: Option<SigningProfileParameter>,
    pub signing_profile_name: Option<String>,
    pub destination: Option<Destination>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeSigning {
    pub aws_signer_job_id: Option<String>,
    pub start_signing_job_parameter: Option<StartSigningJobParameter>,
    pub custom_code_signing: Option<CustomCodeSigning>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaFile {
    pub file_name: Option<String>,
    pub file_type: Option<i64>,
    pub file_version: Option<String>,
    pub file_location: Option<FileLocation>,
    pub code_signing: Option<CodeSigning>,
    pub attributes: Option<BTreeMap<String, String>>,
}

/// Where a file's bytes come from, once checked: exactly one location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    Stream { stream_id: String, file_id: u8 },
    S3 { bucket: String, key: String, version: Option<String> },
}

/// How a file is signed, once checked: at most one method.
#[derive(Clone, Debug, PartialEq)]
pub enum Signing {
    None,
    Custom { scheme: SignatureScheme, signature_b64: String, certificate_name: String, certificate_pem: Option<String> },
    Profile { profile: String, path_on_device: Option<String>, destination: Option<(String, String)> },
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::new(codes::INVALID_REQUEST, msg)
}

/// Checks an update ID and returns the job ID it yields.
pub fn job_id_for(ota_update_id: &str) -> Result<String, ServiceError> {
    if ota_update_id.is_empty() || ota_update_id.len() > 128 || !ota_update_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(invalid(format!(
            "1 validation error detected: Value '{ota_update_id}' at 'otaUpdateId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and have length between 1 and 128"
        )));
    }
    let job = format!("{JOB_PREFIX}{ota_update_id}");
    if job.len() > MAX_JOB_ID {
        return Err(invalid(format!(
            "OTA update ID {ota_update_id} is too long: its job ID {job} would be {} characters, and job IDs have at most {MAX_JOB_ID} ({} for the OTA update ID)",
            job.len(),
            MAX_JOB_ID - JOB_PREFIX.len()
        )));
    }
    Ok(job)
}

/// Checks one file's location: exactly one of a stream file and an S3 object.
pub fn file_source(i: usize, f: &OtaFile) -> Result<FileSource, ServiceError> {
    let loc = f.file_location.as_ref().ok_or_else(|| invalid(format!("files[{i}]: fileLocation is required")))?;
    match (&loc.stream, &loc.s3_location) {
        (Some(s), None) => {
            let stream_id = s.stream_id.clone().filter(|s| !s.is_empty()).ok_or_else(|| invalid(format!("files[{i}]: fileLocation.stream.streamId is required")))?;
            let file_id = s.file_id.unwrap_or(0);
            let file_id = u8::try_from(file_id).map_err(|_| invalid(format!("files[{i}]: fileLocation.stream.fileId must be between 0 and 255")))?;
            Ok(FileSource::Stream { stream_id, file_id })
        }
        (None, Some(s3)) => match (&s3.bucket, &s3.key) {
            (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => Ok(FileSource::S3 { bucket: b.clone(), key: k.clone(), version: s3.version.clone() }),
            _ => Err(invalid(format!("files[{i}]: fileLocation.s3Location needs a bucket and a key"))),
        },
        (Some(_), Some(_)) => Err(invalid(format!("files[{i}]: fileLocation must have either a stream or an s3Location, not both"))),
        (None, None) => Err(invalid(format!("files[{i}]: fileLocation must have a stream or an s3Location"))),
    }
}

/// Checks one file's code signing: at most one method, each complete.
pub fn file_signing(i: usize, f: &OtaFile) -> Result<Signing, ServiceError> {
    let Some(cs) = &f.code_signing else { return Ok(Signing::None) };
    let set = [cs.aws_signer_job_id.is_some(), cs.start_signing_job_parameter.is_some(), cs.custom_code_signing.is_some()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(invalid(format!(
            "files[{i}]: codeSigning takes one of awsSignerJobId, startSigningJobParameter and customCodeSigning"
        )));
    }
    if cs.aws_signer_job_id.is_some() {
        return Err(invalid(format!(
            "files[{i}]: AWS Signer jobs (awsSignerJobId) are not available in otatrail; sign with a signing profile of this server (startSigningJobParameter.signingProfileName) or give the signature (customCodeSigning)"
        )));
    }
    if let Some(p) = &cs.start_signing_job_parameter {
        let profile = p.signing_profile_name.clone().filter(|n| !n.is_empty()).ok_or_else(|| {
            invalid(format!("files[{i}]: startSigningJobParameter.signingProfileName is required"))
        })?;
        let destination = match p.destination.as_ref().and_then(|d| d.s3_destination.as_ref()) {
            Some(d) => Some((
                d.bucket.clone().filter(|b| !b.is_empty()).ok_or_else(|| invalid(format!("files[{i}]: destination.s3Destination.bucket is required")))?,
                d.prefix.clone().unwrap_or_default(),
            )),
            None => None,
        };
        let path_on_device = p.signing_profile_parameter.as_ref().and_then(|s| s.certificate_path_on_device.clone());
        return Ok(Signing::Profile { profile, path_on_device, destination });
    }
    let c = cs.custom_code_signing.as_ref().ok_or_else(|| invalid(format!("files[{i}]: codeSigning names no method")))?;
    let signature_b64 = c
        .signature
        .as_ref()
        .and_then(|s| s.inline_document.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("files[{i}]: customCodeSigning.signature.inlineDocument is required")))?;
    let chain = c.certificate_chain.clone().unwrap_or_default();
    let certificate_name = chain.certificate_name.filter(|n| !n.is_empty()).ok_or_else(|| {
        invalid(format!("files[{i}]: customCodeSigning.certificateChain.certificateName (the certificate's path on the device) is required"))
    })?;
    let scheme = SignatureScheme::parse(c.hash_algorithm.as_deref().unwrap_or(""), c.signature_algorithm.as_deref().unwrap_or(""))
        .map_err(|e| invalid(format!("files[{i}]: {e}")))?;
    super::codesign::decode_signature(&signature_b64).map_err(|p| invalid(p.message(&format!("files[{i}]"))))?;
    Ok(Signing::Custom { scheme, signature_b64, certificate_name, certificate_pem: chain.inline_document.filter(|d| !d.is_empty()) })
}

/// One file of the job document, as the app resolved it.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentFile {
    pub file_path: String,
    pub file_size: u64,
    pub file_id: u8,
    pub file_type: Option<i64>,
    pub cert_file: Option<String>,
    /// `(sig-<hash>-<alg>, base64 signature)`
    pub signature: Option<(String, String)>,
    /// For HTTP: the object devices download (a presigned URL replaces the placeholder when
    /// a device fetches the document).
    pub s3_object: Option<(String, String)>,
}

/// The placeholder the job document carries for an HTTP download.
pub fn presigned_placeholder(bucket: &str, key: &str) -> String {
    format!("${{aws:iot:s3-presigned-url:https://s3.amazonaws.com/{bucket}/{key}}}")
}

/// The `afr_ota` job document (`device.md` §1).
pub fn job_document(protocols: &[String], stream_name: Option<&str>, files: &[DocumentFile]) -> serde_json::Value {
    let http = protocols.iter().any(|p| p == "HTTP");
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let mut o = serde_json::Map::new();
            o.insert("filepath".into(), f.file_path.clone().into());
            o.insert("filesize".into(), f.file_size.into());
            o.insert("fileid".into(), f.file_id.into());
            if let Some(c) = &f.cert_file {
                o.insert("certfile".into(), c.clone().into());
            }
            if let Some(t) = f.file_type {
                o.insert("fileType".into(), t.into());
            }
            if let (true, Some((b, k))) = (http, &f.s3_object) {
                o.insert("update_data_url".into(), presigned_placeholder(b, k).into());
                o.insert("auth_scheme".into(), "aws.s3.presigned".into());
            }
            if let Some((key, sig)) = &f.signature {
                o.insert(key.clone(), sig.clone().into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    let mut afr = serde_json::Map::new();
    afr.insert("protocols".into(), protocols.to_vec().into());
    if let Some(s) = stream_name {
        afr.insert("streamname".into(), s.into());
    }
    afr.insert("files".into(), files.into());
    serde_json::json!({ "afr_ota": afr })
}

/// The stream an update creates for its S3 files: `AFR_OTA-<uuid>`, 44 characters.
pub fn generated_stream_id(uuid: &str) -> String {
    let id = format!("{JOB_PREFIX}{uuid}");
    debug_assert!(id.len() <= MAX_STREAM_NAME);
    id
}

/// Why an update failed, as GetOTAUpdate's `errorInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// Timestamps of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaTimes {
    pub created: Millis,
    pub modified: Millis,
}

// --------------------------------------------------------------------------------------
// The request as a whole, the stored update, its outputs
// --------------------------------------------------------------------------------------

/// `awsJobPresignedUrlConfig`: how long presigned URLs of an HTTP download live.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsJobPresignedUrlConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_sec: Option<i64>,
}

/// `awsJobAbortConfig`: the jobs' criteria under the OTA member name `abortCriteriaList`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsJobAbortConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_criteria_list: Option<Vec<jobs::AbortCriteria>>,
}

/// The body members of CreateOTAUpdate (`aws-api.md` §5.6); also what is stored and what
/// GetOTAUpdate shows of the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOtaUpdateBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_selection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_job_executions_rollout_config: Option<jobs::JobExecutionsRolloutConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_job_presigned_url_config: Option<AwsJobPresignedUrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_job_abort_config: Option<AwsJobAbortConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_job_timeout_config: Option<jobs::TimeoutConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<OtaFile>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_parameters: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

pub const MAX_DESCRIPTION: usize = 2028;
pub const MAX_FILES: usize = 50;
pub const MAX_VALUE: usize = 4096;
pub const DEFAULT_EXPIRES_IN_SEC: i64 = 1800;
pub const RESOURCE_TYPE: &str = "AWS::IoT::OTAUpdate";

/// One checked file.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidFile {
    pub source: FileSource,
    pub signing: Signing,
}

/// A checked CreateOTAUpdate.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidOtaUpdate {
    pub ota_update_id: String,
    pub job_id: String,
    pub targets: Vec<String>,
    pub protocols: Vec<String>,
    pub files: Vec<ValidFile>,
    pub role_arn: String,
    /// The stream devices read over MQTT when the files name one of the caller's (all
    /// stream files must name the same one, and then no file may be an S3 object).
    pub user_stream: Option<String>,
    /// Whether the update must create a stream for its S3 files (MQTT among the protocols).
    pub needs_stream: bool,
}

fn required(field: &str) -> ServiceError {
    invalid(format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"))
}

/// A jobs validation message under the OTA member names.
fn renamed(e: ServiceError, from: &str, to: &str) -> ServiceError {
    ServiceError { message: e.message.replace(from, to), ..e }
}

/// Checks every member of a CreateOTAUpdate request that needs no state.
pub fn validate_create(ota_update_id: &str, body: &CreateOtaUpdateBody) -> Result<ValidOtaUpdate, ServiceError> {
    let job_id = job_id_for(ota_update_id)?;
    if let Some(d) = &body.description {
        validate::length("description", d, 0, MAX_DESCRIPTION)?;
        if !d.is_empty() {
            validate::pattern("description", d, &validate::NO_CONTROL, "[^\\p{C}]+")?;
        }
    }
    let targets = body.targets.as_ref().ok_or_else(|| required("targets"))?;
    validate::list_len("targets", targets.len(), 1, usize::MAX)?;
    let mut unique: Vec<String> = Vec::new();
    for t in targets {
        if !unique.contains(t) {
            unique.push(t.clone());
        }
    }
    let protocols = body.protocols.clone().unwrap_or_else(|| vec!["MQTT".into()]);
    validate::list_len("protocols", protocols.len(), 1, 2)?;
    for (i, p) in protocols.iter().enumerate() {
        if p != "MQTT" && p != "HTTP" {
            return Err(invalid(format!(
                "1 validation error detected: Value '{p}' at 'protocols.{}.member' failed to satisfy constraint: Member must satisfy enum value set: [MQTT, HTTP]",
                i + 1
            )));
        }
    }
    if protocols.len() == 2 && protocols[0] == protocols[1] {
        return Err(invalid(format!("protocols lists {} twice", protocols[0])));
    }
    if let Some(s) = &body.target_selection {
        jobs::parse_target_selection("targetSelection", s)?;
    }
    if let Some(r) = &body.aws_job_executions_rollout_config {
        jobs::validate_rollout(r).map_err(|e| renamed(e, "jobExecutionsRolloutConfig", "awsJobExecutionsRolloutConfig"))?;
    }
    if let Some(p) = &body.aws_job_presigned_url_config
        && let Some(e) = p.expires_in_sec
    {
        validate::int_range("awsJobPresignedUrlConfig.expiresInSec", e, 60, 3600)?;
    }
    if let Some(a) = &body.aws_job_abort_config {
        let list = a.abort_criteria_list.clone().ok_or_else(|| required("awsJobAbortConfig.abortCriteriaList"))?;
        jobs::validate_abort(&jobs::AbortConfig { criteria_list: Some(list) })
            .map_err(|e| renamed(e, "abortConfig.criteriaList", "awsJobAbortConfig.abortCriteriaList"))?;
    }
    if let Some(t) = &body.aws_job_timeout_config {
        jobs::validate_timeout(t).map_err(|e| renamed(e, "timeoutConfig", "awsJobTimeoutConfig"))?;
    }
    let files = body.files.as_ref().ok_or_else(|| required("files"))?;
    validate::list_len("files", files.len(), 1, MAX_FILES)?;
    let mut valid_files = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        if let Some(t) = f.file_type {
            validate::int_range(&format!("files.{}.member.fileType", i + 1), t, 0, 255)?;
        }
        for (k, v) in f.attributes.iter().flatten() {
            validate::length(&format!("files.{}.member.attributes.{k}", i + 1), v, 0, MAX_VALUE)?;
        }
        valid_files.push(ValidFile { source: file_source(i, f)?, signing: file_signing(i, f)? });
    }
    let role_arn = body.role_arn.clone().ok_or_else(|| required("roleArn"))?;
    validate::length("roleArn", &role_arn, 20, 2048)?;
    for (k, v) in body.additional_parameters.iter().flatten() {
        validate::length(&format!("additionalParameters.{k}"), v, 0, MAX_VALUE)?;
    }
    validate_tags(body.tags.as_deref().unwrap_or_default())?;

    let mqtt = protocols.iter().any(|p| p == "MQTT");
    let mut streams: Vec<String> = Vec::new();
    let mut s3_files = 0;
    for f in &valid_files {
        match &f.source {
            FileSource::Stream { stream_id, .. } if !streams.contains(stream_id) => streams.push(stream_id.clone()),
            FileSource::Stream { .. } => {}
            FileSource::S3 { .. } => s3_files += 1,
        }
    }
    if mqtt && (streams.len() > 1 || (!streams.is_empty() && s3_files > 0)) {
        return Err(invalid(
            "Over MQTT devices read one stream: the files must all name the same stream, or all be S3 objects (the update then creates the stream).",
        ));
    }
    Ok(ValidOtaUpdate {
        ota_update_id: ota_update_id.to_string(),
        job_id,
        targets: unique,
        protocols,
        files: valid_files,
        role_arn,
        user_stream: if mqtt { streams.into_iter().next() } else { None },
        needs_stream: mqtt && s3_files > 0,
    })
}

/// A target, once its ARN is read: a thing or a thing group of the caller's account and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Thing(String),
    Group(String),
}

pub fn parse_target(scope: &Scope, arn: &str) -> Result<Target, ServiceError> {
    if let Some(n) = things::thing_name_from_arn(scope, arn) {
        return Ok(Target::Thing(n));
    }
    if let Some(g) = things::thing_group_name_from_arn(scope, arn) {
        return Ok(Target::Group(g));
    }
    Err(invalid(format!(
        "Target {arn} is not the ARN of a thing or thing group in account {} and region {}.",
        scope.account_id, scope.region
    )))
}

/// Every target must exist (ResourceNotFoundException otherwise).
pub async fn check_targets(tx: &mut dyn StateTx, scope: &Scope, targets: &[String]) -> Result<(), ServiceError> {
    for t in targets {
        match parse_target(scope, t)? {
            Target::Thing(n) if !things::thing_exists(tx, scope, &n).await? => {
                return Err(ServiceError::not_found(format!("Thing {n} cannot be found.")));
            }
            Target::Group(g) if !things::thing_group_exists(tx, scope, &g).await? => {
                return Err(ServiceError::not_found(format!("Thing group {g} cannot be found.")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the request to delete an update asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRequest {
    pub delete_stream: bool,
    pub force_delete_aws_job: bool,
}

/// How far the state machine got; every step is recorded here (in the unit of work that
/// does it, or before it when it is not one), so a restart resumes rather than repeats.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaProgress {
    /// The stream the update creates (`AFR_OTA-<uuid>`), named when the update is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_stream: Option<String>,
    #[serde(default)]
    pub stream_created: bool,
    /// Signatures made with signing profiles, by file index.
    #[serde(default)]
    pub signatures: BTreeMap<usize, String>,
    /// `(bucket, key)` of the signed output objects, by file index, chosen before writing.
    #[serde(default)]
    pub signed_outputs: BTreeMap<usize, (String, String)>,
    /// Set before the job is created: a job with this ID found later is the update's own.
    #[serde(default)]
    pub job_requested: bool,
    #[serde(default)]
    pub job_created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<DeleteRequest>,
}

/// An OTA update as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct OtaUpdate {
    pub scope: Scope,
    pub ota_update_id: String,
    pub status: OtaStatus,
    pub spec: OtaSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The stored JSON of an update: the request, the progress, why it failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtaSpec {
    pub request: CreateOtaUpdateBody,
    #[serde(default)]
    pub progress: OtaProgress,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
}

pub fn ota_update_arn(scope: &Scope, id: &str) -> String {
    scope.arn("iot", &format!("otaupdate/{id}"))
}

/// Drops `null` members, so stored requests come out as they were sent.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn ts(m: Millis) -> Value {
    serde_json::json!(m.0 as f64 / 1000.0)
}

impl OtaUpdate {
    /// A new update in CREATE_PENDING.
    pub fn new(scope: &Scope, v: &ValidOtaUpdate, request: CreateOtaUpdateBody, generated_stream: Option<String>, now: Millis) -> Self {
        OtaUpdate {
            scope: scope.clone(),
            ota_update_id: v.ota_update_id.clone(),
            status: OtaStatus::CreatePending,
            spec: OtaSpec { request, progress: OtaProgress { generated_stream, ..Default::default() }, error_info: None },
            created_at: now,
            updated_at: now,
        }
    }

    pub fn arn(&self) -> String {
        ota_update_arn(&self.scope, &self.ota_update_id)
    }

    pub fn job_id(&self) -> String {
        format!("{JOB_PREFIX}{}", self.ota_update_id)
    }

    /// The protocols in effect (MQTT when none was given).
    pub fn protocols(&self) -> Vec<String> {
        self.spec.request.protocols.clone().unwrap_or_else(|| vec!["MQTT".into()])
    }

    /// Moves to a status; a failure carries its reason.
    pub fn set_status(&mut self, status: OtaStatus, error: Option<ErrorInfo>, now: Millis) {
        self.status = status;
        if error.is_some() || status == OtaStatus::CreateComplete {
            self.spec.error_info = error;
        }
        self.updated_at = now;
    }

    /// CreateOTAUpdate's output.
    pub fn created(&self) -> Value {
        serde_json::json!({
            "otaUpdateId": self.ota_update_id,
            "otaUpdateArn": self.arn(),
            "otaUpdateStatus": self.status.as_str(),
            "awsIotJobId": self.job_id(),
        })
    }

    /// GetOTAUpdate's `otaUpdateInfo`.
    pub fn info(&self) -> Value {
        let r = &self.spec.request;
        let mut o = serde_json::Map::new();
        o.insert("otaUpdateId".into(), self.ota_update_id.clone().into());
        o.insert("otaUpdateArn".into(), self.arn().into());
        o.insert("creationDate".into(), ts(self.created_at));
        o.insert("lastModifiedDate".into(), ts(self.updated_at));
        if let Some(d) = &r.description {
            o.insert("description".into(), d.clone().into());
        }
        o.insert("targets".into(), serde_json::json!(r.targets.clone().unwrap_or_default()));
        o.insert("protocols".into(), serde_json::json!(self.protocols()));
        o.insert("targetSelection".into(), r.target_selection.clone().unwrap_or_else(|| "SNAPSHOT".into()).into());
        if let Some(c) = &r.aws_job_executions_rollout_config {
            o.insert("awsJobExecutionsRolloutConfig".into(), serde_json::to_value(c).unwrap_or_default());
        }
        if let Some(c) = &r.aws_job_presigned_url_config {
            o.insert("awsJobPresignedUrlConfig".into(), serde_json::to_value(c).unwrap_or_default());
        }
        o.insert("otaUpdateFiles".into(), without_nulls(serde_json::to_value(r.files.clone().unwrap_or_default()).unwrap_or_default()));
        o.insert("otaUpdateStatus".into(), self.status.as_str().into());
        if self.spec.progress.job_created {
            o.insert("awsIotJobId".into(), self.job_id().into());
            o.insert("awsIotJobArn".into(), jobs::job_arn(&self.scope, &self.job_id()).into());
        }
        if let Some(e) = &self.spec.error_info {
            o.insert("errorInfo".into(), serde_json::json!({ "code": e.code, "message": e.message }));
        }
        if let Some(p) = &r.additional_parameters {
            o.insert("additionalParameters".into(), serde_json::json!(p));
        }
        Value::Object(o)
    }

    /// ListOTAUpdates' `OTAUpdateSummary`.
    pub fn summary(&self) -> Value {
        serde_json::json!({ "otaUpdateId": self.ota_update_id, "otaUpdateArn": self.arn(), "creationDate": ts(self.created_at) })
    }

    /// The job the update becomes, with its document.
    pub fn job_request(&self, document: &Value) -> jobs::ValidCreateJob {
        let r = &self.spec.request;
        let http = self.protocols().iter().any(|p| p == "HTTP");
        jobs::ValidCreateJob {
            job_id: self.job_id(),
            targets: {
                let mut t: Vec<String> = Vec::new();
                for x in r.targets.iter().flatten() {
                    if !t.contains(x) {
                        t.push(x.clone());
                    }
                }
                t
            },
            target_selection: r.target_selection.as_deref().and_then(jobs::TargetSelection::parse).unwrap_or(jobs::TargetSelection::Snapshot),
            document: document.to_string(),
            document_source: None,
            description: r.description.clone(),
            presigned_url_config: http.then(|| jobs::PresignedUrlConfig {
                role_arn: r.role_arn.clone(),
                expires_in_sec: Some(r.aws_job_presigned_url_config.as_ref().and_then(|p| p.expires_in_sec).unwrap_or(DEFAULT_EXPIRES_IN_SEC)),
            }),
            rollout: r.aws_job_executions_rollout_config.clone(),
            abort: r.aws_job_abort_config.as_ref().map(|a| jobs::AbortConfig { criteria_list: a.abort_criteria_list.clone() }),
            timeout: r.aws_job_timeout_config.clone(),
            tags: Vec::new(),
            namespace_id: None,
        }
    }
}

/// Whether the update is still being worked on by the state machine.
pub fn unfinished(status: OtaStatus) -> bool {
    matches!(status, OtaStatus::CreatePending | OtaStatus::CreateInProgress | OtaStatus::DeleteInProgress)
}

/// Creates the stored update (CREATE_PENDING); an existing ID is refused.
pub async fn create(tx: &mut dyn StateTx, update: &OtaUpdate, user_stream: Option<&str>) -> Result<(), ServiceError> {
    if tx.get_ota_update(&update.scope, &update.ota_update_id).await?.is_some() {
        return Err(ServiceError::new(codes::RESOURCE_ALREADY_EXISTS, format!("OTA update {} already exists.", update.ota_update_id))
            .with_member("resourceId", update.ota_update_id.clone())
            .with_member("resourceArn", update.arn()));
    }
    tx.insert_ota_update(update).await?;
    if let Some(s) = user_stream {
        tx.add_ota_stream_use(&update.scope, &update.ota_update_id, s).await?;
    }
    Ok(())
}

pub fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found(format!("OTA update {id} does not exist."))
}

pub async fn get(tx: &mut dyn StateTx, scope: &Scope, id: &str) -> Result<OtaUpdate, ServiceError> {
    job_id_for(id)?;
    tx.get_ota_update(scope, id).await?.ok_or_else(|| not_found(id))
}

pub struct OtaPage {
    pub updates: Vec<OtaUpdate>,
    pub next_token: Option<String>,
}

/// ListOTAUpdates: newest first, optionally of one status.
pub async fn list(
    tx: &mut dyn StateTx,
    scope: &Scope,
    status: Option<&str>,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> Result<OtaPage, ServiceError> {
    let status = status
        .map(|s| {
            OtaStatus::parse(s).ok_or_else(|| {
                invalid(format!(
                    "1 validation error detected: Value '{s}' at 'otaUpdateStatus' failed to satisfy constraint: Member must satisfy enum value set: [CREATE_PENDING, CREATE_IN_PROGRESS, CREATE_COMPLETE, CREATE_FAILED, DELETE_IN_PROGRESS, DELETE_FAILED]"
                ))
            })
        })
        .transpose()?;
    let limit = max_results.unwrap_or(50);
    validate::int_range("maxResults", limit, 1, 250)?;
    let before = match next_token.filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let bad = || invalid("The nextToken is not valid.");
            let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?).map_err(|_| bad())?;
            Some(raw.strip_prefix("ota:").and_then(|n| n.parse::<i64>().ok()).ok_or_else(bad)?)
        }
    };
    let mut rows = tx.list_ota_updates(scope, status, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_token = if more { rows.last().map(|(seq, _)| URL_SAFE_NO_PAD.encode(format!("ota:{seq}"))) } else { None };
    Ok(OtaPage { updates: rows.into_iter().map(|(_, u)| u).collect(), next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str) -> OtaFile {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn job_ids_fit_jobs() {
        assert_eq!(job_id_for("fw-1").unwrap(), "AFR_OTA-fw-1");
        assert!(job_id_for(&"a".repeat(56)).is_ok());
        let e = job_id_for(&"a".repeat(57)).unwrap_err();
        assert!(e.message.contains("too long") && e.message.contains("56"), "{}", e.message);
        assert!(job_id_for("bad id").is_err());
        assert!(job_id_for("").is_err());
    }

    #[test]
    fn each_file_has_one_location_and_at_most_one_signing_method() {
        let s3 = file(r#"{"fileName":"fw","fileLocation":{"s3Location":{"bucket":"b","key":"k"}}}"#);
        assert_eq!(file_source(0, &s3).unwrap(), FileSource::S3 { bucket: "b".into(), key: "k".into(), version: None });
        let stream = file(r#"{"fileLocation":{"stream":{"streamId":"s","fileId":3}}}"#);
        assert_eq!(file_source(0, &stream).unwrap(), FileSource::Stream { stream_id: "s".into(), file_id: 3 });
        for bad in [
            r#"{}"#,
            r#"{"fileLocation":{}}"#,
            r#"{"fileLocation":{"stream":{"streamId":"s"},"s3Location":{"bucket":"b","key":"k"}}}"#,
            r#"{"fileLocation":{"stream":{"streamId":"s","fileId":256}}}"#,
            r#"{"fileLocation":{"s3Location":{"bucket":"b"}}}"#,
        ] {
            assert!(file_source(0, &file(bad)).is_err(), "{bad}");
        }

        assert_eq!(file_signing(0, &s3).unwrap(), Signing::None);
        let signer = file(r#"{"codeSigning":{"awsSignerJobId":"j"}}"#);
        assert!(file_signing(0, &signer).unwrap_err().message.contains("not available in otatrail"));
        let two = file(r#"{"codeSigning":{"awsSignerJobId":"j","startSigningJobParameter":{"signingProfileName":"p"}}}"#);
        assert!(file_signing(0, &two).unwrap_err().message.contains("one of"));
        let custom = file(
            r#"{"codeSigning":{"customCodeSigning":{"signature":{"inlineDocument":"AQJzaWc="},"certificateChain":{"certificateName":"c"},"hashAlgorithm":"SHA256","signatureAlgorithm":"ECDSA"}}}"#,
        );
        match file_signing(0, &custom).unwrap() {
            Signing::Custom { scheme, certificate_name, .. } => {
                assert_eq!(scheme.document_key(), "sig-sha256-ecdsa");
                assert_eq!(certificate_name, "c");
            }
            other => panic!("{other:?}"),
        }
        let profile = file(r#"{"codeSigning":{"startSigningJobParameter":{"signingProfileName":"p","destination":{"s3Destination":{"bucket":"out"}}}}}"#);
        assert_eq!(
            file_signing(0, &profile).unwrap(),
            Signing::Profile { profile: "p".into(), path_on_device: None, destination: Some(("out".into(), String::new())) }
        );
    }

    #[test]
    fn the_job_document_is_what_the_agent_parses() {
        let f = DocumentFile {
            file_path: "/fw.bin".into(),
            file_size: 12345,
            file_id: 0,
            file_type: None,
            cert_file: Some("Code Verify Key".into()),
            signature: Some(("sig-sha256-ecdsa".into(), "MEQ=".into())),
            s3_object: Some(("b".into(), "fw.bin".into())),
        };
        let mqtt = job_document(&["MQTT".into()], Some("AFR_OTA-x"), std::slice::from_ref(&f));
        assert_eq!(
            mqtt.to_string(),
            r#"{"afr_ota":{"protocols":["MQTT"],"streamname":"AFR_OTA-x","files":[{"filepath":"/fw.bin","filesize":12345,"fileid":0,"certfile":"Code Verify Key","sig-sha256-ecdsa":"MEQ="}]}}"#
        );
        let http = job_document(&["HTTP".into()], None, &[f]);
        let file0 = &http["afr_ota"]["files"][0];
        assert_eq!(file0["update_data_url"], "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/fw.bin}");
        assert_eq!(file0["auth_scheme"], "aws.s3.presigned");
        assert!(http["afr_ota"].get("streamname").is_none());
        assert_eq!(generated_stream_id("9ca58abd-ec6d-4d6d-8e9f-cd605cda9f1e").len(), MAX_STREAM_NAME);
    }

    fn req(v: serde_json::Value) -> CreateOtaUpdateBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_requests_are_checked_member_by_member() {
        let base = serde_json::json!({
            "targets": ["arn:aws:iot:us-east-1:111122223333:thing/t"],
            "roleArn": "arn:aws:iam::111122223333:role/ota",
            "files": [{"fileName": "f", "fileLocation": {"s3Location": {"bucket": "b", "key": "k"}}}],
        });
        let v = validate_create("u1", &req(base.clone())).unwrap();
        assert_eq!((v.job_id.as_str(), v.protocols.clone(), v.needs_stream, v.user_stream.clone()), ("AFR_OTA-u1", vec!["MQTT".to_string()], true, None));
        let with = |k: &str, val: serde_json::Value| {
            let mut b = base.clone();
            b[k] = val;
            validate_create("u1", &req(b))
        };
        assert!(!with("protocols", serde_json::json!(["HTTP"])).unwrap().needs_stream);
        for (k, val, msg) in [
            ("description", serde_json::json!("x".repeat(2029)), "description"),
            ("protocols", serde_json::json!(["FTP"]), "enum value set"),
            ("protocols", serde_json::json!(["MQTT", "MQTT"]), "twice"),
            ("protocols", serde_json::json!([]), "protocols"),
            ("targets", serde_json::json!([]), "targets"),
            ("targetSelection", serde_json::json!("SOMETIMES"), "targetSelection"),
            ("awsJobPresignedUrlConfig", serde_json::json!({"expiresInSec": 30}), "awsJobPresignedUrlConfig.expiresInSec"),
            ("awsJobTimeoutConfig", serde_json::json!({"inProgressTimeoutInMinutes": 0}), "awsJobTimeoutConfig"),
            ("awsJobAbortConfig", serde_json::json!({"abortCriteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 101, "minNumberOfExecutedThings": 1}]}), "awsJobAbortConfig.abortCriteriaList"),
            ("awsJobExecutionsRolloutConfig", serde_json::json!({"maximumPerMinute": 0}), "awsJobExecutionsRolloutConfig.maximumPerMinute"),
            ("roleArn", serde_json::json!("short"), "roleArn"),
            ("additionalParameters", serde_json::json!({"k": "v".repeat(4097)}), "additionalParameters"),
            ("files", serde_json::json!([]), "files"),
            ("files", serde_json::json!([{"fileLocation": {"stream": {"streamId": "s"}}}, {"fileLocation": {"s3Location": {"bucket": "b", "key": "k"}}}]), "one stream"),
            ("files", serde_json::json!([{"fileType": 256, "fileLocation": {"stream": {"streamId": "s"}}}]), "fileType"),
        ] {
            let e = with(k, val).unwrap_err();
            assert_eq!(e.code, codes::INVALID_REQUEST, "{k}");
            assert!(e.message.contains(msg), "{k}: {}", e.message);
        }
        let mut no_role = base.clone();
        no_role.as_object_mut().unwrap().remove("roleArn");
        assert!(validate_create("u1", &req(no_role)).unwrap_err().message.contains("roleArn"));
        let v = with("files", serde_json::json!([{"fileLocation": {"stream": {"streamId": "s", "fileId": 2}}}])).unwrap();
        assert_eq!((v.user_stream.as_deref(), v.needs_stream), (Some("s"), false));
    }

    #[test]
    fn targets_are_things_or_groups_of_the_callers_scope() {
        let scope = Scope::new("111122223333", "us-east-1");
        assert_eq!(parse_target(&scope, "arn:aws:iot:us-east-1:111122223333:thing/t").unwrap(), Target::Thing("t".into()));
        assert_eq!(parse_target(&scope, "arn:aws:iot:us-east-1:111122223333:thinggroup/g").unwrap(), Target::Group("g".into()));
        for bad in ["arn:aws:iot:eu-west-1:111122223333:thing/t", "arn:aws:iot:us-east-1:999999999999:thing/t", "t"] {
            assert!(parse_target(&scope, bad).is_err(), "{bad}");
        }
    }

}
