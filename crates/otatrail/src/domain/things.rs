//! The IoT registry (`aws-api.md` §8): things, static thing groups and which things are in
//! which groups. Every resource lives in one [`Scope`] (account and region).
//!
//! Rules kept here, besides the model's constraints:
//! - thing and group versions start at 1 and grow by one on each update;
//! - CreateThing and CreateThingGroup are idempotent for identical configurations and answer
//!   `ResourceAlreadyExistsException` otherwise;
//! - an attribute payload replaces the attributes, or with `merge` adds to them; an empty
//!   value removes an attribute;
//! - a thing without a thing type has at most 3 attributes (50 with one), a group 50;
//! - a thing is in at most 10 groups, and in at most one group of a hierarchy (groups that
//!   share a root); a hierarchy is at most 7 groups deep;
//! - a group with child groups cannot be deleted; deleting a thing or a group removes its
//!   memberships; deleting what does not exist succeeds (as AWS documents).
//!
//! Thing types and billing groups are not modelled: a `thingTypeName` is kept as a label
//! (not checked against registered types), and a `billingGroupName` never names an existing
//! billing group.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::codes;
use super::streams::{Tag, validate_tags};
use super::time::Millis;
use super::validate;
use super::{Scope, ServiceError};
use crate::store::StateTx;

/// The CloudTrail resource types.
pub const THING_RESOURCE_TYPE: &str = "AWS::IoT::Thing";
pub const THING_GROUP_RESOURCE_TYPE: &str = "AWS::IoT::ThingGroup";

pub const MAX_UNTYPED_ATTRIBUTES: usize = 3;
pub const MAX_TYPED_ATTRIBUTES: usize = 50;
pub const MAX_GROUP_ATTRIBUTES: usize = 50;
pub const MAX_GROUPS_PER_THING: usize = 10;
/// Groups in a chain from a root group down to a leaf, the leaf included.
pub const MAX_GROUP_DEPTH: usize = 7;
pub const MAX_GROUP_DESCRIPTION: usize = 2028;
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 250;

/// `ThingName`, `ThingTypeName`, `ThingGroupName`, `BillingGroupName`: `[a-zA-Z0-9:_-]+`.
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9:_-]+$").unwrap());
const NAME_PATTERN: &str = "[a-zA-Z0-9:_-]+";
static ATTRIBUTE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.,@/:#-]+$").unwrap());
const ATTRIBUTE_NAME_PATTERN: &str = "[a-zA-Z0-9_.,@/:#-]+";
static ATTRIBUTE_VALUE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.,@/:#=\[\]-]*$").unwrap());
const ATTRIBUTE_VALUE_PATTERN: &str = "[a-zA-Z0-9_.,@/:#=\\[\\]-]*";
/// `[\p{Graph}\x20]*` as Java reads it: printable ASCII and space.
/// The model's `[\p{Graph}\x20]*` is a Java pattern, where `\p{Graph}` is the POSIX (ASCII)
/// class `[!-~]`: printable ASCII and the space.
static GROUP_DESCRIPTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\x20-\x7E]*$").unwrap());
const GROUP_DESCRIPTION_PATTERN: &str = "[\\p{Graph}\\x20]*";

/// Attribute name → value, in name order.
pub type Attributes = BTreeMap<String, String>;

/// `AttributePayload` as a caller sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributePayload {
    pub attributes: Option<BTreeMap<String, String>>,
    pub merge: Option<bool>,
}

/// The body members of CreateThing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingBody {
    pub thing_type_name: Option<String>,
    pub attribute_payload: Option<AttributePayload>,
    pub billing_group_name: Option<String>,
}

/// The body members of UpdateThing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateThingBody {
    pub thing_type_name: Option<String>,
    pub attribute_payload: Option<AttributePayload>,
    pub expected_version: Option<i64>,
    pub remove_thing_type: Option<bool>,
}

/// `ThingGroupProperties`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingGroupProperties {
    pub thing_group_description: Option<String>,
    pub attribute_payload: Option<AttributePayload>,
}

/// The body members of CreateThingGroup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateThingGroupBody {
    pub parent_group_name: Option<String>,
    pub thing_group_properties: Option<ThingGroupProperties>,
    pub tags: Option<Vec<Tag>>,
}

/// The body members of UpdateThingGroup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateThingGroupBody {
    pub thing_group_properties: Option<ThingGroupProperties>,
    pub expected_version: Option<i64>,
}

/// The body of AddThingToThingGroup and RemoveThingFromThingGroup: each side by name or ARN.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipBody {
    pub thing_group_name: Option<String>,
    pub thing_group_arn: Option<String>,
    pub thing_name: Option<String>,
    pub thing_arn: Option<String>,
    /// Only meaningful for dynamic groups, which otatrail does not have.
    pub override_dynamic_groups: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thing {
    pub scope: Scope,
    pub name: String,
    /// A UUID, fixed at creation.
    pub thing_id: String,
    pub thing_type_name: Option<String>,
    pub attributes: Attributes,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Thing {
    pub fn arn(&self) -> String {
        thing_arn(&self.scope, &self.name)
    }

    /// CreateThing's output.
    pub fn created(&self) -> Value {
        json!({ "thingName": self.name, "thingArn": self.arn(), "thingId": self.thing_id })
    }

    /// DescribeThing's output.
    pub fn description(&self) -> Value {
        let mut v = json!({
            "defaultClientId": self.name,
            "thingName": self.name,
            "thingId": self.thing_id,
            "thingArn": self.arn(),
        });
        if let Some(t) = &self.thing_type_name {
            v["thingTypeName"] = json!(t);
        }
        v["attributes"] = json!(self.attributes);
        v["version"] = json!(self.version);
        v
    }

    /// `ThingAttribute`, an item of ListThings.
    pub fn list_item(&self) -> Value {
        let mut v = json!({ "thingName": self.name });
        if let Some(t) = &self.thing_type_name {
            v["thingTypeName"] = json!(t);
        }
        v["thingArn"] = json!(self.arn());
        v["attributes"] = json!(self.attributes);
        v["version"] = json!(self.version);
        v
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThingGroup {
    pub scope: Scope,
    pub name: String,
    /// A UUID, fixed at creation.
    pub group_id: String,
    /// Fixed at creation.
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: Attributes,
    pub tags: Vec<Tag>,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl ThingGroup {
    pub fn arn(&self) -> String {
        thing_group_arn(&self.scope, &self.name)
    }

    /// CreateThingGroup's output.
    pub fn created(&self) -> Value {
        json!({ "thingGroupName": self.name, "thingGroupArn": self.arn(), "thingGroupId": self.group_id })
    }

    /// `ThingGroupProperties` as stored (`{}` when the group has none).
    pub fn properties(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = &self.description {
            v["thingGroupDescription"] = json!(d);
        }
        if !self.attributes.is_empty() {
            v["attributePayload"] = json!({ "attributes": self.attributes });
        }
        v
    }

    /// `GroupNameAndArn`.
    pub fn name_and_arn(&self) -> Value {
        group_name_and_arn(&self.scope, &self.name)
    }
}

/// A group with the names of its ancestors, root first (DescribeThingGroup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub group: ThingGroup,
    pub root_to_parent: Vec<String>,
}

impl GroupView {
    /// DescribeThingGroup's output; `status` is left out as AWS does for static groups.
    pub fn description(&self) -> Value {
        let g = &self.group;
        let mut meta = json!({});
        if let Some(p) = &g.parent {
            meta["parentGroupName"] = json!(p);
        }
        meta["rootToParentThingGroups"] =
            Value::Array(self.root_to_parent.iter().map(|n| group_name_and_arn(&g.scope, n)).collect());
        meta["creationDate"] = json!(g.created_at.as_epoch_seconds());
        json!({
            "thingGroupName": g.name,
            "thingGroupId": g.group_id,
            "thingGroupArn": g.arn(),
            "version": g.version,
            "thingGroupProperties": g.properties(),
            "thingGroupMetadata": meta,
        })
    }
}

pub fn thing_arn(scope: &Scope, name: &str) -> String {
    scope.arn("iot", &format!("thing/{name}"))
}

pub fn thing_group_arn(scope: &Scope, name: &str) -> String {
    scope.arn("iot", &format!("thinggroup/{name}"))
}

pub fn group_name_and_arn(scope: &Scope, name: &str) -> Value {
    json!({ "groupName": name, "groupArn": thing_group_arn(scope, name) })
}

/// What an IoT registry ARN names: `(region, account, resource name)`, if it is one of
/// `kind` (`thing` or `thinggroup`).
fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let partition = parts.next()?;
    if !partition.starts_with("aws") || parts.next()? != "iot" {
        return None;
    }
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let name = resource.strip_prefix(kind)?.strip_prefix('/')?;
    if region.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((region, account, name))
}

/// The name of the thing an ARN names in `scope`, or `None` for an ARN of another account or
/// region, or not a thing ARN at all.
pub fn thing_name_from_arn(scope: &Scope, arn: &str) -> Option<String> {
    parse_arn(arn, "thing").filter(|(r, a, _)| *r == scope.region && *a == scope.account_id).map(|(_, _, n)| n.to_string())
}

/// As [`thing_name_from_arn`], for thing groups.
pub fn thing_group_name_from_arn(scope: &Scope, arn: &str) -> Option<String> {
    parse_arn(arn, "thinggroup")
        .filter(|(r, a, _)| *r == scope.region && *a == scope.account_id)
        .map(|(_, _, n)| n.to_string())
}

// --------------------------------------------------------------------------------------
// Validation
// --------------------------------------------------------------------------------------

fn validate_name(field: &str, name: &str) -> Result<(), ServiceError> {
    validate::length(field, name, 1, 128)?;
    validate::pattern(field, name, &NAME, NAME_PATTERN)
}

pub fn validate_thing_name(name: &str) -> Result<(), ServiceError> {
    validate_name("thingName", name)
}

pub fn validate_thing_group_name(name: &str) -> Result<(), ServiceError> {
    validate_name("thingGroupName", name)
}

fn map_failure(field: &str, shown: &str, constraint: &str) -> ServiceError {
    let shown: String = shown.chars().take(256).collect();
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

/// Attribute names and values of a payload, as the model constrains them.
fn validate_attribute_map(field: &str, attrs: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    for (k, v) in attrs {
        if k.chars().count() > 128 || !ATTRIBUTE_NAME.is_match(k) {
            return Err(map_failure(
                field,
                k,
                &format!(
                    "Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must satisfy regular expression pattern: {ATTRIBUTE_NAME_PATTERN}]"
                ),
            ));
        }
        if v.chars().count() > 800 || !ATTRIBUTE_VALUE.is_match(v) {
            return Err(map_failure(
                field,
                v,
                &format!(
                    "Map value must satisfy constraint: [Member must have length less than or equal to 800, Member must satisfy regular expression pattern: {ATTRIBUTE_VALUE_PATTERN}]"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_group_description(field: &str, d: &str) -> Result<(), ServiceError> {
    validate::length(field, d, 0, MAX_GROUP_DESCRIPTION)?;
    validate::pattern(field, d, &GROUP_DESCRIPTION, GROUP_DESCRIPTION_PATTERN)
}

fn required(field: &str) -> ServiceError {
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}

/// The attributes a payload leaves: a replacement (`merge` absent or false) or a merge into
/// `current`; an empty value removes an attribute either way.
pub fn apply_payload(current: &Attributes, payload: &AttributePayload) -> Attributes {
    let Some(given) = &payload.attributes else { return current.clone() };
    let mut out = if payload.merge.unwrap_or(false) { current.clone() } else { Attributes::new() };
    for (k, v) in given {
        if v.is_empty() {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn check_thing_attribute_count(name: &str, attrs: &Attributes, typed: bool) -> Result<(), ServiceError> {
    let max = if typed { MAX_TYPED_ATTRIBUTES } else { MAX_UNTYPED_ATTRIBUTES };
    if attrs.len() > max {
        let what = if typed { "with a thing type" } else { "without a thing type" };
        return Err(ServiceError::invalid_request(format!(
            "Thing {name} would have {} attributes; a thing {what} can have at most {max}.",
            attrs.len()
        )));
    }
    Ok(())
}

fn check_group_attribute_count(name: &str, attrs: &Attributes) -> Result<(), ServiceError> {
    if attrs.len() > MAX_GROUP_ATTRIBUTES {
        return Err(ServiceError::invalid_request(format!(
            "Thing group {name} would have {} attributes; a thing group can have at most {MAX_GROUP_ATTRIBUTES}.",
            attrs.len()
        )));
    }
    Ok(())
}

fn thing_not_found(name: &str) -> ServiceError {
    ServiceError::not_found(format!("Thing {name} cannot be found."))
}

fn group_not_found(name: &str) -> ServiceError {
    ServiceError::not_found(format!("Thing group {name} cannot be found."))
}

fn version_conflict(what: &str, name: &str, actual: i64, expected: i64) -> ServiceError {
    ServiceError::new(
        codes::VERSION_CONFLICT,
        format!("The version of {what} {name} is {actual}, which does not match the expected version {expected}."),
    )
}

// --------------------------------------------------------------------------------------
// Things
// --------------------------------------------------------------------------------------

/// A CreateThing request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidCreateThing {
    pub name: String,
    pub thing_type_name: Option<String>,
    pub attributes: Attributes,
}

pub fn validate_create_thing(name: &str, body: &CreateThingBody) -> Result<ValidCreateThing, ServiceError> {
    validate_thing_name(name)?;
    if let Some(t) = &body.thing_type_name {
        validate_name("thingTypeName", t)?;
    }
    let payload = body.attribute_payload.clone().unwrap_or_default();
    if let Some(a) = &payload.attributes {
        validate_attribute_map("attributePayload.attributes", a)?;
    }
    if let Some(b) = &body.billing_group_name {
        validate_name("billingGroupName", b)?;
    }
    // `merge` means nothing on creation.
    let attributes = apply_payload(&Attributes::new(), &AttributePayload { merge: None, ..payload });
    check_thing_attribute_count(name, &attributes, body.thing_type_name.is_some())?;
    if let Some(b) = &body.billing_group_name {
        return Err(ServiceError::not_found(format!("Billing group {b} does not exist.")));
    }
    Ok(ValidCreateThing { name: name.to_string(), thing_type_name: body.thing_type_name.clone(), attributes })
}

/// Creates a thing, or returns the existing one when it has the same configuration.
pub async fn create_thing(
    tx: &mut dyn StateTx,
    scope: &Scope,
    req: ValidCreateThing,
    thing_id: String,
    now: Millis,
) -> Result<Thing, ServiceError> {
    if let Some(existing) = tx.get_thing(scope, &req.name).await? {
        if existing.thing_type_name == req.thing_type_name && existing.attributes == req.attributes {
            return Ok(existing);
        }
        return Err(ServiceError::new(
            codes::RESOURCE_ALREADY_EXISTS,
            format!("Thing {} already exists in account with different attributes", req.name),
        )
        .with_member("resourceId", existing.thing_id.clone())
        .with_member("resourceArn", existing.arn()));
    }
    let thing = Thing {
        scope: scope.clone(),
        name: req.name,
        thing_id,
        thing_type_name: req.thing_type_name,
        attributes: req.attributes,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    tx.insert_thing(&thing).await?;
    Ok(thing)
}

pub async fn describe_thing(tx: &mut dyn StateTx, scope: &Scope, name: &str) -> Result<Thing, ServiceError> {
    validate_thing_name(name)?;
    tx.get_thing(scope, name).await?.ok_or_else(|| thing_not_found(name))
}

/// Whether a thing exists (for other parts of otatrail, e.g. job targets).
pub async fn thing_exists(tx: &mut dyn StateTx, scope: &Scope, name: &str) -> Result<bool, ServiceError> {
    Ok(tx.get_thing(scope, name).await?.is_some())
}

/// An UpdateThing request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidUpdateThing {
    pub name: String,
    pub thing_type_name: Option<String>,
    pub remove_thing_type: bool,
    pub attribute_payload: Option<AttributePayload>,
    pub expected_version: Option<i64>,
}

pub fn validate_update_thing(name: &str, body: &UpdateThingBody) -> Result<ValidUpdateThing, ServiceError> {
    validate_thing_name(name)?;
    if let Some(t) = &body.thing_type_name {
        validate_name("thingTypeName", t)?;
    }
    if let Some(a) = body.attribute_payload.as_ref().and_then(|p| p.attributes.as_ref()) {
        validate_attribute_map("attributePayload.attributes", a)?;
    }
    let remove_thing_type = body.remove_thing_type.unwrap_or(false);
    if remove_thing_type && body.thing_type_name.is_some() {
        return Err(ServiceError::invalid_request(
            "You cannot specify a thingTypeName and set removeThingType to true in the same request.",
        ));
    }
    Ok(ValidUpdateThing {
        name: name.to_string(),
        thing_type_name: body.thing_type_name.clone(),
        remove_thing_type,
        attribute_payload: body.attribute_payload.clone(),
        expected_version: body.expected_version,
    })
}

pub async fn update_thing(tx: &mut dyn StateTx, scope: &Scope, req: ValidUpdateThing, now: Millis) -> Result<Thing, ServiceError> {
    let mut thing = tx.get_thing(scope, &req.name).await?.ok_or_else(|| thing_not_found(&req.name))?;
    if let Some(expected) = req.expected_version
        && expected != thing.version
    {
        return Err(version_conflict("thing", &thing.name, thing.version, expected));
    }
    if req.remove_thing_type {
        thing.thing_type_name = None;
    } else if let Some(t) = req.thing_type_name {
        thing.thing_type_name = Some(t);
    }
    if let Some(p) = &req.attribute_payload {
        thing.attributes = apply_payload(&thing.attributes, p);
    }
    check_thing_attribute_count(&thing.name, &thing.attributes, thing.thing_type_name.is_some())?;
    thing.version += 1;
    thing.updated_at = now;
    tx.update_thing(&thing).await?;
    Ok(thing)
}

/// Deletes a thing and its group memberships. A thing that does not exist is not an error
/// (DeleteThing "returns successfully … if you specify a thing that doesn't exist").
pub async fn delete_thing(
    tx: &mut dyn StateTx,
    scope: &Scope,
    name: &str,
    expected_version: Option<i64>,
) -> Result<Option<Thing>, ServiceError> {
    validate_thing_name(name)?;
    let Some(thing) = tx.get_thing(scope, name).await? else { return Ok(None) };
    if let Some(expected) = expected_version
        && expected != thing.version
    {
        return Err(version_conflict("thing", name, thing.version, expected));
    }
    tx.delete_thing(scope, name).await?;
    Ok(Some(thing))
}

/// ListThings' filters, as the store applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThingFilter {
    /// Things that have this attribute…
    pub attribute_name: Option<String>,
    /// …with this value (or, with `value_prefix`, a value starting with it).
    pub attribute_value: Option<String>,
    pub value_prefix: bool,
    pub thing_type_name: Option<String>,
}

pub struct ListThingsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    pub use_prefix_attribute_value: Option<bool>,
    pub thing_type_name: Option<String>,
}

pub struct ThingPage {
    pub things: Vec<Thing>,
    pub next_token: Option<String>,
}

/// Where a name-ordered listing resumes: the last name returned, tagged with the listing it
/// belongs to so that a token of one listing is refused by another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameCursor {
    pub kind: &'static str,
    pub after: String,
}

impl NameCursor {
    pub const THINGS: &'static str = "t1";
    pub const GROUPS: &'static str = "g1";
    pub const GROUP_THINGS: &'static str = "m1";
    pub const THING_GROUPS: &'static str = "f1";

    /// An opaque token.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.kind, self.after))
    }

    pub fn decode(kind: &'static str, token: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
        let (k, after) = raw.split_once(':')?;
        if k != kind || after.is_empty() {
            return None;
        }
        Some(Self { kind, after: after.to_string() })
    }
}

fn page_size(max_results: Option<i64>) -> Result<i64, ServiceError> {
    let limit = max_results.unwrap_or(DEFAULT_PAGE_SIZE);
    validate::int_range("maxResults", limit, 1, MAX_PAGE_SIZE)?;
    Ok(limit)
}

fn resume_after(kind: &'static str, token: Option<&str>) -> Result<Option<String>, ServiceError> {
    match token {
        None | Some("") => Ok(None),
        Some(t) => NameCursor::decode(kind, t)
            .map(|c| Some(c.after))
            .ok_or_else(|| ServiceError::invalid_request("The nextToken is not valid.")),
    }
}

/// Cuts a name-ordered list fetched with one item more than `limit` into a page and its token.
fn paginate<T>(kind: &'static str, mut items: Vec<T>, limit: i64, name: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        let token = items.last().map(|i| NameCursor { kind, after: name(i).to_string() }.encode());
        (items, token)
    } else {
        (items, None)
    }
}

pub async fn list_things(tx: &mut dyn StateTx, scope: &Scope, req: ListThingsRequest) -> Result<ThingPage, ServiceError> {
    let limit = page_size(req.max_results)?;
    if let Some(n) = &req.attribute_name {
        validate::length("attributeName", n, 0, 128)?;
        validate::pattern("attributeName", n, &ATTRIBUTE_NAME, ATTRIBUTE_NAME_PATTERN)?;
    }
    if let Some(v) = &req.attribute_value {
        validate::length("attributeValue", v, 0, 800)?;
        validate::pattern("attributeValue", v, &ATTRIBUTE_VALUE, ATTRIBUTE_VALUE_PATTERN)?;
        if req.attribute_name.is_none() {
            return Err(ServiceError::invalid_request("attributeValue can only be used together with attributeName."));
        }
    }
    if let Some(t) = &req.thing_type_name {
        validate_name("thingTypeName", t)?;
    }
    let after = resume_after(NameCursor::THINGS, req.next_token.as_deref())?;
    let filter = ThingFilter {
        attribute_name: req.attribute_name,
        attribute_value: req.attribute_value,
        value_prefix: req.use_prefix_attribute_value.unwrap_or(false),
        thing_type_name: req.thing_type_name,
    };
    let rows = tx.list_things(scope, &filter, after.as_deref(), limit + 1).await?;
    let (things, next_token) = paginate(NameCursor::THINGS, rows, limit, |t| &t.name);
    Ok(ThingPage { things, next_token })
}

// --------------------------------------------------------------------------------------
// Thing groups
// --------------------------------------------------------------------------------------

/// A CreateThingGroup request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidCreateGroup {
    pub name: String,
    pub parent: Option<String>,
    pub description: Option<String>,
    pub attributes: Attributes,
    pub tags: Vec<Tag>,
}

const PROPS_DESCRIPTION: &str = "thingGroupProperties.thingGroupDescription";
const PROPS_ATTRIBUTES: &str = "thingGroupProperties.attributePayload.attributes";

fn validate_properties(p: &ThingGroupProperties) -> Result<(), ServiceError> {
    if let Some(d) = &p.thing_group_description {
        validate_group_description(PROPS_DESCRIPTION, d)?;
    }
    if let Some(a) = p.attribute_payload.as_ref().and_then(|p| p.attributes.as_ref()) {
        validate_attribute_map(PROPS_ATTRIBUTES, a)?;
    }
    Ok(())
}

/// An empty description is no description.
fn normalize_description(d: &Option<String>) -> Option<String> {
    d.clone().filter(|d| !d.is_empty())
}

pub fn validate_create_group(name: &str, body: &CreateThingGroupBody) -> Result<ValidCreateGroup, ServiceError> {
    validate_thing_group_name(name)?;
    if let Some(p) = &body.parent_group_name {
        validate_name("parentGroupName", p)?;
    }
    let props = body.thing_group_properties.clone().unwrap_or_default();
    validate_properties(&props)?;
    let tags = body.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let payload = props.attribute_payload.clone().unwrap_or_default();
    let attributes = apply_payload(&Attributes::new(), &AttributePayload { merge: None, ..payload });
    check_group_attribute_count(name, &attributes)?;
    if body.parent_group_name.as_deref() == Some(name) {
        return Err(ServiceError::invalid_request(format!("Thing group {name} cannot be its own parent.")));
    }
    Ok(ValidCreateGroup {
        name: name.to_string(),
        parent: body.parent_group_name.clone(),
        description: normalize_description(&props.thing_group_description),
        attributes,
        tags,
    })
}

/// The names of a group's ancestors, root first.
async fn ancestors(tx: &mut dyn StateTx, group: &ThingGroup) -> Result<Vec<String>, ServiceError> {
    let mut chain = Vec::new();
    let mut next = group.parent.clone();
    while let Some(name) = next {
        if chain.len() >= MAX_GROUP_DEPTH || chain.contains(&name) {
            return Err(ServiceError::internal());
        }
        let parent = tx
            .get_thing_group(&group.scope, &name)
            .await?
            .ok_or_else(|| crate::store::StoreError::Corrupt(format!("thing group {} has a missing parent {name}", group.name)))?;
        next = parent.parent.clone();
        chain.push(name);
    }
    chain.reverse();
    Ok(chain)
}

/// Creates a group, or returns the existing one when its parent and properties are the same.
pub async fn create_thing_group(
    tx: &mut dyn StateTx,
    scope: &Scope,
    req: ValidCreateGroup,
    group_id: String,
    now: Millis,
) -> Result<ThingGroup, ServiceError> {
    if let Some(existing) = tx.get_thing_group(scope, &req.name).await? {
        if existing.parent == req.parent && existing.description == req.description && existing.attributes == req.attributes {
            return Ok(existing);
        }
        return Err(ServiceError::new(
            codes::RESOURCE_ALREADY_EXISTS,
            format!("Thing group {} already exists with different properties or parent.", req.name),
        )
        .with_member("resourceId", existing.group_id.clone())
        .with_member("resourceArn", existing.arn()));
    }
    if let Some(p) = &req.parent {
        let parent = tx
            .get_thing_group(scope, p)
            .await?
            .ok_or_else(|| ServiceError::invalid_request(format!("The parent thing group {p} does not exist.")))?;
        let depth = ancestors(tx, &parent).await?.len() + 2;
        if depth > MAX_GROUP_DEPTH {
            return Err(ServiceError::invalid_request(format!(
                "Thing group {} would be at depth {depth} of its hierarchy; a hierarchy can be at most {MAX_GROUP_DEPTH} groups deep.",
                req.name
            )));
        }
    }
    let group = ThingGroup {
        scope: scope.clone(),
        name: req.name,
        group_id,
        parent: req.parent,
        description: req.description,
        attributes: req.attributes,
        tags: req.tags,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    tx.insert_thing_group(&group).await?;
    Ok(group)
}

pub async fn describe_thing_group(tx: &mut dyn StateTx, scope: &Scope, name: &str) -> Result<GroupView, ServiceError> {
    validate_thing_group_name(name)?;
    let group = tx.get_thing_group(scope, name).await?.ok_or_else(|| group_not_found(name))?;
    let root_to_parent = ancestors(tx, &group).await?;
    Ok(GroupView { group, root_to_parent })
}

/// Whether a thing group exists (for other parts of otatrail, e.g. job targets).
pub async fn thing_group_exists(tx: &mut dyn StateTx, scope: &Scope, name: &str) -> Result<bool, ServiceError> {
    Ok(tx.get_thing_group(scope, name).await?.is_some())
}

/// An UpdateThingGroup request that passed every model constraint.
#[derive(Clone, Debug)]
pub struct ValidUpdateGroup {
    pub name: String,
    pub properties: ThingGroupProperties,
    pub expected_version: Option<i64>,
}

pub fn validate_update_group(name: &str, body: &UpdateThingGroupBody) -> Result<ValidUpdateGroup, ServiceError> {
    validate_thing_group_name(name)?;
    let properties = body.thing_group_properties.clone().ok_or_else(|| required("thingGroupProperties"))?;
    validate_properties(&properties)?;
    Ok(ValidUpdateGroup { name: name.to_string(), properties, expected_version: body.expected_version })
}

pub async fn update_thing_group(
    tx: &mut dyn StateTx,
    scope: &Scope,
    req: ValidUpdateGroup,
    now: Millis,
) -> Result<ThingGroup, ServiceError> {
    let mut group = tx.get_thing_group(scope, &req.name).await?.ok_or_else(|| group_not_found(&req.name))?;
    if let Some(expected) = req.expected_version
        && expected != group.version
    {
        return Err(version_conflict("thing group", &group.name, group.version, expected));
    }
    if req.properties.thing_group_description.is_some() {
        group.description = normalize_description(&req.properties.thing_group_description);
    }
    if let Some(p) = &req.properties.attribute_payload {
        group.attributes = apply_payload(&group.attributes, p);
    }
    check_group_attribute_count(&group.name, &group.attributes)?;
    group.version += 1;
    group.updated_at = now;
    tx.update_thing_group(&group).await?;
    Ok(group)
}

/// Deletes a group without child groups, and its memberships. A group that does not exist is
/// not an error (the operation has no ResourceNotFoundException).
pub async fn delete_thing_group(
    tx: &mut dyn StateTx,
    scope: &Scope,
    name: &str,
    expected_version: Option<i64>,
) -> Result<Option<ThingGroup>, ServiceError> {
    validate_thing_group_name(name)?;
    let Some(group) = tx.get_thing_group(scope, name).await? else { return Ok(None) };
    if let Some(expected) = expected_version
        && expected != group.version
    {
        return Err(version_conflict("thing group", name, group.version, expected));
    }
    if !tx.child_thing_groups(scope, Some(name)).await?.is_empty() {
        return Err(ServiceError::invalid_request(format!(
            "Cannot delete thing group : {name} when it still has child groups. Remove child groups first."
        )));
    }
    tx.delete_thing_group(scope, name).await?;
    Ok(Some(group))
}

pub struct ListGroupsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub parent_group: Option<String>,
    pub name_prefix_filter: Option<String>,
    /// Absent means true: every descendant, not only direct children.
    pub recursive: Option<bool>,
}

pub struct GroupPage {
    pub groups: Vec<String>,
    pub next_token: Option<String>,
}

/// ListThingGroups: the children of `parentGroup` (of no group: the root groups), with their
/// descendants unless `recursive` is false, by name.
pub async fn list_thing_groups(tx: &mut dyn StateTx, scope: &Scope, req: ListGroupsRequest) -> Result<GroupPage, ServiceError> {
    let limit = page_size(req.max_results)?;
    if let Some(p) = &req.parent_group {
        validate_name("parentGroup", p)?;
    }
    if let Some(p) = &req.name_prefix_filter {
        validate_name("namePrefixFilter", p)?;
    }
    let after = resume_after(NameCursor::GROUPS, req.next_token.as_deref())?;
    let all = tx.list_thing_groups(scope).await?;
    if let Some(p) = &req.parent_group
        && !all.iter().any(|g| &g.name == p)
    {
        return Err(group_not_found(p));
    }
    let mut children: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
    for g in &all {
        children.entry(g.parent.as_deref()).or_default().push(&g.name);
    }
    let mut found: BTreeSet<&str> = BTreeSet::new();
    let mut frontier: Vec<&str> = children.get(&req.parent_group.as_deref()).cloned().unwrap_or_default();
    while let Some(n) = frontier.pop() {
        if found.insert(n) && req.recursive.unwrap_or(true) {
            frontier.extend(children.get(&Some(n)).into_iter().flatten());
        }
    }
    let prefix = req.name_prefix_filter.as_deref().unwrap_or("");
    let names: Vec<String> = found
        .into_iter()
        .filter(|n| n.starts_with(prefix) && after.as_deref().is_none_or(|a| *n > a))
        .take(limit as usize + 1)
        .map(str::to_string)
        .collect();
    let (groups, next_token) = paginate(NameCursor::GROUPS, names, limit, |n| n);
    Ok(GroupPage { groups, next_token })
}

// --------------------------------------------------------------------------------------
// Membership
// --------------------------------------------------------------------------------------

/// A membership request with both sides resolved to names of the caller's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidMembership {
    pub group: String,
    pub thing: String,
}

/// One side of a membership request: a name, or an ARN that must name a resource of `scope`.
fn resolve_side(
    scope: &Scope,
    name: Option<&String>,
    arn: Option<&String>,
    (name_field, arn_field, kind): (&str, &str, &str),
    from_arn: fn(&Scope, &str) -> Option<String>,
) -> Result<String, ServiceError> {
    if let Some(n) = name {
        validate_name(name_field, n)?;
    }
    let from = match arn {
        None => None,
        Some(a) => {
            if parse_arn(a, kind).is_none() {
                return Err(ServiceError::invalid_request(format!("{arn_field} '{a}' is not a valid {kind} ARN.")));
            }
            // An ARN of another account or region names nothing the caller can see.
            Some(from_arn(scope, a).ok_or_else(|| {
                ServiceError::not_found(format!("{arn_field} {a} does not name a resource of account {} in {}.", scope.account_id, scope.region))
            })?)
        }
    };
    match (name, from) {
        (Some(n), Some(f)) if *n != f => Err(ServiceError::invalid_request(format!(
            "{name_field} '{n}' and {arn_field} '{}' name different resources.",
            arn.map(String::as_str).unwrap_or_default()
        ))),
        (Some(n), _) => Ok(n.clone()),
        (None, Some(f)) => Ok(f),
        (None, None) => Err(ServiceError::invalid_request(format!("Either {name_field} or {arn_field} must be specified."))),
    }
}

pub fn validate_membership(scope: &Scope, body: &MembershipBody) -> Result<ValidMembership, ServiceError> {
    let group = resolve_side(
        scope,
        body.thing_group_name.as_ref(),
        body.thing_group_arn.as_ref(),
        ("thingGroupName", "thingGroupArn", "thinggroup"),
        thing_group_name_from_arn,
    )?;
    let thing = resolve_side(
        scope,
        body.thing_name.as_ref(),
        body.thing_arn.as_ref(),
        ("thingName", "thingArn", "thing"),
        thing_name_from_arn,
    )?;
    Ok(ValidMembership { group, thing })
}

/// The root of a group's hierarchy.
async fn root_of(tx: &mut dyn StateTx, group: &ThingGroup) -> Result<String, ServiceError> {
    Ok(ancestors(tx, group).await?.into_iter().next().unwrap_or_else(|| group.name.clone()))
}

/// Adds a thing to a group; adding it again is not an error.
pub async fn add_thing_to_group(tx: &mut dyn StateTx, scope: &Scope, m: &ValidMembership, now: Millis) -> Result<(), ServiceError> {
    let group = tx.get_thing_group(scope, &m.group).await?.ok_or_else(|| group_not_found(&m.group))?;
    if tx.get_thing(scope, &m.thing).await?.is_none() {
        return Err(thing_not_found(&m.thing));
    }
    let current = tx.groups_of_thing(scope, &m.thing).await?;
    if current.contains(&m.group) {
        return Ok(());
    }
    if current.len() >= MAX_GROUPS_PER_THING {
        return Err(ServiceError::invalid_request(format!(
            "Thing {} is already in {MAX_GROUPS_PER_THING} thing groups, the most a thing can be in.",
            m.thing
        )));
    }
    let root = root_of(tx, &group).await?;
    for other in &current {
        let Some(g) = tx.get_thing_group(scope, other).await? else { continue };
        if root_of(tx, &g).await? == root {
            return Err(ServiceError::invalid_request(format!(
                "Thing {} is already in thing group {other} of the same hierarchy as {} (root {root}); a thing can be in only one group of a hierarchy.",
                m.thing, m.group
            )));
        }
    }
    tx.add_thing_to_group(scope, &m.group, &m.thing, now).await?;
    Ok(())
}

/// Removes a thing from a group; removing a thing that is not in the group is not an error.
pub async fn remove_thing_from_group(tx: &mut dyn StateTx, scope: &Scope, m: &ValidMembership) -> Result<(), ServiceError> {
    if tx.get_thing_group(scope, &m.group).await?.is_none() {
        return Err(group_not_found(&m.group));
    }
    if tx.get_thing(scope, &m.thing).await?.is_none() {
        return Err(thing_not_found(&m.thing));
    }
    tx.remove_thing_from_group(scope, &m.group, &m.thing).await?;
    Ok(())
}

pub struct ListGroupThingsRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
    pub recursive: bool,
}

pub struct NamePage {
    pub names: Vec<String>,
    pub next_token: Option<String>,
}

/// ListThingsInThingGroup: thing names, each once, by name.
pub async fn list_things_in_group(
    tx: &mut dyn StateTx,
    scope: &Scope,
    group: &str,
    req: ListGroupThingsRequest,
) -> Result<NamePage, ServiceError> {
    validate_thing_group_name(group)?;
    let limit = page_size(req.max_results)?;
    let after = resume_after(NameCursor::GROUP_THINGS, req.next_token.as_deref())?;
    if tx.get_thing_group(scope, group).await?.is_none() {
        return Err(group_not_found(group));
    }
    let rows = tx.things_in_group(scope, group, req.recursive, after.as_deref(), limit + 1).await?;
    let (names, next_token) = paginate(NameCursor::GROUP_THINGS, rows, limit, |n| n);
    Ok(NamePage { names, next_token })
}

/// Every thing of a group and of its descendant groups, each once, by name: the things a job
/// targeting the group reaches.
pub async fn things_in_group_recursive(tx: &mut dyn StateTx, scope: &Scope, group: &str) -> Result<Vec<String>, ServiceError> {
    const BATCH: i64 = 1000;
    if tx.get_thing_group(scope, group).await?.is_none() {
        return Err(group_not_found(group));
    }
    let mut out: Vec<String> = Vec::new();
    loop {
        let batch = tx.things_in_group(scope, group, true, out.last().map(String::as_str), BATCH).await?;
        let done = (batch.len() as i64) < BATCH;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// ListThingGroupsForThing: the groups a thing is directly in, by name.
pub async fn list_groups_for_thing(
    tx: &mut dyn StateTx,
    scope: &Scope,
    thing: &str,
    max_results: Option<i64>,
    next_token: Option<String>,
) -> Result<NamePage, ServiceError> {
    validate_thing_name(thing)?;
    let limit = page_size(max_results)?;
    let after = resume_after(NameCursor::THING_GROUPS, next_token.as_deref())?;
    if tx.get_thing(scope, thing).await?.is_none() {
        return Err(thing_not_found(thing));
    }
    let names: Vec<String> = tx
        .groups_of_thing(scope, thing)
        .await?
        .into_iter()
        .filter(|n| after.as_deref().is_none_or(|a| n.as_str() > a))
        .collect();
    let (names, next_token) = paginate(NameCursor::THING_GROUPS, names, limit, |n| n);
    Ok(NamePage { names, next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn create_body(pairs: &[(&str, &str)]) -> CreateThingBody {
        CreateThingBody {
            attribute_payload: Some(AttributePayload { attributes: Some(attrs(pairs)), merge: None }),
            ..Default::default()
        }
    }

    #[test]
    fn thing_names() {
        assert!(validate_thing_name("sensor:1_a-B").is_ok());
        assert!(validate_thing_name(&"a".repeat(128)).is_ok());
        let e = validate_thing_name(&"a".repeat(129)).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
        assert!(e.message.contains("at 'thingName'") && e.message.contains("length between 1 and 128"), "{}", e.message);
        let e = validate_thing_name("bad name").unwrap_err();
        assert!(e.message.contains("regular expression pattern: [a-zA-Z0-9:_-]+"), "{}", e.message);
        assert!(validate_thing_name("").is_err());
        assert!(validate_thing_name("a/b").is_err());
    }

    #[test]
    fn attribute_constraints() {
        assert!(validate_create_thing("t", &create_body(&[("a.b,c@d/e:f#g-h_1", "x=[y]")])).is_ok());
        let e = validate_create_thing("t", &create_body(&[("bad key", "v")])).unwrap_err();
        assert!(e.message.contains("at 'attributePayload.attributes'") && e.message.contains("Map keys"), "{}", e.message);
        let e = validate_create_thing("t", &create_body(&[("k", "bad value")])).unwrap_err();
        assert!(e.message.contains("Map value"), "{}", e.message);
        assert!(validate_create_thing("t", &create_body(&[(&"k".repeat(128), "v")])).is_ok());
        assert!(validate_create_thing("t", &create_body(&[(&"k".repeat(129), "v")])).is_err());
        assert!(validate_create_thing("t", &create_body(&[("k", &"v".repeat(800))])).is_ok());
        assert!(validate_create_thing("t", &create_body(&[("k", &"v".repeat(801))])).is_err());
    }

    #[test]
    fn attribute_counts_depend_on_the_thing_type() {
        let three = [("a", "1"), ("b", "2"), ("c", "3")];
        let four = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
        assert!(validate_create_thing("t", &create_body(&three)).is_ok());
        assert!(validate_create_thing("t", &create_body(&four)).is_err());
        let mut typed = create_body(&four);
        typed.thing_type_name = Some("sensor".into());
        assert!(validate_create_thing("t", &typed).is_ok());
        // Empty values are not attributes.
        let v = validate_create_thing("t", &create_body(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "")])).unwrap();
        assert_eq!(v.attributes, attrs(&[("a", "1"), ("b", "2"), ("c", "3")]));
    }

    #[test]
    fn billing_groups_never_exist() {
        let b = CreateThingBody { billing_group_name: Some("bg".into()), ..Default::default() };
        assert_eq!(validate_create_thing("t", &b).unwrap_err().code, codes::RESOURCE_NOT_FOUND);
        let b = CreateThingBody { billing_group_name: Some("bad bg".into()), ..Default::default() };
        assert_eq!(validate_create_thing("t", &b).unwrap_err().code, codes::INVALID_REQUEST);
    }

    #[test]
    fn payload_merge_and_replace() {
        let current: Attributes = attrs(&[("a", "1"), ("b", "2")]);
        let merge = AttributePayload { attributes: Some(attrs(&[("b", ""), ("c", "3")])), merge: Some(true) };
        assert_eq!(apply_payload(&current, &merge), attrs(&[("a", "1"), ("c", "3")]));
        let replace = AttributePayload { attributes: Some(attrs(&[("c", "3"), ("d", "")])), merge: None };
        assert_eq!(apply_payload(&current, &replace), attrs(&[("c", "3")]));
        let nothing = AttributePayload { attributes: None, merge: Some(true) };
        assert_eq!(apply_payload(&current, &nothing), current);
    }

    #[test]
    fn update_thing_rules() {
        let b = UpdateThingBody { thing_type_name: Some("x".into()), remove_thing_type: Some(true), ..Default::default() };
        assert_eq!(validate_update_thing("t", &b).unwrap_err().code, codes::INVALID_REQUEST);
        let b = UpdateThingBody { thing_type_name: Some("bad type".into()), ..Default::default() };
        assert!(validate_update_thing("t", &b).is_err());
        assert!(validate_update_thing("t", &UpdateThingBody::default()).is_ok());
    }

    #[test]
    fn group_properties() {
        let body = |d: &str| CreateThingGroupBody {
            thing_group_properties: Some(ThingGroupProperties { thing_group_description: Some(d.into()), attribute_payload: None }),
            ..Default::default()
        };
        assert!(validate_create_group("g", &body(&"x".repeat(2028))).is_ok());
        let e = validate_create_group("g", &body(&"x".repeat(2029))).unwrap_err();
        assert!(e.message.contains("thingGroupProperties.thingGroupDescription"), "{}", e.message);
        assert!(validate_create_group("g", &body("ok ~!@# description")).is_ok());
        assert!(validate_create_group("g", &body("tab\there")).is_err());
        assert!(validate_create_group("g", &body("non-ascii ü")).is_err());
        let own = CreateThingGroupBody { parent_group_name: Some("g".into()), ..Default::default() };
        assert!(validate_create_group("g", &own).is_err());
        let tags = CreateThingGroupBody {
            tags: Some((0..51).map(|i| Tag { key: format!("k{i}"), value: None }).collect()),
            ..Default::default()
        };
        assert!(validate_create_group("g", &tags).is_err());
        let e = validate_update_group("g", &UpdateThingGroupBody::default()).unwrap_err();
        assert!(e.message.contains("Value null at 'thingGroupProperties'"), "{}", e.message);
    }

    #[test]
    fn membership_sides() {
        let scope = Scope::new("123456789012", "us-east-1");
        let body = |g: Option<&str>, ga: Option<&str>, t: Option<&str>, ta: Option<&str>| MembershipBody {
            thing_group_name: g.map(Into::into),
            thing_group_arn: ga.map(Into::into),
            thing_name: t.map(Into::into),
            thing_arn: ta.map(Into::into),
            override_dynamic_groups: None,
        };
        let ok = validate_membership(&scope, &body(Some("g"), None, None, Some("arn:aws:iot:us-east-1:123456789012:thing/t"))).unwrap();
        assert_eq!(ok, ValidMembership { group: "g".into(), thing: "t".into() });
        let ok = validate_membership(&scope, &body(None, Some("arn:aws:iot:us-east-1:123456789012:thinggroup/g"), Some("t"), None)).unwrap();
        assert_eq!(ok.group, "g");
        assert_eq!(validate_membership(&scope, &body(None, None, Some("t"), None)).unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(validate_membership(&scope, &body(Some("g"), None, None, None)).unwrap_err().code, codes::INVALID_REQUEST);
        let other_account = body(Some("g"), None, None, Some("arn:aws:iot:us-east-1:999999999999:thing/t"));
        assert_eq!(validate_membership(&scope, &other_account).unwrap_err().code, codes::RESOURCE_NOT_FOUND);
        let garbage = body(Some("g"), None, None, Some("arn:aws:iot:us-east-1:123456789012:thinggroup/t"));
        assert_eq!(validate_membership(&scope, &garbage).unwrap_err().code, codes::INVALID_REQUEST);
        let mismatch = body(Some("g"), None, Some("u"), Some("arn:aws:iot:us-east-1:123456789012:thing/t"));
        assert_eq!(validate_membership(&scope, &mismatch).unwrap_err().code, codes::INVALID_REQUEST);
    }

    #[test]
    fn arns() {
        let scope = Scope::new("123456789012", "eu-west-1");
        assert_eq!(thing_arn(&scope, "t"), "arn:aws:iot:eu-west-1:123456789012:thing/t");
        assert_eq!(thing_group_arn(&scope, "g"), "arn:aws:iot:eu-west-1:123456789012:thinggroup/g");
        assert_eq!(thing_name_from_arn(&scope, "arn:aws:iot:eu-west-1:123456789012:thing/a:b"), Some("a:b".into()));
        assert_eq!(thing_name_from_arn(&scope, "arn:aws:iot:us-east-1:123456789012:thing/t"), None);
        assert_eq!(thing_group_name_from_arn(&scope, "arn:aws:iot:eu-west-1:123456789012:thinggroup/g"), Some("g".into()));
        assert_eq!(thing_group_name_from_arn(&scope, "arn:aws:iot:eu-west-1:123456789012:thing/g"), None);
    }

    #[test]
    fn cursors() {
        let c = NameCursor { kind: NameCursor::THINGS, after: "a:b".into() };
        assert_eq!(NameCursor::decode(NameCursor::THINGS, &c.encode()), Some(c.clone()));
        assert_eq!(NameCursor::decode(NameCursor::GROUPS, &c.encode()), None);
        assert_eq!(NameCursor::decode(NameCursor::THINGS, "garbage"), None);
        assert!(resume_after(NameCursor::THINGS, Some("garbage")).is_err());
        assert_eq!(resume_after(NameCursor::THINGS, Some("")).unwrap(), None);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(251)).is_err());
        assert_eq!(page_size(Some(250)).unwrap(), 250);
    }

    #[test]
    fn outputs() {
        let scope = Scope::new("123456789012", "us-east-1");
        let t = Thing {
            scope: scope.clone(),
            name: "t".into(),
            thing_id: "id".into(),
            thing_type_name: None,
            attributes: Attributes::new(),
            version: 1,
            created_at: Millis(1),
            updated_at: Millis(1),
        };
        let d = t.description();
        assert_eq!(d["defaultClientId"], "t");
        assert!(d.get("thingTypeName").is_none());
        assert_eq!(d["attributes"], json!({}));
        let g = ThingGroup {
            scope,
            name: "child".into(),
            group_id: "gid".into(),
            parent: Some("root".into()),
            description: None,
            attributes: Attributes::new(),
            tags: vec![],
            version: 1,
            created_at: Millis(1500),
            updated_at: Millis(1500),
        };
        let v = GroupView { group: g, root_to_parent: vec!["root".into()] }.description();
        assert_eq!(v["thingGroupProperties"], json!({}));
        assert_eq!(v["thingGroupMetadata"]["parentGroupName"], "root");
        assert_eq!(v["thingGroupMetadata"]["rootToParentThingGroups"][0]["groupArn"], "arn:aws:iot:us-east-1:123456789012:thinggroup/root");
        assert_eq!(v["thingGroupMetadata"]["creationDate"], json!(1.5));
        assert!(v.get("status").is_none());
    }
}
