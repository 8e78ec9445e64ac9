//! The event history that LookupEvents searches (`cloudtrail.md` §5): one attribute at most,
//! an inclusive time range, newest first, pages of 1–50, and tokens bound to the query that
//! made them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::ServiceError;
use super::time::Millis;
use crate::store::LookupKey;

pub const DEFAULT_MAX_RESULTS: i64 = 50;
pub const DEFAULT_RETENTION_DAYS: i64 = 90;

fn err(code: &'static str, msg: impl Into<String>) -> ServiceError {
    ServiceError::new(code, msg)
}

pub fn parse_key(key: &str) -> Result<LookupKey, ServiceError> {
    Ok(match key {
        "EventId" => LookupKey::EventId,
        "EventName" => LookupKey::EventName,
        "ReadOnly" => LookupKey::ReadOnly,
        "Username" => LookupKey::Username,
        "ResourceType" => LookupKey::ResourceType,
        "ResourceName" => LookupKey::ResourceName,
        "EventSource" => LookupKey::EventSource,
        "AccessKeyId" => LookupKey::AccessKeyId,
        other => {
            return Err(err(
                "InvalidLookupAttributesException",
                format!(
                    "'{other}' is not a lookup attribute key; use one of EventId, EventName, ReadOnly, Username, ResourceType, ResourceName, EventSource, AccessKeyId."
                ),
            ));
        }
    })
}

/// A validated LookupEvents request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub attribute: Option<(LookupKey, String)>,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub insight: bool,
    pub max_results: i64,
    pub after: Option<(Millis, i64)>,
}

pub struct LookupInput {
    pub attributes: Vec<(String, String)>,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub event_category: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

fn fingerprint(l: &Lookup) -> String {
    let text = format!("{:?}|{:?}|{:?}|{}", l.attribute, l.start, l.end, l.insight);
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

pub fn encode_token(l: &Lookup, last: (Millis, i64)) -> String {
    URL_SAFE_NO_PAD.encode(format!("e1:{}:{}:{}", last.0.0, last.1, fingerprint(l)))
}

pub fn validate(input: LookupInput) -> Result<Lookup, ServiceError> {
    if input.attributes.len() > 1 {
        return Err(err("InvalidLookupAttributesException", "LookupAttributes may hold at most one attribute."));
    }
    let attribute = match input.attributes.into_iter().next() {
        None => None,
        Some((k, v)) => {
            let key = parse_key(&k)?;
            if v.is_empty() || v.chars().count() > 2000 {
                return Err(err("InvalidLookupAttributesException", "AttributeValue must have 1 to 2000 characters."));
            }
            Some((key, v))
        }
    };
    if let (Some(s), Some(e)) = (input.start, input.end)
        && s > e
    {
        return Err(err("InvalidTimeRangeException", "StartTime must not be after EndTime."));
    }
    let insight = match input.event_category.as_deref() {
        None => false,
        Some("insight") => true,
        Some(other) => {
            return Err(err("InvalidEventCategoryException", format!("'{other}' is not an event category; the only one is 'insight'.")));
        }
    };
    let max_results = input.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if !(1..=50).contains(&max_results) {
        return Err(err("InvalidMaxResultsException", "MaxResults must be between 1 and 50."));
    }
    let mut lookup = Lookup { attribute, start: input.start, end: input.end, insight, max_results, after: None };
    if let Some(token) = input.next_token.filter(|t| !t.is_empty()) {
        let bad = || err("InvalidNextTokenException", "The NextToken is not valid for these parameters; reuse a token only with the parameters that produced it.");
        let raw = URL_SAFE_NO_PAD.decode(&token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
        let parts: Vec<&str> = raw.split(':').collect();
        let [prefix, time, seq, print] = parts.as_slice() else { return Err(bad()) };
        if *prefix != "e1" || *print != fingerprint(&lookup) {
            return Err(bad());
        }
        lookup.after = Some((Millis(time.parse().map_err(|_| bad())?), seq.parse().map_err(|_| bad())?));
    }
    Ok(lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LookupInput {
        LookupInput {
            attributes: vec![("EventName".into(), "CreateStream".into())],
            start: Some(Millis(1)),
            end: Some(Millis(10)),
            event_category: None,
            max_results: Some(5),
            next_token: None,
        }
    }

    #[test]
    fn tokens_are_bound_to_their_parameters() {
        let l = validate(input()).unwrap();
        let token = encode_token(&l, (Millis(5), 42));
        let mut again = input();
        again.next_token = Some(token.clone());
        assert_eq!(validate(again).unwrap().after, Some((Millis(5), 42)));
        let mut other = input();
        other.attributes = vec![("EventName".into(), "DeleteStream".into())];
        other.next_token = Some(token);
        assert_eq!(validate(other).unwrap_err().code, "InvalidNextTokenException");
        let mut garbage = input();
        garbage.next_token = Some("garbage".into());
        assert_eq!(validate(garbage).unwrap_err().code, "InvalidNextTokenException");
    }

    #[test]
    fn limits() {
        let mut i = input();
        i.max_results = Some(51);
        assert_eq!(validate(i).unwrap_err().code, "InvalidMaxResultsException");
        let mut i = input();
        i.start = Some(Millis(11));
        assert_eq!(validate(i).unwrap_err().code, "InvalidTimeRangeException");
        let mut i = input();
        i.attributes.push(("Username".into(), "x".into()));
        assert_eq!(validate(i).unwrap_err().code, "InvalidLookupAttributesException");
        let mut i = input();
        i.event_category = Some("data".into());
        assert_eq!(validate(i).unwrap_err().code, "InvalidEventCategoryException");
    }
}
