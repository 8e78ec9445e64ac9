//! LookupEvents over the recorded history of one account and region.

use std::sync::Arc;

use crate::domain::ServiceError;
use crate::domain::history::{self, Lookup, LookupInput};
use crate::domain::time::Millis;
use crate::store::{self, EventQuery, StoredEvent};

use super::App;
use super::audit::Call;

pub struct HistoryPage {
    pub events: Vec<StoredEvent>,
    pub next_token: Option<String>,
}

impl App {
    pub async fn lookup_events(&self, call: &Arc<Call>, input: LookupInput) -> Result<HistoryPage, ServiceError> {
        let lookup = history::validate(input)?;
        self.lookup_in(&call.principal.account_id, &call.info.region, lookup).await
    }

    pub async fn lookup_in(&self, account_id: &str, region: &str, lookup: Lookup) -> Result<HistoryPage, ServiceError> {
        lookup_page(&*self.store, self.clock.now(), self.event_retention_days, account_id, region, lookup).await
    }
}

/// One page of the history of `account_id` in `region`, as of `now` (also used by
/// `otatrail events`, which reads the store without a running server).
pub async fn lookup_page(
    store: &dyn crate::store::Store,
    now: Millis,
    retention_days: i64,
    account_id: &str,
    region: &str,
    lookup: Lookup,
) -> Result<HistoryPage, ServiceError> {
    {
        if lookup.insight {
            // otatrail produces no Insights events.
            return Ok(HistoryPage { events: vec![], next_token: None });
        }
        let oldest = Millis(now.0 - retention_days * 86_400_000);
        let query = EventQuery {
            account_id: account_id.to_string(),
            region: region.to_string(),
            attribute: lookup.attribute.clone(),
            start: Some(lookup.start.map_or(oldest, |s| s.max(oldest))),
            end: lookup.end,
            before: lookup.after,
            limit: lookup.max_results + 1,
        };
        let mut events =
            store::read::<_, ServiceError, _>(store, move |tx| Box::pin(async move { Ok(tx.lookup_events(&query).await?) }))
                .await?;
        let next_token = if events.len() as i64 > lookup.max_results {
            events.truncate(lookup.max_results as usize);
            events.last().map(|e| history::encode_token(&lookup, (e.event_time, e.seq)))
        } else {
            None
        };
        Ok(HistoryPage { events, next_token })
    }
}
