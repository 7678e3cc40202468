//! When a mapping fires: one of the Reverse ETL choices, or an FQL subscription over the envelope.

use super::envelope::Envelope;
use super::fql::{Fql, FqlError};
use super::row::Op;

/// A compiled trigger.
#[derive(Debug, Clone)]
pub enum Trigger {
    Added,
    Updated,
    AddedOrUpdated,
    Deleted,
    Fql(Box<Fql>),
}

impl Trigger {
    /// One of `added`, `updated`, `added_or_updated`, `deleted`.
    pub(crate) fn named(name: &str) -> Option<Trigger> {
        Some(match name {
            "added" => Trigger::Added,
            "updated" => Trigger::Updated,
            "added_or_updated" => Trigger::AddedOrUpdated,
            "deleted" => Trigger::Deleted,
            _ => return None,
        })
    }

    pub(crate) fn fql(src: &str) -> Result<Trigger, FqlError> {
        Fql::parse(src).map(|f| Trigger::Fql(Box::new(f)))
    }

    pub(crate) fn matches(&self, env: &Envelope<'_>) -> bool {
        let op = env.row().op;
        match self {
            Trigger::Added => op == Op::Added,
            Trigger::Updated => op == Op::Updated,
            Trigger::AddedOrUpdated => op != Op::Deleted,
            Trigger::Deleted => op == Op::Deleted,
            Trigger::Fql(f) => f.matches(env.as_value()),
        }
    }
}
