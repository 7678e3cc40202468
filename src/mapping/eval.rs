//! Evaluating compiled mapping values against a scope, with mapping-kit's runtime semantics
//! (docs/SEGMENT_SPEC.md §7). `undefined` is `None`; only values a directive computes are owned.

use serde_json::{Map, Value};

use super::envelope::Scope;
use super::expr::{Cond, Expr, JsonMode, Replace};
use super::path::Path;
use super::template::Template;
use crate::json::{self, Kind, ObjRef, VRef, Val};

/// A directive that cannot run on this row (a dynamic `@path` that is not a string, a Liquid
/// template that fails to render, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

type Out<'a> = Result<Option<Val<'a>>, EvalError>;

fn type_name(v: &Option<Val<'_>>) -> &'static str {
    v.as_ref().map_or("undefined", |v| v.as_ref().type_name())
}

/// Resolves `e` in `scope`.
pub fn eval<'a>(e: &'a Expr, scope: Scope<'a>) -> Out<'a> {
    Ok(match e {
        Expr::Const(v) => Some(Val::Ref(v)),
        Expr::Object(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, item) in entries {
                if let Some(v) = eval(item, scope)? {
                    out.push((k.as_str(), v));
                }
            }
            Some(Val::Obj(out))
        }
        Expr::Array(items) => Some(Val::Arr(
            items
                .iter()
                .map(|i| Ok(eval(i, scope)?.unwrap_or(Val::Hole)))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Path(p) => p.resolve(&scope),
        Expr::PathOf(inner) => match eval(inner, scope)? {
            Some(v) if v.as_ref().as_str().is_some() => {
                let path = Path::parse_directive(v.as_ref().as_str().unwrap_or_default());
                path.resolve(&scope)
            }
            other => {
                return Err(EvalError(format!(
                    "@path: expected string, got {}",
                    type_name(&other)
                )));
            }
        },
        Expr::Template(t) => Some(Val::Own(Value::String(t.render(&scope)))),
        Expr::TemplateOf(inner) => match eval(inner, scope)? {
            Some(v) if v.as_ref().as_str().is_some() => {
                let t = Template::compile(v.as_ref().as_str().unwrap_or_default());
                Some(Val::Own(Value::String(t.render(&scope))))
            }
            other => {
                return Err(EvalError(format!(
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
            let v = eval(test, scope)?;
            let holds = match (&v, cond) {
                (None, _) => false,
                (Some(v), Cond::Exists) => !v.as_ref().is_null(),
                (Some(v), Cond::Blank) => !v.as_ref().is_null() && !loosely_empty(v.as_ref()),
            };
            match (holds, then, otherwise) {
                (true, Some(t), _) => eval(t, scope)?,
                (false, _, Some(o)) => eval(o, scope)?,
                _ => None,
            }
        }
        Expr::Case { upper, value } => {
            let Some(value) = value else { return Ok(None) };
            match eval(value, scope)? {
                Some(v) => match v.as_ref().as_str() {
                    Some(s) => Some(Val::Own(Value::String(if *upper {
                        s.to_uppercase()
                    } else {
                        s.to_lowercase()
                    }))),
                    None => Some(v),
                },
                None => None,
            }
        }
        Expr::Replace(r) => replace(r, scope)?,
        Expr::ArrayPath { root, shape } => {
            let root = eval(root, scope)?;
            match (root, shape) {
                (Some(root), Some(shape)) if is_container(root.as_ref()) => {
                    Some(array_path(root, shape)?)
                }
                (root, _) => root,
            }
        }
        Expr::Json { mode, value } => {
            let v = eval(value, scope)?;
            match (mode, v) {
                (JsonMode::Encode, Some(v)) => {
                    let mut buf = Vec::new();
                    v.as_ref().write_json(&mut buf);
                    Some(Val::Own(Value::String(
                        String::from_utf8_lossy(&buf).into_owned(),
                    )))
                }
                (JsonMode::Decode, Some(v)) => match v.as_ref().as_str() {
                    Some(s) => match serde_json::from_str::<Value>(s) {
                        Ok(parsed) => Some(Val::Own(parsed)),
                        Err(_) => Some(v),
                    },
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
            let v = eval(value, scope)?;
            let mut out = Map::new();
            if let Some(v) = v {
                flatten(&mut out, v.as_ref(), String::new(), separator, *omit_arrays);
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
                        let mut pairs = Vec::with_capacity(entries.len());
                        for (k, e) in entries {
                            pairs.push((k.as_str(), eval(e, scope)?.unwrap_or(Val::Hole)));
                        }
                        Some(Val::Obj(pairs))
                    }
                    other => eval(other, scope)?,
                });
            }
            if *left {
                resolved.reverse();
            }
            let mut out = Map::new();
            for v in resolved.iter().flatten() {
                assign(&mut out, v.as_ref());
            }
            Some(Val::Own(Value::Object(out)))
        }
        Expr::Transform { apply, mapping } => {
            if let Scope::Node(node) = scope
                && node.as_object().is_none()
            {
                return Err(EvalError(format!(
                    "data must be an object, got {}",
                    node.type_name()
                )));
            }
            match eval(apply, scope)? {
                Some(payload) => {
                    let payload = payload.into_value();
                    eval(mapping, Scope::Node(VRef::Json(&payload)))?.map(Val::into_owned)
                }
                None => eval(mapping, Scope::Nothing)?.map(Val::into_owned),
            }
        }
        Expr::ExcludeWhenNull(inner) => match eval(inner, scope)? {
            Some(v) if v.as_ref().is_null() => None,
            Some(v) if has_null_member(v.as_ref()) => {
                let mut owned = v.into_value();
                clean_nulls(&mut owned);
                Some(Val::Own(owned))
            }
            other => other,
        },
        Expr::Liquid(t) => {
            let rendered = match scope {
                Scope::Env(env) => t.render(env.as_value()),
                other => t.render(&other.to_value()),
            };
            Some(Val::Own(Value::String(
                rendered.map_err(|e| EvalError(format!("@liquid: {e}")))?,
            )))
        }
    })
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
fn array_path<'a>(root: Val<'a>, shape: &'a Expr) -> Result<Val<'a>, EvalError> {
    fn each<'x>(root: VRef<'x>, shape: &'x Expr) -> Result<Vec<Val<'x>>, EvalError> {
        let item = |v: VRef<'x>| Ok(eval(shape, Scope::Node(v))?.unwrap_or(Val::Hole));
        match root.kind() {
            Kind::Array(a) => a.iter().map(item).collect(),
            _ => Ok(vec![item(root)?]),
        }
    }
    match root {
        Val::Ref(v) => Ok(Val::Arr(each(VRef::Json(v), shape)?)),
        Val::Row(c) => Ok(Val::Arr(each(VRef::Row(c), shape)?)),
        owned => {
            let value = owned.into_value();
            let items = each(VRef::Json(&value), shape)?;
            Ok(Val::Own(Value::Array(
                items.into_iter().map(Val::into_value).collect(),
            )))
        }
    }
}

fn replace<'a>(r: &'a Replace, scope: Scope<'a>) -> Out<'a> {
    let Some(value) = &r.value else {
        return Ok(None);
    };
    let v = eval(value, scope)?;
    let mut text = match v.as_ref().map(|v| v.as_ref().kind()) {
        Some(Kind::Str(s)) => s.to_owned(),
        Some(Kind::Number(n)) => json::number_to_string(n),
        Some(Kind::Bool(b)) => b.to_string(),
        // Segment's code answers "" for anything else.
        _ => return Ok(Some(Val::Own(Value::String(String::new())))),
    };
    for (re, replacement) in &r.passes {
        text = js_replace(&text, re, replacement, r.global);
    }
    Ok(Some(Val::Own(Value::String(text))))
}

/// `String.prototype.replace` with a literal pattern: `$$`, `$&`, `` $` `` and `$'` expand.
fn js_replace(text: &str, re: &regex::Regex, replacement: &str, global: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in re.find_iter(text).take(if global { usize::MAX } else { 1 }) {
        out.push_str(&text[last..m.start()]);
        let mut chars = replacement.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            match chars.peek() {
                Some('$') => out.push('$'),
                Some('&') => out.push_str(m.as_str()),
                Some('`') => out.push_str(&text[..m.start()]),
                Some('\'') => out.push_str(&text[m.end()..]),
                _ => {
                    out.push('$');
                    continue;
                }
            }
            chars.next();
        }
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// `flattenObject(input, prefix, separator, ignoreArrays)`.
fn flatten(
    out: &mut Map<String, Value>,
    v: VRef<'_>,
    prefix: String,
    sep: &str,
    omit_arrays: bool,
) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}{sep}{k}")
        }
    };
    match v.kind() {
        Kind::Object(o) => {
            for (k, item) in o.iter() {
                flatten(out, item, key(k), sep, omit_arrays);
            }
        }
        Kind::Array(a) if !omit_arrays => {
            for (i, item) in a.iter().enumerate() {
                flatten(out, item, key(&i.to_string()), sep, omit_arrays);
            }
        }
        // `{[prefix]: undefined}`: removed afterwards.
        _ if v.is_hole() => {}
        _ => {
            out.insert(prefix, v.to_value());
        }
    }
}

/// `Object.assign(out, v)`: objects copy their entries, arrays and strings their indices.
fn assign(out: &mut Map<String, Value>, v: VRef<'_>) {
    // An undefined value is copied too, and so removes the key.
    let mut put = |k: String, item: VRef<'_>| {
        if item.is_hole() {
            out.shift_remove(&k);
        } else {
            out.insert(k, item.to_value());
        }
    };
    match v.kind() {
        Kind::Object(o) => {
            for (k, item) in o.iter() {
                put(k.to_owned(), item);
            }
        }
        Kind::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                put(i.to_string(), item);
            }
        }
        Kind::Str(s) => {
            for (i, c) in s.chars().enumerate() {
                put(i.to_string(), VRef::Str(c.encode_utf8(&mut [0; 4])));
            }
        }
        _ => {}
    }
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
