//! The Segment Spec, pure: the five actions and their fields (`fields`), the event built from
//! resolved field values (`event`), its compiled fast path for flat mappings (`plan`), and the
//! Tracking API's own limits on one event (`accept`). No I/O; knows nothing of mappings,
//! delivery or HTTP.

pub mod accept;
pub mod event;
pub mod fields;
pub mod plan;

pub use fields::{Action, Field};
