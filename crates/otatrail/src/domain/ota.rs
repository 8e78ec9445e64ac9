//! OTA updates (`aws-api.md` §5.6–5.9, §6; `device.md` §1): the CreateOTAUpdate request and
//! its constraints, the update's lifecycle, the job it becomes (`AFR_OTA-<id>`) and the
//! `afr_ota` job document FreeRTOS agents parse. No I/O: the app layer resolves targets,
//! objects, streams and signatures and hands the results in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ServiceError;
use super::codesign::SignatureScheme;
use super::error::codes;
use super::time::Millis;

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
}
