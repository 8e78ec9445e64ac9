//! Constraint checks from the service models, with AWS's validation message wording:
//! `1 validation error detected: Value '…' at '…' failed to satisfy constraint: …`.

use std::sync::LazyLock;

use regex::Regex;

use super::ServiceError;

fn fail(field: &str, value: &str, constraint: &str) -> ServiceError {
    let shown: String = value.chars().take(256).collect();
    ServiceError::invalid_request(format!(
        "1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

/// Length in characters (as the models count), inclusive bounds.
pub fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(fail(
            field,
            value,
            &format!("Member must have length between {min} and {max}, inclusive"),
        ));
    }
    Ok(())
}

pub fn pattern(field: &str, value: &str, re: &Regex, shown: &str) -> Result<(), ServiceError> {
    if !re.is_match(value) {
        return Err(fail(field, value, &format!("Member must satisfy regular expression pattern: {shown}")));
    }
    Ok(())
}

pub fn int_range(field: &str, value: i64, min: i64, max: i64) -> Result<(), ServiceError> {
    if value < min || value > max {
        return Err(fail(
            field,
            &value.to_string(),
            &format!("Member must have value between {min} and {max}, inclusive"),
        ));
    }
    Ok(())
}

pub fn list_len(field: &str, len: usize, min: usize, max: usize) -> Result<(), ServiceError> {
    if len < min || len > max {
        return Err(ServiceError::invalid_request(format!(
            "1 validation error detected: Value with {len} elements at '{field}' failed to satisfy constraint: Member must have length between {min} and {max}, inclusive"
        )));
    }
    Ok(())
}

/// `[^\p{C}]+`: non-empty, no control, format, private-use or unassigned characters.
pub static NO_CONTROL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[^\p{C}]+$").unwrap());
/// `[a-zA-Z0-9_-]+`, the pattern of stream, OTA update and job IDs.
pub static ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_-]+$").unwrap());
/// Tag keys: `^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`.
pub static TAG_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$").unwrap());
/// What a role ARN must look like to name an IAM role.
pub static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$").unwrap());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_aws_wording() {
        let e = length("description", "x", 2, 3).unwrap_err();
        assert_eq!(e.code, "InvalidRequestException");
        assert!(e.message.starts_with("1 validation error detected: Value 'x' at 'description'"));
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(NO_CONTROL.is_match("firmware v1.2 für Geräte"));
        assert!(!NO_CONTROL.is_match("bad\u{7}bell"));
        assert!(!NO_CONTROL.is_match(""));
        assert!(!NO_CONTROL.is_match("zero\u{200b}width"));
    }

    #[test]
    fn role_arns() {
        assert!(ROLE_ARN.is_match("arn:aws:iam::123456789012:role/ota-role"));
        assert!(ROLE_ARN.is_match("arn:aws:iam::123456789012:role/service-role/x"));
        assert!(!ROLE_ARN.is_match("arn:aws:iam::123456789012:user/alice"));
        assert!(!ROLE_ARN.is_match("not an arn at all, but long enough"));
    }
}
