//! The Segment Spec, pure: the five actions and their fields (`fields`), the event built from
//! resolved field values (`event`), its compiled fast path for flat mappings (`plan`), and the
//! Tracking API's own limits on one event (`accept`). No I/O; knows nothing of mappings,
//! delivery or HTTP.

pub mod accept;
pub(crate) mod event;
pub(crate) mod fields;
pub(crate) mod plan;

pub use fields::{Action, Field};
