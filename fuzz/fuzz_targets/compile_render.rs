//! Fuzz target: the input is a mapping document and a row (JSON, split at the first 0 byte);
//! compiling and rendering must never panic, and an event produced must be valid JSON of at most
//! 32,768 bytes or carry an `EVENT_TOO_LARGE` issue (`tests/common/fuzz_check.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/fuzz_check.rs"]
mod fuzz_check;

fuzz_target!(|data: &[u8]| {
    fuzz_check::check_input(data);
});
