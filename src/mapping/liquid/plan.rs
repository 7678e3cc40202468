use super::*;

/// Upper bound of a value's size in bytes: a literal's, or any variable's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Size {
    Literal(f64),
    Variable,
}

impl Size {
    pub(super) fn bound(self, largest: f64) -> f64 {
        match self {
            Size::Literal(n) => n,
            Size::Variable => largest,
        }
    }
}

/// How a filter can grow its input.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cost {
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
pub(super) enum Step {
    /// A value and its filters, evaluated.
    Chain(Size, Vec<Cost>),
    /// Text appended to the enclosing capture.
    Text(usize),
    CaptureStart,
    CaptureEnd,
}

/// The evaluations of a template in source order, to bound the largest value it can build.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) steps: Vec<Step>,
}

impl Plan {
    /// The largest value (bytes) the template can build from a payload of `weight` bytes,
    /// following every branch.
    pub(super) fn estimate(&self, weight: f64) -> f64 {
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
    pub(super) fn apply(self, size: f64, largest: f64) -> f64 {
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

pub(super) fn operand_size(operand: &Operand) -> Size {
    match operand {
        Operand::Str(s) => Size::Literal(s.len() as f64),
        Operand::Path(_) | Operand::Access(..) => Size::Variable,
        _ => Size::Literal(32.0),
    }
}

pub(super) fn filter_cost(name: &str, args: &[Size]) -> Cost {
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
        "capitalize" => Cost::Scale(3.0),
        "date" => Cost::Date(arg(0, 0.0)),
        "size" | "number_of_words" | "sum" | "to_integer" => Cost::Fixed(32.0),
        // Without `space`, at most `\u00XX` for each byte; indented, up to the cap.
        "json" | "jsonify" | "inspect" => match args.first() {
            None => Cost::Scale(6.0),
            Some(_) => Cost::Fixed(MAX_INDENTED_BYTES as f64),
        },
        "base64_encode" => Cost::Scale(2.0),
        "sha256" | "hmac_sha256" => Cost::Fixed(64.0),
        // Lower-casing can lengthen a character up to three times; percent-encoding a byte.
        "slugify" | "cgi_escape" | "uri_escape" => Cost::Scale(3.0),
        "replace_last" => Cost::Add(arg(1, 0.0)),
        "push" | "unshift" => Cost::Add(arg(0, 32.0)),
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
