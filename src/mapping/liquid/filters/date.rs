//! LiquidJS's `date` filter: a JavaScript date shown in a time zone and printed with LiquidJS's
//! strftime, on a host whose own zone is UTC (like Segment's servers).
//!
//! LiquidJS shows a date in the zone of its second argument by shifting it by the zone's
//! offset: a number is the offset in minutes west of UTC (JavaScript's `getTimezoneOffset`), a
//! string names an IANA zone (any case), and the offset of a named zone is what
//! `Intl.DateTimeFormat`'s en-US text of the instant in that zone and in UTC parse back to
//! (to the second, so a local mean time keeps its seconds). The zones come from jiff's bundled
//! time zone database, so no system database is needed.

use jiff::Timestamp;
use jiff::tz::{self, TimeZone};

use super::*;
use crate::mapping::liquid::dates::{
    DEFAULT_DATE_FORMAT, civil_from_days, days_from_civil, parse_iso_millis,
};
use crate::mapping::liquid::value::js_string_to_number;

/// JavaScript's largest date, in milliseconds either side of the epoch.
const MAX_JS_MILLIS: f64 = 8.64e15;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// `date: format, zone`. An input that is no date is returned as it is.
pub(super) fn date(input: &dyn ValueView, args: &Args) -> Result<LiquidValue> {
    let Some(millis) = input_millis(input) else {
        return Ok(input.to_value());
    };
    let Some(date) = ShownDate::new(millis, args.get(1))? else {
        return Ok(input.to_value());
    };
    let format = match args.get(0) {
        None => DEFAULT_DATE_FORMAT.to_owned(),
        Some(format) => js_stringify(format),
    };
    Ok(string(strftime(&date, &format)))
}

/// The instant LiquidJS reads the input as, in milliseconds since the epoch: a number is
/// seconds, so is a string of digits; another string is parsed like JavaScript's `Date`.
fn input_millis(input: &dyn ValueView) -> Option<f64> {
    let scalar = input.as_scalar()?;
    let millis = match input.type_name() {
        "whole number" | "fractional number" => scalar.to_float()? * 1000.0,
        "boolean" => f64::from(u8::from(input.query_state(liquid::model::State::Truthy))),
        "date time" => {
            let date = scalar.to_date_time()?;
            (date.unix_timestamp_nanos() / 1_000_000) as f64
        }
        _ => {
            let text = scalar.into_owned().into_string();
            if text == "now" || text == "today" {
                Timestamp::now().as_millisecond() as f64
            } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                js_string_to_number(&text) * 1000.0
            } else {
                parse_iso_millis(text.trim())? as f64
            }
        }
    };
    // `new Date(x)` keeps the integral part of a time within JavaScript's range.
    (millis.abs() <= MAX_JS_MILLIS).then(|| millis.trunc())
}

/// A date as LiquidJS's `LiquidDate` shows it: the instant, the offset it is shown at (minutes
/// west of UTC, possibly fractional), the shifted wall-clock time and the zone's name.
pub(super) struct ShownDate {
    millis: f64,
    offset: f64,
    shown: f64,
    zone: Option<String>,
}

impl ShownDate {
    /// `None` when the shifted date is out of JavaScript's range (LiquidJS returns the input).
    fn new(millis: f64, zone: Option<&LiquidValue>) -> Result<Option<ShownDate>> {
        let (offset, name) = match zone {
            None => (0.0, Some("UTC".to_owned())),
            Some(zone) if zone.type_name() == "string" => {
                let name = zone.to_kstr().into_owned();
                let Some(tz) = zone_named(&name) else {
                    return Err(Error::with_msg(format!(
                        "Invalid time zone specified: {name}"
                    )));
                };
                (named_offset(millis, &tz), Some(name.to_string()))
            }
            Some(zone) => (super::array::to_number(zone), None),
        };
        let shown = (millis + (0.0 - offset) * 60_000.0).trunc();
        if shown.is_nan() || shown.abs() > MAX_JS_MILLIS {
            return Ok(None);
        }
        Ok(Some(ShownDate {
            millis,
            offset,
            shown,
            zone: name.filter(|n| !n.is_empty()),
        }))
    }

    fn fields(&self) -> Fields {
        Fields::of(self.shown)
    }
}

/// Zone names ICU still knows that the IANA database dropped, with the zone ICU reads them as.
const ICU_ONLY_ZONES: [(&str, &str); 40] = [
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Maputo"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Nairobi"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
    ("SystemV/AST4", "America/Puerto_Rico"),
    ("SystemV/AST4ADT", "America/Halifax"),
    ("SystemV/CST6", "America/Regina"),
    ("SystemV/CST6CDT", "America/Chicago"),
    ("SystemV/EST5", "America/Panama"),
    ("SystemV/EST5EDT", "America/New_York"),
    ("SystemV/HST10", "Pacific/Honolulu"),
    ("SystemV/MST7", "America/Phoenix"),
    ("SystemV/MST7MDT", "America/Denver"),
    ("SystemV/PST8", "Pacific/Pitcairn"),
    ("SystemV/PST8PDT", "America/Los_Angeles"),
    ("SystemV/YST9", "Pacific/Gambier"),
    ("SystemV/YST9YDT", "America/Anchorage"),
    ("US/Pacific-New", "America/Los_Angeles"),
    ("Canada/East-Saskatchewan", "America/Regina"),
];

/// Names the IANA database has that ICU refuses.
const IANA_ONLY_ZONES: [&str; 3] = ["Factory", "posixrules", "localtime"];

/// The zone a name means to `Intl.DateTimeFormat` (names are matched in any case).
fn zone_named(name: &str) -> Option<TimeZone> {
    if IANA_ONLY_ZONES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return None;
    }
    let name = ICU_ONLY_ZONES
        .iter()
        .find(|(legacy, _)| legacy.eq_ignore_ascii_case(name))
        .map_or(name, |(_, zone)| zone);
    tz::db().get(name).ok()
}

/// LiquidJS's offset of a named zone at an instant: the en-US texts of the instant in UTC and
/// in the zone, parsed back by JavaScript's `Date`, subtracted.
fn named_offset(millis: f64, tz: &TimeZone) -> f64 {
    let seconds = (millis / 1000.0).floor() as i64;
    let clamped = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    let offset =
        Timestamp::from_second(clamped).map_or(0, |t| i64::from(tz.to_offset(t).seconds()));
    let utc = reparsed_wall_clock(seconds);
    let local = reparsed_wall_clock(seconds + offset);
    (utc - local) as f64 / 60.0
}

/// The wall-clock time `seconds` after the epoch as `Intl.DateTimeFormat`'s en-US text shows it
/// (a year before 1 as its era's year) and as JavaScript's `Date` parses that text back (a year
/// below 50 is 20xx, below 100 19xx), in seconds.
fn reparsed_wall_clock(seconds: i64) -> i64 {
    let days = seconds.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = match era_year(year) {
        y if y < 50 => y + 2000,
        y if y < 100 => y + 1900,
        y => y,
    };
    // `Date` rolls a day past the month's end over into the next month.
    let days = days_from_civil(year, month, 1) + day - 1;
    days * 86_400 + seconds.rem_euclid(86_400)
}

/// A year as en-US dates print it: 0 is 1 (BC), -1 is 2 (BC).
fn era_year(year: i64) -> i64 {
    if year < 1 { 1 - year } else { year }
}

/// The calendar fields of a shown date (read with UTC getters, as on a UTC host).
struct Fields {
    year: i64,
    month: i64,
    day: i64,
    weekday: i64,
    hours: i64,
    minutes: i64,
    seconds: i64,
    millis: i64,
    day_of_year: i64,
}

impl Fields {
    fn of(shown: f64) -> Fields {
        let shown = shown as i64;
        let days = shown.div_euclid(86_400_000);
        let ms = shown.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7);
        Fields {
            year,
            month,
            day,
            weekday,
            hours: ms / 3_600_000,
            minutes: ms / 60_000 % 60,
            seconds: ms / 1000 % 60,
            millis: ms % 1000,
            day_of_year: days - days_from_civil(year, 1, 1) + 1,
        }
    }

    fn hour12(&self) -> i64 {
        match self.hours % 12 {
            0 => 12,
            h => h,
        }
    }

    fn meridiem(&self) -> &'static str {
        if self.hours < 12 { "AM" } else { "PM" }
    }

    /// ICU's en-US numeric date, `5/1/2024`.
    fn locale_date(&self) -> String {
        format!("{}/{}/{}", self.month, self.day, era_year(self.year))
    }

    /// ICU's en-US time, `8:00:00 AM`.
    fn locale_time(&self) -> String {
        format!(
            "{}:{:02}:{:02} {}",
            self.hour12(),
            self.minutes,
            self.seconds,
            self.meridiem()
        )
    }

    /// JavaScript's week of the year starting on `start` (0 is Sunday).
    fn week(&self, start: i64) -> i64 {
        let since_start = (self.weekday - start + 7) % 7;
        (self.day_of_year - 1 - since_start + 7).div_euclid(7)
    }
}

/// The ordinal suffix of a day of the month.
fn ordinal(day: i64) -> &'static str {
    match (day, day % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    }
}

/// LiquidJS's `%z`: the offset east of UTC as `+hhmm` (`+hh:mm` with the `:` flag), fractional
/// minutes printed as JavaScript prints them.
fn offset_text(offset: f64, colon: bool) -> String {
    let n = offset.abs();
    let sign = if offset > 0.0 { '-' } else { '+' };
    let pad = |v: f64| {
        let text = js_number(v);
        if text.len() < 2 {
            format!("0{text}")
        } else {
            text
        }
    };
    let separator = if colon { ":" } else { "" };
    format!(
        "{sign}{}{separator}{}",
        pad((n / 60.0).floor()),
        pad(n % 60.0)
    )
}

/// The width a conversion pads to without one, and whether with spaces.
fn default_padding(conversion: char) -> (usize, bool) {
    let width = match conversion {
        'C' | 'd' | 'e' | 'H' | 'I' | 'k' | 'l' | 'm' | 'M' | 'S' | 'U' | 'W' | 'y' => 2,
        'j' | 'L' => 3,
        'Y' => 4,
        _ => 0,
    };
    (width, "aAbBceklpP".contains(conversion))
}

/// LiquidJS's `changeCase`: upper case when there is a lower-case ASCII letter, else lower.
fn change_case(text: &str) -> String {
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        text.to_uppercase()
    } else {
        text.to_lowercase()
    }
}

fn pad_start(text: &str, width: usize, with: char) -> String {
    let len = text.encode_utf16().count();
    let mut out: String = std::iter::repeat_n(with, width.saturating_sub(len)).collect();
    out.push_str(text);
    out
}

/// A parsed `%` directive: flags, width, conversion.
struct Directive {
    flags: String,
    width: Option<usize>,
    conversion: char,
    /// The directive's text, printed as it is when the conversion is unknown.
    text: String,
}

/// Splits a format into literal text and directives with LiquidJS's pattern
/// `%([-_0^#:]+)?(\d+)?([EO])?(.)` (`.` is any character but a line break).
fn directives(format: &str) -> Vec<Result<Directive, String>> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            literal.push(chars[i]);
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
        let width_end = j;
        if j < chars.len() && matches!(chars[j], 'E' | 'O') {
            j += 1;
        }
        match chars.get(j) {
            Some(&c) if !matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}') => {
                if !literal.is_empty() {
                    out.push(Err(std::mem::take(&mut literal)));
                }
                let width: String = chars[width_begin..width_end].iter().collect();
                out.push(Ok(Directive {
                    flags: chars[i + 1..width_begin].iter().collect(),
                    width: width.parse().ok().filter(|w| *w > 0),
                    conversion: c,
                    text: chars[i..=j].iter().collect(),
                }));
                i = j + 1;
            }
            _ => {
                literal.push('%');
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        out.push(Err(literal));
    }
    out
}

/// The widest padding a directive of `format` asks for.
pub(in crate::mapping::liquid) fn widest(format: &str) -> usize {
    directives(format)
        .iter()
        .filter_map(|d| d.as_ref().ok().and_then(|d| d.width))
        .max()
        .unwrap_or(0)
}

fn strftime(date: &ShownDate, format: &str) -> String {
    let f = date.fields();
    let mut out = String::new();
    for part in directives(format) {
        match part {
            Err(literal) => out.push_str(&literal),
            Ok(d) => match convert(date, &f, &d) {
                Some(text) => out.push_str(&pad(text, &d)),
                None => out.push_str(&d.text),
            },
        }
    }
    out
}

/// One conversion's text before padding; `None` for a conversion LiquidJS does not know.
fn convert(date: &ShownDate, f: &Fields, d: &Directive) -> Option<String> {
    Some(match d.conversion {
        'a' => DAYS[f.weekday as usize][..3].to_owned(),
        'A' => DAYS[f.weekday as usize].to_owned(),
        'b' | 'h' => MONTHS[f.month as usize - 1][..3].to_owned(),
        'B' => MONTHS[f.month as usize - 1].to_owned(),
        'c' => format!("{}, {}", f.locale_date(), f.locale_time()),
        'C' => f.year.div_euclid(100).to_string(),
        'd' | 'e' => f.day.to_string(),
        'H' | 'k' => f.hours.to_string(),
        'I' | 'l' => f.hour12().to_string(),
        'j' => f.day_of_year.to_string(),
        'L' => f.millis.to_string(),
        'm' => f.month.to_string(),
        'M' => f.minutes.to_string(),
        'N' => {
            let width = d.width.unwrap_or(9);
            let mut text: String = format!("{:03}", f.millis).chars().take(width).collect();
            text.extend(std::iter::repeat_n('0', width - text.len()));
            text
        }
        'p' => f.meridiem().to_owned(),
        'P' => f.meridiem().to_lowercase(),
        'q' => ordinal(f.day).to_owned(),
        's' => js_number((date.millis / 1000.0).floor()),
        'S' => f.seconds.to_string(),
        'u' => match f.weekday {
            0 => 7,
            w => w,
        }
        .to_string(),
        'U' => f.week(0).to_string(),
        'w' => f.weekday.to_string(),
        'W' => f.week(1).to_string(),
        'x' => f.locale_date(),
        'X' => f.locale_time(),
        'y' => f.year.rem_euclid(100).to_string(),
        'Y' => f.year.to_string(),
        'z' => offset_text(date.offset, d.flags.contains(':')),
        'Z' => match &date.zone {
            Some(name) => name.clone(),
            None => offset_text(date.offset, d.flags.contains(':')),
        },
        't' => "\t".to_owned(),
        'n' => "\n".to_owned(),
        '%' => "%".to_owned(),
        _ => return None,
    })
}

/// LiquidJS's flags and padding: `^` upper case, `#` change case, `_` spaces, `0` zeros, `-` no
/// padding; zero padding goes after a minus sign.
fn pad(text: String, d: &Directive) -> String {
    let (default_width, spaces) = default_padding(d.conversion);
    let mut width = d.width.unwrap_or(default_width);
    let text = if d.flags.contains('^') {
        text.to_uppercase()
    } else if d.flags.contains('#') {
        change_case(&text)
    } else {
        text
    };
    let with = if d.flags.contains('_') {
        ' '
    } else if d.flags.contains('0') || !spaces {
        '0'
    } else {
        ' '
    };
    if d.flags.contains('-') {
        width = 0;
    }
    match text.strip_prefix('-') {
        Some(rest) if with == '0' => format!("-{}", pad_start(rest, width.saturating_sub(1), '0')),
        _ => pad_start(&text, width, with),
    }
}
