//! The state store: every durable fact of the control plane.
//!
//! Domain code sees state only through [`StateTx`], a transaction. A [`Store`] runs units of
//! work ([`TxWork`]) and reports back only once their transaction committed, so a response
//! built from a unit's result is never sent for a change that could still be lost.
//!
//! Backends implement both traits; [`conformance`] is the suite every backend must pass.

pub mod conformance;
pub mod sqlite;

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::sync::Arc;

use crate::domain::Scope;
use crate::domain::audit::AuditEvent;
use crate::domain::buckets::{Bucket, ObjectMeta, Part, Upload};
use crate::domain::signing::SigningKey;
use crate::domain::sns::{Delivery as SnsDelivery, SigningCert as SnsSigningCert, Subscription as SnsSubscription, Topic as SnsTopic};
use crate::domain::trails::Trail;
use crate::domain::time::Millis;
use crate::domain::identity::{AccessKeyRecord, Account, IamTag, KeyStatus, Role, SessionRecord, User};
use crate::domain::streams::Stream;
use crate::domain::things::{Thing, ThingFilter, ThingGroup};
use crate::domain::jobs::{ExecStatus, Job, JobExecution, JobFilter};
use crate::domain::ota::{OtaStatus, OtaUpdate};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("conflicting write: {0}")]
    Conflict(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What LookupEvents can filter on (`aws-api.md` §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKey {
    EventId,
    EventName,
    ReadOnly,
    Username,
    ResourceType,
    ResourceName,
    EventSource,
    AccessKeyId,
}

/// A history query: one account and region, newest first.
#[derive(Clone, Debug)]
pub struct EventQuery {
    pub account_id: String,
    pub region: String,
    pub attribute: Option<(LookupKey, String)>,
    /// Inclusive bounds on the event time.
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    /// Resume strictly after (older than) this `(event_time, seq)`.
    pub before: Option<(Millis, i64)>,
    pub limit: i64,
}

/// A stored record with its position in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event_id: String,
    pub event_time: Millis,
    pub event_name: String,
    pub event_source: String,
    pub read_only: bool,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    /// `(type, name)` pairs.
    pub resources: Vec<(String, String)>,
    pub record: String,
}

/// A log file as delivered, for digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredFile {
    /// Set by the store.
    pub seq: i64,
    pub bucket: String,
    pub key: String,
    /// Hex SHA-256 of the uncompressed bytes.
    pub sha256: String,
    pub oldest_event: Millis,
    pub newest_event: Millis,
    pub delivered_at: Millis,
}

/// One transaction's view of the state. Reads see the transaction's own writes.
#[async_trait]
pub trait StateTx: Send {
    // Identities.
    async fn insert_account(&mut self, account: &Account) -> StoreResult<()>;
    async fn get_account(&mut self, id: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&mut self) -> StoreResult<Vec<Account>>;
    async fn insert_user(&mut self, user: &User) -> StoreResult<()>;
    async fn get_user(&mut self, account_id: &str, name: &str) -> StoreResult<Option<User>>;
    /// Users of an account by name, those after `after_name`, at most `limit`.
    async fn list_users(&mut self, account_id: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<User>>;
    async fn delete_user(&mut self, account_id: &str, name: &str) -> StoreResult<bool>;
    async fn set_user_tags(&mut self, account_id: &str, name: &str, tags: &[IamTag]) -> StoreResult<bool>;
    async fn insert_access_key(&mut self, key: &AccessKeyRecord) -> StoreResult<()>;
    async fn get_access_key(&mut self, access_key_id: &str) -> StoreResult<Option<AccessKeyRecord>>;
    /// The keys of one user of an account, or of its root user when `user_name` is `None`.
    async fn list_access_keys(&mut self, account_id: &str, user_name: Option<&str>) -> StoreResult<Vec<AccessKeyRecord>>;
    async fn set_access_key_status(&mut self, access_key_id: &str, status: KeyStatus) -> StoreResult<bool>;
    async fn delete_access_key(&mut self, access_key_id: &str) -> StoreResult<bool>;

    // Roles.
    async fn insert_role(&mut self, role: &Role) -> StoreResult<()>;
    async fn get_role(&mut self, account_id: &str, name: &str) -> StoreResult<Option<Role>>;
    async fn list_roles(&mut self, account_id: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<Role>>;
    /// Replaces the mutable fields (trust policy, description, duration, tags).
    async fn update_role(&mut self, role: &Role) -> StoreResult<bool>;
    async fn delete_role(&mut self, account_id: &str, name: &str) -> StoreResult<bool>;

    // Temporary credentials.
    async fn insert_session(&mut self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&mut self, access_key_id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Deletes sessions that expired before `before`; returns how many.
    async fn delete_expired_sessions(&mut self, before: crate::domain::time::Millis) -> StoreResult<u64>;

    // Streams.
    async fn get_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<Option<Stream>>;
    async fn insert_stream(&mut self, stream: &Stream) -> StoreResult<()>;
    async fn update_stream(&mut self, stream: &Stream) -> StoreResult<()>;
    async fn delete_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<bool>;
    /// Up to `limit` streams with their insertion sequence, strictly after `after_seq` in the
    /// given order.
    async fn list_streams(
        &mut self,
        scope: &Scope,
        after_seq: Option<i64>,
        ascending: bool,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Stream)>>;

    // Things and thing groups (`domain::things`); names are unique in a scope.
    async fn get_thing(&mut self, scope: &Scope, name: &str) -> StoreResult<Option<Thing>>;
    async fn insert_thing(&mut self, thing: &Thing) -> StoreResult<()>;
    /// Replaces the mutable fields (type, attributes, version, update time).
    async fn update_thing(&mut self, thing: &Thing) -> StoreResult<()>;
    /// Removes a thing and its group memberships.
    async fn delete_thing(&mut self, scope: &Scope, name: &str) -> StoreResult<bool>;
    /// Things matching `filter` whose name sorts after `after_name`, by name, at most `limit`.
    async fn list_things(&mut self, scope: &Scope, filter: &ThingFilter, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<Thing>>;
    async fn get_thing_group(&mut self, scope: &Scope, name: &str) -> StoreResult<Option<ThingGroup>>;
    async fn insert_thing_group(&mut self, group: &ThingGroup) -> StoreResult<()>;
    /// Replaces the mutable fields (description, attributes, version, update time).
    async fn update_thing_group(&mut self, group: &ThingGroup) -> StoreResult<()>;
    /// Removes a group and its memberships.
    async fn delete_thing_group(&mut self, scope: &Scope, name: &str) -> StoreResult<bool>;
    /// Every group of a scope, by name.
    async fn list_thing_groups(&mut self, scope: &Scope) -> StoreResult<Vec<ThingGroup>>;
    /// The direct children of `parent` (the root groups when `None`), by name.
    async fn child_thing_groups(&mut self, scope: &Scope, parent: Option<&str>) -> StoreResult<Vec<ThingGroup>>;
    /// Puts a thing in a group; false when it already was in it.
    async fn add_thing_to_group(&mut self, scope: &Scope, group: &str, thing: &str, at: Millis) -> StoreResult<bool>;
    async fn remove_thing_from_group(&mut self, scope: &Scope, group: &str, thing: &str) -> StoreResult<bool>;
    /// Names of the things in `group` (and, when `recursive`, in its descendants), each once,
    /// by name, those after `after_name`, at most `limit`.
    async fn things_in_group(
        &mut self,
        scope: &Scope,
        group: &str,
        recursive: bool,
        after_name: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
    /// Names of the groups a thing is directly in, by name.
    async fn groups_of_thing(&mut self, scope: &Scope, thing: &str) -> StoreResult<Vec<String>>;

    // IoT jobs and their executions (`domain::jobs`); job IDs are unique in a scope.
    async fn insert_job(&mut self, job: &Job) -> StoreResult<()>;
    async fn get_job(&mut self, scope: &Scope, job_id: &str) -> StoreResult<Option<Job>>;
    /// Replaces status, spec and times.
    async fn update_job(&mut self, job: &Job) -> StoreResult<()>;
    /// Removes a job and its executions.
    async fn delete_job(&mut self, scope: &Scope, job_id: &str) -> StoreResult<bool>;
    /// Jobs matching `filter` with their insertion sequence, newest first, strictly before
    /// `before_seq`, at most `limit`.
    async fn list_jobs(&mut self, scope: &Scope, filter: &JobFilter, before_seq: Option<i64>, limit: i64) -> StoreResult<Vec<(i64, Job)>>;
    /// IN_PROGRESS jobs of every scope that are due at `now` (what the job engine advances),
    /// the longest due first, at most `limit`.
    ///
    /// A job is due from its creation, and again once `now` reaches what [`set_job_due`]
    /// last set. Without waiting for that, it becomes due at once, in the same unit of work,
    /// when one of its executions is inserted, changed or removed, and, for a CONTINUOUS job,
    /// when a thing is created or put in a group in its scope.
    ///
    /// [`set_job_due`]: StateTx::set_job_due
    async fn due_jobs(&mut self, now: Millis, limit: i64) -> StoreResult<Vec<Job>>;
    /// When the engine next has work for the job on its own (`None`: only once something
    /// changes, as [`StateTx::due_jobs`] says).
    async fn set_job_due(
        &mut self,
        scope: &Scope,
        job_id: &str,
        due: Option<Millis>,
    ) -> StoreResult<()>;
    async fn insert_job_execution(&mut self, e: &JobExecution) -> StoreResult<()>;
    /// Replaces status, details, times and version.
    async fn update_job_execution(&mut self, e: &JobExecution) -> StoreResult<()>;
    async fn delete_job_execution(&mut self, scope: &Scope, job_id: &str, thing: &str, execution_number: i64) -> StoreResult<bool>;
    /// The execution of a job on a thing with `execution_number`, or the newest one.
    async fn get_job_execution(&mut self, scope: &Scope, job_id: &str, thing: &str, execution_number: Option<i64>) -> StoreResult<Option<JobExecution>>;
    /// A job's executions in one of `statuses`, by thing name, those after `after_thing`, at
    /// most `limit`.
    async fn list_job_executions(&mut self, scope: &Scope, job_id: &str, statuses: &[ExecStatus], after_thing: Option<&str>, limit: i64) -> StoreResult<Vec<JobExecution>>;
    /// A thing's executions in one of `statuses` (of one job when `job_id`), newest first,
    /// those with an execution number below `before_number`, at most `limit`.
    async fn list_thing_job_executions(
        &mut self,
        scope: &Scope,
        thing: &str,
        statuses: &[ExecStatus],
        job_id: Option<&str>,
        before_number: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<JobExecution>>;
    /// How many executions of a job are in each status.
    async fn count_job_executions(&mut self, scope: &Scope, job_id: &str) -> StoreResult<Vec<(ExecStatus, i64)>>;
    /// One more than the highest execution number the thing has had (1 for the first).
    async fn next_execution_number(&mut self, scope: &Scope, thing: &str) -> StoreResult<i64>;

    // Buckets and the embedded store's object metadata.
    async fn insert_bucket(&mut self, bucket: &Bucket) -> StoreResult<()>;
    async fn get_bucket(&mut self, name: &str) -> StoreResult<Option<Bucket>>;
    async fn list_buckets(&mut self, account_id: &str) -> StoreResult<Vec<Bucket>>;
    /// Every bucket with a lifecycle configuration, of any account.
    async fn buckets_with_lifecycle(&mut self) -> StoreResult<Vec<Bucket>>;
    async fn delete_bucket(&mut self, name: &str) -> StoreResult<bool>;
    async fn set_bucket_config(&mut self, name: &str, policy: Option<&str>, lifecycle: Option<&str>) -> StoreResult<bool>;
    /// Inserts or replaces an object; returns the replaced object's metadata.
    async fn put_object(&mut self, meta: &ObjectMeta) -> StoreResult<Option<ObjectMeta>>;
    async fn get_object(&mut self, bucket: &str, key: &str) -> StoreResult<Option<ObjectMeta>>;
    async fn delete_object(&mut self, bucket: &str, key: &str) -> StoreResult<Option<ObjectMeta>>;
    /// Objects whose key starts with `prefix` and sorts (as bytes) after `after`, in key order.
    async fn list_objects(&mut self, bucket: &str, prefix: &str, after: Option<&str>, limit: i64) -> StoreResult<Vec<ObjectMeta>>;
    async fn insert_upload(&mut self, upload: &Upload) -> StoreResult<()>;
    async fn get_upload(&mut self, upload_id: &str) -> StoreResult<Option<Upload>>;
    /// Inserts or replaces a part; returns the replaced part.
    async fn put_part(&mut self, part: &Part) -> StoreResult<Option<Part>>;
    async fn list_parts(&mut self, upload_id: &str) -> StoreResult<Vec<Part>>;
    /// Removes an upload and its parts; returns the parts.
    async fn delete_upload(&mut self, upload_id: &str) -> StoreResult<Vec<Part>>;

    // The audit history.
    /// Appends a record; records are never changed or removed by the API.
    async fn append_event(&mut self, event: &AuditEvent) -> StoreResult<i64>;
    async fn lookup_events(&mut self, query: &EventQuery) -> StoreResult<Vec<StoredEvent>>;

    /// Records of an account and region after `after_seq`, in commit order.
    async fn events_since(&mut self, account_id: &str, region: &str, after_seq: i64, limit: i64) -> StoreResult<Vec<StoredEvent>>;
    /// The regions an account has records in.
    async fn event_regions(&mut self, account_id: &str) -> StoreResult<Vec<String>>;
    /// The newest record's sequence number (0 when there is none).
    async fn last_event_seq(&mut self) -> StoreResult<i64>;

    // Trails and their delivery progress.
    async fn insert_trail(&mut self, trail: &Trail) -> StoreResult<()>;
    async fn get_trail(&mut self, account_id: &str, home_region: &str, name: &str) -> StoreResult<Option<Trail>>;
    async fn update_trail(&mut self, trail: &Trail) -> StoreResult<()>;
    /// Removes a trail and its delivery cursors.
    async fn delete_trail(&mut self, account_id: &str, home_region: &str, name: &str) -> StoreResult<bool>;
    /// Every trail of an account, all regions.
    async fn list_trails(&mut self, account_id: &str) -> StoreResult<Vec<Trail>>;
    /// Every trail of every account that is logging or still owes records from before a stop.
    async fn logging_trails(&mut self) -> StoreResult<Vec<Trail>>;
    /// `(last_seq, pending)` of a trail's delivery from `region`.
    async fn get_cursor(&mut self, trail: &Trail, region: &str) -> StoreResult<Option<(i64, Option<String>)>>;
    async fn set_cursor(&mut self, trail: &Trail, region: &str, last_seq: i64, pending: Option<&str>) -> StoreResult<()>;

    // What digests cover.
    async fn insert_delivered_file(&mut self, trail: &Trail, region: &str, f: &DeliveredFile) -> StoreResult<()>;
    /// Files delivered for `trail` from `region` after file sequence `after`, in order.
    async fn delivered_files(&mut self, trail: &Trail, region: &str, after: i64) -> StoreResult<Vec<DeliveredFile>>;
    async fn get_digest_state(&mut self, trail: &Trail, region: &str) -> StoreResult<Option<String>>;
    async fn set_digest_state(&mut self, trail: &Trail, region: &str, state: &str) -> StoreResult<()>;

    // Digest signing keys.
    async fn insert_signing_key(&mut self, key: &SigningKey) -> StoreResult<()>;
    /// A region's keys, oldest first.
    async fn signing_keys(&mut self, region: &str) -> StoreResult<Vec<SigningKey>>;

    // Which OTA updates reference a stream (DeleteStream refuses while any does).
    async fn ota_updates_using_stream(&mut self, scope: &Scope, stream_id: &str) -> StoreResult<Vec<String>>;
    async fn add_ota_stream_use(&mut self, scope: &Scope, ota_update_id: &str, stream_id: &str) -> StoreResult<()>;

    // OTA updates (`domain::ota`); IDs are unique in a scope.
    async fn insert_ota_update(&mut self, update: &OtaUpdate) -> StoreResult<()>;
    async fn get_ota_update(&mut self, scope: &Scope, id: &str) -> StoreResult<Option<OtaUpdate>>;
    async fn update_ota_update(&mut self, update: &OtaUpdate) -> StoreResult<()>;
    /// Removes an update and the stream uses it held.
    async fn delete_ota_update(&mut self, scope: &Scope, id: &str) -> StoreResult<bool>;
    /// Updates (of one status when given) with their insertion sequence, newest first,
    /// strictly before `before_seq`, at most `limit`.
    async fn list_ota_updates(&mut self, scope: &Scope, status: Option<OtaStatus>, before_seq: Option<i64>, limit: i64) -> StoreResult<Vec<(i64, OtaUpdate)>>;
    /// The insertion sequence of the newest update stored (0 when there is none); an update
    /// inserted later gets a larger one. Where a pass of the state machine stops, so that
    /// updates created during it wait for the next pass instead of keeping it from coming
    /// back to older ones.
    async fn newest_ota_update_seq(&mut self) -> StoreResult<i64>;
    /// Updates of every scope the state machine still works on (CREATE_PENDING,
    /// CREATE_IN_PROGRESS, DELETE_IN_PROGRESS) with their insertion sequence, oldest first,
    /// strictly after `after_seq` and at most `through_seq`, at most `limit`.
    async fn unfinished_ota_updates(&mut self, after_seq: i64, through_seq: i64, limit: i64) -> StoreResult<Vec<(i64, OtaUpdate)>>;

    // SNS topics, subscriptions, deliveries and signing certificates.
    async fn insert_sns_topic(&mut self, topic: &SnsTopic) -> StoreResult<()>;
    async fn get_sns_topic(&mut self, account_id: &str, region: &str, name: &str) -> StoreResult<Option<SnsTopic>>;
    /// Replaces the topic's attributes, tags and counters.
    async fn update_sns_topic(&mut self, topic: &SnsTopic) -> StoreResult<bool>;
    /// Removes a topic with its subscriptions and their pending deliveries.
    async fn delete_sns_topic(&mut self, account_id: &str, region: &str, name: &str) -> StoreResult<bool>;
    /// Topics of an account and region by name, those after `after_name`, at most `limit`.
    async fn list_sns_topics(&mut self, account_id: &str, region: &str, after_name: Option<&str>, limit: i64) -> StoreResult<Vec<SnsTopic>>;
    async fn insert_sns_subscription(&mut self, sub: &SnsSubscription) -> StoreResult<()>;
    async fn get_sns_subscription(&mut self, arn: &str) -> StoreResult<Option<SnsSubscription>>;
    /// The subscription of `endpoint` by `protocol` to a topic, if any.
    async fn find_sns_subscription(&mut self, topic_arn: &str, protocol: &str, endpoint: &str) -> StoreResult<Option<SnsSubscription>>;
    async fn find_sns_subscription_by_token(&mut self, topic_arn: &str, token_sha256: &str) -> StoreResult<Option<SnsSubscription>>;
    /// Replaces the token, confirmation state and flags.
    async fn update_sns_subscription(&mut self, sub: &SnsSubscription) -> StoreResult<bool>;
    /// Removes a subscription and its pending deliveries.
    async fn delete_sns_subscription(&mut self, arn: &str) -> StoreResult<bool>;
    /// A topic's subscriptions by ARN, those after `after_arn`, at most `limit`.
    async fn list_sns_subscriptions_by_topic(&mut self, topic_arn: &str, after_arn: Option<&str>, limit: i64) -> StoreResult<Vec<SnsSubscription>>;
    /// The subscriptions an account made in a region, by ARN.
    async fn list_sns_subscriptions_by_owner(&mut self, owner: &str, region: &str, after_arn: Option<&str>, limit: i64) -> StoreResult<Vec<SnsSubscription>>;
    /// `(confirmed, pending)` subscriptions of a topic.
    async fn count_sns_subscriptions(&mut self, topic_arn: &str) -> StoreResult<(i64, i64)>;
    /// Removes unconfirmed subscriptions whose token expired before `before`; returns them.
    async fn delete_expired_sns_subscriptions(&mut self, before: Millis) -> StoreResult<Vec<SnsSubscription>>;
    /// Queues a delivery; returns its id.
    async fn insert_sns_delivery(&mut self, delivery: &SnsDelivery) -> StoreResult<i64>;
    /// Deliveries due at `now`, soonest first, at most `limit`.
    async fn due_sns_deliveries(&mut self, now: Millis, limit: i64) -> StoreResult<Vec<SnsDelivery>>;
    async fn reschedule_sns_delivery(&mut self, id: i64, attempts: i64, next_attempt_at: Millis) -> StoreResult<bool>;
    async fn delete_sns_delivery(&mut self, id: i64) -> StoreResult<bool>;
    /// When the next delivery is due, if any is queued.
    async fn next_sns_delivery_at(&mut self) -> StoreResult<Option<Millis>>;
    /// Refused as a conflict when the region already has one.
    async fn insert_sns_signing_cert(&mut self, cert: &SnsSigningCert) -> StoreResult<()>;
    async fn sns_signing_cert(&mut self, region: &str) -> StoreResult<Option<SnsSigningCert>>;
    async fn sns_signing_cert_by_fingerprint(&mut self, fingerprint: &str) -> StoreResult<Option<SnsSigningCert>>;
}

/// A unit of work. It runs inside a transaction; when it returns an error its writes are
/// rolled back, without affecting other units committed in the same batch. A backend may run
/// a write unit more than once before answering: once its writes (and those of the units it
/// was batched with) were undone, it runs again from the start, and its caller hears of the
/// last run only, so a unit acts only through its `StateTx` (domain code does no I/O of its
/// own anyway). (SQLite runs units without a savepoint each and redoes the transaction in the
/// rare case that one fails after writing; see `store/sqlite.rs`.)
pub type TxWork = Box<dyn for<'c> FnMut(&'c mut dyn StateTx) -> BoxFuture<'c, StoreResult<()>> + Send>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `work` in a read-write transaction; returns once it is durably committed.
    async fn write(&self, work: TxWork) -> StoreResult<()>;
    /// Runs `work` against a consistent snapshot; writes are not allowed. The snapshot may hold
    /// commits whose callers are still waiting for them to become durable: a reader that acts
    /// outside the store on what it saw without writing first calls [`Store::settle`] before.
    async fn read(&self, work: TxWork) -> StoreResult<()>;
    /// Returns once everything a read before this call could have seen is durable. (A
    /// backend whose commits become visible only once durable has nothing to wait for.)
    async fn settle(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Durably appends one record on its own (a read-only call's or a failure's). The same as
    /// a [`Store::write`] unit that only calls [`StateTx::append_event`]; a backend may batch
    /// such appends more cheaply than general units, as SQLite does.
    async fn append(&self, event: AuditEvent) -> StoreResult<()> {
        let event = Arc::new(event);
        self.write(Box::new(move |tx| {
            let event = event.clone();
            Box::pin(async move {
                tx.append_event(&event).await?;
                Ok(())
            })
        }))
        .await
    }
    /// A short name for logs ("sqlite", "postgres").
    fn backend(&self) -> &'static str;
}

/// Runs a typed unit of work in a read-write transaction and returns its result once the
/// transaction committed. A unit that returns `Err(E)` has its writes rolled back. The store
/// may run the unit again (see [`TxWork`]): each run starts from a clone of `f`, made here, on
/// the caller's task, rather than on the store's writer.
pub async fn write<T, E, F>(store: &dyn Store, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn StateTx) -> BoxFuture<'c, Result<T, E>> + Clone + Send + 'static,
{
    let spare = f.clone();
    let mut first = Some(f);
    run_typed(store, move || Some(first.take().unwrap_or_else(|| spare.clone())), true).await
}

/// Runs a typed unit of work against a read snapshot.
pub async fn read<T, E, F>(store: &dyn Store, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn StateTx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    let mut once = Some(f);
    run_typed(store, move || once.take(), false).await
}

/// Runs the unit `next` hands out (a fresh one for each run, `None` if it cannot run again)
/// and returns what its last run returned.
async fn run_typed<T, E, F>(store: &dyn Store, mut next: impl FnMut() -> Option<F> + Send + 'static, writable: bool) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: for<'c> FnOnce(&'c mut dyn StateTx) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
{
    let last: Arc<std::sync::Mutex<Option<Result<T, E>>>> = Arc::new(std::sync::Mutex::new(None));
    let slot = last.clone();
    let work: TxWork = Box::new(move |tx| {
        let f = next();
        let slot = slot.clone();
        Box::pin(async move {
            let Some(f) = f else { return Err(StoreError::Database("a unit of work that can run once was asked to run again".into())) };
            let result = f(tx).await;
            // An Err result must not keep its partial writes: report it as a failed unit so
            // the backend rolls it back, but still hand the error to the caller.
            let failed = result.is_err();
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            if failed { Err(StoreError::Conflict("unit of work returned an error".into())) } else { Ok(()) }
        })
    });
    let outcome = if writable { store.write(work).await } else { store.read(work).await };
    let result = last.lock().unwrap_or_else(|p| p.into_inner()).take();
    match result {
        // The unit's own error wins over the rollback marker it caused.
        Some(Err(e)) => Err(e),
        Some(Ok(v)) => outcome.map(|_| v).map_err(E::from),
        None => Err(E::from(outcome.err().unwrap_or_else(|| StoreError::Database("unit of work did not run".into())))),
    }
}
