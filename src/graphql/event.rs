//! The `AuditEvent` type.

use std::sync::Arc;

use async_graphql::parser::types::Field;
use async_graphql::{
    Context, ContextSelectionSet, ErrorExtensions, Object, Positioned, Result, ScalarType, ServerResult, Value,
};
use uuid::Uuid;

use super::connection::{AuditEventConnection, Scope};
use super::direct::{Direct, DirectList, Sink, Stored, resolve_field_now};
use super::loaders::{AncestorsKey, ChildCountKey, ChildrenKey, DescendantsKey, EventColumnsKey};
use super::tree::{AuditEventDescendantConnection, DescendantsPage};
use super::{DEFAULT_PAGE_SIZE, Loaders, page_cost};
use crate::domain::chain::write_uuid;
use crate::domain::{PageRequest, PageWindow};
use crate::entity::audit_event::Model;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::Columns;

/// One audit event, resolved directly: its stored fields go straight into the response.
pub type AuditEvent = Direct<EventFields>;

impl From<Model> for AuditEvent {
    fn from(model: Model) -> Self {
        Direct(EventFields(Arc::new(model)))
    }
}

impl From<Arc<Model>> for AuditEvent {
    fn from(model: Arc<Model>) -> Self {
        Direct(EventFields(model))
    }
}

/// A list of audit events, resolved directly (as a whole when only stored fields are selected).
pub type AuditEventList = DirectList<EventFields>;

impl<M: Into<AuditEvent>, I: IntoIterator<Item = M>> From<I> for AuditEventList {
    fn from(models: I) -> Self {
        DirectList(models.into_iter().map(Into::into).collect())
    }
}

/// One audit event: something that happened in a service, who did it to what, and with what
/// outcome. Events form causality trees through `parent` and `children`.
#[derive(Clone, Debug)]
pub struct EventFields(pub Arc<Model>);

/// The page of children `key` asks for, from the `rows` read for it (one more than the page
/// when more follow).
fn children_connection(key: ChildrenKey, rows: Vec<Arc<Model>>) -> AuditEventConnection {
    let (rows, previous, next) = key.window.finish(rows);
    AuditEventConnection::new(rows, previous, next, Scope::Children(key.parent))
}

impl EventFields {
    /// The key of this event's page of children in `window`, reading `columns` (those the
    /// `children` field's selection shows).
    fn children_key(&self, window: PageWindow, columns: Columns) -> ChildrenKey {
        ChildrenKey {
            parent: self.0.key(),
            window,
            columns,
        }
    }

    /// The ancestors, root first, with `columns` read of each.
    async fn ancestor_path(&self, ctx: &Context<'_>, columns: Columns) -> Result<Arc<Vec<Arc<Model>>>> {
        if self.0.parent_event_id.is_none() {
            return Ok(Arc::default());
        }
        let loader = ctx.data::<Loaders>()?.ancestors();
        let path = loader
            .load_one(AncestorsKey {
                event: self.0.key(),
                columns,
            })
            .await
            .map_err(|e| e.extend())?;
        Ok(path.unwrap_or_default())
    }
}

/// The fields [`EventFields::stored`] gives (checked against it by a unit test).
const STORED_FIELDS: [&str; 41] = [
    "id",
    "eventId",
    "eventVersion",
    "eventTimestamp",
    "eventDate",
    "eventType",
    "eventCategory",
    "eventAction",
    "eventOutcome",
    "actorType",
    "actorId",
    "actorIp",
    "resourceType",
    "resourceId",
    "resourceName",
    "correlationId",
    "parentEventId",
    "parentEventDate",
    "traceId",
    "spanId",
    "namespace",
    "clusterId",
    "eventData",
    "eventMetadata",
    "severity",
    "durationMs",
    "errorCode",
    "errorMessage",
    "retentionDays",
    "isSensitive",
    "eventHash",
    "previousEventHash",
    "hashAlgorithm",
    "hashKeyId",
    "chainSeq",
    "chainNote",
    "legalHold",
    "legalHoldReason",
    "legalHoldPlacedBy",
    "legalHoldPlacedAt",
    "submittedBy",
];

impl Stored for EventFields {
    fn is_stored(&self, name: &str) -> bool {
        STORED_FIELDS.contains(&name)
    }

    fn stored(&self, name: &str) -> Option<Value> {
        let m = &self.0;
        if let Some(text) = text_field(m, name) {
            return Some(text.map_or(Value::Null, |text| Value::String(text.to_owned())));
        }
        Some(match name {
            "id" => Value::String(crate::domain::global_id::GlobalId::AuditEvent(m.key()).encode()),
            "eventId" => m.event_id.to_value(),
            "eventTimestamp" => m.event_timestamp.to_value(),
            "eventDate" => m.event_date.to_value(),
            "parentEventId" => optional(&m.parent_event_id),
            "parentEventDate" => optional(&m.parent_event_date),
            // Parsed into the response value, members in the order of the text (as it is written
            // ahead); a document `serde_json` cannot represent goes to the derived resolver,
            // which reports it.
            "eventData" => match &m.event_data_text {
                Some(text) => return serde_json::from_str(text).ok(),
                None => json(&m.event_data),
            },
            "eventMetadata" => m.event_metadata.as_ref().map_or(Value::Null, json),
            "durationMs" => optional(&m.duration_ms),
            "retentionDays" => m.retention_days.to_value(),
            "isSensitive" => m.is_sensitive.to_value(),
            "chainSeq" => optional(&m.chain_seq),
            "legalHold" => m.legal_hold.to_value(),
            "legalHoldPlacedAt" => optional(&m.legal_hold_placed_at),
            _ => return None,
        })
    }

    fn write_stored(&self, name: &str, out: &mut Vec<u8>) -> bool {
        let m = &self.0;
        if let Some(text) = text_field(m, name) {
            match text {
                Some(text) => super::json::write_str(out, text),
                None => out.extend_from_slice(b"null"),
            }
            return true;
        }
        match name {
            "eventId" => write_uuid(out, &m.event_id),
            "parentEventId" => match &m.parent_event_id {
                Some(id) => write_uuid(out, id),
                None => out.extend_from_slice(b"null"),
            },
            "eventTimestamp" => super::json::write_timestamp(out, &m.event_timestamp),
            "legalHoldPlacedAt" => match &m.legal_hold_placed_at {
                Some(time) => super::json::write_timestamp(out, time),
                None => out.extend_from_slice(b"null"),
            },
            "eventData" => match &m.event_data_text {
                Some(text) => super::json::write_json_text(out, text),
                None => super::json::write_json(out, &m.event_data),
            },
            _ => return super::direct::write_stored_value(self.stored(name), out),
        }
        true
    }

    /// `children`, when its page was fetched ahead (see `prefetch`) and all that is selected
    /// of it is stored: a nested query's levels are then written in one pass.
    fn stored_object(
        &self,
        name: &str,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
        mut sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        if name != "children" {
            return None;
        }
        // The page's window and columns depend on the field, not on the event: worked out once
        // for the events written at one place.
        let window_and_columns = || {
            let ctx_field = ctx.with_field(field);
            // Arguments the resolver would refuse give no window: it then reports them.
            let window = super::prefetch::window_of(&ctx_field.field())?;
            Some((window, super::columns::of_connection(&ctx_field.look_ahead())))
        };
        let (window, columns) = match &mut sink {
            Sink::Json(_, shape) => shape.remember(window_and_columns)?,
            Sink::Value => window_and_columns()?,
        };
        let key = self.children_key(window, columns);
        let rows = ctx.data_opt::<Loaders>()?.prefetched_children(&key)?;
        resolve_field_now(&children_connection(key, rows).0, ctx, field, sink)
    }
}

/// The text of `m`'s field `name` when it is a stored string (`Some(None)` when it is null);
/// `None` for every other field.
fn text_field<'m>(m: &'m Model, name: &str) -> Option<Option<&'m str>> {
    let optional = |text: &'m Option<String>| Some(text.as_deref());
    match name {
        "eventVersion" => Some(Some(&m.event_version)),
        "eventType" => Some(Some(&m.event_type)),
        "eventCategory" => Some(Some(&m.event_category)),
        "eventAction" => Some(Some(&m.event_action)),
        "eventOutcome" => Some(Some(&m.event_outcome)),
        "actorType" => Some(Some(&m.actor_type)),
        "actorId" => Some(Some(&m.actor_id)),
        "actorIp" => optional(&m.actor_ip),
        "resourceType" => Some(Some(&m.resource_type)),
        "resourceId" => Some(Some(&m.resource_id)),
        "resourceName" => optional(&m.resource_name),
        "correlationId" => Some(Some(&m.correlation_id)),
        "traceId" => optional(&m.trace_id),
        "spanId" => optional(&m.span_id),
        "namespace" => optional(&m.namespace),
        "clusterId" => optional(&m.cluster_id),
        "severity" => optional(&m.severity),
        "errorCode" => optional(&m.error_code),
        "errorMessage" => optional(&m.error_message),
        "eventHash" => optional(&m.event_hash),
        "previousEventHash" => optional(&m.previous_event_hash),
        "hashAlgorithm" => Some(Some(&m.hash_algorithm)),
        "hashKeyId" => optional(&m.hash_key_id),
        "chainNote" => optional(&m.chain_note),
        "legalHoldReason" => optional(&m.legal_hold_reason),
        "legalHoldPlacedBy" => optional(&m.legal_hold_placed_by),
        "submittedBy" => optional(&m.submitted_by),
        _ => None,
    }
}

/// A nullable scalar field's value.
fn optional<T: ScalarType>(value: &Option<T>) -> Value {
    value.as_ref().map_or(Value::Null, ScalarType::to_value)
}

/// A `JSON` field's value, as the scalar gives it.
fn json(value: &serde_json::Value) -> Value {
    super::scalars::json_value(value)
}

/// `m`'s `event_data` as a value: as it was read, or parsed from the text it was read as
/// (`Columns::data_as_text`). Only a document PostgreSQL holds but `serde_json` cannot represent
/// (a number beyond the range of a double) fails to parse.
fn event_data(m: &Model) -> serde_json::Result<std::borrow::Cow<'_, serde_json::Value>> {
    match &m.event_data_text {
        Some(text) => serde_json::from_str(text).map(std::borrow::Cow::Owned),
        None => Ok(std::borrow::Cow::Borrowed(&m.event_data)),
    }
}

/// One audit event: something that happened in a service, who did it to what, and with what
/// outcome. Events form causality trees through `parent` and `children`.
#[Object(name = "AuditEvent")]
impl EventFields {
    /// The event's global id (`Node`): opaque and stable, for `node(id:)` and client caches. The
    /// event's own UUID is `eventId`.
    pub async fn id(&self) -> async_graphql::ID {
        crate::domain::global_id::GlobalId::AuditEvent(self.0.key())
            .encode()
            .into()
    }
    /// Unique id (UUIDv7 unless the writer chose one).
    async fn event_id(&self) -> Uuid {
        self.0.event_id
    }
    /// Version of the event schema the writer used (for example `1.0`).
    async fn event_version(&self) -> &str {
        &self.0.event_version
    }
    /// When the event happened, as stated by the writer (microsecond precision, UTC).
    async fn event_timestamp(&self) -> super::DateTime {
        self.0.event_timestamp.into()
    }
    /// The UTC date of `eventTimestamp`; part of the primary key and the partition key.
    async fn event_date(&self) -> super::Date {
        self.0.event_date.into()
    }
    /// What happened, as `service.domain.action` (for example `gateway.signal.received`).
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    /// The service that emitted the event (a lowercase identifier).
    async fn event_category(&self) -> &str {
        &self.0.event_category
    }
    /// The action performed (for example `received`).
    async fn event_action(&self) -> &str {
        &self.0.event_action
    }
    /// `success`, `failure` or `pending`.
    async fn event_outcome(&self) -> &str {
        &self.0.event_outcome
    }
    /// Kind of actor: `service`, `user` or `external`.
    async fn actor_type(&self) -> &str {
        &self.0.actor_type
    }
    /// Who acted: a service name or a user identity.
    async fn actor_id(&self) -> &str {
        &self.0.actor_id
    }
    /// The actor's IP address, when known.
    async fn actor_ip(&self) -> Option<&str> {
        self.0.actor_ip.as_deref()
    }
    /// Kind of resource acted upon.
    async fn resource_type(&self) -> &str {
        &self.0.resource_type
    }
    /// Id of the resource acted upon.
    async fn resource_id(&self) -> &str {
        &self.0.resource_id
    }
    /// Human-readable name of the resource.
    async fn resource_name(&self) -> Option<&str> {
        self.0.resource_name.as_deref()
    }
    /// Groups the events of one request or remediation across services; also the scope of the
    /// hash chain and of legal holds.
    async fn correlation_id(&self) -> &str {
        &self.0.correlation_id
    }
    /// The event that caused this one; null for a root.
    async fn parent_event_id(&self) -> Option<Uuid> {
        self.0.parent_event_id
    }
    /// The parent's `eventDate`, derived by the server from the stored parent. Null for roots, and
    /// for legacy events whose link has not been completed yet.
    async fn parent_event_date(&self) -> Option<super::Date> {
        self.0.parent_event_date.map(Into::into)
    }
    /// OpenTelemetry trace id.
    async fn trace_id(&self) -> Option<&str> {
        self.0.trace_id.as_deref()
    }
    /// OpenTelemetry span id.
    async fn span_id(&self) -> Option<&str> {
        self.0.span_id.as_deref()
    }
    /// Kubernetes namespace.
    async fn namespace(&self) -> Option<&str> {
        self.0.namespace.as_deref()
    }
    /// The cluster the event comes from.
    async fn cluster_id(&self) -> Option<&str> {
        self.0.cluster_id.as_deref()
    }
    /// The service-specific payload (a JSON object).
    async fn event_data(&self) -> async_graphql::Result<super::Json> {
        let data = event_data(&self.0).map_err(|e| {
            let error = anyhow::anyhow!(
                "the stored eventData of {} cannot be shown as a JSON value: {e}",
                self.0.event_id
            );
            tracing::error!("{error:#}");
            crate::error::ApiError::internal(error).extend()
        })?;
        Ok(super::Json(data.into_owned()))
    }
    /// Free-form metadata about the event (a JSON object).
    async fn event_metadata(&self) -> Option<super::Json> {
        self.0.event_metadata.clone().map(super::Json)
    }
    /// Severity as the writer stated it (for example `info`, `warning`, `error`, `critical`).
    async fn severity(&self) -> Option<&str> {
        self.0.severity.as_deref()
    }
    /// How long the operation took, in milliseconds.
    async fn duration_ms(&self) -> Option<i32> {
        self.0.duration_ms
    }
    /// Error code of a failed operation.
    async fn error_code(&self) -> Option<&str> {
        self.0.error_code.as_deref()
    }
    /// Error message of a failed operation.
    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }
    /// Days the event must be kept (1 to 2555).
    async fn retention_days(&self) -> i32 {
        self.0.retention_days
    }
    /// Whether the event holds sensitive data.
    async fn is_sensitive(&self) -> bool {
        self.0.is_sensitive
    }
    /// Hash of this event in its correlation's hash chain.
    async fn event_hash(&self) -> Option<&str> {
        self.0.event_hash.as_deref()
    }
    /// Hash of the previous event in the chain.
    async fn previous_event_hash(&self) -> Option<&str> {
        self.0.previous_event_hash.as_deref()
    }
    /// How `eventHash` is computed: `sha256-unkeyed` or `hmac-sha256`.
    async fn hash_algorithm(&self) -> &str {
        &self.0.hash_algorithm
    }
    /// The key of a keyed hash (`hashAlgorithm` = `hmac-sha256`), by name; null when unkeyed.
    async fn hash_key_id(&self) -> Option<&str> {
        self.0.hash_key_id.as_deref()
    }
    /// The event's position in its correlation's hash chain, from 1, in the order events were
    /// written (not by timestamp: an event that arrives late extends the chain). Null for events
    /// stored before hash chains.
    async fn chain_seq(&self) -> Option<i64> {
        self.0.chain_seq
    }
    /// Why the hash an imported event carried stands outside its chain (it could not be verified
    /// on import); null for every other event.
    async fn chain_note(&self) -> Option<&str> {
        self.0.chain_note.as_deref()
    }
    /// Whether a legal hold protects the event from deletion.
    async fn legal_hold(&self) -> bool {
        self.0.legal_hold
    }
    /// Why the legal hold was placed.
    async fn legal_hold_reason(&self) -> Option<&str> {
        self.0.legal_hold_reason.as_deref()
    }
    /// Who placed the legal hold.
    async fn legal_hold_placed_by(&self) -> Option<&str> {
        self.0.legal_hold_placed_by.as_deref()
    }
    /// When the legal hold was placed.
    async fn legal_hold_placed_at(&self) -> Option<super::DateTime> {
        self.0.legal_hold_placed_at.map(Into::into)
    }
    /// The authenticated principal that submitted the event: who sent it, as the server verified
    /// it, apart from the actor the event names. For a human principal the two agree; a service may
    /// act for someone else. Null for events stored before authentication was recorded.
    async fn submitted_by(&self) -> Option<&str> {
        self.0.submitted_by.as_deref()
    }

    /// The event that caused this one; null for a root. Batched: asking for the parents of many
    /// events costs one query.
    #[graphql(complexity = "super::BATCHED_COST + child_complexity")]
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<AuditEvent>> {
        let Some(parent_id) = self.0.parent_event_id else {
            return Ok(None);
        };
        let columns = super::columns::of_event(&ctx.look_ahead());
        let found = match self.0.parent_key() {
            Some(key) => {
                let loader = ctx.data::<Loaders>()?.parent();
                loader
                    .load_one(EventColumnsKey { event: key, columns })
                    .await
                    .map_err(|e| e.extend())?
            }
            // A legacy link without the parent's date: look the parent up by id.
            None => ctx
                .data::<Service>()?
                .store
                .find_event(parent_id, columns)
                .await
                .map_err(|e| e.extend())?
                .map(Arc::new),
        };
        Ok(found.map(AuditEvent::from))
    }

    /// The events this one caused, oldest first (`eventTimestamp`, then `eventId`). Batched: the
    /// children of every event at one nesting level are fetched with one query, each parent's page
    /// limited separately.
    #[graphql(complexity = "page_cost(first, None, child_complexity)")]
    async fn children(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 1000 (default 50).")] first: Option<i32>,
        #[graphql(desc = "Return children after this cursor.")] after: Option<String>,
    ) -> Result<AuditEventConnection> {
        let request = PageRequest {
            first,
            after,
            ..PageRequest::default()
        };
        let window = request
            .resolve(DEFAULT_PAGE_SIZE)
            .map_err(|e| ApiError::from(e).extend())?;
        let loaders = ctx.data::<Loaders>()?;
        let key = self.children_key(window, super::columns::of_connection(&ctx.look_ahead()));
        let rows = match loaders.prefetched_children(&key) {
            Some(rows) => rows,
            None => loaders
                .children()
                .load_one(key)
                .await
                .map_err(|e| e.extend())?
                .unwrap_or_default(),
        };
        Ok(children_connection(key, rows))
    }

    /// The path from the root of this event's tree down to its parent: root first, parent last;
    /// empty for a root. One recursive query, batched across events.
    #[graphql(complexity = "super::BATCHED_COST + 20 * child_complexity")]
    async fn ancestors(&self, ctx: &Context<'_>) -> Result<AuditEventList> {
        let columns = super::columns::of_event(&ctx.look_ahead());
        Ok(AuditEventList::from(
            self.ancestor_path(ctx, columns).await?.iter().cloned(),
        ))
    }

    /// The root of this event's tree (the event itself when it has no parent).
    #[graphql(complexity = "super::BATCHED_COST + child_complexity")]
    async fn root(&self, ctx: &Context<'_>) -> Result<AuditEvent> {
        let columns = super::columns::of_event(&ctx.look_ahead());
        let path = self.ancestor_path(ctx, columns).await?;
        Ok(AuditEvent::from(
            path.first().cloned().unwrap_or_else(|| self.0.clone()),
        ))
    }

    /// How many ancestors this event has (0 for a root).
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn depth(&self, ctx: &Context<'_>) -> Result<usize> {
        Ok(self.ancestor_path(ctx, Columns::keys()).await?.len())
    }

    /// Everything this event caused, directly or not, breadth-first: by depth, then
    /// `eventTimestamp`, then `eventId`. One recursive query per page.
    #[graphql(complexity = "2 * super::WALK_COST + page_cost(first, None, child_complexity)")]
    async fn descendants(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Deepest level to include, 1 to 10000 (default 100); children are at 1.")] max_depth: Option<
            i32,
        >,
        #[graphql(desc = "Page size, 0 to 1000 (default 50).")] first: Option<i32>,
        #[graphql(desc = "Return descendants after this cursor.")] after: Option<String>,
    ) -> Result<AuditEventDescendantConnection> {
        let page = DescendantsPage::of(max_depth, first, after).map_err(|e| e.extend())?;
        let key = DescendantsKey {
            root: self.0.key(),
            page,
            columns: super::columns::of_connection(&ctx.look_ahead()),
        };
        let DescendantsPage {
            max_depth,
            window,
            after,
        } = page;
        let prefetched = ctx.data::<Loaders>()?.prefetched_descendants(&key);
        let mut nodes = match prefetched {
            Some(nodes) => nodes,
            None => ctx
                .data::<Service>()?
                .store
                .descendants(key.root, max_depth, after, window.fetch(), key.columns)
                .await
                .map_err(|e| e.extend())?,
        };
        let has_next = nodes.len() as u64 > window.limit;
        nodes.truncate(window.limit as usize);
        Ok(AuditEventDescendantConnection::new(
            nodes, has_next, after, key.root, max_depth,
        ))
    }

    /// How many events this one caused. Batched across events.
    #[graphql(complexity = "super::BATCHED_COST")]
    async fn child_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let loader = ctx.data::<Loaders>()?.child_counts();
        Ok(loader
            .load_one(ChildCountKey(self.0.key()))
            .await
            .map_err(|e| e.extend())?
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Schema};
    use chrono::TimeZone;

    use super::*;
    use crate::domain::page::Beyond;

    /// Serves one event twice: as the derived object resolves it, and directly; and a page of
    /// events (this one and a bare one) twice, the same way.
    struct Root(Model);

    impl Root {
        fn page(&self) -> AuditEventConnection {
            let rows = vec![Arc::new(self.0.clone()), Arc::new(bare())];
            let scope = Scope::Events(Arc::default());
            AuditEventConnection::new(rows, Beyond::Known(false), Beyond::Known(true), scope)
        }
    }

    #[Object]
    impl Root {
        async fn derived(&self) -> EventFields {
            EventFields(Arc::new(self.0.clone()))
        }
        async fn direct(&self) -> AuditEvent {
            AuditEvent::from(self.0.clone())
        }
        async fn derived_page(&self) -> super::super::connection::ConnectionFields {
            self.page().0
        }
        async fn direct_page(&self) -> AuditEventConnection {
            self.page()
        }
        async fn derived_list(&self) -> Vec<EventFields> {
            vec![EventFields(Arc::new(self.0.clone())), EventFields(Arc::new(bare()))]
        }
        async fn direct_list(&self) -> AuditEventList {
            AuditEventList::from([self.0.clone(), bare()])
        }
        async fn derived_descendants(&self) -> super::super::tree::DescendantConnectionFields {
            self.descendants().0
        }
        async fn direct_descendants(&self) -> AuditEventDescendantConnection {
            self.descendants()
        }
    }

    impl Root {
        fn descendants(&self) -> AuditEventDescendantConnection {
            let nodes = [(self.0.clone(), 1), (bare(), 2)]
                .into_iter()
                .map(|(event, depth)| crate::store::TreeNode {
                    event: Arc::new(event),
                    depth,
                })
                .collect();
            let root = crate::domain::EventKey {
                id: Uuid::from_u128(7),
                date: self.0.event_date,
            };
            AuditEventDescendantConnection::new(nodes, true, None, root, 100)
        }
    }

    /// An event with every optional field set; `bare` clears them.
    fn full() -> Model {
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap() + chrono::Duration::microseconds(123_456);
        let text = |s: &str| Some(s.to_owned());
        Model {
            event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            event_version: "1.0".into(),
            event_timestamp: at,
            event_date: at.date_naive(),
            event_type: "gateway.signal.received".into(),
            event_category: "gateway".into(),
            event_action: "received".into(),
            event_outcome: "success".into(),
            actor_type: "service".into(),
            actor_id: "gateway \"main\"".into(),
            actor_ip: text("10.0.0.1"),
            resource_type: "Pod".into(),
            resource_id: "line\nbreak".into(),
            resource_name: text("pod-1"),
            correlation_id: "corr-1".into(),
            parent_event_id: Some(Uuid::from_u128(7)),
            parent_event_date: Some(at.date_naive()),
            trace_id: text("trace"),
            span_id: text("span"),
            namespace: text("ns"),
            cluster_id: text("cluster"),
            event_data: serde_json::json!({"n": 1.5, "list": [1, "two", null], "nested": {"a": true}}),
            event_metadata: Some(serde_json::json!({"k": "v"})),
            severity: text("warning"),
            duration_ms: Some(-3),
            error_code: text("E1"),
            error_message: text("failed"),
            retention_days: 2555,
            is_sensitive: true,
            event_hash: text("abc"),
            previous_event_hash: text("def"),
            hash_algorithm: "hmac-sha256".into(),
            legal_hold: true,
            legal_hold_reason: text("case 1"),
            legal_hold_placed_by: text("legal"),
            legal_hold_placed_at: Some(at),
            submitted_by: text("svc:gateway"),
            chain_seq: Some(i64::MAX),
            hash_key_id: text("k1"),
            chain_note: text("note"),
            event_data_text: None,
        }
    }

    fn bare() -> Model {
        Model {
            actor_ip: None,
            resource_name: None,
            parent_event_id: None,
            parent_event_date: None,
            trace_id: None,
            span_id: None,
            namespace: None,
            cluster_id: None,
            event_data: serde_json::json!({}),
            event_metadata: None,
            severity: None,
            duration_ms: None,
            error_code: None,
            error_message: None,
            event_hash: None,
            previous_event_hash: None,
            legal_hold_reason: None,
            legal_hold_placed_by: None,
            legal_hold_placed_at: None,
            submitted_by: None,
            chain_seq: None,
            hash_key_id: None,
            chain_note: None,
            event_data_text: None,
            ..full()
        }
    }

    async fn run(model: Model, query: &str) -> async_graphql::Response {
        run_writing(model, query, false).await
    }

    /// Runs `query`, with JSON written ahead where the HTTP transport would when `ahead`.
    async fn run_writing(model: Model, query: &str, ahead: bool) -> async_graphql::Response {
        let schema = Schema::new(Root(model), EmptyMutation, EmptySubscription);
        let mut request = async_graphql::Request::new(query);
        if ahead && !crate::graphql::order::repeats_keys(&mut request) {
            request = request.data(super::super::WriteAhead);
        }
        let response = schema.execute(request).await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        response
    }

    /// `value` as the HTTP transport writes it.
    fn written(value: &async_graphql::Value) -> String {
        let mut out = Vec::new();
        crate::graphql::json::write_value(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Whether some part of `value` was written ahead.
    fn has_written_ahead(value: &async_graphql::Value) -> bool {
        match value {
            async_graphql::Value::Binary(_) => true,
            async_graphql::Value::List(items) => items.iter().any(has_written_ahead),
            async_graphql::Value::Object(map) => map.values().any(has_written_ahead),
            _ => false,
        }
    }

    /// Scalar fields that the server computes with a loader, not stored values.
    const COMPUTED: [&str; 2] = ["depth", "childCount"];

    /// The fields of `AuditEvent` that take no argument and return a stored scalar: all of them,
    /// as the schema lists them, so that a field added later is covered too.
    async fn scalar_fields() -> Vec<String> {
        let response = run(
            full(),
            "{ __type(name: \"AuditEvent\") { fields { name args { name } type { kind ofType { kind } } } } }",
        )
        .await;
        let data = response.data.into_json().unwrap();
        let fields: Vec<String> = data["__type"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["args"].as_array().unwrap().is_empty())
            .filter(|f| f["type"]["kind"] == "SCALAR" || f["type"]["ofType"]["kind"] == "SCALAR")
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .filter(|name| !COMPUTED.contains(&name.as_str()))
            .collect();
        let event = EventFields(Arc::new(full()));
        for name in &fields {
            assert!(event.stored(name).is_some(), "{name} is not resolved directly");
        }
        for name in fields
            .iter()
            .map(String::as_str)
            .chain(STORED_FIELDS)
            .chain(["children", "parent", "depth"])
        {
            assert_eq!(event.is_stored(name), event.stored(name).is_some(), "{name}");
        }
        assert!(fields.len() >= 40, "{fields:?}");
        fields
    }

    #[tokio::test]
    async fn stored_fields_are_written_ahead_as_their_values_are_written() {
        for model in [full(), bare()] {
            let event = EventFields(Arc::new(model));
            for name in scalar_fields().await {
                let mut ahead = Vec::new();
                assert!(event.write_stored(&name, &mut ahead), "{name}");
                assert_eq!(
                    String::from_utf8(ahead).unwrap(),
                    written(&event.stored(&name).unwrap()),
                    "{name}"
                );
            }
            assert!(!event.write_stored("children", &mut Vec::new()));
        }
    }

    #[tokio::test]
    async fn stored_fields_resolve_directly_to_what_the_derived_object_gives() {
        let fields = scalar_fields().await.join(" ");
        for model in [full(), bare()] {
            let id = model.event_id;
            let response = run(model, &format!("{{ derived {{ {fields} }} direct {{ {fields} }} }}")).await;
            let data = response.data.into_json().unwrap();
            assert_eq!(data["direct"], data["derived"]);
            assert_eq!(data["direct"]["eventId"], id.to_string());
        }
        let direct = run(full(), "{ direct { eventData eventTimestamp eventDate chainSeq } }").await;
        let direct = direct.data.into_json().unwrap();
        assert_eq!(direct["direct"]["eventData"]["list"][1], "two");
        assert_eq!(direct["direct"]["eventTimestamp"], "2026-03-01T10:00:00.123456+00:00");
        assert_eq!(direct["direct"]["eventDate"], "2026-03-01");
        assert_eq!(direct["direct"]["chainSeq"], i64::MAX);
    }

    #[tokio::test]
    async fn aliases_fragments_and_repeated_keys_resolve_as_the_derived_object_does() {
        let selection = "__typename a: eventType eventType id: eventId eventId ...F \
                         ... on AuditEvent { severity a: eventType } ... { kind: __typename eventOutcome }";
        let query = format!(
            "query {{ derived {{ {selection} }} direct {{ {selection} }} }} \
             fragment F on AuditEvent {{ actorId eventId legalHold }}"
        );
        let response = run(full(), &query).await;
        let async_graphql::Value::Object(data) = &response.data else {
            panic!("{:?}", response.data)
        };
        let async_graphql::Value::Object(direct) = &data["direct"] else {
            panic!("{data:?}")
        };
        let keys: Vec<&str> = direct.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "__typename",
                "a",
                "eventType",
                "id",
                "eventId",
                "actorId",
                "legalHold",
                "severity",
                "kind",
                "eventOutcome"
            ]
        );
        assert_eq!(data["direct"], data["derived"]);
        assert_eq!(direct["__typename"], async_graphql::Value::from("AuditEvent"));
        assert_eq!(direct["kind"], async_graphql::Value::from("AuditEvent"));
    }

    #[tokio::test]
    async fn pages_of_stored_fields_resolve_at_once_to_what_the_derived_objects_give() {
        let fields = scalar_fields().await.join(" ");
        let selections = [
            (
                format!(
                    "edges {{ cursor node {{ {fields} }} }} \
                     pageInfo {{ hasPreviousPage hasNextPage startCursor endCursor }}"
                ),
                "",
            ),
            (format!("nodes {{ {fields} }} __typename"), ""),
            (
                "a: edges { c: cursor n: node { __typename eventId } } edges { node { eventType eventId } } \
                 ...P ... on AuditEventConnection { pageInfo { endCursor } }"
                    .to_string(),
                "fragment P on AuditEventConnection { pageInfo { startCursor hasNextPage } nodes { eventId } }",
            ),
            (
                "edges { node { eventId ... on AuditEvent { eventData } ...E } } pageInfo { ... { hasNextPage } }"
                    .to_string(),
                "fragment E on AuditEvent { actorId eventId }",
            ),
            (
                "edges { node { ... on AuditEvent { eventData } ...E } } pageInfo { ... { hasNextPage } }".to_string(),
                "fragment E on AuditEvent { actorId eventId }",
            ),
        ];
        // Keys selected twice are merged, so nothing of such a query is written ahead.
        let merges = [false, false, true, true, false];
        for (((selection, fragments), merges), ahead) in
            selections.iter().zip(merges).flat_map(|s| [(s, false), (s, true)])
        {
            let query = format!("query {{ derivedPage {{ {selection} }} directPage {{ {selection} }} }} {fragments}");
            let response = run_writing(full(), &query, ahead).await;
            // Written out, so that the order of keys counts too.
            let async_graphql::Value::Object(pages) = &response.data else {
                panic!("{:?}", response.data)
            };
            assert_eq!(
                written(&pages["directPage"]),
                written(&pages["derivedPage"]),
                "{selection}"
            );
            assert_eq!(has_written_ahead(&pages["directPage"]), ahead && !merges, "{selection}");
            let data: serde_json::Value = serde_json::from_str(&written(&response.data)).unwrap();
            assert!(
                data["directPage"].as_object().is_some_and(|page| !page.is_empty()),
                "{selection}"
            );
        }
        let response = run(
            full(),
            "{ directPage { pageInfo { hasNextPage hasPreviousPage } edges { node { eventId } } } }",
        )
        .await;
        let data = response.data.into_json().unwrap();
        assert_eq!(data["directPage"]["pageInfo"]["hasNextPage"], true);
        assert_eq!(data["directPage"]["pageInfo"]["hasPreviousPage"], false);
        assert_eq!(
            data["directPage"]["edges"][1]["node"]["eventId"],
            full().event_id.to_string()
        );
    }

    #[tokio::test]
    async fn lists_and_descendant_pages_resolve_at_once_to_what_the_derived_objects_give() {
        let fields = scalar_fields().await.join(" ");
        let selections = [
            ("derivedList", "directList", format!("{fields} __typename"), ""),
            (
                "derivedList",
                "directList",
                "a: eventId ...F ... on AuditEvent { eventType a: eventId }".to_string(),
                "fragment F on AuditEvent { actorId }",
            ),
            (
                "derivedDescendants",
                "directDescendants",
                format!(
                    "edges {{ cursor depth node {{ {fields} }} }} nodes {{ eventId }} \
                     pageInfo {{ hasPreviousPage hasNextPage startCursor endCursor }} __typename"
                ),
                "",
            ),
            (
                "derivedDescendants",
                "directDescendants",
                "e: edges { d: depth ...D } ... on AuditEventDescendantConnection { pageInfo { endCursor } }"
                    .to_string(),
                "fragment D on AuditEventDescendantEdge { cursor node { eventId } depth }",
            ),
        ];
        for ((derived, direct, selection, fragments), ahead) in selections.iter().flat_map(|s| [(s, false), (s, true)])
        {
            let query = format!("query {{ {derived} {{ {selection} }} {direct} {{ {selection} }} }} {fragments}");
            let response = run_writing(full(), &query, ahead).await;
            let async_graphql::Value::Object(values) = &response.data else {
                panic!("{:?}", response.data)
            };
            // Written out, so that the order of keys counts too.
            assert_eq!(written(&values[*direct]), written(&values[*derived]), "{selection}");
            assert!(written(&values[*direct]).len() > 20, "{}", written(&values[*direct]));
            let merges = selection.contains("a: eventId");
            assert_eq!(has_written_ahead(&values[*direct]), ahead && !merges, "{selection}");
        }
        let data = run(
            full(),
            "{ directList { eventId } directDescendants { edges { depth node { eventId } } pageInfo { hasNextPage } } }",
        )
        .await
        .data
        .into_json()
        .unwrap();
        assert_eq!(data["directList"][0]["eventId"], full().event_id.to_string());
        assert_eq!(data["directList"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["directDescendants"]["edges"][1]["depth"], 2);
        assert_eq!(data["directDescendants"]["pageInfo"]["hasNextPage"], true);
    }
}
