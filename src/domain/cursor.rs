//! Opaque keyset cursors: URL-safe base64 (no padding) of a versioned binary encoding of the event's
//! `(event_timestamp in microseconds since the epoch, event_id)`.
//!
//! Layout of version 1: one byte `1`, eight bytes big-endian signed microseconds, sixteen bytes of
//! UUID. Anything else (bad base64, other length, unknown version, out-of-range time) is rejected.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const VERSION: u8 = 1;
const ENCODED_LEN: usize = 1 + 8 + 16;
/// Characters of an encoded cursor: base64 without padding of [`ENCODED_LEN`] bytes.
const TEXT_LEN: usize = (ENCODED_LEN * 4).div_ceil(3);

/// A position in the `(event_timestamp, event_id)` order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cursor {
    /// The event timestamp, at microsecond precision.
    pub timestamp: DateTime<Utc>,
    /// The event id; breaks ties between equal timestamps.
    pub id: Uuid,
}

/// Why a cursor string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed cursor: {0}")]
pub struct CursorError(&'static str);

impl Cursor {
    /// The cursor of an event.
    pub fn new(timestamp: DateTime<Utc>, id: Uuid) -> Self {
        Self { timestamp, id }
    }

    /// Encodes the cursor as an opaque string.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes())
    }

    /// Appends [`Cursor::encode`]'s text to `out`, with no allocation of its own.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut text = [0u8; TEXT_LEN];
        match URL_SAFE_NO_PAD.encode_slice(self.bytes(), &mut text) {
            Ok(written) => out.extend_from_slice(&text[..written]),
            Err(_) => out.extend_from_slice(self.encode().as_bytes()),
        }
    }

    fn bytes(&self) -> [u8; ENCODED_LEN] {
        let mut bytes = [0u8; ENCODED_LEN];
        bytes[0] = VERSION;
        bytes[1..9].copy_from_slice(&self.timestamp.timestamp_micros().to_be_bytes());
        bytes[9..].copy_from_slice(self.id.as_bytes());
        bytes
    }

    /// Decodes a string produced by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError("not URL-safe base64"))?;
        if bytes.len() != ENCODED_LEN {
            return Err(CursorError("wrong length"));
        }
        if bytes[0] != VERSION {
            return Err(CursorError("unknown version"));
        }
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&bytes[1..9]);
        let timestamp =
            DateTime::from_timestamp_micros(i64::from_be_bytes(micros)).ok_or(CursorError("timestamp out of range"))?;
        let id = Uuid::from_slice(&bytes[9..]).map_err(|_| CursorError("bad event id"))?;
        Ok(Self { timestamp, id })
    }
}

/// A position in the breadth-first order of a subtree: `(depth, event_timestamp, event_id)`.
/// Encoded like [`Cursor`] with version byte `2` and the depth (four bytes, big-endian) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeCursor {
    /// Distance from the subtree's root (children are at depth 1).
    pub depth: u32,
    /// The position among the events of that depth.
    pub at: Cursor,
}

const TREE_VERSION: u8 = 2;

impl TreeCursor {
    /// Encodes the cursor as an opaque string.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(ENCODED_LEN + 4);
        bytes.push(TREE_VERSION);
        bytes.extend_from_slice(&self.depth.to_be_bytes());
        bytes.extend_from_slice(&self.at.timestamp.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.at.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a string produced by [`TreeCursor::encode`].
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError("not URL-safe base64"))?;
        if bytes.len() != ENCODED_LEN + 4 {
            return Err(CursorError("wrong length"));
        }
        if bytes[0] != TREE_VERSION {
            return Err(CursorError("not a descendants cursor"));
        }
        let mut depth = [0u8; 4];
        depth.copy_from_slice(&bytes[1..5]);
        let mut rest = vec![VERSION];
        rest.extend_from_slice(&bytes[5..]);
        let at = Cursor::decode(&URL_SAFE_NO_PAD.encode(rest))?;
        Ok(Self {
            depth: u32::from_be_bytes(depth),
            at,
        })
    }
}

/// A position in the transparency log's order, which is commit order: the number of the log's
/// leaves a subscriber has seen (the next leaf index it is owed). Encoded as version byte `3` and
/// eight bytes big-endian, in URL-safe base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LiveCursor(pub u64);

const LIVE_VERSION: u8 = 3;

impl LiveCursor {
    /// Encodes the cursor as an opaque string.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(9);
        bytes.push(LIVE_VERSION);
        bytes.extend_from_slice(&self.0.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a string produced by [`LiveCursor::encode`].
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError("not URL-safe base64"))?;
        if bytes.first() != Some(&LIVE_VERSION) {
            return Err(CursorError("not a subscription cursor"));
        }
        let position: [u8; 8] = bytes[1..].try_into().map_err(|_| CursorError("wrong length"))?;
        Ok(Self(u64::from_be_bytes(position)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_appended_to_a_buffer_is_its_text() {
        for micros in [i64::MIN / 2, -1, 0, 1_764_000_000_123_456] {
            let cursor = Cursor::new(DateTime::from_timestamp_micros(micros).unwrap(), Uuid::now_v7());
            let mut out = b"x".to_vec();
            cursor.encode_into(&mut out);
            assert_eq!(out, format!("x{}", cursor.encode()).into_bytes());
            assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
    }

    #[test]
    fn live_cursors_round_trip_and_are_told_apart_from_page_cursors() {
        for position in [0, 1, 4242, u64::MAX] {
            assert_eq!(
                LiveCursor::decode(&LiveCursor(position).encode()),
                Ok(LiveCursor(position))
            );
        }
        let page = Cursor::new(DateTime::from_timestamp_micros(1).unwrap(), Uuid::nil()).encode();
        assert_eq!(LiveCursor::decode(&page), Err(CursorError("not a subscription cursor")));
        assert!(Cursor::decode(&LiveCursor(7).encode()).is_err());
        assert_eq!(
            LiveCursor::decode(&URL_SAFE_NO_PAD.encode([3u8, 1, 2])),
            Err(CursorError("wrong length"))
        );
        assert!(LiveCursor::decode("!!").is_err());
    }

    #[test]
    fn a_cursor_survives_a_round_trip_at_microsecond_precision() {
        let ts = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let cursor = Cursor::new(ts, Uuid::now_v7());
        let text = cursor.encode();
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(Cursor::decode(&text).unwrap(), cursor);
    }

    #[test]
    fn tree_cursors_round_trip_and_are_not_confused_with_list_cursors() {
        let at = Cursor::new(
            DateTime::from_timestamp_micros(1_764_000_000_000_001).unwrap(),
            Uuid::now_v7(),
        );
        let tree = TreeCursor { depth: 4242, at };
        assert_eq!(TreeCursor::decode(&tree.encode()).unwrap(), tree);
        assert!(TreeCursor::decode(&at.encode()).is_err());
        assert!(Cursor::decode(&tree.encode()).is_err());
    }

    #[test]
    fn malformed_and_foreign_cursors_are_rejected() {
        assert!(Cursor::decode("not a cursor!").is_err());
        assert!(Cursor::decode("").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode([1u8; 5])).is_err());
        let mut other_version = vec![2u8];
        other_version.extend_from_slice(&[0u8; 24]);
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode(other_version)),
            Err(CursorError("unknown version"))
        );
        let mut out_of_range = vec![1u8];
        out_of_range.extend_from_slice(&i64::MAX.to_be_bytes());
        out_of_range.extend_from_slice(&[0u8; 16]);
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(out_of_range)).is_err());
    }
}
