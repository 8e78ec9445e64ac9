//! Recording calls. A successful mutating call appends its record inside the unit of work
//! that changes state ([`Call::record_success`]), so both commit or neither does. Every other
//! outcome (read-only calls, failures, failed authentication) is recorded by
//! [`App::record`] before the response is sent.

use serde_json::Value;

use crate::domain::audit::{Actor, AuditEvent, CallInfo, Outcome, Resource};
use crate::domain::{Principal, Scope, ServiceError};
use crate::store::{StateTx, StoreResult};

use super::App;

/// One authenticated API call: who made it and what is known of it before its outcome.
#[derive(Clone, Debug)]
pub struct Call {
    pub info: CallInfo,
    pub principal: Principal,
}

impl Call {
    /// A call the server makes itself (or a test makes in-process): no client, no request.
    pub fn internal(principal: Principal, region: &str, event_source: &str, event_name: &str, read_only: bool, now: crate::domain::time::Millis) -> Self {
        Call {
            info: CallInfo {
                request_id: uuid::Uuid::new_v4().to_string(),
                event_time: now,
                region: region.to_string(),
                event_source: event_source.to_string(),
                event_name: event_name.to_string(),
                read_only,
                source_ip: event_source.to_string(),
                user_agent: Some(event_source.to_string()),
                request_parameters: None,
                api_version: None,
                tls: None,
                keep_response_elements: false,
            },
            principal,
        }
    }

    /// The account and region the call acts on.
    pub fn scope(&self) -> Scope {
        Scope::new(self.principal.account_id.clone(), self.info.region.clone())
    }

    pub fn event(&self, outcome: Outcome<'_>, resources: Vec<Resource>) -> AuditEvent {
        self.info.finish(&Actor::Principal(&self.principal), outcome, resources)
    }

    /// Appends the success record inside the caller's unit of work.
    pub async fn record_success(
        &self,
        tx: &mut dyn StateTx,
        response_elements: Option<Value>,
        resources: Vec<Resource>,
    ) -> StoreResult<()> {
        tx.append_event(&self.event(Outcome::Success { response_elements }, resources)).await?;
        Ok(())
    }

    /// `{ARN, accountId, type}` of a resource of this call's account.
    pub fn resource(&self, arn: String, resource_type: &str) -> Resource {
        Resource { arn, account_id: self.principal.account_id.clone(), resource_type: resource_type.to_string() }
    }
}

impl App {
    /// Durably appends a record on its own (group-committed with other units).
    pub async fn record(&self, event: AuditEvent) -> Result<(), ServiceError> {
        Ok(self.store.append(event).await?)
    }
}
