//! Organizations, as declared in configuration: an `o-` ID, a management account and member
//! accounts. They matter to trails: an organization trail, created by the management account,
//! logs every member account's events.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// `o-` followed by 10 to 32 lowercase letters or digits.
    pub id: String,
    pub management_account: String,
    /// Member accounts besides the management account.
    #[serde(default)]
    pub members: Vec<String>,
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Organization {
    pub fn validate(&self) -> Result<(), String> {
        let rest = self.id.strip_prefix("o-").unwrap_or("");
        if !(10..=32).contains(&rest.len()) || !rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(format!("organization id '{}' must be o- followed by 10 to 32 lowercase letters or digits", self.id));
        }
        for a in std::iter::once(&self.management_account).chain(&self.members) {
            if !is_account_id(a) {
                return Err(format!("organization {}: account id '{a}' must be 12 digits", self.id));
            }
        }
        Ok(())
    }

    /// Every account of the organization, the management account first.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.management_account.as_str()).chain(self.members.iter().map(String::as_str).filter(|m| *m != self.management_account))
    }

    pub fn contains(&self, account: &str) -> bool {
        self.accounts().any(|a| a == account)
    }
}

/// The organization an account belongs to, if any.
pub fn of_account<'a>(orgs: &'a [Organization], account: &str) -> Option<&'a Organization> {
    orgs.iter().find(|o| o.contains(account))
}

/// Checks a set of organizations: each valid, and no account in two.
pub fn validate_all(orgs: &[Organization]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for o in orgs {
        o.validate()?;
        for a in o.accounts() {
            if !seen.insert(a.to_string()) {
                return Err(format!("account {a} is in more than one organization"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: &str, mgmt: &str, members: &[&str]) -> Organization {
        Organization { id: id.into(), management_account: mgmt.into(), members: members.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn ids_accounts_and_membership() {
        let o = org("o-abcdef1234", "111122223333", &["444455556666", "111122223333"]);
        assert!(o.validate().is_ok());
        assert_eq!(o.accounts().collect::<Vec<_>>(), ["111122223333", "444455556666"]);
        assert!(o.contains("444455556666") && !o.contains("999999999999"));
        assert!(org("o-short", "111122223333", &[]).validate().is_err());
        assert!(org("o-ABCDEF12345", "111122223333", &[]).validate().is_err());
        assert!(org("o-abcdef1234", "1111", &[]).validate().is_err());
        let two = [o.clone(), org("o-zzzzzz9999", "777788889999", &["444455556666"])];
        assert!(validate_all(&two).is_err());
        assert_eq!(of_account(&two[..1], "444455556666").map(|o| o.id.as_str()), Some("o-abcdef1234"));
    }
}
