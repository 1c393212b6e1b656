//! What a store operation can fail with, independent of any API. `crate::error` maps it to what
//! clients see, in one place.

use sea_orm::DbErr;

use crate::domain::FieldError;

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A parent named by an event does not exist (or disappeared while the batch was written).
    #[error("{}: {}", .0.field, .0.message)]
    UnknownParent(FieldError),
    /// An event cannot be written as the batch gives it: its parent comes later in the batch, its
    /// id repeats an earlier one, or it predates its parent by days.
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// The write contradicts what is stored: an event id reused with other content, or written
    /// concurrently.
    #[error("{0}")]
    Conflict(String),
    /// What the operation acts on does not exist (a correlation with no events, no hold to
    /// release).
    #[error("{0}")]
    NotFound(String),
    /// A row broke a rule the database enforces (a CHECK or a trigger) that validation should have
    /// caught first.
    #[error("a database constraint refused the row: {0}")]
    Constraint(String),
    /// A statement ran into its time limit and was stopped.
    #[error("{0}")]
    Timeout(String),
    /// The database cannot be reached, or no connection came free in time. Retryable.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] DbErr),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] DbErr),
    /// An invariant of the store itself broke.
    #[error("{0}")]
    Internal(String),
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

/// Whether a database error means "not now" rather than "never": no connection in time, a lost
/// connection, or a server that is shutting down, starting or full.
pub fn is_unavailable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => match &**e {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::Protocol(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed => true,
            // PostgreSQL: class 08 (connection exception), admin shutdown, crash shutdown, cannot
            // connect now, too many connections, and the transient refusals of a transaction: a
            // serialization failure (also a read replica cancelling a query that conflicts with
            // the WAL it replays) and a deadlock. SQLite: busy or locked by another process.
            Sqlx::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || matches!(
                        &*code,
                        "57P01"
                            | "57P02"
                            | "57P03"
                            | "53300"
                            | "40001"
                            | "40P01"
                            | "5"
                            | "6"
                            | "261"
                            | "262"
                            | "517"
                            | "518"
                            | "773"
                    )
            }),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_or_a_lost_connection_is_unavailable() {
        use sea_orm::{ConnAcquireErr, RuntimeErr};
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let cases = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
            DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(sea_orm::sqlx::Error::Io(
                io(),
            )))),
            DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(
                sea_orm::sqlx::Error::PoolTimedOut,
            ))),
        ];
        for error in cases {
            assert!(matches!(StoreError::from(error), StoreError::Unavailable(_)));
        }
        assert!(matches!(
            StoreError::from(DbErr::Custom("x".into())),
            StoreError::Database(_)
        ));
    }
}
