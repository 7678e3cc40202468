//! Ranges as values: `(low..high)` is the array of the numbers from `low` to `high`, as
//! LiquidJS's `range(+low, +high + 1)` builds it.
//!
//! The `liquid` crate reads ranges only in `for` (which Segment disables), so the translator
//! evaluates each range into a variable of its own just before the tag or output that reads it:
//! `{% assign __lqr_0 = low | __lq_range: high, cap %}`. The array's size is charged to the
//! working-memory estimate: exactly for literal bounds (a hostile `(1..100000000000)` fails the
//! render before anything is allocated, like any other template over the budget), and as
//! [`MAX_RANGE_ITEMS`] for bounds read from variables, where the filter refuses a longer range.

use super::*;

/// Longest range whose bounds are variables.
pub(super) const MAX_RANGE_ITEMS: usize = 10_000;
/// What one item of a range counts for in the working-memory estimate (as a payload number).
const RANGE_ITEM_BYTES: f64 = 32.0;
/// Prefix of the variables ranges are evaluated into (`emit_root` never writes it).
const RANGE_PREFIX: &str = "__lqr_";

/// The length of LiquidJS's `range(low, high + 1)`: the `i = low; i < high + 1; i += 1` loop.
pub(super) fn range_len(low: f64, high: f64) -> f64 {
    let stop = high + 1.0;
    if low.is_nan() || stop.is_nan() || low >= stop {
        0.0
    } else {
        (stop - low).ceil()
    }
}

/// A bound as LiquidJS reads a literal: `+value`.
fn literal_bound(operand: &Operand) -> Option<f64> {
    match operand {
        Operand::Num(n) => Some(*n),
        Operand::Str(s) => Some(js_string_to_number(s)),
        Operand::Literal(Literal::True) => Some(1.0),
        Operand::Literal(_) => Some(0.0),
        _ => None,
    }
}

impl Translator {
    /// Replaces a range (or properties of one) by the variable it is evaluated into, writing
    /// the evaluation to the output first.
    pub(super) fn hoist(&mut self, operand: &Operand) -> Result<Operand, LiquidError> {
        let (low, high, props) = match operand {
            Operand::Range(low, high) => (low, high, Vec::new()),
            Operand::Access(base, props) => match &**base {
                Operand::Range(low, high) => (low, high, props.clone()),
                _ => return Ok(operand.clone()),
            },
            _ => return Ok(operand.clone()),
        };
        let low = self.bound(low)?;
        let high = self.bound(high)?;
        let cap = match (literal_bound(&low), literal_bound(&high)) {
            (Some(low), Some(high)) => range_len(low, high),
            _ => MAX_RANGE_ITEMS as f64,
        };
        let name = format!("{RANGE_PREFIX}{}", self.ranges);
        self.ranges += 1;
        let low_text = self.emit_bound(&low)?;
        let high_text = self.emit_bound(&high)?;
        let _ = write!(
            self.out,
            "{{% assign {name} = {low_text} | __lq_range: {high_text}, {} %}}",
            emit_number(cap)
        );
        self.plan.steps.push(Step::Chain(
            Size::Literal(cap * RANGE_ITEM_BYTES),
            Vec::new(),
        ));
        Ok(Operand::Hidden(name, props))
    }

    /// A range's bound: a literal or a variable path (a literal's properties folded).
    fn bound(&mut self, operand: &Operand) -> Result<Operand, LiquidError> {
        let operand = match operand {
            Operand::Access(base, props) => fold_literal_access(base, props)?,
            _ => operand.clone(),
        };
        match operand {
            Operand::Range(..) | Operand::Access(..) | Operand::Hidden(..) => {
                Err(unsupported("a range as a range's bound"))
            }
            _ => Ok(operand),
        }
    }

    /// A bound for `__lq_range`: a payload path read with JavaScript's `Number` (`undefined`
    /// is NaN, `null` 0), a literal as its number (NaN and the infinities as strings).
    fn emit_bound(&mut self, bound: &Operand) -> Result<String, LiquidError> {
        if let Operand::Path(props) = bound {
            return match self.coerced_alias(props, Coercion::RangeBound) {
                Some(alias) => Ok(alias),
                None => emit_operand(bound),
            };
        }
        let n = literal_bound(bound).unwrap_or(f64::NAN);
        if n.is_finite() {
            Ok(emit_number(n))
        } else {
            emit_string(&js_number(n))
        }
    }

    /// [`Translator::hoist`] on every operand of a condition.
    pub(super) fn hoist_all(&mut self, expr: &[ExprToken]) -> Result<Vec<ExprToken>, LiquidError> {
        expr.iter()
            .map(|token| match token {
                ExprToken::Value(operand) => Ok(ExprToken::Value(self.hoist(operand)?)),
                ExprToken::Op(op) => Ok(ExprToken::Op(*op)),
            })
            .collect()
    }
}
