//! The `@liquid` directive: Liquid templates with Segment's limits and disabled tags and filters.
//!
//! Segment evaluates `@liquid` with LiquidJS. This module runs the templates on the `liquid`
//! crate, which can only be used through its standard library (no custom tags or filters), and
//! bridges the two dialects in three places:
//!
//! - **Translation.** The template is tokenized with LiquidJS's rules (delimiters, quoting,
//!   greedy whitespace control, `raw`, `comment`, `#`, `echo`, `liquid`), disabled tags and
//!   filters are rejected, filters LiquidJS does not know are dropped (LiquidJS treats them as the
//!   identity), and the rest is re-emitted in the syntax the `liquid` crate parses: `and`/`or`
//!   chains are regrouped the LiquidJS way, math runs on floats like JavaScript numbers (which
//!   also rules out integer overflow), filters whose output differs are followed by fix-ups
//!   (`escape`, `url_encode`, `capitalize`, `modulo`), date formats are translated, and names the
//!   `liquid` grammar cannot spell are aliased.
//! - **Values.** The runtime resolves each variable path through the views below, then works on
//!   an owned copy of what it found. The views resolve paths with LiquidJS's rules (anything
//!   missing is nil instead of an error, `size`/`first`/`last`, string indexing). Where the first
//!   filter reads its input with a JavaScript coercion (`date`, `size`, the math filters, `first`,
//!   `join`, ...) or a comparison would (`== true`, `> 5`), a payload path is replaced by an alias
//!   whose value is coerced at render time, so LiquidJS's reading of dates, numeric strings and
//!   nil carries over.
//! - **Limits.** Instead of a wall-clock render limit, the rendered output is capped at
//!   [`MAX_OUTPUT_BYTES`] and a static estimate of the largest intermediate value (given the
//!   payload size) must stay under a working-memory budget, so no template can exhaust memory;
//!   a panic inside the engine is caught and reported as an error.
//!
//! Known differences that remain: a disabled filter fails at parse time even in a branch that
//! never runs; objects print their keys and values (LiquidJS: `[object Object]`); floats print
//! without an exponent; dividing by zero and math on non-numeric values computed by earlier
//! filters are errors; comparisons between two variables of different types follow the `liquid`
//! crate; `size` counts bytes on values computed by earlier filters; LiquidJS-only filters such
//! as `json` or `slugify` are rejected as not supported.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{LazyLock, OnceLock};

use liquid::model::{
    DateTime, DisplayCow, KString, KStringCow, ObjectView, ScalarCow, State, Value as LiquidValue,
    ValueView,
};
use liquid::reflection::ParserReflection;
use serde_json::Value as Json;

use super::budget::{Budget, OverBudget, json_len};
use crate::json::VRef;

/// Longest template accepted, in UTF-16 code units like JavaScript's `String.length`.
pub(crate) const MAX_TEMPLATE_CHARS: usize = 1000;
/// Largest rendered output accepted; a larger one is an error, not a truncation.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Budget for the estimated largest intermediate value of one render.
const MAX_WORKING_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
/// Deepest payload nesting accepted (serde_json's own parser stops at 128).
const MAX_PAYLOAD_DEPTH: usize = 256;
/// Prefix of the aliases given to names the `liquid` grammar cannot spell.
const ALIAS_PREFIX: &str = "__lq_";
/// Prefix of the aliases under which payload values are coerced for a filter.
const COERCED_ALIAS_PREFIX: &str = "__lqc_";

/// Tags Segment disables.
const DISABLED_TAGS: [&str; 6] = ["case", "for", "include", "layout", "render", "tablerow"];
/// Filters Segment disables.
const DISABLED_FILTERS: [&str; 20] = [
    "array_to_sentence_string",
    "concat",
    "find",
    "find_exp",
    "find_index",
    "find_index_exp",
    "group_by",
    "group_by_exp",
    "has",
    "has_exp",
    "map",
    "newline_to_br",
    "reject",
    "reject_exp",
    "reverse",
    "sort",
    "sort_natural",
    "uniq",
    "where_exp",
    "type",
];
/// LiquidJS filters the `liquid` crate lacks and that cannot be expressed with its filters.
const UNSUPPORTED_FILTERS: [&str; 26] = [
    "base64_decode",
    "base64_encode",
    "cgi_escape",
    "date_to_long_string",
    "date_to_rfc822",
    "date_to_string",
    "date_to_xmlschema",
    "hmac_sha256",
    "inspect",
    "json",
    "jsonify",
    "normalize_whitespace",
    "number_of_words",
    "pop",
    "push",
    "remove_last",
    "replace_last",
    "sample",
    "sha256",
    "shift",
    "slugify",
    "squish",
    "sum",
    "to_integer",
    "unshift",
    "uri_escape",
];
/// Filters that LiquidJS computes on JavaScript numbers: their input is coerced first.
const NUMERIC_FILTERS: [&str; 11] = [
    "abs",
    "at_least",
    "at_most",
    "ceil",
    "divided_by",
    "floor",
    "minus",
    "modulo",
    "plus",
    "round",
    "times",
];
/// What LiquidJS coerces a numeric filter's input with: nil, false, "" and [] become 0 and the
/// rest becomes a float, so the `liquid` crate neither rejects nil nor overflows integers.
const NUMERIC_COERCION: &str = " | default: 0 | times: 1.0";

/// What a panic inside the `liquid` crate is reported as (none is known to be reachable).
const ENGINE_PANIC: &str = "liquid engine failed on this template";

/// Error from parsing or rendering a `@liquid` template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LiquidError(pub String);

fn error(message: impl Into<String>) -> LiquidError {
    LiquidError(message.into())
}

fn unsupported(what: &str) -> LiquidError {
    error(format!(
        "liquid template uses {what}, which is not supported"
    ))
}

/// A parsed `@liquid` template, ready to render against many payloads.
pub(crate) struct LiquidTemplate {
    source: String,
    compiled: Option<Compiled>,
}

struct Compiled {
    template: liquid::Template,
    plan: Plan,
    coerced: Vec<CoercedInput>,
}

impl fmt::Debug for LiquidTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiquidTemplate")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LiquidTemplate {
    /// Parses `src`, rejecting templates over [`MAX_TEMPLATE_CHARS`], disabled tags and filters,
    /// and syntax errors.
    pub(crate) fn parse(src: &str) -> Result<LiquidTemplate, LiquidError> {
        if src.encode_utf16().count() > MAX_TEMPLATE_CHARS {
            return Err(error(format!(
                "liquid template values are limited to {MAX_TEMPLATE_CHARS} characters"
            )));
        }
        if src.is_empty() {
            return Ok(LiquidTemplate {
                source: String::new(),
                compiled: None,
            });
        }
        let translation = translate(src)?;
        let engine = engine()?;
        let parsed = panic::catch_unwind(AssertUnwindSafe(|| {
            engine.parser.parse(&translation.source)
        }));
        let template = match parsed {
            Ok(Ok(template)) => template,
            Ok(Err(e)) => return Err(error(format!("invalid liquid template: {}", describe(&e)))),
            Err(_) => return Err(error(ENGINE_PANIC)),
        };
        Ok(LiquidTemplate {
            source: src.to_owned(),
            compiled: Some(Compiled {
                template,
                plan: translation.plan,
                coerced: translation.coerced,
            }),
        })
    }

    /// Renders the template; the top-level keys of `payload` are the template's variables.
    #[cfg(test)]
    pub(crate) fn render(&self, payload: &Json) -> Result<String, LiquidError> {
        self.render_within(payload, &Budget::new(usize::MAX))
            .map_err(|e| match e {
                RenderError::Liquid(e) => e,
                RenderError::Limit(e) => error(e.to_string()),
            })
    }

    /// [`LiquidTemplate::render`] within a render's budget: the payload's copy, the growth the
    /// working-memory estimate allows beyond it, and the output are counted.
    pub(crate) fn render_within(&self, payload: &Json, b: &Budget) -> Result<String, RenderError> {
        let Some(compiled) = &self.compiled else {
            return Ok(String::new());
        };
        b.charge("@liquid", json_len(VRef::Json(payload), b.left()))?;
        let root = Root::new(payload, &compiled.coerced)?;
        let estimate = compiled.plan.estimate(root.weight);
        if estimate > MAX_WORKING_BYTES {
            return Err(error("liquid template may use too much memory").into());
        }
        // Whole bytes: the estimate is below MAX_WORKING_BYTES.
        b.charge("@liquid", (estimate - root.weight).max(0.0) as usize)?;
        let mut out = CappedWriter::default();
        let rendered = panic::catch_unwind(AssertUnwindSafe(|| {
            compiled.template.render_to(&mut out, &root)
        }));
        let rendered = match rendered {
            Ok(Ok(())) => String::from_utf8(out.buf)
                .map_err(|_| error("liquid template rendered invalid utf-8")),
            Ok(Err(_)) if out.overflowed => Err(error(format!(
                "liquid output is larger than {MAX_OUTPUT_BYTES} bytes"
            ))),
            Ok(Err(e)) => Err(error(format!(
                "liquid template failed to render: {}",
                describe(&e)
            ))),
            Err(_) => Err(error(ENGINE_PANIC)),
        }?;
        b.charge("@liquid", rendered.len())?;
        Ok(rendered)
    }
}

/// Why a render within a budget failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenderError {
    Liquid(LiquidError),
    Limit(OverBudget),
}

impl From<LiquidError> for RenderError {
    fn from(e: LiquidError) -> RenderError {
        RenderError::Liquid(e)
    }
}

impl From<OverBudget> for RenderError {
    fn from(e: OverBudget) -> RenderError {
        RenderError::Limit(e)
    }
}

/// One line out of the `liquid` crate's multi-line error, lowercase, without final punctuation.
fn describe(e: &liquid::Error) -> String {
    let text = e.to_string();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    if words.first() == Some(&"liquid:") {
        words.remove(0);
    }
    let mut line = words.join(" ");
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    let mut line = line
        .trim_end_matches(|c: char| c.is_ascii_punctuation() && c != ')' && c != '`')
        .to_owned();
    if let Some(first) = line.chars().next() {
        let lower: String = first.to_lowercase().collect();
        line.replace_range(..first.len_utf8(), &lower);
    }
    if line.is_empty() {
        line.push_str("unknown error");
    }
    line
}

/// The `liquid` parser with the standard library, and the shape of each filter's arguments.
struct Engine {
    parser: liquid::Parser,
    filters: HashMap<String, FilterShape>,
}

struct FilterShape {
    positional: usize,
    keywords: Vec<&'static str>,
}

static ENGINE: LazyLock<Result<Engine, String>> = LazyLock::new(|| {
    let parser = liquid::ParserBuilder::with_stdlib()
        .build()
        .map_err(|e| e.to_string())?;
    let filters = parser
        .filters()
        .map(|f| {
            let shape = FilterShape {
                positional: f.positional_parameters().len(),
                keywords: f.keyword_parameters().iter().map(|p| p.name).collect(),
            };
            (f.name().to_owned(), shape)
        })
        .collect();
    Ok(Engine { parser, filters })
});

fn engine() -> Result<&'static Engine, LiquidError> {
    ENGINE
        .as_ref()
        .map_err(|e| error(format!("liquid engine unavailable: {e}")))
}

/// Collects the output and refuses to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("liquid output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// LiquidJS lexical rules

/// Whitespace as LiquidJS's `BLANK` character class sees it.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Identifier characters as LiquidJS's `isWord` sees them.
fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '?')
    } else {
        !is_blank(c) && c != '\u{201c}' && c != '\u{201d}'
    }
}

fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|rest| rest.chars().next())
}

fn skip_blanks(s: &str, mut i: usize) -> usize {
    while let Some(c) = char_at(s, i).filter(|c| is_blank(*c)) {
        i += c.len_utf8();
    }
    i
}

fn skip_word(s: &str, mut i: usize) -> usize {
    while let Some(c) = char_at(s, i).filter(|c| is_word(*c)) {
        i += c.len_utf8();
    }
    i
}

fn trim_blanks(s: &str) -> &str {
    s.trim_matches(is_blank)
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: a port of LiquidJS's top-level tokenizer and whitespace control

#[derive(Debug, Clone)]
enum Token<'a> {
    Html(HtmlToken<'a>),
    Tag(TagToken<'a>),
    Output(OutputToken<'a>),
}

#[derive(Debug, Clone)]
struct HtmlToken<'a> {
    text: &'a str,
    trim_start: bool,
    trim_end: bool,
}

impl<'a> HtmlToken<'a> {
    fn content(&self) -> &'a str {
        let mut text = self.text;
        if self.trim_start {
            text = text.trim_start_matches(is_blank);
        }
        if self.trim_end {
            text = text.trim_end_matches(is_blank);
        }
        text
    }
}

#[derive(Debug, Clone)]
struct TagToken<'a> {
    name: &'a str,
    args: &'a str,
    trim_left: bool,
    trim_right: bool,
}

#[derive(Debug, Clone)]
struct OutputToken<'a> {
    content: &'a str,
    trim_left: bool,
    trim_right: bool,
}

/// The content of a `{%..%}` or `{{..}}` token spanning `begin..end`, with its trim markers.
fn delimited(src: &str, begin: usize, end: usize) -> (&str, bool, bool) {
    let b = src.as_bytes();
    let content_begin = begin + 2;
    let content_end = end.saturating_sub(2).max(begin);
    let trim_left = b.get(content_begin) == Some(&b'-');
    let trim_right = content_end > 0 && b.get(content_end - 1) == Some(&b'-');
    let left = if trim_left {
        content_begin + 1
    } else {
        content_begin
    };
    let right = if trim_right {
        content_end - 1
    } else {
        content_end
    };
    let content = if left < right {
        src.get(left..right).map_or("", trim_blanks)
    } else {
        ""
    };
    (content, trim_left, trim_right)
}

fn tag_token(src: &str, begin: usize, end: usize) -> Result<TagToken<'_>, LiquidError> {
    let (content, trim_left, trim_right) = delimited(src, begin, end);
    let (name, rest) = if let Some(rest) = content.strip_prefix('#') {
        ("#", rest)
    } else {
        let name_end = skip_word(content, 0);
        (&content[..name_end], &content[name_end..])
    };
    if name.is_empty() {
        return Err(error("illegal tag syntax, tag name expected"));
    }
    Ok(TagToken {
        name,
        args: trim_blanks(rest),
        trim_left,
        trim_right,
    })
}

/// Advances past the next occurrence of `pattern`, LiquidJS's `readTo`.
fn read_to(b: &[u8], p: &mut usize, pattern: &[u8]) -> Option<usize> {
    while *p < b.len() {
        *p += 1;
        if b[..*p].ends_with(pattern) {
            return Some(*p);
        }
    }
    None
}

/// End of a quoted string starting at `begin`, LiquidJS's `readQuoted`.
fn skip_quoted(b: &[u8], begin: usize) -> usize {
    let quote = b[begin];
    let mut p = begin + 1;
    let mut escaped = false;
    while p < b.len() {
        p += 1;
        let c = b[p - 1];
        if c == quote && !escaped {
            break;
        }
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        }
    }
    p
}

fn snapshot(src: &str, begin: usize) -> String {
    let rest = src.get(begin..).unwrap_or("");
    let mut shown: String = rest.chars().take(32).collect();
    if shown.len() < rest.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

fn tokenize(src: &str) -> Result<Vec<Token<'_>>, LiquidError> {
    let b = src.as_bytes();
    let n = b.len();
    let mut tokens = Vec::new();
    let mut p = 0;
    let mut in_raw = false;
    while p < n {
        if in_raw {
            let begin = p;
            let (token, next, still_raw) = read_raw(src, begin)?;
            tokens.push(token);
            p = next;
            in_raw = still_raw;
        } else if b[p..].starts_with(b"{%") {
            let begin = p;
            let end = read_to(b, &mut p, b"%}")
                .ok_or_else(|| error(format!("tag {} not closed", snapshot(src, begin))))?;
            let tag = tag_token(src, begin, end)?;
            in_raw = tag.name == "raw";
            tokens.push(Token::Tag(tag));
        } else if b[p..].starts_with(b"{{") {
            let begin = p;
            let mut end = None;
            while p < n {
                if b[p] == b'"' || b[p] == b'\'' {
                    p = skip_quoted(b, p);
                    continue;
                }
                p += 1;
                if b[..p].ends_with(b"}}") {
                    end = Some(p);
                    break;
                }
            }
            let end =
                end.ok_or_else(|| error(format!("output {} not closed", snapshot(src, begin))))?;
            let (content, trim_left, trim_right) = delimited(src, begin, end);
            tokens.push(Token::Output(OutputToken {
                content,
                trim_left,
                trim_right,
            }));
        } else {
            let begin = p;
            while p < n && !(b[p] == b'{' && matches!(b.get(p + 1), Some(b'%' | b'{'))) {
                p += 1;
            }
            tokens.push(Token::Html(HtmlToken {
                text: &src[begin..p],
                trim_start: false,
                trim_end: false,
            }));
        }
    }
    whitespace_control(&mut tokens);
    Ok(tokens)
}

/// The content of a `raw` block or its `endraw` tag, LiquidJS's `readEndrawOrRawContent`.
fn read_raw(src: &str, begin: usize) -> Result<(Token<'_>, usize, bool), LiquidError> {
    let b = src.as_bytes();
    let n = b.len();
    let mut p = begin;
    let mut left = read_to(b, &mut p, b"{%").map(|q| q - 2);
    while p < n {
        let word_begin = skip_blanks(src, p);
        p = skip_word(src, word_begin);
        if &src[word_begin..p] != "endraw" {
            left = read_to(b, &mut p, b"{%").map(|q| q - 2);
            continue;
        }
        while p <= n {
            if b[..p].ends_with(b"%}") {
                let end = p;
                let left = left.ok_or_else(|| error("raw block not closed"))?;
                if left == begin {
                    return Ok((Token::Tag(tag_token(src, begin, end)?), end, false));
                }
                let text = src
                    .get(begin..left)
                    .ok_or_else(|| error("raw block not closed"))?;
                let html = HtmlToken {
                    text,
                    trim_start: false,
                    trim_end: false,
                };
                return Ok((Token::Html(html), left, true));
            }
            if b[..p].ends_with(b"{%") {
                break;
            }
            p += 1;
        }
    }
    Err(error(format!("raw {} not closed", snapshot(src, begin))))
}

/// LiquidJS's greedy whitespace control: `-` trims all blanks next to the marker.
fn whitespace_control(tokens: &mut [Token<'_>]) {
    let mut in_raw = false;
    for i in 0..tokens.len() {
        let (trim_left, trim_right) = match &tokens[i] {
            Token::Html(_) => continue,
            Token::Tag(tag) => (tag.trim_left, tag.trim_right),
            Token::Output(output) => (output.trim_left, output.trim_right),
        };
        if !in_raw
            && trim_left
            && i > 0
            && let Token::Html(html) = &mut tokens[i - 1]
        {
            html.trim_end = true;
        }
        if let Token::Tag(tag) = &tokens[i] {
            match tag.name {
                "raw" => in_raw = true,
                "endraw" => in_raw = false,
                _ => {}
            }
        }
        if !in_raw
            && trim_right
            && let Some(Token::Html(html)) = tokens.get_mut(i + 1)
        {
            html.trim_start = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Markup parser: a port of LiquidJS's expression and filter syntax

#[derive(Debug, Clone, Copy, PartialEq)]
enum Literal {
    True,
    False,
    Nil,
    Empty,
    Blank,
}

#[derive(Debug, Clone)]
enum Operand {
    Literal(Literal),
    Str(String),
    Num(f64),
    /// A variable: the root name or index, then properties.
    Path(Vec<Prop>),
    /// Properties of a literal, like `"abc".size`.
    Access(Box<Operand>, Vec<Prop>),
    /// A range like `(1..3)`, only meaningful in the disabled loop tags.
    Range,
}

#[derive(Debug, Clone)]
enum Prop {
    Name(String),
    Index(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
    Contains,
    Not,
    And,
    Or,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Contains => "contains",
            Op::Not => "not",
            Op::And => "and",
            Op::Or => "or",
        }
    }

    fn is_comparison(self) -> bool {
        !matches!(self, Op::Not | Op::And | Op::Or)
    }
}

#[derive(Debug, Clone)]
enum ExprToken {
    Op(Op),
    Value(Operand),
}

#[derive(Debug, Clone)]
struct FilterCall {
    name: String,
    args: Vec<FilterArg>,
}

#[derive(Debug, Clone)]
enum FilterArg {
    Positional(Operand),
    Keyword(String, Option<Operand>),
}

#[derive(Debug, Clone)]
struct FilteredValue {
    expr: Vec<ExprToken>,
    filters: Vec<FilterCall>,
}

struct Lexer<'a> {
    s: &'a str,
    p: usize,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer { s, p: 0 }
    }

    fn peek(&self) -> Option<char> {
        char_at(self.s, self.p)
    }

    fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.s.as_bytes().get(self.p + offset).copied()
    }

    fn at_end(&self) -> bool {
        self.p >= self.s.len()
    }

    fn skip_blank(&mut self) {
        self.p = skip_blanks(self.s, self.p);
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.p..).unwrap_or("")
    }

    fn fail(&self, message: &str) -> LiquidError {
        error(format!("{message}, at {}", snapshot(self.s, self.p)))
    }

    fn read_identifier(&mut self) -> &'a str {
        self.skip_blank();
        let begin = self.p;
        self.p = skip_word(self.s, begin);
        &self.s[begin..self.p]
    }

    fn read_non_empty_identifier(&mut self) -> Option<&'a str> {
        let saved = self.p;
        let id = self.read_identifier();
        if id.is_empty() {
            self.p = saved;
            None
        } else {
            Some(id)
        }
    }

    fn read_operator(&mut self) -> Option<Op> {
        self.skip_blank();
        const OPERATORS: [(&str, Op, bool); 10] = [
            ("==", Op::Eq, false),
            ("!=", Op::Ne, false),
            (">=", Op::Ge, false),
            ("<=", Op::Le, false),
            (">", Op::Gt, false),
            ("<", Op::Lt, false),
            ("contains", Op::Contains, true),
            ("not", Op::Not, true),
            ("and", Op::And, true),
            ("or", Op::Or, true),
        ];
        let rest = self.rest();
        for (text, op, needs_boundary) in OPERATORS {
            if rest.starts_with(text) {
                if needs_boundary && char_at(rest, text.len()).is_some_and(is_word) {
                    return None;
                }
                self.p += text.len();
                return Some(op);
            }
        }
        None
    }

    fn read_literal(&mut self) -> Option<Literal> {
        self.skip_blank();
        const LITERALS: [(&str, Literal); 6] = [
            ("true", Literal::True),
            ("false", Literal::False),
            ("nil", Literal::Nil),
            ("null", Literal::Nil),
            ("empty", Literal::Empty),
            ("blank", Literal::Blank),
        ];
        let rest = self.rest();
        for (text, literal) in LITERALS {
            if rest.starts_with(text) {
                if char_at(rest, text.len()).is_some_and(is_word) {
                    return None;
                }
                self.p += text.len();
                return Some(literal);
            }
        }
        None
    }

    fn read_quoted(&mut self) -> Option<String> {
        self.skip_blank();
        let begin = self.p;
        if !matches!(self.peek_byte(0), Some(b'"' | b'\'')) {
            return None;
        }
        self.p = skip_quoted(self.s.as_bytes(), begin);
        Some(unescape(&self.s[begin..self.p]))
    }

    fn read_number(&mut self) -> Option<f64> {
        self.skip_blank();
        let b = self.s.as_bytes();
        let at = |i: usize| b.get(self.p + i).copied();
        let mut n = usize::from(matches!(at(0), Some(b'+' | b'-')));
        let mut decimal = false;
        let mut digit = false;
        loop {
            match at(n) {
                Some(c) if c.is_ascii_digit() => {
                    digit = true;
                    n += 1;
                }
                Some(b'.') if at(n + 1) != Some(b'.') => {
                    if decimal || !digit {
                        return None;
                    }
                    decimal = true;
                    n += 1;
                }
                _ => break,
            }
        }
        if !digit || char_at(self.s, self.p + n).is_some_and(is_word) {
            return None;
        }
        let text = &self.s[self.p..self.p + n];
        let value = text.strip_prefix('+').unwrap_or(text).parse::<f64>().ok()?;
        self.p += n;
        Some(value)
    }

    fn read_value(&mut self) -> Result<Option<Operand>, LiquidError> {
        self.skip_blank();
        let base = if let Some(literal) = self.read_literal() {
            Some(Operand::Literal(literal))
        } else if let Some(s) = self.read_quoted() {
            Some(Operand::Str(s))
        } else if let Some(n) = self.read_number() {
            Some(Operand::Num(n))
        } else if self.peek() == Some('(') {
            Some(self.read_range()?)
        } else {
            None
        };
        let props = self.read_properties(base.is_none())?;
        Ok(match base {
            _ if props.is_empty() => base,
            None => Some(Operand::Path(props)),
            Some(base) => Some(Operand::Access(Box::new(base), props)),
        })
    }

    fn read_range(&mut self) -> Result<Operand, LiquidError> {
        self.p += 1;
        let low = self
            .read_value()?
            .ok_or_else(|| self.fail("unexpected token, value expected"))?;
        self.skip_blank();
        if !self.rest().starts_with("..") {
            return Err(self.fail("invalid range syntax"));
        }
        self.p += 2;
        let high = self
            .read_value()?
            .ok_or_else(|| self.fail("unexpected token, value expected"))?;
        self.skip_blank();
        if self.peek() != Some(')') {
            return Err(self.fail("invalid range syntax"));
        }
        self.p += 1;
        let _ = (low, high);
        Ok(Operand::Range)
    }

    fn read_properties(&mut self, is_begin: bool) -> Result<Vec<Prop>, LiquidError> {
        let mut props = Vec::new();
        loop {
            if self.peek() == Some('[') {
                self.p += 1;
                let prop = match self.read_value()? {
                    Some(value) => Prop::Index(value),
                    None => Prop::Name(String::new()),
                };
                if read_to(self.s.as_bytes(), &mut self.p, b"]").is_none() {
                    return Err(self.fail("[ not closed"));
                }
                props.push(prop);
                continue;
            }
            if is_begin
                && props.is_empty()
                && let Some(id) = self.read_non_empty_identifier()
            {
                props.push(Prop::Name(id.to_owned()));
                continue;
            }
            if self.peek() == Some('.') && self.peek_byte(1) != Some(b'.') {
                self.p += 1;
                match self.read_non_empty_identifier() {
                    Some(id) => props.push(Prop::Name(id.to_owned())),
                    None => break,
                }
                continue;
            }
            break;
        }
        Ok(props)
    }

    fn read_expression(&mut self) -> Result<Vec<ExprToken>, LiquidError> {
        let mut tokens = Vec::new();
        while !self.at_end() {
            if let Some(op) = self.read_operator() {
                tokens.push(ExprToken::Op(op));
                continue;
            }
            match self.read_value()? {
                Some(value) => tokens.push(ExprToken::Value(value)),
                None => break,
            }
        }
        Ok(tokens)
    }

    fn read_filtered_value(&mut self) -> Result<FilteredValue, LiquidError> {
        let expr = self.read_expression()?;
        if expr.is_empty() {
            return Err(self.fail("invalid value expression"));
        }
        let mut filters = Vec::new();
        while let Some(filter) = self.read_filter()? {
            filters.push(filter);
        }
        Ok(FilteredValue { expr, filters })
    }

    fn read_filter(&mut self) -> Result<Option<FilterCall>, LiquidError> {
        self.skip_blank();
        if self.at_end() || matches!(self.peek(), Some(')' | ',')) {
            return Ok(None);
        }
        if self.peek() != Some('|') {
            return Err(self.fail("expected \"|\" before filter"));
        }
        self.p += 1;
        let name = self.read_identifier();
        if name.is_empty() {
            if !self.at_end() {
                return Err(self.fail("expected filter name"));
            }
            return Ok(None);
        }
        let mut args = Vec::new();
        self.skip_blank();
        if self.peek() == Some(':') {
            loop {
                self.p += 1;
                if let Some(arg) = self.read_filter_arg()? {
                    args.push(arg);
                }
                self.skip_blank();
                if !(self.at_end() || matches!(self.peek(), Some(',' | '|' | ')'))) {
                    return Err(self.fail("unexpected character"));
                }
                if self.peek() != Some(',') {
                    break;
                }
            }
        } else if !(self.at_end() || matches!(self.peek(), Some('|' | ')' | ','))) {
            return Err(self.fail("expected \":\" after filter name"));
        }
        Ok(Some(FilterCall {
            name: name.to_owned(),
            args,
        }))
    }

    fn read_filter_arg(&mut self) -> Result<Option<FilterArg>, LiquidError> {
        let begin = skip_blanks(self.s, self.p);
        let Some(key) = self.read_value()? else {
            return Ok(None);
        };
        let key_text = &self.s[begin..self.p];
        self.skip_blank();
        if self.peek() != Some(':') {
            return Ok(Some(FilterArg::Positional(key)));
        }
        self.p += 1;
        let value = self.read_value()?;
        Ok(Some(FilterArg::Keyword(key_text.to_owned(), value)))
    }
}

/// Decodes a quoted string token like LiquidJS's `parseStringLiteral`.
fn unescape(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let last = chars.len().saturating_sub(1);
    let mut i = 1;
    while i < last {
        let c = chars[i];
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        match next {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{0b}'),
            Some('u') => {
                let mut j = i + 2;
                let mut code = 0u32;
                while j <= i + 5 && chars.get(j).is_some_and(char::is_ascii_hexdigit) {
                    code = code * 16 + chars[j].to_digit(16).unwrap_or(0);
                    j += 1;
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i = j;
                continue;
            }
            Some(d) if ('0'..='7').contains(&d) => {
                let mut j = i + 1;
                let mut code = 0u32;
                while j <= i + 3 && chars.get(j).is_some_and(|c| ('0'..='7').contains(c)) {
                    code = code * 8 + chars[j].to_digit(8).unwrap_or(0);
                    j += 1;
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i = j;
                continue;
            }
            Some(other) => out.push(other),
            None => {}
        }
        i += 2;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Translation into the `liquid` crate's dialect

struct Translation {
    source: String,
    plan: Plan,
    coerced: Vec<CoercedInput>,
}

/// A payload path whose value a filter reads with a JavaScript coercion, evaluated at render
/// time and exposed under `alias`.
#[derive(Debug, Clone)]
struct CoercedInput {
    alias: String,
    path: Vec<String>,
    coercion: Coercion,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Coercion {
    /// LiquidJS's date parsing, for `date`.
    Date,
    /// JavaScript's `+value || 0`, for the math filters.
    Number,
    /// LiquidJS's `size` filter: `(value && value.length) || 0`.
    Size,
    /// Compared with `true`: only `true` equals it (the `liquid` crate compares truthiness).
    IsTrue,
    /// Compared with `false`: only `false` equals it.
    IsFalse,
    /// Compared with a number by `<`, `>`, `<=` or `>=`: JavaScript's `Number(value)`.
    Relational,
    /// `first` and `last`: an array or a string, anything else reads as "".
    ArrayLike,
    /// `join`, `compact` and `where`: nil is `[]` and any other non-array `[value]`.
    ToArray,
}

#[derive(Default)]
struct Translator {
    out: String,
    plan: Plan,
    blocks: Vec<&'static str>,
    /// Variables the template assigns or captures: a filter input among them is not coerced
    /// ahead of time, as the payload value is not what the filter reads.
    assigned: HashSet<String>,
    coerced: Vec<CoercedInput>,
}

/// Names the template assigns or captures, including inside `liquid` tags.
fn assigned_names(tokens: &[Token<'_>]) -> HashSet<String> {
    fn visit(name: &str, args: &str, names: &mut HashSet<String>) {
        let mut lexer = Lexer::new(args);
        match name {
            "assign" => {
                names.insert(lexer.read_identifier().to_owned());
            }
            "capture" => {
                let id = lexer.read_identifier();
                if id.is_empty() {
                    names.extend(lexer.read_quoted());
                } else {
                    names.insert(id.to_owned());
                }
            }
            "liquid" => {
                for line in args.split('\n') {
                    let line = trim_blanks(line);
                    let (name, rest) = line.split_at(skip_word(line, 0));
                    visit(name, trim_blanks(rest), names);
                }
            }
            _ => {}
        }
    }
    let mut names = HashSet::new();
    for token in tokens {
        if let Token::Tag(tag) = token {
            visit(tag.name, tag.args, &mut names);
        }
    }
    names
}

fn translate(src: &str) -> Result<Translation, LiquidError> {
    let tokens = tokenize(src)?;
    let mut t = Translator {
        assigned: assigned_names(&tokens),
        ..Translator::default()
    };
    let mut queue: VecDeque<Token<'_>> = tokens.into();
    while let Some(token) = queue.pop_front() {
        match token {
            Token::Html(html) => t.text(html.content()),
            Token::Output(output) => t.output(output.content)?,
            Token::Tag(tag) => t.tag(&tag, &mut queue)?,
        }
    }
    if let Some(open) = t.blocks.last() {
        return Err(error(format!("tag \"{open}\" not closed")));
    }
    Ok(Translation {
        source: t.out,
        plan: t.plan,
        coerced: t.coerced,
    })
}

impl Translator {
    /// Literal text; a `{` that could start a delimiter is written as an output of `"{"`.
    fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.plan.steps.push(Step::Text(text.len()));
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '{' && matches!(chars.peek(), None | Some('{' | '%')) {
                self.out.push_str("{{ \"{\" }}");
            } else {
                self.out.push(c);
            }
        }
    }

    fn output(&mut self, markup: &str) -> Result<(), LiquidError> {
        let mut lexer = Lexer::new(markup);
        let value = lexer.read_filtered_value()?;
        match simple_value(&value.expr) {
            Some(operand) => {
                let chain = self.chain(operand, &value.filters)?;
                let _ = write!(self.out, "{{{{ {chain} }}}}");
            }
            None => {
                if self.has_filters(&value.filters)? {
                    return Err(unsupported("filters on a condition"));
                }
                let condition = self.emit_condition(&value.expr)?;
                let _ = write!(
                    self.out,
                    "{{% if {condition} %}}true{{% else %}}false{{% endif %}}"
                );
                self.plan.steps.push(Step::Text(5));
            }
        }
        Ok(())
    }

    fn tag<'a>(
        &mut self,
        tag: &TagToken<'a>,
        queue: &mut VecDeque<Token<'a>>,
    ) -> Result<(), LiquidError> {
        let name = tag.name;
        if DISABLED_TAGS.contains(&name) {
            return Err(error(format!("tag \"{name}\" is disabled")));
        }
        match name {
            "#" => {
                let bad_line = tag.args.split('\n').skip(1).any(|line| {
                    let line = trim_blanks(line);
                    !line.is_empty() && !line.starts_with('#')
                });
                if bad_line {
                    return Err(error(
                        "every line of an inline comment must start with a '#' character",
                    ));
                }
            }
            "comment" => loop {
                match queue.pop_front() {
                    Some(Token::Tag(t)) if t.name == "endcomment" => break,
                    Some(_) => {}
                    None => return Err(error("tag \"comment\" not closed")),
                }
            },
            "raw" => {
                let mut content = String::new();
                loop {
                    match queue.pop_front() {
                        Some(Token::Tag(t)) if t.name == "endraw" => break,
                        Some(Token::Html(html)) => content.push_str(html.text),
                        Some(_) => return Err(unsupported("tags inside raw")),
                        None => return Err(error("tag \"raw\" not closed")),
                    }
                }
                self.text(&content);
            }
            "echo" => {
                if !tag.args.is_empty() {
                    self.output(tag.args)?;
                }
            }
            "liquid" => {
                let mut lines = Vec::new();
                for line in tag.args.split('\n') {
                    let line = trim_blanks(line);
                    if line.is_empty() {
                        continue;
                    }
                    let (name, rest) = match line.strip_prefix('#') {
                        Some(rest) => ("#", rest),
                        None => line.split_at(skip_word(line, 0)),
                    };
                    if name.is_empty() {
                        return Err(error("illegal liquid tag syntax"));
                    }
                    lines.push(Token::Tag(TagToken {
                        name,
                        args: trim_blanks(rest),
                        trim_left: false,
                        trim_right: false,
                    }));
                }
                for line in lines.into_iter().rev() {
                    queue.push_front(line);
                }
            }
            "block" => self.blocks.push("block"),
            "endblock" => self.close("block", name)?,
            "assign" => self.assign(tag.args)?,
            "capture" => {
                let mut lexer = Lexer::new(tag.args);
                let id = lexer.read_identifier();
                let variable = if id.is_empty() {
                    lexer
                        .read_quoted()
                        .ok_or_else(|| error("invalid capture name"))?
                } else {
                    id.to_owned()
                };
                let _ = write!(self.out, "{{% capture {} %}}", emit_root(&variable));
                self.plan.steps.push(Step::CaptureStart);
                self.blocks.push("capture");
            }
            "endcapture" => {
                self.close("capture", name)?;
                self.out.push_str("{% endcapture %}");
                self.plan.steps.push(Step::CaptureEnd);
            }
            "if" | "unless" => {
                let condition = self.condition_of(tag.args)?;
                let _ = write!(self.out, "{{% {name} {condition} %}}");
                self.blocks.push(if name == "if" { "if" } else { "unless" });
            }
            "elsif" => {
                let condition = self.condition_of(tag.args)?;
                match self.blocks.last() {
                    Some(&("if" | "unless-elsif")) => {
                        let _ = write!(self.out, "{{% elsif {condition} %}}");
                    }
                    // The `liquid` crate has no `elsif` in `unless`: the rest of the chain
                    // becomes an `if` in its `else`.
                    Some(&"unless") => {
                        let _ = write!(self.out, "{{% else %}}{{% if {condition} %}}");
                        self.blocks.push("unless-elsif");
                    }
                    _ => return Err(error("tag \"elsif\" not found")),
                }
            }
            "else" => {
                match self.blocks.last() {
                    Some(&"if") if !tag.args.is_empty() => {
                        return Err(error(format!("unexpected {:?}", tag.args)));
                    }
                    Some(&("if" | "unless" | "unless-elsif")) => {}
                    _ => return Err(error("tag \"else\" not found")),
                }
                self.out.push_str("{% else %}");
            }
            "endif" => {
                if !tag.args.is_empty() {
                    return Err(error(format!("unexpected {:?}", tag.args)));
                }
                self.close("if", name)?;
                self.out.push_str("{% endif %}");
            }
            "endunless" => {
                if self.blocks.last() == Some(&"unless-elsif") {
                    self.blocks.pop();
                    self.out.push_str("{% endif %}");
                }
                self.close("unless", name)?;
                self.out.push_str("{% endunless %}");
            }
            "increment" | "decrement" => {
                let variable = Lexer::new(tag.args).read_identifier();
                if variable.is_empty() {
                    return Err(unsupported(&format!("{name} without a variable name")));
                }
                let _ = write!(self.out, "{{% {name} {} %}}", emit_root(variable));
                self.plan.steps.push(Step::Text(24));
            }
            "cycle" => self.cycle(tag.args)?,
            "break" | "continue" => {
                let _ = write!(self.out, "{{% {name} %}}");
            }
            _ => return Err(error(format!("tag \"{name}\" not found"))),
        }
        Ok(())
    }

    /// A value and its filters. When the first filter reads its input with a JavaScript
    /// coercion (`date`, `size`, the math filters), a literal input is coerced here and a payload
    /// path is coerced at render time, under an alias.
    fn chain(&mut self, operand: &Operand, calls: &[FilterCall]) -> Result<String, LiquidError> {
        let mut operand = match operand {
            Operand::Access(base, props) => fold_literal_access(base, props)?,
            _ => operand.clone(),
        };
        let mut filters = self.filters(calls)?;
        let mut input = operand_size(&operand);
        let mut alias = None;
        let coercion = match filters.items.first().map(|f| f.name.as_str()) {
            Some("date") => Some(Coercion::Date),
            Some("size") => Some(Coercion::Size),
            Some("first" | "last") => Some(Coercion::ArrayLike),
            Some("join" | "compact" | "where") => Some(Coercion::ToArray),
            Some(name) if NUMERIC_FILTERS.contains(&name) => Some(Coercion::Number),
            _ => None,
        };
        if let Some(coercion) = coercion {
            match &operand {
                Operand::Path(props) => {
                    alias = self.coerced_alias(props, coercion);
                    if alias.is_some() {
                        input = Size::Variable;
                    }
                }
                Operand::Str(_) | Operand::Num(_) | Operand::Literal(_) => {
                    if let Some(coerced) = coerce_literal(&operand, coercion) {
                        operand = coerced;
                    }
                }
                _ => {}
            }
            if alias.is_some() || coercion == Coercion::Size {
                match coercion {
                    // The alias or literal already is the size.
                    Coercion::Size if alias.is_some() || matches!(operand, Operand::Num(_)) => {
                        filters.items.remove(0);
                        filters.costs.remove(0);
                    }
                    // The alias already is a float.
                    Coercion::Number => filters.items[0].prefix = "",
                    _ => {}
                }
            }
        }
        let emitted = match alias {
            Some(alias) => alias,
            None => emit_operand(&operand)?,
        };
        self.plan.steps.push(Step::Chain(input, filters.costs));
        let text: String = filters.items.iter().map(FilterText::text).collect();
        Ok(format!("{emitted}{text}"))
    }

    /// The alias of a payload path coerced for a filter, unless the path is dynamic or its root
    /// is assigned by the template.
    fn coerced_alias(&mut self, props: &[Prop], coercion: Coercion) -> Option<String> {
        let path = static_path(props)?;
        if self.assigned.contains(path.first()?) {
            return None;
        }
        if let Some(input) = self
            .coerced
            .iter()
            .find(|input| input.path == path && input.coercion == coercion)
        {
            return Some(input.alias.clone());
        }
        let alias = format!("{COERCED_ALIAS_PREFIX}{}", self.coerced.len());
        self.coerced.push(CoercedInput {
            alias: alias.clone(),
            path,
            coercion,
        });
        Some(alias)
    }

    /// Translates a filter chain: disabled filters are errors, unknown filters are dropped like
    /// LiquidJS drops them, and arguments the `liquid` crate does not take are left out.
    fn filters(&mut self, calls: &[FilterCall]) -> Result<Filters, LiquidError> {
        let engine = engine()?;
        let mut out = Filters {
            items: Vec::new(),
            costs: Vec::new(),
        };
        for call in calls {
            let name = call.name.as_str();
            if DISABLED_FILTERS.contains(&name) {
                return Err(error(format!("filter \"{name}\" is disabled")));
            }
            let name = if name == "xml_escape" { "escape" } else { name };
            let Some(shape) = engine.filters.get(name) else {
                if UNSUPPORTED_FILTERS.contains(&name) {
                    return Err(error(format!("filter \"{name}\" is not supported")));
                }
                // LiquidJS renders an undefined filter (and `raw`) as the identity.
                continue;
            };
            let numeric = NUMERIC_FILTERS.contains(&name);
            let prefix = match name {
                _ if numeric => NUMERIC_COERCION,
                // LiquidJS lowercases the rest of the string.
                "capitalize" => " | downcase",
                _ => "",
            };
            let mut args = Vec::new();
            let mut sizes = Vec::new();
            let mut positional = 0;
            if name == "date" {
                // The format must be known here to be translated (and its widths bounded).
                let format = match call.args.first() {
                    None | Some(FilterArg::Positional(Operand::Literal(Literal::Nil))) => {
                        DEFAULT_DATE_FORMAT.to_owned()
                    }
                    Some(FilterArg::Positional(Operand::Str(format))) => format.clone(),
                    Some(FilterArg::Positional(Operand::Num(n))) => js_number(*n),
                    _ => return Err(unsupported("a date format that is not a literal string")),
                };
                let format = translate_date_format(&format)?;
                sizes.push(Size::Literal(format.len() as f64));
                args.push(emit_string(&format)?);
                positional = 1;
            } else if name == "default" && call.args.is_empty() {
                args.push("nil".to_owned());
                positional = 1;
            }
            for arg in call.args.iter().skip(positional) {
                match arg {
                    FilterArg::Positional(operand) => {
                        if positional < shape.positional {
                            positional += 1;
                            sizes.push(operand_size(operand));
                            args.push(self.filter_arg(operand, numeric)?);
                        }
                    }
                    FilterArg::Keyword(key, value) => {
                        if shape.keywords.contains(&key.as_str()) {
                            let value =
                                value.as_ref().map_or(Ok("nil".to_owned()), emit_operand)?;
                            args.push(format!("{key}: {value}"));
                        }
                    }
                }
            }
            let args = args.join(", ");
            let mut body = format!(" | {name}");
            if !args.is_empty() {
                let _ = write!(body, ": {args}");
            }
            match name {
                // LiquidJS's modulo is floored: `((v % a) + a) % a`.
                "modulo" => {
                    let _ = write!(body, " | plus: {args} | modulo: {args}");
                }
                // LiquidJS escapes `"` as `&#34;`.
                "escape" | "escape_once" => body.push_str(r#" | replace: "&quot;", "&#34;""#),
                // LiquidJS encodes a space as `+`.
                "url_encode" => body.push_str(r#" | replace: "%20", "+""#),
                _ => {}
            }
            if numeric && !matches!(name, "ceil" | "floor" | "round") {
                // JavaScript prints negative zero as "0".
                body.push_str(" | plus: 0");
            }
            out.costs.push(filter_cost(name, &sizes));
            out.items.push(FilterText {
                name: name.to_owned(),
                prefix,
                body,
            });
        }
        Ok(out)
    }

    /// A filter argument; the math filters read theirs as JavaScript numbers.
    fn filter_arg(&mut self, operand: &Operand, numeric: bool) -> Result<String, LiquidError> {
        if numeric {
            if let Operand::Path(props) = operand
                && let Some(alias) = self.coerced_alias(props, Coercion::Number)
            {
                return Ok(alias);
            }
            if let Some(coerced) = coerce_literal(operand, Coercion::Number) {
                return emit_operand(&coerced);
            }
        }
        emit_operand(operand)
    }

    /// An `if`, `elsif` or `unless` condition in the `liquid` crate's syntax.
    fn condition_of(&mut self, args: &str) -> Result<String, LiquidError> {
        let value = Lexer::new(args).read_filtered_value()?;
        if self.has_filters(&value.filters)? {
            return Err(unsupported("filters in a condition"));
        }
        self.emit_condition(&value.expr)
    }

    /// Whether a filter chain does anything (filters LiquidJS ignores do not count).
    fn has_filters(&mut self, calls: &[FilterCall]) -> Result<bool, LiquidError> {
        Ok(!self.filters(calls)?.items.is_empty())
    }

    fn close(&mut self, block: &str, end_tag: &str) -> Result<(), LiquidError> {
        if self.blocks.last() == Some(&block) {
            self.blocks.pop();
            Ok(())
        } else {
            Err(error(format!("tag \"{end_tag}\" not found")))
        }
    }

    fn assign(&mut self, args: &str) -> Result<(), LiquidError> {
        let mut lexer = Lexer::new(args);
        let key = lexer.read_identifier();
        if key.is_empty() {
            return Err(error("expected variable name"));
        }
        lexer.skip_blank();
        if lexer.peek() != Some('=') {
            return Err(error("expected \"=\""));
        }
        lexer.p += 1;
        let value = lexer.read_filtered_value()?;
        let key = emit_root(key);
        match simple_value(&value.expr) {
            Some(operand) => {
                let chain = self.chain(operand, &value.filters)?;
                let _ = write!(self.out, "{{% assign {key} = {chain} %}}");
            }
            None => {
                if self.has_filters(&value.filters)? {
                    return Err(unsupported("filters on a condition"));
                }
                let condition = self.emit_condition(&value.expr)?;
                let _ = write!(
                    self.out,
                    "{{% if {condition} %}}{{% assign {key} = true %}}\
                     {{% else %}}{{% assign {key} = false %}}{{% endif %}}"
                );
            }
        }
        Ok(())
    }

    fn cycle(&mut self, args: &str) -> Result<(), LiquidError> {
        let mut lexer = Lexer::new(args);
        let begin = lexer.p;
        let mut group = None;
        if let Some(first) = lexer.read_value()? {
            lexer.skip_blank();
            if lexer.peek() == Some(':') {
                lexer.p += 1;
                match first {
                    Operand::Str(name) => group = Some(name),
                    _ => return Err(unsupported("a cycle group that is not a string")),
                }
            } else {
                lexer.p = begin;
            }
        }
        let mut candidates = Vec::new();
        while !lexer.at_end() {
            let value = lexer.read_filtered_value()?;
            match value.expr.as_slice() {
                [ExprToken::Value(operand)] if value.filters.is_empty() => {
                    candidates.push(emit_operand(operand)?);
                }
                _ => return Err(unsupported("cycle values with filters or operators")),
            }
            lexer.skip_blank();
            if lexer.peek() == Some(',') {
                lexer.p += 1;
            } else if !lexer.at_end() {
                return Err(unsupported("this cycle syntax"));
            }
        }
        if candidates.is_empty() {
            return Err(error(format!("empty candidates: {args:?}")));
        }
        let group = match group {
            Some(name) => format!("{}: ", emit_string(&name)?),
            None => String::new(),
        };
        let _ = write!(self.out, "{{% cycle {group}{} %}}", candidates.join(", "));
        self.plan.steps.push(Step::Text(args.len()));
        Ok(())
    }
}

/// The value of an expression without operators: LiquidJS evaluates `a b` to `a`.
fn simple_value(expr: &[ExprToken]) -> Option<&Operand> {
    if expr.iter().any(|token| matches!(token, ExprToken::Op(_))) {
        return None;
    }
    match expr.first() {
        Some(ExprToken::Value(operand)) => Some(operand),
        _ => None,
    }
}

/// One comparison or operand of a condition, negated when preceded by an odd number of `not`.
struct Atom<'a> {
    negated: bool,
    left: &'a Operand,
    comparison: Option<(Op, &'a Operand)>,
}

impl Translator {
    /// Emits a LiquidJS condition for the `liquid` crate. LiquidJS groups `and` and `or` from the
    /// right (`a and b or c` is `a and (b or c)`) while the `liquid` crate binds `and` tighter; the
    /// condition is rewritten as the equivalent disjunction of conjunctions.
    fn emit_condition(&mut self, expr: &[ExprToken]) -> Result<String, LiquidError> {
        let mut atoms = Vec::new();
        let mut joins = Vec::new();
        let mut i = 0;
        loop {
            let mut negated = false;
            while let Some(ExprToken::Op(Op::Not)) = expr.get(i) {
                negated = !negated;
                i += 1;
            }
            let Some(ExprToken::Value(left)) = expr.get(i) else {
                return Err(unsupported("this condition syntax"));
            };
            i += 1;
            let mut comparison = None;
            if let Some(ExprToken::Op(op)) = expr.get(i)
                && op.is_comparison()
            {
                let Some(ExprToken::Value(right)) = expr.get(i + 1) else {
                    return Err(unsupported("this condition syntax"));
                };
                comparison = Some((*op, right));
                i += 2;
            }
            atoms.push(Atom {
                negated,
                left,
                comparison,
            });
            match expr.get(i) {
                None => break,
                Some(ExprToken::Op(op @ (Op::And | Op::Or))) => {
                    joins.push(*op);
                    i += 1;
                }
                Some(_) => return Err(unsupported("this condition syntax")),
            }
        }
        let mut emitted = Vec::with_capacity(atoms.len());
        for atom in &atoms {
            emitted.push(self.emit_atom(atom)?);
        }
        let Some(last) = emitted.pop() else {
            return Err(unsupported("this condition syntax"));
        };
        let mut disjuncts: Vec<Vec<String>> = vec![vec![last]];
        for (atom, join) in emitted.into_iter().zip(joins).rev() {
            match join {
                Op::And => {
                    for conjunct in &mut disjuncts {
                        conjunct.insert(0, atom.clone());
                    }
                }
                _ => disjuncts.insert(0, vec![atom]),
            }
        }
        if disjuncts.iter().map(Vec::len).sum::<usize>() > 256 {
            return Err(unsupported("a condition this long"));
        }
        Ok(disjuncts
            .iter()
            .map(|conjunct| conjunct.join(" and "))
            .collect::<Vec<_>>()
            .join(" or "))
    }

    fn emit_atom(&mut self, atom: &Atom<'_>) -> Result<String, LiquidError> {
        let Some((op, right)) = atom.comparison else {
            let left = emit_operand(atom.left)?;
            // In the `liquid` crate `x == false` holds exactly when `x` is nil or false.
            return Ok(if atom.negated {
                format!("{left} == false")
            } else {
                left
            });
        };
        let op = match (op, atom.negated) {
            (op, false) => op,
            (Op::Eq, true) => Op::Ne,
            (Op::Ne, true) => Op::Eq,
            _ => return Err(unsupported("\"not\" before this comparison")),
        };
        let left = self.comparison_operand(atom.left, op, right)?;
        let right = self.comparison_operand(right, op, atom.left)?;
        if op == Op::Contains {
            // `nil contains x` is an error in the `liquid` crate and false in LiquidJS.
            return Ok(format!("{left} != nil and {left} contains {right}"));
        }
        Ok(format!("{left} {} {right}", op.text()))
    }

    /// One side of a comparison. A payload path compared with a literal is coerced the way the
    /// JavaScript comparison reads it where the `liquid` crate would read it differently:
    /// `==` with a boolean is strict in LiquidJS (the `liquid` crate compares truthiness) and
    /// `<`, `>`, `<=`, `>=` with a number convert the other side to a number.
    fn comparison_operand(
        &mut self,
        operand: &Operand,
        op: Op,
        other: &Operand,
    ) -> Result<String, LiquidError> {
        let coercion = match (op, other) {
            (Op::Eq | Op::Ne, Operand::Literal(Literal::True)) => Some(Coercion::IsTrue),
            (Op::Eq | Op::Ne, Operand::Literal(Literal::False)) => Some(Coercion::IsFalse),
            (Op::Gt | Op::Lt | Op::Ge | Op::Le, Operand::Num(_)) => Some(Coercion::Relational),
            _ => None,
        };
        if let (Some(coercion), Operand::Path(props)) = (coercion, operand)
            && let Some(alias) = self.coerced_alias(props, coercion)
        {
            return Ok(alias);
        }
        emit_operand(operand)
    }
}

/// A translated filter chain.
struct Filters {
    items: Vec<FilterText>,
    costs: Vec<Cost>,
}

/// One translated filter: the coercion of its input, then the filter itself.
struct FilterText {
    name: String,
    prefix: &'static str,
    body: String,
}

impl FilterText {
    fn text(&self) -> String {
        format!("{}{}", self.prefix, self.body)
    }
}

/// A literal as a filter reading it with `coercion` sees it, when that can be written as a
/// literal the `liquid` crate reads the same way.
fn coerce_literal(operand: &Operand, coercion: Coercion) -> Option<Operand> {
    match coercion {
        Coercion::Date => match operand {
            Operand::Str(s) if !s.bytes().all(|b| b.is_ascii_digit()) => {
                parse_js_date(s).map(|date| Operand::Str(date.to_string()))
            }
            Operand::Num(n) if n.fract() == 0.0 && n.abs() < MAX_SAFE_INTEGER => {
                Some(Operand::Str(format!("{}", *n as i64)))
            }
            _ => None,
        },
        Coercion::Number => match operand {
            Operand::Str(s) => {
                let n = js_string_to_number(s);
                let n = if n.is_nan() { 0.0 } else { n };
                n.is_finite().then_some(Operand::Num(n))
            }
            Operand::Literal(Literal::True) => Some(Operand::Num(1.0)),
            Operand::Literal(_) => Some(Operand::Num(0.0)),
            _ => None,
        },
        Coercion::Size => match operand {
            Operand::Str(s) => Some(Operand::Num(s.encode_utf16().count() as f64)),
            Operand::Num(_) | Operand::Literal(_) => Some(Operand::Num(0.0)),
            _ => None,
        },
        Coercion::IsTrue
        | Coercion::IsFalse
        | Coercion::Relational
        | Coercion::ArrayLike
        | Coercion::ToArray => None,
    }
}

/// LiquidJS's format for `date` without one.
const DEFAULT_DATE_FORMAT: &str = "%A, %B %-e, %Y at %-l:%M %P %z";
/// Widest padding accepted in a date format.
const MAX_DATE_WIDTH: usize = 1024;

/// Translates a LiquidJS strftime format for the `liquid` crate: directives LiquidJS does not
/// know are kept as literal text, as LiquidJS keeps them; `%Z` is the zone name, always UTC.
fn translate_date_format(format: &str) -> Result<String, LiquidError> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && "-_0^#:".contains(chars[j]) {
            j += 1;
        }
        let width_begin = j;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        let width: String = chars[width_begin..j].iter().collect();
        if !width.is_empty() && width.parse::<usize>().map_or(true, |w| w > MAX_DATE_WIDTH) {
            return Err(unsupported("a date format width over 1024"));
        }
        if j < chars.len() && matches!(chars[j], 'E' | 'O') {
            j += 1;
        }
        let Some(&conversion) = chars.get(j) else {
            // An incomplete directive is literal text.
            out.push_str("%%");
            out.extend(&chars[i + 1..]);
            break;
        };
        let flags: String = chars[i + 1..width_begin].iter().collect();
        let directive: String = chars[i..=j].iter().collect();
        // The `liquid` crate takes `:` only before `z`, where LiquidJS ignores it elsewhere.
        let plain: String = if conversion == 'z' {
            directive.clone()
        } else {
            directive.chars().filter(|c| *c != ':').collect()
        };
        // LiquidJS prints `%c`, `%x` and `%X` for the en-US locale.
        let meridiem = if flags.contains('#') { "%P" } else { "%p" };
        match conversion {
            'Z' => out.push_str("UTC"),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            '%' => out.push_str("%%"),
            'c' => {
                let _ = write!(out, "%-m/%-d/%Y, %-I:%M:%S {meridiem}");
            }
            'x' => out.push_str("%-m/%-d/%Y"),
            'X' => {
                let _ = write!(out, "%-I:%M:%S {meridiem}");
            }
            'L' if flags.contains('-') => out.push_str("%-L"),
            'L' => {
                // LiquidJS pads the milliseconds on the left to the width.
                let width = width.parse::<usize>().unwrap_or(3).max(3);
                out.extend(std::iter::repeat_n('0', width - 3));
                out.push_str("%L");
            }
            'q' => return Err(unsupported("the %q date directive")),
            'a' | 'A' | 'b' | 'B' | 'C' | 'd' | 'e' | 'H' | 'I' | 'j' | 'k' | 'l' | 'm' | 'M'
            | 'N' | 'p' | 'P' | 's' | 'S' | 'u' | 'U' | 'w' | 'W' | 'y' | 'Y' | 'z' | 'h' => {
                out.push_str(&plain)
            }
            _ => {
                out.push_str("%%");
                out.push_str(&directive[1..]);
            }
        }
        i = j + 1;
    }
    Ok(out)
}

/// The keys of a variable path made only of names and literal indexes.
fn static_path(props: &[Prop]) -> Option<Vec<String>> {
    props
        .iter()
        .map(|prop| match prop {
            Prop::Name(name) | Prop::Index(Operand::Str(name)) => Some(name.clone()),
            Prop::Index(Operand::Num(n)) => Some(js_number(*n)),
            Prop::Index(_) => None,
        })
        .collect()
}

/// Evaluates properties of a literal, like `"abc".size`, the way LiquidJS does.
fn fold_literal_access(base: &Operand, props: &[Prop]) -> Result<Operand, LiquidError> {
    let mut value = base.clone();
    for key in static_path(props).ok_or_else(|| unsupported("computed properties of a literal"))? {
        value = match &value {
            Operand::Str(s) => match key.as_str() {
                "size" | "length" => Operand::Num(s.encode_utf16().count() as f64),
                _ => match canonical_index(&key).and_then(|i| s.encode_utf16().nth(i)) {
                    Some(unit) => Operand::Str(
                        char::from_u32(u32::from(unit))
                            .unwrap_or('\u{fffd}')
                            .to_string(),
                    ),
                    None => Operand::Literal(Literal::Nil),
                },
            },
            Operand::Range => return Err(unsupported("properties of a range")),
            _ => Operand::Literal(Literal::Nil),
        };
    }
    Ok(value)
}

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A variable name as the `liquid` grammar accepts it at the root of a path: names it cannot
/// spell (or would read as a literal or an operator) become aliases the views resolve.
fn emit_root(name: &str) -> String {
    const RESERVED: [&str; 10] = [
        "true", "false", "nil", "null", "empty", "blank", "and", "or", "contains", "not",
    ];
    let reserved = RESERVED.iter().any(|word| name.starts_with(word));
    if is_plain_name(name) && !reserved && !name.starts_with("__lq") {
        return name.to_owned();
    }
    let mut alias = String::from(ALIAS_PREFIX);
    for byte in name.bytes() {
        let _ = write!(alias, "{byte:02x}");
    }
    alias
}

fn alias_target(key: &str) -> Option<String> {
    let hex = key.strip_prefix(ALIAS_PREFIX)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn emit_string(s: &str) -> Result<String, LiquidError> {
    if !s.contains('"') {
        Ok(format!("\"{s}\""))
    } else if !s.contains('\'') {
        Ok(format!("'{s}'"))
    } else {
        Err(unsupported("a string with both kinds of quotes"))
    }
}

fn emit_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        // Integral like every JavaScript number that prints without a fraction.
        format!("{}", n as i64)
    } else {
        let text = format!("{n}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    }
}

fn emit_operand(operand: &Operand) -> Result<String, LiquidError> {
    match operand {
        Operand::Literal(literal) => Ok(match literal {
            Literal::True => "true",
            Literal::False => "false",
            Literal::Nil => "nil",
            Literal::Empty => "empty",
            Literal::Blank => "blank",
        }
        .to_owned()),
        Operand::Str(s) => emit_string(s),
        Operand::Num(n) => Ok(emit_number(*n)),
        Operand::Path(props) => {
            let mut out = match props.first() {
                Some(Prop::Name(name)) => emit_root(name),
                Some(Prop::Index(Operand::Str(name))) => emit_root(name),
                Some(Prop::Index(Operand::Num(n))) => emit_root(&js_number(*n)),
                _ => return Err(unsupported("a computed variable name")),
            };
            for prop in &props[1..] {
                match prop {
                    Prop::Name(name) if is_plain_name(name) => {
                        let _ = write!(out, ".{name}");
                    }
                    Prop::Name(name) => {
                        let _ = write!(out, "[{}]", emit_string(name)?);
                    }
                    Prop::Index(Operand::Range) => {
                        return Err(unsupported("a range as an index"));
                    }
                    Prop::Index(index) => {
                        let _ = write!(out, "[{}]", emit_operand(index)?);
                    }
                }
            }
            Ok(out)
        }
        Operand::Access(..) => Err(unsupported("properties of a literal")),
        Operand::Range => Err(unsupported("a range outside a loop")),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory estimate

/// Upper bound of a value's size in bytes: a literal's, or any variable's.
#[derive(Debug, Clone, Copy)]
enum Size {
    Literal(f64),
    Variable,
}

impl Size {
    fn bound(self, largest: f64) -> f64 {
        match self {
            Size::Literal(n) => n,
            Size::Variable => largest,
        }
    }
}

/// How a filter can grow its input.
#[derive(Debug, Clone, Copy)]
enum Cost {
    Same,
    Scale(f64),
    Add(Size),
    AtLeast(Size),
    Fixed(f64),
    Replace(Size, Size),
    Split,
    Join(Size),
    Date(Size),
}

#[derive(Debug)]
enum Step {
    /// A value and its filters, evaluated.
    Chain(Size, Vec<Cost>),
    /// Text appended to the enclosing capture.
    Text(usize),
    CaptureStart,
    CaptureEnd,
}

/// The evaluations of a template in source order, to bound the largest value it can build.
#[derive(Debug, Default)]
struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    /// The largest value (bytes) the template can build from a payload of `weight` bytes,
    /// following every branch.
    fn estimate(&self, weight: f64) -> f64 {
        let mut largest = weight;
        let mut captures: Vec<f64> = Vec::new();
        for step in &self.steps {
            match step {
                Step::Chain(input, costs) => {
                    let mut size = input.bound(largest);
                    for cost in costs {
                        size = cost.apply(size, largest);
                    }
                    largest = largest.max(size);
                    if let Some(capture) = captures.last_mut() {
                        *capture += size;
                    }
                }
                Step::Text(len) => {
                    if let Some(capture) = captures.last_mut() {
                        *capture += *len as f64;
                    }
                }
                Step::CaptureStart => captures.push(0.0),
                Step::CaptureEnd => {
                    let captured = captures.pop().unwrap_or(0.0);
                    largest = largest.max(captured);
                }
            }
        }
        largest
    }
}

impl Cost {
    fn apply(self, size: f64, largest: f64) -> f64 {
        match self {
            Cost::Same => size,
            Cost::Scale(factor) => size * factor,
            Cost::Add(arg) => size + arg.bound(largest),
            Cost::AtLeast(arg) => size.max(arg.bound(largest)),
            Cost::Fixed(n) => n,
            Cost::Replace(pattern, with) => {
                let with = with.bound(largest);
                match pattern {
                    Size::Literal(len) if len >= 1.0 => size * (with / len).max(1.0) + with,
                    _ => (size + 1.0) * (with + 1.0),
                }
            }
            // Each element of the array costs its text plus the array's bookkeeping.
            Cost::Split => size * 65.0 + 64.0,
            Cost::Join(separator) => size + (size + 1.0) * separator.bound(largest),
            // Each character of the format can expand to one padded directive.
            Cost::Date(format) => format.bound(largest) * MAX_DATE_WIDTH as f64 + 64.0,
        }
    }
}

fn operand_size(operand: &Operand) -> Size {
    match operand {
        Operand::Str(s) => Size::Literal(s.len() as f64),
        Operand::Path(_) | Operand::Access(..) => Size::Variable,
        _ => Size::Literal(32.0),
    }
}

fn filter_cost(name: &str, args: &[Size]) -> Cost {
    let arg = |i: usize, default: f64| args.get(i).copied().unwrap_or(Size::Literal(default));
    match name {
        "append" | "prepend" => Cost::Add(arg(0, 0.0)),
        "replace" => Cost::Replace(arg(0, 0.0), arg(1, 0.0)),
        "replace_first" => Cost::Add(arg(1, 0.0)),
        "truncate" | "truncatewords" => Cost::Add(arg(1, 3.0)),
        "default" => Cost::AtLeast(arg(0, 0.0)),
        "split" => Cost::Split,
        "join" => Cost::Join(arg(0, 1.0)),
        "escape" | "escape_once" => Cost::Scale(6.0),
        "url_encode" | "upcase" | "downcase" => Cost::Scale(3.0),
        // `capitalize` is preceded by `downcase`.
        "capitalize" => Cost::Scale(9.0),
        "date" => Cost::Date(arg(0, 0.0)),
        "size" => Cost::Fixed(32.0),
        name if NUMERIC_FILTERS.contains(&name) => Cost::Fixed(32.0),
        _ => Cost::Same,
    }
}

// ---------------------------------------------------------------------------------------------
// Payload views
//
// The `liquid` runtime resolves a variable path by calling `ObjectView::get` on each step and
// then converts the value it found into an owned `liquid::model::Value` with `to_value`: every
// filter, comparison and output works on that owned value. The views below therefore only
// decide what a path resolves to, with LiquidJS's rules (a missing key, index or property is
// nil; `size`, `first` and `last` work on arrays; `size` and `length` count UTF-16 units of a
// string; a string indexes its characters), and what it converts to.

/// A payload value. Integers stay integers; floats with an integral value become integers, as
/// JavaScript does not tell them apart.
#[derive(Debug, Clone)]
enum Node {
    /// A missing key or index: JavaScript's `undefined`.
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<JsString>),
    Array(Box<JsArray>),
    Object(Box<JsObject>),
    /// A payload date parsed the JavaScript way for the `date` filter.
    Date(DateTime),
}

#[derive(Debug, Clone)]
struct JsString {
    text: KString,
    length: OnceLock<Node>,
    units: OnceLock<Vec<Node>>,
}

#[derive(Debug, Clone)]
struct JsArray {
    items: Vec<Node>,
    size: Node,
}

#[derive(Debug, Clone)]
struct JsObject {
    entries: Vec<(KString, Node)>,
    index: Option<HashMap<KString, usize>>,
    size: Node,
}

static UNDEFINED: Node = Node::Undefined;

/// Objects with more keys than this get a hash index.
const INDEXED_OBJECT_KEYS: usize = 12;

fn count(n: usize) -> Node {
    Node::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A non-negative index written the canonical way, as JavaScript matches array keys.
fn canonical_index(key: &str) -> Option<usize> {
    let index: usize = key.parse().ok()?;
    (index.to_string() == key).then_some(index)
}

impl JsString {
    fn new(text: &str) -> JsString {
        JsString {
            text: KString::from_ref(text),
            length: OnceLock::new(),
            units: OnceLock::new(),
        }
    }

    fn lookup(&self, key: &str) -> &Node {
        match key {
            "size" | "length" => self
                .length
                .get_or_init(|| count(self.text.encode_utf16().count())),
            _ => canonical_index(key)
                .and_then(|i| self.units().get(i))
                .unwrap_or(&UNDEFINED),
        }
    }

    /// The string's UTF-16 units as one-character strings (a lone surrogate becomes U+FFFD).
    fn units(&self) -> &[Node] {
        self.units.get_or_init(|| {
            let mut units = Vec::new();
            for c in self.text.chars() {
                let mut buf = [0u8; 4];
                let unit = if c.len_utf16() == 1 {
                    &*c.encode_utf8(&mut buf)
                } else {
                    "\u{fffd}"
                };
                for _ in 0..c.len_utf16() {
                    units.push(Node::Str(Box::new(JsString::new(unit))));
                }
            }
            units
        })
    }
}

impl JsArray {
    fn lookup(&self, key: &str) -> &Node {
        let item = match key {
            "size" | "length" => Some(&self.size),
            "first" => self.items.first(),
            "last" => self.items.last(),
            _ => match key.strip_prefix('-') {
                Some(back) => canonical_index(back)
                    .filter(|i| *i > 0)
                    .and_then(|i| self.items.len().checked_sub(i))
                    .and_then(|i| self.items.get(i)),
                None => canonical_index(key).and_then(|i| self.items.get(i)),
            },
        };
        item.unwrap_or(&UNDEFINED)
    }
}

impl JsObject {
    fn new(entries: Vec<(KString, Node)>) -> JsObject {
        let index = (entries.len() > INDEXED_OBJECT_KEYS).then(|| {
            let mut index = HashMap::with_capacity(entries.len());
            for (i, (key, _)) in entries.iter().enumerate() {
                index.entry(key.clone()).or_insert(i);
            }
            index
        });
        let size = count(entries.len());
        JsObject {
            entries,
            index,
            size,
        }
    }

    fn find(&self, key: &str) -> Option<&Node> {
        match &self.index {
            Some(index) => index.get(key).map(|i| &self.entries[*i].1),
            None => self
                .entries
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v),
        }
    }

    fn lookup(&self, key: &str) -> &Node {
        match self.find(key) {
            Some(node) => node,
            None if key == "size" => &self.size,
            None => &UNDEFINED,
        }
    }
}

impl Node {
    /// The value of property `key`, with LiquidJS's rules.
    fn lookup(&self, key: &str) -> &Node {
        match self {
            Node::Str(s) => s.lookup(key),
            Node::Array(array) => array.lookup(key),
            Node::Object(object) => object.lookup(key),
            _ => &UNDEFINED,
        }
    }

    fn from_json(value: &Json, depth: usize, weight: &mut f64) -> Result<Node, LiquidError> {
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(error("payload is nested too deeply for liquid"));
        }
        *weight += 8.0;
        Ok(match value {
            Json::Null => Node::Null,
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => {
                *weight += 24.0;
                match n.as_i64() {
                    Some(i) => Node::Int(i),
                    None => number_node(n.as_f64().unwrap_or(f64::NAN)),
                }
            }
            Json::String(s) => {
                *weight += s.len() as f64;
                Node::Str(Box::new(JsString::new(s)))
            }
            Json::Array(items) => {
                let items = items
                    .iter()
                    .map(|item| Node::from_json(item, depth + 1, weight))
                    .collect::<Result<Vec<_>, _>>()?;
                let size = count(items.len());
                Node::Array(Box::new(JsArray { items, size }))
            }
            Json::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (key, value) in map {
                    *weight += key.len() as f64 + 8.0;
                    entries.push((
                        KString::from_ref(key),
                        Node::from_json(value, depth + 1, weight)?,
                    ));
                }
                Node::Object(Box::new(JsObject::new(entries)))
            }
        })
    }
}

fn number_node(f: f64) -> Node {
    if f.fract() == 0.0 && f.abs() < MAX_SAFE_INTEGER {
        Node::Int(f as i64)
    } else {
        Node::Float(f)
    }
}

/// The payload: every name resolves (to nil when missing), aliases are followed and the
/// payload values the template's filters read with a coercion are available, coerced, under
/// their aliases.
#[derive(Debug)]
struct Root {
    object: JsObject,
    coerced: HashMap<String, Node>,
    weight: f64,
}

impl Root {
    fn new(payload: &Json, coerced: &[CoercedInput]) -> Result<Root, LiquidError> {
        let mut weight = 0.0;
        let mut entries = Vec::new();
        if let Json::Object(map) = payload {
            entries.reserve(map.len());
            for (key, value) in map {
                weight += key.len() as f64 + 8.0;
                entries.push((
                    KString::from_ref(key),
                    Node::from_json(value, 1, &mut weight)?,
                ));
            }
        }
        let mut root = Root {
            object: JsObject::new(entries),
            coerced: HashMap::new(),
            weight,
        };
        for input in coerced {
            let mut keys = input.path.iter();
            let Some(first) = keys.next() else {
                continue;
            };
            let mut node = root.object.find(first).unwrap_or(&UNDEFINED);
            for key in keys {
                node = node.lookup(key);
            }
            let coerced = match input.coercion {
                Coercion::Date => date_node(node).unwrap_or_else(|| node.clone()),
                Coercion::Number => Node::Float(js_to_number(node)),
                Coercion::Size => Node::Int(js_size(node)),
                Coercion::IsTrue => match node {
                    Node::Bool(_) => node.clone(),
                    _ => Node::Null,
                },
                Coercion::IsFalse => match node {
                    Node::Bool(_) => node.clone(),
                    _ => Node::Bool(true),
                },
                Coercion::Relational => match js_relational_number(node) {
                    Some(n) => Node::Float(n),
                    None => Node::Null,
                },
                Coercion::ArrayLike => match node {
                    Node::Array(_) | Node::Str(_) => node.clone(),
                    _ => Node::Str(Box::new(JsString::new(""))),
                },
                Coercion::ToArray => match node {
                    Node::Array(_) => node.clone(),
                    Node::Undefined | Node::Null => Node::Array(Box::new(JsArray {
                        items: Vec::new(),
                        size: Node::Int(0),
                    })),
                    _ => Node::Array(Box::new(JsArray {
                        items: vec![node.clone()],
                        size: Node::Int(1),
                    })),
                },
            };
            root.coerced.insert(input.alias.clone(), coerced);
        }
        Ok(root)
    }

    fn lookup(&self, key: &str) -> &Node {
        if let Some(node) = self.object.find(key) {
            return node;
        }
        if let Some(node) = self.coerced.get(key) {
            return node;
        }
        match alias_target(key) {
            Some(target) => self.object.find(&target).unwrap_or(&UNDEFINED),
            None => &UNDEFINED,
        }
    }
}

/// What LiquidJS's `date` filter reads a payload value as, in a form the `liquid` crate's
/// `date` filter reads the same way: a number is seconds since the epoch and a string is parsed
/// like JavaScript's `Date`. `None` leaves the value as it is.
fn date_node(node: &Node) -> Option<Node> {
    match node {
        Node::Int(i) => Some(Node::Str(Box::new(JsString::new(&i.to_string())))),
        Node::Str(s) if !s.text.bytes().all(|b| b.is_ascii_digit()) => {
            parse_js_date(&s.text).map(Node::Date)
        }
        _ => None,
    }
}

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// JavaScript's `+value || 0`, how LiquidJS's math filters read their operands.
fn js_to_number(node: &Node) -> f64 {
    let n = js_number_of(node);
    if n.is_nan() || n == 0.0 { 0.0 } else { n }
}

/// JavaScript's `Number(value)` (`undefined` is NaN).
fn js_number_of(node: &Node) -> f64 {
    match node {
        Node::Undefined => f64::NAN,
        Node::Null | Node::Bool(false) => 0.0,
        Node::Bool(true) => 1.0,
        Node::Int(i) => *i as f64,
        Node::Float(f) => *f,
        Node::Str(s) => js_string_to_number(&s.text),
        // `+[x]` is `+String(x)`; a longer array has a comma in its string.
        Node::Array(array) => match array.items.as_slice() {
            [] => 0.0,
            [Node::Bool(_)] => f64::NAN,
            [Node::Undefined | Node::Null] => 0.0,
            [item] => js_number_of(item),
            _ => f64::NAN,
        },
        Node::Object(_) | Node::Date(_) => f64::NAN,
    }
}

/// JavaScript's `Number(value)` as a relational comparison with a number reads it; `None` for
/// NaN, which compares false with everything.
fn js_relational_number(node: &Node) -> Option<f64> {
    let n = js_number_of(node);
    (!n.is_nan()).then_some(n)
}

/// JavaScript's `Number(string)`.
fn js_string_to_number(text: &str) -> f64 {
    let text = text.trim_matches(|c: char| is_blank(c) || c == '\u{feff}');
    if text.is_empty() {
        return 0.0;
    }
    let radix = match text.get(..2) {
        Some("0x" | "0X") => 16,
        Some("0o" | "0O") => 8,
        Some("0b" | "0B") => 2,
        _ => 10,
    };
    if radix != 10 {
        let digits = &text[2..];
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return f64::NAN;
        }
        return digits
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0.0, |acc, d| acc * f64::from(radix) + f64::from(d));
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned == "Infinity" {
        return if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    // A decimal literal: digits, an optional fraction and an optional exponent.
    let b = unsigned.as_bytes();
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return f64::NAN;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = b
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if exp_digits == 0 {
            return f64::NAN;
        }
        i += exp_digits;
    }
    if i != b.len() {
        return f64::NAN;
    }
    text.parse().unwrap_or(f64::NAN)
}

/// LiquidJS's `size` filter: `(value && value.length) || 0`.
fn js_size(node: &Node) -> i64 {
    match node {
        Node::Str(s) => i64::try_from(s.text.encode_utf16().count()).unwrap_or(i64::MAX),
        Node::Array(array) => array.size(),
        Node::Object(object) => match object.find("length") {
            Some(Node::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// Parses the ISO 8601 forms JavaScript's `Date` accepts (`2024-01-02`, `2024-01-02T03:04`,
/// `2024-01-02T03:04:05.678+02:00`, ...) into a UTC date, as LiquidJS does on a UTC host.
fn parse_js_date(text: &str) -> Option<DateTime> {
    let millis = parse_iso_millis(text.trim())?;
    let days = millis.div_euclid(86_400_000);
    let ms_of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let formatted = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} +0000",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    );
    DateTime::from_str(&formatted)
}

/// Milliseconds since the epoch of an ISO 8601 date or date-time (no offset means UTC).
fn parse_iso_millis(text: &str) -> Option<i64> {
    struct Cursor<'a> {
        b: &'a [u8],
        p: usize,
    }
    impl Cursor<'_> {
        fn digits(&mut self, n: usize) -> Option<i64> {
            let digits = self.b.get(self.p..self.p + n)?;
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            self.p += n;
            Some(
                digits
                    .iter()
                    .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
            )
        }
        fn eat(&mut self, c: u8) -> bool {
            let found = self.b.get(self.p) == Some(&c);
            self.p += usize::from(found);
            found
        }
        fn done(&self) -> bool {
            self.p == self.b.len()
        }
    }
    let mut c = Cursor {
        b: text.as_bytes(),
        p: 0,
    };
    let year = c.digits(4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut millis, mut offset) = (0, 0, 0, 0, 0);
    if c.eat(b'-') {
        month = c.digits(2)?;
        if c.eat(b'-') {
            day = c.digits(2)?;
            if c.eat(b'T') || c.eat(b't') || c.eat(b' ') {
                hour = c.digits(2)?;
                if !c.eat(b':') {
                    return None;
                }
                minute = c.digits(2)?;
                if c.eat(b':') {
                    second = c.digits(2)?;
                    if c.eat(b'.') {
                        let begin = c.p;
                        while c.b.get(c.p).is_some_and(u8::is_ascii_digit) {
                            c.p += 1;
                        }
                        let fraction = &c.b[begin..c.p];
                        if fraction.is_empty() {
                            return None;
                        }
                        millis = fraction
                            .iter()
                            .chain(b"000")
                            .take(3)
                            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
                    }
                }
                if c.eat(b'Z') || c.eat(b'z') {
                } else if let Some(sign) = [b'+', b'-'].into_iter().find(|s| c.eat(*s)) {
                    let hours = c.digits(2)?;
                    c.eat(b':');
                    let minutes = c.digits(2)?;
                    if hours > 23 || minutes > 59 {
                        return None;
                    }
                    offset = (hours * 60 + minutes) * if sign == b'-' { -1 } else { 1 };
                }
            }
        }
    }
    // Like V8, any day up to 31 is accepted and rolls over into the next month.
    let valid = c.done()
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (hour < 24 || (hour == 24 && minute == 0 && second == 0 && millis == 0))
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute - offset) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats a number like JavaScript's `Number.prototype.toString`.
fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".to_owned();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if n == 0.0 {
        return "0".to_owned();
    }
    // Shortest round-trip digits and the decimal exponent, from Rust's `{:e}`.
    let scientific = format!("{:e}", n.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let k = digits.len() as i64;
    let point = exponent + 1;
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - k) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{}",
            if point > 0 { "+" } else { "-" },
            (point - 1).abs()
        );
    }
    out
}

/// Writes a node the way LiquidJS's `stringify` does.
fn stringify(node: &Node, out: &mut dyn fmt::Write) -> fmt::Result {
    match node {
        Node::Undefined | Node::Null => Ok(()),
        Node::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
        Node::Int(i) => write!(out, "{i}"),
        Node::Float(f) => out.write_str(&js_number(*f)),
        Node::Str(s) => out.write_str(&s.text),
        Node::Array(array) => {
            for item in &array.items {
                stringify(item, out)?;
            }
            Ok(())
        }
        Node::Object(_) => out.write_str("[object Object]"),
        Node::Date(date) => write!(out, "{date}"),
    }
}

struct Stringified<'a>(&'a Node);

impl fmt::Display for Stringified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        stringify(self.0, f)
    }
}

impl ValueView for Node {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Owned(Box::new(Stringified(self)))
    }

    fn source(&self) -> DisplayCow<'_> {
        self.render()
    }

    fn type_name(&self) -> &'static str {
        match self {
            Node::Undefined | Node::Null => "nil",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "whole number",
            Node::Float(_) => "fractional number",
            Node::Str(_) => "string",
            Node::Array(_) => "array",
            Node::Object(_) => "object",
            Node::Date(_) => "date time",
        }
    }

    fn query_state(&self, state: State) -> bool {
        self.to_value().query_state(state)
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        match self {
            Node::Str(s) => KStringCow::from_ref(s.text.as_str()),
            _ => KStringCow::from_string(Stringified(self).to_string()),
        }
    }

    fn to_value(&self) -> LiquidValue {
        match self {
            Node::Undefined | Node::Null => LiquidValue::Nil,
            Node::Bool(b) => LiquidValue::scalar(*b),
            Node::Int(i) => LiquidValue::scalar(*i),
            Node::Float(f) => LiquidValue::scalar(*f),
            Node::Str(s) => LiquidValue::scalar(s.text.clone()),
            Node::Array(array) => {
                LiquidValue::Array(array.items.iter().map(ValueView::to_value).collect())
            }
            Node::Object(object) => {
                let mut out = liquid::Object::new();
                for (key, value) in &object.entries {
                    out.insert(key.clone(), value.to_value());
                }
                LiquidValue::Object(out)
            }
            Node::Date(date) => LiquidValue::scalar(*date),
        }
    }

    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        match self {
            Node::Bool(b) => Some(ScalarCow::new(*b)),
            Node::Int(i) => Some(ScalarCow::new(*i)),
            Node::Float(f) => Some(ScalarCow::new(*f)),
            Node::Str(s) => Some(ScalarCow::new(s.text.as_str())),
            Node::Date(date) => Some(ScalarCow::new(*date)),
            _ => None,
        }
    }

    /// Every node is traversed as an object so that the runtime's property lookup follows
    /// LiquidJS's rules (see [`Node::lookup`]) instead of failing on unknown properties.
    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }

    fn is_nil(&self) -> bool {
        matches!(self, Node::Undefined | Node::Null)
    }
}

impl ObjectView for Node {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        match self {
            Node::Array(array) => array.size(),
            Node::Object(object) => object.size(),
            _ => 0,
        }
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match self {
            Node::Object(object) => object.keys(),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match self {
            Node::Array(array) => Box::new(array.items.iter().map(|v| v as &dyn ValueView)),
            Node::Object(object) => ObjectView::values(object.as_ref()),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match self {
            Node::Object(object) => object.iter(),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn contains_key(&self, index: &str) -> bool {
        !matches!(self.lookup(index), Node::Undefined)
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

impl JsArray {
    fn size(&self) -> i64 {
        i64::try_from(self.items.len()).unwrap_or(i64::MAX)
    }
}

impl ValueView for JsObject {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"[object Object]")
    }

    fn source(&self) -> DisplayCow<'_> {
        self.render()
    }

    fn type_name(&self) -> &'static str {
        "object"
    }

    fn query_state(&self, state: State) -> bool {
        match state {
            State::Truthy => true,
            State::DefaultValue => false,
            State::Empty | State::Blank => self.entries.is_empty(),
        }
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("[object Object]")
    }

    fn to_value(&self) -> LiquidValue {
        let mut out = liquid::Object::new();
        for (key, value) in &self.entries {
            out.insert(key.clone(), value.to_value());
        }
        LiquidValue::Object(out)
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for JsObject {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        i64::try_from(self.entries.len()).unwrap_or(i64::MAX)
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(
            self.entries
                .iter()
                .map(|(k, _)| KStringCow::from_ref(k.as_str())),
        )
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(self.entries.iter().map(|(_, v)| v as &dyn ValueView))
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(
            self.entries
                .iter()
                .map(|(k, v)| (KStringCow::from_ref(k.as_str()), v as &dyn ValueView)),
        )
    }

    fn contains_key(&self, index: &str) -> bool {
        self.find(index).is_some()
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

impl ValueView for Root {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        self.object.render()
    }

    fn source(&self) -> DisplayCow<'_> {
        self.object.source()
    }

    fn type_name(&self) -> &'static str {
        "object"
    }

    fn query_state(&self, state: State) -> bool {
        self.object.query_state(state)
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        self.object.to_kstr()
    }

    fn to_value(&self) -> LiquidValue {
        self.object.to_value()
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for Root {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        self.object.size()
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        self.object.keys()
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        ObjectView::values(&self.object)
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        self.object.iter()
    }

    /// Every name is claimed so that a missing variable is nil, not an error; the runtime
    /// consults assigned variables before the payload, so they still take precedence.
    fn contains_key(&self, _index: &str) -> bool {
        true
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Segment's own output for each case, recorded by `tests/fixtures/liquid_record.js`.
    const CASES: &str = include_str!("../../tests/fixtures/liquid_cases.json");

    /// Cases where the `liquid` crate cannot be made to behave like LiquidJS.
    const KNOWN_DIFFERENCES: [(&str, &str); 4] = [
        (
            "{% if false %}{{ properties.tags | sort }}{% endif %}",
            "a disabled filter is rejected when the template is parsed; LiquidJS only fails \
             when the filter runs",
        ),
        (
            "{{ properties.nested }}",
            "an object prints its keys and values where LiquidJS prints [object Object]",
        ),
        (
            "{{ big }}",
            "floats print without an exponent (1000000000000000000000, not 1e+21)",
        ),
        (
            "{{ 10 | divided_by: 0 }}",
            "dividing by zero is an error where LiquidJS gives Infinity",
        ),
    ];

    fn evaluate(template: &str, payload: &Json) -> Result<String, LiquidError> {
        LiquidTemplate::parse(template)?.render(payload)
    }

    #[test]
    fn matches_segment_on_recorded_cases() {
        let cases: Vec<Json> = serde_json::from_str(CASES).unwrap();
        assert!(cases.len() >= 60, "only {} cases", cases.len());
        let mut failures = Vec::new();
        for case in &cases {
            let template = case["template"].as_str().unwrap();
            let actual = evaluate(template, &case["payload"]);
            let matches = match &case["expected"] {
                Json::String(expected) => actual.as_ref() == Ok(expected),
                _ => actual.is_err(),
            };
            let known = KNOWN_DIFFERENCES.iter().any(|(t, _)| *t == template);
            if matches == known {
                failures.push(format!(
                    "{template:?}: expected {}, got {actual:?}{}",
                    case["expected"],
                    if known {
                        " (listed as a known difference)"
                    } else {
                        ""
                    }
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn known_differences_are_recorded_cases() {
        let cases: Vec<Json> = serde_json::from_str(CASES).unwrap();
        for (template, _) in KNOWN_DIFFERENCES {
            assert!(
                cases.iter().any(|c| c["template"] == template),
                "{template}"
            );
        }
    }

    #[test]
    fn template_length_counts_utf16_units() {
        let payload = json!({});
        assert_eq!(evaluate(&"x".repeat(1000), &payload).unwrap().len(), 1000);
        let err = LiquidTemplate::parse(&"x".repeat(1001)).unwrap_err();
        assert_eq!(
            err.0,
            "liquid template values are limited to 1000 characters"
        );
        // An astral character is two UTF-16 units, as in JavaScript.
        assert!(LiquidTemplate::parse(&"😀".repeat(500)).is_ok());
        assert!(LiquidTemplate::parse(&"😀".repeat(501)).is_err());
        assert!(LiquidTemplate::parse(&"é".repeat(1000)).is_ok());
        assert_eq!(evaluate("", &payload).unwrap(), "");
    }

    #[test]
    fn disabled_tags_and_filters_are_named() {
        for tag in DISABLED_TAGS {
            let err = LiquidTemplate::parse(&format!("{{% {tag} x %}}")).unwrap_err();
            assert_eq!(err.0, format!("tag \"{tag}\" is disabled"));
        }
        for filter in DISABLED_FILTERS {
            let err = LiquidTemplate::parse(&format!("{{{{ x | {filter} }}}}")).unwrap_err();
            assert_eq!(err.0, format!("filter \"{filter}\" is disabled"));
        }
        // Inside a comment or a raw block they are text, as in LiquidJS.
        let payload = json!({});
        assert_eq!(
            evaluate("{% comment %}{% for %}{% endcomment %}a", &payload).unwrap(),
            "a"
        );
        assert_eq!(
            evaluate("{% raw %}{% for %}{% endraw %}", &payload).unwrap(),
            "{% for %}"
        );
    }

    #[test]
    fn unsupported_filters_are_errors_and_unknown_filters_are_ignored() {
        let err = LiquidTemplate::parse("{{ x | json }}").unwrap_err();
        assert_eq!(err.0, "filter \"json\" is not supported");
        assert_eq!(
            evaluate("{{ x | frobnicate: 1 }}", &json!({"x": "a"})).unwrap(),
            "a"
        );
    }

    #[test]
    fn every_engine_filter_is_a_liquidjs_filter() {
        // The LiquidJS 10 filter set; anything the engine has beyond it would change meaning.
        const LIQUIDJS: &str = "escape xml_escape escape_once newline_to_br strip_html abs \
            at_least at_most ceil divided_by floor minus plus modulo times round url_decode \
            url_encode cgi_escape uri_escape slugify join last first reverse sort sort_natural \
            size map sum compact concat push unshift pop shift slice where reject where_exp \
            reject_exp group_by group_by_exp has has_exp find_index find_index_exp find find_exp \
            uniq sample date date_to_xmlschema date_to_rfc822 date_to_string date_to_long_string \
            append prepend lstrip downcase upcase remove remove_first remove_last rstrip split \
            strip strip_newlines squish capitalize replace replace_first replace_last truncate \
            truncatewords normalize_whitespace number_of_words array_to_sentence_string \
            base64_encode base64_decode sha256 hmac_sha256 default raw jsonify to_integer json \
            inspect";
        let liquidjs: Vec<&str> = LIQUIDJS.split_whitespace().collect();
        for name in engine().unwrap().filters.keys() {
            assert!(liquidjs.contains(&name.as_str()), "{name}");
        }
        for name in UNSUPPORTED_FILTERS {
            assert!(liquidjs.contains(&name), "{name}");
        }
    }

    #[test]
    fn output_over_the_limit_is_an_error() {
        let payload = json!({"s": "x".repeat(40 * 1024)});
        assert_eq!(evaluate("{{ s }}", &payload).unwrap().len(), 40 * 1024);
        let err = evaluate("{{ s }}{{ s }}", &payload).unwrap_err();
        assert_eq!(err.0, "liquid output is larger than 65536 bytes");
    }

    #[test]
    fn runaway_growth_is_refused_before_rendering() {
        let doubling = r#"{% assign s = s | append: s %}"#.repeat(30) + "{{ s | size }}";
        let err = evaluate(&doubling, &json!({"s": "ab"})).unwrap_err();
        assert_eq!(err.0, "liquid template may use too much memory");
        let replacing = format!("{{{{ s{} }}}}", r#" | replace: "", "xx""#.repeat(20));
        assert!(evaluate(&replacing, &json!({"s": "ab"})).is_err());
        let capturing = "{% capture c %}{{ c }}{{ c }}{% endcapture %}".repeat(24);
        assert!(
            evaluate(
                &format!("{capturing}{{{{ c | size }}}}"),
                &json!({"c": "x"})
            )
            .is_err()
        );
        // Ordinary growth is fine.
        let modest = r#"{{ s | append: s | replace: "a", "aa" | upcase }}"#;
        assert_eq!(evaluate(modest, &json!({"s": "ab"})).unwrap(), "AABAAB");
    }

    #[test]
    fn templates_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LiquidTemplate>();
        let template = LiquidTemplate::parse("{{ n | plus: 1 }}").unwrap();
        std::thread::scope(|scope| {
            for n in 0..4 {
                let template = &template;
                scope.spawn(move || {
                    let out = template.render(&json!({ "n": n })).unwrap();
                    assert_eq!(out, (n + 1).to_string());
                });
            }
        });
        assert!(format!("{template:?}").contains("n | plus: 1"));
    }

    #[test]
    fn payload_values_convert_faithfully() {
        let payload = json!({
            "big": i64::MAX,
            "neg": i64::MIN,
            "whole": 3.0,
            "frac": 0.1,
            "yes": true,
            "none": null,
            "list": [1, "two", [3.5, null], false],
            "obj": {"z": 1, "a": 2},
            "huge": u64::MAX,
        });
        let out = |t: &str| evaluate(t, &payload).unwrap();
        assert_eq!(
            out("{{ big }}|{{ neg }}"),
            "9223372036854775807|-9223372036854775808"
        );
        assert_eq!(
            out("{{ whole }}|{{ frac }}|{{ yes }}|{{ none }}|"),
            "3|0.1|true||"
        );
        assert_eq!(
            out("{{ list }}|{{ list.size }}|{{ list[2][0] }}"),
            "1two3.5false|4|3.5"
        );
        assert_eq!(out("{{ obj.z }}{{ obj.a }}{{ obj.size }}"), "122");
        // Integer arithmetic never overflows: like JavaScript it is done on doubles.
        assert_eq!(out("{{ big | plus: 1 }}"), "9223372036854776000");
        assert_eq!(out("{{ neg | abs }}"), "9223372036854776000");
        assert_eq!(out("{{ huge }}"), "18446744073709552000");
        assert_eq!(
            evaluate("{{ x }}", &json!(["not", "an", "object"])).unwrap(),
            ""
        );
    }

    #[test]
    fn numbers_print_like_javascript() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (123456789012345680000.0, "123456789012345680000"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
        ];
        for (n, expected) in cases {
            assert_eq!(js_number(n), expected, "{n}");
        }
        assert_eq!(js_string_to_number(" 12.5 "), 12.5);
        assert_eq!(js_string_to_number("0x1f"), 31.0);
        assert_eq!(js_string_to_number(""), 0.0);
        assert!(js_string_to_number("1e").is_nan());
        assert!(js_string_to_number("inf").is_nan());
    }

    #[test]
    fn dates_parse_like_javascript() {
        let ms = |s: &str| parse_iso_millis(s);
        assert_eq!(ms("1970-01-01"), Some(0));
        assert_eq!(ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(ms("2024-02-30"), ms("2024-03-01"));
        assert_eq!(ms("2024-02-32"), None);
        assert_eq!(ms("2024-13-01"), None);
        assert_eq!(ms("not a date"), None);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        let payload = json!({"ts": "2024-03-05T07:08:09.123+02:00"});
        let out = evaluate("{{ ts | date: '%Y-%m-%d %H:%M:%S.%L %Z' }}", &payload).unwrap();
        assert_eq!(out, "2024-03-05 05:08:09.123 UTC");
        let err = LiquidTemplate::parse("{{ ts | date: fmt }}").unwrap_err();
        assert!(err.0.contains("not supported"), "{}", err.0);
        assert!(LiquidTemplate::parse("{{ ts | date: '%99999Y' }}").is_err());
    }

    #[test]
    fn conditions_group_like_liquidjs() {
        let payload = json!({"t": true, "f": false, "s": "10", "list": ["a"]});
        let out = |t: &str| evaluate(t, &payload).unwrap();
        // LiquidJS reads `a and b or c` as `a and (b or c)`.
        assert_eq!(out("{% if f and f or t %}y{% else %}n{% endif %}"), "n");
        assert_eq!(out("{% if t or f and f %}y{% else %}n{% endif %}"), "y");
        assert_eq!(out("{% if not f %}y{% endif %}"), "y");
        assert_eq!(out("{% if s > 9 %}y{% else %}n{% endif %}"), "y");
        assert_eq!(out("{% if s == true %}y{% else %}n{% endif %}"), "n");
        assert_eq!(
            out("{% if missing contains 'a' %}y{% else %}n{% endif %}"),
            "n"
        );
        assert_eq!(
            out("{% unless t %}a{% elsif t %}b{% else %}c{% endunless %}"),
            "b"
        );
        assert_eq!(out("{{ t == f }}"), "false");
    }

    #[test]
    fn errors_are_lowercase_without_final_punctuation() {
        let payload = json!({});
        for template in [
            "{{ }}",
            "{% if x %}",
            "{{ x | sort }}",
            "{% nope %}",
            "{{ 1 | divided_by: 0 }}",
        ] {
            let err = evaluate(template, &payload).unwrap_err().0;
            let first = err.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{err}");
            assert!(!err.ends_with(['.', '!', ':']), "{err}");
        }
    }

    /// xorshift64*: a small deterministic generator for the fuzz loop.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn never_panics_on_random_templates() {
        const PIECES: [&str; 72] = [
            "{{",
            "}}",
            "{%",
            "%}",
            "{{-",
            "-}}",
            "{%-",
            "-%}",
            " ",
            "\n",
            "\t",
            "|",
            ":",
            ",",
            ".",
            "[",
            "]",
            "(",
            ")",
            "..",
            "'",
            "\"",
            "\\",
            "-",
            "x",
            "s",
            "n",
            "arr",
            "obj",
            "missing",
            "if",
            "elsif",
            "else",
            "endif",
            "unless",
            "endunless",
            "assign",
            "=",
            "capture",
            "endcapture",
            "raw",
            "endraw",
            "comment",
            "endcomment",
            "#",
            "echo",
            "liquid",
            "cycle",
            "increment",
            "and",
            "or",
            "not",
            "contains",
            "==",
            "<",
            ">=",
            "nil",
            "true",
            "empty",
            "0",
            "-1",
            "9223372036854775807",
            "1e308",
            "2.5",
            "99999999999999999999",
            "upcase",
            "plus",
            "times",
            "slice",
            "truncate",
            "date",
            "split",
        ];
        const FILTERS: [&str; 22] = [
            "upcase",
            "append: s",
            "plus: 9223372036854775807",
            "times: -9223372036854775808",
            "minus: n",
            "divided_by: 0",
            "modulo: -1",
            "round: 9999999999",
            "slice: -9223372036854775808, 9223372036854775807",
            "truncate: -5",
            "truncatewords: 9223372036854775807",
            "split: ''",
            "join: s",
            "first",
            "last",
            "size",
            "date: '%s %-5N %^a'",
            "default",
            "abs",
            "at_least: 1e308",
            "replace: '', s",
            "url_decode",
        ];
        let payload = json!({
            "s": "héllo 😀", "n": i64::MIN, "arr": [1, "a", null, [2]], "obj": {"k": {"j": 1}},
            "x": 1.5e300,
        });
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..4000 {
            let mut template = String::new();
            let structured = rng.next().is_multiple_of(2);
            for _ in 0..(rng.next() % 24) {
                if structured {
                    let value = rng.pick(&["s", "n", "arr", "obj.k.j", "x", "'lit'", "-7", "nil"]);
                    let filter = rng.pick(&FILTERS);
                    let piece = match rng.next() % 4 {
                        0 => format!("{{{{ {value} | {filter} }}}}"),
                        1 => format!("{{% assign v = {value} | {filter} %}}{{{{ v | {filter} }}}}"),
                        2 => format!(
                            "{{% if {value} > {value} or v contains {value} %}}x{{% endif %}}"
                        ),
                        _ => rng.pick(&PIECES).to_owned(),
                    };
                    template.push_str(&piece);
                } else {
                    template.push_str(rng.pick(&PIECES));
                }
            }
            let result = evaluate(&template, &payload);
            if let Err(err) = &result {
                assert_ne!(err.0, ENGINE_PANIC, "{template:?}");
            }
        }
    }
}
