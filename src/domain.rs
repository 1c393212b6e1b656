//! Pure code: validation, cursors, time parsing, pagination arithmetic. No I/O here.

pub mod chain;
pub mod checkpoint;
pub mod cursor;
pub mod event;
pub mod filter;
pub mod global_id;
pub mod merkle;
pub mod page;
pub mod time;
pub mod tree;
pub mod wire;

pub use cursor::{Cursor, LiveCursor, TreeCursor};
pub use event::{EventInput, FieldError, Limits, NewEvent};
pub use filter::EventFilter;
pub use page::{PageRequest, PageWindow};

use chrono::NaiveDate;
use uuid::Uuid;

/// The primary key of an audit event: its id and the UTC date of its timestamp (the partition key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// The event id.
    pub id: Uuid,
    /// The UTC date of the event's timestamp.
    pub date: NaiveDate,
}
