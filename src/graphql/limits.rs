//! Limits that keep one request from harming the others, beyond depth and complexity:
//!
//! - [`DocumentLimits`]: a document holds at most [`MAX_SELECTIONS`] selections (fields, aliases,
//!   fragment spreads, counted in every operation and fragment) and an operation at most
//!   [`MAX_ROOT_FIELDS`] root fields. Checked right after parsing, before validation walks it.
//! - [`DatabaseShare`]: one request resolves at most [`ROOT_FIELDS_AT_ONCE`] root fields at a time,
//!   and at most [`WALKS_AT_ONCE`] descendant walks at a time, so a request full of aliases takes
//!   longer itself instead of taking every pooled connection from other clients. Fields that
//!   dataloaders batch are not held back: holding them would split their batches.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Value, Variables};
use tokio::sync::Semaphore;

/// Most selections in one document.
pub const MAX_SELECTIONS: usize = 1_000;

/// Most root fields (aliases included) in one operation.
pub const MAX_ROOT_FIELDS: usize = 50;

/// Root fields of one request resolved at the same time.
pub const ROOT_FIELDS_AT_ONCE: usize = 4;

/// Descendant walks of one request run at the same time.
pub const WALKS_AT_ONCE: usize = 4;

/// Refuses documents with too many selections or root fields (see the module documentation).
pub struct DocumentLimits;

impl ExtensionFactory for DocumentLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentLimitsExtension)
    }
}

struct DocumentLimitsExtension;

fn selections(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => 1 + selections(&field.node.selection_set.node),
            Selection::InlineFragment(fragment) => 1 + selections(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 1,
        })
        .sum()
}

/// Why a document is refused, if it is.
pub fn document_refusal(document: &ExecutableDocument) -> Option<String> {
    let operations: usize = document
        .operations
        .iter()
        .map(|(_, op)| selections(&op.node.selection_set.node))
        .sum();
    let fragments: usize = document
        .fragments
        .values()
        .map(|f| selections(&f.node.selection_set.node))
        .sum();
    let total = operations + fragments;
    if total > MAX_SELECTIONS {
        return Some(format!(
            "the document has {total} selections; at most {MAX_SELECTIONS} are allowed"
        ));
    }
    document.operations.iter().find_map(|(_, op)| {
        let roots = op.node.selection_set.node.items.len();
        (roots > MAX_ROOT_FIELDS)
            .then(|| format!("an operation selects {roots} root fields; at most {MAX_ROOT_FIELDS} are allowed"))
    })
}

#[async_trait::async_trait]
impl Extension for DocumentLimitsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        match document_refusal(&document) {
            Some(reason) => Err(ServerError::new(reason, None)),
            None => Ok(document),
        }
    }
}

/// Shares the database fairly between requests (see the module documentation).
pub struct DatabaseShare;

impl ExtensionFactory for DatabaseShare {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DatabaseShareExtension {
            roots: Semaphore::new(ROOT_FIELDS_AT_ONCE),
            walks: Semaphore::new(WALKS_AT_ONCE),
        })
    }
}

/// One per request.
struct DatabaseShareExtension {
    roots: Semaphore,
    walks: Semaphore,
}

#[async_trait::async_trait]
impl Extension for DatabaseShareExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let semaphore = match (info.parent_type, info.name) {
            ("Query", name) if !name.starts_with("__") => Some(&self.roots),
            ("AuditEvent", "descendants") => Some(&self.walks),
            _ => None,
        };
        let _permit = match semaphore {
            // The semaphores live as long as the request and are never closed.
            Some(semaphore) => semaphore.acquire().await.ok(),
            None => None,
        };
        next.run(ctx, info).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(query: &str) -> Option<String> {
        document_refusal(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn documents_are_bounded_in_selections_and_root_fields() {
        assert_eq!(refusal("{ a { b c } d }"), None);
        let aliases: String = (0..=MAX_ROOT_FIELDS).map(|i| format!("a{i}: x ")).collect();
        assert!(refusal(&format!("{{ {aliases} }}")).unwrap().contains("root fields"));
        let wide: String = (0..=MAX_SELECTIONS).map(|i| format!("f{i} ")).collect();
        assert!(
            refusal(&format!("{{ a {{ {wide} }} }}"))
                .unwrap()
                .contains("selections")
        );
        let chain: String = (0..MAX_SELECTIONS)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} }} ", i + 1))
            .collect();
        assert!(
            refusal(&format!("{{ ...F0 }} {chain}")).unwrap().contains("selections"),
            "fragment spreads count too"
        );
    }
}
