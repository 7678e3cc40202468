//! Rendering one row through one mapping: trigger, directives, then the Spec event. The one
//! function TestMapping, the offline CLI and SubmitRows all use.

use serde::Serialize;
use serde_json::Value;

use super::Mapping;
use super::envelope::{Envelope, Scope};
use super::eval::eval;
use super::expr::Expr;
use super::expr::Violation;
use super::row::Row;
use crate::issue::{Issue, IssueCode, pointer};
use crate::json::{VRef, Val};
use crate::segment::event::{self, Built, Fields};
use crate::segment::fields::Field;

/// The outcome of rendering one row through one mapping.
#[derive(Debug)]
pub struct Render {
    /// The trigger did not match: nothing was rendered.
    pub skipped: bool,
    pub built: Built,
}

impl Render {
    /// Whether the event may be sent: rendered, with no issue.
    pub fn accepted(&self) -> bool {
        !self.skipped && self.built.size.is_some() && self.built.issues.is_empty()
    }
}

impl Mapping {
    /// Renders `row`, appending the event's JSON to `out` when one could be built
    /// (`out[out.len() - size..]` afterwards). Problems are issues, never errors.
    pub fn render(&self, row: &Row, out: &mut Vec<u8>) -> Render {
        let env = Envelope::new(row, self.identity());
        if !self.trigger.matches(&env) {
            return Render {
                skipped: true,
                built: Built::default(),
            };
        }
        self.render_scope(
            Scope::Env(&env),
            || env.derived_message_id().to_owned(),
            out,
        )
    }

    /// Renders with directives seeing `scope`; `derived` gives the messageId when none is mapped.
    fn render_scope(
        &self,
        scope: Scope<'_>,
        derived: impl FnOnce() -> String,
        out: &mut Vec<u8>,
    ) -> Render {
        if let Some(n) = self.flat {
            return self.render_flat(n, scope, derived, out);
        }
        let mut values: [Option<Val<'_>>; Field::COUNT] = [const { None }; Field::COUNT];
        let mut issues = Vec::new();
        for (field, expr) in &*self.fields {
            match eval(expr, scope) {
                Ok(v) => values[field.index()] = v,
                Err(e) => issues.push(Issue::new(
                    IssueCode::InvalidMapping,
                    pointer("", field.key()),
                    e.0,
                )),
            }
        }
        if !issues.is_empty() {
            let built = Built {
                message_id: None,
                size: None,
                issues,
            };
            return Render {
                skipped: false,
                built,
            };
        }
        let mut fields: Fields<'_> = [None; Field::COUNT];
        for (field, _) in &*self.fields {
            let i = field.index();
            fields[i] = values[i].as_ref().map(Val::as_ref);
        }
        let built = event::build(self.action, &fields, derived, out);
        Render {
            skipped: false,
            built,
        }
    }

    /// The same for a flat mapping (every field a column, an envelope value or a literal, or a
    /// raw object of those; see [`is_flat`]): the values are what `eval` gives for those forms,
    /// gathered in one vector instead of a tree of them, and nothing can fail.
    fn render_flat<'a>(
        &'a self,
        n: usize,
        scope: Scope<'a>,
        derived: impl FnOnce() -> String,
        out: &mut Vec<u8>,
    ) -> Render {
        #[derive(Clone, Copy)]
        enum Slot {
            Unset,
            At(usize),
            Object(usize, usize),
        }
        let leaf = |e: &'a Expr| match e {
            Expr::Path(p) => p.resolve(&scope),
            Expr::Const(v) => Some(Val::Ref(v)),
            _ => None,
        };
        let mut slots = [Slot::Unset; Field::COUNT];
        let mut values: Vec<(&'a str, Val<'a>)> = Vec::with_capacity(n);
        for (field, expr) in &*self.fields {
            let slot = &mut slots[field.index()];
            match expr {
                Expr::Object(entries) => {
                    let start = values.len();
                    for (k, e) in entries {
                        if let Some(v) = leaf(e) {
                            values.push((k, v));
                        }
                    }
                    *slot = Slot::Object(start, values.len());
                }
                e => {
                    if let Some(v) = leaf(e) {
                        *slot = Slot::At(values.len());
                        values.push(("", v));
                    }
                }
            }
        }
        let mut fields: Fields<'_> = [None; Field::COUNT];
        for (field, _) in &*self.fields {
            let i = field.index();
            fields[i] = match slots[i] {
                Slot::Unset => None,
                Slot::At(j) => Some(values[j].1.as_ref()),
                Slot::Object(a, b) => Some(VRef::Obj(&values[a..b])),
            };
        }
        let built = event::build(self.action, &fields, derived, out);
        Render {
            skipped: false,
            built,
        }
    }

    /// TestMapping for one row: what would be sent and whether the Tracking API would take it.
    pub fn test(&self, row: &Row) -> TestResult {
        let mut out = Vec::with_capacity(512);
        let r = self.render(row, &mut out);
        let event = r
            .built
            .size
            .and_then(|_| serde_json::from_slice::<Value>(&out).ok());
        TestResult {
            accepted: r.accepted(),
            skipped: r.skipped,
            event,
            message_id: r.built.message_id,
            size_bytes: r.built.size,
            issues: r.built.issues,
        }
    }
}

/// What TestMapping and `test-mapping` report for one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub accepted: bool,
    pub skipped: bool,
    pub event: Option<Value>,
    pub message_id: Option<String>,
    pub size_bytes: Option<usize>,
    pub issues: Vec<Issue>,
}

impl TestResult {
    /// A row rejected before any event could be built.
    pub fn rejected(issues: Vec<Issue>) -> TestResult {
        TestResult {
            accepted: false,
            skipped: false,
            event: None,
            message_id: None,
            size_bytes: None,
            issues,
        }
    }

    /// The result for every row of a mapping that does not compile.
    pub fn invalid_mapping(violations: &[Violation]) -> TestResult {
        TestResult::rejected(
            violations
                .iter()
                .map(|v| {
                    Issue::new(
                        IssueCode::InvalidMapping,
                        v.pointer.clone(),
                        v.message.clone(),
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{Identity, MappingDoc};

    /// Conformance case 30: a raw Segment event (not a row) as the payload, which a row cannot
    /// express. Rendered through the same code with the event as the scope.
    #[test]
    fn case_30_raw_event_envelope_passes_through() {
        let case: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/conformance/30-track-event-envelope-passthrough.json"
        ))
        .unwrap();
        let doc = MappingDoc {
            name: None,
            model: None,
            action: Some("track".into()),
            trigger: Some(super::super::TriggerDoc::Fql {
                fql: case["subscribe"].as_str().unwrap().into(),
            }),
            fields: case["mapping"].as_object().cloned(),
            enabled: None,
        };
        let m = Mapping::compile(&doc, Identity::offline("")).unwrap();
        let event = &case["input"]["event"];
        assert!(matches!(&m.trigger, super::super::Trigger::Fql(f) if f.matches(event)));
        let mut out = Vec::new();
        let r = m.render_scope(
            Scope::Node(VRef::Json(event)),
            || unreachable!("mapped"),
            &mut out,
        );
        assert!(r.accepted(), "{:?}", r.built.issues);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, case["expected"]["actionOutput"]["batch"][0]);
    }
}

/// Whether every field of a mapping is a column, an envelope value or a literal, or a raw object
/// of those: what `render_flat` takes. Returns how many values such a mapping can produce.
pub(super) fn is_flat(fields: &[(Field, Expr)]) -> Option<usize> {
    let leaf = |e: &Expr| matches!(e, Expr::Path(_) | Expr::Const(_));
    fields.iter().try_fold(0, |n, (_, e)| match e {
        Expr::Object(entries) if entries.iter().all(|(_, e)| leaf(e)) => Some(n + entries.len()),
        e if leaf(e) => Some(n + 1),
        _ => None,
    })
}

/// The flat path against the general evaluator: random flat mappings of every action over random
/// rows must render the same bytes, messageId, size and issues either way.
#[cfg(test)]
mod flat_against_general {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::Render;
    use crate::json::Columns;
    use crate::mapping::{Identity, Mapping, MappingDoc, Op, Row};
    use crate::segment::fields::{Action, Field, FieldType};

    const COLUMNS: &[&str] = &["a", "b", "user", "ts", "n", "obj", "e\"q"];

    fn scalar() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!("")),
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            prop::sample::select(vec![
                "u-1",
                "2024-05-01T12:00:00Z",
                "not a date",
                "48.85",
                "1e3",
                " 7 ",
                "true",
                "false",
                "x\"y\n",
                "é😀",
                "0x10",
            ])
            .prop_map(Value::from),
        ]
        .boxed()
    }

    fn value() -> BoxedStrategy<Value> {
        prop_oneof![
            4 => scalar(),
            1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
            1 => prop::collection::btree_map("[a-c]", scalar(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
        .boxed()
    }

    /// A leaf: a column, the envelope's messageId or userId-ish values, or a literal.
    fn leaf() -> BoxedStrategy<Value> {
        prop_oneof![
            3 => prop::sample::select(COLUMNS)
                .prop_map(|c| json!({ "@path": format!("$.properties.{c}") })),
            1 => prop::sample::select(vec!["$.messageId", "$.event", "$.properties", "$.nope"])
                .prop_map(|p| json!({ "@path": p })),
            1 => scalar(),
        ]
        .boxed()
    }

    fn doc() -> BoxedStrategy<Value> {
        prop::sample::select(Action::ALL.to_vec())
            .prop_flat_map(|action| {
                let fields: Vec<Field> = Field::ALL
                    .into_iter()
                    .filter(|f| f.allowed(action))
                    .collect();
                let per_field = fields
                    .into_iter()
                    .map(|f| {
                        let value = match f.ty() {
                            FieldType::Str => leaf(),
                            FieldType::Object(subs) => {
                                let mut keys: Vec<&'static str> =
                                    subs.iter().map(|s| s.key).collect();
                                keys.push("extra");
                                prop::collection::btree_map(
                                    prop::sample::select(keys),
                                    leaf(),
                                    0..4,
                                )
                                .prop_map(|m| {
                                    Value::Object(
                                        m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                                    )
                                })
                                .boxed()
                            }
                            FieldType::FreeObject => prop::collection::btree_map(
                                prop::sample::select(vec!["k", "address", "name", "q\"k"]),
                                leaf(),
                                0..3,
                            )
                            .prop_map(|m| {
                                Value::Object(
                                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                                )
                            })
                            .boxed(),
                        };
                        (Just(f.key()), prop::option::weighted(0.7, value))
                    })
                    .collect::<Vec<_>>();
                (Just(action), per_field)
            })
            .prop_map(|(action, per_field)| {
                let fields: Map<String, Value> = per_field
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                    .collect();
                json!({ "action": action.as_str(), "fields": fields })
            })
            .boxed()
    }

    fn row() -> BoxedStrategy<Row> {
        (
            prop::collection::btree_map(prop::sample::select(COLUMNS), value(), 0..7),
            prop::option::of(prop::sample::select(vec!["m-1", "", "m-\"2"])),
        )
            .prop_map(|(columns, message_id)| {
                let columns: Columns = columns.into_iter().collect();
                Row::new(
                    Some("row-1".into()),
                    Op::Added,
                    columns,
                    message_id.map(str::to_owned),
                )
            })
            .boxed()
    }

    fn rendered(r: &Render, out: &[u8]) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {}",
            r.skipped,
            r.built.message_id,
            r.built.size,
            r.built.issues,
            String::from_utf8_lossy(out)
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn flat_mappings_render_as_the_general_path_does(doc in doc(), row in row()) {
            let doc: MappingDoc = serde_json::from_value(doc).unwrap();
            // Required fields may be missing: such mappings do not compile, and are not flat.
            let Ok(flat) = Mapping::compile(&doc, Identity::offline("")) else { return Ok(()); };
            prop_assert!(flat.flat.is_some());
            let mut general = Mapping::compile(&doc, Identity::offline("")).unwrap();
            general.flat = None;
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let ra = flat.render(&row, &mut a);
            let rb = general.render(&row, &mut b);
            prop_assert_eq!(rendered(&ra, &a), rendered(&rb, &b));
        }
    }
}
