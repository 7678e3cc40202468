//! LiquidJS filters the `liquid` crate lacks, registered on its parser through `liquid-core`'s
//! filter traits (`ParseFilter`, `FilterReflection`, `Filter`), each with LiquidJS 10.30.1's
//! output.

mod array;
mod crypto;
mod date;
mod json;
mod math;
mod standard;
mod text;

use std::fmt;

use liquid::model::{KString, Value as LiquidValue, ValueView};
use liquid_core::parser::{FilterArguments, FilterReflection, ParameterReflection, ParseFilter};
use liquid_core::runtime::{Expression, Runtime};
use liquid_core::{Error, Filter, Result};

use super::value::js_number;

pub(super) use date::widest as widest_date_directive;
pub(super) use json::{MAX_INDENTED_BYTES, json_of_node};

/// What a filter computes from its input and its evaluated arguments.
type Run = fn(&dyn ValueView, &Args) -> Result<LiquidValue>;

/// A filter's evaluated arguments.
pub(super) struct Args {
    positional: Vec<LiquidValue>,
    /// Keyword arguments, for the filters that take them.
    keyword: Vec<(KString, LiquidValue)>,
}

impl Args {
    fn get(&self, i: usize) -> Option<&LiquidValue> {
        self.positional.get(i).filter(|v| !v.is_nil())
    }
}

/// One LiquidJS filter: its name, the arguments it reads and what it does.
#[derive(Clone, Copy)]
pub(super) struct JsFilter {
    name: &'static str,
    positional: &'static [ParameterReflection],
    keyword: &'static [ParameterReflection],
    run: Run,
}

const fn param(name: &'static str) -> ParameterReflection {
    ParameterReflection {
        name,
        description: "",
        is_optional: true,
    }
}

const NONE: &[ParameterReflection] = &[];
const ONE: &[ParameterReflection] = &[param("arg")];
const TWO: &[ParameterReflection] = &[param("arg"), param("arg2")];

const fn filter(
    name: &'static str,
    positional: &'static [ParameterReflection],
    run: Run,
) -> JsFilter {
    JsFilter {
        name,
        positional,
        keyword: NONE,
        run,
    }
}

/// Every filter this module adds or replaces (a filter registered under a standard filter's
/// name replaces it).
pub(super) const FILTERS: &[JsFilter] = &[
    filter("json", ONE, json::json),
    filter("jsonify", ONE, json::json),
    filter("inspect", ONE, json::json),
    filter("to_integer", NONE, json::to_integer),
    filter("squish", NONE, text::squish),
    filter("normalize_whitespace", NONE, text::normalize_whitespace),
    filter("number_of_words", ONE, text::number_of_words),
    filter("remove_last", ONE, text::remove_last),
    filter("replace_last", TWO, text::replace_last),
    filter("slugify", TWO, text::slugify),
    filter("cgi_escape", NONE, text::cgi_escape),
    filter("uri_escape", NONE, text::uri_escape),
    filter("sha256", NONE, crypto::sha256),
    filter("hmac_sha256", ONE, crypto::hmac_sha256),
    filter("base64_encode", NONE, crypto::base64_encode),
    filter("base64_decode", NONE, crypto::base64_decode),
    filter("push", ONE, array::push),
    filter("unshift", ONE, array::unshift),
    filter("pop", NONE, array::pop),
    filter("shift", NONE, array::shift),
    filter("sum", ONE, array::sum),
    filter("__lq_range", TWO, array::range),
    JsFilter {
        name: "default",
        positional: ONE,
        keyword: &[param("allow_false")],
        run: standard::default,
    },
    filter("strip", ONE, standard::strip),
    filter("lstrip", ONE, standard::lstrip),
    filter("rstrip", ONE, standard::rstrip),
    filter("split", ONE, standard::split),
    filter("replace", TWO, standard::replace),
    filter("truncate", TWO, standard::truncate),
    filter("truncatewords", TWO, standard::truncatewords),
    filter("url_encode", NONE, standard::url_encode),
    filter("slice", TWO, standard::slice),
    filter("escape", NONE, standard::escape),
    filter("escape_once", NONE, standard::escape_once),
    filter("capitalize", NONE, standard::capitalize),
    filter("sample", ONE, standard::sample),
    filter("abs", NONE, math::abs),
    filter("at_least", ONE, math::at_least),
    filter("at_most", ONE, math::at_most),
    filter("ceil", NONE, math::ceil),
    filter("floor", NONE, math::floor),
    filter("divided_by", TWO, math::divided_by),
    filter("minus", ONE, math::minus),
    filter("plus", ONE, math::plus),
    filter("times", ONE, math::times),
    filter("modulo", ONE, math::modulo),
    filter("round", ONE, math::round),
    filter("date", TWO, date::date),
];

impl FilterReflection for JsFilter {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        "LiquidJS filter"
    }

    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        self.positional
    }

    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        self.keyword
    }
}

impl ParseFilter for JsFilter {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        let positional: Vec<Expression> = arguments.positional.collect();
        if positional.len() > self.positional.len() {
            return Err(Error::with_msg(format!(
                "filter \"{}\" takes at most {} arguments",
                self.name,
                self.positional.len()
            )));
        }
        let keyword = arguments
            .keyword
            .map(|(k, v)| (KString::from_ref(k), v))
            .collect();
        Ok(Box::new(JsCall {
            filter: *self,
            positional,
            keyword,
        }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

/// A parsed call of a [`JsFilter`].
struct JsCall {
    filter: JsFilter,
    positional: Vec<Expression>,
    keyword: Vec<(KString, Expression)>,
}

impl fmt::Debug for JsCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for JsCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.filter.name)?;
        for (i, arg) in self.positional.iter().enumerate() {
            write!(f, "{}{arg}", if i == 0 { ": " } else { ", " })?;
        }
        Ok(())
    }
}

impl Filter for JsCall {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<LiquidValue> {
        let mut args = Args {
            positional: Vec::with_capacity(self.positional.len()),
            keyword: Vec::with_capacity(self.keyword.len()),
        };
        for arg in &self.positional {
            args.positional.push(arg.evaluate(runtime)?.to_value());
        }
        for (key, arg) in &self.keyword {
            args.keyword
                .push((key.clone(), arg.evaluate(runtime)?.to_value()));
        }
        (self.filter.run)(input, &args)
    }
}

/// LiquidJS's `stringify`: nil is "", an array joins its items' strings, a number prints as
/// JavaScript prints it.
pub(super) fn js_stringify(value: &dyn ValueView) -> String {
    let mut out = String::new();
    stringify_into(value, &mut out);
    out
}

fn stringify_into(value: &dyn ValueView, out: &mut String) {
    if value.is_nil() {
        return;
    }
    if let Some(array) = value.as_array() {
        for item in array.values() {
            stringify_into(item, out);
        }
        return;
    }
    if value.is_object() {
        out.push_str("[object Object]");
        return;
    }
    if let Some(scalar) = value.as_scalar() {
        match value.type_name() {
            "fractional number" | "whole number" => {
                if let Some(f) = scalar.to_float() {
                    out.push_str(&js_number(f));
                    return;
                }
            }
            _ => {}
        }
    }
    out.push_str(value.to_kstr().as_str());
}

/// A string value.
fn string(s: String) -> LiquidValue {
    LiquidValue::scalar(s)
}

/// A number value, integral when JavaScript would print it without a fraction.
pub(super) fn number(f: f64) -> LiquidValue {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        LiquidValue::scalar(f as i64)
    } else {
        LiquidValue::scalar(f)
    }
}
