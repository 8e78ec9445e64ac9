//! Trail operations (CloudTrail json 1.1): trails per account and home region, multi-region
//! trails visible (as shadow trails) from every region, logging on and off, event selectors.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::buckets::Bucket;
use crate::domain::policy::{self, Caller};
use crate::domain::trails::{self, AdvancedEventSelector, EventSelector, Trail};
use crate::domain::{Principal, ServiceError};
use crate::store::{self, StateTx};

use super::App;
use super::audit::Call;

const TRAIL: &str = "AWS::CloudTrail::Trail";

fn not_found(name: &str) -> ServiceError {
    ServiceError::new("TrailNotFoundException", format!("Unknown trail: {name} for the account and region of the request."))
}

/// The settings CreateTrail and UpdateTrail take.
#[derive(Clone, Debug, Default)]
pub struct TrailSettings {
    pub s3_bucket: Option<String>,
    pub s3_key_prefix: Option<String>,
    pub include_global_service_events: Option<bool>,
    pub multi_region: Option<bool>,
    pub log_file_validation: Option<bool>,
    pub tags: Vec<(String, String)>,
}

/// Whether CloudTrail, delivering for `trail`, may write into `bucket` under the trail's
/// `AWSLogs/<account>/` prefix: the bucket's own account, or a bucket policy granting
/// `cloudtrail.amazonaws.com` `s3:PutObject` there (with its `aws:SourceArn`/`aws:SourceAccount`).
pub fn may_deliver(bucket: &Bucket, trail: &Trail) -> bool {
    if bucket.account_id == trail.account_id {
        return true;
    }
    let Some(doc) = bucket.policy.as_deref() else { return false };
    let Ok(p) = policy::parse(doc, false) else { return false };
    let prefix = trail.s3_key_prefix.as_deref().map(|p| format!("{p}/")).unwrap_or_default();
    let resource = format!("arn:aws:s3:::{}/{prefix}AWSLogs/{}/CloudTrail/x", bucket.name, trail.account_id);
    // What CloudTrail's PutObject carries, for the conditions of the documented policy.
    let context = HashMap::from([
        ("aws:sourcearn".to_string(), trail.arn()),
        ("aws:sourceaccount".to_string(), trail.account_id.clone()),
        ("s3:x-amz-acl".to_string(), "bucket-owner-full-control".to_string()),
    ]);
    p.allows(&Caller::Service("cloudtrail.amazonaws.com"), "s3:PutObject", Some(&resource), &context)
}

async fn check_bucket(tx: &mut dyn StateTx, trail: &Trail) -> Result<(), ServiceError> {
    let bucket = tx.get_bucket(&trail.s3_bucket).await?.ok_or_else(|| {
        ServiceError::new("S3BucketDoesNotExistException", format!("S3 bucket {} does not exist.", trail.s3_bucket))
    })?;
    if !may_deliver(&bucket, trail) {
        return Err(ServiceError::new(
            "InsufficientS3BucketPolicyException",
            format!("Incorrect S3 bucket policy is detected for bucket: {}", trail.s3_bucket),
        ));
    }
    Ok(())
}

/// Finds the trail a `Name` argument means for `who` in `region`: the region's own trail, or
/// a multi-region trail of another home region (a shadow trail). Returns it and whether it is
/// a shadow.
async fn resolve(tx: &mut dyn StateTx, who: &Principal, region: &str, name_or_arn: &str) -> Result<(Trail, bool), ServiceError> {
    let (arn_region, arn_account, name) = trails::parse_name_or_arn(name_or_arn)?;
    if arn_account.as_deref().is_some_and(|a| a != who.account_id) {
        return Err(not_found(name_or_arn));
    }
    let home = arn_region.unwrap_or_else(|| region.to_string());
    if let Some(t) = tx.get_trail(&who.account_id, &home, &name).await? {
        if t.home_region == region || t.multi_region {
            return Ok((t.clone(), t.home_region != region));
        }
        return Err(not_found(name_or_arn));
    }
    for t in tx.list_trails(&who.account_id).await? {
        if t.name == name && t.multi_region {
            return Ok((t, true));
        }
    }
    Err(not_found(name_or_arn))
}

fn home_region_only(t: &Trail, shadow: bool) -> Result<(), ServiceError> {
    if shadow {
        return Err(ServiceError::new(
            "InvalidHomeRegionException",
            format!("This operation must be called from the trail's home region, {}.", t.home_region),
        ));
    }
    Ok(())
}

impl App {
    pub async fn create_trail(&self, call: &Arc<Call>, name: &str, s: TrailSettings) -> Result<Trail, ServiceError> {
        trails::validate_name(name)?;
        let bucket = s.s3_bucket.clone().ok_or_else(|| ServiceError::new("InvalidParameterException", "S3BucketName is required."))?;
        if let Some(p) = &s.s3_key_prefix {
            trails::validate_prefix(p)?;
        }
        let scope = call.scope();
        let trail = Trail {
            account_id: scope.account_id.clone(),
            home_region: scope.region.clone(),
            name: name.to_string(),
            s3_bucket: bucket,
            s3_key_prefix: s.s3_key_prefix.filter(|p| !p.is_empty()).map(|p| p.trim_end_matches('/').to_string()),
            include_global_service_events: s.include_global_service_events.unwrap_or(true),
            multi_region: s.multi_region.unwrap_or(false),
            log_file_validation: s.log_file_validation.unwrap_or(false),
            is_logging: false,
            start_logging_time: None,
            stop_logging_time: None,
            event_selectors: None,
            advanced_event_selectors: None,
            tags: s.tags,
            latest_delivery_time: None,
            latest_delivery_error: None,
            latest_delivery_attempt: None,
            logging_since_seq: 0,
            stopped_at_seq: None,
            excluded: vec![],
            latest_digest_time: None,
            latest_digest_error: None,
            created_at: self.clock.now(),
        };
        let call = call.clone();
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_trail(&trail.account_id, &trail.home_region, &trail.name).await?.is_some() {
                    return Err(ServiceError::new("TrailAlreadyExistsException", format!("Trail {} already exists for customer: {}", trail.name, trail.account_id)));
                }
                let same_region = tx.list_trails(&trail.account_id).await?.into_iter().filter(|t| t.home_region == trail.home_region).count();
                if same_region >= trails::MAX_TRAILS_PER_REGION {
                    return Err(ServiceError::new("MaximumNumberOfTrailsExceededException", "A region can have at most 5 trails."));
                }
                check_bucket(tx, &trail).await?;
                tx.insert_trail(&trail).await?;
                call.record_success(tx, Some(trail_json(&trail)), vec![call.resource(trail.arn(), TRAIL)]).await?;
                Ok(trail)
            })
        })
        .await
    }

    pub async fn update_trail(&self, call: &Arc<Call>, name: &str, s: TrailSettings) -> Result<Trail, ServiceError> {
        if let Some(p) = &s.s3_key_prefix {
            trails::validate_prefix(p)?;
        }
        let (call, name) = (call.clone(), name.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &call.principal, &call.info.region, &name).await?;
                home_region_only(&t, shadow)?;
                if let Some(b) = s.s3_bucket {
                    t.s3_bucket = b;
                }
                if let Some(p) = s.s3_key_prefix {
                    t.s3_key_prefix = (!p.is_empty()).then(|| p.trim_end_matches('/').to_string());
                }
                if let Some(g) = s.include_global_service_events {
                    t.include_global_service_events = g;
                }
                if let Some(m) = s.multi_region {
                    t.multi_region = m;
                }
                if let Some(v) = s.log_file_validation {
                    t.log_file_validation = v;
                }
                check_bucket(tx, &t).await?;
                tx.update_trail(&t).await?;
                call.record_success(tx, Some(trail_json(&t)), vec![call.resource(t.arn(), TRAIL)]).await?;
                Ok(t)
            })
        })
        .await
    }

    pub async fn delete_trail(&self, call: &Arc<Call>, name: &str) -> Result<(), ServiceError> {
        let (call, name) = (call.clone(), name.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (t, shadow) = resolve(tx, &call.principal, &call.info.region, &name).await?;
                home_region_only(&t, shadow)?;
                tx.delete_trail(&t.account_id, &t.home_region, &t.name).await?;
                call.record_success(tx, None, vec![call.resource(t.arn(), TRAIL)]).await?;
                Ok(())
            })
        })
        .await
    }

    /// StartLogging (`on`) or StopLogging.
    pub async fn set_logging(&self, call: &Arc<Call>, name: &str, on: bool) -> Result<(), ServiceError> {
        let (call, name, now) = (call.clone(), name.to_string(), self.clock.now());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &call.principal, &call.info.region, &name).await?;
                home_region_only(&t, shadow)?;
                // The Start/StopLogging record itself is logged: StartLogging's is the first
                // delivered after a start, StopLogging's the last before a stop.
                let before = tx.last_event_seq().await?;
                call.record_success(tx, None, vec![call.resource(t.arn(), TRAIL)]).await?;
                let after = tx.last_event_seq().await?;
                if on && !t.is_logging {
                    // Records made while logging was off are never delivered; those made
                    // before the stop still are.
                    match t.stopped_at_seq.take() {
                        Some(stop) => t.excluded.push((stop, before)),
                        None => t.logging_since_seq = before,
                    }
                    t.start_logging_time = Some(now);
                } else if !on && t.is_logging {
                    t.stopped_at_seq = Some(after);
                    t.stop_logging_time = Some(now);
                }
                t.is_logging = on;
                tx.update_trail(&t).await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn put_event_selectors(
        &self,
        call: &Arc<Call>,
        name: &str,
        basic: Option<Vec<EventSelector>>,
        advanced: Option<Vec<AdvancedEventSelector>>,
    ) -> Result<Trail, ServiceError> {
        trails::validate_selectors(&basic, &advanced)?;
        let (call, name) = (call.clone(), name.to_string());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &call.principal, &call.info.region, &name).await?;
                home_region_only(&t, shadow)?;
                t.event_selectors = basic;
                t.advanced_event_selectors = advanced;
                tx.update_trail(&t).await?;
                call.record_success(tx, None, vec![call.resource(t.arn(), TRAIL)]).await?;
                Ok(t)
            })
        })
        .await
    }

    /// A trail by name or ARN, and whether it is a shadow of another region's trail.
    pub async fn get_trail(&self, call: &Arc<Call>, name: &str) -> Result<(Trail, bool), ServiceError> {
        let (who, region, name) = (call.principal.clone(), call.info.region.clone(), name.to_string());
        store::read(&*self.store, move |tx| Box::pin(async move { resolve(tx, &who, &region, &name).await })).await
    }

    /// The trails a region sees: its own, and multi-region trails of other home regions.
    pub async fn trails_in_region(&self, call: &Arc<Call>) -> Result<Vec<(Trail, bool)>, ServiceError> {
        let (acct, region) = (call.principal.account_id.clone(), call.info.region.clone());
        let all = store::read::<_, ServiceError, _>(&*self.store, move |tx| Box::pin(async move { Ok(tx.list_trails(&acct).await?) })).await?;
        Ok(all
            .into_iter()
            .filter(|t| t.home_region == region || t.multi_region)
            .map(|t| {
                let shadow = t.home_region != region;
                (t, shadow)
            })
            .collect())
    }
}

/// A trail as CreateTrail/UpdateTrail return it, also its record's responseElements.
pub fn trail_json(t: &Trail) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Name": t.name,
        "S3BucketName": t.s3_bucket,
        "IncludeGlobalServiceEvents": t.include_global_service_events,
        "IsMultiRegionTrail": t.multi_region,
        "TrailARN": t.arn(),
        "LogFileValidationEnabled": t.log_file_validation,
        "IsOrganizationTrail": false,
    });
    if let Some(p) = &t.s3_key_prefix {
        v["S3KeyPrefix"] = serde_json::json!(p);
    }
    v
}
