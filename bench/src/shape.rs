//! Reading what a check needs from a JSON response as it is parsed, without building the rest.
//!
//! A page of 50 events is about 22 KB of JSON. Parsed into a `serde_json::Value` (a map and a
//! string per field), it cost the load generator about 300 µs of CPU more per page than the raw
//! side spends on its rows, on the two cores the server and PostgreSQL share. Every byte is still
//! parsed, so malformed JSON fails as before; only the parts a check reads are kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A list found in a response.
#[derive(Debug, PartialEq, Eq)]
pub struct List {
    /// Its entries.
    pub len: usize,
    /// The event id of its first entry: the entry's `node`'s `eventId` (GraphQL edges), or the
    /// entry's own `eventId` (GraphQL nodes) or `event_id` (REST events).
    pub first: Option<String>,
}

/// The list at `path` below the top-level `data` of `body` (`None`: no list there). A GraphQL
/// `errors` entry is a failure, with its text.
pub fn list_at(body: &[u8], path: &[&str]) -> anyhow::Result<Option<List>> {
    data_at(body, path, ListSeed)
}

/// The events of a nested response, read in one pass: the connection at `roots` below `data`,
/// and below each edge's node the connection `children`, as deep as it goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Nested {
    /// The events, counted.
    pub events: u64,
    /// The `eventId` of the first root.
    pub first: Option<String>,
}

/// The [`Nested`] events of `body` (a GraphQL response); `errors` fail.
pub fn nested(body: &[u8], roots: &str, children: &str) -> anyhow::Result<Nested> {
    let (events, first) =
        data_at(body, &[roots], Connection { children })?.ok_or_else(|| anyhow::anyhow!("no connection at {roots}"))?;
    Ok(Nested { events, first })
}

/// The whole `data` of a GraphQL response (for small ones); `errors` fail.
pub fn data(body: &[u8]) -> anyhow::Result<serde_json::Value> {
    let mut response: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(errors) = response.get("errors") {
        anyhow::bail!("GraphQL errors: {errors}");
    }
    Ok(response["data"].take())
}

fn data_at<'de, S>(body: &'de [u8], path: &[&str], seed: S) -> anyhow::Result<Option<S::Value>>
where
    S: DeserializeSeed<'de> + Clone,
{
    let mut reader = serde_json::Deserializer::from_slice(body);
    let (found, errors) = reader
        .deserialize_map(Response { path, seed })
        .map_err(|error| anyhow::anyhow!("{error}: {}", String::from_utf8_lossy(body)))?;
    reader.end()?;
    if let Some(errors) = errors {
        anyhow::bail!("GraphQL errors: {errors}");
    }
    Ok(found)
}

/// Whether a key is the one wanted, compared as it is read.
struct IsKey<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The top-level object: `data` read at the path, `errors` kept whole.
struct Response<'a, S> {
    path: &'a [&'a str],
    seed: S,
}

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for Response<'_, S> {
    type Value = (Option<S::Value>, Option<serde_json::Value>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut found, mut errors) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "data" => {
                    found = map.next_value_seed(At {
                        path: self.path,
                        seed: self.seed.clone(),
                    })?;
                }
                "errors" => errors = Some(map.next_value::<serde_json::Value>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((found, errors))
    }
}

/// The value at `path` below this one, read with `seed`; `None` when the path ends early (a
/// `null`, or a key missing).
#[derive(Clone)]
struct At<'a, S> {
    path: &'a [&'a str],
    seed: S,
}

impl<'de, S: DeserializeSeed<'de> + Clone> DeserializeSeed<'de> for At<'_, S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.path {
            [] => self.seed.deserialize(deserializer).map(Some),
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for At<'_, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with {:?}", self.path.first())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (key, rest) = self.path.split_first().ok_or_else(|| A::Error::custom("no key"))?;
        let mut found = None;
        while let Some(matches) = map.next_key_seed(IsKey(key))? {
            if matches {
                found = map.next_value_seed(At {
                    path: rest,
                    seed: self.seed.clone(),
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A list: its length and its first entry's event id.
#[derive(Clone, Copy)]
struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = List;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<List, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = List;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
        let Some(first) = seq.next_element_seed(FirstId)? else {
            return Ok(List { len: 0, first: None });
        };
        let mut len = 1;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(List { len, first })
    }
}

/// The event id of a list entry (see [`List::first`]).
struct FirstId;

impl<'de> DeserializeSeed<'de> for FirstId {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstId {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an edge")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "node" => id = id.or(map.next_value_seed(FirstId)?),
                "eventId" | "event_id" => id = map.next_value::<Option<String>>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(id)
    }
}

/// A connection's events, counted through `edges → node → children` as deep as it goes, with the
/// `eventId` of the first event at its level.
#[derive(Clone, Copy)]
struct Connection<'a> {
    children: &'a str,
}

impl<'de> DeserializeSeed<'de> for Connection<'_> {
    type Value = (u64, Option<String>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Connection<'_> {
    type Value = (u64, Option<String>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a connection, an edge or a node")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((0, None))
    }

    /// A connection (`edges`), an edge (`node`) or a node (`children`, `eventId`): the events
    /// below it, the node itself counted by its edge; and the id of the connection's first node,
    /// of the edge's node, or of the node.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut count, mut id) = (0, None);
        while let Some(key) = map.next_key::<String>()? {
            if key == "edges" || key == "node" {
                let (below, first) = map.next_value_seed(self)?;
                count += below;
                id = id.or(first);
            } else if key == self.children {
                count += map.next_value_seed(self)?.0;
            } else if key == "eventId" {
                id = map.next_value()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((count, id))
    }

    /// A connection's edges: each an event, with those below it.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut count, mut first) = (0, None);
        while let Some((below, id)) = seq.next_element_seed(self)? {
            if count == 0 {
                first = id;
            }
            count += 1 + below;
        }
        Ok((count, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_found_with_their_first_event() {
        let edges = br#"{"data":{"auditEvents":{"edges":[{"cursor":"c","node":{"eventType":"x","eventId":"a","eventData":{"eventId":"no"}}},{"node":{"eventId":"b"}}]}}}"#;
        assert_eq!(
            list_at(edges, &["auditEvents", "edges"]).unwrap(),
            Some(List {
                len: 2,
                first: Some("a".into())
            })
        );
        let rest = br#"{"data":[{"event_id":"r"},{"event_id":"s"},{"event_id":"t"}],"pagination":{"total":3}}"#;
        assert_eq!(
            list_at(rest, &[]).unwrap(),
            Some(List {
                len: 3,
                first: Some("r".into())
            })
        );
        assert_eq!(
            list_at(br#"{"data":{"auditEvent":null}}"#, &["auditEvent", "ancestors"]).unwrap(),
            None
        );
        assert_eq!(
            list_at(br#"{"data":{"x":[]}}"#, &["x"]).unwrap(),
            Some(List { len: 0, first: None })
        );
    }

    #[test]
    fn errors_and_malformed_json_fail() {
        let failed = list_at(br#"{"data":null,"errors":[{"message":"no"}]}"#, &["x"]).unwrap_err();
        assert!(failed.to_string().contains("\"no\""), "{failed}");
        assert!(list_at(br#"{"data":{"x":[1,}}"#, &["x"]).is_err());
        assert!(list_at(br#"{"data":{"x":[]}} trailing"#, &["x"]).is_err());
    }

    #[test]
    fn nested_responses_are_counted_as_the_value_tree_counts_them() {
        let body = br#"{"data":{"auditEvents":{"edges":[
            {"node":{"eventId":"a","children":{"edges":[{"node":{"children":{"edges":[{"node":{}},{"node":{}}]}}}]}}},
            {"node":{"eventId":"b","children":{"edges":[]}}},
            {"node":{"eventId":"c","eventData":{"edges":[1,2,3]}}}
        ],"pageInfo":{"hasNextPage":true}}}}"#;
        assert_eq!(
            nested(body, "auditEvents", "children").unwrap(),
            Nested {
                events: 6,
                first: Some("a".into())
            }
        );
    }
}
