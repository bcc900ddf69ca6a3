//! Points in time as people type them: `2026-11-22 01:40`, `2026-11-22T01:40:00+02:00`,
//! `-2h`, `90m ago`, `yesterday`. Times without an offset are UTC.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read {0:?} as a time: use e.g. \"2026-11-22 01:40\" (UTC), an RFC 3339 time, or \"-2h\" / \"3d ago\""
)]
pub struct TimeError(String);

pub fn parse_point(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    let s = input.trim();
    let err = || TimeError(input.to_owned());
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if s.eq_ignore_ascii_case("yesterday") {
        return Ok(now - Duration::days(1));
    }
    if let Some(rel) = s
        .strip_prefix('-')
        .or_else(|| s.strip_suffix("ago").map(str::trim))
    {
        return parse_duration(rel).map(|d| now - d).ok_or_else(err);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y%m%dT%H%M%SZ",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(err())
}

/// `90m`, `2h`, `3d`, `1w`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        total += match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            'w' => Duration::weeks(n),
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// A short age for people: `45s`, `12m`, `3h 20m`, `4d 2h`, `1y 3d`.
pub fn short_age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (m, h, day) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 60 => format!("{s}s"),
        _ if m < 60 => format!("{m}m"),
        _ if h < 24 => format!("{h}h {}m", m % 60),
        _ if day < 365 => format!("{day}d {}h", h % 24),
        _ => format!("{}y {}d", day / 365, day % 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn plain_formats() {
        let t = |s| parse_point(s, now()).unwrap().to_rfc3339();
        assert_eq!(t("2026-11-22 01:40"), "2026-11-22T01:40:00+00:00");
        assert_eq!(t("2026-11-22T01:40:00+02:00"), "2026-11-21T23:40:00+00:00");
        assert_eq!(t("-2h"), "2026-11-23T10:00:00+00:00");
        assert_eq!(t("1h30m ago"), "2026-11-23T10:30:00+00:00");
        assert_eq!(t("2026-11-01"), "2026-11-01T00:00:00+00:00");
        assert!(parse_point("tomorrowish", now()).is_err());
        assert!(parse_point("-2x", now()).is_err());
        assert!(parse_point("-", now()).is_err());
    }

    #[test]
    fn ages() {
        assert_eq!(short_age(Duration::seconds(59)), "59s");
        assert_eq!(short_age(Duration::minutes(200)), "3h 20m");
        assert_eq!(short_age(Duration::hours(98)), "4d 2h");
    }
}
