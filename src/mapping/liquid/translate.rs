use super::*;

pub(super) struct Translation {
    pub(super) source: String,
    pub(super) plan: Plan,
    pub(super) coerced: Vec<CoercedInput>,
    /// The variable of each `increment` and `decrement` tag, by the slot it is numbered with.
    pub(super) counters: Vec<String>,
}

/// A payload path whose value a filter reads with a JavaScript coercion, evaluated at render
/// time and exposed under `alias`.
#[derive(Debug, Clone)]
pub(super) struct CoercedInput {
    pub(super) alias: String,
    pub(super) path: Vec<String>,
    pub(super) coercion: Coercion,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Coercion {
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
    /// The left side of `contains`: only an array or a string contains anything, so an object
    /// reads as nil (the `liquid` crate would test its keys).
    Container,
    /// `json`, `jsonify` and `inspect` with an optional numeric `space`: the payload value's
    /// JSON text, keys in the payload's order (the `liquid` crate's objects keep none).
    Json(Option<f64>),
    /// A range's bound: JavaScript's `Number(value)`, NaN for `undefined`.
    RangeBound,
}

#[derive(Default)]
pub(super) struct Translator {
    pub(super) out: String,
    pub(super) plan: Plan,
    pub(super) blocks: Vec<&'static str>,
    /// Variables the template assigns, captures, increments or decrements: a filter input among
    /// them is not coerced ahead of time, as the payload value is not what the filter reads.
    pub(super) assigned: HashSet<String>,
    pub(super) coerced: Vec<CoercedInput>,
    pub(super) counters: Vec<String>,
    /// Ranges evaluated into variables so far.
    pub(super) ranges: usize,
    /// Operator results of `<>` conditions computed into variables so far.
    pub(super) booleans: usize,
    /// Where each open `if`/`unless` (or the `if` an `elsif` of `unless` opens) starts in
    /// `out`: the ranges of a later `elsif` are evaluated there.
    pub(super) starts: Vec<usize>,
}

/// Names the template assigns or captures (`counters: false`), or increments or decrements
/// (`counters: true`), including inside `liquid` tags.
pub(super) fn assigned_names(tokens: &[Token<'_>], counters: bool) -> HashSet<String> {
    fn visit(name: &str, args: &str, counters: bool, names: &mut HashSet<String>) {
        let mut lexer = Lexer::new(args);
        match name {
            "increment" | "decrement" if counters => {
                names.insert(lexer.read_identifier().to_owned());
            }
            "assign" if !counters => {
                names.insert(lexer.read_identifier().to_owned());
            }
            "capture" if !counters => {
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
                    visit(name, trim_blanks(rest), counters, names);
                }
            }
            _ => {}
        }
    }
    let mut names = HashSet::new();
    for token in tokens {
        if let Token::Tag(tag) = token {
            visit(tag.name, tag.args, counters, &mut names);
        }
    }
    names
}

pub(super) fn translate(src: &str) -> Result<Translation, LiquidError> {
    let tokens = tokenize(src)?;
    let mut assigned = assigned_names(&tokens, false);
    // A counter lives among the payload's variables (an assigned variable of the same name
    // shadows it): a filter reading one is not coerced ahead.
    assigned.extend(assigned_names(&tokens, true));
    let mut t = Translator {
        assigned,
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
        counters: t.counters,
    })
}

impl Translator {
    /// Literal text; a `{` that could start a delimiter is written as an output of `"{"`.
    pub(super) fn text(&mut self, text: &str) {
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

    pub(super) fn output(&mut self, markup: &str) -> Result<(), LiquidError> {
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

    pub(super) fn tag<'a>(
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
                self.starts.push(self.out.len());
                let condition = self.condition_of(tag.args)?;
                let _ = write!(self.out, "{{% {name} {condition} %}}");
                self.blocks.push(if name == "if" { "if" } else { "unless" });
            }
            "elsif" => {
                let mark = self.out.len();
                let condition = self.condition_of(tag.args)?;
                // Ranges the condition reads are evaluated before the chain's `if`, where
                // nothing has changed them yet (the branches before do not run).
                let evaluated = self.out.split_off(mark);
                match self.blocks.last() {
                    Some(&("if" | "unless-elsif")) => {
                        let start = self.starts.last().copied().unwrap_or(mark);
                        self.out.insert_str(start, &evaluated);
                        let _ = write!(self.out, "{{% elsif {condition} %}}");
                    }
                    // The `liquid` crate has no `elsif` in `unless`: the rest of the chain
                    // becomes an `if` in its `else`.
                    Some(&"unless") => {
                        self.out.push_str("{% else %}");
                        self.starts.push(self.out.len());
                        let _ = write!(self.out, "{evaluated}{{% if {condition} %}}");
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
                self.starts.pop();
                self.out.push_str("{% endif %}");
            }
            "endunless" => {
                if self.blocks.last() == Some(&"unless-elsif") {
                    self.blocks.pop();
                    self.starts.pop();
                    self.out.push_str("{% endif %}");
                }
                self.close("unless", name)?;
                self.starts.pop();
                self.out.push_str("{% endunless %}");
            }
            "increment" | "decrement" => {
                let variable = Lexer::new(tag.args).read_identifier();
                if variable.is_empty() {
                    return Err(unsupported(&format!("{name} without a variable name")));
                }
                let variable = emit_root(variable);
                let _ = write!(
                    self.out,
                    "{{% {name} {variable} {} %}}",
                    self.counters.len()
                );
                self.counters.push(variable);
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
    pub(super) fn chain(
        &mut self,
        operand: &Operand,
        calls: &[FilterCall],
    ) -> Result<String, LiquidError> {
        let operand = self.hoist(operand)?;
        let mut operand = match &operand {
            Operand::Access(base, props) => fold_literal_access(base, props)?,
            _ => operand,
        };
        let mut filters = self.filters(calls)?;
        let mut input = operand_size(&operand);
        let mut alias = None;
        let coercion = match filters.items.first().map(|f| f.name.as_str()) {
            Some("size") => Some(Coercion::Size),
            Some("first" | "last") => Some(Coercion::ArrayLike),
            Some("join" | "compact" | "where") => Some(Coercion::ToArray),
            Some(name) if NUMERIC_FILTERS.contains(&name) => Some(Coercion::Number),
            Some("json" | "jsonify" | "inspect") if matches!(operand, Operand::Path(_)) => {
                json_space(calls).map(Coercion::Json)
            }
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
                    // The alias already is the JSON text.
                    Coercion::Json(_) => {
                        filters.items.remove(0);
                    }
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
    pub(super) fn coerced_alias(&mut self, props: &[Prop], coercion: Coercion) -> Option<String> {
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
    pub(super) fn filters(&mut self, calls: &[FilterCall]) -> Result<Filters, LiquidError> {
        let engine = engine()?;
        let mut out = Filters {
            items: Vec::new(),
            costs: Vec::new(),
        };
        for call in calls {
            let substitute;
            let call = match date_to_format(call)? {
                Some(format) => {
                    substitute = FilterCall {
                        name: "date".to_owned(),
                        args: vec![FilterArg::Positional(Operand::Str(format))],
                    };
                    &substitute
                }
                None => call,
            };
            let name = call.name.as_str();
            if DISABLED_FILTERS.contains(&name) {
                return Err(error(format!("filter \"{name}\" is disabled")));
            }
            let name = if name == "xml_escape" { "escape" } else { name };
            // The translation's own filters are not LiquidJS's.
            let shape = engine
                .filters
                .get(name)
                .filter(|_| !name.starts_with("__lq"));
            let Some(shape) = shape else {
                if UNSUPPORTED_FILTERS.contains(&name) {
                    return Err(error(format!("filter \"{name}\" is not supported")));
                }
                // LiquidJS renders an undefined filter (and `raw`) as the identity.
                continue;
            };
            let numeric = NUMERIC_FILTERS.contains(&name);
            // The math filters read their operands as JavaScript numbers themselves.
            let prefix = "";
            let mut args = Vec::new();
            let mut sizes = Vec::new();
            let mut positional = 0;
            if name == "date" {
                // The format must be known here for its widths to be bounded.
                let format = match call.args.first() {
                    None | Some(FilterArg::Positional(Operand::Literal(Literal::Nil))) => {
                        DEFAULT_DATE_FORMAT.to_owned()
                    }
                    Some(FilterArg::Positional(Operand::Str(format))) => format.clone(),
                    Some(FilterArg::Positional(Operand::Num(n))) => js_number(*n),
                    _ => return Err(unsupported("a date format that is not a literal string")),
                };
                if widest_date_directive(&format) > MAX_DATE_WIDTH {
                    return Err(unsupported("a date format width over 1024"));
                }
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
                            match operand {
                                // A `nil`, `empty` or `blank` zone is a drop, which LiquidJS
                                // reads as the offset 0 (a nil variable is no zone).
                                Operand::Literal(
                                    Literal::Nil | Literal::Empty | Literal::Blank,
                                ) if name == "date" => args.push("0".to_owned()),
                                _ => args.push(self.filter_arg(operand, numeric)?),
                            }
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
    pub(super) fn filter_arg(
        &mut self,
        operand: &Operand,
        numeric: bool,
    ) -> Result<String, LiquidError> {
        let operand = &self.hoist(operand)?;
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
    pub(super) fn condition_of(&mut self, args: &str) -> Result<String, LiquidError> {
        let value = Lexer::new(args).read_filtered_value()?;
        if self.has_filters(&value.filters)? {
            return Err(unsupported("filters in a condition"));
        }
        self.emit_condition(&value.expr)
    }

    /// Whether a filter chain does anything (filters LiquidJS ignores do not count).
    pub(super) fn has_filters(&mut self, calls: &[FilterCall]) -> Result<bool, LiquidError> {
        Ok(!self.filters(calls)?.items.is_empty())
    }

    pub(super) fn close(&mut self, block: &str, end_tag: &str) -> Result<(), LiquidError> {
        if self.blocks.last() == Some(&block) {
            self.blocks.pop();
            Ok(())
        } else {
            Err(error(format!("tag \"{end_tag}\" not found")))
        }
    }

    pub(super) fn assign(&mut self, args: &str) -> Result<(), LiquidError> {
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

    pub(super) fn cycle(&mut self, args: &str) -> Result<(), LiquidError> {
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
pub(super) fn simple_value(expr: &[ExprToken]) -> Option<&Operand> {
    if expr.iter().any(|token| matches!(token, ExprToken::Op(_))) {
        return None;
    }
    match expr.first() {
        Some(ExprToken::Value(operand)) => Some(operand),
        _ => None,
    }
}

/// A translated filter chain.
pub(super) struct Filters {
    pub(super) items: Vec<FilterText>,
    pub(super) costs: Vec<Cost>,
}

/// One translated filter: the coercion of its input, then the filter itself.
pub(super) struct FilterText {
    pub(super) name: String,
    pub(super) prefix: &'static str,
    pub(super) body: String,
}

impl FilterText {
    pub(super) fn text(&self) -> String {
        format!("{}{}", self.prefix, self.body)
    }
}

/// The `space` of a chain's first filter when it is `json`, `jsonify` or `inspect`: `Some(None)`
/// without one, `None` when it is not a number literal (then the filter runs on the `liquid`
/// value).
pub(super) fn json_space(calls: &[FilterCall]) -> Option<Option<f64>> {
    let first = calls.first()?;
    if !matches!(first.name.as_str(), "json" | "jsonify" | "inspect") {
        return None;
    }
    match first.args.first() {
        None => Some(None),
        Some(FilterArg::Positional(Operand::Num(n))) => Some(Some(*n)),
        Some(FilterArg::Positional(Operand::Literal(Literal::Nil))) => Some(None),
        _ => None,
    }
}
