//! The Tracking API's own limits that Segment's action does not check (D6): event size,
//! messageId length and timestamp format.

/// The most bytes one serialised event may have (the API's "32 KB", as Segment's SDKs read it).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The longest messageId the API keeps, in characters.
pub(crate) const MAX_MESSAGE_ID_CHARS: usize = 100;

/// Whether `s` is an RFC 3339 date-time: `2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.123+02:00`.
/// A date alone, a missing offset or an impossible date is not.
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(head) = b.first_chunk::<19>() else {
        return false;
    };
    // `YYYY-MM-DDTHH:MM:SS`: every digit checked at once, then read.
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let d = |i: usize| u32::from(head[i].wrapping_sub(b'0'));
    if DIGITS.iter().any(|&i| d(i) > 9) {
        return false;
    }
    let two = |i: usize| d(i) * 10 + d(i + 1);
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, min, sec) = (two(11), two(14), two(17));
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || min > 59 || sec > 60 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            // `HH:MM`, and nothing after it.
            let Some(off) = b.get(i + 1..).and_then(<[u8]>::first_chunk::<5>) else {
                return false;
            };
            let d = |k: usize| u32::from(off[k].wrapping_sub(b'0'));
            [0, 1, 3, 4].iter().all(|&k| d(k) <= 9)
                && off[2] == b':'
                && d(0) * 10 + d(1) <= 23
                && d(3) * 10 + d(4) <= 59
                && i + 6 == b.len()
        }
        _ => false,
    }
}

/// D8: a `timestamp` string as warehouses write it, as RFC 3339, or `None` when it is no such
/// form (it then stays `INVALID_TIMESTAMP`). Taken: `2024-05-01 12:00:00` and naive
/// `2024-05-01T12:00:00` (both UTC), a trailing `UTC` or `Z` (after a space or not), an offset
/// `+0000`, `+00` or `+00:00` (after a space or not), and a date alone (midnight UTC). The date,
/// the time and the fraction are kept as written; only the separator and the offset change.
pub(crate) fn normalize_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() == 10 {
        let t = format!("{s}T00:00:00Z");
        return is_rfc3339(&t).then_some(t);
    }
    if b.len() < 19 || !s.is_char_boundary(19) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    let (head, rest) = s.split_at(i);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let offset = match rest.as_bytes() {
        [] | b"Z" | b"z" | b"UTC" => "Z".to_owned(),
        [sign @ (b'+' | b'-'), h1, h2] => {
            format!("{}{}{}:00", *sign as char, *h1 as char, *h2 as char)
        }
        [sign @ (b'+' | b'-'), h1, h2, m1, m2] => format!(
            "{}{}{}:{}{}",
            *sign as char, *h1 as char, *h2 as char, *m1 as char, *m2 as char
        ),
        [b'+' | b'-', _, _, b':', _, _] => rest.to_owned(),
        _ => return None,
    };
    let t = format!("{}T{}{offset}", &head[..10], &head[11..]);
    (is_rfc3339(&t) && t != s).then_some(t)
}

/// D8: epoch seconds, or milliseconds for a magnitude of 10^11 and more (past the year 5138 in
/// seconds), as an RFC 3339 UTC date-time: milliseconds shown when there are any. `None` outside
/// the years 0000 to 9999, or for a value that is not finite.
pub(crate) fn epoch_timestamp(n: f64) -> Option<String> {
    if !n.is_finite() {
        return None;
    }
    let ms = if n.abs() < 1e11 { n * 1000.0 } else { n };
    let ms = ms.round();
    // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
    if !(-62_167_219_200_000.0..=253_402_300_799_999.0).contains(&ms) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let ms = ms as i64;
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = ms_of_day / 1000;
    let (h, m, sec, milli) = (secs / 3600, secs / 60 % 60, secs % 60, ms_of_day % 1000);
    let mut t = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}");
    if milli != 0 {
        t.push_str(&format!(".{milli:03}"));
    }
    t.push('Z');
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_accepts_date_times_with_offsets_only() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123+02:00",
            "2024-05-01t12:00:00z",
            "2024-02-29T00:00:00-00:00",
            "2024-05-01T23:59:60Z",
            "2024-05-01 12:00:00Z",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00+02:00 ",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00+02:60",
            "2024-05-01T12:00:00+02-00",
            "2024-05-01T12:00:00+02:00Z",
            "2024-05-01T12:0a:00Z",
            "2024-05-01T12:00:0/Z",
            "2024-05-0:T12:00:00Z",
            "1714564800",
            "not a date",
            "",
            "２０２４-05-01T12:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn warehouse_timestamps_are_normalised() {
        for (from, to) in [
            ("2024-05-01 12:00:00", "2024-05-01T12:00:00Z"),
            ("2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),
            ("2024-05-01 12:00:00.123456", "2024-05-01T12:00:00.123456Z"),
            ("2024-05-01 12:00:00 UTC", "2024-05-01T12:00:00Z"),
            ("2024-05-01T12:00:00UTC", "2024-05-01T12:00:00Z"),
            ("2024-05-01 12:00:00.5 UTC", "2024-05-01T12:00:00.5Z"),
            ("2024-05-01 12:00:00+0000", "2024-05-01T12:00:00+00:00"),
            ("2024-05-01T12:00:00-0530", "2024-05-01T12:00:00-05:30"),
            ("2024-05-01 12:00:00 +0200", "2024-05-01T12:00:00+02:00"),
            ("2024-05-01 12:00:00+00", "2024-05-01T12:00:00+00:00"),
            ("2024-05-01 12:00:00Z", "2024-05-01T12:00:00Z"),
            ("2024-05-01 12:00:00+02:00", "2024-05-01T12:00:00+02:00"),
            ("2024-05-01", "2024-05-01T00:00:00Z"),
            ("2024-02-29", "2024-02-29T00:00:00Z"),
        ] {
            assert_eq!(normalize_timestamp(from).as_deref(), Some(to), "{from}");
            assert!(is_rfc3339(to));
        }
        for bad in [
            "2024-05-01T12:00:00Z",
            "2023-02-29",
            "2024-13-01 00:00:00",
            "2024-05-01 24:00:00",
            "2024-05-01 12:00",
            "2024-05-01 12:00:00 PST",
            "2024-05-01 12:00:00+2",
            "2024-05-01 12:00:00+02000",
            "2024-05-01 12:00:00+9900",
            "2024-05-01 12:00:00  UTC",
            "2024-05-01 12:00:00.",
            "05/01/2024",
            "1714564800",
            "yesterday",
            "2024-05-01 12:00:0é",
            "",
        ] {
            assert_eq!(normalize_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_numbers_are_normalised() {
        for (n, to) in [
            (1_714_564_800.0, "2024-05-01T12:00:00Z"),
            (1_714_564_800_123.0, "2024-05-01T12:00:00.123Z"),
            (1_714_564_800.5, "2024-05-01T12:00:00.500Z"),
            (0.0, "1970-01-01T00:00:00Z"),
            (-1.0, "1969-12-31T23:59:59Z"),
            (951_782_400.0, "2000-02-29T00:00:00Z"),
            (99_999_999_999.0, "5138-11-16T09:46:39Z"),
            (100_000_000_000.0, "1973-03-03T09:46:40Z"),
            (253_402_300_799_999.0, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(epoch_timestamp(n).as_deref(), Some(to), "{n}");
            assert!(is_rfc3339(to));
        }
        for bad in [f64::NAN, f64::INFINITY, 1e20, -1e20, 253_402_300_800_000.0] {
            assert_eq!(epoch_timestamp(bad), None, "{bad}");
        }
    }
}
