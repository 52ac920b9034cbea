//! The backend-neutral layer: a statement is written once, with `?N` parameters, and runs on
//! SQLite and on PostgreSQL ([`super::pg`] turns `?N` into `$N` when it prepares it).
//!
//! A method of `store/` ported onto this layer takes a [`Db`] (a connection, a transaction, or
//! the writer's batch), passes its parameters as [`Value`]s ([`args!`]) and reads [`Row`]s with
//! typed getters. Both implementations keep statements prepared (SQLite's statement cache;
//! each PostgreSQL connection's own cache, [`super::pg_direct`]), so the hot paths do not parse SQL per call.
//!
//! Writing SQL that runs on both: `CAST(?N AS BIGINT)` where PostgreSQL cannot infer a
//! parameter's type (a `SELECT ?N` list); `ON CONFLICT … DO NOTHING` rather than `INSERT OR
//! IGNORE`; `RETURNING` rather than the last row id; `CAST(SUM(…) AS BIGINT)` (PostgreSQL's sum
//! of BIGINT is NUMERIC). Where they cannot agree, branch on [`Db::dialect`].

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use super::{Result, StoreError};

/// Which SQL a connection speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The larger of two values (SQLite's two-argument `MAX`).
    pub(in crate::store) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The smaller of two values (SQLite's two-argument `MIN`).
    pub(in crate::store) fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }
}

/// A parameter or a column's value, whatever the backend.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// UTF-8 text shared with where it came from (a webhook's body, [`super::intake::Body`]):
    /// bound without a copy.
    Shared(bytes::Bytes),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The parameters of a statement: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::sql::Value::from($v)),*]
    };
}
pub(in crate::store) use args;

/// A statement with its parameters, for [`Db::execute_all`].
#[derive(Debug, Clone)]
pub(in crate::store) struct Statement {
    pub sql: std::borrow::Cow<'static, str>,
    pub values: Vec<Value>,
}

impl Statement {
    pub(in crate::store) fn new(
        sql: impl Into<std::borrow::Cow<'static, str>>,
        values: Vec<Value>,
    ) -> Statement {
        Statement {
            sql: sql.into(),
            values,
        }
    }
}

/// The parameters of a [`Statement`]: `values![a, b]` is `vec![Value::from(a), Value::from(b)]`.
macro_rules! values {
    ($($v:expr),* $(,)?) => {
        vec![$($crate::store::sql::Value::from($v)),*]
    };
}
pub(in crate::store) use values;

/// A result row, read by column index with the getter of the type the column holds.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) struct Row(pub(in crate::store) Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Row(format!("no column {i}")))
    }

    fn mismatch(&self, i: usize, want: &str) -> StoreError {
        StoreError::Row(format!(
            "column {i}: expected {want}, found {:?}",
            self.0.get(i)
        ))
    }

    /// An integer column (never NULL).
    pub(in crate::store) fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// An integer column that may be NULL.
    pub(in crate::store) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// A text column (never NULL).
    pub(in crate::store) fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    /// A text column that may be NULL.
    pub(in crate::store) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// A binary column (never NULL).
    pub(in crate::store) fn blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "bytes")),
        }
    }

    /// A floating-point column that may be NULL (an integer value reads as one).
    pub(in crate::store) fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.mismatch(i, "a number")),
        }
    }
}

/// A connection, a transaction, or the writer's batch, on either backend.
pub(in crate::store) trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; every row.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;

    /// Runs `statements` in order; the rows each changed. The first error is the call's, and
    /// the statements after it do not count: on PostgreSQL inside a transaction they are sent
    /// together, in one round trip per 256 (tokio-postgres pipelines them), and a failed one aborts the
    /// transaction, so the rest fail too, as one by one they would not have run. Except a
    /// statement whose parameters fail to encode (`ToSql`): it fails before it is sent, and
    /// the ones after it are still sent and applied. So the caller must roll back on error;
    /// every caller does (the writer's job and intake's savepoints, `Store::transaction`).
    /// Outside a transaction (where each would commit alone) and on SQLite, one by one.
    fn execute_all(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        statements
            .iter()
            .map(|s| self.execute(&s.sql, &s.values))
            .collect()
    }

    /// Runs the queries `statements` in order; each one's rows; the first error is the call's.
    /// On PostgreSQL they are sent together, in one round trip per 256: for reads (outside a
    /// transaction each runs on its own, and one that fails does not stop the others), or
    /// inside a transaction. On SQLite one by one.
    fn query_all(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>> {
        statements
            .iter()
            .map(|s| self.query(&s.sql, &s.values))
            .collect()
    }

    /// [`Db::execute_all`] for the last statements of a write of the group commit: nothing
    /// follows them on this connection in the write. On PostgreSQL, when the write is its
    /// batch's last, they go out with the batch's `COMMIT` (one round trip for both); a failed
    /// one leaves the transaction open, as [`Db::execute_all`] does.
    fn execute_all_last(&self, statements: &[Statement]) -> Result<Vec<u64>> {
        self.execute_all(statements)
    }

    /// [`Db::query_all`] for the last statements of a write, as [`Db::execute_all_last`].
    fn query_all_last(&self, statements: &[Statement]) -> Result<Vec<Vec<Row>>> {
        self.query_all(statements)
    }

    /// [`Db::query`] for the last statement of a write, as [`Db::execute_all_last`].
    fn query_last(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.query(sql, params)
    }

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The first row; [`StoreError::NoRow`] if there is none.
    fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params)?.ok_or(StoreError::NoRow)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Shared(v) => ValueRef::Text(v),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

fn from_sqlite(v: ValueRef<'_>) -> Result<Value> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(
            std::str::from_utf8(v)
                .map_err(|e| StoreError::Row(format!("text that is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    })
}

/// SQLite: `?N` is SQLite's own syntax; statements go through the connection's cache.
impl Db for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        let changed = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| from_sqlite(row.get_ref(i)?))
                .collect::<Result<_>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }
}

/// `sql` with each `?N` outside string literals written `$N` (PostgreSQL's parameters).
pub(in crate::store) fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_literals() {
        assert_eq!(
            to_postgres("SELECT ?1, '?2', ?12 WHERE a = ?3 AND b IS NOT ?"),
            "SELECT $1, '?2', $12 WHERE a = $3 AND b IS NOT ?"
        );
    }

    #[test]
    fn rows_read_back_what_was_bound_on_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        let row = Db::query_one(
            &conn,
            "SELECT ?1, ?2, ?3, ?4",
            args![7_i64, "x", None::<i64>, 1.5],
        )
        .unwrap();
        assert_eq!(row.int(0).unwrap(), 7);
        assert_eq!(row.text(1).unwrap(), "x");
        assert_eq!(row.opt_int(2).unwrap(), None);
        assert_eq!(row.opt_real(3).unwrap(), Some(1.5));
        assert!(row.text(0).is_err(), "an integer is not text");
    }
}
