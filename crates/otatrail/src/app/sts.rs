//! STS: temporary credentials for the caller (GetSessionToken), for a role it is trusted to
//! assume (AssumeRole) and for a federated user (GetFederationToken). Credentials are stored
//! (secret sealed, token hashed), so they survive restarts until they expire.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::domain::iam::{self, VALIDATION_ERROR, check_name, not_authorized, parse_role_arn};
use crate::domain::identity::{IamTag, Secret, SessionRecord, new_secret, new_session_token, new_temporary_key_id};
use crate::domain::policy::{self, Caller};
use crate::domain::principal::{SessionContext, SessionIssuer};
use crate::domain::time::Millis;
use crate::domain::{IdentityType, Principal, ServiceError};
use crate::store;

use std::sync::Arc;

use super::App;
use super::audit::Call;
use serde_json::json;

/// Credentials as STS returns them.
#[derive(Clone, Debug)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret: Secret,
    pub session_token: String,
    pub expiration: Millis,
    pub principal: Principal,
}

pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: Option<i64>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub tags: Vec<IamTag>,
}

/// Role chaining (a role session assuming a role) is limited to one hour, as in AWS.
const CHAINED_MAX: i64 = 3600;
/// Root may hold session and federation credentials for at most one hour.
const ROOT_MAX: i64 = 3600;

/// `YYYY-MM-DDTHH:MM:SSZ`, as STS and IAM show times.
pub use crate::domain::audit::event_time_text as iso8601;

impl App {
    fn check_duration(&self, field: &str, value: i64, max: i64) -> Result<(), ServiceError> {
        let min = self.sts_min_duration_seconds;
        if value < min || value > max {
            return Err(iam::validation(
                field,
                &value.to_string(),
                &format!("Member must have value between {min} and {max}, inclusive"),
            ));
        }
        Ok(())
    }

    /// Issues and stores credentials acting as `principal` (whose access key is filled in),
    /// recording the call in the same unit of work. `extra` adds response elements (the
    /// assumed-role or federated user), never the secret or the token.
    async fn issue(
        &self,
        call: &Arc<Call>,
        mut principal: Principal,
        duration: i64,
        extra: serde_json::Value,
    ) -> Result<TemporaryCredentials, ServiceError> {
        let (id, secret, token) = {
            let mut rng = rand::rng();
            (new_temporary_key_id(&mut rng), new_secret(&mut rng), new_session_token(&mut rng))
        };
        principal.access_key_id = id.clone();
        let now = self.clock.now();
        let expiration = Millis(now.0 + duration * 1000);
        let record = SessionRecord {
            access_key_id: id.clone(),
            account_id: principal.account_id.clone(),
            sealed_secret: self.identities.seal(&id, secret.expose()),
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            principal: principal.clone(),
            expires_at: expiration,
            created_at: now,
        };
        let mut elements = json!({"credentials": {"accessKeyId": id, "expiration": iso8601(expiration)}});
        if let (Some(e), Some(x)) = (elements.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        let call = call.clone();
        store::write::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move {
                tx.insert_session(&record).await?;
                call.record_success(tx, Some(elements), vec![]).await?;
                Ok(())
            })
        })
        .await?;
        Ok(TemporaryCredentials { access_key_id: id, secret, session_token: token, expiration, principal })
    }

    fn session_context(&self, issuer: Option<SessionIssuer>, source_identity: Option<String>) -> SessionContext {
        SessionContext {
            session_issuer: issuer,
            creation_date: iso8601(self.clock.now()),
            mfa_authenticated: false,
            source_identity,
        }
    }

    pub async fn sts_get_session_token(&self, call: &Arc<Call>, duration: Option<i64>) -> Result<TemporaryCredentials, ServiceError> {
        let caller = &call.principal;
        if caller.is_temporary() {
            return Err(ServiceError::new(iam::ACCESS_DENIED, "Cannot call GetSessionToken with session credentials"));
        }
        let max = if caller.identity_type == IdentityType::Root { ROOT_MAX } else { 129_600 };
        let duration = duration.unwrap_or(if caller.identity_type == IdentityType::Root { ROOT_MAX } else { 43_200 });
        self.check_duration("durationSeconds", duration, max)?;
        let mut p = caller.clone();
        p.session = Some(self.session_context(None, None));
        self.issue(call, p, duration, json!({})).await
    }

    pub async fn sts_get_federation_token(&self, call: &Arc<Call>, name: &str, duration: Option<i64>, policy_doc: Option<&str>) -> Result<TemporaryCredentials, ServiceError> {
        let caller = &call.principal;
        check_name("name", name, 2, 32)?;
        if caller.is_temporary() {
            return Err(ServiceError::new(iam::ACCESS_DENIED, "Cannot call GetFederationToken with session credentials"));
        }
        if let Some(doc) = policy_doc {
            policy::parse(doc, false)?;
        }
        let max = if caller.identity_type == IdentityType::Root { ROOT_MAX } else { 129_600 };
        let duration = duration.unwrap_or(if caller.identity_type == IdentityType::Root { ROOT_MAX } else { 43_200 });
        self.check_duration("durationSeconds", duration, max)?;
        let acct = &caller.account_id;
        let p = Principal {
            identity_type: IdentityType::FederatedUser,
            principal_id: format!("{acct}:{name}"),
            arn: format!("arn:aws:sts::{acct}:federated-user/{name}"),
            account_id: acct.clone(),
            access_key_id: String::new(),
            user_name: Some(name.to_string()),
            session: Some(self.session_context(Some(caller.as_issuer()), None)),
            invoked_by: None,
        };
        let extra = json!({"federatedUser": {"federatedUserId": p.principal_id, "arn": p.arn}});
        self.issue(call, p, duration, extra).await
    }

    pub async fn sts_assume_role(&self, call: &Arc<Call>, req: AssumeRoleRequest) -> Result<TemporaryCredentials, ServiceError> {
        let caller = &call.principal;
        if req.role_arn.chars().count() < 20 || req.role_arn.len() > 2048 {
            return Err(iam::validation("roleArn", &req.role_arn, "Member must have length between 20 and 2048, inclusive"));
        }
        check_name("roleSessionName", &req.session_name, 2, 64)?;
        if let Some(si) = &req.source_identity {
            check_name("sourceIdentity", si, 2, 64)?;
            if si.to_ascii_lowercase().starts_with("aws:") {
                return Err(ServiceError::new(VALIDATION_ERROR, "SourceIdentity must not begin with 'aws:'."));
            }
        }
        iam::check_tags(&req.tags)?;
        let Some((role_account, role_name)) = parse_role_arn(&req.role_arn) else {
            return Err(ServiceError::new(VALIDATION_ERROR, format!("{} is invalid", req.role_arn)));
        };
        let denied = not_authorized(&caller.arn, "sts:AssumeRole", &req.role_arn);
        let role = {
            let (a, n) = (role_account.clone(), role_name.clone());
            store::read::<_, ServiceError, _>(&*self.store, move |tx| Box::pin(async move { Ok(tx.get_role(&a, &n).await?) }))
                .await?
        };
        // A missing role and an untrusting one look the same to the caller, as in AWS.
        let role = role.ok_or(denied.clone())?;
        let trust = policy::parse(&role.assume_role_policy, true)?;
        let mut arns = vec![caller.arn.clone()];
        if let Some(issuer) = caller.session.as_ref().and_then(|s| s.session_issuer.as_ref()) {
            if caller.identity_type == IdentityType::AssumedRole {
                arns.push(issuer.arn.clone());
            }
        }
        let mut context = HashMap::new();
        context.insert("aws:principalarn".to_string(), caller.arn.clone());
        context.insert("aws:principalaccount".to_string(), caller.account_id.clone());
        if let Some(e) = &req.external_id {
            context.insert("sts:externalid".to_string(), e.clone());
        }
        let inherited = caller.session.as_ref().and_then(|s| s.source_identity.clone());
        if let (Some(old), Some(new)) = (&inherited, &req.source_identity)
            && old != new
        {
            return Err(ServiceError::new(iam::ACCESS_DENIED, "SourceIdentity cannot be changed once set in a role session chain."));
        }
        let source_identity = req.source_identity.clone().or(inherited);
        if let Some(si) = &source_identity {
            context.insert("sts:sourceidentity".to_string(), si.clone());
        }
        let who = Caller::Aws { account_id: &caller.account_id, arns };
        if !trust.allows(&who, "sts:AssumeRole", None, &context) {
            return Err(denied);
        }
        let chained = caller.identity_type == IdentityType::AssumedRole;
        let max = if chained { CHAINED_MAX.min(role.max_session_duration) } else { role.max_session_duration };
        let duration = req.duration_seconds.unwrap_or(3600);
        if duration > max {
            return Err(ServiceError::new(
                VALIDATION_ERROR,
                format!(
                    "The requested DurationSeconds exceeds the {} set for this role.",
                    if chained { "1 hour session limit for roles assumed by role chaining" } else { "MaxSessionDuration" }
                ),
            ));
        }
        self.check_duration("durationSeconds", duration, max)?;
        let p = self.assumed_role_principal(&role, &req.session_name, source_identity.clone());
        let mut extra = json!({"assumedRoleUser": {"assumedRoleId": p.principal_id, "arn": p.arn}});
        if let Some(si) = source_identity {
            extra["sourceIdentity"] = json!(si);
        }
        self.issue(call, p, duration, extra).await
    }

    /// The principal of a session of `role`.
    pub fn assumed_role_principal(&self, role: &crate::domain::identity::Role, session_name: &str, source_identity: Option<String>) -> Principal {
        let issuer = SessionIssuer {
            issuer_type: "Role".into(),
            principal_id: role.role_id.clone(),
            arn: role.arn(),
            account_id: role.account_id.clone(),
            user_name: role.name.clone(),
        };
        Principal {
            identity_type: IdentityType::AssumedRole,
            principal_id: format!("{}:{session_name}", role.role_id),
            arn: format!("arn:aws:sts::{}:assumed-role/{}/{session_name}", role.account_id, role.name),
            account_id: role.account_id.clone(),
            access_key_id: String::new(),
            user_name: None,
            session: Some(self.session_context(Some(issuer), source_identity)),
            invoked_by: None,
        }
    }
}

impl App {
    /// The server acting as an AWS service (`iot.amazonaws.com`) that assumes a customer's
    /// role to work on their behalf, as AWS IoT does with an OTA update's `roleArn`. The role
    /// must exist in `account_id` and trust the service principal. No credentials are issued:
    /// the principal is used in-process and carries `invokedBy`.
    pub async fn assume_role_as_service(
        &self,
        service: &str,
        account_id: &str,
        role_arn: &str,
        session_name: &str,
    ) -> Result<Principal, ServiceError> {
        let denied = || {
            ServiceError::new(
                crate::domain::error::codes::INVALID_REQUEST,
                format!("The role {role_arn} does not exist or does not trust {service} to assume it (sts:AssumeRole)."),
            )
        };
        let Some((role_account, role_name)) = parse_role_arn(role_arn) else { return Err(denied()) };
        if role_account != account_id {
            return Err(denied());
        }
        let role = store::read::<_, ServiceError, _>(&*self.store, move |tx| {
            Box::pin(async move { Ok(tx.get_role(&role_account, &role_name).await?) })
        })
        .await?
        .ok_or_else(denied)?;
        let trust = policy::parse(&role.assume_role_policy, true)?;
        let context = HashMap::from([("aws:sourceaccount".to_string(), account_id.to_string())]);
        if !trust.allows(&Caller::Service(service), "sts:AssumeRole", None, &context) {
            return Err(denied());
        }
        let mut p = self.assumed_role_principal(&role, session_name, None);
        p.invoked_by = Some(service.to_string());
        Ok(p)
    }
}
