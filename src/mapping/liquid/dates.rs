use super::*;

/// LiquidJS's format for `date` without one.
pub(super) const DEFAULT_DATE_FORMAT: &str = "%A, %B %-e, %Y at %-l:%M %P %z";
/// Widest padding accepted in a date format.
pub(super) const MAX_DATE_WIDTH: usize = 1024;

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
    // An expanded year is signed and six digits; `-000000` is not a year.
    let year = match [b'+', b'-'].into_iter().find(|s| c.eat(*s)) {
        Some(sign) => {
            let year = c.digits(6)?;
            if sign == b'-' && year == 0 {
                return None;
            }
            if sign == b'-' { -year } else { year }
        }
        None => c.digits(4)?,
    };
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

/// The `date` format LiquidJS's `date_to_*` filters print with; `None` for another filter.
/// `date_to_string` and `date_to_long_string` take `"ordinal"` (the day with its suffix) and
/// then `"US"` (month first).
pub(super) fn date_to_format(call: &FilterCall) -> Result<Option<String>, LiquidError> {
    let month = match call.name.as_str() {
        "date_to_xmlschema" => return Ok(Some("%Y-%m-%dT%H:%M:%S%:z".to_owned())),
        "date_to_rfc822" => return Ok(Some("%a, %d %b %Y %H:%M:%S %z".to_owned())),
        "date_to_string" => "%b",
        "date_to_long_string" => "%B",
        _ => return Ok(None),
    };
    let mut literals = Vec::new();
    for arg in call.args.iter().take(2) {
        match arg {
            FilterArg::Positional(Operand::Str(s)) => literals.push(Some(s.as_str())),
            FilterArg::Positional(Operand::Num(_) | Operand::Literal(_)) => literals.push(None),
            _ => return Err(unsupported(&format!("{} with these arguments", call.name))),
        }
    }
    Ok(Some(match literals.as_slice() {
        [Some("ordinal"), Some("US"), ..] => format!("{month} %-d%q, %Y"),
        [Some("ordinal"), ..] => format!("%-d%q {month} %Y"),
        _ => format!("%d {month} %Y"),
    }))
}
