//! SQLite statements of OTA updates; the [`StateTx`](crate::store::StateTx) methods of
//! [`super::SqliteTx`] call these.

use rusqlite::Connection;
use super::sql::{Row, query};

use super::{db_err, from_json, get, json, unique_violation};
use crate::domain::Scope;
use crate::domain::ota::{OtaStatus, OtaUpdate};
use crate::domain::time::Millis;
use crate::store::{StoreError, StoreResult};

fn from_row(r: &Row) -> StoreResult<(i64, OtaUpdate)> {
    let status: String = get(r, "status")?;
    Ok((
        get(r, "seq")?,
        OtaUpdate {
            scope: Scope::new(get::<String>(r, "account_id")?, get::<String>(r, "region")?),
            ota_update_id: get(r, "ota_update_id")?,
            status: OtaStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("OTA update status {status}")))?,
            spec: from_json(&get::<String>(r, "spec")?)?,
            created_at: Millis(get(r, "created_at")?),
            updated_at: Millis(get(r, "updated_at")?),
        },
    ))
}

pub(super) async fn insert(conn: &mut Connection, u: &OtaUpdate) -> StoreResult<()> {
    query(
        "INSERT INTO ota_updates (account_id, region, ota_update_id, status, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&u.scope.account_id)
    .bind(&u.scope.region)
    .bind(&u.ota_update_id)
    .bind(u.status.as_str())
    .bind(json(&u.spec)?)
    .bind(u.created_at.0)
    .bind(u.updated_at.0)
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    Ok(())
}

pub(super) async fn get_one(conn: &mut Connection, scope: &Scope, id: &str) -> StoreResult<Option<OtaUpdate>> {
    let row = query("SELECT * FROM ota_updates WHERE account_id = ? AND region = ? AND ota_update_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(from_row).transpose().map(|o| o.map(|(_, u)| u))
}

pub(super) async fn update(conn: &mut Connection, u: &OtaUpdate) -> StoreResult<()> {
    let r = query("UPDATE ota_updates SET status = ?, spec = ?, updated_at = ? WHERE account_id = ? AND region = ? AND ota_update_id = ?")
        .bind(u.status.as_str())
        .bind(json(&u.spec)?)
        .bind(u.updated_at.0)
        .bind(&u.scope.account_id)
        .bind(&u.scope.region)
        .bind(&u.ota_update_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("OTA update {} vanished during update", u.ota_update_id)));
    }
    Ok(())
}

/// Removes the update and the stream uses it held.
pub(super) async fn delete(conn: &mut Connection, scope: &Scope, id: &str) -> StoreResult<bool> {
    query("DELETE FROM ota_stream_uses WHERE account_id = ? AND region = ? AND ota_update_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let r = query("DELETE FROM ota_updates WHERE account_id = ? AND region = ? AND ota_update_id = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn list(
    conn: &mut Connection,
    scope: &Scope,
    status: Option<OtaStatus>,
    before_seq: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<(i64, OtaUpdate)>> {
    let rows = query(
        "SELECT * FROM ota_updates WHERE account_id = ? AND region = ? AND (? IS NULL OR status = ?) AND (? IS NULL OR seq < ?) \
         ORDER BY seq DESC LIMIT ?",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(status.map(|s| s.as_str()))
    .bind(status.map(|s| s.as_str()))
    .bind(before_seq)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// `seq` is AUTOINCREMENT: never handed out again, so an update inserted later is above any
/// bound taken from it now.
pub(super) async fn newest_seq(conn: &mut Connection) -> StoreResult<i64> {
    let row = query("SELECT COALESCE(MAX(seq), 0) AS newest FROM ota_updates").fetch_one(&mut *conn).await.map_err(db_err)?;
    get(&row, "newest")
}

pub(super) async fn unfinished(conn: &mut Connection, after_seq: i64, through_seq: i64, limit: i64) -> StoreResult<Vec<(i64, OtaUpdate)>> {
    let rows = query(
        "SELECT * FROM ota_updates WHERE status IN ('CREATE_PENDING', 'CREATE_IN_PROGRESS', 'DELETE_IN_PROGRESS') AND seq > ? AND seq <= ? \
         ORDER BY seq LIMIT ?",
    )
    .bind(after_seq)
    .bind(through_seq)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(from_row).collect()
}
