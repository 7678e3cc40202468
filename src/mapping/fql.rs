//! Segment FQL subscriptions (the subset the service supports): parse once, evaluate per row.
//!
//! The reference is `@segment/destination-subscriptions` (`parseFql` + `validate`), the code
//! actions-core runs to decide whether an event matches an action's subscription. Its results
//! are recorded in `tests/fixtures/fql_cases.json` (made by `tests/fixtures/fql_record.js`).
//!
//! Grammar (keywords are lowercase; whitespace is space, tab or newline):
//!
//! ```text
//! expr       := unary (("and" | "or") unary)*      -- one of and/or per level; mix with ( )
//! unary      := "not" unary | "!" function | "(" expr ")" | function | comparison
//! function   := ("contains" | "match") "(" path "," string ")"
//! comparison := path ("=" | "!=" | "<" | "<=" | ">" | ">=") literal
//! path       := "type" | "event" | "name" | "userId"
//!             | ("properties" | "traits" | "context") ("." field)+
//! literal    := string | number | "true" | "false" | "null"
//! ```
//!
//! Semantics, as Segment evaluates them unless noted:
//! - `=` is typed: a string literal equals only that exact string (case-sensitive, `"3"` never
//!   equals `3`), a number only a number (`1.0` = `1`), `true`/`false` only that boolean, and
//!   `null` a missing path or a JSON null. `!=` is the negation of `=`, except that `!= number`
//!   is true only for a number that differs (a missing path or a string gives false).
//! - `<`, `<=`, `>`, `>=` take a number literal and are true only for number values.
//! - `contains` (substring) and `match` (glob: `*` any run, `?` one character) are true only
//!   for string values; `!contains`/`!match` are true only for strings that do not match.
//!   `not` is plain boolean negation, so `not contains(p, "x")` holds for a missing path.
//! - String literals are taken verbatim: there are no escape sequences, so `\` is an ordinary
//!   character and a literal cannot contain `"`.
//!
//! Deliberate differences from Segment (its behaviour in brackets; each is a listed case in
//! the fixture test):
//! - `not` negates [lexed as an identifier and ignored, so `not x = 1` means `x = 1`].
//! - Mixing `and` and `or` on one level needs parentheses [the last conjunction applies to the
//!   whole level]; nested parentheses work [error: a group ends at the first `)`].
//! - `match` is a real glob [`p*` is starts-with, any other pattern is ends-with of the pattern
//!   minus its first character, so `match(event, "xew")` matches "new"].
//! - `event`, `type`, `name` and `userId` compare typed like other paths [number, boolean and
//!   `null` literals are compared as the strings "3", "true", "null"].
//! - `!= true` is the negation of `= true` [compared with the string "true"].
//! - Orderings against strings, booleans or `null` are errors [coerced with JS `Number()`].
//! - `contains`/`match` accept `type` [error]; operators need no whitespace around them
//!   [`x>3` and `x!="a"` are errors and `x >=3` is always false].
//! - A path through a non-object value is missing [Segment walks JS values, so
//!   `properties.title.length` is the string's length and `properties.zero.q` is `0`].
//! - Syntax Segment tolerates but which is outside this subset is an error here: single-quoted
//!   strings [kept with their quotes], bare words as values, uppercase keywords, unknown or
//!   nested top-level fields, exponents and other malformed numbers, `!` before anything but
//!   `contains`/`match`, missing operands, conjunctions or arguments, and trailing tokens.
//!   Carriage returns are not whitespace in either implementation.

use serde_json::Value;
use std::fmt;

/// Longest accepted source, in bytes.
const MAX_SOURCE_BYTES: usize = 4096;
/// Deepest accepted nesting of parentheses and `not`.
const MAX_DEPTH: usize = 64;

/// A compiled FQL subscription.
#[derive(Clone)]
pub struct Fql {
    source: Box<str>,
    root: Node,
}

/// Why an FQL source was rejected; `offset` is a byte offset into the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {offset}")]
pub(crate) struct FqlError {
    pub message: String,
    pub offset: usize,
}

impl Fql {
    /// Compiles `src`, or explains why it is not in the supported subset.
    pub(crate) fn parse(src: &str) -> Result<Fql, FqlError> {
        if src.len() > MAX_SOURCE_BYTES {
            return Err(err(
                format!("fql is longer than {MAX_SOURCE_BYTES} bytes"),
                MAX_SOURCE_BYTES,
            ));
        }
        let tokens = lex(src)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            depth: 0,
        };
        let root = parser.expr()?;
        let (token, offset) = parser.peek();
        match token {
            Tok::Eof => Ok(Fql {
                source: src.into(),
                root,
            }),
            Tok::RParen => Err(err("unmatched )", offset)),
            _ => Err(unexpected_after_condition(token, offset, "end of input")),
        }
    }

    /// Whether `event` satisfies the subscription.
    pub(crate) fn matches(&self, event: &Value) -> bool {
        self.root.eval(event)
    }
}

impl fmt::Debug for Fql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fql").field(&self.source).finish()
    }
}

fn err(message: impl Into<String>, offset: usize) -> FqlError {
    FqlError {
        message: message.into(),
        offset,
    }
}

// ---------------------------------------------------------------------------------------------
// AST and evaluation

#[derive(Clone, Debug)]
enum Node {
    Compare {
        path: Path,
        op: CmpOp,
        literal: Literal,
    },
    /// `contains(path, needle)`; with `negated`, a string that does not contain it.
    Contains {
        path: Path,
        needle: Box<str>,
        negated: bool,
    },
    /// `match(path, glob)`; with `negated`, a string that does not match it.
    Match {
        path: Path,
        pattern: Box<str>,
        negated: bool,
    },
    Not(Box<Node>),
    All(Box<[Node]>),
    Any(Box<[Node]>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug)]
enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(Box<str>),
}

/// A field path, split into object keys at parse time (`properties.a.b` is three keys).
#[derive(Clone, Debug)]
struct Path {
    keys: Box<[Box<str>]>,
}

impl Path {
    /// The value at this path; `None` when a key is missing or a parent is not an object.
    fn lookup<'v>(&self, event: &'v Value) -> Option<&'v Value> {
        self.keys
            .iter()
            .try_fold(event, |value, key| value.as_object()?.get(&**key))
    }
}

impl Node {
    fn eval(&self, event: &Value) -> bool {
        match self {
            Node::Compare { path, op, literal } => compare(path.lookup(event), *op, literal),
            Node::Contains {
                path,
                needle,
                negated,
            } => match path.lookup(event) {
                Some(Value::String(s)) => s.contains(&**needle) != *negated,
                _ => false,
            },
            Node::Match {
                path,
                pattern,
                negated,
            } => match path.lookup(event) {
                Some(Value::String(s)) => glob(pattern, s) != *negated,
                _ => false,
            },
            Node::Not(inner) => !inner.eval(event),
            Node::All(nodes) => nodes.iter().all(|n| n.eval(event)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(event)),
        }
    }
}

fn compare(value: Option<&Value>, op: CmpOp, literal: &Literal) -> bool {
    let number = value.and_then(Value::as_f64);
    match (op, literal) {
        (CmpOp::Eq, _) => equals(value, literal),
        (CmpOp::Ne, Literal::Number(n)) => number.is_some_and(|x| x != *n),
        (CmpOp::Ne, _) => !equals(value, literal),
        (CmpOp::Lt, Literal::Number(n)) => number.is_some_and(|x| x < *n),
        (CmpOp::Le, Literal::Number(n)) => number.is_some_and(|x| x <= *n),
        (CmpOp::Gt, Literal::Number(n)) => number.is_some_and(|x| x > *n),
        (CmpOp::Ge, Literal::Number(n)) => number.is_some_and(|x| x >= *n),
        // The parser only builds orderings against numbers.
        (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge, _) => false,
    }
}

fn equals(value: Option<&Value>, literal: &Literal) -> bool {
    match literal {
        Literal::Null => value.is_none_or(Value::is_null),
        Literal::Bool(b) => value.and_then(Value::as_bool) == Some(*b),
        Literal::Number(n) => value.and_then(Value::as_f64) == Some(*n),
        Literal::String(s) => value.and_then(Value::as_str) == Some(&**s),
    }
}

/// Glob match over the whole of `text`: `*` matches any run (also empty), `?` one character,
/// everything else itself. Iterative with one backtrack point, so no recursion or allocation.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // After the last `*`: where the pattern resumes, and where in the text the run ends.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                backtrack = Some((pi, ti));
                continue;
            }
            Some(b'?') => {
                pi += 1;
                ti += utf8_width(t[ti]);
                continue;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((resume, start)) => {
                let next = start + utf8_width(t[start]);
                backtrack = Some((resume, next));
                pi = resume;
                ti = next;
            }
            None => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 sequence that starts with `lead`.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tok<'a> {
    /// An identifier or dotted path: `event`, `and`, `properties.a.b`.
    Word(&'a str),
    /// The text between double quotes, verbatim.
    Str(&'a str),
    Number(f64),
    Op(CmpOp),
    /// `!` directly followed by a letter (`!contains`, `!match`).
    Bang,
    LParen,
    RParen,
    Comma,
    Eof,
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn lex(src: &str) -> Result<Vec<(Tok<'_>, usize)>, FqlError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        let token = match c {
            b' ' | b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            b'!' if next == Some(b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            b'!' if next.is_some_and(|n| n.is_ascii_alphabetic()) => {
                i += 1;
                Tok::Bang
            }
            b'!' => return Err(err("! must be followed by = or a function name", start)),
            b'<' | b'>' => {
                let or_equal = next == Some(b'=');
                i += if or_equal { 2 } else { 1 };
                Tok::Op(match (c, or_equal) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'"' => {
                let len = src[i + 1..]
                    .find('"')
                    .ok_or_else(|| err("unterminated string literal", start))?;
                i += len + 2;
                Tok::Str(&src[start + 1..start + 1 + len])
            }
            b'\'' => {
                return Err(err(
                    "single-quoted strings are not supported, use double quotes",
                    start,
                ));
            }
            b'-' | b'+' | b'0'..=b'9' => {
                i = lex_number(bytes, i)?;
                let text = src[start..i].strip_prefix('+').unwrap_or(&src[start..i]);
                let value = text
                    .parse::<f64>()
                    .map_err(|_| err("invalid number literal", start))?;
                Tok::Number(value)
            }
            c if is_word_start(c) => {
                i = lex_word(bytes, i)?;
                Tok::Word(&src[start..i])
            }
            _ => {
                let ch = src[start..].chars().next().unwrap_or('\u{fffd}');
                return Err(err(format!("unexpected character {ch:?}"), start));
            }
        };
        tokens.push((token, start));
    }
    tokens.push((Tok::Eof, src.len()));
    Ok(tokens)
}

/// Scans `[+-]?digits(.digits)?` from `start` and returns where it ends.
fn lex_number(bytes: &[u8], start: usize) -> Result<usize, FqlError> {
    let invalid = || err("invalid number literal", start);
    let digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = start;
    if matches!(bytes[i], b'-' | b'+') {
        i += 1;
    }
    let whole = digits(i);
    if whole == 0 {
        return Err(invalid());
    }
    i += whole;
    if bytes.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 {
            return Err(invalid());
        }
        i += 1 + fraction;
    }
    // `1e3`, `1.2.3`, `3abc`: not a number in this subset.
    if bytes.get(i).is_some_and(|&c| is_word_char(c) || c == b'.') {
        return Err(invalid());
    }
    Ok(i)
}

/// Scans a dotted word (`a`, `a.b-c.d_e`) from `start` and returns where it ends.
fn lex_word(bytes: &[u8], start: usize) -> Result<usize, FqlError> {
    let mut i = start;
    loop {
        i += bytes[i..].iter().take_while(|&&c| is_word_char(c)).count();
        if bytes.get(i) != Some(&b'.') {
            return Ok(i);
        }
        if !bytes.get(i + 1).copied().is_some_and(is_word_start) {
            return Err(err("expected a field name after the dot", i + 1));
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

const KEYWORDS: [&str; 8] = [
    "and", "or", "not", "null", "true", "false", "contains", "match",
];

/// An error for a keyword written in the wrong case (`AND`, `True`), if `word` is one.
fn keyword_case_error(word: &str, offset: usize) -> Option<FqlError> {
    KEYWORDS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(word) && **k != word)
        .map(|k| err(format!("keyword {word} must be written {k}"), offset))
}

/// The error for `token` where a conjunction or the end of a group (`what`) must follow.
fn unexpected_after_condition(token: Tok<'_>, offset: usize, what: &str) -> FqlError {
    match token {
        Tok::Word(word) => keyword_case_error(word, offset),
        _ => None,
    }
    .unwrap_or_else(|| err(format!("expected and, or or {what}"), offset))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Conjunction {
    And,
    Or,
}

struct Parser<'t, 'a> {
    tokens: &'t [(Tok<'a>, usize)],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> (Tok<'a>, usize) {
        // The lexer always ends the list with `Eof`, and `pos` never moves past it.
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .copied()
            .unwrap_or((Tok::Eof, 0))
    }

    fn bump(&mut self) -> (Tok<'a>, usize) {
        let token = self.peek();
        if token.0 != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn enter(&mut self, offset: usize) -> Result<(), FqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                offset,
            ));
        }
        Ok(())
    }

    /// `unary (conjunction unary)*` with a single kind of conjunction.
    fn expr(&mut self) -> Result<Node, FqlError> {
        let mut nodes = vec![self.unary()?];
        let mut kind = None;
        loop {
            let (token, offset) = self.peek();
            let this = match token {
                Tok::Word("and") => Conjunction::And,
                Tok::Word("or") => Conjunction::Or,
                _ => break,
            };
            if kind.is_some_and(|k| k != this) {
                return Err(err("cannot mix and with or without parentheses", offset));
            }
            kind = Some(this);
            self.bump();
            nodes.push(self.unary()?);
        }
        Ok(match (kind, nodes.len()) {
            (_, 1) => nodes.pop().unwrap_or(Node::All(Box::new([]))),
            (Some(Conjunction::Or), _) => Node::Any(nodes.into_boxed_slice()),
            _ => Node::All(nodes.into_boxed_slice()),
        })
    }

    fn unary(&mut self) -> Result<Node, FqlError> {
        let (token, offset) = self.bump();
        match token {
            Tok::Word("not") => {
                self.enter(offset)?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Tok::LParen => {
                self.enter(offset)?;
                let inner = self.expr()?;
                self.depth -= 1;
                match self.bump() {
                    (Tok::RParen, _) => Ok(inner),
                    (Tok::Eof, _) => Err(err("unclosed (", offset)),
                    (token, at) => Err(unexpected_after_condition(token, at, ")")),
                }
            }
            Tok::Bang => match self.bump() {
                (Tok::Word(name @ ("contains" | "match")), _) => self.function(name, true),
                (_, at) => Err(err(
                    "! only negates contains and match, use not for other conditions",
                    at,
                )),
            },
            Tok::Word(name @ ("contains" | "match")) => self.function(name, false),
            Tok::Word(word) => {
                if let Some(e) = keyword_case_error(word, offset) {
                    return Err(e);
                }
                if matches!(word, "and" | "or") {
                    return Err(err(format!("expected a condition before {word}"), offset));
                }
                let path = compile_path(word, offset)?;
                self.comparison(path, word)
            }
            Tok::Eof => Err(err("expected a condition", offset)),
            Tok::RParen => Err(err("expected a condition before )", offset)),
            Tok::Str(_) | Tok::Number(_) => Err(err(
                "expected a condition, a literal must follow a path and an operator",
                offset,
            )),
            Tok::Op(_) | Tok::Comma => Err(err("expected a condition", offset)),
        }
    }

    fn comparison(&mut self, path: Path, text: &str) -> Result<Node, FqlError> {
        let op = match self.peek() {
            (Tok::Op(op), _) => op,
            (_, at) => {
                return Err(err(
                    format!("expected a comparison operator after {text}"),
                    at,
                ));
            }
        };
        self.bump();
        let symbol = op.symbol();
        let (token, at) = self.bump();
        let literal = match token {
            Tok::Str(s) => Literal::String(s.into()),
            Tok::Number(n) => Literal::Number(n),
            Tok::Word("null") => Literal::Null,
            Tok::Word("true") => Literal::Bool(true),
            Tok::Word("false") => Literal::Bool(false),
            Tok::Word(word) => {
                return Err(keyword_case_error(word, at).unwrap_or_else(|| {
                    err(
                        format!("expected a literal after {symbol}, strings need double quotes"),
                        at,
                    )
                }));
            }
            _ => return Err(err(format!("expected a literal after {symbol}"), at)),
        };
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) && !matches!(literal, Literal::Number(_)) {
            return Err(err(format!("expected a number literal after {symbol}"), at));
        }
        Ok(Node::Compare { path, op, literal })
    }

    /// `(path, "string")` after `contains` or `match`.
    fn function(&mut self, name: &str, negated: bool) -> Result<Node, FqlError> {
        let (token, at) = self.bump();
        if token != Tok::LParen {
            return Err(err(format!("expected ( after {name}"), at));
        }
        let (token, at) = self.bump();
        let Tok::Word(word) = token else {
            return Err(err(format!("expected a path after {name}("), at));
        };
        if let Some(e) = keyword_case_error(word, at) {
            return Err(e);
        }
        let path = compile_path(word, at)?;
        let (token, at) = self.bump();
        if token != Tok::Comma {
            return Err(err(format!("expected , after {name}(path"), at));
        }
        let (token, at) = self.bump();
        let Tok::Str(text) = token else {
            return Err(err(
                format!("expected a string literal after {name}(path, "),
                at,
            ));
        };
        let (token, at) = self.bump();
        if token != Tok::RParen {
            return Err(err(format!("expected ) to close {name}("), at));
        }
        Ok(if name == "contains" {
            Node::Contains {
                path,
                needle: text.into(),
                negated,
            }
        } else {
            Node::Match {
                path,
                pattern: text.into(),
                negated,
            }
        })
    }
}

/// Checks a dotted word against the fields Segment's subscriptions can address.
fn compile_path(word: &str, offset: usize) -> Result<Path, FqlError> {
    let keys: Box<[Box<str>]> = word.split('.').map(Box::from).collect();
    let root = keys.first().map_or("", |k| &**k);
    match root {
        "type" | "event" | "name" | "userId" if keys.len() == 1 => Ok(Path { keys }),
        "type" | "event" | "name" | "userId" => Err(err(
            format!("{root} has no nested fields"),
            offset + root.len(),
        )),
        "properties" | "traits" | "context" if keys.len() > 1 => Ok(Path { keys }),
        "properties" | "traits" | "context" => Err(err(
            format!("expected a field after {root}, such as {root}.name"),
            offset,
        )),
        _ => Err(err(
            format!(
                "unknown field {root}, expected type, event, name, userId \
                 or a path under properties, traits or context"
            ),
            offset,
        )),
    }
}

#[cfg(test)]
impl Fql {
    /// The original text.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // ----- the recorded fixture ------------------------------------------------------------

    /// What this module returns for a fixture case: a match result, or a parse error.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Outcome {
        Match(bool),
        Invalid,
    }
    use Outcome::{Invalid, Match};

    /// Expressions where this module deliberately differs from what Segment recorded, with
    /// what we return instead (for every event the fixture pairs the expression with).
    #[rustfmt::skip]
    const DEVIATIONS: &[(&str, Outcome, &str)] = &[
        // Spec: a string literal never equals a number, number literals compare as numbers.
        // Segment compares `event`/`type`/`name`/`userId` against String(literal).
        ("event = 3", Match(false), "spec: \"3\" != 3"),
        ("userId = 3", Match(true), "number literal equals the number 3"),
        ("userId != 3", Match(false), "!= number needs a number value"),
        ("name = true", Match(false), "true is a boolean, not the string \"true\""),
        // Spec: a missing path equals only null (Segment compares event/type with "null").
        ("event = null", Match(true), "spec: null matches a null event"),
        ("type = null", Match(true), "spec: a missing path equals null"),
        // `!= true` is the negation of `= true`; Segment compares with the string "true".
        ("properties.flag != true", Match(false), "true is not != true"),
        ("properties.strue != true", Match(true), "the string \"true\" is not true"),
        // Spec: `not` negates; Segment lexes it as an identifier and ignores it.
        ("not event = \"x\"", Match(true), "spec: not negates"),
        ("not event = \"new\"", Match(false), "spec: not negates"),
        ("not (event = \"new\")", Match(false), "spec: not negates"),
        ("not contains(properties.missing, \"a\")", Match(true), "not of false"),
        ("NOT event = \"new\"", Invalid, "keywords are lowercase"),
        // Mixed and/or: Segment applies the last conjunction to the whole level.
        ("type = \"page\" and event = \"x\" or event = \"new\"", Invalid, "ambiguous mix"),
        ("event = \"new\" or type = \"page\" and event = \"x\"", Invalid, "ambiguous mix"),
        // Nested parentheses: Segment cuts a group at the first `)`.
        ("((event = \"new\"))", Match(true), "nested parentheses"),
        ("(event = \"x\" or (type = \"track\" and event = \"new\"))", Match(true), "nested"),
        // Spec: match is a glob; Segment only knows `prefix*` and otherwise tests
        // ends-with(pattern minus its first character).
        ("match(event, \"xew\")", Match(false), "spec: glob"),
        ("match(event, \"n*w\")", Match(true), "spec: glob"),
        ("match(event, \"n?w\")", Match(true), "spec: glob"),
        ("match(event, \"\")", Match(false), "spec: glob"),
        // contains/match work on any supported path; Segment drops `type` there.
        ("contains(type, \"ack\")", Match(true), "type is a path like the others"),
        // No whitespace needed around operators (Segment: lexer errors / `>` against "=").
        ("properties.count>2", Match(true), "operators need no whitespace"),
        ("properties.count >=3", Match(true), "operators need no whitespace"),
        ("properties.count>= 3", Match(true), "operators need no whitespace"),
        ("properties.plan!=\"x\"", Match(true), "operators need no whitespace"),
        // Orderings take number literals only (Segment coerces with Number()).
        ("properties.count < \"5\"", Invalid, "spec: strings never compare with numbers"),
        ("properties.plan < \"z\"", Invalid, "ordering needs a number literal"),
        ("properties.count > null", Invalid, "ordering needs a number literal"),
        ("properties.count > true", Invalid, "ordering needs a number literal"),
        // Out-of-subset syntax that Segment tolerates with surprising results.
        ("properties.count = 1e3", Invalid, "exponents: Segment reads 1 and drops e3"),
        ("properties.count = .5", Invalid, "Segment compares with the string \".\""),
        ("properties.count = - 3", Invalid, "Segment compares with NaN"),
        ("properties . plan = \"pro\"", Invalid, "paths have no inner whitespace"),
        ("event = \"new\" and", Invalid, "dangling and"),
        ("and event = \"new\"", Invalid, "dangling and"),
        ("event = \"new\" type = \"track\"", Invalid, "missing and/or"),
        ("event = \"new\")", Invalid, "unmatched )"),
        ("!(event = \"new\")", Invalid, "Segment ignores the !, use not"),
        ("event = \"x\" OR event = \"new\"", Invalid, "Segment ignores OR, and-ing both"),
        ("event = \"new\" AND type = \"track\"", Invalid, "keywords are lowercase"),
        ("properties.flag = TRUE", Invalid, "Segment compares with the string TRUE"),
        ("properties.nil = NULL", Invalid, "Segment compares with the string NULL"),
        ("CONTAINS(event, \"n\")", Invalid, "keywords are lowercase"),
        ("event = 'new'", Invalid, "Segment keeps the quotes in the value"),
        ("properties.single = 'pro'", Invalid, "Segment keeps the quotes in the value"),
        ("properties.quoted = \"say \\\"hi\\\"\"", Invalid, "no escapes in strings"),
        ("properties.plan = pro", Invalid, "bare words are not strings"),
        ("contains(properties.count, 3)", Invalid, "contains needs a string literal"),
        ("contains(properties.title)", Invalid, "Segment searches for \"eos\""),
        ("contains(properties.title \"Plan\")", Invalid, "missing comma"),
        ("event =", Invalid, "Segment compares with \"eos\""),
        ("event \"new\"", Invalid, "missing operator"),
        ("event == \"new\"", Invalid, "== is not an operator"),
        ("properties.plan <> \"pro\"", Invalid, "<> is not an operator"),
        ("properties = \"x\"", Invalid, "Segment reads properties.properties"),
        ("event.foo = \"new\"", Invalid, "Segment ignores .foo"),
        // JSON semantics for paths: Segment walks JS values (falsy parents, string length).
        ("properties.zero.q = 0", Match(false), "0 has no field q"),
        ("properties.title.length = 8", Match(false), "strings have no fields"),
    ];

    fn ours(fql: &str, event: &Value) -> Outcome {
        match Fql::parse(fql) {
            Ok(f) => Match(f.matches(event)),
            Err(_) => Invalid,
        }
    }

    #[test]
    fn fixture_matches_segment_except_documented_deviations() {
        let fixture = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fql_cases.json"
        ));
        let cases: Vec<Value> = serde_json::from_str(fixture).unwrap();
        assert!(cases.len() >= 150, "fixture has {} cases", cases.len());
        let mut used = vec![false; DEVIATIONS.len()];
        let mut differs = vec![false; DEVIATIONS.len()];
        let mut failures = Vec::new();
        for case in &cases {
            let fql = case["fql"].as_str().unwrap();
            let event = &case["event"];
            let segment = match &case["expected"] {
                Value::Bool(b) => Match(*b),
                Value::String(s) if s == "invalid" => Invalid,
                other => panic!("bad expected {other} for {fql:?}"),
            };
            let got = ours(fql, event);
            let want = match DEVIATIONS.iter().position(|(f, ..)| *f == fql) {
                Some(i) => {
                    used[i] = true;
                    differs[i] |= DEVIATIONS[i].1 != segment;
                    DEVIATIONS[i].1
                }
                None => segment,
            };
            if got != want {
                failures.push(format!("{fql:?} on {event}: got {got:?}, want {want:?}"));
            }
        }
        for (i, (fql, ..)) in DEVIATIONS.iter().enumerate() {
            assert!(used[i], "deviation {fql:?} has no fixture case");
            assert!(
                differs[i],
                "deviation {fql:?} agrees with segment, remove it"
            );
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    // ----- hand-written cases ----------------------------------------------------------------

    fn event() -> Value {
        json!({
            "type": "track",
            "event": "Order Completed",
            "userId": "u1",
            "properties": {
                "plan": "pro", "count": 3, "price": 9.5, "neg": -2, "zero": 0,
                "flag": true, "off": false, "nil": null, "s3": "3",
                "nested": {"a": {"b": "deep"}}, "list": [1, 2], "uni": "héllo"
            },
            "traits": {"email": "ada@example.com"},
            "context": {"library": {"name": "analytics-rs"}}
        })
    }

    #[track_caller]
    fn check(fql: &str, expected: bool) {
        let compiled = Fql::parse(fql).unwrap_or_else(|e| panic!("{fql:?}: {e}"));
        assert_eq!(compiled.matches(&event()), expected, "{fql}");
    }

    #[track_caller]
    fn reject(fql: &str, message: &str, offset: usize) {
        let e = Fql::parse(fql).expect_err(fql);
        assert_eq!((e.message.as_str(), e.offset), (message, offset), "{fql}");
    }

    #[test]
    fn equality() {
        check("event = \"Order Completed\"", true);
        check("event = \"order completed\"", false);
        check("type = \"track\"", true);
        check("userId = \"u1\"", true);
        check("properties.plan = \"pro\"", true);
        check("properties.nested.a.b = \"deep\"", true);
        check("traits.email = \"ada@example.com\"", true);
        check("context.library.name = \"analytics-rs\"", true);
        check("properties.s3 = \"3\"", true);
        check("properties.s3 = 3", false);
        check("properties.count = \"3\"", false);
        check("properties.count = 3", true);
        check("properties.count = 3.0", true);
        check("properties.count = +3", true);
        check("properties.neg = -2", true);
        check("properties.zero = -0", true);
        check("properties.price = 9.5", true);
        check("properties.flag = true", true);
        check("properties.flag = false", false);
        check("properties.off = false", true);
        check("properties.flag = \"true\"", false);
        check("properties.nested = \"x\"", false);
        check("properties.list = 1", false);
    }

    #[test]
    fn inequality() {
        check("event != \"x\"", true);
        check("event != \"Order Completed\"", false);
        check("properties.missing != \"a\"", true);
        check("properties.count != 4", true);
        check("properties.count != 3", false);
        check("properties.missing != 3", false);
        check("properties.s3 != 3", false);
        check("properties.flag != true", false);
        check("properties.off != true", true);
        check("properties.missing != false", true);
    }

    #[test]
    fn null_and_missing() {
        check("properties.nil = null", true);
        check("properties.missing = null", true);
        check("properties.nested.x.y = null", true);
        check("properties.plan.x = null", true);
        check("properties.zero = null", false);
        check("properties.nil != null", false);
        check("properties.zero != null", true);
        check("properties.off != null", true);
        check("name = null", true);
        check("userId != null", true);
        check("properties.missing = \"\"", false);
        check("properties.missing = false", false);
        check("properties.missing = 0", false);
        assert!(
            Fql::parse("event = null")
                .unwrap()
                .matches(&json!({"event": null}))
        );
        assert!(
            Fql::parse("properties.a = null")
                .unwrap()
                .matches(&json!(null))
        );
        assert!(!Fql::parse("event = \"x\"").unwrap().matches(&json!([1])));
    }

    #[test]
    fn orderings() {
        check("properties.count > 2", true);
        check("properties.count > 3", false);
        check("properties.count >= 3", true);
        check("properties.count < 3", false);
        check("properties.count <= 3", true);
        check("properties.count<3.5", true);
        check("properties.neg < -1", true);
        check("properties.s3 > 2", false);
        check("properties.flag > 0", false);
        check("properties.nil < 1", false);
        check("properties.missing < 1", false);
        check("properties.missing >= -1", false);
    }

    #[test]
    fn contains_and_match() {
        check("contains(event, \"Completed\")", true);
        check("contains(event, \"completed\")", false);
        check("contains(event, \"\")", true);
        check("contains(properties.count, \"3\")", false);
        check("contains(properties.missing, \"a\")", false);
        check("contains(properties.uni, \"é\")", true);
        check("!contains(event, \"x\")", true);
        check("!contains(event, \"Order\")", false);
        check("!contains(properties.missing, \"x\")", false);
        check("not contains(properties.missing, \"x\")", true);
        check("match(event, \"Order*\")", true);
        check("match(event, \"*Completed\")", true);
        check("match(event, \"*\")", true);
        check("match(event, \"Order?Completed\")", true);
        check("match(event, \"O*r*d\")", true);
        check("match(event, \"order*\")", false);
        check("match(event, \"Order\")", false);
        check("match(properties.uni, \"h?llo\")", true);
        check("match(properties.uni, \"h??llo\")", false);
        check("match(properties.count, \"*\")", false);
        check("!match(event, \"x*\")", true);
        check("!match(event, \"Order*\")", false);
        check("!match(properties.missing, \"x*\")", false);
        check("match(type, \"tr*\")", true);
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob("", ""));
        assert!(!glob("", "a"));
        assert!(glob("*", ""));
        assert!(glob("**", "abc"));
        assert!(!glob("?", ""));
        assert!(glob("?", "é"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("*aab", "aaaab"));
        assert!(glob("*.*", "a.b"));
        assert!(glob("é*ö", "éxxö"));
        assert!(!glob("a?", "a"));
    }

    #[test]
    fn boolean_operators_and_parentheses() {
        check("type = \"track\" and event = \"Order Completed\"", true);
        check("type = \"track\" and event = \"x\"", false);
        check("event = \"x\" or event = \"Order Completed\"", true);
        check("event = \"x\" or event = \"y\" or type = \"page\"", false);
        check("not event = \"x\"", true);
        check("not not event = \"x\"", false);
        check("not event = \"x\" and type = \"track\"", true);
        check("not (event = \"x\" or type = \"track\")", false);
        check(
            "(event = \"x\" or type = \"track\") and properties.count = 3",
            true,
        );
        check(
            "type = \"page\" and (event = \"x\" or properties.count = 3)",
            false,
        );
        check(
            "(type = \"page\" and event = \"x\") or properties.count = 3",
            true,
        );
        check("((((properties.count = 3))))", true);
        check("(contains(event, \"Order\") or type = \"page\")", true);
        check("event=\"Order Completed\"and(type=\"track\")", true);
        check(
            "\n\tevent = \"Order Completed\"\n\tor\n\tevent = \"x\"\n",
            true,
        );
    }

    #[test]
    fn strings_are_verbatim() {
        let row = json!({"event": "a\\", "properties": {"p": "C:\\dir", "e": ""}});
        let f = |s: &str| Fql::parse(s).unwrap().matches(&row);
        assert!(f(r#"event = "a\""#));
        assert!(f(r#"properties.p = "C:\dir""#));
        assert!(f(r#"properties.e = """#));
        assert!(f(r#"event = "b" or event = "a\""#));
    }

    #[test]
    fn error_messages() {
        reject("", "expected a condition", 0);
        reject("   ", "expected a condition", 3);
        reject("event", "expected a comparison operator after event", 5);
        reject("event =", "expected a literal after =", 7);
        reject(
            "event = pro",
            "expected a literal after =, strings need double quotes",
            8,
        );
        reject("event = \"x", "unterminated string literal", 8);
        reject(
            "event = 'x'",
            "single-quoted strings are not supported, use double quotes",
            8,
        );
        reject("properties.n = 1e3", "invalid number literal", 15);
        reject("properties.n = 1.", "invalid number literal", 15);
        reject("properties.n = -x", "invalid number literal", 15);
        reject(
            "properties.n < \"5\"",
            "expected a number literal after <",
            15,
        );
        reject(
            "properties.n >= null",
            "expected a number literal after >=",
            16,
        );
        reject(
            "contains(event, 3)",
            "expected a string literal after contains(path, ",
            16,
        );
        reject("match(event \"a*\")", "expected , after match(path", 12);
        reject("contains event", "expected ( after contains", 9);
        reject(
            "contains(\"a\", \"b\")",
            "expected a path after contains(",
            9,
        );
        reject("contains(event, \"a\"", "expected ) to close contains(", 19);
        reject(
            "!(event = \"a\")",
            "! must be followed by = or a function name",
            0,
        );
        reject(
            "!event = \"a\"",
            "! only negates contains and match, use not for other conditions",
            1,
        );
        reject(
            "event = \"a\" and type = \"b\" or event = \"c\"",
            "cannot mix and with or without parentheses",
            27,
        );
        reject(
            "event = \"a\" AND type = \"b\"",
            "keyword AND must be written and",
            12,
        );
        reject(
            "event = \"a\" type = \"b\"",
            "expected and, or or end of input",
            12,
        );
        reject(
            "(event = \"a\" Or type = \"b\")",
            "keyword Or must be written or",
            13,
        );
        reject("AND", "keyword AND must be written and", 0);
        reject(
            "properties.flag = True",
            "keyword True must be written true",
            18,
        );
        reject("event = \"a\" and", "expected a condition", 15);
        reject("or event = \"a\"", "expected a condition before or", 0);
        reject("(event = \"a\"", "unclosed (", 0);
        reject("(event = \"a\" \"b\")", "expected and, or or )", 13);
        reject("event = \"a\")", "unmatched )", 11);
        reject("()", "expected a condition before )", 1);
        reject(
            "anonymousId = \"a\"",
            "unknown field anonymousId, expected type, event, name, userId \
             or a path under properties, traits or context",
            0,
        );
        reject("event.x = \"a\"", "event has no nested fields", 5);
        reject(
            "properties = 1",
            "expected a field after properties, such as properties.name",
            0,
        );
        reject("properties. = 1", "expected a field name after the dot", 11);
        reject("properties.a[0] = 1", "unexpected character '['", 12);
        reject("event = \"a\"\r\n", "unexpected character '\\r'", 11);
        reject("event = \"a\" # x", "unexpected character '#'", 12);
        reject("event ≠ \"a\"", "unexpected character '≠'", 6);
        reject("properties.a\\b = 1", "unexpected character '\\\\'", 12);
        assert_eq!(
            Fql::parse("event").unwrap_err().to_string(),
            "expected a comparison operator after event at offset 5"
        );
    }

    #[test]
    fn limits() {
        let long = format!("event = \"{}\"", "x".repeat(MAX_SOURCE_BYTES));
        reject(&long, "fql is longer than 4096 bytes", 4096);
        let fits = format!("event = \"{}\"", "x".repeat(MAX_SOURCE_BYTES - 10));
        assert_eq!(fits.len(), MAX_SOURCE_BYTES);
        assert!(Fql::parse(&fits).is_ok());

        let nested = |n: usize| format!("{}event = \"x\"{}", "(".repeat(n), ")".repeat(n));
        assert!(Fql::parse(&nested(MAX_DEPTH)).is_ok());
        reject(
            &nested(MAX_DEPTH + 1),
            "nesting deeper than 64 levels",
            MAX_DEPTH,
        );
        let nots = |n: usize| format!("{}event = \"x\"", "not ".repeat(n));
        assert!(!Fql::parse(&nots(MAX_DEPTH)).unwrap().matches(&event()));
        assert!(Fql::parse(&nots(MAX_DEPTH - 1)).unwrap().matches(&event()));
        reject(
            &nots(MAX_DEPTH + 1),
            "nesting deeper than 64 levels",
            4 * MAX_DEPTH,
        );
        reject(
            &"(".repeat(4000),
            "nesting deeper than 64 levels",
            MAX_DEPTH,
        );
        reject(
            &"not ".repeat(1000),
            "nesting deeper than 64 levels",
            4 * MAX_DEPTH,
        );

        // Long flat chains do not nest.
        let chain = vec!["properties.count = 3"; 150].join(" and ");
        assert!(Fql::parse(&chain).unwrap().matches(&event()));
    }

    #[test]
    fn api_surface() {
        let src = "  event = \"a\" or event = \"b\"  ";
        let f = Fql::parse(src).unwrap();
        assert_eq!(f.source(), src);
        assert_eq!(format!("{f:?}"), format!("Fql({src:?})"));
        let g = f.clone();
        assert!(g.matches(&json!({"event": "b"})));
        assert!(!g.matches(&json!({"event": "c"})));
    }

    /// A tiny xorshift generator, so the fuzz test needs no extra dependencies.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'p>(&mut self, items: &[&'p str]) -> &'p str {
            items[self.below(items.len())]
        }
    }

    /// A random expression in the supported grammar.
    fn random_expr(rng: &mut Rng, depth: usize, out: &mut String) {
        const PATHS: [&str; 7] = [
            "event",
            "type",
            "userId",
            "properties.plan",
            "properties.count",
            "properties.nested.a.b",
            "traits.email",
        ];
        const OPS: [&str; 6] = ["=", "!=", "<", "<=", ">", ">="];
        const LITERALS: [&str; 8] = ["\"pro\"", "\"\"", "3", "-2.5", "null", "true", "false", "0"];
        match rng.below(if depth > 4 { 3 } else { 6 }) {
            0 | 1 => {
                let op = rng.pick(&OPS);
                out.push_str(&format!("{} {op} ", rng.pick(&PATHS)));
                out.push_str(if op.starts_with(['<', '>']) {
                    "3"
                } else {
                    rng.pick(&LITERALS)
                });
            }
            2 => {
                let bang = rng.pick(&["", "!"]);
                let function = rng.pick(&["contains", "match"]);
                let arg = rng.pick(&["\"o\"", "\"*r?\"", "\"\"", "\"é*\""]);
                out.push_str(&format!("{bang}{function}({}, {arg})", rng.pick(&PATHS)));
            }
            3 => {
                out.push_str("not ");
                random_expr(rng, depth + 1, out);
            }
            _ => {
                let conjunction = rng.pick(&[" and ", " or "]);
                out.push('(');
                for i in 0..2 + rng.below(3) {
                    if i > 0 {
                        out.push_str(conjunction);
                    }
                    random_expr(rng, depth + 1, out);
                }
                out.push(')');
            }
        }
    }

    /// Random inputs never panic; whatever parses evaluates without panicking.
    #[test]
    fn fuzz_never_panics() {
        const NOISE: [&str; 12] = [
            "(", ")", "\"", "'", "!", "=", ".", "\\", "é", " ", "and", "3",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let events = [event(), json!({}), json!(null), json!({"properties": "x"})];
        let (mut parsed, mut generated_ok) = (0, 0);
        for round in 0..30_000 {
            let src = match round % 3 {
                // Random bytes.
                0 => {
                    let bytes: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                // A valid expression: must parse.
                1 => {
                    let mut src = String::new();
                    random_expr(&mut rng, 0, &mut src);
                    let f = Fql::parse(&src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
                    assert_eq!(f.source(), src);
                    generated_ok += 1;
                    src
                }
                // A valid expression with a few characters cut out or noise spliced in.
                _ => {
                    let mut src = String::new();
                    random_expr(&mut rng, 0, &mut src);
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(src.len() + 1);
                        if !src.is_char_boundary(at) {
                            continue;
                        }
                        if rng.below(2) == 0 {
                            src.insert_str(at, rng.pick(&NOISE));
                        } else {
                            let end = (at + 1 + rng.below(4)).min(src.len());
                            if src.is_char_boundary(end) {
                                src.replace_range(at..end, "");
                            }
                        }
                    }
                    src
                }
            };
            if let Ok(f) = Fql::parse(&src) {
                parsed += 1;
                for e in &events {
                    let _ = f.matches(e);
                }
            }
        }
        assert_eq!(generated_ok, 10_000);
        assert!(parsed > 10_000, "only {parsed} inputs parsed");
    }
}
