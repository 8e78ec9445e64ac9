//! Who made a request: everything a CloudTrail `userIdentity` needs.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IdentityType {
    Root,
    IAMUser,
    AssumedRole,
    FederatedUser,
}

impl IdentityType {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityType::Root => "Root",
            IdentityType::IAMUser => "IAMUser",
            IdentityType::AssumedRole => "AssumedRole",
            IdentityType::FederatedUser => "FederatedUser",
        }
    }
}

/// An authenticated caller. Built only by the identity layer after a signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub identity_type: IdentityType,
    /// Root: the account ID; IAM user: its `AIDA…` ID.
    pub principal_id: String,
    pub arn: String,
    pub account_id: String,
    pub access_key_id: String,
    pub user_name: Option<String>,
}

impl Principal {
    pub fn root(account_id: &str, access_key_id: &str) -> Self {
        Self {
            identity_type: IdentityType::Root,
            principal_id: account_id.to_string(),
            arn: format!("arn:aws:iam::{account_id}:root"),
            account_id: account_id.to_string(),
            access_key_id: access_key_id.to_string(),
            user_name: None,
        }
    }

    pub fn iam_user(account_id: &str, user_id: &str, user_name: &str, path: &str, access_key_id: &str) -> Self {
        Self {
            identity_type: IdentityType::IAMUser,
            principal_id: user_id.to_string(),
            arn: format!("arn:aws:iam::{account_id}:user{path}{user_name}"),
            account_id: account_id.to_string(),
            access_key_id: access_key_id.to_string(),
            user_name: Some(user_name.to_string()),
        }
    }
}
