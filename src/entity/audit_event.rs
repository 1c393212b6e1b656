//! The `audit_events` table, with its self-referential parent/children relation.

use sea_orm::entity::prelude::*;

/// One stored audit event. Field names are the column names.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    pub event_version: String,
    pub event_timestamp: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_date: Date,
    pub event_type: String,
    pub event_category: String,
    pub event_action: String,
    pub event_outcome: String,
    pub actor_type: String,
    pub actor_id: String,
    pub actor_ip: Option<String>,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: Option<String>,
    pub correlation_id: String,
    pub parent_event_id: Option<Uuid>,
    pub parent_event_date: Option<Date>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub namespace: Option<String>,
    pub cluster_id: Option<String>,
    pub event_data: Json,
    pub event_metadata: Option<Json>,
    pub severity: Option<String>,
    pub duration_ms: Option<i32>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retention_days: i32,
    pub is_sensitive: bool,
    pub event_hash: Option<String>,
    pub previous_event_hash: Option<String>,
    pub hash_algorithm: String,
    pub legal_hold: bool,
    pub legal_hold_reason: Option<String>,
    pub legal_hold_placed_by: Option<String>,
    pub legal_hold_placed_at: Option<DateTimeUtc>,
    /// The authenticated principal that submitted the event (NULL for rows older than authentication).
    pub submitted_by: Option<String>,
    /// The event's position in its correlation's hash chain, from 1, in the order events were
    /// written (NULL for rows older than hash chains).
    pub chain_seq: Option<i64>,
    /// The key of a keyed hash (`hash_algorithm` = `hmac-sha256`), by name.
    pub hash_key_id: Option<String>,
    /// Why an imported event's carried hash stands outside the chain (it could not be verified).
    pub chain_note: Option<String>,
    /// `event_data` as the JSON text the database sent, when the row was read only to be written
    /// out as JSON (`Columns::data_as_text`): `event_data` is then null and was never parsed.
    /// `None` for every other row. Not a column.
    #[sea_orm(ignore)]
    pub event_data_text: Option<String>,
}

/// The composite self-reference `(parent_event_id, parent_event_date) → (event_id, event_date)`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The event that caused this one.
    #[sea_orm(
        belongs_to = "Entity",
        from = "(Column::ParentEventId, Column::ParentEventDate)",
        to = "(Column::EventId, Column::EventDate)",
        on_delete = "Restrict"
    )]
    Parent,
}

/// Follows an event to its parent.
pub struct ParentLink;

impl Linked for ParentLink {
    type FromEntity = Entity;
    type ToEntity = Entity;

    fn link(&self) -> Vec<RelationDef> {
        vec![Relation::Parent.def()]
    }
}

/// Follows an event to its children.
pub struct ChildrenLink;

impl Linked for ChildrenLink {
    type FromEntity = Entity;
    type ToEntity = Entity;

    fn link(&self) -> Vec<RelationDef> {
        vec![Relation::Parent.def().rev()]
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The primary key of this event.
    pub fn key(&self) -> crate::domain::EventKey {
        crate::domain::EventKey {
            id: self.event_id,
            date: self.event_date,
        }
    }

    /// The primary key of this event's parent, when the link is complete.
    pub fn parent_key(&self) -> Option<crate::domain::EventKey> {
        Some(crate::domain::EventKey {
            id: self.parent_event_id?,
            date: self.parent_event_date?,
        })
    }
}
