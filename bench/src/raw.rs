//! Raw PostgreSQL: the same SQL the server would run, sent straight through sqlx on one
//! connection per worker, with no HTTP, GraphQL, validation or ORM in between.

use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::Value;
use sea_orm::sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sea_orm::sqlx::query::Query;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Postgres};
use uuid::Uuid;

/// A bound parameter.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A UUID.
    Uuid(Uuid),
    /// A date.
    Date(NaiveDate),
    /// An instant.
    Time(DateTime<Utc>),
    /// A 64-bit integer.
    BigInt(i64),
    /// A 32-bit integer.
    Int(i32),
    /// Text.
    Text(String),
    /// A JSON document.
    Json(serde_json::Value),
    /// A boolean.
    Bool(bool),
}

/// SQL and its parameters.
#[derive(Clone, Debug)]
pub struct Sql {
    /// The text, with `$n` placeholders.
    pub text: String,
    /// The parameters.
    pub args: Vec<Arg>,
}

impl Sql {
    /// SQL without parameters.
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// The SQL of a statement built by the server's store, parameters included.
    pub fn of(statement: &sea_orm::Statement) -> anyhow::Result<Self> {
        let args = statement
            .values
            .iter()
            .flat_map(|values| values.0.iter())
            .map(|value| {
                Ok(match value {
                    Value::Uuid(Some(v)) => Arg::Uuid(*v),
                    Value::ChronoDate(Some(v)) => Arg::Date(*v),
                    Value::ChronoDateTimeUtc(Some(v)) => Arg::Time(*v),
                    Value::BigInt(Some(v)) => Arg::BigInt(*v),
                    Value::BigUnsigned(Some(v)) => Arg::BigInt(i64::try_from(*v)?),
                    Value::Int(Some(v)) => Arg::Int(*v),
                    Value::String(Some(v)) => Arg::Text(v.clone()),
                    Value::Bool(Some(v)) => Arg::Bool(*v),
                    other => anyhow::bail!("the benchmark does not bind {other:?}"),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            text: statement.sql.clone(),
            args,
        })
    }

    fn query(&self) -> Query<'_, Postgres, PgArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.text.as_str()));
        for arg in &self.args {
            query = match arg {
                Arg::Uuid(v) => query.bind(*v),
                Arg::Date(v) => query.bind(*v),
                Arg::Time(v) => query.bind(*v),
                Arg::BigInt(v) => query.bind(*v),
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
                Arg::Json(v) => query.bind(sqlx::types::Json(v)),
                Arg::Bool(v) => query.bind(*v),
            };
        }
        query
    }
}

/// One raw connection.
pub struct Raw {
    conn: PgConnection,
}

impl Raw {
    /// Connects to `url` with the session settings the server uses (`jit=off`, generic plans),
    /// so that the same SQL is planned and run the same way on both sides.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url)?.options(auditgraph::store::POSTGRES_SESSION_SETTINGS);
        let conn = PgConnection::connect_with(&options)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Self { conn })
    }

    /// Runs a statement (prepared and cached, as sqlx does for the server) and returns its rows.
    pub async fn fetch(&mut self, sql: &Sql) -> anyhow::Result<Vec<PgRow>> {
        Ok(sql.query().fetch_all(&mut self.conn).await?)
    }

    /// Runs a statement and returns how many rows it affected.
    pub async fn execute(&mut self, sql: &Sql) -> anyhow::Result<u64> {
        Ok(sql.query().execute(&mut self.conn).await?.rows_affected())
    }

    /// Runs a statement built by the server's store, bound as the server binds it, and returns
    /// its rows.
    pub async fn run(&mut self, statement: auditgraph::store::PgStatement) -> anyhow::Result<Vec<PgRow>> {
        Ok(sqlx::query_with(AssertSqlSafe(statement.sql), statement.args)
            .fetch_all(&mut self.conn)
            .await?)
    }

    /// `COPY … FROM STDIN` of CSV text, in one transaction of its own.
    pub async fn copy_in(&mut self, statement: &str, csv: &[u8]) -> anyhow::Result<u64> {
        let mut copy = self.conn.copy_in_raw(statement).await?;
        copy.send(csv).await?;
        Ok(copy.finish().await?)
    }
}
