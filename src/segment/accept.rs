//! The Tracking API's own limits that Segment's action does not check (D6): event size,
//! messageId length and timestamp format.

/// The most bytes one serialised event may have (the API's "32 KB", as Segment's SDKs read it).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The longest messageId the API keeps, in characters.
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

/// Whether `s` is an RFC 3339 date-time: `2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.123+02:00`.
/// A date alone, a missing offset or an impossible date is not.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |a, c| a * 10 + u32::from(c - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return false;
    };
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
            let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) else {
                return false;
            };
            b[i + 3] == b':' && oh <= 23 && om <= 59 && i + 6 == b.len()
        }
        _ => false,
    }
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
            "1714564800",
            "not a date",
            "",
            "２０２４-05-01T12:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
