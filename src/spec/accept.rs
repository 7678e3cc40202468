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
}
