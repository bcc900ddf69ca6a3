//! Points in time as people type them: `2026-11-22 01:40`, `2026-11-22T01:40:00+02:00`,
//! `-2h`, `90m ago`, `yesterday`, `09:40` (or `0940`), `yesterday 09:40`. Times without an offset are UTC
//! for [`parse_point`] and in the zone given to [`parse_point_in`] (the console's local zone).
//!
//! Durations are bounded ([`MAX_DURATION`]) and every step is checked, so no typed, configured
//! or stored value can overflow the arithmetic done with it later.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// The longest duration lifeboat reads (about 1,000 years): far beyond any RPO, window or
/// interval, and small enough that adding it to any time lifeboat accepts stays in range.
pub const MAX_DURATION: Duration = Duration::days(365_000);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like \"26h\", \"90m\" or \"1d12h\"")]
    Invalid(String),
    #[error("{0:?} is longer than lifeboat accepts (at most 1,000 years)")]
    TooLong(String),
}

pub fn parse_point(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    parse_point_in(input, now, &Utc)
}

/// Like [`parse_point`], reading times without an offset in `zone`: `09:40` is the latest
/// 09:40 at or before now, `yesterday 09:40` and `today 09:40` that day's, `2026-11-25 12:00`
/// that wall-clock time. A wall-clock time the zone skips (a DST gap) is an error; one it
/// repeats is the earlier.
pub fn parse_point_in<Tz: TimeZone>(
    input: &str,
    now: DateTime<Utc>,
    zone: &Tz,
) -> Result<DateTime<Utc>, TimeError> {
    let s = input.trim();
    let err = || {
        TimeError(format!(
            "cannot read {input:?} as a time: use e.g. \"09:40\", \"yesterday 09:40\", \"2026-11-22 01:40\", an RFC 3339 time, or \"-2h\" / \"3d ago\""
        ))
    };
    let local = |naive: NaiveDateTime| {
        zone.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                TimeError(format!(
                    "{input:?} does not exist in this time zone (a daylight-saving gap)"
                ))
            })
    };
    let today = now.with_timezone(zone).date_naive();
    let clock = |t: &str| {
        // Four digits are a wall-clock time (`0940`): one key fewer at 3 a.m.
        let formats: &[&str] = if t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()) {
            &["%H%M"]
        } else {
            &["%H:%M", "%H:%M:%S"]
        };
        formats
            .iter()
            .find_map(|f| NaiveTime::parse_from_str(t, f).ok())
    };
    if let Some(t) = clock(s) {
        let at = local(today.and_time(t))?;
        if at <= now {
            return Ok(at);
        }
        return local(today.pred_opt().ok_or_else(err)?.and_time(t));
    }
    for (word, day) in [("today", Some(today)), ("yesterday", today.pred_opt())] {
        if let Some(rest) = s
            .get(..word.len())
            .filter(|w| w.eq_ignore_ascii_case(word))
            .and_then(|_| s.get(word.len()..))
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let t = clock(rest).ok_or_else(err)?;
            return local(day.ok_or_else(err)?.and_time(t));
        }
    }
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if s.eq_ignore_ascii_case("yesterday") {
        return now.checked_sub_signed(Duration::days(1)).ok_or_else(err);
    }
    if let Some(rel) = s
        .strip_prefix('-')
        .or_else(|| s.strip_suffix("ago").map(str::trim))
    {
        let d = match parse_duration(rel) {
            Ok(d) => d,
            Err(DurationError::TooLong(_)) => {
                return Err(TimeError(format!(
                    "cannot read {input:?} as a time: it reaches back more than 1,000 years"
                )));
            }
            Err(DurationError::Invalid(_)) => return Err(err()),
        };
        return now.checked_sub_signed(d).ok_or_else(err);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    if let Some((day, time)) = s.split_once(' ')
        && let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d")
    {
        return local(day.and_time(clock(time.trim()).ok_or_else(err)?));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y%m%dT%H%M%SZ"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            // The compact id form is UTC, as in backup ids.
            return if fmt.ends_with('Z') {
                Ok(t.and_utc())
            } else {
                local(t)
            };
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(d.and_time(NaiveTime::MIN));
    }
    Err(err())
}

/// A typed point moved by `days` whole days, for a day picker: `2026-11-23 09:40` and one day
/// back gives `2026-11-22 09:40`. A point with no date (`09:40`, empty) moves back from today
/// in `zone` and not forward; a relative one (`-2h`) keeps no time of day. Never moves past
/// today, so the picker cannot reach the future.
pub fn shift_day<Tz: TimeZone>(input: &str, days: i64, now: DateTime<Utc>, zone: &Tz) -> String {
    let today = now.with_timezone(zone).date_naive();
    let s = input.trim_start();
    let word = |w: &str| {
        s.get(..w.len())
            .filter(|p| p.eq_ignore_ascii_case(w))
            .map(|_| &s[w.len()..])
    };
    let (day, rest) = if let Some(d) = s
        .get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    {
        (d, &s[10..])
    } else if let Some(rest) = word("yesterday") {
        (today.pred_opt().unwrap_or(today), rest)
    } else if let Some(rest) = word("today") {
        (today, rest)
    } else if days >= 0 {
        // A point with no day (the newest, `09:40`, `-2h`) is already as late as it goes.
        return input.to_owned();
    } else {
        (today, s)
    };
    let rest = rest.trim();
    // Only a time of day carries over to another day.
    let rest = if rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        rest
    } else {
        ""
    };
    let day = Duration::try_days(days)
        .and_then(|d| day.checked_add_signed(d))
        .unwrap_or(day)
        .min(today);
    format!("{} {rest}", day.format("%Y-%m-%d"))
}

/// `90m`, `2h`, `3d`, `1w`, `1h30m`; at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let text = s;
    let s = s.trim();
    let invalid = || DurationError::Invalid(text.to_owned());
    let too_long = || DurationError::TooLong(text.to_owned());
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if num.is_empty() {
            return Err(invalid());
        }
        // Digits alone can overflow an i64: that is a long duration, not a malformed one.
        let n: i64 = num.parse().map_err(|_| too_long())?;
        num.clear();
        let part = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            'w' => Duration::try_weeks(n),
            _ => return Err(invalid()),
        }
        .ok_or_else(too_long)?;
        total = total.checked_add(&part).ok_or_else(too_long)?;
        if total > MAX_DURATION {
            return Err(too_long());
        }
    }
    if !num.is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

/// Whether a time read from a record (a manifest, a job record, a report) is one lifeboat
/// works with: between the years 1970 and 9999. Anything else is damage or a forgery, and
/// would overflow the arithmetic done with it (a time plus an interval).
pub fn plausible(t: DateTime<Utc>) -> bool {
    (1970..=9999).contains(&chrono::Datelike::year(&t))
}

/// A number of seconds read from a record (a report's RPO), as a duration: `None` when it is
/// negative or longer than [`MAX_DURATION`], which no honest record holds.
pub fn seconds(s: i64) -> Option<Duration> {
    Duration::try_seconds(s).filter(|d| *d >= Duration::zero() && *d <= MAX_DURATION)
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
    fn local_forms() {
        let zone = chrono::FixedOffset::east_opt(3600).unwrap();
        let t = |s| parse_point_in(s, now(), &zone).unwrap().to_rfc3339();
        // now() is 13:00 at +01:00.
        assert_eq!(t("09:40"), "2026-11-23T08:40:00+00:00");
        assert_eq!(
            t("14:00"),
            "2026-11-22T13:00:00+00:00",
            "the latest 14:00 is yesterday's"
        );
        assert_eq!(t("yesterday 09:40"), "2026-11-22T08:40:00+00:00");
        assert_eq!(t("Today 12:00"), "2026-11-23T11:00:00+00:00");
        assert_eq!(t("2026-11-25 12:00"), "2026-11-25T11:00:00+00:00");
        assert_eq!(t("2026-11-22T01:40:00Z"), "2026-11-22T01:40:00+00:00");
        assert_eq!(t("-2h"), "2026-11-23T10:00:00+00:00");
        assert_eq!(t("20261122T014000Z"), "2026-11-22T01:40:00+00:00");
        assert_eq!(t("0940"), "2026-11-23T08:40:00+00:00");
        assert_eq!(t("yesterday 0940"), "2026-11-22T08:40:00+00:00");
        assert_eq!(t("2026-11-20 0940"), "2026-11-20T08:40:00+00:00");
        assert_eq!(t("2026-11-20 09:40:30"), "2026-11-20T08:40:30+00:00");
        assert_eq!(t("2026-11-20  "), "2026-11-19T23:00:00+00:00");
        for bad in [
            "garbage",
            "25:00",
            "2460",
            "940",
            "yesterday noon",
            "today",
            "2026-11-20 12",
        ] {
            let e = parse_point_in(bad, now(), &zone).unwrap_err().to_string();
            assert!(e.contains("cannot read"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_day_picker_moves_the_date_and_keeps_the_time() {
        let zone = chrono::FixedOffset::east_opt(3600).unwrap();
        let shift = |s, d| shift_day(s, d, now(), &zone);
        assert_eq!(shift("", -1), "2026-11-22 ");
        assert_eq!(shift("0940", -1), "2026-11-22 0940");
        assert_eq!(shift("yesterday 09:40", -1), "2026-11-21 09:40");
        assert_eq!(shift("2026-11-22 09:40", -7), "2026-11-15 09:40");
        assert_eq!(
            shift("2026-11-22 09:40", 7),
            "2026-11-23 09:40",
            "never past today"
        );
        assert_eq!(shift("-2h", -1), "2026-11-22 ");
        assert_eq!(shift("", 1), "", "the newest stays the newest");
        assert_eq!(shift("0940", 7), "0940");
        assert_eq!(shift("yesterday 0940", 1), "2026-11-23 0940");
        assert_eq!(shift("2026-11-22 09:40", i64::MIN), "2026-11-22 09:40");
        // What the picker writes reads back as the day it shows.
        let picked = shift(&shift("", -1), -1) + "0940";
        assert_eq!(
            parse_point_in(&picked, now(), &zone).unwrap().to_rfc3339(),
            "2026-11-21T08:40:00+00:00"
        );
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for s in [
            "99999999999999h",
            "9999999999d",
            "99999999999999999999999s",
            "1000000w",
            "365001d",
            "300000d300000d",
        ] {
            assert_eq!(
                parse_duration(s),
                Err(DurationError::TooLong(s.into())),
                "{s}"
            );
        }
        assert_eq!(parse_duration("365000d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("h"), Err(DurationError::Invalid("h".into())));
        let e = parse_point("-99999999999h", now()).unwrap_err().to_string();
        assert!(e.contains("more than 1,000 years"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(seconds(i64::MAX), None);
        assert_eq!(seconds(-1), None);
        assert_eq!(seconds(60), Some(Duration::minutes(1)));
    }

    #[test]
    fn ages() {
        assert_eq!(short_age(Duration::seconds(59)), "59s");
        assert_eq!(short_age(Duration::minutes(200)), "3h 20m");
        assert_eq!(short_age(Duration::hours(98)), "4d 2h");
    }
}
