//! Accounts, IAM users and access keys, and how their identifiers are made.

use std::fmt;

use rand::Rng;

use super::time::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// 12 digits.
    pub id: String,
    pub created_at: Millis,
}

/// An IAM tag (`Key`/`Value`), as IAM and STS name its members.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IamTag {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub account_id: String,
    pub name: String,
    /// `AIDA` + 17 characters, as IAM makes them.
    pub user_id: String,
    /// `/` unless set.
    pub path: String,
    pub tags: Vec<IamTag>,
    pub created_at: Millis,
}

impl User {
    /// The account's root user as GetUser shows it (no IAM user record exists for it).
    pub fn root(account_id: &str) -> Self {
        User {
            account_id: account_id.to_string(),
            name: account_id.to_string(),
            user_id: account_id.to_string(),
            path: "/".into(),
            tags: vec![],
            created_at: Millis(0),
        }
    }

    pub fn is_root(&self) -> bool {
        self.user_id == self.account_id
    }

    pub fn arn(&self) -> String {
        if self.is_root() {
            return format!("arn:aws:iam::{}:root", self.account_id);
        }
        format!("arn:aws:iam::{}:user{}{}", self.account_id, self.path, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub account_id: String,
    pub name: String,
    /// `AROA` + 17 characters.
    pub role_id: String,
    pub path: String,
    pub description: Option<String>,
    /// The trust policy, as the caller sent it.
    pub assume_role_policy: String,
    /// Seconds, 3600–43200.
    pub max_session_duration: i64,
    pub tags: Vec<IamTag>,
    pub created_at: Millis,
}

impl Role {
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:role{}{}", self.account_id, self.path, self.name)
    }
}

/// Temporary credentials issued by STS. The secret is sealed, the session token kept only as
/// its SHA-256, and the principal the credentials act as is fixed at issue time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// `ASIA…`
    pub access_key_id: String,
    pub account_id: String,
    pub sealed_secret: Vec<u8>,
    pub token_sha256: String,
    pub principal: super::Principal,
    pub expires_at: Millis,
    pub created_at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Active" => Some(KeyStatus::Active),
            "Inactive" => Some(KeyStatus::Inactive),
            _ => None,
        }
    }
}

/// An access key as stored: the secret only in sealed (encrypted) form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub account_id: String,
    /// `None` for the account's root user.
    pub user_name: Option<String>,
    pub status: KeyStatus,
    pub sealed_secret: Vec<u8>,
    pub created_at: Millis,
}

/// A secret access key in the clear. Its `Debug` and `Display` never show it, so it cannot
/// leak through a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_from(rng: &mut impl Rng, alphabet: &[u8], n: usize) -> String {
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// A 12-digit account ID that does not start with 0.
pub fn new_account_id(rng: &mut impl Rng) -> String {
    let first = rng.random_range(1..=9);
    let rest: String = (0..11).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
    format!("{first}{rest}")
}

/// Long-term access key IDs start with `AKIA`, 20 characters in all.
pub fn new_access_key_id(rng: &mut impl Rng) -> String {
    format!("AKIA{}", random_from(rng, UPPER_ALNUM, 16))
}

/// Temporary access key IDs start with `ASIA`.
pub fn new_temporary_key_id(rng: &mut impl Rng) -> String {
    format!("ASIA{}", random_from(rng, UPPER_ALNUM, 16))
}

/// IAM role IDs start with `AROA`, 21 characters in all.
pub fn new_role_id(rng: &mut impl Rng) -> String {
    format!("AROA{}", random_from(rng, UPPER_ALNUM, 17))
}

/// An opaque session token: 96 random bytes, base64.
pub fn new_session_token(rng: &mut impl Rng) -> String {
    use base64::Engine;
    let mut b = [0u8; 96];
    rng.fill_bytes(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// 40 characters, as AWS secret access keys are.
pub fn new_secret(rng: &mut impl Rng) -> Secret {
    Secret(random_from(rng, SECRET_CHARS, 40))
}

/// IAM user IDs start with `AIDA`, 21 characters in all.
pub fn new_user_id(rng: &mut impl Rng) -> String {
    format!("AIDA{}", random_from(rng, UPPER_ALNUM, 17))
}

pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// IAM user names: 1–64 of `[\w+=,.@-]`.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// Access key IDs: 16–128 word characters.
pub fn is_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_aws_shapes() {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let a = new_account_id(&mut rng);
            assert!(is_account_id(&a) && !a.starts_with('0'));
            let k = new_access_key_id(&mut rng);
            assert!(k.starts_with("AKIA") && k.len() == 20 && is_access_key_id(&k));
            assert_eq!(new_secret(&mut rng).expose().len(), 40);
            assert_eq!(new_user_id(&mut rng).len(), 21);
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
