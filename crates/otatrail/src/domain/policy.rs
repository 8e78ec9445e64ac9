//! IAM policy documents, as far as otatrail evaluates them: role trust policies (who may call
//! `sts:AssumeRole`) now, bucket policies later. Parsing is strict, so a document AWS would
//! call malformed is refused with `MalformedPolicyDocument`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::ServiceError;

pub const MALFORMED: &str = "MalformedPolicyDocument";

fn malformed(msg: impl Into<String>) -> ServiceError {
    ServiceError::new(MALFORMED, msg)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Principal`: `"*"` or principals by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principals {
    pub any: bool,
    pub aws: Vec<String>,
    pub service: Vec<String>,
    pub federated: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub principals: Option<Principals>,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
}

/// Who asks, as a policy sees it.
#[derive(Clone, Debug)]
pub enum Caller<'a> {
    /// An IAM identity of `account_id`, known by these ARNs (user, role, assumed-role session).
    Aws { account_id: &'a str, arns: Vec<String> },
    /// An AWS service principal such as `iot.amazonaws.com`.
    Service(&'a str),
}

static ACCOUNT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{12}$").unwrap());
static AWS_PRINCIPAL_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws[a-z-]*:(iam::\d{12}:(root|user/.+|role/.+)|sts::\d{12}:(assumed-role|federated-user)/.+)$").unwrap()
});
static ACTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(\*|[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+)$").unwrap());

fn strings(v: &Value, what: &str) -> Result<Vec<String>, ServiceError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| malformed(format!("{what} must hold strings."))))
            .collect(),
        _ => Err(malformed(format!("{what} must be a string or a non-empty array of strings."))),
    }
}

fn parse_principals(v: &Value) -> Result<Principals, ServiceError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals { any: true, ..Default::default() }),
        Value::Object(m) if !m.is_empty() => {
            let mut p = Principals::default();
            for (k, v) in m {
                let list = strings(v, &format!("Principal.{k}"))?;
                match k.as_str() {
                    "AWS" => {
                        for a in &list {
                            if a != "*" && !ACCOUNT.is_match(a) && !AWS_PRINCIPAL_ARN.is_match(a) {
                                return Err(malformed(format!("Invalid principal in policy: \"AWS\":\"{a}\"")));
                            }
                        }
                        p.aws.extend(list)
                    }
                    "Service" => p.service.extend(list),
                    "Federated" => p.federated.extend(list),
                    "CanonicalUser" => {}
                    other => return Err(malformed(format!("Invalid principal in policy: unknown principal type \"{other}\""))),
                }
            }
            Ok(p)
        }
        _ => Err(malformed("Principal must be \"*\" or an object such as {\"AWS\": \"arn:…\"}.")),
    }
}

fn parse_conditions(v: &Value) -> Result<Vec<Condition>, ServiceError> {
    let Value::Object(ops) = v else { return Err(malformed("Condition must be an object.")) };
    let mut out = Vec::new();
    for (op, keys) in ops {
        let Value::Object(keys) = keys else { return Err(malformed(format!("Condition.{op} must be an object."))) };
        for (key, values) in keys {
            let values = match values {
                Value::Bool(b) => vec![b.to_string()],
                Value::Number(n) => vec![n.to_string()],
                other => strings(other, &format!("Condition.{op}.{key}"))?,
            };
            out.push(Condition { operator: op.clone(), key: key.clone(), values });
        }
    }
    Ok(out)
}

fn parse_statement(v: &Value, require_principal: bool) -> Result<Statement, ServiceError> {
    let Value::Object(m) = v else { return Err(malformed("Each Statement must be an object.")) };
    for k in m.keys() {
        if !["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"]
            .contains(&k.as_str())
        {
            return Err(malformed(format!("Syntax errors in policy: unknown statement element \"{k}\".")));
        }
    }
    let effect = match m.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(malformed("Each Statement needs an Effect of \"Allow\" or \"Deny\".")),
    };
    let principals = m.get("Principal").map(parse_principals).transpose()?;
    if require_principal && principals.is_none() {
        return Err(malformed("Has prohibited field: each Statement of a trust policy needs a Principal."));
    }
    let actions = m.get("Action").map(|a| strings(a, "Action")).transpose()?.unwrap_or_default();
    let not_actions = m.get("NotAction").map(|a| strings(a, "NotAction")).transpose()?.unwrap_or_default();
    if actions.is_empty() && not_actions.is_empty() {
        return Err(malformed("Each Statement needs an Action."));
    }
    for a in actions.iter().chain(&not_actions) {
        if !ACTION.is_match(a) {
            return Err(malformed(format!("Invalid action \"{a}\": actions look like \"sts:AssumeRole\".")));
        }
    }
    let resources = m.get("Resource").map(|r| strings(r, "Resource")).transpose()?.unwrap_or_default();
    let conditions = m.get("Condition").map(parse_conditions).transpose()?.unwrap_or_default();
    Ok(Statement { effect, principals, actions, not_actions, resources, conditions })
}

/// Parses a policy document. Trust policies must name a principal in every statement.
pub fn parse(doc: &str, trust_policy: bool) -> Result<PolicyDocument, ServiceError> {
    let v: Value = serde_json::from_str(doc).map_err(|e| malformed(format!("This policy contains invalid Json: {e}")))?;
    let Value::Object(m) = &v else { return Err(malformed("The policy document must be a JSON object.")) };
    for k in m.keys() {
        if !["Version", "Id", "Statement"].contains(&k.as_str()) {
            return Err(malformed(format!("Syntax errors in policy: unknown element \"{k}\".")));
        }
    }
    if let Some(ver) = m.get("Version")
        && !matches!(ver.as_str(), Some("2012-10-17") | Some("2008-10-17"))
    {
        return Err(malformed("The policy Version must be \"2012-10-17\" or \"2008-10-17\"."));
    }
    let statements = match m.get("Statement") {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().map(|s| parse_statement(s, trust_policy)).collect::<Result<_, _>>()?,
        Some(s @ Value::Object(_)) => vec![parse_statement(s, trust_policy)?],
        _ => return Err(malformed("The policy needs a Statement.")),
    };
    Ok(PolicyDocument { statements })
}

/// `*` and `?` wildcards, as IAM matches actions, ARNs and `*Like` conditions.
pub fn wildcard_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if case_insensitive {
        (pattern.to_lowercase().chars().collect(), value.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi, mut star, mut mark) = (0, 0, None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Principals {
    fn matches(&self, caller: &Caller<'_>) -> bool {
        if self.any {
            return true;
        }
        match caller {
            Caller::Service(s) => self.service.iter().any(|x| x == s),
            Caller::Aws { account_id, arns } => self.aws.iter().any(|p| {
                p == "*"
                    || p == account_id
                    || *p == format!("arn:aws:iam::{account_id}:root")
                    || arns.iter().any(|a| a == p)
            }),
        }
    }
}

fn condition_holds(c: &Condition, context: &HashMap<String, String>) -> bool {
    let op = c.operator.strip_suffix("IfExists").unwrap_or(&c.operator);
    let value = context.get(&c.key.to_ascii_lowercase());
    let Some(value) = value else {
        // A missing key satisfies only negated operators (and `…IfExists`).
        return c.operator.ends_with("IfExists") || op.contains("Not");
    };
    let any = |f: &dyn Fn(&str) -> bool| c.values.iter().any(|x| f(x));
    match op {
        "StringEquals" | "ArnEquals" => any(&|x| x == value),
        "StringNotEquals" | "ArnNotEquals" => !any(&|x| x == value),
        "StringEqualsIgnoreCase" => any(&|x| x.eq_ignore_ascii_case(value)),
        "StringNotEqualsIgnoreCase" => !any(&|x| x.eq_ignore_ascii_case(value)),
        "StringLike" | "ArnLike" => any(&|x| wildcard_match(x, value, false)),
        "StringNotLike" | "ArnNotLike" => !any(&|x| wildcard_match(x, value, false)),
        "Bool" => any(&|x| x.eq_ignore_ascii_case(value)),
        // Operators otatrail does not evaluate never grant access.
        _ => false,
    }
}

impl Statement {
    fn action_matches(&self, action: &str) -> bool {
        if !self.actions.is_empty() {
            self.actions.iter().any(|a| wildcard_match(a, action, true))
        } else {
            !self.not_actions.iter().any(|a| wildcard_match(a, action, true))
        }
    }

    fn resource_matches(&self, resource: Option<&str>) -> bool {
        match resource {
            None => true,
            Some(r) => self.resources.is_empty() || self.resources.iter().any(|p| wildcard_match(p, r, false)),
        }
    }

    fn applies(&self, caller: &Caller<'_>, action: &str, resource: Option<&str>, context: &HashMap<String, String>) -> bool {
        self.principals.as_ref().is_none_or(|p| p.matches(caller))
            && self.action_matches(action)
            && self.resource_matches(resource)
            && self.conditions.iter().all(|c| condition_holds(c, context))
    }
}

impl PolicyDocument {
    /// Whether the policy allows `caller` to perform `action` (on `resource`, when given):
    /// some Allow statement applies and no Deny does. `context` keys are lowercase condition
    /// keys (`sts:externalid`, `aws:sourcearn`).
    pub fn allows(&self, caller: &Caller<'_>, action: &str, resource: Option<&str>, context: &HashMap<String, String>) -> bool {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(caller, action, resource, context) {
                match s.effect {
                    Effect::Deny => return false,
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(acct: &'static str, name: &str) -> Caller<'static> {
        Caller::Aws { account_id: acct, arns: vec![format!("arn:aws:iam::{acct}:user/{name}")] }
    }

    const TRUST_ACCOUNT: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;

    #[test]
    fn account_root_principal_trusts_every_identity_of_the_account() {
        let p = parse(TRUST_ACCOUNT, true).unwrap();
        let none = HashMap::new();
        assert!(p.allows(&user("111122223333", "alice"), "sts:AssumeRole", None, &none));
        assert!(!p.allows(&user("999999999999", "alice"), "sts:AssumeRole", None, &none));
        assert!(!p.allows(&user("111122223333", "alice"), "sts:GetFederationToken", None, &none));
    }

    #[test]
    fn user_arns_services_and_deny() {
        let doc = r#"{"Statement":[
            {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:user/alice"],"Service":"iot.amazonaws.com"},"Action":["sts:*"]},
            {"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:SourceAccount":"999999999999"}}}]}"#;
        let p = parse(doc, true).unwrap();
        let none = HashMap::new();
        assert!(p.allows(&user("111122223333", "alice"), "sts:AssumeRole", None, &none));
        assert!(!p.allows(&user("111122223333", "bob"), "sts:AssumeRole", None, &none));
        assert!(p.allows(&Caller::Service("iot.amazonaws.com"), "sts:AssumeRole", None, &none));
        let ctx = HashMap::from([("aws:sourceaccount".to_string(), "999999999999".to_string())]);
        assert!(!p.allows(&Caller::Service("iot.amazonaws.com"), "sts:AssumeRole", None, &ctx));
    }

    #[test]
    fn malformed_documents() {
        for doc in [
            "not json",
            "[]",
            r#"{"Statement":[]}"#,
            r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}"#,
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"sts:AssumeRole"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"sts:AssumeRole"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Colour":"red"}}"#,
        ] {
            let e = parse(doc, true).unwrap_err();
            assert_eq!(e.code, MALFORMED, "{doc}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("sts:*", "STS:AssumeRole", true));
        assert!(wildcard_match("arn:aws:s3:::b/AWSLogs/1/*", "arn:aws:s3:::b/AWSLogs/1/x/y", false));
        assert!(!wildcard_match("a?c", "abbc", false));
        assert!(wildcard_match("*", "", false));
    }
}
