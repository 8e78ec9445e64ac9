//! Trail operations (CloudTrail json 1.1): trails per account and home region, multi-region
//! trails visible (as shadow trails) from every region, logging on and off, event selectors.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::buckets::Bucket;
use crate::domain::policy::{self, Caller};
use crate::domain::organization::{self, Organization};
use crate::domain::sns::codes as sns_codes;
use crate::objects::external_bucket::ExternalBuckets;
use crate::domain::trails::{self, AdvancedEventSelector, EventSelector, Trail};
use crate::domain::{Principal, ServiceError};
use crate::store::{self, StateTx};

use super::App;
use super::audit::Call;

const TRAIL: &str = "AWS::CloudTrail::Trail";
const CLOUDTRAIL: &str = "cloudtrail.amazonaws.com";

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
    pub is_organization_trail: Option<bool>,
    /// `SnsTopicName`: a topic name or ARN; empty removes the topic.
    pub sns_topic: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// Whether CloudTrail, delivering for `trail`, may write `key` into `bucket`: the bucket's own
/// account, or a bucket policy granting `cloudtrail.amazonaws.com` `s3:PutObject` there (with
/// its `aws:SourceArn`/`aws:SourceAccount`), as AWS documents for receiving log files from
/// other accounts and from an organization.
pub fn may_deliver(bucket: &Bucket, trail: &Trail, key: &str) -> bool {
    if bucket.account_id == trail.account_id {
        return true;
    }
    let Some(doc) = bucket.policy.as_deref() else { return false };
    let Ok(p) = policy::parse(doc, false) else { return false };
    let resource = format!("arn:aws:s3:::{}/{key}", bucket.name);
    // What CloudTrail's PutObject carries, for the conditions of the documented policy.
    let context = HashMap::from([
        ("aws:sourcearn".to_string(), trail.arn()),
        ("aws:sourceaccount".to_string(), trail.account_id.clone()),
        ("s3:x-amz-acl".to_string(), "bucket-owner-full-control".to_string()),
    ]);
    p.allows(&Caller::Service("cloudtrail.amazonaws.com"), "s3:PutObject", Some(&resource), &context)
}

async fn check_bucket(tx: &mut dyn StateTx, external: &ExternalBuckets, trail: &Trail) -> Result<(), ServiceError> {
    if external.contains(&trail.s3_bucket) {
        return Ok(()); // declared by the operator, for this server to write into
    }
    let bucket = tx.get_bucket(&trail.s3_bucket).await?.ok_or_else(|| {
        ServiceError::new("S3BucketDoesNotExistException", format!("S3 bucket {} does not exist.", trail.s3_bucket))
    })?;
    // A key like the trail's own files: its account's lane.
    let own = trails::Lane { account: trail.account_id.clone(), region: trail.home_region.clone() };
    let sample = format!("{}CloudTrail/{}/x", trail.lane_root(&own), own.region);
    if !may_deliver(&bucket, trail, &sample) {
        return Err(ServiceError::new(
            "InsufficientS3BucketPolicyException",
            format!("Incorrect S3 bucket policy is detected for bucket: {}", trail.s3_bucket),
        ));
    }
    Ok(())
}

/// The organization trails `account` sees as a member (not those it owns).
async fn member_org_trails(tx: &mut dyn StateTx, orgs: &[Organization], account: &str) -> Result<Vec<Trail>, ServiceError> {
    let Some(org) = organization::of_account(orgs, account).filter(|o| o.management_account != account) else { return Ok(vec![]) };
    Ok(tx.list_trails(&org.management_account).await?.into_iter().filter(|t| t.organization_id.as_deref() == Some(org.id.as_str())).collect())
}

/// Finds the trail a `Name` argument means for `who` in `region`: the region's own trail, or
/// a multi-region trail of another home region (a shadow trail), or an organization trail of
/// the account's organization (a shadow in the member account). Returns it and whether it is
/// a shadow.
async fn resolve(
    tx: &mut dyn StateTx,
    orgs: &[Organization],
    who: &Principal,
    region: &str,
    name_or_arn: &str,
) -> Result<(Trail, bool), ServiceError> {
    let (arn_region, arn_account, name) = trails::parse_name_or_arn(name_or_arn)?;
    if let Some(a) = arn_account.as_deref().filter(|a| *a != who.account_id) {
        for t in member_org_trails(tx, orgs, &who.account_id).await? {
            if t.account_id == a && t.name == name && (t.home_region == region || t.multi_region) {
                return Ok((t, true));
            }
        }
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

/// Changing a trail is for its owner: a member account sees its organization's trail but
/// cannot change it.
fn owner_only(t: &Trail, who: &Principal) -> Result<(), ServiceError> {
    if t.account_id != who.account_id {
        return Err(ServiceError::new(
            "NotOrganizationMasterAccountException",
            format!(
                "The trail {} is an organization trail of the management account {}; only that account can change it.",
                t.arn(),
                t.account_id
            ),
        ));
    }
    Ok(())
}

/// Checks that `account` may make (`on`) an organization trail, and returns the organization.
fn organization_for(orgs: &[Organization], account: &str) -> Result<String, ServiceError> {
    let org = organization::of_account(orgs, account).ok_or_else(|| {
        ServiceError::new("OrganizationsNotInUseException", format!("Account {account} is not a member of an organization."))
    })?;
    if org.management_account != account {
        return Err(ServiceError::new(
            "NotOrganizationMasterAccountException",
            format!("Account {account} is not the management account of organization {}; only {} can create organization trails.", org.id, org.management_account),
        ));
    }
    Ok(org.id.clone())
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
    /// The topic a trail's `SnsTopicName` names, checked as CloudTrail checks it: it exists
    /// and its policy lets `cloudtrail.amazonaws.com` publish for this trail. `None` clears it.
    async fn trail_topic(&self, account: &str, region: &str, trail_arn: &str, name: &str) -> Result<Option<String>, ServiceError> {
        if name.is_empty() {
            return Ok(None);
        }
        // A missing or malformed topic is the caller's mistake; anything else (the store
        // failing) stays what it is.
        let topic = self.sns_resolve_topic(account, region, name).await.map_err(|e| match e.code {
            sns_codes::NOT_FOUND | sns_codes::INVALID_PARAMETER => {
                ServiceError::new("InvalidSnsTopicNameException", format!("SNS topic {name} is invalid or does not exist: {}", e.message))
            }
            _ => e,
        })?;
        let arn = topic.arn();
        if !self.sns_topic_allows_service_from(&arn, CLOUDTRAIL, Some(account), Some(trail_arn)).await? {
            return Err(ServiceError::new("InsufficientSnsTopicPolicyException", format!("Incorrect SNS topic policy is detected for topic: {arn}")));
        }
        Ok(Some(arn))
    }

    pub async fn create_trail(&self, call: &Arc<Call>, name: &str, s: TrailSettings) -> Result<Trail, ServiceError> {
        trails::validate_name(name)?;
        let bucket = s.s3_bucket.clone().ok_or_else(|| ServiceError::new("InvalidParameterException", "S3BucketName is required."))?;
        if let Some(p) = &s.s3_key_prefix {
            trails::validate_prefix(p)?;
        }
        let scope = call.scope();
        let arn = format!("arn:aws:cloudtrail:{}:{}:trail/{name}", scope.region, scope.account_id);
        let sns_topic_arn = match &s.sns_topic {
            Some(topic) => self.trail_topic(&scope.account_id, &scope.region, &arn, topic).await?,
            None => None,
        };
        let organization_id = match s.is_organization_trail {
            Some(true) => Some(organization_for(&self.organizations, &scope.account_id)?),
            _ => None,
        };
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
            organization_id,
            sns_topic_arn,
            latest_notification_time: None,
            latest_notification_error: None,
        };
        let (call, external) = (call.clone(), self.external_buckets.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                if tx.get_trail(&trail.account_id, &trail.home_region, &trail.name).await?.is_some() {
                    return Err(ServiceError::new("TrailAlreadyExistsException", format!("Trail {} already exists for customer: {}", trail.name, trail.account_id)));
                }
                let same_region = tx.list_trails(&trail.account_id).await?.into_iter().filter(|t| t.home_region == trail.home_region).count();
                if same_region >= trails::MAX_TRAILS_PER_REGION {
                    return Err(ServiceError::new("MaximumNumberOfTrailsExceededException", "A region can have at most 5 trails."));
                }
                check_bucket(tx, &external, &trail).await?;
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
        // The topic is checked before the transaction (it reads other state); the trail's ARN
        // for its policy comes from the name or ARN given.
        let topic = match &s.sns_topic {
            Some(t) => {
                let (arn_region, _, trail_name) = trails::parse_name_or_arn(name)?;
                let region = arn_region.unwrap_or_else(|| call.info.region.clone());
                let arn = format!("arn:aws:cloudtrail:{region}:{}:trail/{trail_name}", call.principal.account_id);
                Some(self.trail_topic(&call.principal.account_id, &call.info.region, &arn, t).await?)
            }
            None => None,
        };
        let (call, name, orgs, external) = (call.clone(), name.to_string(), self.organizations.clone(), self.external_buckets.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &orgs, &call.principal, &call.info.region, &name).await?;
                owner_only(&t, &call.principal)?;
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
                if let Some(topic) = topic {
                    t.sns_topic_arn = topic;
                }
                match s.is_organization_trail {
                    Some(true) if t.organization_id.is_none() => t.organization_id = Some(organization_for(&orgs, &t.account_id)?),
                    Some(false) => t.organization_id = None,
                    _ => {}
                }
                check_bucket(tx, &external, &t).await?;
                tx.update_trail(&t).await?;
                call.record_success(tx, Some(trail_json(&t)), vec![call.resource(t.arn(), TRAIL)]).await?;
                Ok(t)
            })
        })
        .await
    }

    pub async fn delete_trail(&self, call: &Arc<Call>, name: &str) -> Result<(), ServiceError> {
        let (call, name, orgs) = (call.clone(), name.to_string(), self.organizations.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (t, shadow) = resolve(tx, &orgs, &call.principal, &call.info.region, &name).await?;
                owner_only(&t, &call.principal)?;
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
        let (call, name, now, orgs) = (call.clone(), name.to_string(), self.clock.now(), self.organizations.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &orgs, &call.principal, &call.info.region, &name).await?;
                owner_only(&t, &call.principal)?;
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
        let (call, name, orgs) = (call.clone(), name.to_string(), self.organizations.clone());
        store::write(&*self.store, move |tx| {
            Box::pin(async move {
                let (mut t, shadow) = resolve(tx, &orgs, &call.principal, &call.info.region, &name).await?;
                owner_only(&t, &call.principal)?;
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
        let (who, region, name, orgs) = (call.principal.clone(), call.info.region.clone(), name.to_string(), self.organizations.clone());
        store::read(&*self.store, move |tx| Box::pin(async move { resolve(tx, &orgs, &who, &region, &name).await })).await
    }

    /// The trails a region sees: its own, and multi-region trails of other home regions.
    pub async fn trails_in_region(&self, call: &Arc<Call>) -> Result<Vec<(Trail, bool)>, ServiceError> {
        let (acct, region, orgs) = (call.principal.account_id.clone(), call.info.region.clone(), self.organizations.clone());
        let (own, theirs) = store::read::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move { Ok((tx.list_trails(&acct).await?, member_org_trails(tx, &orgs, &acct).await?)) })
        })
        .await?;
        let own = own.into_iter().filter(|t| t.home_region == region || t.multi_region).map(|t| {
            let shadow = t.home_region != region;
            (t, shadow)
        });
        // A member account sees its organization's trails as shadows.
        let theirs = theirs.into_iter().filter(|t| t.home_region == region || t.multi_region).map(|t| (t, true));
        Ok(own.chain(theirs).collect())
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
        "IsOrganizationTrail": t.organization_id.is_some(),
    });
    if let Some(p) = &t.s3_key_prefix {
        v["S3KeyPrefix"] = serde_json::json!(p);
    }
    if let Some(arn) = &t.sns_topic_arn {
        v["SnsTopicName"] = serde_json::json!(arn.rsplit(':').next().unwrap_or(arn));
        v["SnsTopicARN"] = serde_json::json!(arn);
    }
    v
}
