//! A row as callers submit it: id, change kind, columns and an optional messageId.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::json::{self, Columns};

/// The change a row reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Added,
    Updated,
    Deleted,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Added => "added",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
        }
    }

    /// The envelope's `event` for this change (Segment's Reverse ETL names).
    pub(crate) fn event(self) -> &'static str {
        match self {
            Op::Added => "new",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
        }
    }
}

/// One row: what a mapping renders.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row's id (its unique key in the model); `None` offline when the file gives none.
    pub id: Option<String>,
    pub op: Op,
    pub columns: Columns,
    /// The caller's messageId for this row, if it gives one.
    pub message_id: Option<String>,
    canonical: OnceLock<Box<[u8]>>,
}

impl Row {
    pub fn new(id: Option<String>, op: Op, columns: Columns, message_id: Option<String>) -> Row {
        Row {
            id,
            op,
            columns,
            message_id,
            canonical: OnceLock::new(),
        }
    }

    /// Parses docs/DESIGN.md's row JSON: `{"id": str|number, "op", "columns": {…}, "message_id"}`.
    pub fn from_json(bytes: &[u8]) -> Result<Row, serde_json::Error> {
        let doc: RowDoc = serde_json::from_slice(bytes)?;
        let id = doc.id.map(|id| match id {
            RowId::Str(s) => s,
            RowId::Num(n) => json::number_to_string(&n),
        });
        Ok(Row::new(id, doc.op, doc.columns, doc.message_id))
    }

    /// The columns as canonical JSON (keys sorted, compact), computed once per row.
    pub(crate) fn canonical_columns(&self) -> &[u8] {
        self.canonical.get_or_init(|| {
            let mut out = Vec::with_capacity(256);
            json::write_canonical_entries(&mut out, self.columns.iter());
            out.into_boxed_slice()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowDoc {
    #[serde(default)]
    id: Option<RowId>,
    op: Op,
    #[serde(deserialize_with = "json::deserialize_columns")]
    columns: Columns,
    #[serde(default)]
    message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or a number")]
enum RowId {
    Str(String),
    Num(serde_json::Number),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let row = Row::from_json(
            br#"{"id": 7, "op": "updated", "columns": {"b": 1, "a": "x"}, "message_id": "m-1"}"#,
        )
        .unwrap();
        assert_eq!(row.id.as_deref(), Some("7"));
        assert_eq!(row.op, Op::Updated);
        assert_eq!(row.message_id.as_deref(), Some("m-1"));
        assert_eq!(row.columns.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(row.canonical_columns(), br#"{"a":"x","b":1}"#);
    }

    #[test]
    fn rejects_what_is_not_the_shape() {
        for (bad, needle) in [
            (r#"{"op": "inserted", "columns": {}}"#, "unknown variant"),
            (
                r#"{"op": "added", "columns": []}"#,
                "expected a JSON object",
            ),
            (r#"{"op": "added"}"#, "missing field `columns`"),
            (r#"{"columns": {}}"#, "missing field `op`"),
            (
                r#"{"op": "added", "columns": {}, "extra": 1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"op": "added", "columns": {}, "id": true}"#,
                "a string or a number",
            ),
            ("[1]", "expected struct"),
        ] {
            let err = Row::from_json(bad.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
