//! Bounds of tree queries and the groupings of counts.

use super::page::PageError;

/// `maxDepth` of a tree or of `descendants` when the client gives none.
pub const DEFAULT_MAX_DEPTH: u32 = 100;
/// The largest `maxDepth` accepted.
pub const HARD_MAX_DEPTH: u32 = 10_000;
/// `maxNodes` of a tree when the client gives none.
pub const DEFAULT_MAX_NODES: u32 = 1_000;
/// The largest `maxNodes` accepted.
pub const HARD_MAX_NODES: u32 = 10_000;
/// How many ancestors are followed at most (a guard; links cannot form cycles).
pub const ANCESTOR_GUARD: u32 = 100_000;

/// Checks an optional bound against `1..=max`, defaulting to `default`.
pub fn bound(argument: &'static str, value: Option<i32>, default: u32, max: u32) -> Result<u32, PageError> {
    match value {
        None => Ok(default),
        Some(n) if n < 1 || n as u32 > max => Err(PageError {
            argument,
            message: format!("{argument} must be between 1 and {max}"),
        }),
        Some(n) => Ok(n as u32),
    }
}

/// The bounds of one tree query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeBounds {
    /// Deepest level returned (the root of the tree is at depth 0).
    pub max_depth: u32,
    /// Most nodes returned.
    pub max_nodes: u32,
}

/// What event counts are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Category,
    Type,
    Outcome,
    Severity,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_default_and_reject_out_of_range_values() {
        assert_eq!(bound("maxDepth", None, 100, 10_000), Ok(100));
        assert_eq!(bound("maxDepth", Some(10_000), 100, 10_000), Ok(10_000));
        assert_eq!(
            bound("maxDepth", Some(0), 100, 10_000).unwrap_err().argument,
            "maxDepth"
        );
        assert_eq!(
            bound("maxNodes", Some(10_001), 100, 10_000).unwrap_err().argument,
            "maxNodes"
        );
        assert!(bound("maxNodes", Some(-3), 100, 10_000).is_err());
    }
}
