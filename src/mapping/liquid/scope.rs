//! The render in progress, for the tags and filters that need LiquidJS's view of the payload
//! rather than the `liquid` crate's copies of its values.
//!
//! The `liquid` runtime hands tags and filters owned copies of the payload's values
//! (`liquid::model::Object` keeps no key order) and keeps every variable a tag sets in the scope
//! `assign` writes to. Two LiquidJS behaviours need the payload itself: `increment` and
//! `decrement` write their counters into the payload's scope (under the template's assigned
//! variables, which shadow them), and `json`/`inspect` print an object's keys in the order the
//! payload has them. While a template renders, its [`Root`] is installed here for the current
//! thread (a render never leaves its thread).

use std::cell::RefCell;
use std::rc::Rc;

use super::value::Root;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Root>>> = const { RefCell::new(None) };
}

/// Installs a render's root for the current thread until dropped (also on unwinding).
pub(super) struct Installed {
    previous: Option<Rc<Root>>,
}

impl Installed {
    pub(super) fn new(root: Rc<Root>) -> Installed {
        let previous = CURRENT.with(|current| current.borrow_mut().replace(root));
        Installed { previous }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The root of the render in progress on this thread, if any.
pub(super) fn current() -> Option<Rc<Root>> {
    CURRENT.with(|current| current.borrow().clone())
}
