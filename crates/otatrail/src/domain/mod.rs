//! The domain: what otatrail's resources are and the rules they obey.
//!
//! Nothing here does I/O or knows a wire format. State is reached only through the
//! [`crate::store::StateTx`] trait handed in by the caller, and time through a value.

pub mod audit;
pub mod buckets;
pub mod codesign;
pub mod error;
pub mod filestream;
pub mod history;
pub mod iam;
pub mod ids;
pub mod identity;
pub mod integrity;
pub mod jobs;
pub mod organization;
pub mod ota;
pub mod policy;
pub mod principal;
pub mod signing;
pub mod sns;
pub mod streams;
pub mod things;
pub mod time;
pub mod trails;
pub mod validate;

pub use error::ServiceError;
pub use principal::{IdentityType, Principal};

/// An account's state in one region: every IoT resource lives in exactly one scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account_id: String,
    pub region: String,
}

impl Scope {
    pub fn new(account_id: impl Into<String>, region: impl Into<String>) -> Self {
        Self { account_id: account_id.into(), region: region.into() }
    }

    /// `arn:aws:<service>:<region>:<account>:<resource>`
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!("arn:aws:{service}:{}:{}:{resource}", self.region, self.account_id)
    }
}
