//! `@template`: `{{path}}` and `{{{path}}}` placeholders, replaced as Segment's `render` does
//! (triple braces first, then double), with D4: objects and arrays render as their JSON text.

use std::convert::Infallible;

use super::budget::{Budget, OverBudget, json_len};
use super::envelope::Scope;
use super::path::Path;
use crate::json::{Kind, Val};

/// A template compiled into literal text and paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    parts: Box<[Part]>,
    /// The source, kept when it has triple braces: then a second pass runs over the first
    /// pass's output, as in Segment's code, so it cannot be compiled ahead.
    triple: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(Path),
}

impl Template {
    pub(super) fn compile(src: &str) -> Template {
        if src.contains("{{{") {
            return Template {
                parts: Box::new([]),
                triple: Some(src.into()),
            };
        }
        let mut parts = Vec::new();
        let Ok(()) = scan(src, 2, |piece| {
            parts.push(match piece {
                Piece::Lit(s) => Part::Lit(s.into()),
                Piece::Var(p) => Part::Var(Path::parse_get(p.trim())),
            });
            Ok::<(), Infallible>(())
        });
        Template {
            parts: parts.into(),
            triple: None,
        }
    }

    /// Its placeholders' paths (none for a triple-brace template, rendered in two passes).
    pub(super) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(path) => Some(path),
            Part::Lit(_) => None,
        })
    }

    /// The rendered text, each piece counted against `b` before it is appended.
    pub(super) fn render(&self, scope: &Scope<'_>, b: &Budget) -> Result<String, OverBudget> {
        match &self.triple {
            None => {
                let mut out = Vec::new();
                for part in &*self.parts {
                    match part {
                        Part::Lit(s) => push(&mut out, s, b)?,
                        Part::Var(p) => push_value(&mut out, p.resolve(scope), b)?,
                    }
                }
                Ok(utf8(out))
            }
            Some(src) => {
                let first = replace(src, 3, scope, b)?;
                replace(&first, 2, scope, b)
            }
        }
    }
}

/// One pass of `template.replace(/\{{n}([^}]+)\}{n}/g, …)` at run time.
fn replace(src: &str, braces: usize, scope: &Scope<'_>, b: &Budget) -> Result<String, OverBudget> {
    let mut out = Vec::new();
    scan(src, braces, |piece| match piece {
        Piece::Lit(s) => push(&mut out, s, b),
        Piece::Var(p) => push_value(&mut out, Path::parse_get(p.trim()).resolve(scope), b),
    })?;
    Ok(utf8(out))
}

/// Only `str`s and JSON text were appended.
fn utf8(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

enum Piece<'s> {
    Lit(&'s str),
    Var(&'s str),
}

/// Finds `{`×n, one or more non-`}` characters, `}`×n, leftmost first, without overlap.
fn scan<'s, E>(
    src: &'s str,
    n: usize,
    mut emit: impl FnMut(Piece<'s>) -> Result<(), E>,
) -> Result<(), E> {
    let b = src.as_bytes();
    let (mut lit_start, mut i) = (0, 0);
    while i + 2 * n < b.len() + 1 {
        if b[i..].starts_with(&b"{{{"[..n]) {
            let body = i + n;
            let close = b[body..].iter().position(|&c| c == b'}').map(|p| body + p);
            if let Some(close) = close
                && close > body
                && b[close..].starts_with(&b"}}}"[..n])
            {
                if lit_start < i {
                    emit(Piece::Lit(&src[lit_start..i]))?;
                }
                emit(Piece::Var(&src[body..close]))?;
                i = close + n;
                lit_start = i;
                continue;
            }
        }
        i += 1;
    }
    if lit_start < src.len() {
        emit(Piece::Lit(&src[lit_start..]))?;
    }
    Ok(())
}

fn push(out: &mut Vec<u8>, s: &str, b: &Budget) -> Result<(), OverBudget> {
    b.charge("@template", s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Appends a placeholder's value: strings as they are, numbers as JavaScript prints them,
/// objects and arrays as compact JSON (D4), `null` and `undefined` as nothing.
fn push_value(out: &mut Vec<u8>, v: Option<Val<'_>>, b: &Budget) -> Result<(), OverBudget> {
    let Some(v) = v else { return Ok(()) };
    let r = v.as_ref();
    match r.kind() {
        Kind::Null => Ok(()),
        Kind::Bool(x) => push(out, if x { "true" } else { "false" }, b),
        Kind::Number(n) => push(out, &n.to_js_string(), b),
        Kind::Str(s) => push(out, s, b),
        Kind::Array(_) | Kind::Object(_) => {
            b.charge("@template", json_len(r, b.left()))?;
            r.write_json(out);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::VRef;
    use serde_json::json;

    fn render(t: &str, v: serde_json::Value) -> String {
        let b = Budget::new(usize::MAX);
        Template::compile(t)
            .render(&Scope::Node(VRef::Json(&v)), &b)
            .unwrap()
    }

    #[test]
    fn replaces_placeholders() {
        let v =
            json!({"properties": {"kind": "Order", "n": 1.50, "o": {"a": [1, "x"]}, "z": null}});
        assert_eq!(
            render("{{properties.kind}} {{ properties.n }}!", v.clone()),
            "Order 1.5!"
        );
        assert_eq!(
            render("{{properties.missing}}|{{properties.z}}", v.clone()),
            "|"
        );
        // D4: objects render as JSON text, not "[object Object]".
        assert_eq!(render("{{properties.o}}", v.clone()), r#"{"a":[1,"x"]}"#);
        assert_eq!(render("{{{properties.kind}}}", v.clone()), "Order");
        assert_eq!(render("{{}} {{kind", v.clone()), "{{}} {{kind");
        // `{{ }}` is the empty path: `get` answers the whole payload (D4: as JSON text).
        assert_eq!(render("{{ }}", json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(render("no placeholders", v.clone()), "no placeholders");
        assert_eq!(render("{{$.properties.kind}}", v), "");
    }

    #[test]
    fn triple_pass_runs_before_double_pass() {
        let v = json!({"a": "{{b}}", "b": "B"});
        assert_eq!(render("{{{a}}}", v.clone()), "B");
        assert_eq!(render("{{a}}", v), "{{b}}");
    }
}
