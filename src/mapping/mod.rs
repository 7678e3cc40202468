//! Mappings: the document (docs/DESIGN.md's JSON), its validation and compilation, and rendering a
//! row into a Segment event. Pure: no IO, no async, no proto types.

pub(crate) mod budget;
mod envelope;
mod eval;
mod explain;
mod expr;
pub(crate) mod fql;
pub(crate) mod liquid;
pub mod message_id;
mod path;
mod render;
pub(crate) mod row;
mod suggest;
mod template;
pub(crate) mod trigger;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use explain::{Warning, WarningCode};
pub(crate) use expr::Violation;
pub use message_id::{Content, Identity};
pub use render::{Render, TestResult};
pub use row::{Op, Row};
pub(crate) use trigger::Trigger;

use crate::issue::pointer;
use crate::spec::{Action, Field};
use crate::store::{MappingContent, Name, check_model};
use expr::{Compiler, Expr, ROOT_DIRECTIVE_KEY};

/// Hidden keys Segment's runtime reads and then strips; a mapping copied out of Segment may
/// carry them, so they are accepted and ignored.
const IGNORED_KEYS: [&str; 2] = [
    "__segment_internal_sync_mode",
    "__segment_internal_matching_key",
];

/// "Batch Data to Segment": a boolean field every action of Segment's destination once had
/// (hidden, always `false` pending its removal). Segment's code accepts it and ignores it, so
/// it is accepted (a raw boolean, or a directive, which a field value may be) and changes
/// nothing: events always go out through `/v1/batch`. It never reaches the event.
const ENABLE_BATCHING: &str = "enable_batching";

/// A mapping document as written (docs/DESIGN.md): only its JSON shape is checked here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingDoc {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub trigger: Option<TriggerDoc>,
    #[serde(default)]
    pub fields: Option<Map<String, Value>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A trigger as written: a name, or `{"fql": "..."}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a trigger name or {\"fql\": \"...\"}")]
pub enum TriggerDoc {
    Named(String),
    Fql { fql: String },
}

/// The largest mapping document the service takes (CreateMapping, UpdateMapping, TestMapping).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

impl MappingDoc {
    /// A document as JSON: at most [`MAX_DOCUMENT_BYTES`], then parsed.
    pub fn parse(bytes: &[u8]) -> Result<MappingDoc, Violation> {
        let violation = |message| Violation {
            pointer: String::new(),
            message,
        };
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(violation(format!(
                "the mapping document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| violation(format!("not a mapping document: {e}")))
    }
}

/// Registration's rules: the document compiles, and names itself and its model. Every
/// violation is listed, each with its pointer into the document.
pub(crate) fn register(json: String) -> Result<MappingContent, Vec<Violation>> {
    let doc = MappingDoc::parse(json.as_bytes()).map_err(|v| vec![v])?;
    let mut violations = Mapping::compile_authored(&doc, Identity::offline(""))
        .err()
        .unwrap_or_default();
    let mut check = |pointer: &str, r: Result<(), &str>| {
        r.map_err(|e| {
            violations.push(Violation {
                pointer: pointer.into(),
                message: e.into(),
            })
        })
        .is_ok()
    };
    let required = "is required to register a mapping";
    let name = doc.name.clone().ok_or(required).and_then(Name::parse);
    let name = match name {
        Ok(name) => Some(name),
        Err(e) => {
            check("/name", Err(e));
            None
        }
    };
    let model = match doc.model.as_deref() {
        None | Some("") => check("/model", Err(required)),
        Some(m) => check("/model", check_model(m)),
    };
    match (name, model) {
        (Some(name), true) if violations.is_empty() => Ok(MappingContent {
            name,
            model: doc.model.unwrap_or_default(),
            enabled: doc.enabled.unwrap_or(true),
            document: json,
        }),
        _ => Err(violations),
    }
}

/// A validated, compiled mapping: evaluated many times, parsed once.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    pub model: String,
    pub action: Action,
    pub trigger: Trigger,
    pub enabled: bool,
    identity: Identity,
    /// The `apply` of the root directive (`__segment_internal_directive`): when set, the fields
    /// are resolved against its result rather than the envelope.
    root: Option<Expr>,
    /// What it does, for the derived messageId (computed here, once).
    content: Content,
    fields: Box<[(Field, Expr)]>,
    /// The paths every render reads, for TestMapping's warnings (see [`explain`]).
    paths: Box<[expr::Seen]>,
    /// The compiled event of a flat mapping (its rows rendered without a tree of values).
    flat: Option<render::Flat>,
}

impl Mapping {
    /// Parses and compiles a document: the one way document bytes become a mapping (stored ones,
    /// TestMapping's inline ones, the CLI's files). `identity` `None`: offline, named after the
    /// document, and being written, so with the authoring checks ([`Mapping::compile_authored`]);
    /// a stored mapping compiles without them.
    pub(crate) fn from_json(
        bytes: &[u8],
        identity: Option<Identity>,
    ) -> Result<Mapping, Vec<Violation>> {
        let doc = MappingDoc::parse(bytes).map_err(|v| vec![v])?;
        match identity {
            Some(identity) => Mapping::compile(&doc, identity),
            None => {
                let identity = Identity::offline(doc.name.as_deref().unwrap_or_default());
                Mapping::compile_authored(&doc, identity)
            }
        }
    }

    /// Validates and compiles `doc`, listing every violation with its pointer into the document.
    /// Segment's rules (and ours): what a stored mapping is compiled by.
    pub fn compile(doc: &MappingDoc, identity: Identity) -> Result<Mapping, Vec<Violation>> {
        Mapping::compile_checked(doc, identity, false)
    }

    /// [`Mapping::compile`] plus the authoring checks, for a mapping being written (registration,
    /// inline TestMapping, the offline CLI): the slips that would fail or be lost on every row (a
    /// raw value whose type never fits its field, a malformed path, a directive without its `@`)
    /// are violations too. Not applied to stored mappings, so a mapping stored before a check
    /// existed still loads.
    pub fn compile_authored(
        doc: &MappingDoc,
        identity: Identity,
    ) -> Result<Mapping, Vec<Violation>> {
        Mapping::compile_checked(doc, identity, true)
    }

    fn compile_checked(
        doc: &MappingDoc,
        identity: Identity,
        authoring: bool,
    ) -> Result<Mapping, Vec<Violation>> {
        let mut violations = Vec::new();
        let mut violation = |pointer: &str, message: String| {
            violations.push(Violation {
                pointer: pointer.to_owned(),
                message,
            })
        };
        let action = match doc.action.as_deref() {
            None => {
                violation(
                    "/action",
                    "is required (track, page, screen, identify or group)".into(),
                );
                None
            }
            Some(a) => {
                let action = Action::parse(a);
                if action.is_none() {
                    violation(
                        "/action",
                        format!("{a:?} is not an action (track, page, screen, identify or group)"),
                    );
                }
                action
            }
        };
        let trigger = match &doc.trigger {
            None => Some(Trigger::AddedOrUpdated),
            Some(TriggerDoc::Named(name)) => {
                let t = Trigger::named(name);
                if t.is_none() {
                    violation(
                        "/trigger",
                        format!(
                            "{name:?} is not a trigger (added, updated, added_or_updated, deleted or {{\"fql\": ...}})"
                        ),
                    );
                }
                t
            }
            Some(TriggerDoc::Fql { fql }) => match Trigger::fql(fql) {
                Ok(t) => Some(t),
                Err(e) => {
                    violation("/trigger/fql", format!("is not a valid subscription: {e}"));
                    None
                }
            },
        };
        let mut fields = Vec::new();
        let mut paths = Vec::new();
        let mut root = None;
        match (&doc.fields, action) {
            (None, _) => violation(
                "/fields",
                "is required (an object of field mappings)".into(),
            ),
            (Some(map), action) => {
                for (key, value) in map {
                    let ptr = pointer("/fields", key);
                    if IGNORED_KEYS.contains(&key.as_str()) {
                        continue;
                    }
                    if key == ROOT_DIRECTIVE_KEY {
                        let mut c = Compiler::new(&ptr);
                        c.authoring = authoring;
                        root = Some(c.root_directive(value, false));
                        for v in c.violations {
                            violation(&v.pointer, v.message);
                        }
                        continue;
                    }
                    if key == ENABLE_BATCHING {
                        let mut c = Compiler::new(&ptr);
                        c.ignored_boolean(value, "Batch Data to Segment changes nothing here: events always go out through /v1/batch");
                        for v in c.violations {
                            violation(&v.pointer, v.message);
                        }
                        continue;
                    }
                    let Some(field) = Field::from_key(key) else {
                        let keys = Field::ALL.iter().map(|f| f.key());
                        let message = match suggest::nearest(key, keys) {
                            Some(near) => format!("is not a field key; did you mean {near:?}?"),
                            None => "is not a field key".to_owned(),
                        };
                        violation(&ptr, message);
                        continue;
                    };
                    if let Some(action) = action
                        && !field.allowed(action)
                    {
                        violation(&ptr, format!("is not a field of {}", action.as_str()));
                        continue;
                    }
                    if authoring && let Some((key, message)) = expr::never_fits(field, value) {
                        let at = if key.is_empty() {
                            ptr
                        } else {
                            pointer(&ptr, &key)
                        };
                        violation(&at, message);
                        continue;
                    }
                    let mut c = Compiler::new(&ptr);
                    c.authoring = authoring;
                    let expr = c.value(value);
                    for v in c.violations {
                        violation(&v.pointer, v.message);
                    }
                    paths.extend(c.paths);
                    fields.push((field, expr));
                }
                if let Some(action) = action {
                    for f in Field::ALL {
                        if f.required(action) && !map.contains_key(f.key()) {
                            violation(
                                &pointer("/fields", f.key()),
                                format!("is required for {} but not mapped", action.as_str()),
                            );
                        }
                    }
                }
            }
        }
        match (action, trigger) {
            (Some(action), Some(trigger)) if violations.is_empty() => Ok(Mapping {
                // The plan reads the row itself: not for fields resolved against a root
                // directive's result.
                flat: match root {
                    None => render::Flat::compile(action, &fields),
                    Some(_) => None,
                },
                root,
                name: doc.name.clone().unwrap_or_default(),
                model: doc.model.clone().unwrap_or_default(),
                action,
                trigger,
                enabled: doc.enabled.unwrap_or(true),
                identity,
                content: Content::of(doc),
                fields: fields.into(),
                paths: paths.into(),
            }),
            _ => Err(violations),
        }
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// What the mapping does, as the derived messageId hashes it.
    pub fn content(&self) -> &Content {
        &self.content
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::issue::IssueCode;

    fn mapping(fields: serde_json::Value) -> String {
        json!({"name": "n", "model": "m", "action": "track", "fields": fields}).to_string()
    }

    /// Registration takes "Batch Data to Segment" as a boolean and refuses anything else at its
    /// pointer.
    #[test]
    fn registration_takes_enable_batching_as_a_boolean() {
        for b in [true, false] {
            let doc = mapping(json!({"event_name": "E", "enable_batching": b}));
            assert!(register(doc).is_ok(), "{b}");
        }
        let refused = register(mapping(
            json!({"event_name": "E", "enable_batching": "yes"}),
        ));
        let v = refused.err().unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, "/fields/enable_batching");
        assert!(
            v[0].message.starts_with(
                "should be a boolean (true or false) or a directive but it is a string"
            ),
            "{}",
            v[0].message
        );
    }

    /// The violations of registering `fields` in a track mapping, as (pointer, message).
    fn slips(fields: serde_json::Value) -> Vec<(String, String)> {
        register(mapping(fields))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.pointer, v.message))
            .collect()
    }

    /// Each common slip is one violation at its pointer, naming what was likely meant.
    #[test]
    fn registration_suggests_what_a_slip_meant() {
        let cases = [
            (
                json!({"user_id": {"@paht": "$.properties.u"}}),
                "/fields/user_id",
                "has an invalid directive: @paht; did you mean @path?",
            ),
            (
                json!({"user_id": {"@Template": "{{properties.u}}"}}),
                "/fields/user_id",
                "has an invalid directive: @Template; did you mean @template?",
            ),
            (
                json!({"user_id": {"path": "$.properties.u"}}),
                "/fields/user_id/path",
                "is a directive without its @, which would be sent as the object \
                 {\"path\":\"$.properties.u\"}; did you mean {\"@path\": \"$.properties.u\"}?",
            ),
            // Nested in raw data too, where it would be sent as that object.
            (
                json!({"user_id": "u", "properties": {"total": {"template": "{{properties.t}}"}}}),
                "/fields/properties/total/template",
                "is a directive without its @, which would be sent as the object \
                 {\"template\":\"{{properties.t}}\"}; did you mean {\"@template\": \"{{properties.t}}\"}?",
            ),
            (
                json!({"user_id": {"a": 1}}),
                "/fields/user_id",
                "is an object, which User ID (a string) never takes: every row would be rejected \
                 TYPE_MISMATCH; map a string, a number or a directive giving one",
            ),
            (
                json!({"user_id": ["a", "b"]}),
                "/fields/user_id",
                "is an array of 2 items, which User ID (a string) never takes: every row would be \
                 rejected TYPE_MISMATCH",
            ),
            (
                json!({"user_id": "u", "traits": 5}),
                "/fields/traits",
                "is a number, which Traits (an object) never takes: every row would be rejected \
                 TYPE_MISMATCH; map an object of keys, or a directive giving one",
            ),
            (
                json!({"user_id": "u", "timestamp": "yesterday"}),
                "/fields/timestamp",
                "\"yesterday\" is not a timestamp: every row would be rejected INVALID_TIMESTAMP; \
                 write an RFC 3339 date-time (2024-05-01T12:00:00Z), a warehouse form of one \
                 (2024-05-01 12:00:00) or epoch seconds",
            ),
            (
                json!({"user_id": {"@path": "$properties.u"}}),
                "/fields/user_id/@path",
                "is not a usable path (a path starts with \"$.\"): \"$properties.u\"; did you mean \
                 \"$.properties.u\"?",
            ),
            (
                json!({"user_id": {"@path": " $.properties.u"}}),
                "/fields/user_id/@path",
                "is not a usable path (spaces around it): \" $.properties.u\"; did you mean \
                 \"$.properties.u\"?",
            ),
            (
                json!({"user_id": {"@path": "{{ properties.u }}"}}),
                "/fields/user_id/@path",
                "is not a usable path (a template's braces): \"{{ properties.u }}\"; did you mean \
                 \"$.properties.u\"?",
            ),
            (
                json!({"user_id": {"@path": "$.properties['first name"}}),
                "/fields/user_id/@path",
                "is not a usable path (an unclosed [): \"$.properties['first name\"; did you mean \
                 \"$.properties['first name']\"?",
            ),
            (
                json!({"user_id": "u", "properties": {"xs": {"@arrayPath": ["$.properties.xs]", {}]}}}),
                "/fields/properties/xs/@arrayPath/0",
                "is not a usable path (a ] without its [): \"$.properties.xs]\"",
            ),
            (
                json!({"userid": "u"}),
                "/fields/userid",
                "is not a field key; did you mean \"user_id\"?",
            ),
        ];
        for (fields, pointer, message) in cases {
            let mut fields = fields;
            fields["event_name"] = json!("E");
            assert_eq!(
                slips(fields.clone()),
                [(pointer.to_owned(), message.to_owned())],
                "{fields}"
            );
        }
    }

    /// The authoring checks are for mappings being written: a stored mapping with such a slip
    /// (stored before the check existed) still compiles, as Segment's rules take it.
    #[test]
    fn stored_mappings_compile_without_the_authoring_checks() {
        let fields = json!({
            "event_name": "E",
            "user_id": {"@path": "$properties.u"},
            "properties": {"x": {"path": "$.properties.x"}},
            "traits": "t",
        });
        assert_eq!(slips(fields.clone()).len(), 3);
        let doc = MappingDoc::parse(mapping(fields.clone()).as_bytes()).unwrap();
        assert!(Mapping::compile(&doc, Identity::offline("")).is_ok());
        assert!(Mapping::compile_authored(&doc, Identity::offline("")).is_err());
        let identity = Identity {
            destination_id: "d".into(),
            mapping_id: "m".into(),
        };
        assert!(Mapping::from_json(mapping(fields.clone()).as_bytes(), Some(identity)).is_ok());
        assert!(Mapping::from_json(mapping(fields).as_bytes(), None).is_err());
    }

    /// What Segment's mappings do write stays accepted: objects of directive names as data in
    /// `@literal`, keys named like directives with other values, timestamps in any form D8
    /// takes, empty values, one-element arrays.
    #[test]
    fn registration_keeps_what_works() {
        for fields in [
            json!({"user_id": "u", "properties": {"@literal": {"path": "$.properties.x"}}}),
            json!({"user_id": "u", "properties": {"path": "/home", "template": "plain"}}),
            json!({"user_id": "u", "properties": {"case": {"operator": "lower"}}}),
            json!({"user_id": ["u"], "anonymous_id": 7, "message_id": true}),
            json!({"user_id": "u", "properties": null, "traits": ""}),
            json!({"user_id": "u", "timestamp": "2024-05-01 12:00:00"}),
            json!({"user_id": "u", "timestamp": 1714564800}),
            json!({"user_id": "u", "timestamp": "2024-05-01T12:00:00Z"}),
            json!({"user_id": {"@path": "$.properties['first name']"}}),
            json!({"user_id": {"@path": "$.properties.a[0].b"}}),
            json!({"user_id": {"@path": "properties.u"}}),
            json!({"user_id": {"@path": "$."}}),
            json!({"user_id": [{"@path": "$.properties.u"}]}),
        ] {
            let mut fields = fields;
            fields["event_name"] = json!("E");
            assert_eq!(slips(fields.clone()), [], "{fields}");
        }
    }

    /// A mapping with a root directive is never planned, however flat its fields: they are
    /// resolved against the directive's result, which the plan (reading the row) cannot see.
    #[test]
    fn a_root_directive_is_not_flat() {
        let fields = json!({
            "event_name": "E",
            "user_id": {"@path": "$.properties.u"},
            "message_id": {"@path": "$.messageId"},
        });
        let flat = Mapping::from_json(mapping(fields.clone()).as_bytes(), None).unwrap();
        assert!(flat.is_flat());
        let mut with_root = fields;
        with_root[ROOT_DIRECTIVE_KEY] = json!({"@transform": {"apply": {"@path": "$."}}});
        let m = Mapping::from_json(mapping(with_root).as_bytes(), None).unwrap();
        assert!(!m.is_flat());
        // And it renders what the envelope holds, through the general path.
        let columns = serde_json::from_value(json!({"u": "u-1"})).unwrap();
        let row = Row::new(None, Op::Added, columns, Some("m-1".into()));
        let got = m.test(&row);
        assert!(got.accepted, "{got:?}");
        assert_eq!(got.event.unwrap()["userId"], "u-1");
    }

    /// The root directive renders within the row's budget: past it, `RENDER_LIMIT` at its key.
    #[test]
    fn the_root_directive_counts_against_the_render_budget() {
        let fields = json!({
            "__segment_internal_directive": {"@transform": {"apply": {
                "big": {"@template": "{{properties.s}}{{properties.s}}{{properties.s}}"},
            }}},
            "event_name": "E",
            "user_id": "u",
        });
        let m = Mapping::from_json(mapping(fields).as_bytes(), None).unwrap();
        let columns = serde_json::from_value(json!({"s": "x".repeat(1000)})).unwrap();
        let row = Row::new(None, Op::Added, columns, None);
        assert!(m.test_within(&row, 64 * 1024).issues.is_empty());
        let got = m.test_within(&row, 2000);
        let codes: Vec<_> = got
            .issues
            .iter()
            .map(|i| (i.code, i.pointer.as_str()))
            .collect();
        assert_eq!(
            codes,
            [(IssueCode::RenderLimit, "/__segment_internal_directive")]
        );
    }
}
