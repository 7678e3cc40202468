use super::*;

/// The keys of a variable path made only of names and literal indexes.
pub(super) fn static_path(props: &[Prop]) -> Option<Vec<String>> {
    props
        .iter()
        .map(|prop| match prop {
            Prop::Name(name) | Prop::Index(Operand::Str(name)) => Some(name.clone()),
            Prop::Index(Operand::Num(n)) => Some(js_number(*n)),
            Prop::Index(_) => None,
        })
        .collect()
}

/// Evaluates properties of a literal, like `"abc".size`, the way LiquidJS does.
pub(super) fn fold_literal_access(base: &Operand, props: &[Prop]) -> Result<Operand, LiquidError> {
    let mut value = base.clone();
    for key in static_path(props).ok_or_else(|| unsupported("computed properties of a literal"))? {
        value = match &value {
            Operand::Str(s) => match key.as_str() {
                "size" | "length" => Operand::Num(s.encode_utf16().count() as f64),
                _ => match canonical_index(&key).and_then(|i| s.encode_utf16().nth(i)) {
                    Some(unit) => Operand::Str(
                        char::from_u32(u32::from(unit))
                            .unwrap_or('\u{fffd}')
                            .to_string(),
                    ),
                    None => Operand::Literal(Literal::Nil),
                },
            },
            Operand::Range(..) | Operand::Hidden(..) => {
                return Err(unsupported("properties of a range"));
            }
            _ => Operand::Literal(Literal::Nil),
        };
    }
    Ok(value)
}

pub(super) fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A variable name as the `liquid` grammar accepts it at the root of a path: names it cannot
/// spell (or would read as a literal or an operator) become aliases the views resolve.
pub(super) fn emit_root(name: &str) -> String {
    const RESERVED: [&str; 10] = [
        "true", "false", "nil", "null", "empty", "blank", "and", "or", "contains", "not",
    ];
    let reserved = RESERVED.iter().any(|word| name.starts_with(word));
    if is_plain_name(name) && !reserved && !name.starts_with("__lq") {
        return name.to_owned();
    }
    let mut alias = String::from(ALIAS_PREFIX);
    for byte in name.bytes() {
        let _ = write!(alias, "{byte:02x}");
    }
    alias
}

pub(super) fn alias_target(key: &str) -> Option<String> {
    let hex = key.strip_prefix(ALIAS_PREFIX)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

pub(super) fn emit_string(s: &str) -> Result<String, LiquidError> {
    if !s.contains('"') {
        Ok(format!("\"{s}\""))
    } else if !s.contains('\'') {
        Ok(format!("'{s}'"))
    } else {
        Err(unsupported("a string with both kinds of quotes"))
    }
}

pub(super) fn emit_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        // Integral like every JavaScript number that prints without a fraction.
        format!("{}", n as i64)
    } else {
        let text = format!("{n}");
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    }
}

/// Properties after a variable's root, in the `liquid` crate's syntax.
pub(super) fn emit_props(out: &mut String, props: &[Prop]) -> Result<(), LiquidError> {
    for prop in props {
        match prop {
            Prop::Name(name) if is_plain_name(name) => {
                let _ = write!(out, ".{name}");
            }
            Prop::Name(name) => {
                let _ = write!(out, "[{}]", emit_string(name)?);
            }
            Prop::Index(Operand::Range(..)) => {
                return Err(unsupported("a range as an index"));
            }
            Prop::Index(index) => {
                let _ = write!(out, "[{}]", emit_operand(index)?);
            }
        }
    }
    Ok(())
}

pub(super) fn emit_operand(operand: &Operand) -> Result<String, LiquidError> {
    match operand {
        Operand::Literal(literal) => Ok(match literal {
            Literal::True => "true",
            Literal::False => "false",
            Literal::Nil => "nil",
            Literal::Empty => "empty",
            Literal::Blank => "blank",
        }
        .to_owned()),
        Operand::Str(s) => emit_string(s),
        Operand::Num(n) => Ok(emit_number(*n)),
        Operand::Path(props) => {
            let mut out = match props.first() {
                Some(Prop::Name(name)) => emit_root(name),
                Some(Prop::Index(Operand::Str(name))) => emit_root(name),
                Some(Prop::Index(Operand::Num(n))) => emit_root(&js_number(*n)),
                _ => return Err(unsupported("a computed variable name")),
            };
            emit_props(&mut out, &props[1..])?;
            Ok(out)
        }
        Operand::Hidden(name, props) => {
            let mut out = name.clone();
            emit_props(&mut out, props)?;
            Ok(out)
        }
        Operand::Access(..) => Err(unsupported("properties of a literal")),
        Operand::Range(..) => Err(unsupported("a range here")),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory estimate
