//! Response maps in the order of the selection set.
//!
//! The GraphQL specification (§ "Serialized Map Ordering") orders every response map as its
//! fields were requested, and clients and snapshot tests rely on it. async-graphql resolves the
//! fields of an object concurrently and inserts each value when it completes, so a field that
//! waits for the database (`totalCount`) can end up after one that does not (`edges`), depending
//! on timing. This extension puts every map of `data` back into the order of the operation's
//! selection set, as the specification's CollectFields defines it: aliases, fragments, merged
//! fields and `@skip`/`@include` included.
//!
//! Type conditions are not evaluated: keys of a fragment whose condition does not apply are simply
//! absent from the map, so only their relative place among the present keys could differ, and
//! only when the same key also appears in an applicable selection after them.

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Directive, FragmentDefinition, Selection, SelectionSet, VariableDefinition};
use async_graphql::{Name, Positioned, Response, Value, Variables};

/// How to order the response of one request (see the module documentation), planned from its
/// document before it runs; the transports apply it to each response.
pub struct ResponseOrder {
    plan: Plan,
}

impl ResponseOrder {
    /// The order of the responses of `request` (parsing its document if that has not happened
    /// yet); `None` when the document does not parse or names no operation.
    pub fn of(request: &mut async_graphql::Request) -> Option<Self> {
        // The variables and the operation's name are lent to the plan, not copied: a batch's
        // variables weigh megabytes.
        let variables = std::mem::take(&mut request.variables);
        let operation_name = request.operation_name.take();
        let order = Self::planned(request, &variables, operation_name.as_deref());
        request.variables = variables;
        request.operation_name = operation_name;
        order
    }

    fn planned(
        request: &mut async_graphql::Request,
        variables: &Variables,
        operation_name: Option<&str>,
    ) -> Option<Self> {
        let document = request.parsed_query().ok()?;
        let operation = super::chosen_operation(document, operation_name)?;
        let order = Order {
            fragments: &document.fragments,
            variables,
            defaults: &operation.node.variable_definitions,
        };
        Some(Self {
            plan: order.plan(&[&operation.node.selection_set.node]),
        })
    }

    /// Puts every map of the response's `data` in the order of the selection sets.
    pub fn apply(&self, response: &mut Response) {
        apply_plan(&mut response.data, &self.plan);
    }
}

/// What ordering a response needs from its request.
struct Order<'a> {
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    /// The request's variables.
    variables: &'a Variables,
    /// The operation's definitions of its variables, whose defaults stand for those the request
    /// did not send, as the specification reads `@skip(if: $v)`. async-graphql 7 decides `@skip`
    /// and `@include` without the defaults; where the two differ, a key the plan left out keeps
    /// its place at the end.
    defaults: &'a [Positioned<VariableDefinition>],
}

impl Order<'_> {
    /// The value of the variable `name`: the request's, else its default.
    fn variable(&self, name: &Name) -> Option<&Value> {
        self.variables.get(name).or_else(|| {
            self.defaults
                .iter()
                .find(|definition| definition.node.name.node == *name)
                .and_then(|definition| definition.node.default_value.as_ref())
                .map(|default| &default.node)
        })
    }
}

/// The order of a response map's keys, and of the maps below each key: collected once per request
/// from the document, then applied to every element of every list.
struct Plan {
    keys: Vec<(Name, Option<Plan>)>,
}

impl<'a> Order<'a> {
    /// Orders `value` (and everything below it) as the merged selection sets `sets` ask.
    #[cfg(test)]
    fn apply(&self, value: &mut Value, sets: &[&'a SelectionSet]) {
        let plan = self.plan(sets);
        apply_plan(value, &plan);
    }

    /// The plan of the merged selection sets `sets`.
    fn plan(&self, sets: &[&'a SelectionSet]) -> Plan {
        let mut fields = IndexMap::new();
        let mut visited = foldhash::HashSet::default();
        for set in sets {
            self.collect(set, &mut fields, &mut visited);
        }
        let keys = fields
            .into_values()
            .map(|(key, subsets): (&Name, Vec<_>)| (key.clone(), (!subsets.is_empty()).then(|| self.plan(&subsets))))
            .collect();
        Plan { keys }
    }

    /// CollectFields: the response keys of `set` in order, each with the selection sets below it.
    fn collect(
        &self,
        set: &'a SelectionSet,
        fields: &mut IndexMap<&'a str, (&'a Name, Vec<&'a SelectionSet>)>,
        visited: &mut foldhash::HashSet<&'a str>,
    ) {
        for selection in &set.items {
            if !self.included(selection.node.directives()) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    // The document's own name: the response's keys are the same one, so
                    // comparing them is mostly comparing pointers (see `same`).
                    let key = &field.node.response_key().node;
                    let (_, below) = fields.entry(key.as_str()).or_insert_with(|| (key, Vec::new()));
                    if !field.node.selection_set.node.items.is_empty() {
                        below.push(&field.node.selection_set.node);
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.collect(&fragment.node.selection_set.node, fields, visited);
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if !visited.insert(name) {
                        continue;
                    }
                    if let Some(fragment) = self.fragments.get(name) {
                        self.collect(&fragment.node.selection_set.node, fields, visited);
                    }
                }
            }
        }
    }

    /// Whether `@skip` and `@include` let a selection through.
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|directive| {
            let condition = directive
                .node
                .get_argument("if")
                .and_then(|value| {
                    value
                        .node
                        .clone()
                        .into_const_with(|name| self.variable(&name).cloned().ok_or(()))
                        .ok()
                })
                .map(|value| value == Value::Boolean(true));
            lets_through(directive.node.name.node.as_str(), condition)
        })
    }
}

/// Whether the directive `name`, its `if` argument `condition` (when it has one), lets a
/// selection through: `@skip` unless true, `@include` unless false, any other always.
pub(super) fn lets_through(name: &str, condition: Option<bool>) -> bool {
    match name {
        "skip" => condition != Some(true),
        "include" => condition != Some(false),
        _ => true,
    }
}

/// Whether some selection set of the operation `request` runs may select a response key more
/// than once (its values are then merged); also when the document does not parse or names no
/// operation. Counted as if every selection were included: every fragment whatever its type
/// condition, a fragment spread twice in one set, and selections under `@skip` or `@include`
/// whatever their condition (async-graphql 7 decides those without the operation's variable
/// defaults, so [`ResponseOrder`]'s reading of them can differ from the executor's). Fragments
/// do not spread themselves here: documents whose fragments do are refused before they run
/// (`limits::document_refusal`).
pub fn repeats_keys(request: &mut async_graphql::Request) -> bool {
    let operation_name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return true;
    };
    super::chosen_operation(document, operation_name.as_deref())
        .is_none_or(|operation| selects_twice(&operation.node.selection_set.node, &document.fragments))
}

/// Whether `set`, or a selection set below it, selects a response key twice (see
/// [`repeats_keys`]).
fn selects_twice(
    set: &SelectionSet,
    fragments: &std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
) -> bool {
    let mut keys = foldhash::HashSet::default();
    let mut spread = foldhash::HashSet::default();
    let mut below = Vec::new();
    gather_keys(set, fragments, &mut keys, &mut spread, &mut below)
        || below.into_iter().any(|set| selects_twice(set, fragments))
}

/// Adds the response keys of `set` (fragments expanded) to `keys`, and the selection sets below
/// its fields to `below`: `true` as soon as a key or a fragment comes twice.
fn gather_keys<'a>(
    set: &'a SelectionSet,
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    keys: &mut foldhash::HashSet<&'a str>,
    spread: &mut foldhash::HashSet<&'a str>,
    below: &mut Vec<&'a SelectionSet>,
) -> bool {
    set.items.iter().any(|selection| match &selection.node {
        Selection::Field(field) => {
            if !field.node.selection_set.node.items.is_empty() {
                below.push(&field.node.selection_set.node);
            }
            !keys.insert(field.node.response_key().node.as_str())
        }
        Selection::InlineFragment(fragment) => {
            gather_keys(&fragment.node.selection_set.node, fragments, keys, spread, below)
        }
        Selection::FragmentSpread(fragment) => {
            let name = fragment.node.fragment_name.node.as_str();
            !spread.insert(name)
                || fragments.get(name).is_some_and(|fragment| {
                    gather_keys(&fragment.node.selection_set.node, fragments, keys, spread, below)
                })
        }
    })
}

/// Whether two keys are equal: usually both are the document's name, shared, so their text is
/// one and the same and need not be compared.
fn same(a: &Name, b: &Name) -> bool {
    std::ptr::eq(a.as_str(), b.as_str()) || a == b
}

/// Orders the maps of `value` (every element, for a list) by `plan`. A map already in order (the
/// usual case) is left as it is; only its children are visited.
fn apply_plan(value: &mut Value, plan: &Plan) {
    match value {
        Value::List(items) => {
            for item in items {
                apply_plan(item, plan);
            }
        }
        Value::Object(map) => {
            // Most maps are in order already: check by walking both, without hashing a key.
            let mut planned = plan.keys.iter();
            let in_order = map.keys().all(|key| planned.by_ref().any(|(name, _)| same(name, key)));
            if !in_order {
                let mut ordered = IndexMap::with_capacity(map.len());
                for (key, _) in &plan.keys {
                    if let Some((name, child)) = map.shift_remove_entry(key) {
                        ordered.insert(name, child);
                    }
                }
                // Nothing should remain; if something does, it keeps its place after the rest.
                ordered.extend(std::mem::take(map));
                *map = ordered;
            }
            // The map's keys now come in the plan's order (apart from strays at the end).
            let mut planned = plan.keys.iter();
            for (key, child) in map.iter_mut() {
                match planned.by_ref().find(|(name, _)| same(name, key)) {
                    Some((_, Some(below))) => apply_plan(child, below),
                    Some((_, None)) => {}
                    None => break,
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(query: &str, variables: serde_json::Value, data: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let (_, operation) = document.operations.iter().next().unwrap();
        let variables = Variables::from_json(variables);
        let mut value = Value::from_json(data).unwrap();
        let order = Order {
            fragments: &document.fragments,
            variables: &variables,
            defaults: &operation.node.variable_definitions,
        };
        order.apply(&mut value, &[&operation.node.selection_set.node]);
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn maps_follow_the_selection_order_at_every_level() {
        let query = "{ events { totalCount edges { node { b a } } pageInfo { hasNextPage } } }";
        let data = serde_json::json!({"events": {
            "pageInfo": {"hasNextPage": false},
            "edges": [{"node": {"a": 1, "b": 2}}, {"node": {"a": 3, "b": 4}}],
            "totalCount": 2
        }});
        assert_eq!(
            ordered(query, serde_json::json!({}), data),
            r#"{"events":{"totalCount":2,"edges":[{"node":{"b":2,"a":1}},{"node":{"b":4,"a":3}}],"pageInfo":{"hasNextPage":false}}}"#
        );
    }

    #[test]
    fn aliases_fragments_and_merged_fields_take_their_first_place() {
        let query = "query { x: e { ...F c } e { a } } fragment F on E { b ... on E { a } }";
        let data = serde_json::json!({"e": {"a": 1}, "x": {"c": 3, "a": 1, "b": 2}});
        assert_eq!(
            ordered(query, serde_json::json!({}), data),
            r#"{"x":{"b":2,"a":1,"c":3},"e":{"a":1}}"#
        );
    }

    #[test]
    fn skipped_selections_do_not_claim_a_place() {
        let query = "query($s: Boolean!) { a @skip(if: $s) b a @include(if: true) }";
        let data = serde_json::json!({"a": 1, "b": 2});
        assert_eq!(
            ordered(query, serde_json::json!({"s": true}), data.clone()),
            r#"{"b":2,"a":1}"#
        );
        assert_eq!(
            ordered(query, serde_json::json!({"s": false}), data),
            r#"{"a":1,"b":2}"#
        );
    }

    #[test]
    fn an_unsent_variable_takes_its_default() {
        let query = "query($s: Boolean = true) { a @skip(if: $s) b a }";
        let data = serde_json::json!({"a": 1, "b": 2});
        assert_eq!(ordered(query, serde_json::json!({}), data.clone()), r#"{"b":2,"a":1}"#);
        assert_eq!(
            ordered(query, serde_json::json!({"s": false}), data),
            r#"{"a":1,"b":2}"#
        );
    }

    #[test]
    fn lists_of_objects_are_ordered_element_by_element() {
        let query = "{ l { b a } }";
        let data = serde_json::json!({"l": [{"a": 1, "b": 2}, null, {"a": 3, "b": 4}]});
        assert_eq!(
            ordered(query, serde_json::json!({}), data),
            r#"{"l":[{"b":2,"a":1},null,{"b":4,"a":3}]}"#
        );
    }

    #[test]
    fn keys_selected_twice_are_noticed_at_any_level() {
        let repeats = |query: &str| {
            let mut request =
                async_graphql::Request::new(query).variables(Variables::from_json(serde_json::json!({"no": false})));
            repeats_keys(&mut request)
        };
        assert!(!repeats("{ a { b c: b d { e } } f: a { b } }"));
        assert!(!repeats("query { a { ...F ... on T { c } } } fragment F on T { b }"));
        // Whatever the condition: the executor reads it without the variables' defaults.
        assert!(repeats("query($no: Boolean) { a { b b @include(if: $no) } }"));
        assert!(repeats("query($v: Boolean = true) { a { b } a @skip(if: $v) { c } }"));
        assert!(repeats("{ a { b } a { c } }"));
        assert!(repeats("{ a { d { x: e x: e } } }"));
        assert!(repeats("{ a { b c: b b: c } }"));
        assert!(repeats("query { a { b ...F } } fragment F on T { b }"));
        assert!(repeats("query { a { ... on U { b } ... on T { b } } }"));
        assert!(repeats("query { a { ...F ...F } } fragment F on T { b }"));
    }
}
