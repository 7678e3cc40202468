//! Evaluating compiled mapping values against a scope, with mapping-kit's runtime semantics
//! (docs/SEGMENT_SPEC.md §7). `undefined` is `None`; values stay borrowed unless a directive
//! computes one. What a directive computes is counted against the render's [`Budget`] before it
//! is built.

use std::mem::size_of;

use serde_json::{Map, Value};

use super::budget::{Budget, OverBudget, json_len};
use super::envelope::Scope;
use super::expr::{Cond, Expr, JsonMode, Replace};
use super::path::Path;
use super::template::Template;
use crate::json::{Kind, ObjRef, VRef, Val};

/// A directive that cannot run on this row (a dynamic `@path` that is not a string, a Liquid
/// template that fails to render, ...), or a render past its budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum EvalError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Limit(OverBudget),
}

impl From<OverBudget> for EvalError {
    fn from(e: OverBudget) -> EvalError {
        EvalError::Limit(e)
    }
}

type Out<'a> = Result<Option<Val<'a>>, EvalError>;

fn type_name(v: &Option<Val<'_>>) -> &'static str {
    v.as_ref().map_or("undefined", |v| v.as_ref().type_name())
}

/// What an object or array built by a directive costs per entry (its memory).
const PAIR: usize = size_of::<(&str, Val<'_>)>();
const ITEM: usize = size_of::<Val<'_>>();

/// `v` as owned JSON: a copy, counted, where it was borrowed.
fn owned(v: Val<'_>, what: &'static str, b: &Budget) -> Result<Value, OverBudget> {
    if let Val::Own(v) = v {
        return Ok(v);
    }
    b.charge_copy(what, v.as_ref())?;
    Ok(v.into_value())
}

/// `s` upper- or lower-cased: its length counted first.
fn case(s: &str, upper: bool, b: &Budget) -> Result<String, OverBudget> {
    let len = if s.is_ascii() {
        s.len()
    } else if upper {
        s.chars()
            .flat_map(char::to_uppercase)
            .map(char::len_utf8)
            .sum()
    } else {
        s.chars()
            .flat_map(char::to_lowercase)
            .map(char::len_utf8)
            .sum()
    };
    b.charge("@case", len)?;
    Ok(if upper {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    })
}

/// What evaluating one value costs however little it computes, so the number of evaluations
/// (an `@arrayPath` shape runs once per item) is bounded by the budget too.
const EVAL_COST: usize = 16;

/// Resolves `e` in `scope`, counting what it computes against `b`.
pub(super) fn eval<'a>(e: &'a Expr, scope: Scope<'a>, b: &Budget) -> Out<'a> {
    b.charge("evaluating directives", EVAL_COST)?;
    Ok(match e {
        Expr::Const(v) => Some(Val::Ref(v)),
        Expr::Object(entries) => {
            b.charge("an object of the mapping", entries.len() * PAIR)?;
            let mut out = Vec::with_capacity(entries.len());
            for (k, item) in entries {
                if let Some(v) = eval(item, scope, b)? {
                    out.push((k.as_str(), v));
                }
            }
            Some(Val::Obj(out))
        }
        Expr::Array(items) => {
            b.charge("an array of the mapping", items.len() * ITEM)?;
            Some(Val::Arr(
                items
                    .iter()
                    .map(|i| Ok(eval(i, scope, b)?.unwrap_or(Val::Hole)))
                    .collect::<Result<_, EvalError>>()?,
            ))
        }
        Expr::Path(p) => p.resolve(&scope),
        Expr::PathOf(inner) => match eval(inner, scope, b)? {
            Some(v) if v.as_ref().as_str().is_some() => {
                let src = v.as_ref().as_str().unwrap_or_default();
                b.charge("a computed @path", src.len())?;
                Path::parse_directive(src).resolve(&scope)
            }
            other => {
                return Err(EvalError::Invalid(format!(
                    "@path: expected string, got {}",
                    type_name(&other)
                )));
            }
        },
        Expr::Template(t) => Some(Val::Own(Value::String(t.render(&scope, b)?))),
        Expr::TemplateOf(inner) => match eval(inner, scope, b)? {
            Some(v) if v.as_ref().as_str().is_some() => {
                let src = v.as_ref().as_str().unwrap_or_default();
                b.charge("a computed @template", src.len())?;
                let t = Template::compile(src);
                Some(Val::Own(Value::String(t.render(&scope, b)?)))
            }
            other => {
                return Err(EvalError::Invalid(format!(
                    "@template: expected string, got {}",
                    type_name(&other)
                )));
            }
        },
        Expr::If {
            cond,
            test,
            then,
            otherwise,
        } => {
            let v = eval(test, scope, b)?;
            let holds = match (&v, cond) {
                (None, _) => false,
                (Some(v), Cond::Exists) => !v.as_ref().is_null(),
                (Some(v), Cond::Blank) => !v.as_ref().is_null() && !loosely_empty(v.as_ref()),
            };
            match (holds, then, otherwise) {
                (true, Some(t), _) => eval(t, scope, b)?,
                (false, _, Some(o)) => eval(o, scope, b)?,
                _ => None,
            }
        }
        Expr::Case { upper, value } => {
            let Some(value) = value else { return Ok(None) };
            match eval(value, scope, b)? {
                Some(v) => match v.as_ref().as_str() {
                    Some(s) => Some(Val::Own(Value::String(case(s, *upper, b)?))),
                    None => Some(v),
                },
                None => None,
            }
        }
        Expr::Replace(r) => replace(r, scope, b)?,
        Expr::ArrayPath { root, shape } => {
            let root = eval(root, scope, b)?;
            match (root, shape) {
                (Some(root), Some(shape)) if is_container(root.as_ref()) => {
                    Some(array_path(root, shape, b)?)
                }
                (root, _) => root,
            }
        }
        Expr::Json { mode, value } => {
            let v = eval(value, scope, b)?;
            match (mode, v) {
                (JsonMode::Encode, Some(v)) => {
                    let len = json_len(v.as_ref(), b.left());
                    b.charge("@json encode", len)?;
                    let mut buf = Vec::with_capacity(len);
                    v.as_ref().write_json(&mut buf);
                    Some(Val::Own(Value::String(utf8(buf))))
                }
                (JsonMode::Decode, Some(v)) => match v.as_ref().as_str() {
                    Some(s) => {
                        b.charge("@json decode", s.len())?;
                        match serde_json::from_str::<Value>(s) {
                            Ok(parsed) => Some(Val::Own(parsed)),
                            Err(_) => Some(v),
                        }
                    }
                    None => Some(v),
                },
                _ => None,
            }
        }
        Expr::Flatten {
            value,
            separator,
            omit_arrays,
        } => {
            let v = eval(value, scope, b)?;
            let mut out = Map::new();
            if let Some(v) = v {
                let f = Flatten {
                    sep: separator,
                    omit_arrays: *omit_arrays,
                    b,
                };
                f.flatten(&mut out, v.as_ref(), String::new())?;
            }
            Some(Val::Own(Value::Object(out)))
        }
        Expr::Merge { objects, left } => {
            let mut resolved = Vec::with_capacity(objects.len());
            for o in objects {
                resolved.push(match o {
                    // A raw object keeps its undefined entries here: `Object.assign` copies them,
                    // so they remove an earlier object's key.
                    Expr::Object(entries) => {
                        b.charge("an object of the mapping", entries.len() * PAIR)?;
                        let mut pairs = Vec::with_capacity(entries.len());
                        for (k, e) in entries {
                            pairs.push((k.as_str(), eval(e, scope, b)?.unwrap_or(Val::Hole)));
                        }
                        Some(Val::Obj(pairs))
                    }
                    other => eval(other, scope, b)?,
                });
            }
            if *left {
                resolved.reverse();
            }
            let mut out = Map::new();
            for v in resolved.iter().flatten() {
                assign(&mut out, v.as_ref(), b)?;
            }
            Some(Val::Own(Value::Object(out)))
        }
        Expr::Transform { apply, mapping } => {
            if let Scope::Node(node) = scope
                && node.as_object().is_none()
            {
                return Err(EvalError::Invalid(format!(
                    "data must be an object, got {}",
                    node.type_name()
                )));
            }
            let result = match eval(apply, scope, b)? {
                Some(payload) => {
                    let payload = owned(payload, "@transform", b)?;
                    eval(mapping, Scope::Node(VRef::Json(&payload)), b)?
                        .map(|v| owned(v, "@transform", b))
                        .transpose()?
                }
                None => eval(mapping, Scope::Nothing, b)?
                    .map(|v| owned(v, "@transform", b))
                    .transpose()?,
            };
            result.map(Val::Own)
        }
        Expr::ExcludeWhenNull(inner) => match eval(inner, scope, b)? {
            Some(v) if v.as_ref().is_null() => None,
            Some(v) if v.as_ref().as_object().is_some() => {
                // Looked through (counted as a copy), and copied when a member is null.
                b.charge_copy("@excludeWhenNull", v.as_ref())?;
                if has_null_member(v.as_ref()) {
                    let mut owned = owned(v, "@excludeWhenNull", b)?;
                    clean_nulls(&mut owned);
                    Some(Val::Own(owned))
                } else {
                    Some(v)
                }
            }
            other => other,
        },
        Expr::Liquid(t) => {
            let copy;
            let payload = match scope {
                Scope::Env(env) => env.as_value(),
                other => {
                    if let Scope::Node(node) = other {
                        b.charge_copy("@liquid", node)?;
                    }
                    copy = other.to_value();
                    &copy
                }
            };
            let rendered = t.render_within(payload, b).map_err(|e| match e {
                super::liquid::RenderError::Liquid(e) => {
                    EvalError::Invalid(format!("@liquid: {e}"))
                }
                super::liquid::RenderError::Limit(e) => EvalError::Limit(e),
            })?;
            Some(Val::Own(Value::String(rendered)))
        }
    })
}

/// Bytes written from `str`s and ASCII only, as a `String`.
fn utf8(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `v == ''` in JavaScript (what `@if`'s `blank` tests).
fn loosely_empty(v: VRef<'_>) -> bool {
    match v.kind() {
        Kind::Null | Kind::Object(_) => false,
        Kind::Bool(b) => !b,
        Kind::Number(n) => n.as_f64() == Some(0.0),
        Kind::Str(s) => s.is_empty(),
        Kind::Array(a) => match a.len() {
            0 => true,
            1 => a.get(0).is_some_and(|item| {
                item.is_null() || (item.as_str() != Some("0") && loosely_empty_string(item))
            }),
            _ => false,
        },
    }
}

/// Whether `String(v)` is `""` for an array element.
fn loosely_empty_string(v: VRef<'_>) -> bool {
    match v.kind() {
        Kind::Str(s) => s.is_empty(),
        Kind::Array(_) => loosely_empty(v),
        _ => false,
    }
}

fn is_container(v: VRef<'_>) -> bool {
    matches!(v.kind(), Kind::Object(_) | Kind::Array(_))
}

/// `arrify(root).map(item => resolve(shape, item))`.
fn array_path<'a>(root: Val<'a>, shape: &'a Expr, b: &Budget) -> Result<Val<'a>, EvalError> {
    fn each<'x>(root: VRef<'x>, shape: &'x Expr, b: &Budget) -> Result<Vec<Val<'x>>, EvalError> {
        let item = |v: VRef<'x>| Ok(eval(shape, Scope::Node(v), b)?.unwrap_or(Val::Hole));
        match root.kind() {
            Kind::Array(a) => {
                b.charge("@arrayPath", a.len() * ITEM)?;
                a.iter().map(item).collect()
            }
            _ => Ok(vec![item(root)?]),
        }
    }
    match root {
        Val::Ref(v) => Ok(Val::Arr(each(VRef::Json(v), shape, b)?)),
        Val::Row(c) => Ok(Val::Arr(each(VRef::Row(c), shape, b)?)),
        other => {
            let value = owned(other, "@arrayPath", b)?;
            let items = each(VRef::Json(&value), shape, b)?;
            let items = items
                .into_iter()
                .map(|v| owned(v, "@arrayPath", b))
                .collect::<Result<_, _>>()?;
            Ok(Val::Own(Value::Array(items)))
        }
    }
}

fn replace<'a>(r: &'a Replace, scope: Scope<'a>, b: &Budget) -> Out<'a> {
    let Some(value) = &r.value else {
        return Ok(None);
    };
    let v = eval(value, scope, b)?;
    let mut text = match v.as_ref().map(|v| v.as_ref().kind()) {
        Some(Kind::Str(s)) => {
            b.charge("@replace", s.len())?;
            s.to_owned()
        }
        Some(Kind::Number(n)) => n.to_js_string(),
        Some(Kind::Bool(b)) => b.to_string(),
        // Segment's code answers "" for anything else.
        _ => return Ok(Some(Val::Own(Value::String(String::new())))),
    };
    for (re, replacement) in &r.passes {
        let mut len = 0;
        js_replace(&text, re, replacement, r.global, |piece| len += piece.len());
        b.charge("@replace", len)?;
        let mut out = String::with_capacity(len);
        js_replace(&text, re, replacement, r.global, |piece| {
            out.push_str(piece)
        });
        text = out;
    }
    Ok(Some(Val::Own(Value::String(text))))
}

/// `String.prototype.replace` with a literal pattern (`$$`, `$&`, `` $` `` and `$'` expand):
/// the result, piece by piece, to `emit` (run once to count it, once to build it).
fn js_replace<'t>(
    text: &'t str,
    re: &regex::Regex,
    replacement: &'t str,
    global: bool,
    mut emit: impl FnMut(&str),
) {
    let mut last = 0;
    for m in re.find_iter(text).take(if global { usize::MAX } else { 1 }) {
        emit(&text[last..m.start()]);
        let mut rest = replacement;
        while let Some(dollar) = rest.find('$') {
            emit(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let expansion = match after.chars().next() {
                Some('$') => "$",
                Some('&') => m.as_str(),
                Some('`') => &text[..m.start()],
                Some('\'') => &text[m.end()..],
                _ => {
                    emit("$");
                    rest = after;
                    continue;
                }
            };
            emit(expansion);
            rest = &after[1..];
        }
        emit(rest);
        last = m.end();
    }
    emit(&text[last..]);
}

/// `flattenObject(input, prefix, separator, ignoreArrays)`, every key and value counted.
struct Flatten<'s, 'b> {
    sep: &'s str,
    omit_arrays: bool,
    b: &'b Budget,
}

impl Flatten<'_, '_> {
    fn flatten(
        &self,
        out: &mut Map<String, Value>,
        v: VRef<'_>,
        prefix: String,
    ) -> Result<(), OverBudget> {
        let key = |k: &str| {
            if prefix.is_empty() {
                self.b.charge("@flatten", k.len())?;
                return Ok(k.to_owned());
            }
            self.b
                .charge("@flatten", prefix.len() + self.sep.len() + k.len())?;
            Ok(format!("{prefix}{}{k}", self.sep))
        };
        match v.kind() {
            Kind::Object(o) => {
                for (k, item) in o.iter() {
                    self.flatten(out, item, key(k)?)?;
                }
            }
            Kind::Array(a) if !self.omit_arrays => {
                for (i, item) in a.iter().enumerate() {
                    self.flatten(out, item, key(&i.to_string())?)?;
                }
            }
            // `{[prefix]: undefined}`: removed afterwards.
            _ if v.is_hole() => {}
            _ => {
                self.b.charge_copy("@flatten", v)?;
                out.insert(prefix, v.to_value());
            }
        }
        Ok(())
    }
}

/// `Object.assign(out, v)`: objects copy their entries, arrays and strings their indices.
fn assign(out: &mut Map<String, Value>, v: VRef<'_>, b: &Budget) -> Result<(), OverBudget> {
    // An undefined value is copied too, and so removes the key.
    let mut put = |k: String, item: VRef<'_>| {
        if item.is_hole() {
            out.shift_remove(&k);
        } else {
            b.charge("@merge", k.len())?;
            b.charge_copy("@merge", item)?;
            out.insert(k, item.to_value());
        }
        Ok(())
    };
    match v.kind() {
        Kind::Object(o) => {
            for (k, item) in o.iter() {
                put(k.to_owned(), item)?;
            }
        }
        Kind::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                put(i.to_string(), item)?;
            }
        }
        Kind::Str(s) => {
            for (i, c) in s.chars().enumerate() {
                put(i.to_string(), VRef::Str(c.encode_utf8(&mut [0; 4])))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn has_null_member(v: VRef<'_>) -> bool {
    v.as_object().is_some_and(|o: ObjRef<'_>| {
        o.iter()
            .any(|(_, item)| item.is_null() || has_null_member(item))
    })
}

/// Removes null-valued keys from objects, recursively (not inside arrays), as `@excludeWhenNull`.
fn clean_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, item| !item.is_null());
        for item in m.values_mut() {
            clean_nulls(item);
        }
    }
}
