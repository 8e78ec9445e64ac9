//! OTA updates: CreateOTAUpdate, GetOTAUpdate, ListOTAUpdates, DeleteOTAUpdate, and the
//! state machine that turns an update into a stream, signatures and a job.
//!
//! CreateOTAUpdate checks everything it can at once (members, targets, the role and its
//! trust, signing profiles, a named stream) and stores the update as CREATE_PENDING with its
//! record. The state machine ([`App::ota_tick`], run by [`App::spawn_ota_engine`] and woken
//! by every CreateOTAUpdate) then, acting as the update's role assumed by
//! `iot.amazonaws.com`:
//! 1. moves it to CREATE_IN_PROGRESS;
//! 2. reads every file's object (a missing one fails the update);
//! 3. signs with signing profiles (a `StartSigningJob` record; the signed output object
//!    `{"rawPayloadSize","signature","signatureAlgorithm","payload"}` is written to
//!    `<destination prefix>SignedImages/<otaUpdateId>-<file index>`), and checks given
//!    signatures when their certificate is known (a bad one fails the update);
//! 4. creates the stream `AFR_OTA-<uuid>` of the S3 files when MQTT is a protocol (a
//!    `CreateStream` record);
//! 5. creates job `AFR_OTA-<otaUpdateId>` with the `afr_ota` document (a `CreateJob`
//!    record), and moves to CREATE_COMPLETE; any refusal ends in CREATE_FAILED with
//!    `errorInfo`.
//!
//! Every step is saved in the update (`domain::ota::OtaProgress`) with or before its effect,
//! so a restart resumes where it stopped. DeleteOTAUpdate moves the update to
//! DELETE_IN_PROGRESS (its record commits with that), then deletes the job (with
//! `forceDeleteAWSJob` also an active one; otherwise DELETE_FAILED) and, with
//! `deleteStream`, the stream the update created.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::domain::buckets::ObjectMeta;
use crate::domain::error::codes;
use crate::domain::ota::{
    self, DeleteRequest, DocumentFile, ErrorInfo, FileSource, OtaPage, OtaStatus, OtaUpdate, Signing, ValidOtaUpdate,
};
use crate::domain::streams::{self, FileRef, StreamFile};
use crate::domain::{Principal, Scope, ServiceError};
use crate::store;

use super::App;
use super::audit::Call;
use super::codesign::PROFILE_SCHEME;

/// The service that acts on an update's behalf.
pub const SERVICE: &str = "iot.amazonaws.com";

/// The state machine's wake-up and the lock that keeps one pass at a time.
#[derive(Default)]
pub struct OtaRuntime {
    wake: tokio::sync::Notify,
    lock: tokio::sync::Mutex<()>,
}

/// How a step ended short of success.
enum Stop {
    /// The update cannot be made: CREATE_FAILED with this reason.
    Failed(ErrorInfo),
    /// A passing problem (the store): try again on the next pass.
    Retry(ServiceError),
    /// The update went away or changed status under the pass.
    Gone,
}

fn transient(e: &ServiceError) -> bool {
    matches!(e.code, codes::INTERNAL_FAILURE | codes::SERVICE_UNAVAILABLE)
}

impl From<ServiceError> for Stop {
    fn from(e: ServiceError) -> Self {
        if transient(&e) { Stop::Retry(e) } else { Stop::Failed(ErrorInfo { code: e.code.to_string(), message: e.message }) }
    }
}

fn failed(code: &str, message: impl Into<String>) -> Stop {
    Stop::Failed(ErrorInfo { code: code.to_string(), message: message.into() })
}

/// One file as the state machine resolved it.
struct Resolved {
    meta: ObjectMeta,
    bucket: String,
    key: String,
    version: Option<String>,
    file_id: u8,
    from_s3: bool,
}

/// The role session the service uses for an update.
fn session_name(id: &str) -> String {
    let mut s = format!("ota-{id}");
    s.truncate(64);
    s
}

/// Unfinished updates the OTA engine reads at a time.
const OTA_PAGE: i64 = 256;

impl App {
    pub async fn create_ota_update(&self, call: &Arc<Call>, id: &str, body: &ota::CreateOtaUpdateBody) -> Result<OtaUpdate, ServiceError> {
        let valid = ota::validate_create(id, body)?;
        let scope = call.scope();
        for t in &valid.targets {
            ota::parse_target(&scope, t)?;
        }
        // The role must exist here and trust the service (InvalidRequestException otherwise).
        self.assume_role_as_service(SERVICE, &scope.account_id, &valid.role_arn, &session_name(id)).await?;
        for (i, f) in valid.files.iter().enumerate() {
            if let Signing::Profile { profile, .. } = &f.signing
                && self.signing_profiles.get(profile).is_none()
            {
                let known = self.signing_profiles.names();
                return Err(ServiceError::not_found(format!(
                    "files[{i}]: signing profile {profile} does not exist; profiles are declared in the server configuration ({})",
                    if known.is_empty() { "none is".to_string() } else { format!("known: {}", known.join(", ")) }
                )));
            }
        }
        let generated = valid.needs_stream.then(|| ota::generated_stream_id(&crate::domain::ids::time_ordered_id()));
        let update = OtaUpdate::new(&scope, &valid, body.clone(), generated, self.clock.now());
        let (call2, u, user_stream) = (call.clone(), update.clone(), valid.user_stream.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                ota::check_targets(tx, &u.scope, u.spec.request.targets.as_deref().unwrap_or_default()).await?;
                if let Some(s) = &user_stream
                    && tx.get_stream(&u.scope, s).await?.is_none()
                {
                    return Err(ServiceError::not_found(format!("Stream {s} does not exist.")));
                }
                ota::create(tx, &u, user_stream.as_deref()).await?;
                call2.record_success(tx, Some(u.created()), vec![call2.resource(u.arn(), ota::RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await?;
        self.ota.wake.notify_one();
        Ok(update)
    }

    pub async fn get_ota_update(&self, call: &Arc<Call>, id: &str) -> Result<OtaUpdate, ServiceError> {
        let (scope, id) = (call.scope(), id.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { ota::get(tx, &scope, &id).await })).await
    }

    pub async fn list_ota_updates(
        &self,
        call: &Arc<Call>,
        status: Option<String>,
        max_results: Option<i64>,
        next_token: Option<String>,
    ) -> Result<OtaPage, ServiceError> {
        let scope = call.scope();
        store::read(&*self.store, move |tx| {
            Box::pin(async move { ota::list(tx, &scope, status.as_deref(), max_results, next_token.as_deref()).await })
        })
        .await
    }

    /// DeleteOTAUpdate: DELETE_IN_PROGRESS (recorded with the call), then the deletion.
    /// An update still being created is refused (VersionConflictException).
    pub async fn delete_ota_update(&self, call: &Arc<Call>, id: &str, req: DeleteRequest) -> Result<(), ServiceError> {
        ota::job_id_for(id)?;
        let (call2, id2, now) = (call.clone(), id.to_string(), self.clock.now());
        let u = store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let scope = call2.scope();
                let mut u = ota::get(tx, &scope, &id2).await?;
                if matches!(u.status, OtaStatus::CreatePending | OtaStatus::CreateInProgress) {
                    return Err(ServiceError::new(
                        codes::VERSION_CONFLICT,
                        format!("OTA update {id2} is {}; delete it once it is CREATE_COMPLETE or CREATE_FAILED.", u.status.as_str()),
                    ));
                }
                u.spec.progress.delete = Some(req);
                u.set_status(OtaStatus::DeleteInProgress, None, now);
                tx.update_ota_update(&u).await?;
                call2.record_success(tx, None, vec![call2.resource(u.arn(), ota::RESOURCE_TYPE)]).await?;
                Ok(u)
            })
        })
        .await?;
        let _pass = self.ota.lock.lock().await;
        if let Err(e) = self.finish_delete(u).await {
            // Left DELETE_IN_PROGRESS: the state machine tries again.
            tracing::warn!(ota_update = id, error = %e, "OTA update deletion will be retried");
        }
        Ok(())
    }

    /// One pass of the state machine over every update unfinished when it began; how many it
    /// looked at. Read a page at a time: after a burst of CreateOTAUpdate calls tens of
    /// thousands can be waiting, and holding them all at once took the server past 300 MiB.
    /// The pass ends at the newest update of its start: under a steady stream of creates it
    /// would otherwise go on with each new page and never come back to older updates waiting
    /// for their next step (each create wakes the engine again, so the new ones are next).
    pub async fn ota_tick(&self) -> Result<usize, ServiceError> {
        let _pass = self.ota.lock.lock().await;
        use futures::StreamExt;
        let through = store::read::<_, ServiceError, _>(&*self.store, |tx| {
            Box::pin(async move { Ok(tx.newest_ota_update_seq().await?) })
        })
        .await?;
        let (mut after, mut n) = (0, 0);
        loop {
            let pending = store::read::<_, ServiceError, _>(&*self.store, move |tx| {
                Box::pin(async move { Ok(tx.unfinished_ota_updates(after, through, OTA_PAGE).await?) })
            })
            .await?;
            let Some((last, _)) = pending.last() else { break };
            after = *last;
            n += pending.len();
            // Updates are independent of each other: several advance at once, so their steps
            // share group commits.
            let mut steps = futures::stream::iter(pending)
                .map(|(_, u)| async move {
                    let id = u.ota_update_id.clone();
                    let r = match u.status {
                        OtaStatus::DeleteInProgress => self.finish_delete(u).await,
                        _ => self.advance_create(u).await,
                    };
                    (id, r)
                })
                .buffer_unordered(super::jobs::ENGINE_CONCURRENCY);
            while let Some((id, r)) = steps.next().await {
                if let Err(e) = r {
                    tracing::warn!(ota_update = %id, error = %e, "OTA update step failed; retrying later");
                }
            }
        }
        Ok(n)
    }

    /// Runs [`App::ota_tick`] every `interval` and whenever an update is created.
    pub fn spawn_ota_engine(self: &Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let app = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = app.ota_tick().await {
                    tracing::warn!(error = %e, "OTA update pass failed");
                }
                let _ = tokio::time::timeout(interval, app.ota.wake.notified()).await;
            }
        })
    }

    /// Saves the update (if it still exists), with a record of a call made on its behalf.
    async fn save_ota(&self, u: &OtaUpdate, event: Option<(Arc<Call>, Option<Value>, Vec<crate::domain::audit::Resource>)>) -> Result<(), Stop> {
        let u2 = u.clone();
        let saved = store::write::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_ota_update(&u2.scope, &u2.ota_update_id).await?.is_none() {
                    return Ok(false);
                }
                tx.update_ota_update(&u2).await?;
                if let Some((call, out, resources)) = event {
                    call.record_success(tx, out, resources).await?;
                }
                Ok(true)
            })
        })
        .await
        .map_err(Stop::Retry)?;
        if saved { Ok(()) } else { Err(Stop::Gone) }
    }

    /// A call the service makes as the update's role, recorded like the user's own calls.
    fn service_call(&self, principal: &Principal, region: &str, source: &str, name: &str, params: Value) -> Arc<Call> {
        let mut c = Call::internal(principal.clone(), region, source, name, false, self.clock.now());
        c.info.source_ip = SERVICE.to_string();
        c.info.user_agent = Some(SERVICE.to_string());
        c.info.request_parameters = Some(params);
        Arc::new(c)
    }

    async fn advance_create(&self, mut u: OtaUpdate) -> Result<(), ServiceError> {
        if u.status == OtaStatus::CreatePending {
            u.set_status(OtaStatus::CreateInProgress, None, self.clock.now());
            match self.save_ota(&u, None).await {
                Ok(()) => {}
                Err(Stop::Retry(e)) => return Err(e),
                Err(_) => return Ok(()),
            }
        }
        match self.build(&mut u).await {
            Ok(()) => {
                u.set_status(OtaStatus::CreateComplete, None, self.clock.now());
            }
            Err(Stop::Failed(info)) => {
                tracing::info!(ota_update = %u.ota_update_id, code = %info.code, reason = %info.message, "OTA update failed");
                u.set_status(OtaStatus::CreateFailed, Some(info), self.clock.now());
            }
            Err(Stop::Retry(e)) => return Err(e),
            Err(Stop::Gone) => return Ok(()),
        }
        match self.save_ota(&u, None).await {
            Ok(()) | Err(Stop::Gone) | Err(Stop::Failed(_)) => Ok(()),
            Err(Stop::Retry(e)) => Err(e),
        }
    }

    /// Steps 2–5 of the state machine, each skipped when already done.
    async fn build(&self, u: &mut OtaUpdate) -> Result<(), Stop> {
        let scope = u.scope.clone();
        let valid: ValidOtaUpdate = ota::validate_create(&u.ota_update_id, &u.spec.request)?;
        let principal = self.assume_role_as_service(SERVICE, &scope.account_id, &valid.role_arn, &session_name(&u.ota_update_id)).await?;
        let files = self.resolve_ota_files(&scope, &principal, &valid).await?;

        // Signatures: checked, or made with a signing profile.
        let mut doc_files = Vec::with_capacity(files.len());
        let request_files = u.spec.request.files.clone().unwrap_or_default();
        for (i, (f, r)) in valid.files.iter().zip(&files).enumerate() {
            let (cert_file, signature) = match &f.signing {
                Signing::None => (None, None),
                Signing::Custom { scheme, signature_b64, certificate_name, certificate_pem } => {
                    let known = certificate_pem.clone().or_else(|| {
                        self.signing_profiles
                            .names()
                            .into_iter()
                            .filter_map(|n| self.signing_profiles.get(n))
                            .find(|p| &p.certificate_path_on_device == certificate_name)
                            .map(|p| p.certificate_pem.clone())
                    });
                    if let Some(cert) = known
                        && let Err(p) = self.verify_image_signature(&r.meta, *scheme, &cert, signature_b64).await?
                    {
                        return Err(failed(
                            "SignatureVerificationFailed",
                            format!("The code signature does not verify over the image: {}", p.message(&format!("files[{i}]"))),
                        ));
                    }
                    (Some(certificate_name.clone()), Some((scheme.document_key(), signature_b64.clone())))
                }
                Signing::Profile { profile, path_on_device, destination } => {
                    let Some(p) = self.signing_profiles.get(profile) else {
                        return Err(failed(codes::RESOURCE_NOT_FOUND, format!("files[{i}]: signing profile {profile} does not exist")));
                    };
                    let cert_file = path_on_device.clone().unwrap_or_else(|| p.certificate_path_on_device.clone());
                    let sig = match u.spec.progress.signatures.get(&i) {
                        Some(s) => s.clone(),
                        None => self.sign_for_update(u, i, profile, r, destination.as_ref(), &principal).await?,
                    };
                    (Some(cert_file), Some((PROFILE_SCHEME.document_key(), sig)))
                }
            };
            let rf = &request_files[i];
            doc_files.push(DocumentFile {
                file_path: rf.file_name.clone().unwrap_or_else(|| "/".into()),
                file_size: r.meta.size,
                file_id: r.file_id,
                file_type: rf.file_type,
                cert_file,
                signature,
                s3_object: Some((r.bucket.clone(), r.key.clone())),
            });
        }

        // The stream of the S3 files, for MQTT.
        let stream_name = match (u.spec.progress.generated_stream.clone(), &valid.user_stream) {
            (Some(g), _) => {
                if !u.spec.progress.stream_created {
                    self.create_update_stream(u, &g, &files, &principal, &valid.role_arn).await?;
                }
                Some(g)
            }
            (None, Some(s)) => Some(s.clone()),
            (None, None) => None,
        };

        // The job.
        let protocols = u.protocols();
        let document = ota::job_document(&protocols, stream_name.as_deref(), &doc_files);
        let job_id = u.job_id();
        let existing = {
            let (scope, id) = (scope.clone(), job_id.clone());
            store::read::<_, ServiceError, _>(&*self.store, move |tx| Box::pin(async move { Ok(tx.get_job(&scope, &id).await?.is_some()) }))
                .await
                .map_err(Stop::Retry)?
        };
        if existing && !u.spec.progress.job_requested {
            return Err(failed(codes::RESOURCE_ALREADY_EXISTS, format!("Job {job_id} already exists; the update cannot create its job.")));
        }
        if !existing {
            if !u.spec.progress.job_requested {
                u.spec.progress.job_requested = true;
                self.save_ota(u, None).await?;
            }
            let job = u.job_request(&document);
            let call = self.service_call(
                &principal,
                &scope.region,
                SERVICE,
                "CreateJob",
                json!({ "jobId": job.job_id, "targets": job.targets, "document": job.document, "targetSelection": job.target_selection.as_str() }),
            );
            match self.create_job_as_service(&call, job).await {
                Ok(_) => {}
                Err(e) if e.code == codes::RESOURCE_ALREADY_EXISTS => {}
                Err(e) => return Err(e.into()),
            }
        }
        u.spec.progress.job_created = true;
        Ok(())
    }

    /// Every file's object, read as the update's role.
    async fn resolve_ota_files(&self, scope: &Scope, principal: &Principal, valid: &ValidOtaUpdate) -> Result<Vec<Resolved>, Stop> {
        let mut out = Vec::with_capacity(valid.files.len());
        let mut next_s3_id = 0u8;
        for (i, f) in valid.files.iter().enumerate() {
            let (bucket, key, version, file_id, from_s3) = match &f.source {
                FileSource::S3 { bucket, key, version } => {
                    let id = next_s3_id;
                    next_s3_id = next_s3_id.saturating_add(1);
                    (bucket.clone(), key.clone(), version.clone(), id, true)
                }
                FileSource::Stream { stream_id, file_id } => {
                    let (sc, sid) = (scope.clone(), stream_id.clone());
                    let stream = store::read::<_, ServiceError, _>(&*self.store, move |tx| {
                        Box::pin(async move { Ok(tx.get_stream(&sc, &sid).await?) })
                    })
                    .await
                    .map_err(Stop::Retry)?
                    .ok_or_else(|| failed(codes::RESOURCE_NOT_FOUND, format!("files[{i}]: stream {stream_id} does not exist")))?;
                    let sf = stream.files.iter().find(|s| s.file_id == *file_id).ok_or_else(|| {
                        failed(codes::INVALID_REQUEST, format!("files[{i}]: stream {stream_id} has no file with fileId {file_id}"))
                    })?;
                    (sf.bucket.clone(), sf.key.clone(), sf.version.clone(), *file_id, false)
                }
            };
            let meta = self.s3_head_object(principal, &bucket, &key).await.map_err(|e| match e.code {
                "NoSuchBucket" | "NoSuchKey" | "AccessDenied" | "KeyTooLongError" => failed(
                    codes::INVALID_REQUEST,
                    format!("files[{i}]: the S3 object s3://{bucket}/{key} does not exist or the role cannot read it"),
                ),
                _ => Stop::from(e),
            })?;
            out.push(Resolved { meta, bucket, key, version, file_id, from_s3 });
        }
        Ok(out)
    }

    /// Signs file `i` with a profile, writes the signed output when asked, and saves the
    /// signature with a `StartSigningJob` record.
    async fn sign_for_update(
        &self,
        u: &mut OtaUpdate,
        i: usize,
        profile: &str,
        r: &Resolved,
        destination: Option<&(String, String)>,
        principal: &Principal,
    ) -> Result<String, Stop> {
        let sig = self.sign_image(profile, &r.meta).await?;
        let signing_job_id = uuid::Uuid::new_v4().to_string();
        if let Some((bucket, prefix)) = destination {
            let key = format!("{prefix}SignedImages/{}-{i}", u.ota_update_id);
            let mut payload = Vec::with_capacity(r.meta.size as usize);
            if r.meta.size > 0 {
                for c in self.s3_read(&r.meta, 0, r.meta.size).await? {
                    payload.extend_from_slice(&c);
                }
            }
            let body = json!({
                "rawPayloadSize": r.meta.size,
                "signature": sig,
                "signatureAlgorithm": "SHA256withECDSA",
                "payload": base64::engine::general_purpose::STANDARD.encode(&payload),
            })
            .to_string();
            let props = super::buckets::ObjectProps { content_type: Some("application/json".into()), ..Default::default() };
            let stream = futures::stream::iter(vec![Ok::<Bytes, std::io::Error>(Bytes::from(body))]);
            self.s3_put_object(principal, bucket, &key, stream, props, false).await.map_err(|e| match e.code {
                "NoSuchBucket" | "AccessDenied" => {
                    failed(codes::INVALID_REQUEST, format!("files[{i}]: the signed image cannot be written to s3://{bucket}/{key}: {}", e.message))
                }
                _ => Stop::from(e),
            })?;
            u.spec.progress.signed_outputs.insert(i, (bucket.clone(), key));
        }
        u.spec.progress.signatures.insert(i, sig.clone());
        let mut params = json!({
            "profileName": profile,
            "source": { "s3": { "bucketName": r.bucket, "key": r.key, "version": r.version } },
        });
        if let Some((b, p)) = destination {
            params["destination"] = json!({ "s3": { "bucketName": b, "prefix": p } });
        }
        let call = self.service_call(principal, &u.scope.region, "signer.amazonaws.com", "StartSigningJob", params);
        self.save_ota(u, Some((call, Some(json!({ "jobId": signing_job_id })), vec![]))).await?;
        Ok(sig)
    }

    /// Creates the update's stream of its S3 files, with its `CreateStream` record, the
    /// stream's use by the update and the progress in one unit of work.
    async fn create_update_stream(&self, u: &mut OtaUpdate, stream_id: &str, files: &[Resolved], principal: &Principal, role_arn: &str) -> Result<(), Stop> {
        let mut refs = Vec::new();
        let mut stream_files = Vec::new();
        for r in files.iter().filter(|r| r.from_s3) {
            let fr = FileRef { file_id: r.file_id, bucket: r.bucket.clone(), key: r.key.clone(), version: r.version.clone() };
            let sha = self.s3_sha256(&r.meta).await?;
            stream_files.push(StreamFile::from_ref(fr.clone(), r.meta.size, sha));
            refs.push(fr);
        }
        let params = json!({
            "streamId": stream_id,
            "files": refs.iter().map(|f| json!({ "fileId": f.file_id, "s3Location": { "bucket": f.bucket, "key": f.key } })).collect::<Vec<_>>(),
            "roleArn": role_arn,
        });
        let call = self.service_call(principal, &u.scope.region, SERVICE, "CreateStream", params);
        let valid = streams::ValidCreate {
            stream_id: stream_id.to_string(),
            description: Some(format!("Stream of OTA update {}", u.ota_update_id)),
            files: refs,
            role_arn: role_arn.to_string(),
            tags: vec![],
        };
        u.spec.progress.stream_created = true;
        let (u2, now) = (u.clone(), self.clock.now());
        store::write::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                let s = streams::create(tx, &u2.scope, valid, stream_files, now).await?;
                tx.add_ota_stream_use(&u2.scope, &u2.ota_update_id, &s.stream_id).await?;
                tx.update_ota_update(&u2).await?;
                call.record_success(tx, Some(s.summary()), vec![call.resource(s.arn(), streams::RESOURCE_TYPE)]).await?;
                Ok(())
            })
        })
        .await
        .map_err(|e| {
            u.spec.progress.stream_created = false;
            Stop::from(e)
        })
    }

    /// The deletion of an update in DELETE_IN_PROGRESS: its job, then (asked for) its own
    /// stream and the update itself in one unit of work.
    async fn finish_delete(&self, mut u: OtaUpdate) -> Result<(), ServiceError> {
        let req = u.spec.progress.delete.unwrap_or_default();
        if u.spec.progress.job_requested || u.spec.progress.job_created {
            if let Err(e) = self.delete_job_internal(&u.scope, &u.job_id(), req.force_delete_aws_job).await {
                if transient(&e) {
                    return Err(e);
                }
                let info = ErrorInfo {
                    code: e.code.to_string(),
                    message: format!("The job {} was not deleted: {} (delete again with forceDeleteAWSJob to delete an active job).", u.job_id(), e.message),
                };
                u.set_status(OtaStatus::DeleteFailed, Some(info), self.clock.now());
                return match self.save_ota(&u, None).await {
                    Ok(()) | Err(Stop::Gone) | Err(Stop::Failed(_)) => Ok(()),
                    Err(Stop::Retry(e)) => Err(e),
                };
            }
            u.spec.progress.job_created = false;
            u.spec.progress.job_requested = false;
        }
        let stream = u.spec.progress.generated_stream.clone().filter(|_| req.delete_stream && u.spec.progress.stream_created);
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                tx.delete_ota_update(&u.scope, &u.ota_update_id).await?;
                if let Some(s) = stream
                    && tx.ota_updates_using_stream(&u.scope, &s).await?.is_empty()
                {
                    tx.delete_stream(&u.scope, &s).await?;
                }
                Ok(())
            })
        })
        .await
    }
}
