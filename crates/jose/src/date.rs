//! NumericDate (RFC 7519 section 2: seconds since 1970-01-01T00:00:00Z, leap seconds ignored):
//! the range a token's dates must lie in, and dates as text, for people: key lifetimes,
//! reports, calibration files.

/// The latest NumericDate a token may carry: 9999-12-31T23:59:59Z. Token dates lie in
/// `0..=MAX_NUMERIC_DATE`; later ones (`1e20`) and negative ones are no real token's dates.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// `2026-01-01T00:00:00Z` for a NumericDate: RFC 3339 in UTC, the proleptic Gregorian calendar
/// (dates before 1970 too).
pub fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_841_477), "2026-11-28T04:51:17Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(MAX_NUMERIC_DATE), "9999-12-31T23:59:59Z");
    }
}
