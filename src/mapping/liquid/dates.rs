use super::*;

/// LiquidJS's format for `date` without one.
pub(super) const DEFAULT_DATE_FORMAT: &str = "%A, %B %-e, %Y at %-l:%M %P %z";
/// Widest padding accepted in a date format.
pub(super) const MAX_DATE_WIDTH: usize = 1024;

/// Translates a LiquidJS strftime format for the `liquid` crate: directives LiquidJS does not
/// know are kept as literal text, as LiquidJS keeps them; `%Z` is the zone name, always UTC.
pub(super) fn translate_date_format(format: &str) -> Result<String, LiquidError> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && "-_0^#:".contains(chars[j]) {
            j += 1;
        }
        let width_begin = j;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        let width: String = chars[width_begin..j].iter().collect();
        if !width.is_empty() && width.parse::<usize>().map_or(true, |w| w > MAX_DATE_WIDTH) {
            return Err(unsupported("a date format width over 1024"));
        }
        if j < chars.len() && matches!(chars[j], 'E' | 'O') {
            j += 1;
        }
        let Some(&conversion) = chars.get(j) else {
            // An incomplete directive is literal text.
            out.push_str("%%");
            out.extend(&chars[i + 1..]);
            break;
        };
        let flags: String = chars[i + 1..width_begin].iter().collect();
        let directive: String = chars[i..=j].iter().collect();
        // The `liquid` crate takes `:` only before `z`, where LiquidJS ignores it elsewhere.
        let plain: String = if conversion == 'z' {
            directive.clone()
        } else {
            directive.chars().filter(|c| *c != ':').collect()
        };
        // LiquidJS prints `%c`, `%x` and `%X` for the en-US locale.
        let meridiem = if flags.contains('#') { "%P" } else { "%p" };
        match conversion {
            'Z' => out.push_str("UTC"),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            '%' => out.push_str("%%"),
            'c' => {
                let _ = write!(out, "%-m/%-d/%Y, %-I:%M:%S {meridiem}");
            }
            'x' => out.push_str("%-m/%-d/%Y"),
            'X' => {
                let _ = write!(out, "%-I:%M:%S {meridiem}");
            }
            'L' if flags.contains('-') => out.push_str("%-L"),
            'L' => {
                // LiquidJS pads the milliseconds on the left to the width.
                let width = width.parse::<usize>().unwrap_or(3).max(3);
                out.extend(std::iter::repeat_n('0', width - 3));
                out.push_str("%L");
            }
            'q' => return Err(unsupported("the %q date directive")),
            'a' | 'A' | 'b' | 'B' | 'C' | 'd' | 'e' | 'H' | 'I' | 'j' | 'k' | 'l' | 'm' | 'M'
            | 'N' | 'p' | 'P' | 's' | 'S' | 'u' | 'U' | 'w' | 'W' | 'y' | 'Y' | 'z' | 'h' => {
                out.push_str(&plain)
            }
            _ => {
                out.push_str("%%");
                out.push_str(&directive[1..]);
            }
        }
        i = j + 1;
    }
    Ok(out)
}

/// What LiquidJS's `date` filter reads a payload value as, in a form the `liquid` crate's
/// `date` filter reads the same way: a number is seconds since the epoch and a string is parsed
/// like JavaScript's `Date`. `None` leaves the value as it is.
pub(super) fn date_node(node: &Node) -> Option<Node> {
    match node {
        Node::Int(i) => Some(Node::Str(Box::new(JsString::new(&i.to_string())))),
        Node::Str(s) if !s.text.bytes().all(|b| b.is_ascii_digit()) => {
            parse_js_date(&s.text).map(Node::Date)
        }
        _ => None,
    }
}

/// Parses the ISO 8601 forms JavaScript's `Date` accepts (`2024-01-02`, `2024-01-02T03:04`,
/// `2024-01-02T03:04:05.678+02:00`, ...) into a UTC date, as LiquidJS does on a UTC host.
pub(super) fn parse_js_date(text: &str) -> Option<DateTime> {
    let millis = parse_iso_millis(text.trim())?;
    let days = millis.div_euclid(86_400_000);
    let ms_of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let formatted = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} +0000",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    );
    DateTime::from_str(&formatted)
}

/// Milliseconds since the epoch of an ISO 8601 date or date-time (no offset means UTC).
pub(super) fn parse_iso_millis(text: &str) -> Option<i64> {
    struct Cursor<'a> {
        b: &'a [u8],
        p: usize,
    }
    impl Cursor<'_> {
        fn digits(&mut self, n: usize) -> Option<i64> {
            let digits = self.b.get(self.p..self.p + n)?;
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            self.p += n;
            Some(
                digits
                    .iter()
                    .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
            )
        }
        fn eat(&mut self, c: u8) -> bool {
            let found = self.b.get(self.p) == Some(&c);
            self.p += usize::from(found);
            found
        }
        fn done(&self) -> bool {
            self.p == self.b.len()
        }
    }
    let mut c = Cursor {
        b: text.as_bytes(),
        p: 0,
    };
    let year = c.digits(4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut millis, mut offset) = (0, 0, 0, 0, 0);
    if c.eat(b'-') {
        month = c.digits(2)?;
        if c.eat(b'-') {
            day = c.digits(2)?;
            if c.eat(b'T') || c.eat(b't') || c.eat(b' ') {
                hour = c.digits(2)?;
                if !c.eat(b':') {
                    return None;
                }
                minute = c.digits(2)?;
                if c.eat(b':') {
                    second = c.digits(2)?;
                    if c.eat(b'.') {
                        let begin = c.p;
                        while c.b.get(c.p).is_some_and(u8::is_ascii_digit) {
                            c.p += 1;
                        }
                        let fraction = &c.b[begin..c.p];
                        if fraction.is_empty() {
                            return None;
                        }
                        millis = fraction
                            .iter()
                            .chain(b"000")
                            .take(3)
                            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0'));
                    }
                }
                if c.eat(b'Z') || c.eat(b'z') {
                } else if let Some(sign) = [b'+', b'-'].into_iter().find(|s| c.eat(*s)) {
                    let hours = c.digits(2)?;
                    c.eat(b':');
                    let minutes = c.digits(2)?;
                    if hours > 23 || minutes > 59 {
                        return None;
                    }
                    offset = (hours * 60 + minutes) * if sign == b'-' { -1 } else { 1 };
                }
            }
        }
    }
    // Like V8, any day up to 31 is accepted and rolls over into the next month.
    let valid = c.done()
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (hour < 24 || (hour == 24 && minute == 0 && second == 0 && millis == 0))
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute - offset) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A literal as a filter reading it with `coercion` sees it, when that can be written as a
/// literal the `liquid` crate reads the same way.
/// The `date` format LiquidJS's `date_to_*` filters print with; `None` for another filter.
pub(super) fn date_to_format(call: &FilterCall) -> Result<Option<&'static str>, LiquidError> {
    let format = match call.name.as_str() {
        "date_to_xmlschema" => "%Y-%m-%dT%H:%M:%S%:z",
        "date_to_rfc822" => "%a, %d %b %Y %H:%M:%S %z",
        "date_to_string" => "%d %b %Y",
        "date_to_long_string" => "%d %B %Y",
        _ => return Ok(None),
    };
    if !call.args.is_empty() && format.starts_with("%d") {
        // `ordinal` and `US` need `%q`, which the `liquid` crate lacks.
        return Err(unsupported(&format!("{} with arguments", call.name)));
    }
    Ok(Some(format))
}
