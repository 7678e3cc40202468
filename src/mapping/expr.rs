//! Mapping-kit values compiled once: every directive checked (docs/SEGMENT_SPEC.md §7, plus the
//! arguments Segment's runtime would reject on every row) and turned into an `Expr` tree.

use serde_json::{Map, Value};

use super::liquid::LiquidTemplate;
use super::path::Path;
use super::suggest;
use super::template::Template;
use crate::issue::push_pointer;
use crate::json::VRef;
use crate::json::js_len;
use crate::spec::fields::FieldType;
use crate::spec::{Field, accept, event};

/// A compiled mapping value.
#[derive(Debug)]
pub(super) enum Expr {
    /// Raw JSON with no directive inside.
    Const(Value),
    /// A raw object with directives inside.
    Object(Vec<(String, Expr)>),
    /// A raw array with directives inside.
    Array(Vec<Expr>),
    Path(Path),
    PathOf(Box<Expr>),
    Template(Template),
    TemplateOf(Box<Expr>),
    If {
        cond: Cond,
        test: Box<Expr>,
        then: Option<Box<Expr>>,
        otherwise: Option<Box<Expr>>,
    },
    Case {
        upper: bool,
        value: Option<Box<Expr>>,
    },
    Replace(Box<Replace>),
    ArrayPath {
        root: Box<Expr>,
        shape: Option<Box<Expr>>,
    },
    Json {
        mode: JsonMode,
        value: Box<Expr>,
    },
    Flatten {
        value: Box<Expr>,
        separator: String,
        omit_arrays: bool,
    },
    Merge {
        objects: Vec<Expr>,
        left: bool,
    },
    Transform {
        apply: Box<Expr>,
        mapping: Box<Expr>,
    },
    ExcludeWhenNull(Box<Expr>),
    Liquid(Box<LiquidTemplate>),
}

/// `@if`'s test: `exists` (not null or undefined) or `blank` (also not loosely `''`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cond {
    Exists,
    Blank,
}

#[derive(Debug)]
pub(super) struct Replace {
    pub value: Option<Expr>,
    /// One or two passes (`pattern`, then `pattern2`): a literal pattern and its replacement.
    pub passes: Vec<(regex::Regex, String)>,
    /// Without it only the first match of each pass is replaced.
    pub global: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonMode {
    Encode,
    Decode,
    /// Passes validation (case-insensitive) but the runtime compares exactly: yields nothing.
    Neither,
}

/// A path of the mapping that TestMapping checks against the sample row.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// Into the mapping document: the `@path` (or `@template`) key.
    pub pointer: String,
    pub path: Path,
    /// A template's placeholder (shown as `{{...}}`) rather than an `@path`.
    pub in_template: bool,
}

/// A problem found compiling a mapping: a JSON pointer into the mapping document and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// Compiles mapping values, collecting every violation.
pub(super) struct Compiler {
    pointer: String,
    /// Directives around the value being compiled.
    depth: usize,
    /// Inside `@literal`: raw objects are not checked for directives without their `@`.
    literal: bool,
    /// Authoring checks on (registration, inline TestMapping, the offline CLI): the slips
    /// Segment's rules let through (a malformed path, a directive without its `@`) are
    /// violations. Off for stored mappings, which compile under the rules they were stored by.
    pub authoring: bool,
    /// Inside directives whose paths do not all see the row unconditionally (`@if`,
    /// `@arrayPath`, `@transform`): their paths are not listed in `paths`.
    quiet: usize,
    /// The paths that see the row whenever the field renders, each at its pointer, for
    /// TestMapping's warnings (never read on the row path).
    pub paths: Vec<Seen>,
    pub violations: Vec<Violation>,
}

/// The key of mapping-kit's root directive: in a mapping (and in `@transform`'s `apply`), the
/// directive whose result the other keys are resolved against.
pub(super) const ROOT_DIRECTIVE_KEY: &str = "__segment_internal_directive";

/// The deepest directives may nest (a directive inside another's argument is one level down).
pub(crate) const MAX_DIRECTIVE_DEPTH: usize = 32;

const MAX_PATTERN_LENGTH: usize = 10;
const MAX_REPLACEMENT_LENGTH: usize = 10;
const DIRECTIVES: [&str; 13] = [
    "@path",
    "@template",
    "@literal",
    "@if",
    "@case",
    "@replace",
    "@arrayPath",
    "@json",
    "@flatten",
    "@merge",
    "@transform",
    "@excludeWhenNull",
    "@liquid",
];

fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(m) if is_directive(m) => "directive",
        Value::Object(_) => "object",
    }
}

fn is_directive(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| k.starts_with('@'))
}

/// A directive written without its `@` (`{"path": "$.properties.x"}`): an object of one key,
/// a directive's name, whose argument is what that directive takes (a path, a template), which
/// as raw data would be sent as that object. The key and the message.
pub(super) fn missing_at(m: &Map<String, Value>) -> Option<(&str, String)> {
    let [(key, Value::String(arg))] = m.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let looks_like = match key.as_str() {
        "path" | "arrayPath" => arg.starts_with("$.") || arg.starts_with("properties."),
        "template" | "liquid" => arg.contains("{{") || arg.contains("{%"),
        _ => false,
    };
    looks_like.then(|| {
        (
            key.as_str(),
            format!(
                "is a directive without its @, which would be sent as the object {}; did you \
                 mean {{\"@{key}\": {}}}?",
                Value::Object(m.clone()),
                Value::String(arg.clone())
            ),
        )
    })
}

/// Why a raw value (no directive at its top) can never fit `field`: every row would be
/// rejected. The pointer's suffix (a key of the value, or `""`) and the message.
pub(super) fn never_fits(field: Field, v: &Value) -> Option<(String, String)> {
    let t = type_of(v);
    let whole = |message: String| Some((String::new(), message));
    match (field.ty(), v) {
        (_, Value::Object(m)) if is_directive(m) => None,
        (FieldType::Str, Value::Object(m)) => match missing_at(m) {
            Some((key, why)) => Some((key.to_owned(), why)),
            None => whole(format!(
                "is an object, which {} (a string) never takes: every row would be rejected \
                 TYPE_MISMATCH; map a string, a number or a directive giving one",
                field.label()
            )),
        },
        (FieldType::Str, Value::Array(a))
            if a.len() != 1
                || matches!(a[0], Value::Array(_) | Value::Object(_))
                    && !contains_directive(&a[0]) =>
        {
            whole(format!(
                "is an array of {} items, which {} (a string) never takes: every row would be \
                 rejected TYPE_MISMATCH",
                a.len(),
                field.label()
            ))
        }
        (FieldType::Str, v) if field == Field::Timestamp && !contains_directive(v) => {
            let ok = v.as_str().is_some_and(accept::is_rfc3339)
                || event::timestamp(VRef::Json(v)).is_some()
                || matches!(v, Value::Null | Value::Array(_))
                || v.as_str() == Some("");
            (!ok).then(|| {
                (
                    String::new(),
                    format!(
                        "{v} is not a timestamp: every row would be rejected INVALID_TIMESTAMP; \
                         write an RFC 3339 date-time (2024-05-01T12:00:00Z), a warehouse form of \
                         one (2024-05-01 12:00:00) or epoch seconds"
                    ),
                )
            })
        }
        (FieldType::Object(_) | FieldType::FreeObject, Value::Null) => None,
        (FieldType::Object(_) | FieldType::FreeObject, Value::String(s)) if s.is_empty() => None,
        (FieldType::Object(_) | FieldType::FreeObject, Value::Object(_)) => None,
        (FieldType::Object(_) | FieldType::FreeObject, _) => whole(format!(
            "is {} {t}, which {} (an object) never takes: every row would be rejected \
             TYPE_MISMATCH; map an object of keys, or a directive giving one",
            article(t),
            field.label()
        )),
        _ => None,
    }
}

/// Why `src` (an `@path` argument) can never resolve as meant, with the path it likely means:
/// `$` not followed by `.`, a template's braces, spaces around it, an unclosed bracket.
pub(super) fn path_mistake(src: &str) -> Option<String> {
    let suggest = |why: &str, meant: String| {
        Some(format!(
            "is not a usable path ({why}): {src:?}; did you mean {meant:?}?"
        ))
    };
    let trimmed = src.trim();
    if trimmed != src && !trimmed.is_empty() {
        return suggest("spaces around it", trimmed.to_owned());
    }
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
    {
        let inner = inner.trim();
        let inner = inner.strip_prefix("$.").unwrap_or(inner);
        return suggest("a template's braces", format!("$.{inner}"));
    }
    if let Some(rest) = src.strip_prefix('$')
        && !rest.starts_with('.')
    {
        return suggest("a path starts with \"$.\"", format!("$.{rest}"));
    }
    let opens = src.matches('[').count();
    let closes = src.matches(']').count();
    if opens != closes {
        if opens < closes {
            return Some(format!("is not a usable path (a ] without its [): {src:?}"));
        }
        // The last bracket unclosed: closed, with its quote when it opened one.
        let tail = &src[src.rfind('[').unwrap_or(0) + 1..];
        let quote = match tail.chars().next() {
            Some(q @ ('\'' | '"')) if tail.len() == 1 || !tail.ends_with(q) => q.to_string(),
            _ => String::new(),
        };
        return suggest("an unclosed [", format!("{src}{quote}]"));
    }
    None
}

/// JavaScript truthiness of a raw mapping value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn contains_directive(v: &Value) -> bool {
    match v {
        Value::Object(m) => is_directive(m) || m.values().any(contains_directive),
        Value::Array(a) => a.iter().any(contains_directive),
        _ => false,
    }
}

impl Compiler {
    pub(super) fn new(pointer: &str) -> Compiler {
        Compiler {
            pointer: pointer.to_owned(),
            depth: 0,
            literal: false,
            authoring: false,
            quiet: 0,
            paths: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, message: impl Into<String>) -> Expr {
        self.violations.push(Violation {
            pointer: self.pointer.clone(),
            message: message.into(),
        });
        Expr::Const(Value::Null)
    }

    /// Runs `f` with `key` appended to the current pointer.
    fn at<T>(&mut self, key: &str, f: impl FnOnce(&mut Compiler) -> T) -> T {
        let len = self.pointer.len();
        push_pointer(&mut self.pointer, key);
        let out = f(self);
        self.pointer.truncate(len);
        out
    }

    /// A path written as an `@path` or `@arrayPath` argument: one that can never resolve as
    /// meant (see [`path_mistake`]) is a violation with the path it likely means.
    fn path(&mut self, src: &str) -> Expr {
        match path_mistake(src).filter(|_| self.authoring) {
            Some(why) => self.fail(why),
            None => {
                let path = Path::parse_directive(src);
                if self.quiet == 0 {
                    self.paths.push(Seen {
                        pointer: self.pointer.clone(),
                        path: path.clone(),
                        in_template: false,
                    });
                }
                Expr::Path(path)
            }
        }
    }

    /// Raw JSON (no directive inside): every object in it that is a directive written without
    /// its `@` is a violation at that key.
    fn scan_missing_at(&mut self, v: &Value) {
        match v {
            Value::Object(m) => match missing_at(m) {
                Some((key, why)) => {
                    self.at(key, |c| c.fail(why));
                }
                None => {
                    for (k, item) in m {
                        self.at(k, |c| c.scan_missing_at(item));
                    }
                }
            },
            Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    self.at(&i.to_string(), |c| c.scan_missing_at(item));
                }
            }
            _ => {}
        }
    }

    /// Any mapping value: raw JSON or a directive.
    pub(super) fn value(&mut self, v: &Value) -> Expr {
        match v {
            Value::Object(m) if is_directive(m) => self.directive(m),
            v if !contains_directive(v) => {
                if self.authoring && !self.literal {
                    self.scan_missing_at(v);
                }
                Expr::Const(v.clone())
            }
            Value::Object(m) => Expr::Object(
                m.iter()
                    .map(|(k, item)| (k.clone(), self.at(k, |c| c.value(item))))
                    .collect(),
            ),
            Value::Array(a) => Expr::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, item)| self.at(&i.to_string(), |c| c.value(item)))
                    .collect(),
            ),
            _ => Expr::Const(v.clone()),
        }
    }

    fn directive(&mut self, m: &Map<String, Value>) -> Expr {
        let keys: Vec<&String> = m.keys().collect();
        let at_keys = keys.iter().filter(|k| k.starts_with('@')).count();
        let others = keys
            .iter()
            .filter(|k| !k.starts_with('@') && k.as_str() != "_metadata")
            .count();
        if at_keys > 1 {
            return self.fail(format!(
                "should only have one @-prefixed key but it has {at_keys} keys"
            ));
        }
        if others > 0 {
            return self.fail(format!(
                "should only have one @-prefixed key but it has {} keys",
                keys.len()
            ));
        }
        let Some((name, arg)) = m.iter().find(|(k, _)| k.starts_with('@')) else {
            return self.fail("should be a directive object");
        };
        if !DIRECTIVES.contains(&name.as_str()) {
            return match suggest::nearest(name, DIRECTIVES) {
                Some(near) => self.fail(format!(
                    "has an invalid directive: {name}; did you mean {near}?"
                )),
                None => self.fail(format!("has an invalid directive: {name}")),
            };
        }
        if self.depth == MAX_DIRECTIVE_DEPTH {
            return self.fail(format!(
                "nests directives more than {MAX_DIRECTIVE_DEPTH} deep (the limit)"
            ));
        }
        let quiet = usize::from(matches!(name.as_str(), "@if" | "@arrayPath" | "@transform"));
        self.depth += 1;
        self.quiet += quiet;
        let e = self.at(name, |c| c.directive_arg(name, arg));
        self.quiet -= quiet;
        self.depth -= 1;
        e
    }

    fn directive_arg(&mut self, name: &str, arg: &Value) -> Expr {
        match name {
            "@path" => match arg {
                Value::String(s) => self.path(s),
                _ => self
                    .string_or_directive(arg)
                    .map_or(Expr::Const(Value::Null), |e| Expr::PathOf(Box::new(e))),
            },
            "@template" => match arg {
                Value::String(s) => {
                    let t = Template::compile(s);
                    if self.quiet == 0 {
                        for path in t.paths() {
                            self.paths.push(Seen {
                                pointer: self.pointer.clone(),
                                path: path.clone(),
                                in_template: true,
                            });
                        }
                    }
                    Expr::Template(t)
                }
                _ => self
                    .string_or_directive(arg)
                    .map_or(Expr::Const(Value::Null), |e| Expr::TemplateOf(Box::new(e))),
            },
            // Literally what it says: an object like `{"path": "$.x"}` is meant.
            "@literal" => {
                let was = std::mem::replace(&mut self.literal, true);
                let e = self.value(arg);
                self.literal = was;
                e
            }
            "@excludeWhenNull" => Expr::ExcludeWhenNull(Box::new(self.value(arg))),
            "@liquid" => match arg {
                Value::String(s) => match LiquidTemplate::parse(s) {
                    Ok(t) => Expr::Liquid(Box::new(t)),
                    Err(e) => self.fail(e.to_string()),
                },
                other => self.fail(format!(
                    "should be a string but it is {} {}",
                    article(type_of(other)),
                    type_of(other)
                )),
            },
            "@arrayPath" => self.array_path(arg),
            _ => {
                let Some(opts) = self.options(arg) else {
                    return Expr::Const(Value::Null);
                };
                match name {
                    "@if" => self.if_(opts),
                    "@case" => self.case(opts),
                    "@replace" => self.replace(opts),
                    "@json" => self.json(opts),
                    "@flatten" => self.flatten(opts),
                    "@merge" => self.merge(opts),
                    "@transform" => self.transform(opts),
                    _ => self.fail(format!("has an invalid directive: {name}")),
                }
            }
        }
    }

    /// The options object of a directive (an object without `@` keys).
    fn options<'v>(&mut self, arg: &'v Value) -> Option<&'v Map<String, Value>> {
        match arg {
            Value::Object(m) => {
                if let Some(k) = m.keys().find(|k| k.starts_with('@')) {
                    self.fail(format!(
                        "shouldn't have directive (@-prefixed) keys but it has {k:?}"
                    ));
                    return None;
                }
                Some(m)
            }
            other => {
                let t = type_of(other);
                self.fail(format!("should be an object but it is {} {t}", article(t)));
                None
            }
        }
    }

    fn string_or_directive(&mut self, v: &Value) -> Option<Expr> {
        match v {
            Value::String(_) => Some(self.value(v)),
            Value::Object(m) if is_directive(m) => Some(self.directive(m)),
            other => {
                let t = type_of(other);
                self.fail(format!(
                    "should be a string or a mapping directive but it is {} {t}",
                    article(t)
                ));
                None
            }
        }
    }

    fn object_or_directive(&mut self, v: &Value) -> Expr {
        match v {
            Value::Object(_) => self.value(v),
            other => {
                let t = type_of(other);
                self.fail(format!(
                    "should be a object or a mapping directive but it is {} {t}",
                    article(t)
                ))
            }
        }
    }

    fn string_opt<'v>(&mut self, opts: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
        match opts.get(key)? {
            Value::String(s) => Some(s),
            other => {
                let t = type_of(other);
                self.at(key, |c| {
                    c.fail(format!("should be a string but it is {} {t}", article(t)))
                });
                None
            }
        }
    }

    fn bool_opt(&mut self, opts: &Map<String, Value>, key: &str, default: bool) -> bool {
        match opts.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let t = type_of(other);
                self.at(key, |c| {
                    c.fail(format!("should be a boolean but it is {} {t}", article(t)))
                });
                default
            }
        }
    }

    fn missing(&mut self, key: &str) -> Expr {
        self.fail(format!("should have field {key:?} but it doesn't"))
    }

    fn if_(&mut self, opts: &Map<String, Value>) -> Expr {
        let (cond, test) = if opts.contains_key("exists") {
            (Cond::Exists, &opts["exists"])
        } else if let Some(blank) = opts.get("blank") {
            (Cond::Blank, blank)
        } else {
            return self
                .fail("should have an \"exists\" key or a \"blank\" key but it has neither");
        };
        if !truthy(test) && !opts.get("blank").is_some_and(truthy) {
            return self.fail("should have a truthy \"exists\" or \"blank\" value");
        }
        let key = if cond == Cond::Exists {
            "exists"
        } else {
            "blank"
        };
        let test = Box::new(self.at(key, |c| c.value(test)));
        let then = opts
            .get("then")
            .map(|v| Box::new(self.at("then", |c| c.value(v))));
        // `else` is used only when it is truthy as written: `else: false` omits the key.
        let otherwise = opts
            .get("else")
            .map(|v| (truthy(v), Box::new(self.at("else", |c| c.value(v)))))
            .and_then(|(t, e)| t.then_some(e));
        Expr::If {
            cond,
            test,
            then,
            otherwise,
        }
    }

    fn case(&mut self, opts: &Map<String, Value>) -> Expr {
        let upper = match self.string_opt(opts, "operator") {
            Some("lower") => false,
            Some("upper") => true,
            Some(other) => {
                return self.at("operator", |c| {
                    c.fail(format!("should be one of lower, upper but it is {other:?}"))
                });
            }
            None if opts.contains_key("operator") => false,
            None => return self.missing("operator"),
        };
        let value = match opts.get("value") {
            Some(v) if truthy(v) => self.at("value", |c| c.string_or_directive(v)).map(Box::new),
            _ => None,
        };
        Expr::Case { upper, value }
    }

    fn replace(&mut self, opts: &Map<String, Value>) -> Expr {
        let ignorecase = self.bool_opt(opts, "ignorecase", false);
        let global = self.bool_opt(opts, "global", true);
        let value = match opts.get("value") {
            None => {
                self.missing("value");
                None
            }
            Some(v) => {
                let e = self.at("value", |c| c.string_or_directive(v));
                e.filter(|_| truthy(v))
            }
        };
        let mut passes = Vec::new();
        for (pk, rk) in [("pattern", "replacement"), ("pattern2", "replacement2")] {
            let pattern = match opts.get(pk) {
                None if pk == "pattern" => {
                    self.missing(pk);
                    continue;
                }
                None => continue,
                Some(_) => self.string_opt(opts, pk),
            };
            let replacement = self.string_opt(opts, rk).unwrap_or("");
            let Some(pattern) = pattern else { continue };
            let plen = js_len(pattern);
            if plen == 0 && pk == "pattern" {
                self.at(pk, |c| c.fail("should be a string of length 1 or greater"));
                continue;
            }
            if plen == 0 {
                continue;
            }
            if plen > MAX_PATTERN_LENGTH {
                self.at(pk, |c| {
                    c.fail(format!(
                        "should be a string of length {MAX_PATTERN_LENGTH} or less"
                    ))
                });
            }
            if js_len(replacement) > MAX_REPLACEMENT_LENGTH {
                self.at(rk, |c| {
                    c.fail(format!(
                        "should be a string of length {MAX_REPLACEMENT_LENGTH} or less"
                    ))
                });
            }
            let re = regex::RegexBuilder::new(&regex::escape(pattern))
                .case_insensitive(ignorecase)
                .build();
            match re {
                Ok(re) => passes.push((re, replacement.to_owned())),
                Err(e) => {
                    self.at(pk, |c| c.fail(format!("is not a usable pattern: {e}")));
                }
            }
        }
        Expr::Replace(Box::new(Replace {
            value,
            passes,
            global,
        }))
    }

    fn array_path(&mut self, arg: &Value) -> Expr {
        let Value::Array(items) = arg else {
            let t = type_of(arg);
            return self.fail(format!("should be an array but it is {} {t}", article(t)));
        };
        let root = match items.first() {
            Some(Value::String(s)) => self.at("0", |c| c.path(s)),
            Some(v) => match self.at("0", |c| c.string_or_directive(v)) {
                Some(e) => e,
                None => return Expr::Const(Value::Null),
            },
            None => {
                return self.at("0", |c| {
                    c.fail("should be a string or a mapping directive but it is undefined")
                });
            }
        };
        let shape = match items.get(1) {
            Some(v @ Value::Object(m)) if !m.is_empty() => {
                Some(Box::new(self.at("1", |c| c.value(v))))
            }
            Some(v) => {
                // Validated, but only a non-empty object shapes the items.
                self.at("1", |c| c.value(v));
                None
            }
            None => None,
        };
        Expr::ArrayPath {
            root: Box::new(root),
            shape,
        }
    }

    fn json(&mut self, opts: &Map<String, Value>) -> Expr {
        let mode = match self.string_opt(opts, "mode") {
            Some(m) => match m {
                "encode" => JsonMode::Encode,
                "decode" => JsonMode::Decode,
                m if m.eq_ignore_ascii_case("encode") || m.eq_ignore_ascii_case("decode") => {
                    JsonMode::Neither
                }
                m => {
                    return self.at("mode", |c| {
                        c.fail(format!("should be one of encode, decode but it is {m:?}"))
                    });
                }
            },
            None if opts.contains_key("mode") => JsonMode::Neither,
            None => return self.missing("mode"),
        };
        let Some(v) = opts.get("value") else {
            return self.missing("value");
        };
        if !truthy(v) {
            return self.at("value", |c| {
                c.fail("should be a truthy value or a mapping directive")
            });
        }
        Expr::Json {
            mode,
            value: Box::new(self.at("value", |c| c.value(v))),
        }
    }

    fn flatten(&mut self, opts: &Map<String, Value>) -> Expr {
        let separator = match self.string_opt(opts, "separator") {
            Some(s) if !s.is_empty() => s.to_owned(),
            Some(_) => return self.at("separator", |c| c.fail("should be a non-empty string")),
            None if opts.contains_key("separator") => String::new(),
            None => return self.missing("separator"),
        };
        let Some(v) = opts.get("value") else {
            return self.missing("value");
        };
        let value = Box::new(self.at("value", |c| c.value(v)));
        let omit_arrays = opts.get("omitArrays").is_some_and(truthy);
        Expr::Flatten {
            value,
            separator,
            omit_arrays,
        }
    }

    fn merge(&mut self, opts: &Map<String, Value>) -> Expr {
        let left = match self.string_opt(opts, "direction") {
            Some(d) if d.eq_ignore_ascii_case("left") || d.eq_ignore_ascii_case("right") => {
                d == "left"
            }
            Some(d) => {
                return self.at("direction", |c| {
                    c.fail(format!("should be one of left, right but it is {d:?}"))
                });
            }
            None if opts.contains_key("direction") => false,
            None => return self.missing("direction"),
        };
        let objects = match opts.get("objects") {
            Some(Value::Array(items)) => self.at("objects", |c| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| c.at(&i.to_string(), |c| c.object_or_directive(v)))
                    .collect()
            }),
            Some(other) => {
                let t = type_of(other);
                return self.at("objects", |c| {
                    c.fail(format!("should be an array but it is {} {t}", article(t)))
                });
            }
            None => return self.missing("objects"),
        };
        Expr::Merge { objects, left }
    }

    fn transform(&mut self, opts: &Map<String, Value>) -> Expr {
        let (Some(apply), Some(mapping)) = (opts.get("apply"), opts.get("mapping")) else {
            let key = if opts.contains_key("apply") {
                "mapping"
            } else {
                "apply"
            };
            return self.missing(key);
        };
        let apply = Box::new(self.at("apply", |c| c.apply(apply)));
        let mapping = Box::new(self.at("mapping", |c| c.object_or_directive(mapping)));
        Expr::Transform { apply, mapping }
    }

    /// `@transform`'s `apply`, which mapping-kit runs through `transform()` (not `resolve()`), so
    /// a raw object of it may hold a root directive of its own: the rest of it is then resolved
    /// against that directive's result, as a `@transform` would be. (The whole mapping is
    /// validated before that happens, with the nested root directive as an ordinary
    /// `@transform`: there its `mapping` is required, though overwritten at run time.)
    fn apply(&mut self, v: &Value) -> Expr {
        match v {
            Value::Object(m) if !is_directive(m) && m.contains_key(ROOT_DIRECTIVE_KEY) => {
                let inner = self.at(ROOT_DIRECTIVE_KEY, |c| {
                    c.root_directive(&m[ROOT_DIRECTIVE_KEY], true)
                });
                let rest = m
                    .iter()
                    .filter(|(k, _)| k.as_str() != ROOT_DIRECTIVE_KEY)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Expr::Transform {
                    apply: Box::new(inner),
                    mapping: Box::new(self.value(&Value::Object(rest))),
                }
            }
            v => self.object_or_directive(v),
        }
    }

    /// A boolean field that is checked and then dropped (never evaluated): a raw boolean, or a
    /// directive (a field value may be one), compiled for its violations; anything else is a
    /// violation, `why` saying what the field is for.
    pub(super) fn ignored_boolean(&mut self, v: &Value, why: &str) {
        match v {
            Value::Bool(_) => {}
            Value::Object(m) if is_directive(m) => {
                self.directive(m);
            }
            other => {
                let t = type_of(other);
                self.fail(format!(
                    "should be a boolean (true or false) or a directive but it is {} {t} ({why})",
                    article(t)
                ));
            }
        }
    }

    /// The value of a root directive key (`__segment_internal_directive`), compiled to its
    /// `apply`: what the mapping's other keys are resolved against.
    ///
    /// mapping-kit (`getMappingToProcess` in `@segment/actions-core`'s `mapping-kit/index.ts`)
    /// takes that value as the mapping to process: it must have a single key, whose argument is
    /// an object, and it sets that argument's `mapping` to the other keys, overwriting any
    /// `mapping` written there; `validate` and `resolve` then run on it. Only `@transform` reads
    /// `mapping` (it resolves `apply` against the payload, then `mapping` against the result),
    /// so any other directive would throw the other keys away: refused here. A `mapping` written
    /// in it is ignored, as Segment's code overwrites it unread; but `nested` (in an `apply`),
    /// it must be there and be valid, as the validation of the enclosing mapping requires.
    pub(super) fn root_directive(&mut self, v: &Value, nested: bool) -> Expr {
        const SHAPE: &str = "{\"@transform\": {\"apply\": ...}}";
        let m = match v {
            Value::Object(m) if m.len() == 1 => m,
            Value::Object(m) => {
                return self.fail(format!(
                    "should be a single directive object, {SHAPE}, but it has {} keys",
                    m.len()
                ));
            }
            other => {
                let t = type_of(other);
                return self.fail(format!(
                    "should be a single directive object, {SHAPE}, but it is {} {t}",
                    article(t)
                ));
            }
        };
        let (name, arg) = m.iter().next().expect("one key");
        if name != "@transform" {
            return self.fail(format!(
                "should be a @transform directive ({SHAPE}), the one directive that resolves the \
                 other fields against its result, but it is {name:?}"
            ));
        }
        if self.depth == MAX_DIRECTIVE_DEPTH {
            return self.fail(format!(
                "nests directives more than {MAX_DIRECTIVE_DEPTH} deep (the limit)"
            ));
        }
        self.depth += 1;
        let apply = self.at(name, |c| {
            let opts = c.options(arg)?;
            let apply = match opts.get("apply") {
                Some(apply) => Some(c.at("apply", |c| c.apply(apply))),
                None => {
                    c.missing("apply");
                    None
                }
            };
            match opts.get("mapping") {
                _ if !nested => {}
                Some(m) => {
                    c.at("mapping", |c| c.object_or_directive(m));
                }
                None => {
                    c.missing("mapping");
                }
            }
            apply
        });
        self.depth -= 1;
        apply.unwrap_or(Expr::Const(Value::Null))
    }
}
