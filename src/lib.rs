//! segment-connections: turns warehouse rows into Segment Spec calls and delivers them to
//! Segment's Tracking API.
//!
//! One SubmitRows row, hop by hop: `grpc` (the transport: decode, check, convert) →
//! `delivery` (resolve the call's target once, render on the render pool) → `mapping` (the
//! compiled mapping renders the row: pure) → `spec` (the Spec event and the API's limits on it:
//! pure) → `sender` (batches, retried through the tower stack, POSTed with the write key) →
//! `delivery` (one result per row and mapping) → `grpc` (the answer).
//!
//! Dependencies point down this list and never up (the `architecture` test below holds it):
//!
//! | module | role | may use |
//! | --- | --- | --- |
//! | `cli` | the commands | everything below |
//! | `app` | `serve`: wires the store, delivery and the gRPC server | everything below |
//! | `config` | `serve`'s flags, validated | everything below |
//! | `grpc` | the API: handlers, conversions, the per-call layer, errors → statuses | everything below |
//! | `sync` | syncs: the diff against the ledger, retries, deletions, the history | below |
//! | `delivery` | the row path: targets cache, render pool, batching, results, streams | below |
//! | `error` | why an RPC fails | below |
//! | `mapping` | mapping documents: registration, compilation, rendering | below |
//! | `store` | destinations and mappings: SQLite or PostgreSQL | below |
//! | `sender` | the Tracking API sender: batches, retries, HTTP, the write key | below |
//! | `limits` | request and row limits | below |
//! | `spec` | the Segment Spec: actions, fields, the event, its limits | below |
//! | `metrics`, `telemetry`, `issue`, `json`, `usage` | leaves: metric names, tracing, per-row issues, JavaScript-compatible JSON, usage (calls, bytes, the users' sketch) | nothing |

// Items are `pub(crate)` unless something outside the crate (the binary, tests, benches) uses them.
#![warn(unreachable_pub)]

pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod error;
pub mod grpc;
pub mod issue;
pub mod json;
pub mod limits;
pub mod mapping;
pub mod metrics;
pub mod sender;
pub mod spec;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod usage;

/// The layers of the table above, top first: a module may use only those after it.
#[cfg(test)]
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["config"],
    &["grpc"],
    &["sync"],
    &["delivery"],
    &["error"],
    &["mapping"],
    &["store"],
    &["sender"],
    &["limits"],
    &["spec"],
    &["metrics", "telemetry", "issue", "json", "usage"],
];

#[cfg(test)]
mod architecture;
