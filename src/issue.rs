//! Per-row issues: the closed list of codes (docs/DESIGN.md) and where each one points.

use serde::Serialize;

/// Why a row was rejected or failed. Extend only deliberately: callers switch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssueCode {
    InvalidMapping,
    InvalidRow,
    RowTooLarge,
    MissingIdentity,
    RequiredField,
    TypeMismatch,
    EventTooLarge,
    InvalidTimestamp,
    MessageIdTooLong,
    RenderLimit,
    DuplicateMessageId,
    UpstreamRejected,
    UpstreamUnavailable,
    RetriesExhausted,
    Deadline,
    ShuttingDown,
    UpstreamNotAllowed,
    /// Syncs: a record id already received in the same sync.
    DuplicateRecordId,
}

impl IssueCode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            IssueCode::InvalidMapping => "INVALID_MAPPING",
            IssueCode::InvalidRow => "INVALID_ROW",
            IssueCode::RowTooLarge => "ROW_TOO_LARGE",
            IssueCode::MissingIdentity => "MISSING_IDENTITY",
            IssueCode::RequiredField => "REQUIRED_FIELD",
            IssueCode::TypeMismatch => "TYPE_MISMATCH",
            IssueCode::EventTooLarge => "EVENT_TOO_LARGE",
            IssueCode::InvalidTimestamp => "INVALID_TIMESTAMP",
            IssueCode::MessageIdTooLong => "MESSAGE_ID_TOO_LONG",
            IssueCode::RenderLimit => "RENDER_LIMIT",
            IssueCode::DuplicateMessageId => "DUPLICATE_MESSAGE_ID",
            IssueCode::UpstreamRejected => "UPSTREAM_REJECTED",
            IssueCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            IssueCode::RetriesExhausted => "RETRIES_EXHAUSTED",
            IssueCode::Deadline => "DEADLINE",
            IssueCode::ShuttingDown => "SHUTTING_DOWN",
            IssueCode::UpstreamNotAllowed => "UPSTREAM_NOT_ALLOWED",
            IssueCode::DuplicateRecordId => "DUPLICATE_RECORD_ID",
        }
    }

    /// The code [`IssueCode::as_str`] names.
    pub(crate) fn parse(s: &str) -> Option<IssueCode> {
        IssueCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    const ALL: [IssueCode; 18] = [
        IssueCode::InvalidMapping,
        IssueCode::InvalidRow,
        IssueCode::RowTooLarge,
        IssueCode::MissingIdentity,
        IssueCode::RequiredField,
        IssueCode::TypeMismatch,
        IssueCode::EventTooLarge,
        IssueCode::InvalidTimestamp,
        IssueCode::MessageIdTooLong,
        IssueCode::RenderLimit,
        IssueCode::DuplicateMessageId,
        IssueCode::UpstreamRejected,
        IssueCode::UpstreamUnavailable,
        IssueCode::RetriesExhausted,
        IssueCode::Deadline,
        IssueCode::ShuttingDown,
        IssueCode::UpstreamNotAllowed,
        IssueCode::DuplicateRecordId,
    ];
}

impl std::fmt::Display for IssueCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one row (or with a mapping, for `INVALID_MAPPING`).
///
/// `pointer` is a JSON pointer: into the mapping document for mapping problems
/// (`/fields/user_id/@replace/pattern`), into field-key space for render problems
/// (`/location/latitude`), `""` for the whole event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub code: IssueCode,
    pub pointer: String,
    pub message: String,
}

impl Issue {
    pub fn new(code: IssueCode, pointer: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            code,
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Appends `key` to a JSON pointer, escaping `~` and `/` (RFC 6901).
pub(crate) fn push_pointer(pointer: &mut String, key: &str) {
    pointer.push('/');
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// `base` with `key` appended (see [`push_pointer`]).
pub(crate) fn pointer(base: &str, key: &str) -> String {
    let mut p = String::with_capacity(base.len() + key.len() + 1);
    p.push_str(base);
    push_pointer(&mut p, key);
    p
}
