//! segment-connections: turns warehouse rows into Segment Spec calls and delivers them to
//! Segment's Tracking API.
//!
//! The row path, top to bottom: `mapping` (compile a mapping, render a row: pure) →
//! `segment` (the Spec event, the API's limits; batching and the HTTP sender) → `delivery`
//! (render → batch → send → per-row report). `json` holds JavaScript-compatible JSON.
//! The service: `app` wires `store` (destinations and mappings) under `grpc` (the API);
//! `config` validates `serve`'s flags; `cli` holds the commands.

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
pub mod telemetry;
