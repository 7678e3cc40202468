//! The command line: `test-mapping` (offline), `keys` (the encryption keys, on the store
//! directly) and the client commands (`destinations`, `mappings`, `rows`, `syncs`) that call a running
//! server. Client commands exit 0 on success, 1 when the server
//! answers an error (or cannot be reached), 2 on a usage or file error.

pub mod client;
pub mod destinations;
pub mod health;
mod jsonl;
pub mod keys;
pub mod mappings;
mod pg_source;
mod progress;
pub mod rows;
pub mod submit;
pub mod syncs;
pub mod test_mapping;
