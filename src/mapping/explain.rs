//! TestMapping's warnings: what in an accepted row is probably not what the mapping meant. A
//! path that resolved to nothing (with the nearest key the row does have), a field left out as
//! empty, a value coerced to the field's type. Computed by a pass of its own after the render,
//! for TestMapping only: the row path (SubmitRows, StreamRows) never runs it.

use serde::Serialize;

use super::Mapping;
use super::budget::Budget;
use super::envelope::{Envelope, Scope};
use super::eval::eval;
use super::expr::Seen;
use super::row::Row;
use super::suggest::nearest;
use crate::issue::pointer;
use crate::json::{Kind, VRef};
use crate::spec::Field;
use crate::spec::event;
use crate::spec::fields::FieldType;

/// What a warning is about. Extend only deliberately: callers may switch on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WarningCode {
    /// A path resolved to nothing in the row.
    PathUnresolved,
    /// A field resolved to `null` or `""` and is left out of the event.
    DroppedEmpty,
    /// A field's value was converted to the field's type (a number to a string, a warehouse
    /// timestamp to RFC 3339).
    Coerced,
}

/// A warning: the row is accepted as it is, but probably not as meant. The pointer is into the
/// mapping document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: WarningCode,
    pub pointer: String,
    pub message: String,
}

/// At most this many warnings for one row (a mapping is at most 64 KiB, but its paths may be
/// many), each message at most [`MAX_MESSAGE_CHARS`].
const MAX_WARNINGS: usize = 20;
const MAX_MESSAGE_CHARS: usize = 400;

impl Mapping {
    /// The warnings for `row` (none when the trigger does not match), within `budget` like the
    /// render: what would pass it is simply not looked at.
    pub(super) fn explain(&self, row: &Row, budget: usize) -> Vec<Warning> {
        let env = Envelope::new(row, self.identity(), self.content());
        if !self.trigger.matches(&env) {
            return Vec::new();
        }
        let budget = Budget::new(budget);
        let applied;
        let scope = match &self.root {
            None => Scope::Env(&env),
            Some(apply) => {
                applied = match eval(apply, Scope::Env(&env), &budget) {
                    Ok(v) => v,
                    Err(_) => return Vec::new(),
                };
                match &applied {
                    Some(v) => Scope::Node(v.as_ref()),
                    None => Scope::Nothing,
                }
            }
        };
        let mut out = Vec::new();
        for seen in &*self.paths {
            if out.len() == MAX_WARNINGS {
                break;
            }
            if seen.path.resolve(&scope).is_none() {
                out.push(unresolved(seen, scope, &env));
            }
        }
        for (field, expr) in &*self.fields {
            let Ok(Some(v)) = eval(expr, scope, &budget) else {
                continue;
            };
            if let Some(w) = field_warning(*field, v.as_ref()) {
                out.push(w);
            }
        }
        out.truncate(MAX_WARNINGS);
        for w in &mut out {
            if let Some((i, _)) = w.message.char_indices().nth(MAX_MESSAGE_CHARS) {
                w.message.truncate(i);
                w.message.push_str("...");
            }
        }
        out
    }
}

/// A field's value left out as empty, or coerced to the field's type.
fn field_warning(field: Field, v: VRef<'_>) -> Option<Warning> {
    let at = pointer("/fields", field.key());
    let warn = |code, message: String| {
        Some(Warning {
            code,
            pointer: at.clone(),
            message,
        })
    };
    match v.kind() {
        Kind::Null => {
            return warn(
                WarningCode::DroppedEmpty,
                format!(
                    "{} resolved to null, so the event has no {}",
                    field.key(),
                    field.label()
                ),
            );
        }
        Kind::Str("") => {
            return warn(
                WarningCode::DroppedEmpty,
                format!(
                    "{} resolved to an empty string, so the event has no {}",
                    field.key(),
                    field.label()
                ),
            );
        }
        _ => {}
    }
    if !matches!(field.ty(), FieldType::Str) {
        return None;
    }
    if field == Field::Timestamp
        && let Some(ts) = event::timestamp(v)
    {
        return warn(
            WarningCode::Coerced,
            format!("timestamp {} was sent as {ts:?} (RFC 3339, D8)", compact(v)),
        );
    }
    let (inner, one) = match v.kind() {
        Kind::Array(a) if a.len() == 1 => (a.get(0)?, true),
        _ => (v, false),
    };
    let as_string = match inner.kind() {
        Kind::Number(n) => n.to_js_string(),
        Kind::Bool(b) => b.to_string(),
        Kind::Str(s) if one => s.to_owned(),
        Kind::Null if one => String::new(),
        _ => return None,
    };
    let what = if one {
        format!("the one-element array {}", compact(v))
    } else {
        format!("the {} {}", v.type_name(), compact(v))
    };
    warn(
        WarningCode::Coerced,
        format!(
            "{} is a string: {what} was sent as {as_string:?}",
            field.label()
        ),
    )
}

/// A value as short JSON text for a message.
fn compact(v: VRef<'_>) -> String {
    let mut out = Vec::new();
    v.write_json(&mut out);
    let s = String::from_utf8_lossy(&out);
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.into_owned(),
    }
}

/// The warning for a path that resolved to nothing, with the nearest key the row has where the
/// walk stopped (and, for a top-level key the envelope has not, the row's column of that name).
fn unresolved(seen: &Seen, scope: Scope<'_>, env: &Envelope<'_>) -> Warning {
    let keys: Vec<&str> = seen.path.keys().collect();
    let shown = show(&keys, seen.in_template);
    let start = match scope {
        Scope::Env(e) => Some(VRef::Json(e.as_value())),
        Scope::Node(n) => Some(n),
        Scope::Nothing => None,
    };
    let mut meant = None;
    let mut cur = start;
    for (i, key) in keys.iter().enumerate() {
        let Some(obj) = cur.and_then(VRef::as_object) else {
            break;
        };
        if let Some(v) = obj.get(key) {
            cur = Some(v);
            continue;
        }
        let near = nearest(key, obj.iter().map(|(k, _)| k));
        let mut fixed: Vec<&str> = keys.clone();
        match near {
            Some(near) => {
                fixed[i] = near;
                meant = Some(show(&fixed, seen.in_template));
            }
            // `$.revenue` for a column `revenue` (or near it): `$.properties.revenue`.
            None if i == 0 && matches!(scope, Scope::Env(_)) => {
                let columns = &env.row().columns;
                let column = columns
                    .get(key)
                    .map(|_| *key)
                    .or_else(|| nearest(key, columns.keys()));
                if let Some(column) = column {
                    fixed[0] = column;
                    fixed.insert(0, "properties");
                    meant = Some(show(&fixed, seen.in_template));
                }
            }
            None => {}
        }
        break;
    }
    let message = match meant {
        Some(meant) => format!("{shown} resolved to nothing in this row; did you mean {meant}?"),
        None => format!("{shown} resolved to nothing in this row"),
    };
    Warning {
        code: WarningCode::PathUnresolved,
        pointer: seen.pointer.clone(),
        message,
    }
}

/// A path as written: `$.a.b[0]['c d']`, or `{{a.b.0}}` in a template.
fn show(keys: &[&str], template: bool) -> String {
    let mut s = String::new();
    for (i, k) in keys.iter().enumerate() {
        let plain = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if template {
            if i > 0 {
                s.push('.');
            }
            s.push_str(k);
        } else if k.bytes().all(|b| b.is_ascii_digit()) && !k.is_empty() {
            s.push_str(&format!("[{k}]"));
        } else if plain {
            if i > 0 {
                s.push('.');
            }
            s.push_str(k);
        } else {
            s.push_str(&format!("['{k}']"));
        }
    }
    if template {
        format!("{{{{{s}}}}}")
    } else {
        format!("$.{s}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::mapping::Op;

    fn warnings(fields: Value, columns: Value) -> Vec<(WarningCode, String, String)> {
        let doc = json!({"name": "n", "action": "track", "fields": fields}).to_string();
        let m = Mapping::from_json(doc.as_bytes(), None).unwrap();
        let row = Row::new(
            Some("r-1".into()),
            Op::Added,
            serde_json::from_value(columns).unwrap(),
            None,
        );
        let got = m.test(&row);
        assert!(got.accepted, "{got:?}");
        got.warnings
            .into_iter()
            .map(|w| (w.code, w.pointer, w.message))
            .collect()
    }

    fn one(code: WarningCode, pointer: &str, message: &str) -> Vec<(WarningCode, String, String)> {
        vec![(code, pointer.to_owned(), message.to_owned())]
    }

    #[test]
    fn an_unresolved_path_names_the_nearest_key() {
        use WarningCode::PathUnresolved as P;
        let base = json!({"event_name": "E", "user_id": "u"});
        let with = |k: &str, v: Value| {
            let mut f = base.clone();
            f[k] = v;
            f
        };
        let columns = json!({"revenue": 5, "address": {"city": "Oslo"}, "first name": "A"});
        assert_eq!(
            warnings(
                with("properties", json!({"r": {"@path": "$.properties.revnue"}})),
                columns.clone()
            ),
            one(
                P,
                "/fields/properties/r/@path",
                "$.properties.revnue resolved to nothing in this row; did you mean $.properties.revenue?"
            )
        );
        // Deeper: the key where the walk stopped.
        assert_eq!(
            warnings(
                with(
                    "properties",
                    json!({"c": {"@path": "$.properties.address.ctiy"}})
                ),
                columns.clone()
            ),
            one(
                P,
                "/fields/properties/c/@path",
                "$.properties.address.ctiy resolved to nothing in this row; did you mean \
                 $.properties.address.city?"
            )
        );
        // A column addressed without `properties`.
        assert_eq!(
            warnings(
                with("properties", json!({"r": {"@path": "$.revenue"}})),
                columns.clone()
            ),
            one(
                P,
                "/fields/properties/r/@path",
                "$.revenue resolved to nothing in this row; did you mean $.properties.revenue?"
            )
        );
        // In a template, shown as a placeholder.
        assert_eq!(
            warnings(
                with(
                    "properties",
                    json!({"t": {"@template": "{{properties.frist name}}!"}})
                ),
                columns.clone()
            ),
            one(
                P,
                "/fields/properties/t/@template",
                "{{properties.frist name}} resolved to nothing in this row; did you mean \
                 {{properties.first name}}?"
            )
        );
        // Nothing near: no suggestion.
        assert_eq!(
            warnings(
                with("properties", json!({"z": {"@path": "$.properties.zzzzzz"}})),
                columns.clone()
            ),
            one(
                P,
                "/fields/properties/z/@path",
                "$.properties.zzzzzz resolved to nothing in this row"
            )
        );
        // Under `@if` a missing path is the point: no warning; a resolved path: none either.
        let quiet = with(
            "properties",
            json!({
                "a": {"@if": {"exists": {"@path": "$.properties.nope"}, "then": 1}},
                "b": {"@path": "$.properties.revenue"},
            }),
        );
        assert_eq!(warnings(quiet, columns), []);
    }

    #[test]
    fn paths_behind_a_root_directive_are_checked_against_its_result() {
        let fields = json!({
            "__segment_internal_directive": {"@transform": {"apply": {
                "who": {"@path": "$.properties.uid"},
            }}},
            "event_name": "E",
            "user_id": {"@path": "$.whoo"},
            "anonymous_id": "a",
        });
        assert_eq!(
            warnings(fields, json!({"uid": "u-1"})),
            one(
                WarningCode::PathUnresolved,
                "/fields/user_id/@path",
                "$.whoo resolved to nothing in this row; did you mean $.who?"
            )
        );
    }

    #[test]
    fn empty_and_coerced_fields() {
        let fields = json!({
            "event_name": "E",
            "user_id": {"@path": "$.properties.id"},
            "anonymous_id": {"@path": "$.properties.anon"},
            "message_id": [{"@path": "$.properties.m"}],
            "timestamp": {"@path": "$.properties.ts"},
            "properties": {"@path": "$.properties.nothing_here"},
        });
        let got = warnings(
            fields,
            json!({"id": 42, "anon": null, "m": true, "ts": 1714564800, "nothing_here": null}),
        );
        assert_eq!(
            got,
            [
                (
                    WarningCode::Coerced,
                    "/fields/user_id",
                    "User ID is a string: the number 42 was sent as \"42\""
                ),
                (
                    WarningCode::DroppedEmpty,
                    "/fields/anonymous_id",
                    "anonymous_id resolved to null, so the event has no Anonymous ID"
                ),
                (
                    WarningCode::Coerced,
                    "/fields/message_id",
                    "MessageId is a string: the one-element array [true] was sent as \"true\""
                ),
                (
                    WarningCode::Coerced,
                    "/fields/timestamp",
                    "timestamp 1714564800 was sent as \"2024-05-01T12:00:00Z\" (RFC 3339, D8)"
                ),
                (
                    WarningCode::DroppedEmpty,
                    "/fields/properties",
                    "properties resolved to null, so the event has no Properties"
                ),
            ]
            .map(|(c, p, m)| (c, p.to_owned(), m.to_owned()))
        );
    }

    /// A skipped row has no warnings; at most 20 for one row, however many paths miss.
    #[test]
    fn skipped_rows_have_none_and_there_are_at_most_twenty() {
        let props: serde_json::Map<String, Value> = (0..50)
            .map(|i| {
                (
                    format!("k{i}"),
                    json!({"@path": format!("$.properties.c{i}")}),
                )
            })
            .collect();
        let doc = json!({"name": "n", "action": "track", "trigger": "added", "fields": {
            "event_name": "E", "user_id": "u", "properties": props,
        }})
        .to_string();
        let m = Mapping::from_json(doc.as_bytes(), None).unwrap();
        let columns: crate::json::Columns = serde_json::from_value(json!({})).unwrap();
        let added = Row::new(None, Op::Added, columns.clone(), None);
        assert_eq!(m.test(&added).warnings.len(), MAX_WARNINGS);
        let updated = Row::new(None, Op::Updated, columns, None);
        let got = m.test(&updated);
        assert!(got.skipped && got.warnings.is_empty(), "{got:?}");
    }
}
