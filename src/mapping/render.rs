//! Rendering one row through one mapping: trigger, directives, then the Spec event. The one
//! function TestMapping, the offline CLI and SubmitRows all use.

use serde::Serialize;
use serde_json::Value;

use super::Mapping;
use super::budget::{Budget, DEFAULT_RENDER_BYTES, OverBudget};
use super::envelope::{Envelope, Scope};
use super::eval::{EvalError, eval};
use super::explain::Warning;
use super::expr::{Expr, ROOT_DIRECTIVE_KEY, Violation};
use super::path::Path;
use super::row::Row;
use crate::issue::{Issue, IssueCode, pointer};
use crate::json::{VRef, Val};
use crate::spec::event::{self, Built, Fields};
use crate::spec::fields::{Action, Field};
use crate::spec::plan::{Plan, Shape};

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
    /// Renders `row` within the default budget ([`DEFAULT_RENDER_BYTES`]); see
    /// [`Mapping::render_within`].
    pub fn render(&self, row: &Row, out: &mut Vec<u8>) -> Render {
        self.render_within(row, out, DEFAULT_RENDER_BYTES)
    }

    /// Renders `row`, appending the event's JSON to `out` when one could be built
    /// (`out[out.len() - size..]` afterwards). Problems are issues, never errors; a render that
    /// would compute more than `budget` bytes (see [`super::budget`]) stops with `RENDER_LIMIT`.
    pub(crate) fn render_within(&self, row: &Row, out: &mut Vec<u8>, budget: usize) -> Render {
        let env = Envelope::new(row, self.identity(), self.content());
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
            &Budget::new(budget),
        )
    }

    /// Whether every field is a path or a literal (or a raw object of them): its rows are
    /// rendered by copying, no directive computes anything.
    pub(crate) fn is_flat(&self) -> bool {
        self.flat.is_some()
    }

    /// Renders with directives seeing `scope`; `derived` gives the messageId when none is mapped.
    fn render_scope(
        &self,
        scope: Scope<'_>,
        derived: impl Fn() -> String,
        out: &mut Vec<u8>,
        budget: &Budget,
    ) -> Render {
        // The plan copies borrowed values only, and gives up past the event size limit.
        if let (Some(flat), Scope::Env(env)) = (&self.flat, scope)
            && let Some(built) = flat.plan.write(|i| flat.value(i, env), &derived, out)
        {
            return Render {
                skipped: false,
                built,
            };
        }
        let rejected = |issues| Render {
            skipped: false,
            built: Built {
                message_id: None,
                size: None,
                issues,
            },
        };
        let limit = |field: Field, e: OverBudget| {
            Issue::new(
                IssueCode::RenderLimit,
                pointer("", field.key()),
                e.to_string(),
            )
        };
        // The root directive first: the fields see its result (mapping-kit's `transform` runs
        // it as the mapping; see `Compiler::root_directive`). Borrowed, not copied: the fields'
        // values borrow from it until the event is written.
        let applied;
        let scope = match &self.root {
            None => scope,
            Some(apply) => {
                let at = || pointer("", ROOT_DIRECTIVE_KEY);
                applied = match eval(apply, scope, budget) {
                    Ok(v) => v,
                    Err(EvalError::Invalid(e)) => {
                        return rejected(vec![Issue::new(IssueCode::InvalidMapping, at(), e)]);
                    }
                    Err(EvalError::Limit(e)) => {
                        return rejected(vec![Issue::new(
                            IssueCode::RenderLimit,
                            at(),
                            e.to_string(),
                        )]);
                    }
                };
                match &applied {
                    Some(v) => Scope::Node(v.as_ref()),
                    // `transform()` of nothing: every path of the fields is undefined.
                    None => Scope::Nothing,
                }
            }
        };
        let mut values: [Option<Val<'_>>; Field::COUNT] = [const { None }; Field::COUNT];
        let mut issues = Vec::new();
        for (field, expr) in &*self.fields {
            match eval(expr, scope, budget) {
                Ok(v) => values[field.index()] = v,
                Err(EvalError::Invalid(e)) => issues.push(Issue::new(
                    IssueCode::InvalidMapping,
                    pointer("", field.key()),
                    e,
                )),
                Err(EvalError::Limit(e)) => return rejected(vec![limit(*field, e)]),
            }
        }
        if !issues.is_empty() {
            return rejected(issues);
        }
        let mut fields: Fields<'_> = [None; Field::COUNT];
        for (field, _) in &*self.fields {
            let i = field.index();
            fields[i] = values[i].as_ref().map(Val::as_ref);
            // The event is written from these values: counted before it is.
            if let Some(v) = fields[i]
                && let Err(e) = budget.charge_copy("the event", v)
            {
                return rejected(vec![limit(*field, e)]);
            }
        }
        let built = event::build(self.action, &fields, derived, out);
        Render {
            skipped: false,
            built,
        }
    }

    /// TestMapping for one row within the default budget.
    pub fn test(&self, row: &Row) -> TestResult {
        self.test_within(row, DEFAULT_RENDER_BYTES)
    }

    /// TestMapping for one row: what would be sent and whether the Tracking API would take it.
    pub(crate) fn test_within(&self, row: &Row, budget: usize) -> TestResult {
        let mut out = Vec::with_capacity(512);
        let r = self.render_within(row, &mut out, budget);
        let event_json = r.built.size.and_then(|_| String::from_utf8(out).ok());
        // A pass of its own, here only: the row path never pays for warnings.
        let warnings = if r.skipped {
            Vec::new()
        } else {
            self.explain(row, budget)
        };
        TestResult {
            accepted: r.accepted(),
            skipped: r.skipped,
            event: event_json
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            event_json,
            message_id: r.built.message_id,
            size_bytes: r.built.size,
            issues: r.built.issues,
            warnings,
        }
    }
}

/// Serialises JSON text as the JSON it is (not as a string, nor through `Value`, which would
/// round long integers).
fn raw_json<S: serde::Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    let raw = text
        .clone()
        .map(serde_json::value::RawValue::from_string)
        .transpose()
        .map_err(serde::ser::Error::custom)?;
    raw.as_deref().serialize(s)
}

/// What TestMapping and `test-mapping` report for one row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    pub accepted: bool,
    pub skipped: bool,
    /// The event, parsed (for reading its fields: a long integer is a double here).
    #[serde(skip)]
    pub event: Option<Value>,
    /// The event exactly as it would be sent (shown as `event`).
    #[serde(rename = "event", serialize_with = "raw_json")]
    pub event_json: Option<String>,
    pub message_id: Option<String>,
    pub size_bytes: Option<usize>,
    pub issues: Vec<Issue>,
    /// What is probably not as meant, though accepted (TestMapping only; see `explain`).
    pub warnings: Vec<Warning>,
}

impl TestResult {
    /// A row rejected before any event could be built.
    pub(crate) fn rejected(issues: Vec<Issue>) -> TestResult {
        TestResult {
            accepted: false,
            skipped: false,
            event: None,
            event_json: None,
            message_id: None,
            size_bytes: None,
            issues,
            warnings: Vec::new(),
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
            &Budget::new(DEFAULT_RENDER_BYTES),
        );
        assert!(r.accepted(), "{:?}", r.built.issues);
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, case["expected"]["actionOutput"]["batch"][0]);
    }
}

/// A flat mapping (every field a column, an envelope value or a literal, or a raw object of
/// those) compiled into a [`Plan`], with the values the plan reads.
#[derive(Debug)]
pub(super) struct Flat {
    plan: Plan,
    values: Box<[Leaf]>,
}

/// A value a plan reads: never computed, always borrowed from the row, the envelope or the
/// mapping.
#[derive(Debug)]
enum Leaf {
    /// `$.properties.<column>` ([`Path::column_in`]).
    Column(Path),
    /// `$.messageId`.
    MessageId,
    /// Any other path that borrows what it finds ([`Path::borrows`]).
    Path(Path),
    Const(Value),
}

impl Leaf {
    fn of(e: &Expr) -> Option<Leaf> {
        match e {
            Expr::Path(p) if p.column().is_some() => Some(Leaf::Column(p.clone())),
            Expr::Path(p) if p.is_message_id() => Some(Leaf::MessageId),
            Expr::Path(p) => p.borrows().then(|| Leaf::Path(p.clone())),
            Expr::Const(v) => Some(Leaf::Const(v.clone())),
            _ => None,
        }
    }
}

impl Flat {
    /// `None` unless the mapping is flat and its events can be planned (see [`Plan::compile`]).
    pub(super) fn compile(action: Action, fields: &[(Field, Expr)]) -> Option<Flat> {
        let mut values = Vec::new();
        let mut leaf = |leaf: Leaf| {
            values.push(leaf);
            u16::try_from(values.len() - 1).ok()
        };
        let mut shapes = Vec::with_capacity(fields.len());
        for (field, expr) in fields {
            let shape = match expr {
                Expr::Object(entries) => {
                    let mut object = Vec::with_capacity(entries.len());
                    for (k, e) in entries {
                        object.push((k.clone(), leaf(Leaf::of(e)?)?));
                    }
                    Shape::Object(object)
                }
                // A raw object with no directive in it is a literal: planned entry by entry.
                Expr::Const(Value::Object(entries)) => Shape::Object(
                    entries
                        .iter()
                        .map(|(k, v)| Some((k.clone(), leaf(Leaf::Const(v.clone()))?)))
                        .collect::<Option<_>>()?,
                ),
                e => Shape::Value(leaf(Leaf::of(e)?)?),
            };
            shapes.push((*field, shape));
        }
        Some(Flat {
            plan: Plan::compile(action, &shapes)?,
            values: values.into(),
        })
    }

    /// Value `i` for the row of `env`: what `eval` gives for that path or literal.
    #[inline]
    fn value<'a>(&'a self, i: u16, env: &'a Envelope<'a>) -> Option<VRef<'a>> {
        match &self.values[usize::from(i)] {
            Leaf::Column(p) => p.column_in(&env.row().columns),
            Leaf::MessageId => Some(VRef::Str(env.message_id())),
            Leaf::Path(p) => match p.resolve(&Scope::Env(env))? {
                Val::Ref(v) => Some(VRef::Json(v)),
                Val::Str(s) => Some(VRef::Str(s)),
                Val::Row(c) => Some(VRef::Row(c)),
                // Not for a path that borrows.
                _ => None,
            },
            Leaf::Const(v) => Some(VRef::Json(v)),
        }
    }
}

#[cfg(test)]
impl Mapping {
    /// The event as the plan alone writes it: `None` when the mapping has no plan or its plan
    /// leaves the row to the general builder.
    fn planned(&self, row: &Row, out: &mut Vec<u8>) -> Option<Built> {
        let flat = self.flat.as_ref()?;
        let env = Envelope::new(row, self.identity(), self.content());
        let derived = || env.derived_message_id().to_owned();
        flat.plan.write(|i| flat.value(i, &env), derived, out)
    }
}

/// The plan against the general builder: random flat mappings of every action over random rows
/// must render the same bytes, messageId, size and issues either way.
#[cfg(test)]
mod plan_against_general {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::Render;
    use crate::json::Columns;
    use crate::mapping::{Identity, Mapping, MappingDoc, Op, Row};
    use crate::spec::fields::{Action, Field, FieldType, Scalar};

    const COLUMNS: &[&str] = &["a", "b", "user", "ts", "n", "obj", "e\"q"];
    const LONG_ID: &str = concat!(
        "m-0123456789012345678901234567890123456789012345678901234567890123456789",
        "0123456789012345678901234567890123456789"
    );

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
                "2024-05-01 12:00:00",
                "2024-05-01",
                "2024-05-01T12:00:00.5 UTC",
                "2024-05-01 12:00:00+0200",
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
            1 => prop::sample::select(vec![
                "$.messageId",
                "$.event",
                "$.properties",
                "$.nope",
                "$.properties.obj.b",
                "$.properties.obj.length",
                "$.properties.a.0",
                "$.",
            ])
                .prop_map(|p| json!({ "@path": p })),
            1 => scalar(),
        ]
        .boxed()
    }

    /// A leaf for a value of type `ty`: mostly a column holding that type in a typical row.
    fn typed_leaf(ty: Option<Scalar>, timestamp: bool) -> BoxedStrategy<Value> {
        let path = |c: &str| json!({ "@path": format!("$.properties.{c}") });
        let typical = match ty {
            None => return leaf(),
            Some(Scalar::Str) if timestamp => Just(path("ts")).boxed(),
            Some(Scalar::Str) => prop::sample::select(vec!["a", "user", "e\"q", "b"])
                .prop_map(path)
                .boxed(),
            Some(Scalar::Num) => prop::sample::select(vec!["n", "b"]).prop_map(path).boxed(),
            Some(Scalar::Bool) => any::<bool>().prop_map(Value::from).boxed(),
        };
        prop_oneof![3 => typical, 1 => leaf()].boxed()
    }

    /// A raw object of some of `keys`, each with a leaf of its type.
    fn object(keys: Vec<(&'static str, Option<Scalar>)>, max: usize) -> BoxedStrategy<Value> {
        let max = max.min(keys.len());
        prop::sample::subsequence(keys, 0..=max)
            .prop_flat_map(|keys| {
                keys.into_iter()
                    .map(|(k, ty)| (Just(k.to_owned()), typed_leaf(ty, false)))
                    .collect::<Vec<_>>()
            })
            .prop_map(|entries| Value::Object(entries.into_iter().collect()))
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
                        // An object field is mostly a raw object of leaves, sometimes one leaf
                        // (the whole row, a column holding an object, or a wrong type).
                        let value = match f.ty() {
                            FieldType::Str => typed_leaf(Some(Scalar::Str), f == Field::Timestamp),
                            FieldType::Object(subs) => {
                                let mut keys: Vec<_> =
                                    subs.iter().map(|s| (s.key, Some(s.ty))).collect();
                                keys.push(("extra", None));
                                prop_oneof![12 => object(keys, 4), 1 => leaf()].boxed()
                            }
                            FieldType::FreeObject => {
                                let keys = ["k", "address", "name", "url", "q\"k"]
                                    .map(|k| (k, None))
                                    .to_vec();
                                prop_oneof![4 => object(keys, 3), 1 => leaf()].boxed()
                            }
                        };
                        // Mostly identified; consent (never planned) seldom.
                        let weight = match f {
                            Field::UserId => 0.8,
                            Field::Consent => 0.1,
                            _ => 0.35,
                        };
                        (Just(f.key()), prop::option::weighted(weight, value))
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

    /// A row of any values, or (as often) one whose columns hold what their names suggest,
    /// some of them empty: rows the plan mostly writes itself.
    fn row() -> BoxedStrategy<Row> {
        let any = prop::collection::btree_map(prop::sample::select(COLUMNS), value(), 0..7)
            .prop_map(|m| m.into_iter().collect::<Vec<_>>());
        let typical = (
            "[a-z ]{1,8}",
            -1000i64..1000,
            0u32..100,
            prop::sample::select(vec!["48.85", "1920", "-3"]),
            prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 0, 1, 2]), 7),
        )
            .prop_map(|(a, b, user, n, empty)| {
                let values = [
                    json!(a),
                    json!(b),
                    json!(format!("u-{user}")),
                    json!("2024-05-01T12:00:00.000Z"),
                    json!(n),
                    json!({"b": a}),
                    json!("x\"y"),
                ];
                COLUMNS
                    .iter()
                    .zip(values)
                    .zip(empty)
                    .map(|((c, v), empty)| {
                        let v = match empty {
                            1 => Value::Null,
                            2 => json!(""),
                            _ => v,
                        };
                        (*c, v)
                    })
                    .collect()
            });
        (
            prop_oneof![any, typical],
            // The last is longer than the Tracking API keeps.
            prop::option::of(prop::sample::select(vec!["m-1", "", "m-\"2", LONG_ID])),
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

    /// What rendering one row both ways showed, once they agreed.
    enum Outcome {
        /// The plan wrote the event itself.
        Planned,
        /// The plan left to the general builder an event it accepted.
        Missed,
        /// Anything else: no plan, or the event was rejected.
        Other,
    }

    /// Renders `row` through `doc` with its plan and without: the same bytes, messageId, size
    /// and issues. `None` when `doc` does not compile (required fields may be missing).
    fn both_ways(doc: Value, row: &Row) -> Result<Option<Outcome>, TestCaseError> {
        let doc: MappingDoc = serde_json::from_value(doc).unwrap();
        let Ok(flat) = Mapping::compile(&doc, Identity::offline("")) else {
            return Ok(None);
        };
        let mut general = Mapping::compile(&doc, Identity::offline("")).unwrap();
        general.flat = None;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = flat.render(row, &mut a);
        let rb = general.render(row, &mut b);
        prop_assert_eq!(rendered(&ra, &a), rendered(&rb, &b));
        Ok(Some(if flat.planned(row, &mut Vec::new()).is_some() {
            Outcome::Planned
        } else if flat.flat.is_some() && rb.accepted() {
            Outcome::Missed
        } else {
            Outcome::Other
        }))
    }

    /// Cases the random search once shrank to: device strings from a column holding `[]`; a
    /// user id from a column holding `[null]` (coerced to `""`: no identity).
    #[test]
    fn recorded_cases_render_as_the_general_path_does() {
        let device = json!({"action": "track", "fields": {
            "event_name": {"@path": "$.properties.a"},
            "device": {
                "advertising_id": {"@path": "$.properties.a"},
                "id": {"@path": "$.properties.a"},
            },
        }});
        let user = json!({"action": "track", "fields": {
            "user_id": {"@path": "$.properties.a"},
            "event_name": {"@path": "$.properties.a"},
        }});
        for (doc, a) in [(device, json!([])), (user, json!([null]))] {
            let columns: Columns = [("a", a)].into_iter().collect();
            let row = Row::new(Some("row-1".into()), Op::Added, columns, None);
            assert!(matches!(both_ways(doc, &row), Ok(Some(Outcome::Other))));
        }
    }

    /// Rendered with the plan and without it, the same; and the plan wrote a good share of the
    /// events itself (else this would compare the general builder with itself), nearly all the
    /// accepted ones.
    #[test]
    fn flat_mappings_render_as_the_general_path_does() {
        use proptest::test_runner::{Config, TestRunner};
        use std::cell::Cell;
        const CASES: u32 = 2000;
        let (planned, missed, compiled) = (Cell::new(0), Cell::new(0), Cell::new(0));
        // Failures are kept in proptest-regressions/mapping/render.txt, as `proptest!` would.
        let config = Config {
            source_file: Some(file!()),
            ..Config::with_cases(CASES)
        };
        let mut runner = TestRunner::new(config);
        runner
            .run(&(doc(), row()), |(doc, row)| {
                let Some(outcome) = both_ways(doc, &row)? else {
                    return Ok(());
                };
                compiled.set(compiled.get() + 1);
                match outcome {
                    Outcome::Planned => planned.set(planned.get() + 1),
                    Outcome::Missed => missed.set(missed.get() + 1),
                    Outcome::Other => {}
                }
                Ok(())
            })
            .unwrap();
        // About one in nine is planned: the rest are rejected or not flat. Of the accepted
        // events of flat mappings, the plan leaves only a few (rarer coercions) to the builder.
        let (planned, missed, compiled) = (planned.get(), missed.get(), compiled.get());
        assert!(
            planned * 16 >= compiled && missed * 5 <= planned,
            "the plan wrote {planned} of {compiled} events and left {missed} accepted ones"
        );
    }
}

#[cfg(test)]
mod plan_used {
    use serde_json::Value;

    use crate::json::Columns;
    use crate::mapping::{Identity, Mapping, MappingDoc, Op, Row};

    /// The bench workload's mappings are planned, and its rows written by their plans.
    #[test]
    fn the_workload_is_written_by_plans() {
        let w: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/workload.json")).unwrap();
        let columns: Columns =
            serde_json::from_value(w["row_template"]["columns"].clone()).unwrap();
        let row = Row::new(Some("row-1".into()), Op::Added, columns, Some("m-1".into()));
        for (action, doc) in w["mappings"].as_object().unwrap() {
            let doc: MappingDoc = serde_json::from_value(doc.clone()).unwrap();
            let m = Mapping::compile(&doc, Identity::offline("")).unwrap();
            assert!(m.flat.is_some(), "{action}");
            let mut out = Vec::new();
            let built = m.planned(&row, &mut out);
            // The row's own messageId, mapped: nothing derived.
            assert_eq!(
                built.and_then(|b| b.message_id).as_deref(),
                Some("m-1"),
                "{action}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    /// A warehouse timestamp (D8) stays on the plan: normalised as it is written.
    #[test]
    fn warehouse_timestamps_are_written_by_the_plan() {
        let doc: MappingDoc = serde_json::from_value(serde_json::json!({
            "action": "track",
            "fields": {"event_name": "E", "user_id": "u", "timestamp": {"@path": "$.properties.ts"}},
        }))
        .unwrap();
        let m = Mapping::compile(&doc, Identity::offline("")).unwrap();
        for (ts, want) in [
            (
                serde_json::json!("2024-05-01 12:00:00"),
                "2024-05-01T12:00:00Z",
            ),
            (serde_json::json!(1714564800), "2024-05-01T12:00:00Z"),
        ] {
            let columns: Columns = serde_json::from_value(serde_json::json!({ "ts": ts })).unwrap();
            let row = Row::new(None, Op::Added, columns, None);
            let mut out = Vec::new();
            let built = m.planned(&row, &mut out).expect("planned");
            assert!(built.issues.is_empty(), "{built:?}");
            let event: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(event["timestamp"], want);
        }
    }
}
