//! IAM and STS rules: name and value constraints, quotas, and the error codes IAM and STS use
//! (`ValidationError`, `NoSuchEntity`, `EntityAlreadyExists`, `DeleteConflict`,
//! `LimitExceeded`, `MalformedPolicyDocument`, `AccessDenied`).

use std::sync::LazyLock;

use regex::Regex;

use super::ServiceError;
use super::identity::IamTag;

pub const VALIDATION_ERROR: &str = "ValidationError";
pub const NO_SUCH_ENTITY: &str = "NoSuchEntity";
pub const ENTITY_ALREADY_EXISTS: &str = "EntityAlreadyExists";
pub const DELETE_CONFLICT: &str = "DeleteConflict";
pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
pub const ACCESS_DENIED: &str = "AccessDenied";

pub const MAX_ACCESS_KEYS_PER_USER: usize = 2;
pub const MAX_TAGS: usize = 50;

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\w+=,.@-]+$").unwrap());
static PATH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(/|/[\x21-\x7E]+/)$").unwrap());
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").unwrap());
static POLICY_CHARS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\u{0009}\u{000A}\u{000D}\u{0020}-\u{00FF}]+$").unwrap());
static DESCRIPTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\u{0009}\u{000A}\u{000D}\u{0020}-\u{007E}\u{00A1}-\u{00FF}]*$").unwrap());

pub fn validation(field: &str, value: &str, constraint: &str) -> ServiceError {
    let shown: String = value.chars().take(256).collect();
    ServiceError::new(
        VALIDATION_ERROR,
        format!("1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"),
    )
}

/// `[\w+=,.@-]+` with a length range, the rule of user, role, session and federated names.
pub fn check_name(field: &str, value: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(validation(field, value, &format!("Member must have length between {min} and {max}, inclusive")));
    }
    if !NAME.is_match(value) {
        return Err(validation(field, value, "Member must satisfy regular expression pattern: [\\w+=,.@-]+"));
    }
    Ok(())
}

pub fn check_path(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() || value.len() > 512 || !PATH.is_match(value) {
        return Err(validation(
            field,
            value,
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

pub fn check_policy_text(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() || value.len() > 131_072 || !POLICY_CHARS.is_match(value) {
        return Err(validation(
            field,
            "<policy document>",
            "Member must have length between 1 and 131072 and printable characters",
        ));
    }
    Ok(())
}

pub fn check_description(value: &str) -> Result<(), ServiceError> {
    if value.chars().count() > 1000 || !DESCRIPTION.is_match(value) {
        return Err(validation("description", value, "Member must have length less than or equal to 1000 and printable characters"));
    }
    Ok(())
}

pub fn check_tags(tags: &[IamTag]) -> Result<(), ServiceError> {
    if tags.len() > MAX_TAGS {
        return Err(ServiceError::new(LIMIT_EXCEEDED, format!("Cannot exceed quota for TagsPerEntity: {MAX_TAGS}.")));
    }
    for (i, t) in tags.iter().enumerate() {
        let n = i + 1;
        let key_len = t.key.chars().count();
        if !(1..=128).contains(&key_len) || !TAG.is_match(&t.key) {
            return Err(validation(&format!("tags.{n}.member.key"), &t.key, "Member must have length between 1 and 128 and match [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+"));
        }
        if t.value.chars().count() > 256 || !TAG.is_match(&t.value) {
            return Err(validation(&format!("tags.{n}.member.value"), &t.value, "Member must have length at most 256 and match [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*"));
        }
    }
    let mut keys: Vec<String> = tags.iter().map(|t| t.key.to_lowercase()).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(ServiceError::new("InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive."));
    }
    Ok(())
}

/// Adds or replaces tags by key (without regard to case), as TagUser and TagRole do.
pub fn merge_tags(existing: &mut Vec<IamTag>, new: &[IamTag]) -> Result<(), ServiceError> {
    check_tags(new)?;
    for t in new {
        match existing.iter_mut().find(|e| e.key.eq_ignore_ascii_case(&t.key)) {
            Some(e) => *e = t.clone(),
            None => existing.push(t.clone()),
        }
    }
    if existing.len() > MAX_TAGS {
        return Err(ServiceError::new(LIMIT_EXCEEDED, format!("Cannot exceed quota for TagsPerEntity: {MAX_TAGS}.")));
    }
    Ok(())
}

pub fn no_such_user(name: &str) -> ServiceError {
    ServiceError::new(NO_SUCH_ENTITY, format!("The user with name {name} cannot be found."))
}

pub fn no_such_role(name: &str) -> ServiceError {
    ServiceError::new(NO_SUCH_ENTITY, format!("The role with name {name} cannot be found."))
}

pub fn not_authorized(principal_arn: &str, action: &str, resource: &str) -> ServiceError {
    ServiceError::new(
        ACCESS_DENIED,
        format!("User: {principal_arn} is not authorized to perform: {action} on resource: {resource}"),
    )
}

/// `arn:aws:iam::<account>:role/<path…>/<name>` → (account, name).
pub fn parse_role_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((account.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_arns() {
        assert!(check_name("userName", "alice.b@x", 1, 64).is_ok());
        assert!(check_name("userName", "bad name", 1, 64).is_err());
        assert!(check_name("roleSessionName", "a", 2, 64).is_err());
        assert!(check_path("path", "/").is_ok());
        assert!(check_path("path", "/ota/fleet/").is_ok());
        assert!(check_path("path", "/no-trailing").is_err());
        assert_eq!(parse_role_arn("arn:aws:iam::111122223333:role/svc/ota"), Some(("111122223333".into(), "ota".into())));
        assert_eq!(parse_role_arn("arn:aws:iam::111122223333:user/alice"), None);
    }

    #[test]
    fn tags_merge_case_insensitively() {
        let mut t = vec![IamTag { key: "Team".into(), value: "a".into() }];
        merge_tags(&mut t, &[IamTag { key: "team".into(), value: "b".into() }]).unwrap();
        assert_eq!(t, vec![IamTag { key: "team".into(), value: "b".into() }]);
        let dup = [IamTag { key: "a".into(), value: "".into() }, IamTag { key: "A".into(), value: "".into() }];
        assert!(check_tags(&dup).is_err());
    }
}
