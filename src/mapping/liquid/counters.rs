//! LiquidJS's `increment` and `decrement`: the counter is a variable of the payload's scope.
//!
//! LiquidJS keeps counters in the render's environment (the payload), not apart as the `liquid`
//! crate does: a counter starts from the payload's value of that name when it is a number (0
//! otherwise), and `{{ n }}` reads it afterwards unless the template has assigned or captured
//! that name, which shadows the counter without changing it. Here each tag has a slot of the
//! render's [`Root`](super::value::Root) (the translator numbers them: `{% increment n 0 %}`),
//! which the payload's scope reads before the payload itself, below the `liquid` runtime's
//! assigned variables.

use std::io::Write;

use liquid_core::error::ResultLiquidReplaceExt;
use liquid_core::model::KString;
use liquid_core::{Language, ParseTag, Renderable, Result, Runtime, TagReflection, TagTokenIter};

use super::scope;
use super::value::{Node, js_number, number_node};

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
        let slot = match arguments.next() {
            Some(token) => token
                .as_str()
                .parse::<usize>()
                .map_err(|_| liquid_core::Error::with_msg("Counter slot expected."))?,
            None => return Err(liquid_core::Error::with_msg("Counter slot expected.")),
        };
        arguments.expect_nothing()?;
        Ok(Box::new(Counter {
            tag: *self,
            id,
            slot,
        }))
    }

    fn reflection(&self) -> &dyn TagReflection {
        self
    }
}

#[derive(Debug)]
struct Counter {
    tag: CounterTag,
    id: KString,
    slot: usize,
}

impl Renderable for Counter {
    fn render_to(&self, writer: &mut dyn Write, _runtime: &dyn Runtime) -> Result<()> {
        let fail = || liquid_core::Error::with_msg("Counter outside its render.");
        let root = scope::current().ok_or_else(fail)?;
        let slot = root.counters.get(self.slot).ok_or_else(fail)?;
        let current = match root.lookup(self.id.as_str()) {
            Node::Int(i) => *i as f64,
            Node::Float(f) => *f,
            _ => 0.0,
        };
        let next = current + self.tag.step;
        let shown = if self.tag.step > 0.0 { current } else { next };
        slot.value.set(number_node(next)).map_err(|_| fail())?;
        write!(writer, "{}", js_number(shown)).replace("Failed to render")?;
        Ok(())
    }
}
