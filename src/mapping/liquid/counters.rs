//! LiquidJS's `increment` and `decrement`: the counter is a variable of the payload's scope.
//!
//! LiquidJS keeps counters in the render's environment (the payload), not apart as the `liquid`
//! crate does: a counter starts from the payload's value of that name when it is a number (0
//! otherwise), and `{{ n }}` reads it afterwards. Here the counter's value is set as a global of
//! the render, which a later read of the name finds before the payload; the translator refuses
//! a template that also assigns or captures the name (LiquidJS keeps those apart).

use std::io::Write;

use liquid_core::error::ResultLiquidReplaceExt;
use liquid_core::model::{KString, ScalarCow, ValueView};
use liquid_core::{Language, ParseTag, Renderable, Result, Runtime, TagReflection, TagTokenIter};

use super::filters::number;
use super::value::js_number;

/// `increment` (prints, then adds 1) or `decrement` (subtracts 1, then prints).
#[derive(Clone, Copy, Debug)]
pub(super) struct CounterTag {
    name: &'static str,
    step: f64,
}

pub(super) const INCREMENT: CounterTag = CounterTag {
    name: "increment",
    step: 1.0,
};
pub(super) const DECREMENT: CounterTag = CounterTag {
    name: "decrement",
    step: -1.0,
};

impl TagReflection for CounterTag {
    fn tag(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        "LiquidJS counter"
    }
}

impl ParseTag for CounterTag {
    fn parse(
        &self,
        mut arguments: TagTokenIter<'_>,
        _options: &Language,
    ) -> Result<Box<dyn Renderable>> {
        let id = arguments
            .expect_next("Identifier expected.")?
            .expect_identifier()
            .into_result()?;
        let id = KString::from_ref(id);
        arguments.expect_nothing()?;
        Ok(Box::new(Counter { tag: *self, id }))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
struct Counter {
    tag: CounterTag,
    id: KString,
}

impl Renderable for Counter {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let path = [ScalarCow::new(self.id.as_str())];
        let current = runtime
            .try_get(&path)
            .filter(|v| matches!(v.type_name(), "whole number" | "fractional number"))
            .and_then(|v| v.as_scalar().and_then(|s| s.to_float()))
            .unwrap_or(0.0);
        let next = current + self.tag.step;
        let shown = if self.tag.step > 0.0 { current } else { next };
        write!(writer, "{}", js_number(shown)).replace("Failed to render")?;
        runtime.set_global(self.id.clone(), number(next));
        Ok(())
    }
}
