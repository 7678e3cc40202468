use super::*;

/// Whitespace as LiquidJS's `BLANK` character class sees it.
pub(super) fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\r'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Identifier characters as LiquidJS's `isWord` sees them.
pub(super) fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '?')
    } else {
        !is_blank(c) && c != '\u{201c}' && c != '\u{201d}'
    }
}

pub(super) fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|rest| rest.chars().next())
}

pub(super) fn skip_blanks(s: &str, mut i: usize) -> usize {
    while let Some(c) = char_at(s, i).filter(|c| is_blank(*c)) {
        i += c.len_utf8();
    }
    i
}

pub(super) fn skip_word(s: &str, mut i: usize) -> usize {
    while let Some(c) = char_at(s, i).filter(|c| is_word(*c)) {
        i += c.len_utf8();
    }
    i
}

pub(super) fn trim_blanks(s: &str) -> &str {
    s.trim_matches(is_blank)
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: a port of LiquidJS's top-level tokenizer and whitespace control

#[derive(Debug, Clone)]
pub(super) enum Token<'a> {
    Html(HtmlToken<'a>),
    Tag(TagToken<'a>),
    Output(OutputToken<'a>),
}

#[derive(Debug, Clone)]
pub(super) struct HtmlToken<'a> {
    pub(super) text: &'a str,
    pub(super) trim_start: bool,
    pub(super) trim_end: bool,
}

impl<'a> HtmlToken<'a> {
    pub(super) fn content(&self) -> &'a str {
        let mut text = self.text;
        if self.trim_start {
            text = text.trim_start_matches(is_blank);
        }
        if self.trim_end {
            text = text.trim_end_matches(is_blank);
        }
        text
    }
}

#[derive(Debug, Clone)]
pub(super) struct TagToken<'a> {
    pub(super) name: &'a str,
    pub(super) args: &'a str,
    pub(super) trim_left: bool,
    pub(super) trim_right: bool,
}

#[derive(Debug, Clone)]
pub(super) struct OutputToken<'a> {
    pub(super) content: &'a str,
    pub(super) trim_left: bool,
    pub(super) trim_right: bool,
}

/// The content of a `{%..%}` or `{{..}}` token spanning `begin..end`, with its trim markers.
pub(super) fn delimited(src: &str, begin: usize, end: usize) -> (&str, bool, bool) {
    let b = src.as_bytes();
    let content_begin = begin + 2;
    let content_end = end.saturating_sub(2).max(begin);
    let trim_left = b.get(content_begin) == Some(&b'-');
    let trim_right = content_end > 0 && b.get(content_end - 1) == Some(&b'-');
    let left = if trim_left {
        content_begin + 1
    } else {
        content_begin
    };
    let right = if trim_right {
        content_end - 1
    } else {
        content_end
    };
    let content = if left < right {
        src.get(left..right).map_or("", trim_blanks)
    } else {
        ""
    };
    (content, trim_left, trim_right)
}

pub(super) fn tag_token(src: &str, begin: usize, end: usize) -> Result<TagToken<'_>, LiquidError> {
    let (content, trim_left, trim_right) = delimited(src, begin, end);
    let (name, rest) = if let Some(rest) = content.strip_prefix('#') {
        ("#", rest)
    } else {
        let name_end = skip_word(content, 0);
        (&content[..name_end], &content[name_end..])
    };
    if name.is_empty() {
        return Err(error("illegal tag syntax, tag name expected"));
    }
    Ok(TagToken {
        name,
        args: trim_blanks(rest),
        trim_left,
        trim_right,
    })
}

/// Advances past the next occurrence of `pattern`, LiquidJS's `readTo`.
pub(super) fn read_to(b: &[u8], p: &mut usize, pattern: &[u8]) -> Option<usize> {
    while *p < b.len() {
        *p += 1;
        if b[..*p].ends_with(pattern) {
            return Some(*p);
        }
    }
    None
}

/// End of a quoted string starting at `begin`, LiquidJS's `readQuoted`.
pub(super) fn skip_quoted(b: &[u8], begin: usize) -> usize {
    let quote = b[begin];
    let mut p = begin + 1;
    let mut escaped = false;
    while p < b.len() {
        p += 1;
        let c = b[p - 1];
        if c == quote && !escaped {
            break;
        }
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        }
    }
    p
}

pub(super) fn snapshot(src: &str, begin: usize) -> String {
    let rest = src.get(begin..).unwrap_or("");
    let mut shown: String = rest.chars().take(32).collect();
    if shown.len() < rest.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, LiquidError> {
    let b = src.as_bytes();
    let n = b.len();
    let mut tokens = Vec::new();
    let mut p = 0;
    let mut in_raw = false;
    while p < n {
        if in_raw {
            let begin = p;
            let (token, next, still_raw) = read_raw(src, begin)?;
            tokens.push(token);
            p = next;
            in_raw = still_raw;
        } else if b[p..].starts_with(b"{%") {
            let begin = p;
            let end = read_to(b, &mut p, b"%}")
                .ok_or_else(|| error(format!("tag {} not closed", snapshot(src, begin))))?;
            let tag = tag_token(src, begin, end)?;
            in_raw = tag.name == "raw";
            tokens.push(Token::Tag(tag));
        } else if b[p..].starts_with(b"{{") {
            let begin = p;
            let mut end = None;
            while p < n {
                if b[p] == b'"' || b[p] == b'\'' {
                    p = skip_quoted(b, p);
                    continue;
                }
                p += 1;
                if b[..p].ends_with(b"}}") {
                    end = Some(p);
                    break;
                }
            }
            let end =
                end.ok_or_else(|| error(format!("output {} not closed", snapshot(src, begin))))?;
            let (content, trim_left, trim_right) = delimited(src, begin, end);
            tokens.push(Token::Output(OutputToken {
                content,
                trim_left,
                trim_right,
            }));
        } else {
            let begin = p;
            while p < n && !(b[p] == b'{' && matches!(b.get(p + 1), Some(b'%' | b'{'))) {
                p += 1;
            }
            tokens.push(Token::Html(HtmlToken {
                text: &src[begin..p],
                trim_start: false,
                trim_end: false,
            }));
        }
    }
    whitespace_control(&mut tokens);
    Ok(tokens)
}

/// The content of a `raw` block or its `endraw` tag, LiquidJS's `readEndrawOrRawContent`.
pub(super) fn read_raw(src: &str, begin: usize) -> Result<(Token<'_>, usize, bool), LiquidError> {
    let b = src.as_bytes();
    let n = b.len();
    let mut p = begin;
    let mut left = read_to(b, &mut p, b"{%").map(|q| q - 2);
    while p < n {
        let word_begin = skip_blanks(src, p);
        p = skip_word(src, word_begin);
        if &src[word_begin..p] != "endraw" {
            left = read_to(b, &mut p, b"{%").map(|q| q - 2);
            continue;
        }
        while p <= n {
            if b[..p].ends_with(b"%}") {
                let end = p;
                let left = left.ok_or_else(|| error("raw block not closed"))?;
                if left == begin {
                    return Ok((Token::Tag(tag_token(src, begin, end)?), end, false));
                }
                let text = src
                    .get(begin..left)
                    .ok_or_else(|| error("raw block not closed"))?;
                let html = HtmlToken {
                    text,
                    trim_start: false,
                    trim_end: false,
                };
                return Ok((Token::Html(html), left, true));
            }
            if b[..p].ends_with(b"{%") {
                break;
            }
            p += 1;
        }
    }
    Err(error(format!("raw {} not closed", snapshot(src, begin))))
}

/// LiquidJS's greedy whitespace control: `-` trims all blanks next to the marker.
pub(super) fn whitespace_control(tokens: &mut [Token<'_>]) {
    let mut in_raw = false;
    for i in 0..tokens.len() {
        let (trim_left, trim_right) = match &tokens[i] {
            Token::Html(_) => continue,
            Token::Tag(tag) => (tag.trim_left, tag.trim_right),
            Token::Output(output) => (output.trim_left, output.trim_right),
        };
        if !in_raw
            && trim_left
            && i > 0
            && let Token::Html(html) = &mut tokens[i - 1]
        {
            html.trim_end = true;
        }
        if let Token::Tag(tag) = &tokens[i] {
            match tag.name {
                "raw" => in_raw = true,
                "endraw" => in_raw = false,
                _ => {}
            }
        }
        if !in_raw
            && trim_right
            && let Some(Token::Html(html)) = tokens.get_mut(i + 1)
        {
            html.trim_start = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Markup parser: a port of LiquidJS's expression and filter syntax

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Literal {
    True,
    False,
    Nil,
    Empty,
    Blank,
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Literal(Literal),
    Str(String),
    Num(f64),
    /// A variable: the root name or index, then properties.
    Path(Vec<Prop>),
    /// Properties of a literal, like `"abc".size`.
    Access(Box<Operand>, Vec<Prop>),
    /// A range like `(1..3)`: the array of the numbers from the first bound to the second.
    Range(Box<Operand>, Box<Operand>),
    /// A variable the translation introduces (a range's array), with properties.
    Hidden(String, Vec<Prop>),
}

#[derive(Debug, Clone)]
pub(super) enum Prop {
    Name(String),
    Index(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
    Contains,
    Not,
    And,
    Or,
}

impl Op {
    pub(super) fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Contains => "contains",
            Op::Not => "not",
            Op::And => "and",
            Op::Or => "or",
        }
    }

    pub(super) fn is_comparison(self) -> bool {
        !matches!(self, Op::Not | Op::And | Op::Or)
    }
}

#[derive(Debug, Clone)]
pub(super) enum ExprToken {
    Op(Op),
    Value(Operand),
}

#[derive(Debug, Clone)]
pub(super) struct FilterCall {
    pub(super) name: String,
    pub(super) args: Vec<FilterArg>,
}

#[derive(Debug, Clone)]
pub(super) enum FilterArg {
    Positional(Operand),
    Keyword(String, Option<Operand>),
}

#[derive(Debug, Clone)]
pub(super) struct FilteredValue {
    pub(super) expr: Vec<ExprToken>,
    pub(super) filters: Vec<FilterCall>,
}

pub(super) struct Lexer<'a> {
    pub(super) s: &'a str,
    pub(super) p: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Lexer { s, p: 0 }
    }

    pub(super) fn peek(&self) -> Option<char> {
        char_at(self.s, self.p)
    }

    pub(super) fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.s.as_bytes().get(self.p + offset).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.p >= self.s.len()
    }

    pub(super) fn skip_blank(&mut self) {
        self.p = skip_blanks(self.s, self.p);
    }

    pub(super) fn rest(&self) -> &'a str {
        self.s.get(self.p..).unwrap_or("")
    }

    pub(super) fn fail(&self, message: &str) -> LiquidError {
        error(format!("{message}, at {}", snapshot(self.s, self.p)))
    }

    pub(super) fn read_identifier(&mut self) -> &'a str {
        self.skip_blank();
        let begin = self.p;
        self.p = skip_word(self.s, begin);
        &self.s[begin..self.p]
    }

    pub(super) fn read_non_empty_identifier(&mut self) -> Option<&'a str> {
        let saved = self.p;
        let id = self.read_identifier();
        if id.is_empty() {
            self.p = saved;
            None
        } else {
            Some(id)
        }
    }

    pub(super) fn read_operator(&mut self) -> Option<Op> {
        self.skip_blank();
        const OPERATORS: [(&str, Op, bool); 10] = [
            ("==", Op::Eq, false),
            ("!=", Op::Ne, false),
            (">=", Op::Ge, false),
            ("<=", Op::Le, false),
            (">", Op::Gt, false),
            ("<", Op::Lt, false),
            ("contains", Op::Contains, true),
            ("not", Op::Not, true),
            ("and", Op::And, true),
            ("or", Op::Or, true),
        ];
        let rest = self.rest();
        for (text, op, needs_boundary) in OPERATORS {
            if rest.starts_with(text) {
                if needs_boundary && char_at(rest, text.len()).is_some_and(is_word) {
                    return None;
                }
                self.p += text.len();
                return Some(op);
            }
        }
        None
    }

    pub(super) fn read_literal(&mut self) -> Option<Literal> {
        self.skip_blank();
        const LITERALS: [(&str, Literal); 6] = [
            ("true", Literal::True),
            ("false", Literal::False),
            ("nil", Literal::Nil),
            ("null", Literal::Nil),
            ("empty", Literal::Empty),
            ("blank", Literal::Blank),
        ];
        let rest = self.rest();
        for (text, literal) in LITERALS {
            if rest.starts_with(text) {
                if char_at(rest, text.len()).is_some_and(is_word) {
                    return None;
                }
                self.p += text.len();
                return Some(literal);
            }
        }
        None
    }

    pub(super) fn read_quoted(&mut self) -> Option<String> {
        self.skip_blank();
        let begin = self.p;
        if !matches!(self.peek_byte(0), Some(b'"' | b'\'')) {
            return None;
        }
        self.p = skip_quoted(self.s.as_bytes(), begin);
        Some(unescape(&self.s[begin..self.p]))
    }

    pub(super) fn read_number(&mut self) -> Option<f64> {
        self.skip_blank();
        let b = self.s.as_bytes();
        let at = |i: usize| b.get(self.p + i).copied();
        let mut n = usize::from(matches!(at(0), Some(b'+' | b'-')));
        let mut decimal = false;
        let mut digit = false;
        loop {
            match at(n) {
                Some(c) if c.is_ascii_digit() => {
                    digit = true;
                    n += 1;
                }
                Some(b'.') if at(n + 1) != Some(b'.') => {
                    if decimal || !digit {
                        return None;
                    }
                    decimal = true;
                    n += 1;
                }
                _ => break,
            }
        }
        if !digit || char_at(self.s, self.p + n).is_some_and(is_word) {
            return None;
        }
        let text = &self.s[self.p..self.p + n];
        let value = text.strip_prefix('+').unwrap_or(text).parse::<f64>().ok()?;
        self.p += n;
        Some(value)
    }

    pub(super) fn read_value(&mut self) -> Result<Option<Operand>, LiquidError> {
        self.skip_blank();
        let base = if let Some(literal) = self.read_literal() {
            Some(Operand::Literal(literal))
        } else if let Some(s) = self.read_quoted() {
            Some(Operand::Str(s))
        } else if let Some(n) = self.read_number() {
            Some(Operand::Num(n))
        } else if self.peek() == Some('(') {
            Some(self.read_range()?)
        } else {
            None
        };
        let props = self.read_properties(base.is_none())?;
        Ok(match base {
            _ if props.is_empty() => base,
            None => Some(Operand::Path(props)),
            Some(base) => Some(Operand::Access(Box::new(base), props)),
        })
    }

    pub(super) fn read_range(&mut self) -> Result<Operand, LiquidError> {
        self.p += 1;
        let low = self
            .read_value()?
            .ok_or_else(|| self.fail("unexpected token, value expected"))?;
        self.skip_blank();
        if !self.rest().starts_with("..") {
            return Err(self.fail("invalid range syntax"));
        }
        self.p += 2;
        let high = self
            .read_value()?
            .ok_or_else(|| self.fail("unexpected token, value expected"))?;
        self.skip_blank();
        if self.peek() != Some(')') {
            return Err(self.fail("invalid range syntax"));
        }
        self.p += 1;
        Ok(Operand::Range(Box::new(low), Box::new(high)))
    }

    pub(super) fn read_properties(&mut self, is_begin: bool) -> Result<Vec<Prop>, LiquidError> {
        let mut props = Vec::new();
        loop {
            if self.peek() == Some('[') {
                self.p += 1;
                let prop = match self.read_value()? {
                    Some(value) => Prop::Index(value),
                    None => Prop::Name(String::new()),
                };
                if read_to(self.s.as_bytes(), &mut self.p, b"]").is_none() {
                    return Err(self.fail("[ not closed"));
                }
                props.push(prop);
                continue;
            }
            if is_begin
                && props.is_empty()
                && let Some(id) = self.read_non_empty_identifier()
            {
                props.push(Prop::Name(id.to_owned()));
                continue;
            }
            if self.peek() == Some('.') && self.peek_byte(1) != Some(b'.') {
                self.p += 1;
                match self.read_non_empty_identifier() {
                    Some(id) => props.push(Prop::Name(id.to_owned())),
                    None => break,
                }
                continue;
            }
            break;
        }
        Ok(props)
    }

    pub(super) fn read_expression(&mut self) -> Result<Vec<ExprToken>, LiquidError> {
        let mut tokens = Vec::new();
        while !self.at_end() {
            if let Some(op) = self.read_operator() {
                tokens.push(ExprToken::Op(op));
                continue;
            }
            match self.read_value()? {
                Some(value) => tokens.push(ExprToken::Value(value)),
                None => break,
            }
        }
        Ok(tokens)
    }

    pub(super) fn read_filtered_value(&mut self) -> Result<FilteredValue, LiquidError> {
        let expr = self.read_expression()?;
        if expr.is_empty() {
            return Err(self.fail("invalid value expression"));
        }
        let mut filters = Vec::new();
        while let Some(filter) = self.read_filter()? {
            filters.push(filter);
        }
        Ok(FilteredValue { expr, filters })
    }

    pub(super) fn read_filter(&mut self) -> Result<Option<FilterCall>, LiquidError> {
        self.skip_blank();
        if self.at_end() || matches!(self.peek(), Some(')' | ',')) {
            return Ok(None);
        }
        if self.peek() != Some('|') {
            return Err(self.fail("expected \"|\" before filter"));
        }
        self.p += 1;
        let name = self.read_identifier();
        if name.is_empty() {
            if !self.at_end() {
                return Err(self.fail("expected filter name"));
            }
            return Ok(None);
        }
        let mut args = Vec::new();
        self.skip_blank();
        if self.peek() == Some(':') {
            loop {
                self.p += 1;
                if let Some(arg) = self.read_filter_arg()? {
                    args.push(arg);
                }
                self.skip_blank();
                if !(self.at_end() || matches!(self.peek(), Some(',' | '|' | ')'))) {
                    return Err(self.fail("unexpected character"));
                }
                if self.peek() != Some(',') {
                    break;
                }
            }
        } else if !(self.at_end() || matches!(self.peek(), Some('|' | ')' | ','))) {
            return Err(self.fail("expected \":\" after filter name"));
        }
        Ok(Some(FilterCall {
            name: name.to_owned(),
            args,
        }))
    }

    pub(super) fn read_filter_arg(&mut self) -> Result<Option<FilterArg>, LiquidError> {
        let begin = skip_blanks(self.s, self.p);
        let Some(key) = self.read_value()? else {
            return Ok(None);
        };
        let key_text = &self.s[begin..self.p];
        self.skip_blank();
        if self.peek() != Some(':') {
            return Ok(Some(FilterArg::Positional(key)));
        }
        self.p += 1;
        let value = self.read_value()?;
        Ok(Some(FilterArg::Keyword(key_text.to_owned(), value)))
    }
}

/// Decodes a quoted string token like LiquidJS's `parseStringLiteral`.
pub(super) fn unescape(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let last = chars.len().saturating_sub(1);
    let mut i = 1;
    while i < last {
        let c = chars[i];
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        match next {
            Some('b') => out.push('\u{08}'),
            Some('f') => out.push('\u{0c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{0b}'),
            Some('u') => {
                let mut j = i + 2;
                let mut code = 0u32;
                while j <= i + 5 && chars.get(j).is_some_and(char::is_ascii_hexdigit) {
                    code = code * 16 + chars[j].to_digit(16).unwrap_or(0);
                    j += 1;
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i = j;
                continue;
            }
            Some(d) if ('0'..='7').contains(&d) => {
                let mut j = i + 1;
                let mut code = 0u32;
                while j <= i + 3 && chars.get(j).is_some_and(|c| ('0'..='7').contains(c)) {
                    code = code * 8 + chars[j].to_digit(8).unwrap_or(0);
                    j += 1;
                }
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i = j;
                continue;
            }
            Some(other) => out.push(other),
            None => {}
        }
        i += 2;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Translation into the `liquid` crate's dialect
