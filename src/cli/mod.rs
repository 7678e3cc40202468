//! The command line: `test-mapping` (offline) and, later, client commands for a running server.

pub mod test_mapping;
