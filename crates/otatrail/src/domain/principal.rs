//! Who made a request: everything a CloudTrail `userIdentity` needs.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// `sessionContext.sessionIssuer`: the long-term identity temporary credentials came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionIssuer {
    /// `Root`, `IAMUser` or `Role`.
    #[serde(rename = "type")]
    pub issuer_type: String,
    pub principal_id: String,
    pub arn: String,
    pub account_id: String,
    pub user_name: String,
}

/// `sessionContext`, present for temporary credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    pub session_issuer: Option<SessionIssuer>,
    /// `YYYY-MM-DDTHH:MM:SSZ`
    pub creation_date: String,
    pub mfa_authenticated: bool,
    pub source_identity: Option<String>,
}

/// An authenticated caller. Built only by the identity layer after a signature verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub identity_type: IdentityType,
    /// Root: the account ID; IAM user: `AIDA…`; assumed role: `AROA…:<session>`;
    /// federated user: `<account>:<name>`.
    pub principal_id: String,
    pub arn: String,
    pub account_id: String,
    pub access_key_id: String,
    pub user_name: Option<String>,
    pub session: Option<SessionContext>,
    /// The service acting on the principal's behalf (`iot.amazonaws.com`), if any.
    pub invoked_by: Option<String>,
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
            session: None,
            invoked_by: None,
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
            session: None,
            invoked_by: None,
        }
    }

    /// The long-term identity behind these credentials, as a `sessionIssuer`.
    pub fn as_issuer(&self) -> SessionIssuer {
        if let Some(issuer) = self.session.as_ref().and_then(|s| s.session_issuer.clone()) {
            if self.identity_type == IdentityType::AssumedRole {
                return issuer;
            }
        }
        SessionIssuer {
            issuer_type: match self.identity_type {
                IdentityType::Root => "Root".into(),
                _ => "IAMUser".into(),
            },
            principal_id: self.principal_id.clone(),
            arn: self.arn.clone(),
            account_id: self.account_id.clone(),
            user_name: self.user_name.clone().unwrap_or_else(|| self.account_id.clone()),
        }
    }

    /// Whether these are temporary credentials (STS).
    pub fn is_temporary(&self) -> bool {
        self.session.is_some()
    }
}
