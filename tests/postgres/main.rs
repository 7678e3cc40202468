//! PostgreSQL end to end: real `serve` processes on one database (`TEST_DATABASE_URL`; skipped
//! with a notice when unset, failing when CI=true), a database outage, key rotation, and where
//! the write key must never appear.

#[path = "../pg_support/mod.rs"]
mod pg_support;

mod helpers;
mod keys;
mod outage;
mod replicas;
mod secrets;
