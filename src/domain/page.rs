//! Relay cursor-connection arithmetic (<https://relay.dev/graphql/connections.htm>), independent of
//! storage. A page is fetched as `limit + 1` rows in the direction of travel; the extra row tells
//! whether more exist on that side.

use super::Cursor;

/// The largest page any listing serves.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// The order in which a listing presents its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Order {
    /// `event_timestamp DESC, event_id DESC`: top-level listings.
    NewestFirst,
    /// `event_timestamp ASC, event_id ASC`: children, in causal order.
    OldestFirst,
}

/// The pagination arguments as a client sent them.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// Which pagination argument was wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageError {
    /// The argument (`first`, `after`, …).
    pub argument: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// A resolved page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageWindow {
    /// Only elements after this cursor (in presentation order).
    pub after: Option<Cursor>,
    /// Only elements before this cursor (in presentation order).
    pub before: Option<Cursor>,
    /// How many elements the page holds at most.
    pub limit: u64,
    /// `true` when the page is taken from the end of the range (`last`), `false` from its start.
    pub from_end: bool,
}

/// What is known about elements beyond one side of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beyond {
    /// Decided by the page query itself.
    Known(bool),
    /// Elements exist at or after this cursor in presentation order (the `before` side).
    ProbeFrom(Cursor),
    /// Elements exist at or before this cursor in presentation order (the `after` side).
    ProbeUpTo(Cursor),
}

fn size(argument: &'static str, value: Option<i32>) -> Result<Option<u64>, PageError> {
    match value {
        None => Ok(None),
        Some(n) if n < 0 => Err(PageError {
            argument,
            message: format!("{argument} must not be negative"),
        }),
        Some(n) if n as u64 > MAX_PAGE_SIZE => Err(PageError {
            argument,
            message: format!("{argument} must be at most {MAX_PAGE_SIZE}"),
        }),
        Some(n) => Ok(Some(n as u64)),
    }
}

fn cursor(argument: &'static str, value: Option<&str>) -> Result<Option<Cursor>, PageError> {
    value
        .map(|text| {
            Cursor::decode(text).map_err(|e| PageError {
                argument,
                message: format!("{argument} is not a valid cursor ({e})"),
            })
        })
        .transpose()
}

impl PageRequest {
    /// Checks the arguments. Without `first` or `last`, a page of `default` elements is taken from
    /// the start, or from the end when only `before` is given (paging backwards).
    pub fn resolve(&self, default: u64) -> Result<PageWindow, PageError> {
        let first = size("first", self.first)?;
        let last = size("last", self.last)?;
        let after = cursor("after", self.after.as_deref())?;
        let before = cursor("before", self.before.as_deref())?;
        let (limit, from_end) = match (first, last) {
            (Some(_), Some(_)) => {
                return Err(PageError {
                    argument: "last",
                    message: "first and last cannot be used together; page forwards with first/after or backwards with last/before".into(),
                });
            }
            (Some(n), None) => (n, false),
            (None, Some(n)) => (n, true),
            (None, None) => (default.min(MAX_PAGE_SIZE), before.is_some() && after.is_none()),
        };
        Ok(PageWindow {
            after,
            before,
            limit,
            from_end,
        })
    }
}

impl PageWindow {
    /// A forward window of `limit` elements after `after`.
    pub fn forward(limit: u64, after: Option<Cursor>) -> Self {
        Self {
            after,
            before: None,
            limit,
            from_end: false,
        }
    }

    /// How many rows to fetch: one more than the page, to learn whether more exist.
    pub fn fetch(&self) -> u64 {
        self.limit + 1
    }

    /// Turns the rows fetched in the direction of travel (at most `fetch()` of them) into the page
    /// in presentation order, with what is known of either side (Relay's HasPreviousPage and
    /// HasNextPage algorithms).
    pub fn finish<T>(&self, mut rows: Vec<T>) -> (Vec<T>, Beyond, Beyond) {
        let more = rows.len() as u64 > self.limit;
        rows.truncate(self.limit as usize);
        if self.from_end {
            rows.reverse();
            let next = self.before.map_or(Beyond::Known(false), Beyond::ProbeFrom);
            (rows, Beyond::Known(more), next)
        } else {
            let previous = self.after.map_or(Beyond::Known(false), Beyond::ProbeUpTo);
            (rows, previous, Beyond::Known(more))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use uuid::Uuid;

    fn c(n: i64) -> Cursor {
        Cursor::new(DateTime::from_timestamp_micros(n).unwrap(), Uuid::nil())
    }

    fn req(first: Option<i32>, after: Option<Cursor>, last: Option<i32>, before: Option<Cursor>) -> PageRequest {
        PageRequest {
            first,
            after: after.map(|c| c.encode()),
            last,
            before: before.map(|c| c.encode()),
        }
    }

    #[test]
    fn first_and_last_together_are_rejected() {
        let err = req(Some(1), None, Some(1), None).resolve(50).unwrap_err();
        assert_eq!(err.argument, "last");
    }

    #[test]
    fn sizes_must_be_between_zero_and_the_maximum() {
        assert_eq!(
            req(Some(-1), None, None, None).resolve(50).unwrap_err().argument,
            "first"
        );
        assert_eq!(
            req(None, None, Some(1001), None).resolve(50).unwrap_err().argument,
            "last"
        );
        assert_eq!(req(Some(1000), None, None, None).resolve(50).unwrap().limit, 1000);
        assert_eq!(req(Some(0), None, None, None).resolve(50).unwrap().limit, 0);
    }

    #[test]
    fn malformed_cursors_name_their_argument() {
        let bad = PageRequest {
            after: Some("???".into()),
            ..Default::default()
        };
        assert_eq!(bad.resolve(50).unwrap_err().argument, "after");
        let bad = PageRequest {
            before: Some("AAAA".into()),
            ..Default::default()
        };
        assert_eq!(bad.resolve(50).unwrap_err().argument, "before");
    }

    #[test]
    fn without_sizes_a_default_page_is_taken_from_the_right_end() {
        let w = req(None, None, None, None).resolve(50).unwrap();
        assert_eq!((w.limit, w.from_end), (50, false));
        let w = req(None, None, None, Some(c(5))).resolve(50).unwrap();
        assert_eq!((w.limit, w.from_end), (50, true));
        let w = req(None, Some(c(1)), None, Some(c(5))).resolve(50).unwrap();
        assert!(!w.from_end);
    }

    #[test]
    fn forward_pages_know_the_next_side_and_probe_the_previous() {
        let w = req(Some(2), Some(c(9)), None, None).resolve(50).unwrap();
        let (rows, prev, next) = w.finish(vec![1, 2, 3]);
        assert_eq!(rows, [1, 2]);
        assert_eq!(prev, Beyond::ProbeUpTo(c(9)));
        assert_eq!(next, Beyond::Known(true));
        let (rows, prev, next) = req(Some(2), None, None, Some(c(1)))
            .resolve(50)
            .unwrap()
            .finish(vec![1, 2]);
        assert_eq!(rows, [1, 2]);
        assert_eq!(prev, Beyond::Known(false));
        assert_eq!(next, Beyond::Known(false), "with first set, hasNextPage ignores before");
    }

    #[test]
    fn backward_pages_are_reversed_into_presentation_order() {
        let w = req(None, None, Some(2), Some(c(3))).resolve(50).unwrap();
        let (rows, prev, next) = w.finish(vec![1, 2, 3]);
        assert_eq!(rows, [2, 1]);
        assert_eq!(prev, Beyond::Known(true));
        assert_eq!(next, Beyond::ProbeFrom(c(3)));
        let (rows, prev, next) = req(None, None, Some(5), None).resolve(50).unwrap().finish(vec![1]);
        assert_eq!(rows, [1]);
        assert_eq!((prev, next), (Beyond::Known(false), Beyond::Known(false)));
    }
}
