//! SQLite statements of the audit history's lookups: copying records' lookup keys into the
//! side tables (migration 0009) and LookupEvents over them and the records not yet copied;
//! the [`StateTx`](crate::store::StateTx) methods of [`super::SqliteTx`] and the writer call
//! these.

use std::time::Duration;

use rusqlite::Connection;

use super::sql::{self, QueryBuilder, query};
use super::{db_err, event_columns, get, read_err, stored_event};
use crate::store::{EventQuery, LookupKey, StoreResult, StoredEvent};

/// Column of `event_keys` a lookup attribute filters on.
fn key_column(key: LookupKey) -> &'static str {
    match key {
        LookupKey::EventId => "event_id",
        LookupKey::EventName => "event_name",
        LookupKey::ReadOnly => "read_only",
        LookupKey::Username => "username",
        LookupKey::EventSource => "event_source",
        LookupKey::AccessKeyId => "access_key_id",
        LookupKey::ResourceType => "resource_type",
        LookupKey::ResourceName => "resource_name",
    }
}

/// A LookupEvents page from `from`, whose `scope` alias carries account, region, time and
/// sequence, past sequence number `after` if given; `filter` (with its one parameter, `value`)
/// narrows it. Newest first. (Kept prepared: a few dozen texts in all.)
pub(super) fn lookup_query<'q>(from: &str, scope: &str, after: Option<i64>, filter: &str, q: &'q EventQuery, value: Option<&'q String>) -> sql::Query<'q> {
    let past = if after.is_some() { format!(" AND {scope}.seq > ?") } else { String::new() };
    let sql = format!(
        "SELECT {} FROM {from} WHERE {scope}.account_id = ? AND {scope}.region = ? AND {scope}.event_time >= ? AND {scope}.event_time <= ? \
         AND ({scope}.event_time < ? OR ({scope}.event_time = ? AND {scope}.seq < ?)){past}{filter} ORDER BY {scope}.event_time DESC, {scope}.seq DESC LIMIT ?",
        event_columns!("e.")
    );
    let (before_t, before_seq) = q.before.map(|(t, s)| (t.0, s)).unwrap_or((i64::MAX, i64::MAX));
    let mut query = query(sql)
        .bind(&q.account_id)
        .bind(&q.region)
        .bind(q.start.map(|t| t.0).unwrap_or(i64::MIN))
        .bind(q.end.map(|t| t.0).unwrap_or(i64::MAX))
        .bind(before_t)
        .bind(before_t)
        .bind(before_seq);
    if let Some(after) = after {
        query = query.bind(after);
    }
    if let (Some((key, _)), Some(value)) = (&q.attribute, value) {
        query = match key {
            LookupKey::ReadOnly => query.bind(value.eq_ignore_ascii_case("true")),
            _ => query.bind(value.clone()),
        };
    }
    query.bind(q.limit)
}

/// Records whose keys the writer copies at a time while it waits for the disk to sync its
/// previous commit (and has no unit to run): small, so that a unit arriving meanwhile waits
/// for at most one slice (under a millisecond), and the copy rides on a commit that was going
/// to be made anyway. Only whole slices: each copy rewrites the last page or two of nine
/// indexes, whatever it copies, and copying the two or three records of a quiet moment's
/// commit would do that per commit. 256 rather than 64: a fifth fewer pages written per
/// CreateThing at full load (its 64 clients: 55 rather than 60 µs of server CPU a call), the
/// p99 at full and at half load unchanged.
pub(super) const INDEX_SLICE: i64 = 256;
/// How long the writer lets records wait for their keys at most: when the slices fall behind
/// (or the writer never waits for a sync), it copies a backlog of up to [`INDEX_BATCH`] before a
/// batch's units. LookupEvents reads the records after the last copied one directly: this
/// bounds how many there can be (about this long's worth of calls).
pub(super) const INDEX_EVERY: Duration = Duration::from_millis(200);
/// Records whose keys one backlog copy takes at most.
pub(super) const INDEX_BATCH: i64 = 8192;

/// Copies the lookup keys of the records not yet in `event_keys`, oldest first, up to
/// `at_most`, and those of their resources; none unless at least `at_least` may be waiting
/// (the gap between the newest record and the newest copied one). Runs in the writer's open
/// transaction: between units, never inside one, so a record whose unit is rolled back is never
/// copied, and the copied records are one unbroken run of sequence numbers (the copy commits
/// or is lost with the records it read).
pub(super) fn index_backlog(conn: &Connection, at_least: i64, at_most: i64) -> StoreResult<usize> {
    let (from, newest): (i64, i64) = conn
        .prepare_cached("SELECT (SELECT COALESCE(MAX(seq), 0) FROM event_keys), (SELECT COALESCE(MAX(seq), 0) FROM events)")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db_err)?;
    if newest - from < at_least.max(1) {
        return Ok(0);
    }
    let copied = conn
        .prepare_cached(
            "INSERT INTO event_keys SELECT seq, account_id, region, event_time, event_name, event_source, read_only, username, access_key_id \
             FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .and_then(|mut s| s.execute(rusqlite::params![from, at_most]))
        .map_err(db_err)?;
    if copied > 0 {
        // `seq` is the table's rowid.
        let to = conn.last_insert_rowid();
        conn.prepare_cached(
            "INSERT INTO event_resource_keys SELECT seq, account_id, region, event_time, resource_type, resource_name \
             FROM event_resources WHERE seq > ? AND seq <= ? ORDER BY seq, rowid",
        )
        .and_then(|mut s| s.execute(rusqlite::params![from, to]))
        .map_err(db_err)?;
    }
    Ok(copied)
}

pub(super) async fn lookup_events(conn: &mut Connection, q: &EventQuery) -> StoreResult<Vec<StoredEvent>> {
    // Ordered by an index and cut off by LIMIT: no DISTINCT, which would make SQLite
    // collect every matching row first. Only a resource filter can return an event twice
    // (two resources of one event matching); those repeats are dropped below, which can
    // make a page shorter but never skips an event.
    let events = match &q.attribute {
        // The records' own unique index.
        Some((LookupKey::EventId, id)) => {
            lookup_query("events e", "e", None, " AND e.event_id = ?", q, Some(id)).fetch_map(&mut *conn, stored_event).await.map_err(read_err)?
        }
        attribute => {
            // Records up to `indexed` have their keys in the side tables (migration 0009);
            // the few after it are read directly, through the records' sequence index.
            let row = query("SELECT COALESCE(MAX(seq), 0) AS s FROM event_keys").fetch_one(&mut *conn).await.map_err(db_err)?;
            let indexed: i64 = get(&row, "s")?;
            let key = attribute.as_ref().map(|(k, _)| *k);
            let on_resources = matches!(key, Some(LookupKey::ResourceType | LookupKey::ResourceName));
            let (keys, newest, newest_alias) = if on_resources {
                ("event_resource_keys k JOIN events e ON e.seq = k.seq", "events e JOIN event_resources r ON r.seq = e.seq", "r")
            } else {
                ("event_keys k JOIN events e ON e.seq = k.seq", "events e", "e")
            };
            let filter = |alias: &str| key.map(|k| format!(" AND {alias}.{} = ?", key_column(k))).unwrap_or_default();
            let value = attribute.as_ref().map(|(_, v)| v);
            let mut events = lookup_query(keys, "k", None, &filter("k"), q, value).fetch_map(&mut *conn, stored_event).await.map_err(read_err)?;
            events.extend(
                lookup_query(newest, "e", Some(indexed), &filter(newest_alias), q, value)
                    .fetch_map(&mut *conn, stored_event)
                    .await
                    .map_err(read_err)?,
            );
            // Newest first across both; the page's limit over both.
            events.sort_by(|a, b| (b.event_time, b.seq).cmp(&(a.event_time, a.seq)));
            events.truncate(q.limit.max(0) as usize);
            events
        }
    };
    let mut seen = std::collections::HashSet::with_capacity(events.len());
    let mut picked: Vec<StoredEvent> = events.into_iter().filter(|e| seen.insert(e.seq)).collect();
    // The resources of every returned event in one query.
    let mut resources: std::collections::HashMap<i64, Vec<(String, String)>> = std::collections::HashMap::new();
    if !picked.is_empty() {
        let mut qb = QueryBuilder::new(
            "SELECT seq, resource_type, resource_name FROM event_resources WHERE seq IN (",
        );
        let mut list = qb.separated(", ");
        for e in &picked {
            list.push_bind(e.seq);
        }
        qb.push(") ORDER BY seq, rowid");
        for r in qb.build().fetch_all(&mut *conn).await.map_err(db_err)? {
            resources.entry(get(&r, "seq")?).or_default().push((get(&r, "resource_type")?, get(&r, "resource_name")?));
        }
    }
    for e in &mut picked {
        e.resources = resources.remove(&e.seq).unwrap_or_default();
    }
    Ok(picked)
}
