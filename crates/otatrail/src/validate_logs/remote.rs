//! Reading a trail over the wire: CloudTrail's JSON API (DescribeTrails, GetTrailStatus,
//! ListPublicKeys) signed with SigV4, and the bucket through any S3-compatible endpoint.
//!
//! Credentials and endpoints are found as the aws CLI finds them: flags, then
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` and
//! `AWS_ENDPOINT_URL_<SERVICE>`/`AWS_ENDPOINT_URL`, then the shared files of `AWS_PROFILE`
//! (including the `services` section that points `s3` at its own endpoint).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, ObjectStore, ObjectStoreExt};
use otatrail_sigv4::{Credentials, SignableRequest, sign_request};
use serde_json::{Value, json};

use super::source::{Fetched, LogSource, SourceError, TrailArn, TrailLocation};
use crate::domain::time::Millis;

/// `[section]` → key → value, with nested `s3 =` blocks flattened to `s3.endpoint_url`.
type Ini = HashMap<String, HashMap<String, String>>;

fn parse_ini(text: &str) -> Ini {
    let mut out: Ini = HashMap::new();
    let mut section = String::new();
    let mut nested: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.trim().to_string();
            nested = None;
            continue;
        }
        let Some((k, v)) = trimmed.split_once('=') else { continue };
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let entry = out.entry(section.clone()).or_default();
        match (&nested, indented) {
            (Some(parent), true) => {
                entry.insert(format!("{parent}.{k}"), v);
            }
            _ if v.is_empty() => nested = Some(k),
            _ => {
                nested = None;
                entry.insert(k, v);
            }
        }
    }
    out
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default()
}

fn read_ini(env: &str, default: &str) -> Ini {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| home().join(default));
    std::fs::read_to_string(path).map(|t| parse_ini(&t)).unwrap_or_default()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Endpoints and credentials, resolved once.
pub struct RemoteSettings {
    pub cloudtrail_endpoint: String,
    pub s3_endpoint: String,
    pub credentials: Credentials,
}

impl RemoteSettings {
    pub fn resolve(endpoint_url: Option<String>, s3_endpoint_url: Option<String>, profile: Option<String>) -> Result<Self, SourceError> {
        let profile = profile.or_else(|| env("AWS_PROFILE")).unwrap_or_else(|| "default".into());
        let config = read_ini("AWS_CONFIG_FILE", ".aws/config");
        let creds_file = read_ini("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
        let empty = HashMap::new();
        let conf = config.get(&format!("profile {profile}")).or_else(|| config.get(&profile)).unwrap_or(&empty);
        let services = conf.get("services").and_then(|s| config.get(&format!("services {s}"))).unwrap_or(&empty);
        let cloudtrail_endpoint = endpoint_url
            .or_else(|| env("AWS_ENDPOINT_URL_CLOUDTRAIL"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| services.get("cloudtrail.endpoint_url").cloned())
            .or_else(|| conf.get("endpoint_url").cloned())
            .ok_or_else(|| SourceError("no CloudTrail endpoint: give --endpoint-url (or --data-dir to read a data directory)".into()))?;
        let s3_endpoint = s3_endpoint_url
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| services.get("s3.endpoint_url").cloned())
            .or_else(|| conf.get("endpoint_url").cloned())
            .unwrap_or_else(|| cloudtrail_endpoint.clone());
        let file_creds = creds_file.get(&profile).unwrap_or(&empty);
        let from_file = |k: &str| file_creds.get(k).or_else(|| conf.get(k)).cloned();
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Credentials { access_key_id: id, secret_access_key: secret, session_token: env("AWS_SESSION_TOKEN") },
            _ => match (from_file("aws_access_key_id"), from_file("aws_secret_access_key")) {
                (Some(id), Some(secret)) => {
                    Credentials { access_key_id: id, secret_access_key: secret, session_token: from_file("aws_session_token") }
                }
                _ => {
                    return Err(SourceError(format!(
                        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a profile ({profile} has none)"
                    )));
                }
            },
        };
        Ok(Self { cloudtrail_endpoint, s3_endpoint, credentials })
    }
}

pub struct RemoteSource {
    settings: RemoteSettings,
    /// The region requests are signed for (the trail's home region, or `--region`).
    region: String,
    http: reqwest::Client,
    buckets: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl RemoteSource {
    pub fn new(settings: RemoteSettings, region: String) -> Self {
        Self { settings, region, http: reqwest::Client::new(), buckets: Mutex::new(HashMap::new()) }
    }

    async fn cloudtrail(&self, region: &str, operation: &str, body: Value) -> Result<Value, SourceError> {
        let url: reqwest::Url = self
            .settings
            .cloudtrail_endpoint
            .parse()
            .map_err(|e| SourceError(format!("endpoint {}: {e}", self.settings.cloudtrail_endpoint)))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let body = body.to_string();
        let target = format!("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.{operation}");
        let extra = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let path = if url.path().is_empty() { "/" } else { url.path() };
        let signable = SignableRequest { method: "POST", host: &host, path, query: "", headers: &extra, body: body.as_bytes() };
        let signed = sign_request(&signable, &self.settings.credentials, region, "cloudtrail", time::OffsetDateTime::now_utc());
        let mut req = self.http.post(url.clone()).header("content-type", extra[0].1).header("x-amz-target", &target).body(body);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| SourceError(format!("{operation} at {url}: {e}")))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| SourceError(format!("{operation}: {e}")))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = v.get("__type").and_then(Value::as_str).unwrap_or("error");
            let message = v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).unwrap_or(&text);
            return Err(SourceError(format!("{operation} failed ({code}): {message}")));
        }
        Ok(v)
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<AmazonS3>, SourceError> {
        let mut buckets = self.buckets.lock().expect("not poisoned");
        if let Some(b) = buckets.get(bucket) {
            return Ok(b.clone());
        }
        let c = &self.settings.credentials;
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&self.settings.s3_endpoint)
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_allow_http(true);
        if let Some(t) = &c.session_token {
            builder = builder.with_token(t);
        }
        let store = Arc::new(builder.build().map_err(|e| SourceError(format!("S3 endpoint {}: {e}", self.settings.s3_endpoint)))?);
        buckets.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

fn s3_err(what: &str, e: object_store::Error) -> SourceError {
    SourceError(format!("S3 {what}: {e}"))
}

#[async_trait]
impl LogSource for RemoteSource {
    async fn trail(&self, arn: &TrailArn) -> Result<TrailLocation, SourceError> {
        let trails = self.cloudtrail(&arn.home_region, "DescribeTrails", json!({"trailNameList": [arn.arn]})).await?;
        let t = trails
            .get("trailList")
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|t| t.get("TrailARN").and_then(Value::as_str) == Some(arn.arn.as_str())))
            .ok_or_else(|| SourceError(format!("A trail could not be found for {}", arn.arn)))?;
        let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
        // The status only sharpens the checks; a caller without GetTrailStatus still validates.
        let latest_digest = match self.cloudtrail(&arn.home_region, "GetTrailStatus", json!({"Name": arn.arn})).await {
            Ok(s) => s.get("LatestDigestDeliveryTime").and_then(Value::as_f64).map(|t| Millis((t * 1000.0).round() as i64)),
            Err(e) => {
                tracing::warn!(error = %e, "no trail status; the newest-digest check is skipped");
                None
            }
        };
        Ok(TrailLocation {
            bucket: text("S3BucketName").ok_or_else(|| SourceError(format!("trail {} has no S3BucketName", arn.arn)))?,
            prefix: text("S3KeyPrefix").filter(|p| !p.is_empty()),
            latest_digest,
            // DescribeTrails does not name the organization: the caller gives it.
            organization_id: None,
            is_organization_trail: t.get("IsOrganizationTrail").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    async fn public_keys(&self, region: &str, start: Millis, end: Millis) -> Result<HashMap<String, Vec<u8>>, SourceError> {
        use base64::Engine;
        let mut out = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"StartTime": start.0 / 1000, "EndTime": end.0 / 1000});
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = self.cloudtrail(region, "ListPublicKeys", body).await?;
            for k in page.get("PublicKeyList").and_then(Value::as_array).into_iter().flatten() {
                let (Some(fp), Some(value)) = (k.get("Fingerprint").and_then(Value::as_str), k.get("Value").and_then(Value::as_str)) else {
                    continue;
                };
                let der = base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .map_err(|_| SourceError(format!("ListPublicKeys returned a key that is not base64 ({fp})")))?;
                out.insert(fp.to_string(), der);
            }
            token = page.get("NextToken").and_then(Value::as_str).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn list(&self, bucket: &str, prefix: &str, after: Option<&str>) -> Result<Vec<String>, SourceError> {
        let store = self.bucket(bucket)?;
        let prefix_path = ObjectPath::from(prefix.trim_end_matches('/'));
        let listing = match after {
            Some(a) => store.list_with_offset(Some(&prefix_path), &ObjectPath::from(a)),
            None => store.list(Some(&prefix_path)),
        };
        let objects: Vec<_> = listing.try_collect().await.map_err(|e| s3_err(&format!("listing s3://{bucket}/{prefix}"), e))?;
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.location.to_string()).collect();
        keys.sort();
        Ok(keys)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, SourceError> {
        let store = self.bucket(bucket)?;
        match store.get(&ObjectPath::from(key)).await {
            Ok(r) => {
                let signature = r.attributes.get(&Attribute::Metadata("signature".into())).map(|v| v.to_string());
                let bytes = r.bytes().await.map_err(|e| s3_err(&format!("reading s3://{bucket}/{key}"), e))?;
                Ok(Some(Fetched { bytes: bytes.to_vec(), signature }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_err(&format!("getting s3://{bucket}/{key}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_with_a_services_section() {
        let ini = parse_ini(
            "[profile otatrail]\nregion = us-east-1\nendpoint_url = http://a:1\nservices = s\n\n[services s]\ns3 =\n  endpoint_url = http://a:2\n",
        );
        assert_eq!(ini["profile otatrail"]["endpoint_url"], "http://a:1");
        assert_eq!(ini["services s"]["s3.endpoint_url"], "http://a:2");
    }
}
