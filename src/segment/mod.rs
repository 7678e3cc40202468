//! Segment itself: the Spec events and the Tracking API's rules.

pub mod accept;
pub mod event;
pub mod fields;

pub use fields::{Action, Field};
