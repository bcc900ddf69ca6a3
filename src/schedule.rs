//! When scheduled jobs are due: a pure planner over cron expressions, the last run of each
//! schedule and the current time. The daemon is a thin loop around it, so missed-run and DST
//! behaviour is tested here without waiting for anything.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::jobs::{JobKind, JobRecord};

/// The `[schedule]` table: how every schedule is read and retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The zone cron expressions are read in (IANA name, e.g. "Europe/Berlin").
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Tries per scheduled job before it is marked failed and alerted.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each further one (with jitter).
    #[serde(default = "default_retry_delay", deserialize_with = "de_delay")]
    pub retry_delay: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            timezone: default_timezone(),
            attempts: default_attempts(),
            retry_delay: default_retry_delay(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_attempts() -> u32 {
    3
}
fn default_retry_delay() -> Duration {
    Duration::seconds(30)
}

fn de_delay<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "0" {
        return Ok(Duration::zero());
    }
    crate::when::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A source's `[source.schedule]` table: one cron expression per job kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSchedule {
    pub backup: Option<String>,
    pub verify: Option<String>,
    pub prune: Option<String>,
    pub drill: Option<String>,
}

impl SourceSchedule {
    fn entries(&self) -> impl Iterator<Item = (JobKind, &str)> {
        [
            (JobKind::Backup, &self.backup),
            (JobKind::Verify, &self.verify),
            (JobKind::Prune, &self.prune),
            (JobKind::Drill, &self.drill),
        ]
        .into_iter()
        .filter_map(|(k, e)| Some((k, e.as_deref()?)))
    }
}

/// One scheduled job: a source, a kind and when.
#[derive(Debug, Clone)]
pub struct Entry {
    pub source: String,
    pub kind: JobKind,
    pub expr: String,
    cron: Cron,
}

/// Which schedule: a source and a job kind.
pub type Slot = (String, JobKind);

/// The last time each schedule was handled; a schedule is due when one of its times falls
/// after its mark and at or before now.
pub type Marks = HashMap<Slot, DateTime<Utc>>;

/// A run to come, for `lifeboat schedule`.
#[derive(Debug, Clone, Serialize)]
pub struct Upcoming {
    pub at: DateTime<Utc>,
    pub local: String,
    pub source: String,
    pub kind: JobKind,
    pub expr: String,
}

/// Every schedule of a config, compiled.
#[derive(Debug, Clone)]
pub struct Schedules {
    pub tz: Tz,
    pub entries: Vec<Entry>,
}

impl Schedules {
    pub fn from_config(config: &Config) -> Result<Schedules, String> {
        let tz = Tz::from_str(&config.schedule.timezone).map_err(|_| {
            format!(
                "schedule.timezone {:?} is not an IANA time zone like \"UTC\" or \"Europe/Berlin\"",
                config.schedule.timezone
            )
        })?;
        if config.schedule.attempts == 0 {
            return Err("schedule.attempts must be at least 1".into());
        }
        let mut entries = Vec::new();
        for s in &config.sources {
            for (kind, expr) in s.schedule.entries() {
                let cron = Cron::from_str(expr).map_err(|e| {
                    format!(
                        "source {:?}: schedule.{kind} {expr:?} is not a cron expression: {e}",
                        s.name
                    )
                })?;
                entries.push(Entry {
                    source: s.name.clone(),
                    kind,
                    expr: expr.to_owned(),
                    cron,
                });
            }
        }
        Ok(Schedules { tz, entries })
    }

    /// The first time of `entry` strictly after `t`.
    pub fn next_after(&self, entry: &Entry, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        entry
            .cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.to_utc())
    }

    /// The schedules due at `now`. However many of its times passed since its mark (the
    /// daemon was down, the machine slept), a schedule is due once: a backup missed three
    /// times is taken once, now.
    pub fn due(&self, marks: &Marks, now: DateTime<Utc>) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| {
                let mark = marks.get(&slot(e)).copied().unwrap_or(now);
                self.next_after(e, mark).is_some_and(|t| t <= now)
            })
            .collect()
    }

    /// When the daemon next has something to do: the earliest next time over all schedules.
    pub fn next_wake(&self, marks: &Marks, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .filter_map(|e| self.next_after(e, marks.get(&slot(e)).copied().unwrap_or(now)))
            .min()
    }

    /// The next `count` runs over all schedules after `from`, soonest first.
    pub fn upcoming(&self, from: DateTime<Utc>, count: usize) -> Vec<Upcoming> {
        let mut runs = Vec::new();
        for e in &self.entries {
            let mut t = from;
            for _ in 0..count {
                let Some(next) = self.next_after(e, t) else {
                    break;
                };
                runs.push(Upcoming {
                    at: next,
                    local: next
                        .with_timezone(&self.tz)
                        .format("%Y-%m-%d %H:%M:%S %Z")
                        .to_string(),
                    source: e.source.clone(),
                    kind: e.kind,
                    expr: e.expr.clone(),
                });
                t = next;
            }
        }
        runs.sort_by(|a, b| (a.at, &a.source).cmp(&(b.at, &b.source)));
        runs.truncate(count);
        runs
    }

    /// Marks for a starting daemon: each schedule's newest job of its kind for its source
    /// (whoever ran it), so a time missed while the daemon was down runs once; a schedule
    /// that never ran starts from `now` rather than catching up on the past.
    pub fn marks_from_history(&self, jobs: &[JobRecord], now: DateTime<Utc>) -> Marks {
        self.entries
            .iter()
            .map(|e| {
                let last = jobs
                    .iter()
                    .filter(|j| j.kind == e.kind && j.source.as_deref() == Some(&e.source))
                    .map(|j| j.started_at)
                    .max()
                    .map_or(now, |t| t.min(now));
                (slot(e), last)
            })
            .collect()
    }
}

pub fn slot(e: &Entry) -> Slot {
    (e.source.clone(), e.kind)
}

/// The wait before retry `attempt` (1 = the first retry): `base` doubled per retry, with
/// up to a quarter of random jitter so that many daemons do not retry in step.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base * 2i32.saturating_pow(attempt.saturating_sub(1).min(16));
    let jitter = exp.num_milliseconds() / 4;
    exp + Duration::milliseconds(fastrand::i64(0..=jitter.max(0)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;

    fn schedules(tz: &str, schedule: &str) -> Schedules {
        let text = format!(
            "[storage]\ntype = \"local\"\npath = \"b\"\n[schedule]\ntimezone = \"{tz}\"\n\
             [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"a.db\"\n[source.schedule]\n{schedule}\n"
        );
        let config = Config::parse(&text, Path::new("/x/lifeboat.toml")).unwrap();
        Schedules::from_config(&config).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn marks(s: &Schedules, at: DateTime<Utc>) -> Marks {
        s.entries.iter().map(|e| (slot(e), at)).collect()
    }

    #[test]
    fn the_daily_full_runs_at_two_utc() {
        let s = schedules("UTC", "backup = \"0 2 * * *\"");
        let m = marks(&s, utc(2026, 11, 24, 2, 0));
        assert!(s.due(&m, utc(2026, 11, 25, 1, 59)).is_empty());
        assert_eq!(
            s.next_wake(&m, utc(2026, 11, 25, 1, 59)),
            Some(utc(2026, 11, 25, 2, 0))
        );
        let due = s.due(&m, utc(2026, 11, 25, 2, 0));
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].source.as_str(), due[0].kind),
            ("shop", JobKind::Backup)
        );
    }

    #[test]
    fn missed_runs_after_downtime_run_once() {
        let s = schedules("UTC", "backup = \"0 2 * * *\"\nverify = \"0 * * * *\"");
        // Down for three days: three backups and ~72 verifies were missed.
        let mut m = marks(&s, utc(2026, 11, 20, 2, 0));
        let now = utc(2026, 11, 23, 9, 30);
        let due = s.due(&m, now);
        assert_eq!(due.len(), 2, "each schedule once: {due:?}");
        // Once handled (marked now), nothing is due until the next time comes round.
        for e in &due {
            m.insert(slot(e), now);
        }
        assert!(s.due(&m, now).is_empty());
        assert_eq!(s.next_wake(&m, now), Some(utc(2026, 11, 23, 10, 0)));
    }

    #[test]
    fn a_never_run_schedule_does_not_catch_up_on_the_past() {
        let s = schedules("UTC", "backup = \"0 2 * * *\"");
        let now = utc(2026, 11, 23, 9, 30);
        let m = s.marks_from_history(&[], now);
        assert!(s.due(&m, now).is_empty());
        assert_eq!(s.next_wake(&m, now), Some(utc(2026, 11, 24, 2, 0)));
    }

    #[test]
    fn timezones_move_the_utc_time_with_daylight_saving() {
        let s = schedules("Europe/Berlin", "backup = \"0 2 * * *\"");
        let e = &s.entries[0];
        // Winter: 02:00 CET is 01:00 UTC; summer: 02:00 CEST is 00:00 UTC.
        assert_eq!(
            s.next_after(e, utc(2026, 1, 10, 12, 0)),
            Some(utc(2026, 1, 11, 1, 0))
        );
        assert_eq!(
            s.next_after(e, utc(2026, 7, 10, 12, 0)),
            Some(utc(2026, 7, 11, 0, 0))
        );
    }

    #[test]
    fn dst_gaps_and_repeats_run_once() {
        // 2026-03-29: Berlin clocks jump 02:00 -> 03:00, so 02:30 never happens that day.
        let s = schedules("Europe/Berlin", "backup = \"30 2 * * *\"");
        let e = &s.entries[0];
        let spring = s.next_after(e, utc(2026, 3, 28, 12, 0)).unwrap();
        // It still runs that day, at the first time after the gap: 03:00 CEST.
        assert_eq!(spring, utc(2026, 3, 29, 1, 0));
        let after = s.next_after(e, spring).unwrap();
        assert_eq!(after, utc(2026, 3, 30, 0, 30), "and once");
        // 2026-10-25: 02:00-03:00 happens twice; a fixed-time job runs once.
        let first = s.next_after(e, utc(2026, 10, 24, 12, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30));
        let second = s.next_after(e, first).unwrap();
        assert_eq!(second, utc(2026, 10, 26, 1, 30));
    }

    #[test]
    fn upcoming_lists_runs_in_order() {
        let s = schedules("UTC", "backup = \"0 2 * * *\"\ndrill = \"0 3 1 */3 *\"");
        let runs = s.upcoming(utc(2026, 11, 24, 12, 0), 3);
        let at: Vec<_> = runs.iter().map(|r| (r.at, r.kind)).collect();
        assert_eq!(
            at,
            vec![
                (utc(2026, 11, 25, 2, 0), JobKind::Backup),
                (utc(2026, 11, 26, 2, 0), JobKind::Backup),
                (utc(2026, 11, 27, 2, 0), JobKind::Backup),
            ]
        );
        let drills: Vec<_> = s
            .upcoming(utc(2026, 11, 24, 12, 0), 200)
            .into_iter()
            .filter(|r| r.kind == JobKind::Drill)
            .map(|r| r.at)
            .collect();
        assert_eq!(drills[0], utc(2027, 1, 1, 3, 0));
    }

    #[test]
    fn bad_expressions_and_zones_are_config_errors() {
        for (tz, sched) in [("UTC", "backup = \"61 2 * * *\""), ("Mars/Base", "")] {
            let text = format!(
                "[storage]\ntype = \"local\"\npath = \"b\"\n[schedule]\ntimezone = \"{tz}\"\n\
                 [[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"a.db\"\n[source.schedule]\n{sched}\n"
            );
            let err = Config::parse(&text, Path::new("/x/l.toml")).unwrap_err();
            assert!(err.to_string().contains("schedule"), "{err}");
        }
    }

    #[test]
    fn backoff_doubles() {
        let base = Duration::seconds(10);
        for (attempt, low) in [(1, 10), (2, 20), (3, 40)] {
            let d = backoff(base, attempt);
            assert!(
                d >= Duration::seconds(low) && d <= Duration::milliseconds(low * 1250),
                "{attempt}: {d}"
            );
        }
    }
}
