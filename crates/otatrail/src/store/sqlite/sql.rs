//! A small statement API over a synchronous `rusqlite` connection.
//!
//! Statements run on the calling thread, to completion, with no handoff to another thread:
//! the writer thread runs a whole batch this way and a read runs on the task that asked for
//! it (see `super`). The builder shape (`query(sql).bind(v).fetch_all(conn)`) returns ready
//! futures so the `async` [`StateTx`](crate::store::StateTx) methods can `.await` it; nothing
//! ever waits.

use std::borrow::Cow;
use std::future::{Ready, ready};
use std::sync::Arc;

use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};

pub type Error = rusqlite::Error;

/// One result row, owned: its column names (shared by the rows of a result) and values.
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of column `name` as a `T`.
    pub fn try_get<T: FromSql>(&self, name: &str) -> Result<T, Error> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::InvalidColumnName(name.to_string()))?;
        let value = ValueRef::from(&self.values[i]);
        T::column_result(value).map_err(|e| Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e)))
    }
}

/// What a statement changed.
pub struct Done {
    rows_affected: u64,
    last_insert_rowid: i64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }

    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid
    }
}

/// A statement and its arguments.
pub struct Query<'q> {
    sql: Cow<'q, str>,
    args: Vec<Value>,
    /// A bind that could not be converted; reported when the statement runs.
    bad_bind: Option<Error>,
    /// Kept prepared between runs. Generated statements (a varying number of rows or
    /// placeholders) are not, so they cannot push the fixed ones out of the cache.
    cached: bool,
}

impl Query<'_> {
    /// The statement's text.
    #[cfg(test)]
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

pub fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query { sql: sql.into(), args: Vec::new(), bad_bind: None, cached: true }
}

/// An owned copy of column (or argument) `i`'s value.
fn owned(v: ValueRef<'_>, i: usize) -> Result<Value, Error> {
    let kind = v.data_type();
    Value::try_from(v).map_err(|e| Error::FromSqlConversionFailure(i, kind, Box::new(e)))
}

fn to_value<T: ToSql>(v: T) -> Result<Value, Error> {
    Ok(match v.to_sql()? {
        ToSqlOutput::Borrowed(r) => owned(r, 0)?,
        ToSqlOutput::Owned(v) => v,
        _ => return Err(Error::ToSqlConversionFailure("unsupported argument kind".into())),
    })
}

impl<'q> Query<'q> {
    pub fn bind<T: ToSql>(mut self, v: T) -> Self {
        self.push(v);
        self
    }

    fn push<T: ToSql>(&mut self, v: T) {
        match to_value(v) {
            Ok(v) => self.args.push(v),
            Err(e) => {
                self.bad_bind.get_or_insert(e);
            }
        }
    }

    /// Runs the statement, handing at most `max_rows` rows to `on_row`; a statement cut short
    /// is reset, not stepped to its end.
    fn run<R>(self, conn: &mut Connection, max_rows: usize, mut on_row: impl FnMut(&rusqlite::Row<'_>) -> Result<R, Error>) -> Result<(Vec<R>, Done), Error> {
        if let Some(e) = self.bad_bind {
            return Err(e);
        }
        let conn: &Connection = conn;
        let (mut cached, mut fresh);
        let stmt: &mut rusqlite::Statement<'_> = if self.cached {
            cached = conn.prepare_cached(&self.sql)?;
            &mut cached
        } else {
            fresh = conn.prepare(&self.sql)?;
            &mut fresh
        };
        for (i, v) in self.args.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, v)?;
        }
        let mut out = Vec::new();
        // Stepping through every row also runs statements that return none (and those, like
        // `INSERT … RETURNING`, that change rows and return some).
        let mut rows = stmt.raw_query();
        while out.len() < max_rows {
            let Some(row) = rows.next()? else { break };
            out.push(on_row(row)?);
        }
        drop(rows);
        let done = Done { rows_affected: conn.changes(), last_insert_rowid: conn.last_insert_rowid() };
        Ok((out, done))
    }

    fn rows(self, conn: &mut Connection, max_rows: usize) -> Result<Vec<Row>, Error> {
        // The names are the statement's: taken once, with its first row.
        let mut names: Option<Arc<[String]>> = None;
        let (rows, _) = self.run(conn, max_rows, |row| {
            let columns = names.get_or_insert_with(|| row.as_ref().column_names().into_iter().map(str::to_string).collect()).clone();
            let values = (0..columns.len()).map(|i| owned(row.get_ref(i)?, i)).collect::<Result<_, _>>()?;
            Ok(Row { columns, values })
        })?;
        Ok(rows)
    }

    pub fn execute(self, conn: &mut Connection) -> Ready<Result<Done, Error>> {
        ready(self.run(conn, usize::MAX, |_| Ok(())).map(|(_, done)| done))
    }

    /// Every row, each turned into an `R` by `map` straight from SQLite's columns (by index),
    /// without the owned [`Row`] in between: for results read often and in bulk, where copying
    /// every value twice (into the row, then out of it) showed in profiles.
    pub fn fetch_map<R>(self, conn: &mut Connection, map: impl FnMut(&rusqlite::Row<'_>) -> Result<R, Error>) -> Ready<Result<Vec<R>, Error>> {
        ready(self.run(conn, usize::MAX, map).map(|(rows, _)| rows))
    }

    pub fn fetch_all(self, conn: &mut Connection) -> Ready<Result<Vec<Row>, Error>> {
        ready(self.rows(conn, usize::MAX))
    }

    pub fn fetch_optional(self, conn: &mut Connection) -> Ready<Result<Option<Row>, Error>> {
        ready(self.rows(conn, 1).map(|rows| rows.into_iter().next()))
    }

    pub fn fetch_one(self, conn: &mut Connection) -> Ready<Result<Row, Error>> {
        ready(self.rows(conn, 1).and_then(|rows| rows.into_iter().next().ok_or(Error::QueryReturnedNoRows)))
    }
}

/// Builds a statement with a varying number of placeholders.
pub struct QueryBuilder {
    sql: String,
    query: Query<'static>,
}

impl QueryBuilder {
    pub fn new(sql: impl Into<String>) -> Self {
        Self { sql: sql.into(), query: Query { sql: Cow::Borrowed(""), args: Vec::new(), bad_bind: None, cached: false } }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub fn push_bind<T: ToSql>(&mut self, v: T) -> &mut Self {
        self.sql.push('?');
        self.query.push(v);
        self
    }

    /// Binds values separated by `separator`.
    pub fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated { builder: self, separator, first: true }
    }

    pub fn build(&mut self) -> Query<'static> {
        let mut q = std::mem::replace(&mut self.query, Query { sql: Cow::Borrowed(""), args: Vec::new(), bad_bind: None, cached: false });
        q.sql = Cow::Owned(std::mem::take(&mut self.sql));
        q
    }
}

pub struct Separated<'b> {
    builder: &'b mut QueryBuilder,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    pub fn push_bind<T: ToSql>(&mut self, v: T) -> &mut Self {
        if !self.first {
            self.builder.sql.push_str(self.separator);
        }
        self.first = false;
        self.builder.push_bind(v);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_builds_and_reads_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, flag INTEGER)")
            .execute(&mut conn)
            .into_inner()
            .unwrap();
        let mut qb = QueryBuilder::new("INSERT INTO t (name, flag) VALUES (");
        let mut row = qb.separated(", ");
        row.push_bind("a").push_bind(true);
        qb.push("), (");
        qb.separated(", ").push_bind("b").push_bind(false);
        qb.push("), (");
        qb.separated(", ").push_bind("c").push_bind(true);
        qb.push(")");
        let done = qb.build().execute(&mut conn).into_inner().unwrap();
        assert_eq!((done.rows_affected(), done.last_insert_rowid()), (3, 3));
        // fetch_optional and fetch_one stop at the first row; the statement is reusable after.
        for _ in 0..2 {
            let first = query("SELECT name, flag FROM t ORDER BY id").fetch_optional(&mut conn).into_inner().unwrap().unwrap();
            assert_eq!((first.try_get::<String>("name").unwrap(), first.try_get::<bool>("flag").unwrap()), ("a".into(), true));
        }
        let mut qb = QueryBuilder::new("SELECT name FROM t WHERE id IN (");
        let mut list = qb.separated(", ");
        list.push_bind(2).push_bind(3);
        qb.push(") ORDER BY id");
        let rows = qb.build().fetch_all(&mut conn).into_inner().unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.try_get("name").unwrap()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(rows[0].try_get::<String>("missing").is_err());
        let none = query("SELECT name FROM t WHERE id = ?").bind(9).fetch_optional(&mut conn).into_inner().unwrap();
        assert!(none.is_none());
        assert!(matches!(query("SELECT name FROM t WHERE id = ?").bind(9).fetch_one(&mut conn).into_inner(), Err(Error::QueryReturnedNoRows)));
    }
}
