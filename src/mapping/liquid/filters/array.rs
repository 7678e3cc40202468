//! Array filters: `push`, `unshift`, `pop`, `shift` (on a copy) and `sum`.

use super::*;

/// LiquidJS's `toArray`: nil is `[]`, an array itself, anything else `[value]`.
fn to_array(input: &dyn ValueView) -> Vec<LiquidValue> {
    if input.is_nil() {
        Vec::new()
    } else if let Some(array) = input.as_array() {
        array.values().map(ValueView::to_value).collect()
    } else {
        vec![input.to_value()]
    }
}

fn arg(args: &Args) -> LiquidValue {
    args.positional.first().cloned().unwrap_or(LiquidValue::Nil)
}

pub(super) fn push(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let mut items = to_array(input);
    items.push(arg(args));
    Ok(LiquidValue::Array(items))
}

pub(super) fn unshift(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let mut items = to_array(input);
    items.insert(0, arg(args));
    Ok(LiquidValue::Array(items))
}

pub(super) fn pop(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let mut items = to_array(input);
    items.pop();
    Ok(LiquidValue::Array(items))
}

pub(super) fn shift(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    let mut items = to_array(input);
    if !items.is_empty() {
        items.remove(0);
    }
    Ok(LiquidValue::Array(items))
}

/// JavaScript's `Number(value)` of a filter value.
pub(super) fn to_number(value: &dyn ValueView) -> f64 {
    if value.is_nil() {
        // `Number(null)` is 0, `Number(undefined)` NaN: both add nothing.
        return 0.0;
    }
    if let Some(array) = value.as_array() {
        let items: Vec<_> = array.values().collect();
        return match items.as_slice() {
            [] => 0.0,
            [item] if item.as_array().is_none() && item.type_name() != "boolean" => {
                to_number(*item)
            }
            _ => f64::NAN,
        };
    }
    if value.is_object() {
        return f64::NAN;
    }
    match value.type_name() {
        "boolean" => {
            if value.query_state(liquid::model::State::Truthy) {
                1.0
            } else {
                0.0
            }
        }
        "whole number" | "fractional number" => value
            .as_scalar()
            .and_then(|s| s.to_float())
            .unwrap_or(f64::NAN),
        _ => crate::json::string_to_number(value.to_kstr().as_str()).unwrap_or(f64::NAN),
    }
}

pub(super) fn sum(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let property = args.get(0).map(|p| js_stringify(p));
    let mut total = 0.0;
    for item in to_array(input) {
        let n = match &property {
            Some(key) => match item.as_object().and_then(|o| o.get(key)) {
                Some(v) => to_number(v),
                None => f64::NAN,
            },
            None => to_number(&item),
        };
        if !n.is_nan() {
            total += n;
        }
    }
    Ok(number(total))
}

/// The translation's `low | __lq_range: high, cap`: LiquidJS's `range(+low, +high + 1)`, the
/// numbers from `low` by steps of 1 while below `high + 1`, refused past `cap` items (the size
/// the working-memory estimate counted).
pub(super) fn range(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    // A payload path comes coerced (NaN for `undefined`); nil here is `null`, 0.
    let low = to_number(input);
    let high = args.positional.first().map_or(f64::NAN, |v| to_number(v));
    let cap = args.positional.get(1).map_or(0.0, |v| to_number(v));
    let too_long = || {
        Error::with_msg(format!(
            "liquid range ({}..{}) is longer than {} items, the working-memory budget",
            js_number(low),
            js_number(high),
            js_number(cap)
        ))
    };
    if crate::mapping::liquid::ranges::range_len(low, high) > cap {
        return Err(too_long());
    }
    let stop = high + 1.0;
    let mut items = Vec::new();
    let mut i = low;
    while i < stop {
        // `i += 1` stops changing `i` past 2^53; LiquidJS would loop until it runs out.
        if items.len() as f64 >= cap {
            return Err(too_long());
        }
        items.push(number(i));
        i += 1.0;
    }
    Ok(LiquidValue::Array(items))
}
