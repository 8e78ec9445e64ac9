//! CloudTrail trails (`aws-api.md` §10): names, settings, event selectors, and which records a
//! trail delivers.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ServiceError;
use super::time::Millis;

pub const MAX_TRAILS_PER_REGION: usize = 5;
pub const MAX_PREFIX: usize = 200;

fn err(code: &'static str, msg: impl Into<String>) -> ServiceError {
    ServiceError::new(code, msg)
}

/// `ReadWriteType`, `IncludeManagementEvents`, `DataResources`, `ExcludeManagementEventSources`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventSelector {
    #[serde(default = "all")]
    pub read_write_type: String,
    #[serde(default = "yes")]
    pub include_management_events: bool,
    #[serde(default)]
    pub data_resources: Vec<Value>,
    #[serde(default)]
    pub exclude_management_event_sources: Vec<String>,
}

fn all() -> String {
    "All".into()
}

fn yes() -> bool {
    true
}

impl Default for EventSelector {
    fn default() -> Self {
        Self { read_write_type: all(), include_management_events: true, data_resources: vec![], exclude_management_event_sources: vec![] }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldSelector {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_starts_with: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ends_with: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdvancedEventSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub field_selectors: Vec<FieldSelector>,
}

/// What a selector sees of a record.
pub struct RecordFacts<'a> {
    pub event_name: &'a str,
    pub event_source: &'a str,
    pub read_only: bool,
}

impl FieldSelector {
    fn value<'a>(&self, r: &'a RecordFacts<'a>) -> Option<String> {
        Some(match self.field.as_str() {
            "eventName" => r.event_name.to_string(),
            "eventSource" => r.event_source.to_string(),
            "readOnly" => r.read_only.to_string(),
            "eventCategory" => "Management".to_string(),
            _ => return None,
        })
    }

    fn matches(&self, r: &RecordFacts<'_>) -> bool {
        let Some(v) = self.value(r) else { return false };
        let any = |l: &Option<Vec<String>>, f: &dyn Fn(&str) -> bool| l.as_ref().is_none_or(|l| l.iter().any(|x| f(x)));
        let none = |l: &Option<Vec<String>>, f: &dyn Fn(&str) -> bool| l.as_ref().is_none_or(|l| !l.iter().any(|x| f(x)));
        any(&self.equals, &|x| v == x)
            && any(&self.starts_with, &|x| v.starts_with(x))
            && any(&self.ends_with, &|x| v.ends_with(x))
            && none(&self.not_equals, &|x| v == x)
            && none(&self.not_starts_with, &|x| v.starts_with(x))
            && none(&self.not_ends_with, &|x| v.ends_with(x))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    pub account_id: String,
    pub home_region: String,
    pub name: String,
    pub s3_bucket: String,
    pub s3_key_prefix: Option<String>,
    pub include_global_service_events: bool,
    pub multi_region: bool,
    pub log_file_validation: bool,
    pub is_logging: bool,
    pub start_logging_time: Option<Millis>,
    pub stop_logging_time: Option<Millis>,
    pub event_selectors: Option<Vec<EventSelector>>,
    pub advanced_event_selectors: Option<Vec<AdvancedEventSelector>>,
    pub tags: Vec<(String, String)>,
    pub latest_delivery_time: Option<Millis>,
    pub latest_delivery_error: Option<String>,
    pub latest_delivery_attempt: Option<Millis>,
    /// Records up to this sequence number were made before the latest StartLogging and are
    /// never delivered by this trail.
    #[serde(default)]
    pub logging_since_seq: i64,
    /// Set while logging is stopped: records after it are not delivered.
    #[serde(default)]
    pub stopped_at_seq: Option<i64>,
    /// `(stop, start]` sequence ranges made while logging was stopped: never delivered.
    #[serde(default)]
    pub excluded: Vec<(i64, i64)>,
    #[serde(default)]
    pub latest_digest_time: Option<Millis>,
    #[serde(default)]
    pub latest_digest_error: Option<String>,
    pub created_at: Millis,
    /// Set on an organization trail: it logs every account of this organization.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The SNS topic told of each delivered log file.
    #[serde(default)]
    pub sns_topic_arn: Option<String>,
    #[serde(default)]
    pub latest_notification_time: Option<Millis>,
    #[serde(default)]
    pub latest_notification_error: Option<String>,
}

/// One stream of a trail's log files and digests: one account's records of one region. A
/// trail has a lane per region it covers; an organization trail one per member account and
/// region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub account: String,
    pub region: String,
}

impl Trail {
    /// What a lane's delivery cursor and digest chain are stored under: the region for the
    /// trail's own account, `<account>/<region>` for another account of its organization.
    pub fn lane_key(&self, lane: &Lane) -> String {
        if lane.account == self.account_id { lane.region.clone() } else { format!("{}/{}", lane.account, lane.region) }
    }

    /// `[<prefix>/]AWSLogs/[<o-id>/]<account>/`: where a lane's files go.
    pub fn lane_root(&self, lane: &Lane) -> String {
        let prefix = self.s3_key_prefix.as_deref().map(|p| format!("{p}/")).unwrap_or_default();
        let org = self.organization_id.as_deref().map(|o| format!("{o}/")).unwrap_or_default();
        format!("{prefix}AWSLogs/{org}{}/", lane.account)
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:cloudtrail:{}:{}:trail/{}", self.home_region, self.account_id, self.name)
    }

    /// Whether the record with this sequence number was made while the trail was logging.
    pub fn logged(&self, seq: i64) -> bool {
        seq > self.logging_since_seq
            && self.stopped_at_seq.is_none_or(|s| seq <= s)
            && !self.excluded.iter().any(|(stop, start)| seq > *stop && seq <= *start)
    }

    /// Whether the trail still has records to deliver up to `cursor` (logging, or stopped with
    /// records from before the stop not yet delivered).
    pub fn has_work(&self, cursor: i64) -> bool {
        self.is_logging || self.stopped_at_seq.is_some_and(|s| cursor < s)
    }

    /// Whether the trail delivers this record of `region`.
    pub fn selects(&self, region: &str, r: &RecordFacts<'_>) -> bool {
        if !self.multi_region && region != self.home_region {
            return false;
        }
        // IAM is a global service: its events reach only trails that include global events.
        if !self.include_global_service_events && r.event_source == "iam.amazonaws.com" {
            return false;
        }
        if let Some(adv) = &self.advanced_event_selectors {
            return adv.iter().any(|s| s.field_selectors.iter().all(|f| f.matches(r)));
        }
        let selectors = self.event_selectors.clone().unwrap_or_else(|| vec![EventSelector::default()]);
        selectors.iter().any(|s| {
            s.include_management_events
                && !s.exclude_management_event_sources.iter().any(|x| x == r.event_source)
                && match s.read_write_type.as_str() {
                    "ReadOnly" => r.read_only,
                    "WriteOnly" => !r.read_only,
                    _ => true,
                }
        })
    }
}

/// Trail name rules (`aws-api.md` §10).
pub fn validate_name(name: &str) -> Result<(), ServiceError> {
    let bad = |why: &str| err("InvalidTrailNameException", format!("Trail name {name} is invalid: {why}."));
    if !(3..=128).contains(&name.len()) {
        return Err(bad("it must have 3 to 128 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(bad("only ASCII letters, digits, periods, underscores and dashes are allowed"));
    }
    let b = name.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(bad("it must start and end with a letter or digit"));
    }
    if b.windows(2).any(|w| b"._-".contains(&w[0]) && b"._-".contains(&w[1])) {
        return Err(bad("it must not have adjacent periods, underscores or dashes"));
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Err(bad("it must not look like an IP address"));
    }
    Ok(())
}

/// A `Name` argument: a trail name, or a trail ARN `arn:aws:cloudtrail:<region>:<acct>:trail/<name>`
/// → (region, account, name).
pub fn parse_name_or_arn(s: &str) -> Result<(Option<String>, Option<String>, String), ServiceError> {
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = parts.len() == 5 && parts[1] == "cloudtrail" && parts[4].starts_with("trail/");
        if !ok {
            return Err(err("CloudTrailARNInvalidException", format!("{s} is not a valid trail ARN.")));
        }
        let name = parts[4]["trail/".len()..].to_string();
        validate_name(&name)?;
        return Ok((Some(parts[2].to_string()), Some(parts[3].to_string()), name));
    }
    if s.is_empty() {
        return Err(err("TrailNotProvidedException", "A trail name or ARN is required."));
    }
    validate_name(s)?;
    Ok((None, None, s.to_string()))
}

pub fn validate_prefix(p: &str) -> Result<(), ServiceError> {
    if p.len() > MAX_PREFIX {
        return Err(err("InvalidS3PrefixException", format!("S3KeyPrefix must have at most {MAX_PREFIX} characters.")));
    }
    Ok(())
}

pub fn validate_selectors(
    basic: &Option<Vec<EventSelector>>,
    advanced: &Option<Vec<AdvancedEventSelector>>,
) -> Result<(), ServiceError> {
    let bad = |m: &str| err("InvalidEventSelectorsException", m.to_string());
    match (basic, advanced) {
        (Some(_), Some(_)) => return Err(bad("Specify EventSelectors or AdvancedEventSelectors, not both.")),
        (None, None) => return Err(bad("Specify EventSelectors or AdvancedEventSelectors.")),
        _ => {}
    }
    if let Some(b) = basic {
        if b.len() > 5 {
            return Err(bad("A trail can have at most 5 event selectors."));
        }
        for s in b {
            if !["All", "ReadOnly", "WriteOnly"].contains(&s.read_write_type.as_str()) {
                return Err(bad("ReadWriteType must be ReadOnly, WriteOnly or All."));
            }
            if !s.data_resources.is_empty() {
                return Err(bad("Data events are not supported by otatrail: only management events are recorded."));
            }
        }
    }
    if let Some(a) = advanced {
        let values: usize = a
            .iter()
            .flat_map(|s| &s.field_selectors)
            .map(|f| {
                [&f.equals, &f.starts_with, &f.ends_with, &f.not_equals, &f.not_starts_with, &f.not_ends_with]
                    .iter()
                    .map(|l| l.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
            })
            .sum();
        if values > 500 {
            return Err(bad("Advanced event selectors may hold at most 500 values in all."));
        }
        for s in a {
            if s.field_selectors.is_empty() {
                return Err(bad("Each advanced event selector needs at least one field selector."));
            }
            for f in &s.field_selectors {
                match f.field.as_str() {
                    "eventName" | "eventSource" | "readOnly" => {}
                    "eventCategory" => {
                        if f.equals.as_ref().is_some_and(|v| v.iter().any(|x| x != "Management")) {
                            return Err(bad("Only the Management event category is supported."));
                        }
                    }
                    other => return Err(bad(&format!("Field {other} is not supported; use eventName, eventSource, readOnly or eventCategory."))),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["abc", "ota-audit", "a.b_c-d", "Trail1"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "a..b", "a-_b", "192.168.5.4", "with space", &"a".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_name_or_arn("arn:aws:cloudtrail:us-east-1:111122223333:trail/tr1").unwrap(),
            (Some("us-east-1".into()), Some("111122223333".into()), "tr1".into())
        );
        assert_eq!(parse_name_or_arn("arn:aws:s3:::x").unwrap_err().code, "CloudTrailARNInvalidException");
    }

    #[test]
    fn selectors() {
        let mut t = Trail {
            account_id: "1".into(),
            home_region: "us-east-1".into(),
            name: "t".into(),
            s3_bucket: "b".into(),
            s3_key_prefix: None,
            include_global_service_events: true,
            multi_region: false,
            log_file_validation: false,
            is_logging: true,
            start_logging_time: None,
            stop_logging_time: None,
            event_selectors: None,
            advanced_event_selectors: None,
            tags: vec![],
            latest_delivery_time: None,
            latest_delivery_error: None,
            latest_delivery_attempt: None,
            logging_since_seq: 0,
            stopped_at_seq: None,
            excluded: vec![],
            latest_digest_time: None,
            latest_digest_error: None,
            created_at: Millis(0),
            organization_id: None,
            sns_topic_arn: None,
            latest_notification_time: None,
            latest_notification_error: None,
        };
        let read = RecordFacts { event_name: "DescribeStream", event_source: "iot.amazonaws.com", read_only: true };
        let write = RecordFacts { event_name: "CreateStream", event_source: "iot.amazonaws.com", read_only: false };
        assert!(t.selects("us-east-1", &read) && t.selects("us-east-1", &write));
        assert!(!t.selects("eu-west-1", &write));
        t.multi_region = true;
        assert!(t.selects("eu-west-1", &write));
        let iam = RecordFacts { event_name: "CreateUser", event_source: "iam.amazonaws.com", read_only: false };
        assert!(t.selects("us-east-1", &iam));
        t.include_global_service_events = false;
        assert!(!t.selects("us-east-1", &iam));
        t.event_selectors = Some(vec![EventSelector { read_write_type: "WriteOnly".into(), ..Default::default() }]);
        assert!(!t.selects("us-east-1", &read) && t.selects("us-east-1", &write));
        t.advanced_event_selectors = Some(vec![AdvancedEventSelector {
            name: None,
            field_selectors: vec![FieldSelector { field: "eventName".into(), starts_with: Some(vec!["Describe".into()]), ..Default::default() }],
        }]);
        assert!(t.selects("us-east-1", &read) && !t.selects("us-east-1", &write));
    }
}
