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

    fn run<R>(self, conn: &mut Connection, mut on_row: impl FnMut(Arc<[String]>, &rusqlite::Row<'_>) -> Result<R, Error>) -> Result<(Vec<R>, Done), Error> {
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
        let columns: Arc<[String]> = stmt.column_names().into_iter().map(str::to_string).collect();
        let mut out = Vec::new();
        // Stepping through every row also runs statements that return none (and those, like
        // `INSERT … RETURNING`, that change rows and return some).
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            out.push(on_row(columns.clone(), row)?);
        }
        drop(rows);
        let done = Done { rows_affected: conn.changes(), last_insert_rowid: conn.last_insert_rowid() };
        Ok((out, done))
    }

    fn rows(self, conn: &mut Connection) -> Result<Vec<Row>, Error> {
        let (rows, _) = self.run(conn, |columns, row| {
            let values = (0..columns.len()).map(|i| owned(row.get_ref(i)?, i)).collect::<Result<_, _>>()?;
            Ok(Row { columns, values })
        })?;
        Ok(rows)
    }

    pub fn execute(self, conn: &mut Connection) -> Ready<Result<Done, Error>> {
        ready(self.run(conn, |_, _| Ok(())).map(|(_, done)| done))
    }

    pub fn fetch_all(self, conn: &mut Connection) -> Ready<Result<Vec<Row>, Error>> {
        ready(self.rows(conn))
    }

    pub fn fetch_optional(self, conn: &mut Connection) -> Ready<Result<Option<Row>, Error>> {
        ready(self.rows(conn).map(|rows| rows.into_iter().next()))
    }

    pub fn fetch_one(self, conn: &mut Connection) -> Ready<Result<Row, Error>> {
        ready(self.rows(conn).and_then(|rows| rows.into_iter().next().ok_or(Error::QueryReturnedNoRows)))
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

    /// Appends `VALUES (…), (…)`: one parenthesised row per item, its values bound by `row`.
    pub fn push_values<I, F>(&mut self, items: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.sql.push_str("VALUES ");
        for (n, item) in items.into_iter().enumerate() {
            if n > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            row(Separated { builder: self, separator: ", ", first: true }, item);
            self.sql.push(')');
        }
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
