//! What directives see: Segment's Reverse ETL envelope around a row
//! (`{type: "track", event, messageId, properties: <columns>, __segment_id}`), built lazily.

use std::cell::OnceCell;

use serde_json::{Map, Value};

use super::message_id::{self, Content, Identity};
use super::row::Row;
use crate::json::VRef;

/// The envelope of one row for one mapping. Nothing is copied unless a directive asks for the
/// whole envelope (`$.`, Liquid, FQL).
pub(crate) struct Envelope<'a> {
    row: &'a Row,
    identity: &'a Identity,
    content: &'a Content,
    derived: OnceCell<String>,
    value: OnceCell<Value>,
}

/// The top-level envelope key a path starts with, resolved when the path is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvRoot {
    /// No key: the whole envelope.
    Whole,
    Type,
    Event,
    MessageId,
    Properties,
    SegmentId,
    /// A key the envelope has not: `undefined`.
    Other,
}

impl EnvRoot {
    pub(crate) fn of(first_key: Option<&str>) -> EnvRoot {
        match first_key {
            None => EnvRoot::Whole,
            Some("type") => EnvRoot::Type,
            Some("event") => EnvRoot::Event,
            Some("messageId") => EnvRoot::MessageId,
            Some("properties") => EnvRoot::Properties,
            Some("__segment_id") => EnvRoot::SegmentId,
            Some(_) => EnvRoot::Other,
        }
    }
}

/// Where a path starts: the envelope, or (inside `@arrayPath` and `@transform`) another value.
#[derive(Clone, Copy)]
pub(super) enum Scope<'a> {
    Env(&'a Envelope<'a>),
    Node(VRef<'a>),
    /// `undefined` (a `@transform` whose `apply` resolved to nothing): every path is undefined.
    Nothing,
}

impl<'a> Envelope<'a> {
    pub(crate) fn new(row: &'a Row, identity: &'a Identity, content: &'a Content) -> Envelope<'a> {
        Envelope {
            row,
            identity,
            content,
            derived: OnceCell::new(),
            value: OnceCell::new(),
        }
    }

    pub(crate) fn row(&self) -> &'a Row {
        self.row
    }

    /// The derived messageId of this row under this mapping (docs/DESIGN.md, "messageId").
    pub(crate) fn derived_message_id(&self) -> &str {
        self.derived
            .get_or_init(|| message_id::derive(self.identity, self.content, self.row))
    }

    /// `$.messageId`: the caller's id for the row, else the derived one.
    pub(crate) fn message_id(&self) -> &str {
        match &self.row.message_id {
            Some(id) => id,
            None => self.derived_message_id(),
        }
    }

    /// The value of a top-level envelope key.
    pub(crate) fn root(&self, root: EnvRoot) -> Option<VRef<'_>> {
        match root {
            EnvRoot::Type => Some(VRef::Str("track")),
            EnvRoot::Event => Some(VRef::Str(self.row.op.event())),
            EnvRoot::MessageId => Some(VRef::Str(self.message_id())),
            EnvRoot::Properties => Some(VRef::Row(&self.row.columns)),
            EnvRoot::SegmentId => self.row.id.as_deref().map(VRef::Str),
            EnvRoot::Whole => Some(VRef::Json(self.as_value())),
            EnvRoot::Other => None,
        }
    }

    /// The whole envelope as JSON, built on first use.
    pub(crate) fn as_value(&self) -> &Value {
        self.value.get_or_init(|| {
            let mut m = Map::new();
            m.insert("type".into(), Value::from("track"));
            m.insert("event".into(), Value::from(self.row.op.event()));
            m.insert("messageId".into(), Value::from(self.message_id()));
            m.insert("properties".into(), VRef::Row(&self.row.columns).to_value());
            if let Some(id) = &self.row.id {
                m.insert("__segment_id".into(), Value::from(id.as_str()));
            }
            Value::Object(m)
        })
    }
}

impl<'a> Scope<'a> {
    /// The scope as one JSON value (what Liquid and whole-payload paths see).
    pub(super) fn to_value(self) -> Value {
        match self {
            Scope::Env(env) => env.as_value().clone(),
            Scope::Node(node) => node.to_value(),
            Scope::Nothing => Value::Null,
        }
    }
}
