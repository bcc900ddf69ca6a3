//! Retention: which backups a policy keeps, and why. A pure function of (backups, policy,
//! now), shared by `prune`, the daemon and the console's what-if editor.
//!
//! The `keep_*` rules mean exactly what restic's `forget` gives them: backups are walked
//! newest first; each count rule keeps the newest backup of every calendar bucket (hour, day,
//! ISO week, month, year in the configured timezone) until it has kept `n` of them (`-1`:
//! no limit), and keeps the oldest backup too while it still has buckets left; the `within`
//! rules count back from the newest backup, not from now. Safety rules come on top.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::catalog::BackupState;

/// The longest span a policy may name: beyond it, calendar arithmetic leaves chrono's range.
const MAX_SPAN_DAYS: u64 = 366 * 1000;

/// A calendar span as restic writes it: `1y5m7d2h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    pub fn parse(text: &str) -> Result<Span, String> {
        let bad = || format!("{text:?} is not a span like \"7d\", \"2y5m\" or \"1y5m7d2h\"");
        let mut span = Span::default();
        let mut num = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u32 = num.parse().map_err(|_| bad())?;
            num.clear();
            let slot = match c {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
        }
        if !num.is_empty() || span.is_zero() && !text.trim().starts_with('0') {
            return Err(bad());
        }
        if span.approx_days() > MAX_SPAN_DAYS {
            return Err(format!("{text:?} is longer than 1000 years"));
        }
        Ok(span)
    }

    /// An upper bound of the span in days, for the sanity limit.
    fn approx_days(&self) -> u64 {
        u64::from(self.years) * 366
            + u64::from(self.months) * 31
            + u64::from(self.days)
            + u64::from(self.hours) / 24
    }

    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The instant `self` before `t`, counted on the calendar of `tz` the way Go's `AddDate`
    /// does (so 31 March minus one month is 3 March, as in restic), then minus the hours.
    pub fn before(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz);
        let months = i64::from(local.year()) * 12 + i64::from(local.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
        let first = i32::try_from(year)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, month0 as u32 + 1, 1));
        // Spans are bounded when parsed, but the fields are public: past the calendar's
        // range, everything is within the span.
        let date = first.and_then(|f| {
            f.checked_add_signed(Duration::days(
                i64::from(local.day()) - 1 - i64::from(self.days),
            ))
        });
        let Some(date) = date else {
            return DateTime::<Utc>::MIN_UTC;
        };
        let naive = date.and_time(local.time());
        let at = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => Some(t.to_utc()),
            chrono::LocalResult::Ambiguous(a, _) => Some(a.to_utc()),
            // In a DST gap the wall time does not exist: keep the offset the newest had.
            chrono::LocalResult::None => naive
                .checked_sub_offset(local.offset().fix())
                .map(|n| n.and_utc()),
        };
        at.and_then(|at| at.checked_sub_signed(Duration::hours(i64::from(self.hours))))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Span::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A retention policy. All rules unset (the default) keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_last: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_hourly: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_daily: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_weekly: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_monthly: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_yearly: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<Span>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Policy {
    /// No rule set: everything is kept.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
            && self.keep_within.is_none_or(|s| s.is_zero())
            && self
                .spans()
                .iter()
                .all(|(_, s)| s.is_none_or(|s| s.is_zero()))
    }

    pub fn validate(&self) -> Result<(), String> {
        for (rule, n) in self.counts() {
            if n < -1 {
                return Err(format!(
                    "{} = {n}: use a count, or -1 for no limit",
                    rule.key()
                ));
            }
        }
        Ok(())
    }

    fn counts(&self) -> [(Rule, i32); 6] {
        [
            (Rule::Last, self.keep_last),
            (Rule::Hourly, self.keep_hourly),
            (Rule::Daily, self.keep_daily),
            (Rule::Weekly, self.keep_weekly),
            (Rule::Monthly, self.keep_monthly),
            (Rule::Yearly, self.keep_yearly),
        ]
    }

    fn spans(&self) -> [(Rule, Option<Span>); 5] {
        [
            (Rule::Hourly, self.keep_within_hourly),
            (Rule::Daily, self.keep_within_daily),
            (Rule::Weekly, self.keep_within_weekly),
            (Rule::Monthly, self.keep_within_monthly),
            (Rule::Yearly, self.keep_within_yearly),
        ]
    }

    /// The policy as one line: `keep_last=3 keep_daily=7 keep_within=30d`, or `keep everything`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "empty policy: keep everything".into();
        }
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(r, n)| format!("{}={n}", r.key()))
            .collect();
        if let Some(s) = self.keep_within.filter(|s| !s.is_zero()) {
            parts.push(format!("keep_within={s}"));
        }
        for (r, s) in self.spans() {
            if let Some(s) = s.filter(|s| !s.is_zero()) {
                parts.push(format!("keep_within_{}={s}", r.bucket_name()));
            }
        }
        parts.join(" ")
    }
}

/// The `[retention]` table: the default policy, plus the calendar and the orphan grace period
/// every source shares.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct RetentionConfig {
    pub policy: Policy,
    /// IANA zone whose calendar defines hours, days, weeks, months and years. Default: UTC.
    pub timezone: Tz,
    pub orphan_grace: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            policy: Policy::default(),
            timezone: chrono_tz::UTC,
            orphan_grace: Duration::hours(24),
        }
    }
}

impl TryFrom<toml::Table> for RetentionConfig {
    type Error = String;

    fn try_from(mut table: toml::Table) -> Result<Self, String> {
        let mut out = RetentionConfig::default();
        if let Some(v) = table.remove("timezone") {
            let name = v.as_str().ok_or("retention.timezone must be a string")?;
            out.timezone = name.parse().map_err(|_| {
                format!("retention.timezone {name:?} is not an IANA zone like \"Europe/Berlin\"")
            })?;
        }
        if let Some(v) = table.remove("orphan_grace") {
            let text = v
                .as_str()
                .ok_or("retention.orphan_grace must be a string")?;
            out.orphan_grace = crate::when::parse_duration(text)
                .map_err(|e| format!("retention.orphan_grace: {e}"))?;
        }
        out.policy = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("retention: {}", e.message().trim()))?;
        out.policy.validate()?;
        Ok(out)
    }
}

/// A calendar bucketing rule (and `last`, where every backup is its own bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    fn key(self) -> &'static str {
        match self {
            Rule::Last => "keep_last",
            Rule::Hourly => "keep_hourly",
            Rule::Daily => "keep_daily",
            Rule::Weekly => "keep_weekly",
            Rule::Monthly => "keep_monthly",
            Rule::Yearly => "keep_yearly",
        }
    }

    pub fn bucket_name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The bucket a time falls in, on the wall calendar of `tz` (as restic's `ymdh`, `ymd`,
    /// `yw`, `ym`, `y`): an hour repeated by a DST change is one bucket.
    pub fn bucket(self, t: DateTime<Utc>, tz: Tz, nr: usize) -> i64 {
        let l = t.with_timezone(&tz);
        let (y, m, d, h) = (
            i64::from(l.year()),
            i64::from(l.month()),
            i64::from(l.day()),
            i64::from(l.hour()),
        );
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Rule::Daily => (y * 100 + m) * 100 + d,
            Rule::Weekly => {
                let w = l.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

/// Why a backup is kept (or, for orphans and uploads, removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A count rule (`keep_daily` ...), by the bucket it kept.
    Rule(Rule),
    /// The oldest backup, kept because a rule still had buckets left.
    Oldest(Rule),
    Within(Span),
    WithinRule(Rule, Span),
    /// The oldest backup of the history, inside a `keep_within_*` span, kept though its
    /// bucket already had a newer one.
    OldestWithin(Rule, Span),
    /// Dated after now: a skewed clock or a forged manifest; left out of every rule.
    Future,
    /// Keys are trusted here and none signed it: anyone who can write to the bucket can
    /// make such a backup, so it is kept for a person to judge and left out of every rule.
    Unauthenticated,
    EmptyPolicy,
    Pinned,
    NewestComplete,
    NewestVerified,
    /// The source's newest backup job failed; nothing of it is pruned without `--force`.
    SourceSkipped,
    /// A damaged backup is evidence: left for a person to look at.
    Damaged,
    OrphanInGrace,
    OrphanExpired,
    /// Deleting it would leave no verified copy of it in any store while another store of
    /// its source still keeps it (or cannot be read).
    LastCopy,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule(Rule::Last) => f.write_str("last"),
            Reason::Rule(r) => f.write_str(r.bucket_name()),
            Reason::Oldest(r) => write!(f, "oldest ({})", r.bucket_name()),
            Reason::Within(s) => write!(f, "within {s}"),
            Reason::WithinRule(r, s) => write!(f, "{} within {s}", r.bucket_name()),
            Reason::OldestWithin(r, s) => write!(f, "oldest ({} within {s})", r.bucket_name()),
            Reason::Future => f.write_str("dated in the future"),
            Reason::Unauthenticated => f.write_str("not signed by a trusted key"),
            Reason::EmptyPolicy => f.write_str("empty policy"),
            Reason::Pinned => f.write_str("pinned"),
            Reason::NewestComplete => f.write_str("newest complete"),
            Reason::NewestVerified => f.write_str("newest verified"),
            Reason::SourceSkipped => f.write_str("source skipped"),
            Reason::Damaged => f.write_str("damaged"),
            Reason::OrphanInGrace => f.write_str("orphan in grace period"),
            Reason::OrphanExpired => f.write_str("orphan past grace period"),
            Reason::LastCopy => f.write_str("last copy"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the planner needs to know of one backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub id: String,
    pub time: DateTime<Utc>,
    pub state: BackupState,
    pub stored_bytes: u64,
    pub pinned: bool,
    /// A verify, restore or drill succeeded on it most recently.
    pub verified: bool,
    /// Signed by a key this host trusts, or no key is trusted here (then every backup is).
    pub authentic: bool,
}

/// Planner settings that are not the policy.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub timezone: Tz,
    /// Orphans younger than this may be uploads still running.
    pub orphan_grace: Duration,
    /// The source's newest backup job failed.
    pub newest_failed: bool,
    /// Prune even though the newest backup failed.
    pub force: bool,
    /// The source is in the bucket but not configured on this host, and was not named.
    pub unconfigured: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub backup: Candidate,
    pub keep: bool,
    pub reasons: Vec<Reason>,
}

/// One source's plan: every backup, newest first, with keep or prune and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcePlan {
    pub source: String,
    pub policy: String,
    /// Why nothing of this source is pruned, when so.
    pub skipped: Option<String>,
    pub decisions: Vec<Decision>,
}

impl SourcePlan {
    pub fn pruned(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }

    pub fn freed_bytes(&self) -> u64 {
        self.pruned()
            .fold(0, |n, d| n.saturating_add(d.backup.stored_bytes))
    }
}

/// Decides for one source's backups. Pure: the same input always gives the same plan.
pub fn plan(
    source: &str,
    backups: &[Candidate],
    policy: &Policy,
    now: DateTime<Utc>,
    settings: Settings,
) -> SourcePlan {
    let mut list: Vec<Candidate> = backups.to_vec();
    list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
    let mut decisions: Vec<Decision> = list
        .into_iter()
        .map(|backup| Decision {
            backup,
            keep: true,
            reasons: Vec::new(),
        })
        .collect();
    // Another host's source is governed by that host's policy, not by this one's default.
    let skipped = if settings.unconfigured {
        Some("not configured on this host; name it with --source to prune it".to_owned())
    } else {
        (settings.newest_failed && !settings.force)
            .then(|| "its newest backup failed; fix it or pass --force to prune anyway".to_owned())
    };

    // A backup dated after now comes from a host with a skewed clock (or a forged manifest).
    // Counting it would shift every rule: `keep_last` would spend its slots on it and every
    // `keep_within*` span would be measured from the future. It is kept for a person to look
    // at, and the rules run over the rest, as if it were not there.
    let (future, complete): (Vec<usize>, Vec<usize>) = (0..decisions.len())
        .filter(|&i| decisions[i].backup.state == BackupState::Complete)
        .partition(|&i| crate::clock::is_future(decisions[i].backup.time, now));
    for &i in &future {
        decisions[i].reasons.push(Reason::Future);
    }
    // Planted backups dated just before each slot would otherwise take the slots, and the
    // real backups they displace would be pruned.
    let (complete, planted): (Vec<usize>, Vec<usize>) = complete
        .into_iter()
        .partition(|&i| decisions[i].backup.authentic);
    for &i in &planted {
        decisions[i].reasons.push(Reason::Unauthenticated);
    }
    if policy.is_empty() {
        for &i in &complete {
            decisions[i].reasons.push(Reason::EmptyPolicy);
        }
    } else {
        for (i, reasons) in apply_rules(&decisions, &complete, policy, settings.timezone) {
            decisions[i].keep = !reasons.is_empty();
            decisions[i].reasons = reasons;
        }
    }
    if let Some(&newest) = complete.first() {
        decisions[newest].reasons.push(Reason::NewestComplete);
    }
    if let Some(&v) = complete.iter().find(|&&i| decisions[i].backup.verified) {
        decisions[v].reasons.push(Reason::NewestVerified);
    }
    for d in &mut decisions {
        match d.backup.state {
            BackupState::Complete => {}
            BackupState::Damaged => d.reasons.push(Reason::Damaged),
            BackupState::Orphan if now - d.backup.time >= settings.orphan_grace => {
                d.reasons.push(Reason::OrphanExpired)
            }
            BackupState::Orphan => d.reasons.push(Reason::OrphanInGrace),
        }
        if d.backup.pinned {
            d.reasons.push(Reason::Pinned);
        }
        if skipped.is_some() {
            d.reasons.push(Reason::SourceSkipped);
        }
        d.keep = d
            .reasons
            .iter()
            .any(|r| !matches!(r, Reason::OrphanExpired));
    }
    SourcePlan {
        source: source.to_owned(),
        policy: policy.summary(),
        skipped,
        decisions,
    }
}

/// restic's `ApplyPolicy` over the complete backups (`idx`, newest first): for each, the
/// rules that keep it.
fn apply_rules(
    all: &[Decision],
    idx: &[usize],
    policy: &Policy,
    tz: Tz,
) -> Vec<(usize, Vec<Reason>)> {
    struct Bucket {
        rule: Rule,
        left: i32,
        last: Option<i64>,
    }
    let mut counted: Vec<Bucket> = policy
        .counts()
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(rule, left)| Bucket {
            rule,
            left,
            last: None,
        })
        .collect();
    let mut within: Vec<(Bucket, Span)> = policy
        .spans()
        .into_iter()
        .filter_map(|(rule, s)| s.filter(|s| !s.is_zero()).map(|s| (rule, s)))
        .map(|(rule, s)| {
            (
                Bucket {
                    rule,
                    left: -1,
                    last: None,
                },
                s,
            )
        })
        .collect();
    let Some(newest) = idx.first().map(|&i| all[i].backup.time) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(idx.len());
    for (nr, &i) in idx.iter().enumerate() {
        let t = all[i].backup.time;
        let oldest = nr + 1 == idx.len();
        let mut reasons = Vec::new();
        for b in &mut counted {
            if b.left == 0 {
                continue;
            }
            let val = b.rule.bucket(t, tz, nr);
            if b.last != Some(val) || oldest {
                reasons.push(if b.last == Some(val) {
                    Reason::Oldest(b.rule)
                } else {
                    Reason::Rule(b.rule)
                });
                b.last = Some(val);
                if b.left > 0 {
                    b.left -= 1;
                }
            }
        }
        if let Some(s) = policy.keep_within.filter(|s| !s.is_zero())
            && t > s.before(newest, tz)
        {
            reasons.push(Reason::Within(s));
        }
        for (b, span) in &mut within {
            if t <= span.before(newest, tz) {
                continue;
            }
            let val = b.rule.bucket(t, tz, nr);
            if b.last != Some(val) || oldest {
                reasons.push(if b.last == Some(val) {
                    Reason::OldestWithin(b.rule, *span)
                } else {
                    Reason::WithinRule(b.rule, *span)
                });
                b.last = Some(val);
            }
        }
        out.push((i, reasons));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn backup(time: &str) -> Candidate {
        let time = t(time);
        Candidate {
            id: time.format("%Y%m%dT%H%M%SZ").to_string(),
            time,
            state: BackupState::Complete,
            stored_bytes: 100,
            pinned: false,
            verified: false,
            authentic: true,
        }
    }

    fn settings(tz: Tz) -> Settings {
        Settings {
            timezone: tz,
            orphan_grace: Duration::hours(24),
            newest_failed: false,
            force: false,
            unconfigured: false,
        }
    }

    /// The ids kept, newest first.
    fn kept(backups: &[Candidate], policy: &Policy, tz: Tz) -> Vec<String> {
        let now = backups.iter().map(|b| b.time).max().unwrap();
        plan("s", backups, policy, now, settings(tz))
            .decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.backup.time.to_rfc3339())
            .collect()
    }

    #[test]
    fn spans_parse_like_restic() {
        assert_eq!(
            Span::parse("1y5m7d2h").unwrap(),
            Span {
                years: 1,
                months: 5,
                days: 7,
                hours: 2
            }
        );
        assert_eq!(Span::parse("30d").unwrap().to_string(), "30d");
        for bad in ["", "5", "d", "3w", "1.5d", "-2d"] {
            assert!(Span::parse(bad).is_err(), "{bad:?}");
        }
        for absurd in ["99999999d", "1001y", "4000000000h", "12013m"] {
            let err = Span::parse(absurd).unwrap_err();
            assert!(err.contains("longer than 1000 years"), "{absurd:?}: {err}");
        }
        assert!(Span::parse("1000y").is_ok());
    }

    #[test]
    fn huge_spans_reach_back_to_the_start_of_time_without_panicking() {
        let now = t("2026-06-01T12:00:00Z");
        for span in [
            Span {
                days: u32::MAX,
                ..Span::default()
            },
            Span {
                years: u32::MAX,
                months: u32::MAX,
                days: u32::MAX,
                hours: u32::MAX,
            },
            Span {
                hours: u32::MAX,
                ..Span::default()
            },
        ] {
            assert_eq!(
                span.before(now, chrono_tz::Europe::Berlin),
                DateTime::<Utc>::MIN_UTC
            );
        }
        assert_eq!(
            Span::parse("1000y").unwrap().before(now, chrono_tz::UTC),
            t("1026-06-01T12:00:00Z")
        );
    }

    #[test]
    fn months_are_counted_like_go_add_date() {
        let one_month = Span {
            months: 1,
            ..Span::default()
        };
        // 31 March minus a month is "31 February", which Go normalises to 3 March.
        assert_eq!(
            one_month.before(t("2026-03-31T12:00:00Z"), chrono_tz::UTC),
            t("2026-03-03T12:00:00Z")
        );
        let year = Span::parse("1y").unwrap();
        assert_eq!(
            year.before(t("2028-02-29T00:00:00Z"), chrono_tz::UTC),
            t("2027-03-01T00:00:00Z")
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let b: Vec<_> = (1..=5)
            .map(|d| backup(&format!("2026-01-0{d}T10:00:00Z")))
            .collect();
        let p = Policy {
            keep_last: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            ["2026-01-05T10:00:00+00:00", "2026-01-04T10:00:00+00:00"]
        );
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day_and_the_oldest_while_days_are_left() {
        let b = [
            backup("2026-01-03T20:00:00Z"),
            backup("2026-01-03T08:00:00Z"),
            backup("2026-01-02T20:00:00Z"),
            backup("2026-01-02T08:00:00Z"),
        ];
        let p = Policy {
            keep_daily: 5,
            ..Policy::default()
        };
        // Two days for five slots: the oldest backup is kept as well, as restic does.
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            [
                "2026-01-03T20:00:00+00:00",
                "2026-01-02T20:00:00+00:00",
                "2026-01-02T08:00:00+00:00"
            ]
        );
        let p = Policy {
            keep_daily: 1,
            ..Policy::default()
        };
        assert_eq!(kept(&b, &p, chrono_tz::UTC), ["2026-01-03T20:00:00+00:00"]);
    }

    #[test]
    fn days_follow_the_configured_timezone() {
        // 23:30 UTC on 1 January is already 2 January in Berlin.
        let b = [
            backup("2026-01-01T23:30:00Z"),
            backup("2026-01-01T22:30:00Z"),
        ];
        let p = Policy {
            keep_daily: 1,
            ..Policy::default()
        };
        assert_eq!(kept(&b, &p, chrono_tz::UTC).len(), 1);
        let p2 = Policy {
            keep_daily: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&b, &p, BERLIN).len(), 1);
        // In Berlin they are two days, so keep_daily=2 keeps both; in UTC also both (oldest).
        assert_eq!(kept(&b, &p2, BERLIN).len(), 2);
        assert_eq!(
            Rule::Daily.bucket(b[0].time, BERLIN, 0),
            20260102,
            "Berlin day"
        );
        assert_eq!(Rule::Daily.bucket(b[0].time, chrono_tz::UTC, 0), 20260101);
    }

    #[test]
    fn iso_week_53_and_the_year_boundary() {
        // 2026-12-31 (Thursday) is in ISO week 2026-W53, and so is 2027-01-03 (Sunday);
        // 2027-01-04 (Monday) starts 2027-W01.
        assert_eq!(
            Rule::Weekly.bucket(t("2026-12-31T12:00:00Z"), chrono_tz::UTC, 0),
            202653
        );
        assert_eq!(
            Rule::Weekly.bucket(t("2027-01-03T12:00:00Z"), chrono_tz::UTC, 0),
            202653
        );
        let b = [
            backup("2027-01-04T12:00:00Z"),
            backup("2027-01-03T12:00:00Z"),
            backup("2026-12-31T12:00:00Z"),
            backup("2026-12-28T12:00:00Z"),
            backup("2026-12-27T12:00:00Z"),
        ];
        let p = Policy {
            keep_weekly: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            ["2027-01-04T12:00:00+00:00", "2027-01-03T12:00:00+00:00"]
        );
        // The yearly rule sees a calendar year change between the same two.
        let p = Policy {
            keep_yearly: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            ["2027-01-04T12:00:00+00:00", "2026-12-31T12:00:00+00:00"]
        );
    }

    #[test]
    fn month_ends() {
        let b = [
            backup("2026-03-01T00:30:00Z"),
            backup("2026-02-28T23:30:00Z"),
            backup("2026-02-01T00:00:00Z"),
            backup("2026-01-31T22:00:00Z"),
        ];
        let p = Policy {
            keep_monthly: 3,
            ..Policy::default()
        };
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            [
                "2026-03-01T00:30:00+00:00",
                "2026-02-28T23:30:00+00:00",
                "2026-01-31T22:00:00+00:00"
            ]
        );
        // In Berlin, 28 Feb 23:30 UTC is already 1 March: it shares March with the newest.
        assert_eq!(
            kept(&b, &p, BERLIN),
            [
                "2026-03-01T00:30:00+00:00",
                "2026-02-01T00:00:00+00:00",
                "2026-01-31T22:00:00+00:00"
            ]
        );
    }

    #[test]
    fn dst_fall_back_repeats_an_hour_that_is_one_bucket() {
        // Berlin, 25 Oct 2026: 02:30 CEST (00:30 UTC) and 02:30 CET (01:30 UTC) share the
        // wall-clock hour 02, so keep_hourly sees one bucket, as restic does.
        let b = [
            backup("2026-10-25T01:30:00Z"),
            backup("2026-10-25T00:30:00Z"),
            backup("2026-10-24T23:30:00Z"),
        ];
        assert_eq!(
            Rule::Hourly.bucket(b[0].time, BERLIN, 0),
            Rule::Hourly.bucket(b[1].time, BERLIN, 0)
        );
        let p = Policy {
            keep_hourly: 2,
            ..Policy::default()
        };
        assert_eq!(
            kept(&b, &p, BERLIN),
            ["2026-10-25T01:30:00+00:00", "2026-10-24T23:30:00+00:00"]
        );
        // In UTC they are three hours, so the two newest fill the two slots.
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            ["2026-10-25T01:30:00+00:00", "2026-10-25T00:30:00+00:00"]
        );
    }

    #[test]
    fn dst_spring_forward_day_is_one_day() {
        // 29 Mar 2026 in Berlin has 23 hours; backups at local 00:30 and 23:30 share it.
        let b = [
            backup("2026-03-29T21:30:00Z"),
            backup("2026-03-28T23:30:00Z"),
            backup("2026-03-28T22:30:00Z"),
        ];
        let p = Policy {
            keep_daily: 1,
            ..Policy::default()
        };
        assert_eq!(kept(&b, &p, BERLIN), ["2026-03-29T21:30:00+00:00"]);
        // keep_within 1d is one calendar day back (23 real hours here): from 23:30 on the
        // 29th to 23:30 on the 28th, exclusive.
        let p = Policy {
            keep_within: Some(Span::parse("1d").unwrap()),
            ..Policy::default()
        };
        assert_eq!(kept(&b, &p, BERLIN).len(), 2);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_backup_not_now() {
        let b = [
            backup("2025-06-10T00:00:00Z"),
            backup("2025-06-05T00:00:00Z"),
            backup("2025-06-01T00:00:00Z"),
        ];
        let p = Policy {
            keep_within: Some(Span::parse("7d").unwrap()),
            ..Policy::default()
        };
        let now = t("2026-11-24T00:00:00Z");
        let plan = plan("s", &b, &p, now, settings(chrono_tz::UTC));
        let keep: Vec<bool> = plan.decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, false]);
        assert_eq!(
            plan.decisions[1].reasons,
            [Reason::Within(Span::parse("7d").unwrap())]
        );
        // Exactly at the threshold is outside (restic: After, strictly).
        let b = [
            backup("2025-06-10T00:00:00Z"),
            backup("2025-06-03T00:00:00Z"),
        ];
        assert_eq!(kept(&b, &p, chrono_tz::UTC).len(), 1);
    }

    #[test]
    fn keep_within_daily_keeps_one_a_day_inside_the_span() {
        let b = [
            backup("2026-05-10T20:00:00Z"),
            backup("2026-05-10T08:00:00Z"),
            backup("2026-05-09T20:00:00Z"),
            backup("2026-05-09T08:00:00Z"),
            backup("2026-05-01T20:00:00Z"),
        ];
        let p = Policy {
            keep_within_daily: Some(Span::parse("3d").unwrap()),
            ..Policy::default()
        };
        // Within 3 days of the newest: the newest of 10 May and of 9 May; 1 May is outside.
        assert_eq!(
            kept(&b, &p, chrono_tz::UTC),
            ["2026-05-10T20:00:00+00:00", "2026-05-09T20:00:00+00:00",]
        );
    }

    #[test]
    fn the_oldest_backup_inside_a_within_span_is_labelled_oldest() {
        // Two backups on one day, both within the span: the older one shares the day's bucket
        // but is the oldest of the history, which restic keeps too.
        let b = [
            backup("2026-05-10T20:00:00Z"),
            backup("2026-05-10T08:00:00Z"),
        ];
        let span = Span::parse("3d").unwrap();
        let p = Policy {
            keep_within_daily: Some(span),
            ..Policy::default()
        };
        let plan = plan("s", &b, &p, b[0].time, settings(chrono_tz::UTC));
        assert_eq!(
            plan.decisions[1].reasons,
            [Reason::OldestWithin(Rule::Daily, span)]
        );
        assert_eq!(
            plan.decisions[1].reasons[0].to_string(),
            "oldest (daily within 3d)"
        );
        // Outside the span, the oldest is not kept by a within rule.
        let b = [
            backup("2026-05-10T20:00:00Z"),
            backup("2026-05-01T08:00:00Z"),
        ];
        assert_eq!(kept(&b, &p, chrono_tz::UTC), ["2026-05-10T20:00:00+00:00"]);
    }

    #[test]
    fn a_backup_dated_in_the_future_moves_no_rule() {
        // One backup a day for 30 days, and one from a host whose clock is a year ahead.
        let now = t("2026-11-30T12:00:00Z");
        let mut b: Vec<Candidate> = (0..30)
            .map(|d| {
                let mut c = backup("2026-11-30T02:00:00Z");
                c.time -= chrono::Duration::days(d);
                c.id = c.time.format("%Y%m%dT%H%M%SZ").to_string();
                c
            })
            .collect();
        let sane = |b: &[Candidate], p: &Policy| -> Vec<String> {
            plan("s", b, p, now, settings(chrono_tz::UTC))
                .decisions
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| d.backup.id)
                .collect()
        };
        let within = Policy {
            keep_within: Some(Span::parse("10d").unwrap()),
            ..Policy::default()
        };
        let last = Policy {
            keep_last: 3,
            ..Policy::default()
        };
        let (within_before, last_before) = (sane(&b, &within), sane(&b, &last));
        assert_eq!(within_before.len(), 10);
        let mut skewed = backup("2027-11-30T02:00:00Z");
        skewed.id = "20271130T020000Z".into();
        b.push(skewed);
        let plan = plan("s", &b, &within, now, settings(chrono_tz::UTC));
        assert_eq!(plan.decisions[0].backup.id, "20271130T020000Z");
        assert_eq!(plan.decisions[0].reasons, [Reason::Future]);
        assert!(plan.decisions[1].reasons.contains(&Reason::NewestComplete));
        let without_future = |ids: Vec<String>| -> Vec<String> {
            ids.into_iter()
                .filter(|i| i != "20271130T020000Z")
                .collect()
        };
        assert_eq!(without_future(sane(&b, &within)), within_before);
        assert_eq!(without_future(sane(&b, &last)), last_before);
    }

    #[test]
    fn backups_no_trusted_key_signed_take_no_slot() {
        // One signed backup a day for 10 days; keep_daily 7. Someone with a write key plants
        // an unsigned backup an hour after each one (the newer of the day, so daily would
        // keep it) and an hour after the newest.
        let now = t("2026-11-30T12:00:00Z");
        let mut b: Vec<Candidate> = (0..10)
            .map(|d| {
                let mut c = backup("2026-11-30T02:00:00Z");
                c.time -= chrono::Duration::days(d);
                c.id = c.time.format("%Y%m%dT%H%M%SZ").to_string();
                c
            })
            .collect();
        let p = Policy {
            keep_daily: 7,
            ..Policy::default()
        };
        let kept = |b: &[Candidate]| -> Vec<String> {
            plan("s", b, &p, now, settings(chrono_tz::UTC))
                .decisions
                .into_iter()
                .filter(|d| d.keep && d.backup.authentic)
                .map(|d| d.backup.id)
                .collect()
        };
        let before = kept(&b);
        assert_eq!(before.len(), 7);
        let planted: Vec<Candidate> = b
            .iter()
            .map(|c| Candidate {
                id: format!("{}-planted", c.id),
                time: c.time + chrono::Duration::hours(1),
                authentic: false,
                ..c.clone()
            })
            .collect();
        b.extend(planted);
        assert_eq!(kept(&b), before, "the real backups keep their slots");
        let plan = plan("s", &b, &p, now, settings(chrono_tz::UTC));
        for d in plan.decisions.iter().filter(|d| !d.backup.authentic) {
            assert!(d.keep, "kept for a person to judge: {}", d.backup.id);
            assert_eq!(d.reasons, [Reason::Unauthenticated]);
        }
    }

    #[test]
    fn every_reason_is_recorded() {
        let b = [
            backup("2026-05-10T20:00:00Z"),
            backup("2026-05-09T20:00:00Z"),
        ];
        let p = Policy {
            keep_last: 1,
            keep_daily: 7,
            ..Policy::default()
        };
        let plan = plan("s", &b, &p, b[0].time, settings(chrono_tz::UTC));
        assert_eq!(
            plan.decisions[0].reasons,
            [
                Reason::Rule(Rule::Last),
                Reason::Rule(Rule::Daily),
                Reason::NewestComplete
            ]
        );
        assert_eq!(plan.decisions[1].reasons, [Reason::Rule(Rule::Daily)]);
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let b = [
            backup("2026-05-10T20:00:00Z"),
            backup("2024-05-09T20:00:00Z"),
        ];
        let plan = plan("s", &b, &Policy::default(), b[0].time, settings(BERLIN));
        assert!(plan.decisions.iter().all(|d| d.keep));
        assert_eq!(plan.policy, "empty policy: keep everything");
        assert!(plan.decisions[1].reasons.contains(&Reason::EmptyPolicy));
    }

    #[test]
    fn orphans_go_after_the_grace_period_and_damage_stays() {
        let mut b = vec![backup("2026-05-10T20:00:00Z")];
        for (time, state) in [
            ("2026-05-10T10:00:00Z", BackupState::Orphan),
            ("2026-05-08T10:00:00Z", BackupState::Orphan),
            ("2026-05-01T10:00:00Z", BackupState::Damaged),
        ] {
            let mut c = backup(time);
            c.state = state;
            b.push(c);
        }
        let p = Policy {
            keep_last: 1,
            ..Policy::default()
        };
        let plan = plan("s", &b, &p, t("2026-05-10T21:00:00Z"), settings(BERLIN));
        let keep: Vec<bool> = plan.decisions.iter().map(|d| d.keep).collect();
        assert_eq!(keep, [true, true, false, true]);
        assert_eq!(plan.decisions[2].reasons, [Reason::OrphanExpired]);
    }

    #[test]
    fn config_tables_and_their_errors() {
        use crate::config::Config;
        let base = "[storage]\ntype = \"local\"\npath = \"b\"\n";
        let text = format!(
            "{base}[retention]\ntimezone = \"Europe/Berlin\"\norphan_grace = \"36h\"\nkeep_daily = 7\n\
             [[source]]\nname = \"a\"\nengine = \"sqlite\"\npath = \"a.db\"\n\
             [source.retention]\nkeep_within = \"1y5m7d2h\"\n\
             [[source]]\nname = \"b\"\nengine = \"sqlite\"\npath = \"b.db\"\n"
        );
        let c = Config::parse(&text, std::path::Path::new("/x/l.toml")).unwrap();
        assert_eq!(c.retention.timezone, BERLIN);
        assert_eq!(c.retention.orphan_grace, Duration::hours(36));
        // A source's own policy replaces the default as a whole.
        assert_eq!(c.policy("a").summary(), "keep_within=1y5m7d2h");
        assert_eq!(c.policy("b").summary(), "keep_daily=7");
        assert_eq!(
            Config::parse(base, std::path::Path::new("/x/l.toml"))
                .unwrap()
                .retention,
            RetentionConfig::default()
        );
        for (bad, needle) in [
            ("timezone = \"Mars/Olympus\"", "Mars/Olympus"),
            ("keep_dayly = 3", "keep_dayly"),
            ("keep_daily = -2", "keep_daily = -2"),
            ("keep_within = \"3w\"", "3w"),
            ("orphan_grace = \"soon\"", "soon"),
        ] {
            let err = Config::parse(
                &format!("{base}[retention]\n{bad}\n"),
                std::path::Path::new("/x/l.toml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    fn arb_history() -> impl Strategy<Value = Vec<Candidate>> {
        // Up to 60 backups over about three years, some pinned, verified, orphaned, damaged.
        prop::collection::vec(
            (0i64..3 * 365 * 24 * 60, 0u8..20, any::<bool>(), 1u64..1000),
            0..60,
        )
        .prop_map(|raw| {
            let base = t("2024-01-01T00:00:00Z");
            raw.into_iter()
                .enumerate()
                .map(|(i, (min, kind, verified, bytes))| {
                    let time = base + Duration::minutes(min);
                    Candidate {
                        id: format!("{}-{i:03}", time.format("%Y%m%dT%H%M%SZ")),
                        time,
                        state: match kind {
                            0 => BackupState::Orphan,
                            1 => BackupState::Damaged,
                            _ => BackupState::Complete,
                        },
                        stored_bytes: bytes,
                        pinned: kind == 2,
                        verified: verified && kind % 3 == 0,
                        authentic: true,
                    }
                })
                .collect()
        })
    }

    fn arb_span() -> impl Strategy<Value = Option<Span>> {
        prop::option::of((0u32..2, 0u32..13, 0u32..40, 0u32..48).prop_map(
            |(years, months, days, hours)| Span {
                years,
                months,
                days,
                hours,
            },
        ))
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            prop::array::uniform6(-1i32..6),
            arb_span(),
            prop::array::uniform5(arb_span()),
            any::<u8>(),
        )
            .prop_map(|(c, within, w, mask)| {
                // Most rules off most of the time, as in real policies.
                let on = |bit: u8, n: i32| if mask & (1 << bit) != 0 { n } else { 0 };
                Policy {
                    keep_last: on(0, c[0]),
                    keep_hourly: on(1, c[1]),
                    keep_daily: on(2, c[2]),
                    keep_weekly: on(3, c[3]),
                    keep_monthly: on(4, c[4]),
                    keep_yearly: on(5, c[5]),
                    keep_within: within.filter(|_| mask & 64 != 0),
                    keep_within_hourly: w[0].filter(|_| mask & 128 != 0),
                    keep_within_daily: w[1].filter(|_| mask & 128 != 0),
                    keep_within_weekly: w[2],
                    keep_within_monthly: w[3].filter(|_| mask & 64 != 0),
                    keep_within_yearly: w[4].filter(|_| mask & 1 != 0),
                }
            })
    }

    fn arb_tz() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            chrono_tz::UTC,
            BERLIN,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kathmandu,
        ])
    }

    fn run(b: &[Candidate], p: &Policy, tz: Tz, newest_failed: bool, force: bool) -> SourcePlan {
        let now = t("2027-01-10T00:00:00Z");
        plan(
            "s",
            b,
            p,
            now,
            Settings {
                timezone: tz,
                orphan_grace: Duration::hours(24),
                newest_failed,
                force,
                unconfigured: false,
            },
        )
    }

    proptest! {
        #[test]
        fn safety_rules_always_hold(
            b in arb_history(), p in arb_policy(), tz in arb_tz(),
            failed in any::<bool>(), force in any::<bool>(),
        ) {
            let plan = run(&b, &p, tz, failed, force);
            prop_assert_eq!(plan.decisions.len(), b.len());
            let complete: Vec<&Decision> = plan
                .decisions
                .iter()
                .filter(|d| d.backup.state == BackupState::Complete)
                .collect();
            if let Some(newest) = complete.first() {
                prop_assert!(newest.keep);
                prop_assert!(complete.iter().all(|d| d.backup.time <= newest.backup.time));
            }
            if let Some(v) = complete.iter().find(|d| d.backup.verified) {
                prop_assert!(v.keep);
            }
            for d in &plan.decisions {
                if d.backup.pinned || d.backup.state == BackupState::Damaged {
                    prop_assert!(d.keep, "{:?}", d);
                }
                if d.keep {
                    prop_assert!(!d.reasons.is_empty());
                }
                if !d.keep && d.backup.state == BackupState::Complete {
                    prop_assert!(d.reasons.is_empty());
                }
            }
            if p.is_empty() || (failed && !force) {
                prop_assert!(plan
                    .decisions
                    .iter()
                    .filter(|d| d.backup.state == BackupState::Complete)
                    .all(|d| d.keep));
            }
            if failed && !force {
                prop_assert!(plan.decisions.iter().all(|d| d.keep));
            }
        }

        #[test]
        fn the_plan_is_idempotent(b in arb_history(), p in arb_policy(), tz in arb_tz()) {
            let first = run(&b, &p, tz, false, false);
            let left: Vec<Candidate> = first
                .decisions
                .iter()
                .filter(|d| d.keep)
                .map(|d| d.backup.clone())
                .collect();
            let second = run(&left, &p, tz, false, false);
            // The same backups survive; reasons may grow, as in restic: a pinned backup that
            // becomes the oldest is then also kept as "oldest".
            prop_assert!(second.decisions.iter().all(|d| d.keep), "{:#?}", second);
            prop_assert_eq!(left.len(), second.decisions.len());
        }

        #[test]
        fn adding_a_newer_backup_keeps_the_newest(
            b in arb_history(), p in arb_policy(), tz in arb_tz(), after in 1i64..100_000,
        ) {
            let newest = b.iter().map(|c| c.time).max().unwrap_or(t("2024-01-01T00:00:00Z"));
            let mut more = b.clone();
            let time = newest + Duration::minutes(after);
            more.push(Candidate {
                id: format!("{}-new", time.format("%Y%m%dT%H%M%SZ")),
                time,
                state: BackupState::Complete,
                stored_bytes: 1,
                pinned: false,
                verified: false,
                authentic: true,
            });
            let plan = run(&more, &p, tz, false, false);
            prop_assert_eq!(&plan.decisions[0].backup.id, &more.last().unwrap().id);
            prop_assert!(plan.decisions[0].keep);
        }
    }
}
