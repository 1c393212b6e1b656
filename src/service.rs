//! The application's operations, shared by every API. GraphQL resolvers and REST handlers only
//! translate their request into a call here and the result back into their response; everything
//! else happens once, in this order: the caller's role is checked, the input validated, the actor
//! rule applied, the events written through the store, and metrics recorded. Later features hook in
//! here (hash chains, live subscriptions).

use std::time::Instant;

use chrono::Utc;

use crate::auth::{Principal, PrincipalKind, Role};
use crate::domain::chain::{self, ChainReport};
use crate::domain::merkle;
use crate::domain::{EventInput, FieldError, Limits, NewEvent};
use crate::entity::audit_event::Model;
use crate::error::ApiError;
use crate::live::Live;
use crate::metrics::{Metrics, Source};
use crate::ops::log::Publisher;
use crate::store::Store;
use crate::store::{LegalHold, LogLeaf, ReleasedHold, RetentionRun, StoredCheckpoint};
use uuid::Uuid;

/// An event as a client submitted it: parsed, or the field errors of its parsing (the REST API
/// reads JSON field by field, so a wrong type is known before validation).
pub type Submission = Result<EventInput, Vec<FieldError>>;

/// What every operation needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Service {
    /// The database.
    pub store: Store,
    /// Validation limits for writes.
    pub limits: Limits,
    /// Most events in one batch write.
    pub max_batch_size: usize,
    /// Where requests are counted and timed.
    pub metrics: Metrics,
    /// The transparency log's sequencer and publisher.
    pub log: Publisher,
    /// Live delivery to subscribers.
    pub live: Live,
}

impl Service {
    /// Refuses a caller whose role does not reach `role`: `FORBIDDEN`, naming the role needed and
    /// the one held. Refusals are counted where each API answers them, once per request.
    pub fn authorize(&self, caller: &Principal, role: Role) -> Result<(), ApiError> {
        if caller.has(role) {
            return Ok(());
        }
        let held = caller
            .role
            .map_or_else(|| "no role".to_string(), |r| format!("the role {}", r.as_str()));
        Err(ApiError::Forbidden(format!(
            "{} holds {held}; this operation needs the role {} or higher",
            caller.name,
            role.as_str()
        )))
    }

    /// Records one event for `caller`. It is durable once this returns.
    pub async fn create_event(
        &self,
        caller: &Principal,
        submission: Submission,
        source: Source,
    ) -> Result<Model, ApiError> {
        self.authorize(caller, Role::Writer)?;
        let mut stored = self
            .write(caller, vec![submission], source, true)
            .await
            .map_err(ApiError::without_index)?;
        stored
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a one-event write stored nothing")))
    }

    /// Records a batch atomically for `caller`: all events or none. Every event is validated
    /// before anything is written, and errors give each event's index.
    pub async fn create_events(
        &self,
        caller: &Principal,
        submissions: Vec<Submission>,
        source: Source,
    ) -> Result<Vec<Model>, ApiError> {
        // The role first: a caller who may not write learns nothing, not even the batch limit.
        self.authorize(caller, Role::Writer)?;
        if submissions.is_empty() {
            return Err(ApiError::EmptyBatch);
        }
        if submissions.len() > self.max_batch_size {
            return Err(ApiError::BatchTooLarge {
                max: self.max_batch_size,
                got: submissions.len(),
            });
        }
        self.write(caller, submissions, source, false).await
    }

    /// Validates and writes for a caller whose role the public methods checked. A single event
    /// (`alone`) is committed in a group with concurrent single writes; a batch is written whole,
    /// all or none (`Store::create_events`).
    async fn write(
        &self,
        caller: &Principal,
        submissions: Vec<Submission>,
        source: Source,
        alone: bool,
    ) -> Result<Vec<Model>, ApiError> {
        let now = Utc::now();
        let mut batch = Vec::with_capacity(submissions.len());
        let mut errors = Vec::new();
        for (index, submission) in submissions.into_iter().enumerate() {
            let validated = submission.and_then(|mut input| {
                apply_actor_rule(caller, &mut input);
                input.validate(&self.limits, now)
            });
            match validated {
                Ok(mut event) => {
                    event.submitted_by = Some(caller.name.clone());
                    batch.push(event);
                }
                Err(found) => errors.extend(found.into_iter().map(|e| e.at(index))),
            }
        }
        if !errors.is_empty() {
            return Err(self.refused(source, ApiError::BadUserInput { errors }));
        }
        let started = Instant::now();
        let count = batch.len();
        let written = match (alone, batch.pop()) {
            (true, Some(event)) => self.store.create_event(event).await.map(|m| vec![m]),
            (_, last) => {
                batch.extend(last);
                self.store.create_events(batch).await
            }
        };
        let stored = written.map_err(|e| self.refused(source, e.into()))?;
        self.metrics.written(source, count, started.elapsed().as_secs_f64());
        self.live.written();
        Ok(stored)
    }

    /// Checks the hash chain of one correlation: every event's hash against its content, every
    /// link, every position, and the chain's recorded head. Needs the role `reader`.
    pub async fn verify_chain(&self, caller: &Principal, correlation_id: &str) -> Result<ChainVerification, ApiError> {
        self.authorize(caller, Role::Reader)?;
        check_correlation(correlation_id)?;
        let crate::store::StoredChain { events, purged, head } = self.store.stored_chain(correlation_id).await?;
        let purged: Vec<chain::PurgedLink> = purged.iter().map(crate::store::Purged::link).collect();
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let logged = self.store.log_leaves_of(&ids).await?;
        let report = chain::verify(
            self.store.hasher(),
            &events,
            &purged,
            head.as_ref().map(|h| (h.last_seq, h.last_hash.as_str())),
            &logged,
            crate::store::event_leaf,
        );
        if !report.valid() {
            tracing::warn!(
                correlation_id,
                breaks = report.breaks.len(),
                first = ?report.breaks.first().map(|b| (b.event_id, b.kind.as_str())),
                "hash chain verification found tampering"
            );
        }
        let timestamps = events.iter().map(|e| (e.event_id, e.event_timestamp)).collect();
        Ok(ChainVerification {
            correlation_id: correlation_id.to_string(),
            report,
            timestamps,
            verified_at: Utc::now(),
        })
    }

    /// The newest signed checkpoint of the transparency log (after sequencing what is committed
    /// and publishing when the log grew, so that a client sees its own writes). Needs `reader`.
    pub async fn latest_checkpoint(&self, caller: &Principal) -> Result<Option<StoredCheckpoint>, ApiError> {
        self.authorize(caller, Role::Reader)?;
        self.log.sequence_all_now().await?;
        Ok(self.log.publish().await?)
    }

    /// The position in commit order now: the events committed so far are sequenced first, so
    /// that each lies before the cursor. Needs `reader`.
    pub async fn live_cursor(&self, caller: &Principal) -> Result<crate::domain::LiveCursor, ApiError> {
        self.authorize(caller, Role::Reader)?;
        self.log.sequence_all_now().await?;
        Ok(crate::domain::LiveCursor(self.store.log_size().await?))
    }

    /// The proof that an event is the leaf it claims in the tree of `tree_size` leaves (default:
    /// the newest checkpoint's). Needs `reader`.
    pub async fn inclusion_proof(
        &self,
        caller: &Principal,
        event_id: Uuid,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, ApiError> {
        self.authorize(caller, Role::Reader)?;
        let Some(leaf) = self.store.log_leaf_of(event_id).await? else {
            return Err(ApiError::NotFound(format!(
                "event {event_id} is not in the transparency log (yet: the sequencer adds committed events within a second)"
            )));
        };
        let size = match tree_size {
            Some(size) => size,
            None => self.store.latest_checkpoint().await?.map_or(0, |c| c.tree_size),
        };
        if leaf.index >= size {
            return Err(ApiError::BadArgument {
                argument: "treeSize".into(),
                message: format!(
                    "the event is leaf {} and a tree of {size} leaves does not hold it; ask for a larger tree",
                    leaf.index
                ),
            });
        }
        let logged = self.store.log_size().await?;
        if size > logged {
            return Err(ApiError::BadArgument {
                argument: "treeSize".into(),
                message: format!("the log holds {logged} leaves, fewer than {size}"),
            });
        }
        // The proof's nodes and the root's, in one read.
        let mut wanted = merkle::inclusion_nodes(leaf.index, size);
        wanted.extend(merkle::root_nodes(size));
        let nodes = self.store.log_nodes(&wanted).await?;
        let hashes = merkle::inclusion_proof(&nodes, leaf.index, size)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("inclusion proof: {e:?}")))?;
        let root = merkle::root(&nodes, size).map_err(|e| ApiError::internal(anyhow::anyhow!("root: {e:?}")))?;
        Ok(InclusionProof {
            leaf,
            tree_size: size,
            hashes,
            root,
        })
    }

    /// The proof that the tree of `from` leaves is a prefix of the tree of `to` leaves (default:
    /// the newest checkpoint's size). Needs `reader`.
    pub async fn consistency_proof(
        &self,
        caller: &Principal,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof, ApiError> {
        self.authorize(caller, Role::Reader)?;
        let to = match to {
            Some(size) => size,
            None => self.store.latest_checkpoint().await?.map_or(0, |c| c.tree_size),
        };
        let logged = self.store.log_size().await?;
        if from == 0 || from > to || to > logged {
            return Err(ApiError::BadArgument {
                argument: "fromSize".into(),
                message: format!("needs 0 < fromSize <= toSize <= {logged} (the log's size), got {from} and {to}"),
            });
        }
        // The proof's nodes and both roots', in one read.
        let mut wanted = merkle::consistency_nodes(from, to);
        wanted.extend(merkle::root_nodes(from));
        wanted.extend(merkle::root_nodes(to));
        let nodes = self.store.log_nodes(&wanted).await?;
        let hashes = merkle::consistency_proof(&nodes, from, to)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("consistency proof: {e:?}")))?;
        let root_of = |size| merkle::root(&nodes, size).map_err(|e| ApiError::internal(anyhow::anyhow!("root: {e:?}")));
        Ok(ConsistencyProof {
            from,
            to,
            from_root: root_of(from)?,
            to_root: root_of(to)?,
            hashes,
        })
    }

    /// Places a legal hold on a correlation: its events, and those written to it later, cannot
    /// be deleted until the hold is released. The placing is recorded as an event of the
    /// correlation (who, when, why), held with the others. Needs `admin`.
    pub async fn place_legal_hold(
        &self,
        caller: &Principal,
        correlation_id: &str,
        reason: &str,
    ) -> Result<(LegalHold, Model), ApiError> {
        self.authorize(caller, Role::Admin)?;
        check_correlation(correlation_id)?;
        let reason = check_reason("reason", reason)?;
        let record = self.lifecycle_record(caller, correlation_id, "legal_hold.placed", "place_legal_hold", reason)?;
        let (hold, record) = self
            .store
            .place_hold(correlation_id, reason, &caller.name, record)
            .await?;
        tracing::info!(correlation_id, by = %caller.name, events = hold.events_held, "legal hold placed");
        self.metrics.legal_hold("place");
        self.live.written();
        Ok((hold, record))
    }

    /// Releases the legal hold of a correlation, recorded as an event of the correlation. Needs
    /// `admin`.
    pub async fn release_legal_hold(
        &self,
        caller: &Principal,
        correlation_id: &str,
        reason: &str,
    ) -> Result<(ReleasedHold, Model), ApiError> {
        self.authorize(caller, Role::Admin)?;
        check_correlation(correlation_id)?;
        let reason = check_reason("releaseReason", reason)?;
        let record = self.lifecycle_record(
            caller,
            correlation_id,
            "legal_hold.released",
            "release_legal_hold",
            reason,
        )?;
        let (released, record) = self
            .store
            .release_hold(correlation_id, reason, &caller.name, record)
            .await?;
        tracing::info!(correlation_id, by = %caller.name, events = released.events_released, "legal hold released");
        self.metrics.legal_hold("release");
        self.live.written();
        Ok((released, record))
    }

    /// The legal holds in force. Needs `reader`.
    pub async fn legal_holds(&self, caller: &Principal) -> Result<Vec<LegalHold>, ApiError> {
        self.authorize(caller, Role::Reader)?;
        Ok(self.store.legal_holds().await?)
    }

    /// The retention runs recorded, newest first. Needs `reader`.
    pub async fn retention_runs(&self, caller: &Principal, limit: u64) -> Result<Vec<RetentionRun>, ApiError> {
        self.authorize(caller, Role::Reader)?;
        Ok(self.store.retention_runs(limit).await?)
    }

    /// The retention runs of these ids that exist. Needs `reader`.
    pub async fn retention_runs_by_id(&self, caller: &Principal, ids: &[Uuid]) -> Result<Vec<RetentionRun>, ApiError> {
        self.authorize(caller, Role::Reader)?;
        Ok(self.store.retention_runs_by_id(ids).await?)
    }

    /// The event that records a lifecycle action on a correlation, by `caller`, now.
    fn lifecycle_record(
        &self,
        caller: &Principal,
        correlation_id: &str,
        event_type: &str,
        action: &str,
        reason: &str,
    ) -> Result<NewEvent, ApiError> {
        let input = EventInput {
            event_type: event_type.into(),
            event_category: "compliance".into(),
            event_action: action.into(),
            event_outcome: "success".into(),
            actor_type: Some(match caller.kind {
                PrincipalKind::Service => "service".into(),
                PrincipalKind::Human | PrincipalKind::Anonymous => "user".into(),
            }),
            actor_id: Some(caller.name.clone()),
            resource_type: Some("correlation".into()),
            resource_id: Some(correlation_id.into()),
            correlation_id: correlation_id.into(),
            event_data: serde_json::json!({ "reason": reason }),
            ..EventInput::default()
        };
        // The operation's own record: not subject to the categories clients may use.
        let limits = Limits {
            allowed_categories: None,
            ..self.limits.clone()
        };
        let mut event = input
            .validate(&limits, Utc::now())
            .map_err(|errors| ApiError::BadUserInput { errors })?;
        event.submitted_by = Some(caller.name.clone());
        Ok(event)
    }

    /// Counts the field errors of a refused write (validation, or the store's unknown parent).
    fn refused(&self, source: Source, error: ApiError) -> ApiError {
        if let ApiError::BadUserInput { errors } = &error {
            for e in errors {
                self.metrics.validation_failed(source, e.reason);
            }
        }
        error
    }
}

/// The outcome of [`Service::verify_chain`].
#[derive(Clone, Debug)]
pub struct ChainVerification {
    /// The correlation checked.
    pub correlation_id: String,
    /// What the check found.
    pub report: ChainReport,
    /// When each event of the correlation happened (REST reports it with each break).
    pub timestamps: std::collections::HashMap<uuid::Uuid, chrono::DateTime<Utc>>,
    /// When the check ran.
    pub verified_at: chrono::DateTime<Utc>,
}

/// An inclusion proof and what it proves.
#[derive(Clone, Debug)]
pub struct InclusionProof {
    /// The event's leaf.
    pub leaf: LogLeaf,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The audit path, leaf to root (RFC 9162 §2.1.3).
    pub hashes: Vec<merkle::Hash>,
    /// The root of that tree.
    pub root: merkle::Hash,
}

/// A consistency proof and what it proves.
#[derive(Clone, Debug)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub from: u64,
    /// The newer tree's size.
    pub to: u64,
    /// The older tree's root.
    pub from_root: merkle::Hash,
    /// The newer tree's root.
    pub to_root: merkle::Hash,
    /// The proof (RFC 9162 §2.1.4).
    pub hashes: Vec<merkle::Hash>,
}

/// A correlation id as the table takes it.
fn check_correlation(correlation_id: &str) -> Result<(), ApiError> {
    if correlation_id.is_empty() || correlation_id.len() > 255 || correlation_id.contains('\0') {
        return Err(ApiError::BadArgument {
            argument: "correlationId".into(),
            message: "must be 1 to 255 bytes without U+0000".into(),
        });
    }
    Ok(())
}

/// The reason given for a hold or its release: required, trimmed, at most 1,000 characters.
fn check_reason<'a>(argument: &str, reason: &'a str) -> Result<&'a str, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 1_000 || reason.contains('\0') {
        return Err(ApiError::BadArgument {
            argument: argument.into(),
            message: "is required: 1 to 1,000 characters without U+0000, saying why".into(),
        });
    }
    Ok(reason)
}

/// kubernaut's anti-spoofing rule, on the authenticated principal: a human writes as themselves
/// (the actor becomes `user` / their name, whatever the body says); a service may name the actor
/// it acts for. Without authentication (`anonymous`) nobody is vouched for, and the body's actor
/// stands.
pub fn apply_actor_rule(caller: &Principal, input: &mut EventInput) {
    if caller.kind == PrincipalKind::Human {
        input.actor_type = Some("user".into());
        input.actor_id = Some(caller.name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Method;

    fn principal(kind: PrincipalKind) -> Principal {
        Principal {
            name: "alice@example.com".into(),
            kind,
            role: Some(Role::Writer),
            method: Method::Jwt,
        }
    }

    fn claiming(actor: &str) -> EventInput {
        EventInput {
            actor_type: Some("service".into()),
            actor_id: Some(actor.into()),
            ..EventInput::default()
        }
    }

    #[test]
    fn a_human_always_becomes_the_actor() {
        let mut input = claiming("payments-service");
        apply_actor_rule(&principal(PrincipalKind::Human), &mut input);
        assert_eq!(input.actor_type.as_deref(), Some("user"));
        assert_eq!(input.actor_id.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn a_service_or_an_anonymous_caller_keeps_the_actor_it_names() {
        for kind in [PrincipalKind::Service, PrincipalKind::Anonymous] {
            let mut input = claiming("payments-service");
            apply_actor_rule(&principal(kind), &mut input);
            assert_eq!(input.actor_id.as_deref(), Some("payments-service"));
            assert_eq!(input.actor_type.as_deref(), Some("service"));
        }
    }
}
