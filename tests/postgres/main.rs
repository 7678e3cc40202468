//! PostgreSQL end to end: real `serve` processes on one database (a throwaway cluster, or
//! `TEST_DATABASE_URL`: see `common::pg`), a database outage (rows still delivered from
//! the cache), key rotation, and where the write key must never appear.

#[path = "../common"]
mod common {
    pub mod bin;
    pub mod fake_segment;
    pub mod pg;
    pub mod serve;
    pub mod syncs;
}

mod keys;
mod outage;
mod replicas;
mod secrets;
mod sync_source;
mod syncs;
