//! auditgraph: an audit-trail service for distributed systems, with a GraphQL API for exploring
//! causality trees.

pub mod domain;
pub mod entity;
pub mod error;
pub mod store;
