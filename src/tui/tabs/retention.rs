//! Retention: for one source at a time, every backup with keep or prune and the rules that
//! keep it, the calendar buckets the policy fills, and a what-if editor that re-plans on every
//! key without deleting anything. `p` prunes by the configured policy after a confirmation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use lifeboat::catalog::BackupState;
use lifeboat::prune::{PlanInputs, PrunePlan};
use lifeboat::retention::{Policy, Rule, SourcePlan, Span};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span as Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Wrap};

use super::Cursor;
use crate::tui::app::{Ctx, Data, Effect, Outbox};
use crate::tui::fmt;
use crate::tui::keys::Action;
use crate::tui::msg::Request;

/// The editor's lines: the policy's keys in the order restic lists them.
const FIELDS: [&str; 12] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_within_hourly",
    "keep_within_daily",
    "keep_within_weekly",
    "keep_within_monthly",
    "keep_within_yearly",
];

#[derive(Debug, Default)]
pub struct RetentionTab {
    inputs: Option<Arc<PlanInputs>>,
    /// Index into the planner's sources.
    source: usize,
    /// The edited policy of the selected source while the what-if editor is open.
    what_if: Option<Policy>,
    field: usize,
    cursor: Cursor,
    /// The plan on screen: the what-if policy's when editing, else the configured one.
    plan: Option<PrunePlan>,
    confirm: Option<Confirm>,
}

#[derive(Debug, Clone)]
struct Confirm {
    source: String,
    /// Exactly what the person agrees to delete: ids and upload keys.
    only: BTreeSet<String>,
    backups: usize,
    uploads: usize,
    bytes: u64,
}

impl RetentionTab {
    pub fn set_inputs(&mut self, inputs: Arc<PlanInputs>) {
        if self.source >= inputs.sources.len() {
            self.source = 0;
        }
        self.inputs = Some(inputs);
        self.replan();
    }

    fn source_name(&self) -> Option<&str> {
        self.inputs
            .as_ref()?
            .sources
            .get(self.source)
            .map(|s| s.source.as_str())
    }

    fn replan(&mut self) {
        let Some(inputs) = &self.inputs else {
            return;
        };
        let what_if = self
            .what_if
            .as_ref()
            .zip(self.source_name())
            .map(|(p, s)| (s, p));
        self.plan = Some(inputs.plan(false, what_if));
        let len = self.shown().map_or(0, |s| s.decisions.len());
        self.cursor.clamp(len);
    }

    fn shown(&self) -> Option<&SourcePlan> {
        self.plan.as_ref()?.sources.get(self.source)
    }

    pub fn hints(&self) -> &'static [Action] {
        if self.confirm.is_some() {
            &[Action::Enter, Action::Back]
        } else if self.what_if.is_some() {
            &[
                Action::Up,
                Action::Down,
                Action::More,
                Action::Less,
                Action::Back,
            ]
        } else {
            &[Action::NextSource, Action::WhatIf, Action::Prune]
        }
    }

    pub fn on_key(
        &mut self,
        action: Option<Action>,
        data: &Data,
        outbox: &mut Outbox,
    ) -> Vec<Effect> {
        if let Some(c) = &self.confirm {
            match action {
                Some(Action::Enter) => {
                    let task = outbox.task(format!("prune {}", c.source), data.now);
                    outbox.requests.push(Request::Prune {
                        task,
                        source: c.source.clone(),
                        only: c.only.clone(),
                    });
                    let status = format!("pruning {}", c.source);
                    self.confirm = None;
                    return vec![Effect::Status(status)];
                }
                Some(Action::Back | Action::Quit) => self.confirm = None,
                _ => {}
            }
            return Vec::new();
        }
        if let Some(policy) = &mut self.what_if {
            match action {
                Some(Action::Up) => self.field = self.field.saturating_sub(1),
                Some(Action::Down) => self.field = (self.field + 1).min(FIELDS.len() - 1),
                Some(Action::More) => adjust(policy, self.field, 1),
                Some(Action::Less) => adjust(policy, self.field, -1),
                Some(Action::Back | Action::WhatIf) => self.what_if = None,
                _ => return Vec::new(),
            }
            self.replan();
            return Vec::new();
        }
        let Some(inputs) = self.inputs.clone() else {
            return Vec::new();
        };
        let n = inputs.sources.len();
        match action {
            Some(Action::NextSource) if n > 0 => {
                self.source = (self.source + 1) % n;
                self.cursor = Cursor::default();
                self.replan();
            }
            Some(Action::WhatIf) => {
                if let Some(s) = inputs.sources.get(self.source) {
                    self.what_if = Some(s.policy.clone());
                    self.replan();
                }
            }
            Some(Action::Prune) => {
                let Some(name) = self.source_name().map(str::to_owned) else {
                    return Vec::new();
                };
                // Always the configured policy: the what-if editor never deletes.
                let plan = inputs.plan(false, None);
                let Some(sp) = plan.sources.iter().find(|s| s.source == name) else {
                    return Vec::new();
                };
                if let Some(why) = &sp.skipped {
                    return vec![Effect::Error(format!("{name} is not pruned: {why}"))];
                }
                let uploads: Vec<&str> = plan
                    .aborts()
                    .map(|u| u.upload.key.as_str())
                    .filter(|k| k.split('/').next() == Some(name.as_str()))
                    .collect();
                let backups = sp.pruned().count();
                if backups + uploads.len() == 0 {
                    return vec![Effect::Status(format!("{name}: nothing to prune"))];
                }
                let only = sp
                    .pruned()
                    .map(|d| d.backup.id.clone())
                    .chain(uploads.iter().map(|k| (*k).to_owned()))
                    .collect();
                let uploads = uploads.len();
                self.confirm = Some(Confirm {
                    source: name,
                    only,
                    backups,
                    uploads,
                    bytes: sp.freed_bytes(),
                });
            }
            other => {
                let len = self.shown().map_or(0, |s| s.decisions.len());
                self.cursor.navigate(other, len);
            }
        }
        Vec::new()
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let (Some(inputs), Some(sp)) = (&self.inputs, self.shown()) else {
            let text = if self.inputs.is_some() {
                "No sources and no backups yet."
            } else {
                "Reading the bucket to plan retention…"
            };
            frame.render_widget(Paragraph::new(Line::styled(text, t.dim)), area);
            return;
        };
        let tz = inputs.timezone;
        let [head, main, timeline] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(4),
            Constraint::Length(6),
        ])
        .areas(area);

        let configured = &inputs.sources[self.source].policy;
        let pruned = sp.pruned().count();
        let mut lines = vec![Line::from(vec![
            Text::styled(
                format!(
                    "{} ({}/{})  ",
                    sp.source,
                    self.source + 1,
                    inputs.sources.len()
                ),
                t.title,
            ),
            Text::raw(format!("policy: {}  ", configured.summary())),
            Text::styled(format!("calendar {}", tz.name()), t.dim),
        ])];
        if let Some(p) = &self.what_if {
            lines.push(Line::styled(
                format!("WHAT-IF: {}  (nothing is deleted; esc leaves)", p.summary()),
                t.warn,
            ));
        }
        let mut summary = vec![Text::raw(format!(
            "{} kept, {pruned} to prune, {} freed by a prune",
            sp.decisions.len() - pruned,
            fmt::size(sp.freed_bytes())
        ))];
        if let Some(why) = &sp.skipped {
            summary.push(Text::styled(format!("  SKIPPED: {why}"), t.bad));
        }
        lines.push(Line::from(summary));
        frame.render_widget(Paragraph::new(lines), head);

        let (list, editor) = if self.what_if.is_some() {
            let [l, e] =
                Layout::horizontal([Constraint::Min(30), Constraint::Length(31)]).areas(main);
            (l, Some(e))
        } else {
            (main, None)
        };
        self.draw_list(frame, list, sp, tz, ctx);
        if let (Some(area), Some(p)) = (editor, &self.what_if) {
            self.draw_editor(frame, area, p, ctx);
        }
        draw_timeline(frame, timeline, sp, tz, data.now, ctx);
        if let Some(c) = &self.confirm {
            self.draw_confirm(frame, area, c, ctx);
        }
    }

    fn draw_list(&self, frame: &mut Frame, area: Rect, sp: &SourcePlan, tz: Tz, ctx: &Ctx) {
        let t = &ctx.theme;
        let height = area.height.saturating_sub(3) as usize;
        // Beside the editor there is no room for whole dates and sizes.
        let narrow = area.width < 70;
        let time_format = if narrow {
            "%m-%d %H:%M"
        } else {
            "%Y-%m-%d %H:%M"
        };
        let range = self.cursor.window(sp.decisions.len(), height);
        let rows: Vec<Row> = sp.decisions[range.clone()]
            .iter()
            .zip(range)
            .map(|(d, i)| {
                let reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
                let (action, style) = if d.keep {
                    ("keep", t.ok)
                } else {
                    ("prune", t.warn)
                };
                let mut cells = vec![
                    Text::raw(
                        d.backup
                            .time
                            .with_timezone(&tz)
                            .format(time_format)
                            .to_string(),
                    ),
                    Text::raw(match d.backup.state {
                        BackupState::Complete => "complete",
                        BackupState::Orphan => "orphan",
                        BackupState::Damaged => "damaged",
                    }),
                    Text::raw(fmt::size(d.backup.stored_bytes)),
                    Text::styled(action, style),
                    Text::raw(reasons.join(", ")),
                ];
                if narrow {
                    cells.remove(2);
                }
                let row = Row::new(cells);
                if i == self.cursor.selected {
                    row.style(t.selected)
                } else {
                    row
                }
            })
            .collect();
        let mut titles = vec!["TIME", "STATE", "STORED", "ACTION", "KEPT BY"];
        let mut widths = vec![
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Min(10),
        ];
        if narrow {
            titles.remove(2);
            widths.remove(2);
            widths[0] = Constraint::Length(11);
        }
        let header = Row::new(titles).style(t.title);
        frame.render_widget(
            Table::new(rows, widths).header(header).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" backups, newest first "),
            ),
            area,
        );
    }

    fn draw_editor(&self, frame: &mut Frame, area: Rect, p: &Policy, ctx: &Ctx) {
        let t = &ctx.theme;
        // Scroll so the selected line stays in view.
        let visible = area.height.saturating_sub(2).max(1) as usize;
        let first = (self.field + 1).saturating_sub(visible);
        let lines: Vec<Line> = FIELDS
            .iter()
            .enumerate()
            .skip(first)
            .map(|(i, name)| {
                let text = format!(" {name:<19}{:>8} ", value(p, i));
                if i == self.field {
                    Line::styled(text, t.selected)
                } else {
                    Line::raw(text)
                }
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.warn)
                    .title(" what-if (+/-) "),
            ),
            area,
        );
    }

    fn draw_confirm(&self, frame: &mut Frame, area: Rect, c: &Confirm, ctx: &Ctx) {
        let t = &ctx.theme;
        let mut text = format!(
            "Prune {}: delete {} backup{}",
            c.source,
            c.backups,
            if c.backups == 1 { "" } else { "s" }
        );
        if c.uploads > 0 {
            text += &format!(" and abort {} incomplete upload(s)", c.uploads);
        }
        text += &format!(", freeing {}?", fmt::size(c.bytes));
        let lines = vec![
            Line::raw(text),
            Line::styled("By the configured policy, not the what-if.", t.dim),
            Line::raw(""),
            Line::styled("enter: prune   esc: cancel", t.title),
        ];
        let width = area.width.min(64);
        let popup = Rect {
            x: area.x + (area.width - width) / 2,
            y: area.y + area.height.saturating_sub(7) / 2,
            width,
            height: 7.min(area.height),
        };
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(t.bad)
                    .title(" prune "),
            ),
            popup,
        );
    }
}

/// One line per calendar rule: a cell per bucket back from now, newest right.
fn draw_timeline(
    frame: &mut Frame,
    area: Rect,
    sp: &SourcePlan,
    tz: Tz,
    now: DateTime<Utc>,
    ctx: &Ctx,
) {
    let t = &ctx.theme;
    let cells = area.width.saturating_sub(2 + 9) as usize;
    let lines: Vec<Line> = [Rule::Daily, Rule::Weekly, Rule::Monthly, Rule::Yearly]
        .into_iter()
        .map(|rule| {
            // Per bucket: whether any backup in it is kept.
            let mut marks: HashMap<i64, bool> = HashMap::new();
            for d in sp
                .decisions
                .iter()
                .filter(|d| d.backup.state == BackupState::Complete)
            {
                *marks.entry(rule.bucket(d.backup.time, tz, 0)).or_default() |= d.keep;
            }
            let mut spans = vec![Text::styled(format!("{:<9}", rule.bucket_name()), t.dim)];
            for key in recent_buckets(rule, now, tz, cells).into_iter().rev() {
                spans.push(match marks.get(&key) {
                    Some(true) => Text::styled("█", t.ok),
                    Some(false) => Text::styled("░", t.warn),
                    None => Text::styled("·", t.dim),
                });
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" buckets, newest right: █ kept  ░ all pruned  · none "),
        ),
        area,
    );
}

/// The keys of the `n` buckets of `rule` back from `now`, newest first.
fn recent_buckets(rule: Rule, now: DateTime<Utc>, tz: Tz, n: usize) -> Vec<i64> {
    let today = now.with_timezone(&tz).date_naive();
    let (y, m) = (i64::from(today.year()), i64::from(today.month0()));
    (0..n as i64)
        .map(|i| match rule {
            Rule::Monthly => {
                let months = y * 12 + m - i;
                months.div_euclid(12) * 100 + months.rem_euclid(12) + 1
            }
            Rule::Yearly => y - i,
            Rule::Weekly => {
                let w = (today - Duration::weeks(i)).iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            _ => {
                let d = today - Duration::days(i);
                (i64::from(d.year()) * 100 + i64::from(d.month())) * 100 + i64::from(d.day())
            }
        })
        .collect()
}

fn value(p: &Policy, field: usize) -> String {
    let count = |n: i32| match n {
        0 => "off".to_owned(),
        -1 => "all".to_owned(),
        n => n.to_string(),
    };
    let span = |s: Option<Span>| s.map_or("off".to_owned(), |s| s.to_string());
    match field {
        0 => count(p.keep_last),
        1 => count(p.keep_hourly),
        2 => count(p.keep_daily),
        3 => count(p.keep_weekly),
        4 => count(p.keep_monthly),
        5 => count(p.keep_yearly),
        6 => span(p.keep_within),
        7 => span(p.keep_within_hourly),
        8 => span(p.keep_within_daily),
        9 => span(p.keep_within_weekly),
        10 => span(p.keep_within_monthly),
        _ => span(p.keep_within_yearly),
    }
}

/// Counts step by one between off (0) and any number; `all` (-1) stays all on `+` and turns
/// the rule off on `-`; an off rule stays off on `-`. Spans step by a day.
fn adjust(p: &mut Policy, field: usize, delta: i32) {
    let count = |n: &mut i32| {
        *n = match *n {
            -1 if delta > 0 => -1,
            -1 => 0,
            n => n.saturating_add(delta).max(0),
        }
    };
    let span = |s: &mut Option<Span>| {
        let mut v = s.unwrap_or_default();
        v.days = v.days.saturating_add_signed(delta);
        *s = (!v.is_zero()).then_some(v);
    };
    match field {
        0 => count(&mut p.keep_last),
        1 => count(&mut p.keep_hourly),
        2 => count(&mut p.keep_daily),
        3 => count(&mut p.keep_weekly),
        4 => count(&mut p.keep_monthly),
        5 => count(&mut p.keep_yearly),
        6 => span(&mut p.keep_within),
        7 => span(&mut p.keep_within_hourly),
        8 => span(&mut p.keep_within_daily),
        9 => span(&mut p.keep_within_weekly),
        10 => span(&mut p.keep_within_monthly),
        _ => span(&mut p.keep_within_yearly),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-` on a rule that is off leaves it off; `-` on "all" turns it off; `+` on "all"
    /// leaves it all; counts step by one.
    #[test]
    fn minus_on_an_off_rule_leaves_it_off() {
        let mut p = Policy::default();
        adjust(&mut p, 0, -1);
        assert_eq!(p.keep_last, 0);
        adjust(&mut p, 0, 1);
        adjust(&mut p, 0, 1);
        assert_eq!(p.keep_last, 2);
        adjust(&mut p, 0, -1);
        assert_eq!(p.keep_last, 1);
        p.keep_daily = -1;
        adjust(&mut p, 2, 1);
        assert_eq!(p.keep_daily, -1);
        adjust(&mut p, 2, -1);
        assert_eq!(p.keep_daily, 0);
        adjust(&mut p, 6, -1);
        assert_eq!(p.keep_within, None);
    }
}
