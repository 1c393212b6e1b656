//! Integration tests: the real router against real SQLite and real PostgreSQL, each test on a
//! database of its own. Tests that apply to both engines are written once and instantiated per
//! engine with `both_engines!`.

// Panicking is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod access;
mod browser;
mod cli;
mod cluster;
mod contract;
mod explain;
mod export;
mod faults;
mod fuzz;
mod history;
mod hostile;
mod lifecycle;
mod live;
mod log;

mod nesting;
mod nodes;
mod pagination;
mod pooler;
mod reads;
mod replicas;
mod rest;
mod scaleout;
mod schema;
mod serving;
mod storage;
mod tamper;
mod trees;
mod verify;
mod writes;
