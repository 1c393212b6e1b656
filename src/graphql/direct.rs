//! Objects whose stored fields are written straight into the response.
//!
//! async-graphql resolves every field of an object as a future of its own: one allocation, one
//! context and one poll per field, and a map built as the futures complete. For the events of a
//! page (tens of plain stored values each, hundreds of events per response) that machinery costs
//! several times the statement that read them. [`Direct`] wraps an object type derived with
//! `#[Object]`: the schema is the derived type's, unchanged, but when the object is resolved its
//! stored fields ([`Stored::stored`]) are read synchronously in the order of the selection set,
//! and only the fields that need the context (loaders, arguments, errors) go through the derived
//! resolver, concurrently, as before.
//!
//! The response is the one the derived type gives: the same values (through the same scalar
//! conversions), aliases, fragments (type conditions as async-graphql applies them), merged
//! selections of the same key, `__typename`, and errors recorded with their path, the field then
//! left out. One difference: a schema extension's `resolve` hook sees only the fields that go
//! through the derived resolver (the schema has no such extension).
//!
//! When the response is written by [`super::json`] (the request carries [`WriteAhead`]), what is
//! resolved at once is written as JSON straight away (`Value::Binary`), with no value tree in
//! between: an owned value and a map entry per field, a map per object, each written out and
//! dropped after. The bytes are the same, but for one case: `eventData` read as text (see
//! `store::Columns::data_as_text`) is written ahead with the digits the database keeps, where a
//! value tree holds its numbers as `serde_json` parses them (`1e20` where PostgreSQL keeps
//! `100000000000000000000`).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::ContainerType;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerError, ServerResult, Value};

/// The resolution of one field that needs the context.
type FieldFuture<'a> = Pin<Box<dyn Future<Output = ServerResult<(Name, Value)>> + Send + 'a>>;

/// A derived object type that can give some of its fields without a context.
pub trait Stored: ContainerType {
    /// The value of field `name` (its GraphQL name), when it is a stored value that needs no
    /// context and no argument; `None` for every other field, which the derived resolver answers.
    fn stored(&self, _name: &str) -> Option<Value> {
        None
    }

    /// Appends the JSON of field `name` and says `true` when [`Stored::stored`] gives it, as
    /// [`super::json`] writes that value; says `false` otherwise. A type may write from its own
    /// fields, without the value in between.
    fn write_stored(&self, name: &str, out: &mut Vec<u8>) -> bool {
        write_stored_value(self.stored(name), out)
    }

    /// Whether [`Stored::stored`] gives field `name`, without computing its value.
    fn is_stored(&self, name: &str) -> bool {
        self.stored(name).is_some()
    }

    /// The value of `field` (named `name`) when it is an object, or a list of objects, that
    /// [`resolve_now`] can give whole: every field selected of it is stored. `None` for every
    /// other field, and whenever some field below needs the context; the derived resolver then
    /// answers. `ctx` is the context of the selection set that holds `field`; `sink` says where
    /// the value goes (given with [`resolve_field_now`] and [`resolve_list_now`]).
    fn stored_object(
        &self,
        _name: &str,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
        _sink: Sink<'_>,
    ) -> Option<ServerResult<Value>> {
        None
    }
}

/// Appends `value`, a stored field's value when there is one, as [`super::json`] writes it:
/// what [`Stored::write_stored`] does unless a type writes the field itself.
pub fn write_stored_value(value: Option<Value>, out: &mut Vec<u8>) -> bool {
    value.is_some_and(|value| super::json::write_value(out, &value).is_ok())
}

/// Resolves `object` for the selection set of `ctx` at once, with no future: `None` when a
/// selected field is neither stored nor a stored object (the caller then resolves it the usual
/// way). Lists of objects in a response (a page's edges, their nodes) are resolved this way whole
/// when their selection allows, instead of as a future per object and per field.
pub fn resolve_now<T: Stored>(object: &T, ctx: &ContextSelectionSet<'_>) -> Option<ServerResult<Value>> {
    let selected = match fields_of::<T>(ctx) {
        Ok(selected) => selected,
        Err(error) => return Some(Err(error)),
    };
    // First the fields that are objects (any of them may not be resolvable now), then the
    // stored values, so that nothing is computed for an object resolved the usual way after all.
    let mut objects = Vec::new();
    for field in &selected {
        let name = field.node.name.node.as_str();
        if name != "__typename" && !object.is_stored(name) {
            objects.push(object.stored_object(name, ctx, field, Sink::Value)?);
        }
    }
    let mut objects = objects.into_iter();
    let mut map = IndexMap::with_capacity(selected.len());
    for field in selected {
        let name = field.node.name.node.as_str();
        let value = match name {
            "__typename" => Value::String(T::type_name().into_owned()),
            _ => match object.stored(name) {
                Some(value) => value,
                // A stored field that cannot give its value now (a document the value cannot
                // hold): the derived resolver answers the whole object.
                None if object.is_stored(name) => return None,
                None => match objects.next()? {
                    Ok(value) => value,
                    Err(error) => return Some(Err(error)),
                },
            },
        };
        insert_value(&mut map, field.node.response_key().node.clone(), value);
    }
    Some(Ok(object_value(map)))
}

/// The value of an object resolved directly: null when none of its fields applied (as the
/// derived resolver answers an object whose fragments all had other type conditions).
fn object_value(map: IndexMap<Name, Value>) -> Value {
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

/// Where an object resolved at once goes.
pub enum Sink<'b> {
    /// Into a response value: JSON written ahead when the request is marked [`WriteAhead`], a
    /// value tree otherwise.
    Value,
    /// Written as JSON at the end of this buffer, which belongs to an object being written
    /// ahead; the value returned is then `Null` and stands for nothing. The [`Shape`] is what
    /// the objects written at this place of the response share (the items of a list, and the
    /// objects below them).
    Json(&'b mut Vec<u8>, &'b mut Shape),
}

/// What the objects written ahead at one place of a response share, worked out for the first
/// of them: the keys of their fields written as JSON (`"key":`, each after the first preceded
/// by a comma), and the same for the objects below each field. The items of a list (a page's
/// edges, each edge's node, each node's children) have one selection, so its keys are written
/// once per place in the response (for all the children lists of a page's nodes, say) rather
/// than once per object.
#[derive(Default)]
pub struct Shape {
    keys: Option<Keys>,
    /// Per field, what the objects below it share.
    below: Vec<Shape>,
    /// What the field that leads here worked out once for all its objects (see
    /// [`Shape::remember`]).
    remembered: Option<Box<dyn std::any::Any + Send>>,
}

/// The keys of an object's fields, written as JSON.
struct Keys {
    /// The address of the selection set they are the keys of.
    set: usize,
    type_name: Cow<'static, str>,
    bytes: Vec<u8>,
    /// Where each field's key ends in `bytes`.
    ends: Vec<usize>,
}

impl Shape {
    /// What `make` gives, worked out for the first object written at this place and kept for
    /// the others: what depends only on the field that leads here (its arguments, what its
    /// selection reads), not on the object. `None` when `make` gives nothing.
    pub fn remember<V: Clone + Send + 'static>(&mut self, make: impl FnOnce() -> Option<V>) -> Option<V> {
        if let Some(value) = self.remembered.as_ref().and_then(|value| value.downcast_ref::<V>()) {
            return Some(value.clone());
        }
        let value = make()?;
        self.remembered = Some(Box::new(value.clone()));
        Some(value)
    }

    /// The keys of `fields`, the fields of selection set `set` for an object of type `T`:
    /// those worked out before when they were for the same selection set and type, else worked
    /// out now.
    fn keys_of<T: OutputType>(&mut self, set: &SelectionSet, fields: &[&Positioned<Field>]) -> (&Keys, &mut [Shape]) {
        let type_name = T::type_name();
        // The document outlives the response being written: one address, one selection set.
        let set = std::ptr::from_ref(set).addr();
        let Shape { keys, below, .. } = self;
        if !keys
            .as_ref()
            .is_some_and(|keys| keys.set == set && keys.type_name == type_name && keys.ends.len() == fields.len())
        {
            *keys = None;
        }
        let keys = keys.get_or_insert_with(|| {
            let mut bytes = Vec::with_capacity(fields.len() * 16);
            let mut ends = Vec::with_capacity(fields.len());
            for (index, field) in fields.iter().enumerate() {
                if index > 0 {
                    bytes.push(b',');
                }
                super::json::write_str(&mut bytes, field.node.response_key().node.as_str());
                bytes.push(b':');
                ends.push(bytes.len());
            }
            *below = std::iter::repeat_with(Shape::default).take(fields.len()).collect();
            Keys {
                set,
                type_name,
                bytes,
                ends,
            }
        });
        (keys, below)
    }
}

/// Marks a request whose response [`super::json`] writes and whose operation selects no
/// response key twice in one selection set (`order::repeats_keys`): what is resolved at
/// once is then written as JSON ahead. Two values of one key are merged, which JSON written ahead
/// cannot be, hence the second condition.
pub struct WriteAhead;

/// Whether what is resolved at once in `ctx` is written as JSON ahead (see [`WriteAhead`]).
fn writes_ahead(ctx: &ContextSelectionSet<'_>) -> bool {
    ctx.data_opt::<WriteAhead>().is_some()
}

/// JSON written ahead as a response value.
fn written(out: Vec<u8>) -> Value {
    Value::Binary(out.into())
}

/// The fields of the selection set of `ctx` that apply to `T`, in order.
fn fields_of<'a, T: OutputType>(ctx: &ContextSelectionSet<'a>) -> ServerResult<Vec<&'a Positioned<Field>>> {
    // As many as the selection set has items: no growth unless fragments add more.
    let mut fields = Vec::with_capacity(ctx.item.node.items.len());
    collect::<T>(ctx, ctx.item, &mut fields)?;
    Ok(fields)
}

/// Writes `object` for the selection set of `ctx` as JSON into `out`, as [`resolve_now`]
/// resolves it and [`super::json`] then writes it: `None` in the same cases. `shape` is what the
/// objects written at this place share.
fn write_now<T: Stored>(
    object: &T,
    ctx: &ContextSelectionSet<'_>,
    shape: &mut Shape,
    out: &mut Vec<u8>,
) -> Option<ServerResult<()>> {
    match fields_of::<T>(ctx) {
        Ok(fields) => write_fields(object, ctx, &fields, shape, out),
        Err(error) => Some(Err(error)),
    }
}

/// [`write_now`] for `fields`, the fields of the selection set of `ctx`.
fn write_fields<T: Stored>(
    object: &T,
    ctx: &ContextSelectionSet<'_>,
    fields: &[&Positioned<Field>],
    shape: &mut Shape,
    out: &mut Vec<u8>,
) -> Option<ServerResult<()>> {
    if fields.is_empty() {
        out.extend_from_slice(b"null");
        return Some(Ok(()));
    }
    let (keys, below) = shape.keys_of::<T>(&ctx.item.node, fields);
    out.push(b'{');
    let mut start = 0;
    for ((field, &end), below) in fields.iter().zip(&keys.ends).zip(below) {
        out.extend_from_slice(&keys.bytes[start..end]);
        start = end;
        let name = field.node.name.node.as_str();
        if name == "__typename" {
            super::json::write_str(out, &T::type_name());
        } else if !object.write_stored(name, out) {
            // Written in place: the value returned stands for nothing.
            match object.stored_object(name, ctx, field, Sink::Json(out, below))? {
                Ok(value) => debug_assert_eq!(value, Value::Null, "{name} was not written in place"),
                Err(error) => return Some(Err(error)),
            }
        }
    }
    out.push(b'}');
    Some(Ok(()))
}

/// Resolves each of `objects` with [`resolve_now`] for the selection set of `field` (a list
/// field selected in `ctx`), or writes them (see [`Sink`]): `None` as soon as one of them cannot
/// be (they share the selection, so that is the first one).
pub fn resolve_list_now<'o, T: Stored + 'o>(
    objects: impl ExactSizeIterator<Item = T>,
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    sink: Sink<'_>,
) -> Option<ServerResult<Value>> {
    let ctx_field = ctx.with_field(field);
    resolve_items_now(objects, &ctx_field.with_selection_set(&field.node.selection_set), sink)
}

/// Most bytes reserved ahead for the items of a list written ahead.
const MAX_RESERVED: usize = 1 << 20;

/// Writes each of `objects`, the items of a list whose selection set is that of `ctx`, with
/// [`write_now`]: `None` as soon as one of them cannot be.
fn write_items_now<'o, T: Stored + 'o>(
    objects: impl ExactSizeIterator<Item = T>,
    ctx: &ContextSelectionSet<'_>,
    shape: &mut Shape,
    out: &mut Vec<u8>,
) -> Option<ServerResult<()>> {
    let count = objects.len();
    // The items share their selection: its fields are collected once, their keys once per
    // place in the response (`shape`).
    let fields = match fields_of::<T>(ctx) {
        Ok(fields) => fields,
        Err(error) => return Some(Err(error)),
    };
    out.push(b'[');
    let start = out.len();
    for (index, object) in objects.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if let Err(error) = write_fields(&object, &ctx.with_index(index), &fields, shape, out)? {
            return Some(Err(error));
        }
        if index == 0 {
            // The items share their selection: room for the others at once, not by doubling (up
            // to a bound: the first item may be an unusually large event).
            out.reserve(((out.len() - start + 1) * (count - 1)).min(MAX_RESERVED));
        }
    }
    out.push(b']');
    Some(Ok(()))
}

/// Resolves each of `objects`, the items of a list whose selection set is that of `ctx`, with
/// [`resolve_now`] (or writes them, see [`Sink`]): `None` as soon as one of them cannot be.
fn resolve_items_now<'o, T: Stored + 'o>(
    objects: impl ExactSizeIterator<Item = T>,
    ctx: &ContextSelectionSet<'_>,
    sink: Sink<'_>,
) -> Option<ServerResult<Value>> {
    match sink {
        Sink::Json(out, shape) => {
            return write_items_now(objects, ctx, shape, out).map(|result| result.map(|()| Value::Null));
        }
        Sink::Value if writes_ahead(ctx) => {
            let mut out = Vec::new();
            return write_items_now(objects, ctx, &mut Shape::default(), &mut out)
                .map(|result| result.map(|()| written(out)));
        }
        Sink::Value => {}
    }
    let mut values = Vec::with_capacity(objects.len());
    for (index, object) in objects.enumerate() {
        match resolve_now(&object, &ctx.with_index(index))? {
            Ok(value) => values.push(value),
            Err(error) => return Some(Err(error)),
        }
    }
    Some(Ok(Value::List(values)))
}

/// Resolves `object`, the value of object field `field` selected in `ctx`, with [`resolve_now`],
/// or writes it (see [`Sink`]).
pub fn resolve_field_now<T: Stored>(
    object: &T,
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    sink: Sink<'_>,
) -> Option<ServerResult<Value>> {
    let ctx_field = ctx.with_field(field);
    let ctx = ctx_field.with_selection_set(&field.node.selection_set);
    match sink {
        Sink::Json(out, shape) => write_now(object, &ctx, shape, out).map(|result| result.map(|()| Value::Null)),
        Sink::Value if writes_ahead(&ctx) => {
            let mut out = Vec::with_capacity(256);
            write_now(object, &ctx, &mut Shape::default(), &mut out).map(|result| result.map(|()| written(out)))
        }
        Sink::Value => resolve_now(object, &ctx),
    }
}

/// An object of type `T` resolved directly (see the module documentation).
#[derive(Clone, Debug)]
pub struct Direct<T>(pub T);

impl<T: Stored> OutputType for Direct<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<Value> {
        let selected = fields_of::<T>(ctx)?;

        let mut results: Vec<Option<ServerResult<(Name, Value)>>> = Vec::with_capacity(selected.len());
        let mut pending = Vec::new();
        for field in &selected {
            let key = &field.node.response_key().node;
            let name = field.node.name.node.as_str();
            let value = if name == "__typename" {
                Some(Ok(Value::String(T::type_name().into_owned())))
            } else {
                match self.0.stored(name) {
                    Some(value) => Some(Ok(value)),
                    None => self.0.stored_object(name, ctx, field, Sink::Value),
                }
            };
            match value {
                Some(value) => results.push(Some(value.map(|value| (key.clone(), value)))),
                None => {
                    pending.push(results.len());
                    results.push(None);
                }
            }
        }
        if !pending.is_empty() {
            let resolved = futures_util::future::join_all(pending.iter().map(|&index| {
                let ctx = ctx.clone();
                let field = selected[index];
                let object = &self.0;
                // Boxed: the field's type may be this one again (an event's parent), and a
                // future cannot contain itself.
                let future: FieldFuture<'_> = Box::pin(async move {
                    let ctx_field = ctx.with_field(field);
                    let value = object.resolve_field(&ctx_field).await?;
                    Ok((field.node.response_key().node.clone(), value.unwrap_or_default()))
                });
                future
            }))
            .await;
            for (index, result) in pending.into_iter().zip(resolved) {
                results[index] = Some(result);
            }
        }

        let mut map = IndexMap::with_capacity(results.len());
        for result in results.into_iter().flatten() {
            match result {
                Ok((key, value)) => insert_value(&mut map, key, value),
                Err(error) => ctx.add_error(error),
            }
        }
        Ok(object_value(map))
    }
}

/// A list of objects of type `T` resolved directly: as a whole with [`resolve_now`] when the
/// selection allows (no future per item), otherwise item by item as a `Vec<Direct<T>>` is.
#[derive(Clone, Debug)]
pub struct DirectList<T>(pub Vec<Direct<T>>);

impl<T: Stored + Clone> OutputType for DirectList<T> {
    fn type_name() -> Cow<'static, str> {
        Vec::<Direct<T>>::type_name()
    }

    fn qualified_type_name() -> String {
        Vec::<Direct<T>>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Vec::<Direct<T>>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        // Cloning an item is cheap (its fields are shared).
        match resolve_items_now(self.0.iter().map(|item| item.0.clone()), ctx, Sink::Value) {
            Some(value) => value,
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// The fields of `set` that apply to `T`, fragments expanded, in the order of the selection set.
/// (`@skip` and `@include` were applied to the document before execution.)
fn collect<'a, T: OutputType>(
    ctx: &ContextSelectionSet<'a>,
    set: &'a Positioned<async_graphql::parser::types::SelectionSet>,
    selected: &mut Vec<&'a Positioned<Field>>,
) -> ServerResult<()> {
    for selection in &set.node.items {
        let (condition, inner) = match &selection.node {
            Selection::Field(field) => {
                selected.push(field);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(
                        format!(r#"Unknown fragment "{name}"."#),
                        Some(spread.pos),
                    ));
                };
                (Some(&fragment.node.type_condition), &fragment.node.selection_set)
            }
            Selection::InlineFragment(fragment) => {
                (fragment.node.type_condition.as_ref(), &fragment.node.selection_set)
            }
        };
        let applies = condition.map(|c| c.node.on.node.as_str()).is_none_or(|condition| {
            let name = T::type_name();
            name == condition
                || ctx
                    .schema_env
                    .registry
                    .implements
                    .get(name.as_ref())
                    .is_some_and(|interfaces| interfaces.contains(condition))
        });
        if applies {
            collect::<T>(ctx, inner, selected)?;
        }
    }
    Ok(())
}

/// Adds `value` under `key`, merging it into what an earlier selection of the same key gave (as
/// async-graphql merges the values of one key selected twice).
fn insert_value(target: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    // One lookup: the key is hashed once, whether it is new (the usual case) or not.
    let previous = match target.entry(key) {
        async_graphql::indexmap::map::Entry::Vacant(entry) => {
            entry.insert(value);
            return;
        }
        async_graphql::indexmap::map::Entry::Occupied(entry) => entry.into_mut(),
    };
    match (previous, value) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                insert_value(into, key, value);
            }
        }
        (Value::List(into), Value::List(from)) => {
            for (into, from) in into.iter_mut().zip(from) {
                if let (Value::Object(into), Value::Object(from)) = (into, from) {
                    for (key, value) in from {
                        insert_value(into, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}
