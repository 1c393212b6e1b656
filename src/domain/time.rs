//! Time bounds given as RFC 3339, as a bare date or date-time (taken as UTC), or relative to now
//! (`30m`, `24h`, `7d`, `1h30m`, `2w`), meaning that long before now.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

/// Parses an absolute or relative time bound; `now` anchors relative values.
pub fn parse_time_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let duration = parse_relative(text)?;
    now.checked_sub_signed(duration)
        .ok_or_else(|| "relative time is out of range".to_string())
}

fn parse_relative(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "`{text}` is neither RFC 3339 (2026-01-31T12:00:00Z), a date (2026-01-31) \
             nor a relative time such as 30m, 24h, 7d or 1h30m"
        )
    };
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        let part = match c {
            's' => Duration::try_seconds(amount),
            'm' => Duration::try_minutes(amount),
            'h' => Duration::try_hours(amount),
            'd' => Duration::try_days(amount),
            'w' => Duration::try_weeks(amount),
            _ => None,
        }
        .ok_or_else(invalid)?;
        total = total.checked_add(&part).ok_or_else(invalid)?;
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().to_utc()
    }

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(parse_time_bound("30m", now()).unwrap(), now() - Duration::minutes(30));
        assert_eq!(parse_time_bound("24h", now()).unwrap(), now() - Duration::hours(24));
        assert_eq!(parse_time_bound("7d", now()).unwrap(), now() - Duration::days(7));
        assert_eq!(parse_time_bound("1h30m", now()).unwrap(), now() - Duration::minutes(90));
    }

    #[test]
    fn absolute_times_are_read_as_utc() {
        let t = parse_time_bound("2026-01-31T10:00:00+02:00", now()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-31T08:00:00+00:00");
        let d = parse_time_bound("2026-01-31", now()).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-01-31T00:00:00+00:00");
        let naive = parse_time_bound("2026-01-31T05:06:07", now()).unwrap();
        assert_eq!(naive.to_rfc3339(), "2026-01-31T05:06:07+00:00");
    }

    #[test]
    fn nonsense_and_negative_values_are_rejected() {
        for bad in ["", "yesterday", "-7d", "7", "7x", "h", "99999999999999999999d"] {
            assert!(parse_time_bound(bad, now()).is_err(), "{bad} should be rejected");
        }
    }
}
