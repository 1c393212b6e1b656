//! sea-orm entities.

pub mod audit_event;
