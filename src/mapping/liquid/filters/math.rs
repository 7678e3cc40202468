//! The math filters on JavaScript numbers: every operand read with `+value || 0`, `modulo`
//! floored, `divided_by`'s integer flag, `round` by decimal shifting, and `NaN` and `Infinity`
//! printed as JavaScript prints them.

use super::*;

/// `+value || 0`.
fn operand(value: &dyn ValueView) -> f64 {
    let n = super::array::to_number(value);
    if n.is_nan() { 0.0 } else { n }
}

fn arg(args: &Args, i: usize) -> f64 {
    args.positional.get(i).map_or(0.0, |v| operand(v))
}

/// A JavaScript number as a value: integral numbers print without a fraction, `-0` as `0`,
/// `NaN` and `Infinity` as their names.
fn result(n: f64) -> Result<LiquidValue> {
    Ok(if n.is_finite() {
        number(n)
    } else {
        string(js_number(n))
    })
}

pub(super) fn abs(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    result(operand(input).abs())
}

/// `Math.max(v, arg)`, where any `NaN` operand gives `NaN` (none can: `|| 0`).
pub(super) fn at_least(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let v = operand(input);
    result(if args.positional.is_empty() {
        v
    } else {
        v.max(arg(args, 0))
    })
}

pub(super) fn at_most(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let v = operand(input);
    result(if args.positional.is_empty() {
        v
    } else {
        v.min(arg(args, 0))
    })
}

pub(super) fn ceil(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    result(operand(input).ceil())
}

pub(super) fn floor(input: &dyn ValueView, _: &Args) -> Result<LiquidValue> {
    result(operand(input).floor())
}

/// `dividend / divisor`, floored when the third argument is truthy as a number.
pub(super) fn divided_by(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let quotient = operand(input) / arg(args, 0);
    result(if arg(args, 1) != 0.0 {
        quotient.floor()
    } else {
        quotient
    })
}

pub(super) fn minus(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    result(operand(input) - arg(args, 0))
}

pub(super) fn plus(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    result(operand(input) + arg(args, 0))
}

pub(super) fn times(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    result(operand(input) * arg(args, 0))
}

/// `((v % arg) + arg) % arg`.
pub(super) fn modulo(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let (v, m) = (operand(input), arg(args, 0));
    result(((v % m) + m) % m)
}

/// `Number(`${mantissa}e${power + exponent}`)` of `String(n)`: a decimal shift without the
/// binary rounding of a multiplication.
fn shift_decimal(n: f64, exponent: f64) -> f64 {
    let text = js_number(n);
    let (mantissa, power) = text.split_once('e').unwrap_or((&text, "0"));
    let power = crate::json::string_to_number(power).unwrap_or(f64::NAN) + exponent;
    crate::json::string_to_number(&format!("{mantissa}e{}", js_number(power))).unwrap_or(f64::NAN)
}

/// JavaScript's `Math.round`: halves round up.
fn js_round(x: f64) -> f64 {
    let down = x.floor();
    if x - down >= 0.5 { down + 1.0 } else { down }
}

pub(super) fn round(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let v = operand(input);
    let digits = arg(args, 0);
    let scaled = shift_decimal(v.abs(), digits);
    if scaled.is_nan() || scaled > 9_007_199_254_740_991.0 {
        return result(v);
    }
    let rounded = shift_decimal(js_round(scaled), -digits);
    result(if v < 0.0 { -rounded } else { rounded })
}
