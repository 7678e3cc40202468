//! The API over a real socket: a server on 127.0.0.1:0 per test, a temporary SQLite store.

#[path = "../common"]
mod common {
    pub mod app;
    pub mod bin;
    pub mod fake_segment;
    pub mod syncs;
    pub mod terminal;
}

mod cli;
mod cli_submit;
mod destinations;
mod faults;
mod health_reflection;
mod limits;
mod mappings;
mod message_ids;
mod rate_limit;
mod render_limits;
mod security;
mod starvation;
mod store_faults;
mod stream_rows;
mod submit_rows;
mod syncs;
mod test_mapping;
mod usage;
