//! SQLite statements of the IoT registry (things, thing groups, memberships); the
//! [`StateTx`](crate::store::StateTx) methods of [`super::SqliteTx`] call these.

use rusqlite::Connection;
use super::sql::{Row, query};

use super::{db_err, extended_code, from_json, get, json, unique_violation};
use crate::domain::Scope;
use crate::domain::things::{Thing, ThingFilter, ThingGroup};
use crate::domain::time::Millis;
use crate::store::{StoreError, StoreResult};

fn thing_from_row(r: &Row) -> StoreResult<Thing> {
    Ok(Thing {
        scope: Scope::new(get::<String>(r, "account_id")?, get::<String>(r, "region")?),
        name: get(r, "thing_name")?,
        thing_id: get(r, "thing_id")?,
        thing_type_name: get(r, "thing_type_name")?,
        attributes: from_json(&get::<String>(r, "attributes")?)?,
        version: get(r, "version")?,
        created_at: Millis(get(r, "created_at")?),
        updated_at: Millis(get(r, "updated_at")?),
    })
}

fn group_from_row(r: &Row) -> StoreResult<ThingGroup> {
    Ok(ThingGroup {
        scope: Scope::new(get::<String>(r, "account_id")?, get::<String>(r, "region")?),
        name: get(r, "group_name")?,
        group_id: get(r, "group_id")?,
        parent: get(r, "parent_name")?,
        description: get(r, "description")?,
        attributes: from_json(&get::<String>(r, "attributes")?)?,
        tags: from_json(&get::<String>(r, "tags")?)?,
        version: get(r, "version")?,
        created_at: Millis(get(r, "created_at")?),
        updated_at: Millis(get(r, "updated_at")?),
    })
}

pub(super) async fn get_thing(conn: &mut Connection, scope: &Scope, name: &str) -> StoreResult<Option<Thing>> {
    let row = query("SELECT * FROM things WHERE account_id = ? AND region = ? AND thing_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(thing_from_row).transpose()
}

pub(super) async fn insert_thing(conn: &mut Connection, t: &Thing) -> StoreResult<()> {
    query(
        "INSERT INTO things (account_id, region, thing_name, thing_id, thing_type_name, attributes, version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.scope.account_id)
    .bind(&t.scope.region)
    .bind(&t.name)
    .bind(&t.thing_id)
    .bind(&t.thing_type_name)
    .bind(json(&t.attributes)?)
    .bind(t.version)
    .bind(t.created_at.0)
    .bind(t.updated_at.0)
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    Ok(())
}

pub(super) async fn update_thing(conn: &mut Connection, t: &Thing) -> StoreResult<()> {
    let r = query(
        "UPDATE things SET thing_type_name = ?, attributes = ?, version = ?, updated_at = ? \
         WHERE account_id = ? AND region = ? AND thing_name = ?",
    )
    .bind(&t.thing_type_name)
    .bind(json(&t.attributes)?)
    .bind(t.version)
    .bind(t.updated_at.0)
    .bind(&t.scope.account_id)
    .bind(&t.scope.region)
    .bind(&t.name)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("thing {} vanished during update", t.name)));
    }
    Ok(())
}

pub(super) async fn delete_thing(conn: &mut Connection, scope: &Scope, name: &str) -> StoreResult<bool> {
    // Memberships go with the thing (ON DELETE CASCADE); deleting them first keeps that true
    // on a connection without foreign keys too.
    query("DELETE FROM thing_group_members WHERE account_id = ? AND region = ? AND thing_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let r = query("DELETE FROM things WHERE account_id = ? AND region = ? AND thing_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

/// ListThings' query, with `$type_filter` after the name condition.
macro_rules! list_things_sql {
    ($type_filter:literal) => {
        concat!(
            "SELECT * FROM things t WHERE account_id = ? AND region = ? AND thing_name > ?",
            $type_filter,
            " AND (? IS NULL OR EXISTS (SELECT 1 FROM json_each(t.attributes) a WHERE a.key = ? \
              AND (? IS NULL OR (CASE WHEN ? THEN substr(a.value, 1, length(?)) = ? ELSE a.value = ? END)))) \
             ORDER BY thing_name LIMIT ?"
        )
    };
}

/// ListThings' query without and with a type filter: with one, it reads `things_by_type` (a
/// partial index: untyped things, most of them, are not in it), in name order.
pub(super) const LIST_THINGS_SQL: [&str; 2] = [list_things_sql!(""), list_things_sql!(" AND thing_type_name = ?")];

pub(super) async fn list_things(
    conn: &mut Connection,
    scope: &Scope,
    filter: &ThingFilter,
    after_name: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<Thing>> {
    let mut q = query(LIST_THINGS_SQL[filter.thing_type_name.is_some() as usize])
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(after_name.unwrap_or(""));
    if let Some(t) = &filter.thing_type_name {
        q = q.bind(t);
    }
    let rows = q
        .bind(&filter.attribute_name)
        .bind(&filter.attribute_name)
        .bind(&filter.attribute_value)
        .bind(filter.value_prefix)
        .bind(&filter.attribute_value)
        .bind(&filter.attribute_value)
        .bind(&filter.attribute_value)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(thing_from_row).collect()
}

pub(super) async fn get_thing_group(conn: &mut Connection, scope: &Scope, name: &str) -> StoreResult<Option<ThingGroup>> {
    let row = query("SELECT * FROM thing_groups WHERE account_id = ? AND region = ? AND group_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref().map(group_from_row).transpose()
}

pub(super) async fn insert_thing_group(conn: &mut Connection, g: &ThingGroup) -> StoreResult<()> {
    query(
        "INSERT INTO thing_groups (account_id, region, group_name, group_id, parent_name, description, attributes, tags, \
         version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&g.scope.account_id)
    .bind(&g.scope.region)
    .bind(&g.name)
    .bind(&g.group_id)
    .bind(&g.parent)
    .bind(&g.description)
    .bind(json(&g.attributes)?)
    .bind(json(&g.tags)?)
    .bind(g.version)
    .bind(g.created_at.0)
    .bind(g.updated_at.0)
    .execute(&mut *conn)
    .await
    .map_err(unique_violation)?;
    Ok(())
}

pub(super) async fn update_thing_group(conn: &mut Connection, g: &ThingGroup) -> StoreResult<()> {
    let r = query(
        "UPDATE thing_groups SET description = ?, attributes = ?, tags = ?, version = ?, updated_at = ? \
         WHERE account_id = ? AND region = ? AND group_name = ?",
    )
    .bind(&g.description)
    .bind(json(&g.attributes)?)
    .bind(json(&g.tags)?)
    .bind(g.version)
    .bind(g.updated_at.0)
    .bind(&g.scope.account_id)
    .bind(&g.scope.region)
    .bind(&g.name)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("thing group {} vanished during update", g.name)));
    }
    Ok(())
}

pub(super) async fn delete_thing_group(conn: &mut Connection, scope: &Scope, name: &str) -> StoreResult<bool> {
    query("DELETE FROM thing_group_members WHERE account_id = ? AND region = ? AND group_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let r = query("DELETE FROM thing_groups WHERE account_id = ? AND region = ? AND group_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(|e| match extended_code(&e) {
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::Conflict(format!("thing group {name} still has child groups")),
            _ => db_err(e),
        })?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn list_thing_groups(conn: &mut Connection, scope: &Scope) -> StoreResult<Vec<ThingGroup>> {
    let rows = query("SELECT * FROM thing_groups WHERE account_id = ? AND region = ? ORDER BY group_name")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
    rows.iter().map(group_from_row).collect()
}

pub(super) async fn child_thing_groups(conn: &mut Connection, scope: &Scope, parent: Option<&str>) -> StoreResult<Vec<ThingGroup>> {
    let rows = query(
        "SELECT * FROM thing_groups WHERE account_id = ? AND region = ? AND parent_name IS ? ORDER BY group_name",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(parent)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(group_from_row).collect()
}

pub(super) async fn add_thing_to_group(
    conn: &mut Connection,
    scope: &Scope,
    group: &str,
    thing: &str,
    at: Millis,
) -> StoreResult<bool> {
    let r = query(
        "INSERT OR IGNORE INTO thing_group_members (account_id, region, group_name, thing_name, added_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(group)
    .bind(thing)
    .bind(at.0)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn remove_thing_from_group(conn: &mut Connection, scope: &Scope, group: &str, thing: &str) -> StoreResult<bool> {
    let r = query("DELETE FROM thing_group_members WHERE account_id = ? AND region = ? AND group_name = ? AND thing_name = ?")
        .bind(&scope.account_id)
        .bind(&scope.region)
        .bind(group)
        .bind(thing)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn things_in_group(
    conn: &mut Connection,
    scope: &Scope,
    group: &str,
    recursive: bool,
    after_name: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<String>> {
    let rows = query(
        "WITH RECURSIVE tree(name) AS ( \
             SELECT ? \
             UNION \
             SELECT g.group_name FROM thing_groups g JOIN tree ON g.parent_name = tree.name \
             WHERE g.account_id = ? AND g.region = ? AND ? \
         ) \
         SELECT DISTINCT m.thing_name FROM thing_group_members m \
         WHERE m.account_id = ? AND m.region = ? AND m.group_name IN (SELECT name FROM tree) AND m.thing_name > ? \
         ORDER BY m.thing_name LIMIT ?",
    )
    .bind(group)
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(recursive)
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(after_name.unwrap_or(""))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| get(r, "thing_name")).collect()
}

pub(super) async fn groups_of_thing(conn: &mut Connection, scope: &Scope, thing: &str) -> StoreResult<Vec<String>> {
    let rows = query(
        "SELECT group_name FROM thing_group_members WHERE account_id = ? AND region = ? AND thing_name = ? ORDER BY group_name",
    )
    .bind(&scope.account_id)
    .bind(&scope.region)
    .bind(thing)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(|r| get(r, "group_name")).collect()
}
