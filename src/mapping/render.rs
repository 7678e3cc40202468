//! Rendering one row through one mapping: trigger, directives, then the Spec event. The one
//! function TestMapping, the offline CLI and SubmitRows all use.

use serde::Serialize;
use serde_json::Value;

use super::Mapping;
use super::envelope::{Envelope, Scope};
use super::eval::eval;
use super::expr::Violation;
use super::row::Row;
use crate::issue::{Issue, IssueCode, pointer};
use crate::segment::event::{self, Built, Fields};

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
        let mut fields: Fields<'_> = std::array::from_fn(|_| None);
        let mut issues = Vec::new();
        for (field, expr) in &*self.fields {
            match eval(expr, scope) {
                Ok(v) => fields[field.index()] = v,
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
    use crate::json::VRef;
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
