//! Writing events.

use chrono::NaiveDate;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::Store;
use crate::domain::NewEvent;
use crate::entity::audit_event::{Column, Entity, Model};
use crate::error::ApiError;

fn unknown_parent(id: Uuid) -> ApiError {
    ApiError::field(
        "parent_event_id",
        "unknown_parent",
        format!("parent event {id} does not exist"),
    )
}

/// The row a new event becomes, given its parent's date.
fn to_model(new: NewEvent, parent_event_date: Option<NaiveDate>) -> Model {
    Model {
        event_id: new.event_id,
        event_version: new.event_version,
        event_timestamp: new.event_timestamp,
        event_date: new.event_date,
        event_type: new.event_type,
        event_category: new.event_category,
        event_action: new.event_action,
        event_outcome: new.event_outcome,
        actor_type: new.actor_type,
        actor_id: new.actor_id,
        actor_ip: new.actor_ip,
        resource_type: new.resource_type,
        resource_id: new.resource_id,
        resource_name: new.resource_name,
        correlation_id: new.correlation_id,
        parent_event_id: new.parent_event_id,
        parent_event_date,
        trace_id: new.trace_id,
        span_id: new.span_id,
        namespace: new.namespace,
        cluster_id: new.cluster_id,
        event_data: new.event_data,
        event_metadata: new.event_metadata,
        severity: new.severity,
        duration_ms: new.duration_ms,
        error_code: new.error_code,
        error_message: new.error_message,
        retention_days: new.retention_days,
        is_sensitive: new.is_sensitive,
        event_hash: None,
        previous_event_hash: None,
        hash_algorithm: "sha256-unkeyed".into(),
        legal_hold: false,
        legal_hold_reason: None,
        legal_hold_placed_by: None,
        legal_hold_placed_at: None,
    }
}

/// Whether a retry carries the same content as the stored event. Columns the server derives or
/// manages (dates, hashes, legal hold) are not the client's content; the timestamp counts only when
/// the client supplied it.
fn same_content(new: &NewEvent, stored: &Model) -> bool {
    let mut candidate = to_model(new.clone(), stored.parent_event_date);
    if !new.client_supplied_timestamp {
        candidate.event_timestamp = stored.event_timestamp;
        candidate.event_date = stored.event_date;
    }
    candidate.event_hash.clone_from(&stored.event_hash);
    candidate.previous_event_hash.clone_from(&stored.previous_event_hash);
    candidate.hash_algorithm.clone_from(&stored.hash_algorithm);
    candidate.legal_hold = stored.legal_hold;
    candidate.legal_hold_reason.clone_from(&stored.legal_hold_reason);
    candidate.legal_hold_placed_by.clone_from(&stored.legal_hold_placed_by);
    candidate.legal_hold_placed_at = stored.legal_hold_placed_at;
    &candidate == stored
}

impl Store {
    /// Writes one validated event and returns it as stored. The parent's date is looked up here;
    /// a client-supplied event id that exists already makes the call idempotent (same content) or a
    /// conflict (other content). Nothing is written when an error is returned.
    #[tracing::instrument(skip_all, fields(event.id = %new.event_id, event.parent = ?new.parent_event_id))]
    pub async fn create_event(&self, new: NewEvent) -> Result<Model, ApiError> {
        self.ensure_partition(new.event_date).await?;
        let _gate = match &self.inner.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        };
        let txn = self.inner.db.begin().await?;
        if new.client_supplied_id {
            lock_event_id(&txn, new.event_id).await?;
            if let Some(stored) = find_by_id(&txn, new.event_id).await? {
                txn.rollback().await?;
                return idempotent(&new, stored);
            }
        }
        let parent_date = match new.parent_event_id {
            Some(parent) => Some(parent_date(&txn, parent).await?.ok_or_else(|| unknown_parent(parent))?),
            None => None,
        };
        if let Some(parent_date) = parent_date
            && new.event_date < parent_date - chrono::Days::new(1)
        {
            return Err(ApiError::field(
                "event_timestamp",
                "before_parent",
                format!(
                    "is more than a day before its parent's date ({parent_date}); a child cannot predate its cause by days"
                ),
            ));
        }
        let parent = new.parent_event_id;
        let model = to_model(new, parent_date);
        let insert = Entity::insert(model.clone().into_active_model())
            .exec_without_returning(&txn)
            .await;
        match insert {
            Ok(_) => {}
            Err(err) => {
                return Err(match (err.sql_err(), parent) {
                    (Some(SqlErr::ForeignKeyConstraintViolation(_)), Some(parent)) => unknown_parent(parent),
                    (Some(SqlErr::UniqueConstraintViolation(_)), _) => {
                        ApiError::Conflict(format!("event {} already exists", model.event_id))
                    }
                    _ => err.into(),
                });
            }
        }
        txn.commit().await?;
        tracing::debug!("event written");
        Ok(model)
    }
}

fn idempotent(new: &NewEvent, stored: Model) -> Result<Model, ApiError> {
    if same_content(new, &stored) {
        tracing::debug!("idempotent retry of a stored event");
        Ok(stored)
    } else {
        Err(ApiError::Conflict(format!(
            "event {} already exists with different content; a retry must resend the same event",
            stored.event_id
        )))
    }
}

/// Serialises writers of one client-chosen id (PostgreSQL). The primary key includes the date, so
/// the database alone would accept the same id on two different days.
async fn lock_event_id(txn: &DatabaseTransaction, id: Uuid) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        let stmt = Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [id.to_string().into()],
        );
        txn.execute_raw(stmt).await?;
    }
    Ok(())
}

async fn find_by_id(txn: &DatabaseTransaction, id: Uuid) -> Result<Option<Model>, DbErr> {
    Entity::find().filter(Column::EventId.eq(id)).one(txn).await
}

/// The date of the parent event; the newest one if legacy data holds the id on several days.
async fn parent_date(txn: &DatabaseTransaction, parent: Uuid) -> Result<Option<NaiveDate>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::EventDate)
        .filter(Column::EventId.eq(parent))
        .order_by_desc(Column::EventDate)
        .into_tuple::<NaiveDate>()
        .one(txn)
        .await
}
