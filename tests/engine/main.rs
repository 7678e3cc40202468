//! The mapping engine's pure suites in one binary: each compiles mappings and renders rows
//! through the library alone (no server, no PostgreSQL, no metrics recorder, no environment
//! variables), so they can share one process.

#[path = "../common"]
mod common {
    pub mod engine;
    pub mod fuzz_check;
}

mod coercion;
mod conformance;
mod directives;
mod fuzz_corpus;
mod hidden_keys;
mod never_panics;
mod timestamps;
