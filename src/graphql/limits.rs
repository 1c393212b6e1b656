//! Limits that keep one request from harming the others, beyond depth and complexity:
//!
//! - [`document_refusal`]: a document holds at most [`MAX_SELECTIONS`] selections (fields, aliases,
//!   fragment spreads, counted in every operation and fragment), at most
//!   [`MAX_EXPANDED_SELECTIONS`] once every fragment spread is replaced by its fragment (a few
//!   fragments that each spread the next one twice would otherwise expand to billions of
//!   selections, which validation walks one by one), no fragment an operation uses that spreads
//!   itself (expanding it would never end), and an operation at most [`MAX_ROOT_FIELDS`] root
//!   fields. The HTTP layer checks this before validation runs, and before anything else expands
//!   fragments.
//! - [`RootTurns`]: one request resolves at most [`ROOT_FIELDS_AT_ONCE`] root fields at a time,
//!   so a request full of aliases takes longer itself instead of taking every pooled connection
//!   from other clients. Root fields cannot nest, so the permits cannot deadlock.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use tokio::sync::Semaphore;

/// Most selections written in one document.
pub const MAX_SELECTIONS: usize = 1_000;

/// Most selections of one document once its fragments are expanded.
pub const MAX_EXPANDED_SELECTIONS: usize = 10_000;

/// Most root fields (aliases included) in one operation.
pub const MAX_ROOT_FIELDS: usize = 50;

/// Root fields of one request resolved at the same time.
pub const ROOT_FIELDS_AT_ONCE: usize = 4;

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

/// Whether a selection set asks for `__schema` or `__type`, directly or inside inline fragments.
fn asks_introspection(set: &SelectionSet) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            matches!(field.node.name.node.as_str(), "__schema" | "__type")
                || asks_introspection(&field.node.selection_set.node)
        }
        Selection::InlineFragment(fragment) => asks_introspection(&fragment.node.selection_set.node),
        Selection::FragmentSpread(_) => false,
    })
}

/// Whether a document uses introspection (`__schema`, `__type`; `__typename` is not
/// introspection of the schema). Fragments are checked too, wherever they are spread.
pub fn uses_introspection(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, op)| asks_introspection(&op.node.selection_set.node))
        || document
            .fragments
            .values()
            .any(|fragment| asks_introspection(&fragment.node.selection_set.node))
}

/// Selections of `set` with every spread replaced by its fragment; each fragment's size is
/// computed once. `Err` names a fragment that spreads itself, directly or through other
/// fragments, at any depth (`fragment F on AuditEvent { parent { ...F } }`): expanding it never
/// ends.
fn expanded<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    sizes: &mut HashMap<&'a str, usize>,
    visiting: &mut Vec<&'a str>,
) -> Result<usize, &'a str> {
    let mut total = 0_usize;
    for item in &set.items {
        let size = match &item.node {
            Selection::Field(field) => 1 + expanded(&field.node.selection_set.node, document, sizes, visiting)?,
            Selection::InlineFragment(fragment) => {
                1 + expanded(&fragment.node.selection_set.node, document, sizes, visiting)?
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                let inner = match (sizes.get(name), document.fragments.get(name)) {
                    (Some(size), _) => *size,
                    (None, Some(_)) if visiting.contains(&name) => return Err(name),
                    (None, Some(fragment)) => {
                        visiting.push(name);
                        let size = expanded(&fragment.node.selection_set.node, document, sizes, visiting)?;
                        visiting.pop();
                        sizes.insert(name, size);
                        size
                    }
                    (None, None) => 0,
                };
                1_usize.saturating_add(inner)
            }
        };
        total = total.saturating_add(size);
    }
    Ok(total)
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
    let mut sizes = HashMap::new();
    for (_, operation) in document.operations.iter() {
        let size = match expanded(
            &operation.node.selection_set.node,
            document,
            &mut sizes,
            &mut Vec::new(),
        ) {
            Ok(size) => size,
            Err(name) => {
                return Some(format!(
                    "the fragment \"{name}\" spreads itself, directly or through other fragments: it would never end"
                ));
            }
        };
        if size > MAX_EXPANDED_SELECTIONS {
            return Some(format!(
                "an operation expands to more than {MAX_EXPANDED_SELECTIONS} selections once its fragments are spread"
            ));
        }
        let roots = operation.node.selection_set.node.items.len();
        if roots > MAX_ROOT_FIELDS {
            return Some(format!(
                "an operation selects {roots} root fields; at most {MAX_ROOT_FIELDS} are allowed"
            ));
        }
    }
    None
}

/// The root fields of one request resolved at the same time (see the module documentation): held
/// in the request's data, taken by each root field of `Query` for as long as it resolves.
pub struct RootTurns(Semaphore);

impl Default for RootTurns {
    fn default() -> Self {
        Self(Semaphore::new(ROOT_FIELDS_AT_ONCE))
    }
}

/// Waits for the request's turn to resolve a root field; the turn lasts as long as the permit.
/// Without [`RootTurns`] in the request (a schema executed directly) there is no limit.
pub async fn root_turn<'a>(ctx: &async_graphql::Context<'a>) -> Option<tokio::sync::SemaphorePermit<'a>> {
    // The semaphore lives as long as the request and is never closed.
    ctx.data_opt::<RootTurns>()?.0.acquire().await.ok()
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
        // Thirty fragments that each spread the next twice: 63 selections written, 2^31 expanded.
        let fan: String = (0..30)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1))
            .collect();
        let fan = format!("{{ ...F0 }} {fan} fragment F30 on Query {{ __typename }}");
        assert!(refusal(&fan).unwrap().contains("expands"), "{:?}", refusal(&fan));
        for cycle in [
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            "{ a { ...F } } fragment F on T { parent { ...F } }",
            "{ a { ...F } } fragment F on T { x { ... on T { y { ...G } } } } fragment G on T { z { ...F } }",
            "{ ...F } fragment F on Query { ...F }",
        ] {
            assert!(refusal(cycle).unwrap().contains("spreads itself"), "{cycle}");
        }
        for acyclic in [
            "{ a { ...F ...G } } fragment F on T { b { ...G } } fragment G on T { c }",
            "{ a { ...Missing } }",
        ] {
            assert_eq!(refusal(acyclic), None, "{acyclic}");
        }
    }
}
