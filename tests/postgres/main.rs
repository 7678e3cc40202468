//! PostgreSQL end to end: real `serve` processes on one database (a throwaway cluster, or
//! `TEST_DATABASE_URL`: see `pg_support`), a database outage (rows still delivered from
//! the cache), key rotation, and where the write key must never appear.

#[path = "../pg_support/mod.rs"]
mod pg_support;

#[path = "../api/fake_segment.rs"]
#[allow(dead_code)]
mod fake_segment;
mod helpers;
mod keys;
mod outage;
mod replicas;
mod secrets;
