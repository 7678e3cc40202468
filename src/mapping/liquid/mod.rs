//! The `@liquid` directive: Liquid templates with Segment's limits and disabled tags and filters.
//!
//! Segment evaluates `@liquid` with LiquidJS 10.30.1. This module runs the templates on the
//! `liquid` crate, built on its own extension points: the parser registers exactly the tags
//! Segment allows and the `liquid` filters that already behave like LiquidJS's ([`engine`]),
//! and [`filters`] adds every other LiquidJS filter Segment allows as a custom filter
//! (`liquid-core`'s `ParseFilter`/`Filter` traits), replacing the `liquid` filters whose output
//! differs. The roles, by file:
//!
//! - **Lexing** ([`lex`]): the template is tokenized with LiquidJS's rules (delimiters, quoting,
//!   greedy whitespace control, `raw`, `comment`, `#`, `echo`, `liquid`).
//! - **Translation** ([`translate`], [`emit`], [`dates`]): disabled tags and filters are
//!   rejected, filters LiquidJS does not know are dropped (LiquidJS treats them as the
//!   identity), and the rest is re-emitted in the syntax the `liquid` crate parses: `and`/`or`
//!   chains are regrouped the LiquidJS way, the `date_to_*` filters become `date` with their
//!   formats, and names the `liquid` grammar cannot spell are aliased. `date` itself is
//!   LiquidJS's strftime with its time-zone argument, on jiff's bundled zone database.
//! - **Values** ([`value`]): the runtime resolves each variable path through views with
//!   LiquidJS's rules (anything missing is nil instead of an error, `size`/`first`/`last`,
//!   string indexing). Where the first filter reads its input with a JavaScript coercion
//!   (`size`, the math filters, `first`, `join`, `json`, ...) or a comparison would
//!   (`== true`, `> 5`), a payload path is replaced by an alias whose value is coerced at render
//!   time, so LiquidJS's reading of dates, numeric strings and nil (and a column's key order)
//!   carries over.
//! - **Limits** ([`plan`]): instead of a wall-clock render limit, the rendered output is capped
//!   at [`MAX_OUTPUT_BYTES`] and a static estimate of the largest intermediate value (given the
//!   payload size) must stay under a working-memory budget, so no template can exhaust memory;
//!   a panic inside the engine is caught and reported as an error.
//!
//! - **Ranges and `<>`** ([`ranges`], [`conditions`]): a range used as a value, and the operator
//!   results of a condition with `<>` (which LiquidJS's evaluator gives a meaning of its own),
//!   are computed into variables of the translation's own just before the tag that reads them.
//! - **The render in progress** ([`scope`]): counters live in the payload's scope, under the
//!   assigned variables, and `json` finds the payload object a `liquid` object copies to print
//!   its keys in the payload's order.
//!
//! Known differences that remain: a disabled filter fails at parse time even in a branch that
//! never runs; objects print their keys and values (LiquidJS: `[object Object]`); floats print
//! without an exponent; comparisons between two variables of different types follow the `liquid`
//! crate; `size` counts bytes on values computed by earlier filters; a range longer than the
//! working-memory budget allows fails (LiquidJS allows 10^8 items).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{LazyLock, OnceLock};

use liquid::model::{
    DisplayCow, KString, KStringCow, ObjectView, ScalarCow, State, Value as LiquidValue, ValueView,
};
use liquid::reflection::ParserReflection;
use serde_json::Value as Json;

use crate::json::VRef;
use crate::mapping::budget::{Budget, OverBudget, json_len};

mod conditions;
mod counters;
mod dates;
mod emit;
mod filters;
mod lex;
mod plan;
mod ranges;
mod scope;
#[cfg(test)]
mod tests;
mod translate;
mod value;

use dates::*;
use emit::*;
use filters::{MAX_INDENTED_BYTES, json_of_node, widest_date_directive};
use lex::*;
use plan::*;

use translate::*;
use value::*;

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
/// LiquidJS filters not implemented: refused rather than rendered differently (none left).
const UNSUPPORTED_FILTERS: [&str; 0] = [];
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
    counters: Vec<String>,
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
                counters: translation.counters,
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
        let root = Rc::new(Root::new(payload, &compiled.coerced, &compiled.counters)?);
        let estimate = compiled.plan.estimate(root.weight);
        if estimate > MAX_WORKING_BYTES {
            return Err(error("liquid template may use too much memory").into());
        }
        // Whole bytes: the estimate is below MAX_WORKING_BYTES.
        b.charge("@liquid", (estimate - root.weight).max(0.0) as usize)?;
        let mut out = CappedWriter::default();
        let rendered = panic::catch_unwind(AssertUnwindSafe(|| {
            let _installed = scope::Installed::new(Rc::clone(&root));
            compiled.template.render_to(&mut out, &*root)
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
    let parser = filters::FILTERS
        .iter()
        .fold(allowed_stdlib(), |builder, filter| builder.filter(*filter))
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

/// The `liquid` crate's tags and filters that Segment allows: none of the tags it disables
/// (`case`, `for`, `include`, `render`, `tablerow`; `ifchanged` is not a LiquidJS tag) and none
/// of the filters (`concat`, `map`, `newline_to_br`, `reverse`, `sort`, `sort_natural`,
/// `uniq`). The translator refuses them first; this keeps the engine from running one.
fn allowed_stdlib() -> liquid::ParserBuilder {
    use liquid_lib::stdlib;
    liquid::ParserBuilder::new()
        .tag(stdlib::AssignTag)
        .tag(stdlib::BreakTag)
        .tag(stdlib::ContinueTag)
        .tag(stdlib::CycleTag)
        .tag(counters::INCREMENT)
        .tag(counters::DECREMENT)
        .block(stdlib::RawBlock)
        .block(stdlib::IfBlock)
        .block(stdlib::UnlessBlock)
        .block(stdlib::CommentBlock)
        .block(stdlib::CaptureBlock)
        .filter(stdlib::Abs)
        .filter(stdlib::Append)
        .filter(stdlib::AtLeast)
        .filter(stdlib::AtMost)
        .filter(stdlib::Ceil)
        .filter(stdlib::Compact)
        .filter(stdlib::DividedBy)
        .filter(stdlib::Downcase)
        .filter(stdlib::First)
        .filter(stdlib::Floor)
        .filter(stdlib::Join)
        .filter(stdlib::Last)
        .filter(stdlib::Minus)
        .filter(stdlib::Modulo)
        .filter(stdlib::Plus)
        .filter(stdlib::Prepend)
        .filter(stdlib::Remove)
        .filter(stdlib::RemoveFirst)
        .filter(stdlib::ReplaceFirst)
        .filter(stdlib::Round)
        .filter(stdlib::Size)
        .filter(stdlib::StripHtml)
        .filter(stdlib::StripNewlines)
        .filter(stdlib::Times)
        .filter(stdlib::Upcase)
        .filter(stdlib::UrlDecode)
        .filter(stdlib::Where)
}

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
