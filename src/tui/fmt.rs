//! Short human forms for the console's cells.

use chrono::{DateTime, Duration, Utc};
use humansize::{BINARY, format_size};
use lifeboat::when::short_age;

/// Text from the bucket (a key, a manifest field, a job's error), escaped as the CLI escapes
/// it: ratatui would drop control characters silently and pass bidirectional overrides on.
pub fn safe(text: impl std::fmt::Display) -> String {
    lifeboat::escape::term(&text.to_string()).into_owned()
}

pub fn size(bytes: u64) -> String {
    format_size(bytes, BINARY)
}

pub fn opt_size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), size)
}

pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

pub fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "-".into(), |t| short_age(now - t))
}

pub fn millis(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => short_age(Duration::milliseconds(ms)),
    }
}

pub fn count(n: Option<u64>) -> String {
    let Some(n) = n else { return "-".into() };
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
