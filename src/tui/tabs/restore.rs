//! The restore wizard: choose, pre-flight (checksum), target, run, result. Keyboard-first
//! and hard to get wrong: replacing an existing database needs its path typed twice, and a
//! backup whose checksum fails cannot go further.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use lifeboat::catalog::{CatalogRow, RowKind};
use lifeboat::diff::RowStatus;
use lifeboat::jobs::{JobKind, JobRecord};
use lifeboat::pipeline::restore::RestoreReport;
use lifeboat::pitr::PitrReport;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Table, Wrap};

use crate::tui::app::{Ctx, Data, Effect, Outbox};
use crate::tui::fmt;
use crate::tui::keys::Action;
use crate::tui::msg::{Outcome, Request, RestoreRequest, TaskId};
use crate::tui::timeline::{Mark, TimeLine};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Pick a source.
    #[default]
    Source,
    /// Type a point in time (empty: the newest good backup).
    Point,
    /// Manifest summary and checksum verification.
    Preflight,
    /// The scratch database to create.
    Target,
    Run,
    Result,
    /// Put the proven copy in place of its source: type the source's name.
    Promote,
}

#[derive(Debug, Default)]
pub struct RestoreWizard {
    step: Step,
    drill: bool,
    source: usize,
    point: String,
    /// The catalog line being restored.
    chosen: Option<CatalogRow>,
    /// The pre-flight check's answer: what a restore will read is there, or why not.
    preflight: Option<Result<String, String>>,
    /// The point in time typed, as understood.
    point_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Enter was pressed before the listing reached the source: waiting for it (Enter
    /// again chooses from what is listed so far).
    waiting: bool,
    /// Chosen from a partial listing, on request: a newer backup may exist.
    provisional: bool,
    target: String,
    confirm: String,
    /// Whether the target needs its name typed again (it exists, or it is the source).
    needs_confirm: bool,
    confirming: bool,
    /// A PostgreSQL database the scratch server said already exists.
    existing: Option<String>,
    /// Why the target cannot be restored into (the live source, an existing database).
    blocked: Option<String>,
    run_task: Option<TaskId>,
    report: Option<Result<Box<RestoreReport>, String>>,
    saved: Option<String>,
    finished: Option<String>,
    error: Option<String>,
    /// Scroll position in the result's diff table.
    result_cursor: super::Cursor,
    /// The source's name typed to confirm a promotion, the running promotion, its outcome.
    promote_confirm: String,
    promote_task: Option<TaskId>,
    promoted: Option<Result<Box<lifeboat::promote::Promoted>, String>>,
    /// A point-in-time restore chosen in the "when" step, and its outcome.
    pitr: Option<PitrPlan>,
    pitr_report: Option<Result<Box<PitrReport>, String>>,
}

/// A time inside a source's WAL window and the base backup that reaches it.
#[derive(Debug, Clone)]
struct PitrPlan {
    source: String,
    at: DateTime<Utc>,
    base: String,
    /// The window that base backup reaches.
    window: (DateTime<Utc>, Option<DateTime<Utc>>),
    /// Picked at random for a drill rather than typed.
    picked: bool,
}

impl RestoreWizard {
    pub fn typing(&self) -> bool {
        matches!(self.step, Step::Point | Step::Target)
            || (self.step == Step::Promote && self.promoted.is_none())
    }

    pub fn hints(&self) -> &'static [Action] {
        match self.step {
            Step::Source => &[Action::Enter, Action::Drill],
            Step::Preflight if self.pitr.is_none() && !self.drill => {
                &[Action::Enter, Action::Target, Action::Back]
            }
            Step::Point | Step::Target | Step::Preflight => &[Action::Enter, Action::Back],
            Step::Run => &[Action::Cancel],
            Step::Result if self.promotable().is_some() => {
                &[Action::Enter, Action::Promote, Action::Drop, Action::Down]
            }
            Step::Result if self.drill => &[Action::Enter, Action::Down],
            Step::Result => &[Action::Enter, Action::Drop, Action::Down],
            Step::Promote => &[Action::Enter, Action::Back],
        }
    }

    /// Starts over, on a catalog line when one is given.
    pub fn open(
        &mut self,
        id: Option<String>,
        drill: bool,
        data: &Data,
        ctx: &Ctx,
        outbox: &mut Outbox,
    ) {
        if self.step == Step::Run {
            // A restore is under way; it keeps the wizard until it ends.
            self.error = Some("a restore is running: cancel it (c) or wait for it".into());
            return;
        }
        *self = RestoreWizard {
            drill,
            ..RestoreWizard::default()
        };
        if let Some(row) = id.and_then(|id| data.row(&id).cloned()) {
            self.provisional = row.source.as_deref().is_some_and(|s| !data.source_known(s));
            if let Some(s) = &row.source {
                self.source = ctx
                    .config
                    .sources
                    .iter()
                    .position(|c| &c.name == s)
                    .unwrap_or(0);
            }
            self.choose(row, data, ctx, outbox);
        }
    }

    /// Starts over on a source by name (`:restore shop before 09:40`, `:drill auth`): the
    /// newest good backup at or before `before`, or the newest.
    pub fn open_source(
        &mut self,
        source: &str,
        before: Option<&str>,
        drill: bool,
        data: &Data,
        ctx: &Ctx,
        outbox: &mut Outbox,
    ) {
        self.open(None, drill, data, ctx, outbox);
        if self.step != Step::Source {
            return;
        }
        self.source = ctx
            .config
            .sources
            .iter()
            .position(|c| c.name == source)
            .unwrap_or(0);
        self.point = before.unwrap_or_default().to_owned();
        self.step = Step::Point;
        self.resolve_point(data, ctx, outbox);
    }

    /// A listing page arrived: a choice waiting for its source's part of the bucket is made
    /// once that part is read.
    pub fn on_listing(&mut self, data: &Data, ctx: &Ctx, outbox: &mut Outbox) {
        let source = ctx.config.sources.get(self.source).map(|s| s.name.as_str());
        if self.waiting && self.step == Step::Point && source.is_some_and(|s| data.source_known(s))
        {
            self.waiting = false;
            self.resolve_point(data, ctx, outbox);
        }
    }

    pub fn on_preflight(&mut self, id: &str, result: Result<String, String>) {
        if self.chosen.as_ref().is_some_and(|c| c.id == id) && self.preflight.is_none() {
            self.preflight = Some(result);
            self.error = None;
        }
    }

    fn choose(&mut self, row: CatalogRow, _data: &Data, ctx: &Ctx, outbox: &mut Outbox) {
        let name = row.source.clone().unwrap_or_else(|| "foreign".into());
        self.target = if postgres_source(ctx, &row).is_some() {
            lifeboat::engine::postgres::scratch_name(&row.id)
        } else {
            fresh_path(
                &ctx.config
                    .scratch_dir()
                    .join(format!("{name}-{}.db", safe(&row.id))),
            )
        };
        self.preflight = None;
        if row.kind == RowKind::Complete {
            outbox
                .requests
                .push(Request::Preflight { id: row.id.clone() });
        }
        self.chosen = Some(row);
        self.step = Step::Preflight;
        self.error = None;
    }

    /// A job this wizard started has ended. Returns whether it was one of ours.
    pub fn on_finished(&mut self, task: TaskId, record: &JobRecord, outcome: &Outcome) -> bool {
        if Some(task) == self.promote_task {
            self.promote_task = None;
            self.promoted = Some(match outcome {
                Outcome::Promote(r) => r.clone(),
                _ => Err("unexpected answer".into()),
            });
            return true;
        }
        if Some(task) == self.run_task
            && let Outcome::Pitr(report) = outcome
        {
            self.pitr_report = Some(report.clone());
            self.step = Step::Result;
            return true;
        }
        if Some(task) == self.run_task {
            if let Outcome::Restore { report: Err(e), .. } = outcome
                && e.contains("already exists on the scratch server")
            {
                // A restore only creates: another name, please.
                self.existing = Some(self.target.trim().to_owned());
                self.blocked = Some(e.clone());
                self.run_task = None;
                self.error = Some(e.clone());
                self.step = Step::Target;
                return true;
            }
            if let Outcome::Restore { report, saved } = outcome {
                self.report = Some(report.clone());
                self.saved = saved.clone();
            }
            if record.kind == JobKind::Restore
                && record.status == lifeboat::jobs::JobStatus::Cancelled
            {
                self.report = Some(Err("cancelled: the partial database was removed".into()));
            }
            self.step = Step::Result;
            return true;
        }
        false
    }

    pub fn on_key(
        &mut self,
        action: Option<Action>,
        key: KeyEvent,
        data: &Data,
        ctx: &Ctx,
        outbox: &mut Outbox,
    ) -> Vec<Effect> {
        self.error = None;
        match self.step {
            Step::Source => match (action, key.code) {
                (Some(Action::Up), _) => self.source = self.source.saturating_sub(1),
                (Some(Action::Down), _) => {
                    self.source = (self.source + 1).min(ctx.config.sources.len().saturating_sub(1))
                }
                (_, KeyCode::Char('-')) => {
                    // A relative time (-2h) starts the point-in-time entry at once; digits
                    // stay the tab keys.
                    self.step = Step::Point;
                    self.point.push('-');
                }
                (Some(Action::Enter), _) if !ctx.config.sources.is_empty() => {
                    self.step = Step::Point
                }
                (Some(Action::Drill), _) if !ctx.config.sources.is_empty() => {
                    self.drill = true;
                    self.point.clear();
                    self.step = Step::Point;
                    self.resolve_point(data, ctx, outbox);
                }
                _ => {}
            },
            Step::Point => match key.code {
                KeyCode::Esc => {
                    self.waiting = false;
                    self.step = Step::Source;
                }
                KeyCode::Enter => self.resolve_point(data, ctx, outbox),
                // A day picker: the date moves, the typed time of day stays.
                KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown => {
                    let days = match key.code {
                        KeyCode::Up => -1,
                        KeyCode::Down => 1,
                        KeyCode::PageUp => -7,
                        _ => 7,
                    };
                    self.point = ctx.shift_day(&self.point, days, data.now);
                    self.waiting = false;
                }
                _ => {
                    if super::edit_line(&mut self.point, &key) {
                        self.waiting = false;
                    }
                }
            },
            Step::Preflight if self.pitr.is_some() => match action {
                Some(Action::Back) => {
                    self.pitr = None;
                    self.step = Step::Point;
                }
                Some(Action::Enter) => self.start(data, ctx, outbox),
                _ => {}
            },
            Step::Preflight => match action {
                Some(Action::Back) => self.step = Step::Point,
                Some(Action::Target) if !self.drill && self.chosen.is_some() => {
                    self.step = Step::Target;
                    self.check_target(ctx);
                }
                Some(Action::Enter) => {
                    match (&self.preflight, self.chosen.as_ref().map(|c| c.kind)) {
                        (Some(Ok(_)), _) | (None, Some(RowKind::Foreign)) if self.drill => {
                            self.start(data, ctx, outbox)
                        }
                        // The proposed target is new, so nothing needs saying about it:
                        // Enter restores. One that exists or is blocked gets its own step.
                        (Some(Ok(_)), _) | (None, Some(RowKind::Foreign)) => {
                            self.check_target(ctx);
                            if self.blocked.is_some() || self.needs_confirm {
                                self.step = Step::Target;
                            } else {
                                self.start(data, ctx, outbox);
                            }
                        }
                        (Some(Err(_)), _) => {
                            self.error =
                                Some("this backup cannot be restored: choose another".into())
                        }
                        _ => self.error = Some("wait for the pre-flight check".into()),
                    }
                }
                _ => {}
            },
            Step::Target => match key.code {
                // Esc while confirming goes back to the path, which stays editable.
                KeyCode::Esc if self.confirming => {
                    self.confirming = false;
                    self.confirm.clear();
                }
                KeyCode::Esc => self.step = Step::Preflight,
                KeyCode::Enter => self.start(data, ctx, outbox),
                KeyCode::Up | KeyCode::BackTab if self.confirming => {
                    self.confirming = false;
                    self.confirm.clear();
                }
                _ => {
                    let field = if self.confirming {
                        &mut self.confirm
                    } else {
                        &mut self.target
                    };
                    if super::edit_line(field, &key) {
                        self.check_target(ctx);
                    }
                }
            },
            Step::Run => {
                if action == Some(Action::Cancel)
                    && let Some(task) = self.run_task
                {
                    outbox.requests.push(Request::Cancel { task });
                    return vec![Effect::Status("cancelling the restore".into())];
                }
            }
            Step::Result if self.pitr.is_some() => self.on_pitr_result_key(action, outbox),
            Step::Result => match action {
                Some(
                    Action::Up
                    | Action::Down
                    | Action::PageUp
                    | Action::PageDown
                    | Action::Top
                    | Action::Bottom,
                ) => {
                    let len = self
                        .report
                        .as_ref()
                        .and_then(|r| r.as_ref().ok())
                        .map_or(0, |r| r.diff.rows.len());
                    self.result_cursor.navigate(action, len);
                }
                Some(Action::Promote) if self.promotable().is_some() => {
                    self.promote_confirm.clear();
                    self.promoted = None;
                    self.step = Step::Promote;
                }
                Some(Action::Drop) if !self.drill => {
                    if let Some(Ok(report)) = &self.report {
                        self.finished = Some(if report.created {
                            outbox.requests.push(Request::DropScratch {
                                target: report.target.clone(),
                                created: report.created,
                            });
                            format!("dropped {}", report.target)
                        } else {
                            format!(
                                "kept {}: it existed before the restore, so it is not dropped",
                                report.target
                            )
                        });
                        *self = RestoreWizard {
                            finished: self.finished.take(),
                            ..RestoreWizard::default()
                        };
                    }
                }
                Some(Action::Enter | Action::Back) => {
                    let kept = match &self.report {
                        Some(Ok(r)) => Some(format!("kept {}", r.target)),
                        _ => None,
                    };
                    *self = RestoreWizard {
                        finished: kept,
                        ..RestoreWizard::default()
                    };
                }
                _ => {}
            },
            Step::Promote => self.on_promote_key(key, data, outbox),
        }
        Vec::new()
    }

    /// The source a proved copy could replace, with the copy's name.
    fn promotable(&self) -> Option<(String, String)> {
        let report = self.report.as_ref()?.as_ref().ok()?;
        // A drill's copy is dropped as soon as it is proven.
        if self.drill || !report.proved() || !report.created {
            return None;
        }
        Some((report.source.clone()?, report.target.copy_name()))
    }

    fn on_promote_key(&mut self, key: KeyEvent, data: &Data, outbox: &mut Outbox) {
        if self.promote_task.is_some() {
            return;
        }
        if let Some(done) = &self.promoted {
            if matches!(key.code, KeyCode::Enter | KeyCode::Esc) {
                let finished = done
                    .as_ref()
                    .map(|p| format!("promoted {} in place of {}", p.plan.copy, p.plan.replaces))
                    .map_err(drop);
                match finished {
                    Ok(finished) => {
                        *self = RestoreWizard {
                            finished: Some(finished),
                            ..RestoreWizard::default()
                        }
                    }
                    // Refused or failed: back to the result; the copy is still there.
                    Err(()) => {
                        self.promoted = None;
                        self.step = Step::Result;
                    }
                }
            }
            return;
        }
        let Some((source, copy)) = self.promotable() else {
            self.step = Step::Result;
            return;
        };
        match key.code {
            KeyCode::Esc => self.step = Step::Result,
            KeyCode::Backspace => {
                self.promote_confirm.pop();
            }
            KeyCode::Char(c) => self.promote_confirm.push(c),
            KeyCode::Enter => {
                if self.promote_confirm.trim() != source {
                    self.error = Some(format!(
                        "type the source's name, {source}, to promote (Esc to go back)"
                    ));
                    return;
                }
                let task = outbox.task(format!("promote {copy}"), data.now);
                outbox.requests.push(Request::Promote {
                    task,
                    copy,
                    source: source.clone(),
                    confirm: self.promote_confirm.trim().to_owned(),
                });
                self.promote_task = Some(task);
            }
            _ => {}
        }
    }

    fn resolve_point(&mut self, data: &Data, ctx: &Ctx, outbox: &mut Outbox) {
        let Some(source) = ctx.config.sources.get(self.source) else {
            return;
        };
        let before = if self.point.trim().is_empty() {
            None
        } else {
            match ctx.parse_time(&self.point, data.now) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        };
        self.point_time = before;
        if source.pitr.is_some() && self.choose_pitr(&source.name, before, data) {
            return;
        }
        // From a partial listing the newest line is a guess: wait for the source's part of
        // the bucket, unless asked twice.
        self.provisional = !data.source_known(&source.name);
        if self.provisional && !self.waiting {
            self.waiting = true;
            return;
        }
        self.waiting = false;
        let newest = data
            .rows
            .iter()
            .filter(|r| {
                r.kind == RowKind::Complete && r.source.as_deref() == Some(source.name.as_str())
            })
            .filter(|r| before.is_none_or(|t| r.time.is_some_and(|rt| rt <= t)))
            .max_by_key(|r| r.time)
            .cloned();
        match newest {
            Some(row) => self.choose(row, data, ctx, outbox),
            None => {
                self.error = Some(match before {
                    Some(t) => format!(
                        "no complete backup of {} at or before {}",
                        source.name,
                        t.format("%Y-%m-%d %H:%M UTC")
                    ),
                    None => format!("no complete backup of {}", source.name),
                })
            }
        }
    }

    /// Whether the target is free, must be confirmed (an existing SQLite file), or cannot be
    /// restored into (the source, an existing database); a stat, done on keys, never on draw.
    fn check_target(&mut self, ctx: &Ctx) {
        self.blocked = None;
        let name = self.target.trim();
        if let Some(source) = self.chosen.as_ref().and_then(|c| postgres_source(ctx, c)) {
            // Other existing databases are refused by the restore itself, with the reason.
            let source_db = lifeboat::engine::postgres::source_conn(source).map(|c| c.dbname);
            if source_db.is_ok_and(|db| db == name) {
                self.blocked = Some(format!(
                    "{name} is the live source database: a restore makes a new database. Restore under a new name, then promote the proven copy (P on the result)."
                ));
            } else if self.existing.as_deref() == Some(name) {
                self.blocked = Some(format!(
                    "{name} already exists: a restore only creates a new database; choose another name."
                ));
            }
            self.needs_confirm = false;
            self.confirming = false;
            self.confirm.clear();
            return;
        }
        let path = Path::new(name);
        let source = self
            .chosen
            .as_ref()
            .and_then(|c| c.source.as_ref())
            .and_then(|s| ctx.config.source(s))
            .and_then(|s| s.path.clone());
        if source.is_some_and(|s| same_file(&s, path)) {
            self.blocked = Some(
                "This is the live source database: a restore never replaces it. Restore into a new file, then promote the proven copy (P on the result).".into(),
            );
        }
        self.needs_confirm = self.blocked.is_none() && path.exists();
        if !self.needs_confirm {
            self.confirming = false;
            self.confirm.clear();
        }
    }

    fn start(&mut self, data: &Data, ctx: &Ctx, outbox: &mut Outbox) {
        if let Some(plan) = &self.pitr {
            let what = if self.drill { "drill" } else { "restore" };
            let task = outbox.task(
                format!("{what} {} to {}", plan.source, ctx.show_time(plan.at)),
                data.now,
            );
            outbox.requests.push(Request::PitrRestore {
                task,
                source: plan.source.clone(),
                at: plan.at,
                base: plan.base.clone(),
                drill: self.drill,
            });
            self.run_task = Some(task);
            self.step = Step::Run;
            return;
        }
        // A drill restores into a scratch copy lifeboat names, and drops it, as the CLI does.
        if self.drill {
            let Some(row) = &self.chosen else { return };
            let task = outbox.task(format!("drill {}", row.id), data.now);
            outbox.requests.push(Request::Restore(RestoreRequest {
                task,
                id: row.id.clone(),
                target: PathBuf::new(),
                force_target: false,
                compare_live: false,
                drill: true,
            }));
            self.target = "a fresh scratch copy, dropped once proven".into();
            self.run_task = Some(task);
            self.step = Step::Run;
            return;
        }
        let target = self.target.trim().to_owned();
        let postgres = self
            .chosen
            .as_ref()
            .and_then(|c| postgres_source(ctx, c))
            .is_some();
        if postgres {
            if let Err(e) = lifeboat::engine::postgres::validate_db_name(&target) {
                self.error = Some(e.to_string());
                return;
            }
        } else if target.is_empty() || target.ends_with('/') {
            self.error = Some("the target must name a file".into());
            return;
        }
        if let Some(why) = &self.blocked {
            self.error = Some(why.clone());
            return;
        }
        if self.needs_confirm && !self.confirming {
            self.confirming = true;
            return;
        }
        if self.needs_confirm && self.confirm.trim() != target {
            self.error = Some("the confirmation does not match the target".into());
            return;
        }
        let Some(row) = &self.chosen else { return };
        let task = outbox.task(format!("restore {}", row.id), data.now);
        outbox.requests.push(Request::Restore(RestoreRequest {
            task,
            id: row.id.clone(),
            target: PathBuf::from(&target),
            force_target: self.needs_confirm,
            compare_live: row.kind == RowKind::Complete,
            drill: self.drill,
        }));
        self.run_task = Some(task);
        self.step = Step::Run;
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let steps = ["1 choose", "2 pre-flight", "3 target", "4 run", "5 result"];
        let current = match self.step {
            Step::Source | Step::Point => 0,
            Step::Preflight => 1,
            Step::Target => 2,
            Step::Run => 3,
            Step::Result | Step::Promote => 4,
        };
        let mut crumbs = vec![Span::styled(
            if self.drill { " DRILL " } else { " restore " },
            t.title,
        )];
        for (i, s) in steps.iter().enumerate() {
            let style = if i == current {
                t.selected
            } else if i < current {
                t.ok
            } else {
                t.dim
            };
            crumbs.push(Span::styled(format!(" {s} "), style));
            if i + 1 < steps.len() {
                crumbs.push(Span::styled("›", t.dim));
            }
        }
        let [top, body, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(2),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(Line::from(crumbs)), top);
        let block = Block::default().borders(Borders::ALL);
        let inner = block.inner(body);
        frame.render_widget(block, body);
        match self.step {
            Step::Source | Step::Point => self.draw_choose(frame, inner, data, ctx),
            Step::Preflight if self.pitr.is_some() => self.draw_pitr_plan(frame, inner, data, ctx),
            Step::Preflight => self.draw_preflight(frame, inner, data, ctx),
            Step::Target => self.draw_target(frame, inner, ctx),
            Step::Run => self.draw_run(frame, inner, data, ctx),
            Step::Result if self.pitr.is_some() => self.draw_pitr_result(frame, inner, ctx),
            Step::Result => self.draw_result(frame, inner, ctx),
            Step::Promote => self.draw_promote(frame, inner, ctx),
        }
        let status = match (&self.error, &self.finished) {
            (Some(e), _) => Line::styled(fmt::safe(e), t.bad),
            (None, Some(f)) => Line::styled(fmt::safe(f), t.ok),
            _ => Line::raw(""),
        };
        frame.render_widget(Paragraph::new(status).wrap(Wrap { trim: true }), bottom);
    }

    fn draw_choose(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let mut lines = vec![Line::styled("Which database?", t.title)];
        for (i, s) in ctx.config.sources.iter().enumerate() {
            let health = data.health.iter().find(|h| h.source == s.name);
            let newest = health.and_then(|h| h.newest);
            let text = if data.source_known(&s.name) {
                format!(
                    "  {:<12} newest good backup {} ago",
                    s.name,
                    fmt::ago(newest, data.now)
                )
            } else {
                format!(
                    "  {:<12} not read yet ({})",
                    s.name,
                    data.listing_progress()
                )
            };
            lines.push(if i == self.source {
                Line::styled(text, t.selected)
            } else {
                Line::raw(text)
            });
        }
        if ctx.config.sources.is_empty() {
            lines.push(Line::styled("  no sources are configured", t.bad));
        }
        lines.push(Line::raw(""));
        let wal = ctx
            .config
            .sources
            .get(self.source)
            .is_some_and(|s| s.pitr.is_some());
        if self.step == Step::Point {
            lines.push(Line::styled(
                if wal {
                    "Restore to this moment from the WAL, else the newest good backup before it:"
                } else {
                    "Restore the newest good backup taken at or before:"
                },
                t.title,
            ));
            lines.push(Line::from(vec![
                Span::raw("  > "),
                Span::styled(format!("{}█", self.point), t.accent),
            ]));
            let zone = ctx.show_time(data.now);
            let zone = zone.rsplit(' ').next().unwrap_or_default();
            let understood = match ctx.parse_time(&self.point, data.now) {
                _ if self.point.trim().is_empty() => format!("empty = the newest (zone {zone})"),
                Ok(t) => format!("= {}", ctx.show_time(t)),
                Err(_) => "…".to_owned(),
            };
            lines.push(Line::styled(format!("  {understood}"), t.dim));
            lines.push(Line::styled(
                "  0940 · yesterday 09:40 · -2h · 2026-11-25 12:00   ↑↓ day  PgUp/PgDn week",
                t.dim,
            ));
            if self.waiting {
                let name = ctx
                    .config
                    .sources
                    .get(self.source)
                    .map_or("", |s| s.name.as_str());
                lines.push(Line::styled(
                    format!(
                        "  The bucket is still being read ({}): {name}'s newest backup may not be listed yet. Waiting for it; Enter again chooses from what is listed so far.",
                        data.listing_progress()
                    ),
                    t.warn,
                ));
            }
            lines.extend(self.window_lines(area.width, data, ctx));
        } else {
            lines.push(Line::styled(
                if wal {
                    "Enter: the point in time (or type -2h) · d: drill a random time in the WAL"
                } else {
                    "Enter: the point in time (or just type -2h) · d: drill the newest"
                },
                t.dim,
            ));
        }
        frame.render_widget(Paragraph::new(lines), area);
    }

    /// For a source with WAL: a time inside its window (typed, or picked at random for a
    /// drill) is restored from the WAL. Returns whether it was chosen so (or must wait for
    /// the archive to be read); otherwise the newest logical backup at or before the time is.
    fn choose_pitr(&mut self, source: &str, before: Option<DateTime<Utc>>, data: &Data) -> bool {
        let status = match data.pitr.get(source) {
            Some(Ok(s)) => s,
            Some(Err(_)) => return false,
            None if before.is_some() || self.drill => {
                self.error = Some(format!(
                    "still reading the WAL archive of {source}: Enter again in a moment"
                ));
                return true;
            }
            None => return false,
        };
        let Some(line) = TimeLine::of(status) else {
            return false;
        };
        let (at, picked) = match before {
            Some(t) if line.contains(t) => (t, false),
            // The simulated clock seeds the pick: a test sees the same time every run.
            None if self.drill => (line.pick(data.now.timestamp() as u64), true),
            _ => return false,
        };
        let Some(b) = status.covering(at) else {
            return false;
        };
        let Ok(w) = &b.window else { return false };
        self.pitr = Some(PitrPlan {
            source: source.to_owned(),
            at,
            base: b.base.id.to_string(),
            window: (w.from, w.to),
            picked,
        });
        self.chosen = None;
        self.error = None;
        self.step = Step::Preflight;
        true
    }

    fn on_pitr_result_key(&mut self, action: Option<Action>, outbox: &mut Outbox) {
        let report = self.pitr_report.as_ref().and_then(|r| r.as_ref().ok());
        match action {
            Some(
                Action::Up
                | Action::Down
                | Action::PageUp
                | Action::PageDown
                | Action::Top
                | Action::Bottom,
            ) => {
                let len = report.map_or(0, |r| r.diff.rows.len());
                self.result_cursor.navigate(action, len);
            }
            Some(Action::Drop) => {
                let Some(r) = report.filter(|r| !r.dropped) else {
                    return;
                };
                let dir = r.recovered.cluster.dir.clone();
                outbox.requests.push(Request::DropPitrScratch {
                    source: r.source.clone(),
                    dir: dir.clone(),
                });
                *self = RestoreWizard {
                    finished: Some(format!(
                        "stopping and removing the scratch cluster {}",
                        dir.display()
                    )),
                    ..RestoreWizard::default()
                };
            }
            Some(Action::Enter | Action::Back) => {
                let kept = report.filter(|r| !r.dropped).map(|r| {
                    format!(
                        "kept the scratch cluster: psql \"{}\" (lifeboat wal drop-scratch {} removes it)",
                        r.conninfo,
                        r.recovered.cluster.dir.display()
                    )
                });
                *self = RestoreWizard {
                    finished: kept,
                    ..RestoreWizard::default()
                };
            }
            _ => {}
        }
    }

    /// The WAL window of the wizard's source, as far as it is known, with the typed time
    /// on the time line. Nothing for a source without `[source.pitr]`.
    fn window_lines(&self, width: u16, data: &Data, ctx: &Ctx) -> Vec<Line<'static>> {
        let t = &ctx.theme;
        let Some(source) = ctx
            .config
            .sources
            .get(self.source)
            .filter(|s| s.pitr.is_some())
        else {
            return Vec::new();
        };
        let status = match data.pitr.get(&source.name) {
            None => {
                return vec![Line::styled("WAL window: reading the archive…", t.dim)];
            }
            Some(Err(e)) => {
                return vec![Line::styled(
                    format!("WAL window: cannot read the archive: {}", fmt::safe(e)),
                    t.bad,
                )];
            }
            Some(Ok(s)) => s,
        };
        let Some(line) = TimeLine::of(status) else {
            return vec![Line::styled(
                if status.bases.is_empty() {
                    "WAL window: none, no base backup yet (lifeboat basebackup)"
                } else {
                    "WAL window: none, no base backup reaches archived WAL"
                },
                t.bad,
            )];
        };
        let gaps = line.gaps().len();
        let mut out = vec![Line::styled(
            format!(
                "WAL window {}  ({} base backup{}, {})",
                span(ctx, line.from, line.to),
                status.bases.len(),
                if status.bases.len() == 1 { "" } else { "s" },
                match gaps {
                    0 => "no gap".to_owned(),
                    1 => "1 gap".to_owned(),
                    n => format!("{n} gaps"),
                }
            ),
            t.title,
        )];
        let cursor = match &self.pitr {
            Some(p) => Some(p.at),
            None if self.point.trim().is_empty() => None,
            None => ctx.parse_time(&self.point, data.now).ok(),
        };
        let width = width.saturating_sub(4).max(10) as usize;
        let mut spans = vec![Span::raw("  ")];
        for m in line.marks(width, cursor) {
            let style = match m {
                Mark::Cursor => t.accent,
                Mark::Base => t.title,
                Mark::Gap => t.bad,
                Mark::Covered => t.ok,
            };
            spans.push(Span::styled(m.glyph().to_string(), style));
        }
        out.push(Line::from(spans));
        let (from, to) = (clock(ctx, line.from), clock(ctx, line.to));
        let pad = width.saturating_sub(from.chars().count() + to.chars().count());
        out.push(Line::styled(
            format!("  {from}{}{to}", " ".repeat(pad)),
            t.dim,
        ));
        if self.pitr.is_none() {
            out.push(match cursor {
                Some(at) if line.contains(at) => Line::styled(
                    format!(
                        "  {} is in the window: restored from the WAL into a scratch cluster",
                        clock(ctx, at)
                    ),
                    t.ok,
                ),
                Some(_) => Line::styled(
                    "  outside the window: the newest logical backup at or before it",
                    t.warn,
                ),
                None => Line::styled("  ┃ base backup  ╳ WAL gap  ● the time typed", t.dim),
            });
        }
        out
    }

    fn draw_pitr_plan(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let Some(p) = &self.pitr else { return };
        let mut lines = vec![
            Line::styled(
                format!("Point-in-time restore of {}", fmt::safe(&p.source)),
                t.title,
            ),
            Line::raw(format!(
                "to         {}{}",
                show_seconds(ctx, p.at),
                if p.picked {
                    "  (picked at random in the window)"
                } else {
                    ""
                }
            )),
            Line::raw(format!(
                "from       base backup {} (restorable {} → {})",
                fmt::safe(&p.base),
                clock(ctx, p.window.0),
                p.window.1.map_or("?".into(), |to| clock(ctx, to))
            )),
            Line::raw(
                "into       a new scratch cluster; the archived WAL is replayed to that time",
            ),
            Line::raw("proof      restored row counts beside the nearest logical backup's"),
            Line::raw(""),
        ];
        lines.extend(self.window_lines(area.width, data, ctx));
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            if self.drill {
                "Enter starts the drill: the cluster is dropped once proved · Esc goes back"
            } else {
                "Enter starts the restore · Esc goes back"
            },
            t.ok,
        ));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }

    fn draw_pitr_result(&self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let r = match &self.pitr_report {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let lines = vec![
                    Line::styled("POINT-IN-TIME RESTORE FAILED", t.bad),
                    Line::raw(fmt::safe(e)),
                    Line::raw(""),
                    Line::styled(
                        "No scratch cluster is left behind. Enter to start over",
                        t.dim,
                    ),
                ];
                frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
                return;
            }
            None => return,
        };
        let rec = &r.recovered;
        let mut head = vec![
            Line::styled(
                format!(
                    "RESTORED {} to {}",
                    fmt::safe(&r.source),
                    match &rec.target {
                        lifeboat::engine::postgres::physical::scratch::RecoveryTarget::Time(at) => {
                            show_seconds(ctx, *at)
                        }
                        other => fmt::safe(other.to_string()),
                    }
                ),
                t.ok,
            ),
            Line::raw(format!(
                "from {} · {} on timeline {} · last commit {}",
                rec.base,
                if rec.paused { "paused" } else { "promoted" },
                rec.timeline,
                rec.last_commit
                    .map_or("none replayed".into(), |at| clock(ctx, at))
            )),
        ];
        if let Some(line) = &rec.stop_line {
            head.push(Line::styled(
                format!("PostgreSQL: {}", fmt::safe(line)),
                t.dim,
            ));
        }
        head.push(if r.dropped {
            Line::styled("the scratch cluster was dropped once proved", t.accent)
        } else {
            Line::styled(
                format!("connect: psql \"{}\"", fmt::safe(&r.conninfo)),
                t.accent,
            )
        });
        head.push(Line::styled(
            format!(
                "logical: counts of backup {}, the newest before the target",
                fmt::safe(r.logical_backup.as_deref().unwrap_or("none"))
            ),
            t.dim,
        ));
        let [top, table, keys] = Layout::vertical([
            Constraint::Length(wrapped_height(&head, area.width)),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(head).wrap(Wrap { trim: false }), top);
        let window = self
            .result_cursor
            .window(r.diff.rows.len(), table.height.saturating_sub(1) as usize);
        let rows: Vec<Row> = r.diff.rows[window]
            .iter()
            .map(|row| {
                Row::new(vec![
                    fmt::safe(&row.table),
                    fmt::count(row.restored),
                    fmt::count(row.expected),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(40),
            Constraint::Length(12),
            Constraint::Min(12),
        ];
        let header = Row::new(["TABLE", "RESTORED", "LOGICAL"]).style(t.title);
        frame.render_widget(Table::new(rows, widths).header(header), table);
        frame.render_widget(
            Paragraph::new(Line::styled(
                if r.dropped {
                    "Enter to finish".to_owned()
                } else {
                    format!(
                        "Enter keeps the scratch cluster · {} stops and removes it",
                        ctx.keymap.key(Action::Drop)
                    )
                },
                t.dim,
            )),
            keys,
        );
    }

    fn draw_preflight(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let Some(row) = &self.chosen else { return };
        let entry = data.catalog.as_ref().and_then(|c| c.find(&row.id));
        let mut lines = Vec::new();
        if self.provisional {
            lines.push(Line::styled(
                "PROVISIONAL: chosen before the bucket listing reached this source; a newer backup may exist.",
                t.bad,
            ));
        }
        if let Some(at) = self.point_time {
            lines.push(Line::raw(format!(
                "point      the newest good backup at or before {}",
                ctx.show_time(at)
            )));
        }
        lines.extend([
            Line::from(vec![
                Span::styled("backup     ", t.title),
                Span::raw(fmt::safe(&row.id)),
            ]),
            Line::raw(format!(
                "source     {}",
                fmt::safe(row.source.as_deref().unwrap_or("(foreign object)"))
            )),
            Line::raw(format!(
                "taken      {}",
                row.time.map_or("-".into(), |at| ctx.show_time(at))
            )),
        ]);
        let rpo = ctx.config.sources.get(self.source).map(|s| s.rpo());
        let age = row.time.map(|t| data.now - t);
        let age_style = match (age, rpo) {
            (Some(a), Some(r)) if a > r => t.warn,
            _ => Style::new(),
        };
        lines.push(Line::styled(
            format!(
                "age        {} (data since then would be lost: RPO now)",
                fmt::ago(row.time, data.now)
            ),
            age_style,
        ));
        lines.push(Line::raw(format!(
            "size       {} stored, {} raw; {} tables, {} rows",
            fmt::size(row.stored_bytes),
            fmt::opt_size(row.raw_bytes),
            fmt::count(row.tables),
            fmt::count(row.rows)
        )));
        if let Some(m) = entry.and_then(|e| e.manifest.as_ref()) {
            lines.push(Line::raw(format!(
                "engine     {} {} on {}",
                m.source.engine,
                fmt::safe(&m.source.server_version),
                fmt::safe(&m.host)
            )));
        }
        let expected = lifeboat::health::expected_restore(&data.jobs, row.stored_bytes);
        lines.push(Line::raw(format!(
            "expected   {}",
            expected.map_or("no past restores to judge from".into(), |d| format!(
                "about {} (from past restores)",
                fmt::millis(Some(d.num_milliseconds()))
            ))
        )));
        if !self.drill && self.pitr.is_none() {
            lines.push(Line::raw(format!("into       {}", fmt::safe(&self.target))));
        }
        lines.push(Line::raw(""));
        let next = if self.drill {
            "Enter starts the drill"
        } else {
            "Enter restores"
        };
        match &self.preflight {
            Some(Ok(found)) => {
                lines.push(Line::styled(
                    format!("check      ✔ {}", fmt::safe(found)),
                    t.ok,
                ));
                lines.push(Line::styled(
                    format!("checksum   checked while downloading, before loading. {next}."),
                    t.ok,
                ));
            }
            Some(Err(e)) => lines.push(Line::styled(
                format!("check      ✖ {}", fmt::safe(e)),
                t.bad,
            )),
            None if row.kind == RowKind::Foreign => lines.push(Line::styled(
                format!(
                    "checksum   none: not written by lifeboat; row counts will be measured. {next}."
                ),
                t.warn,
            )),
            None => lines.push(Line::styled(
                "check      reading the manifest and the data object…",
                t.dim,
            )),
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }

    fn draw_target(&self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let pg = self
            .chosen
            .as_ref()
            .and_then(|c| postgres_source(ctx, c))
            .is_some();
        let [what, new_one, exists, again, edit] = if pg {
            [
                "Restore into this new PostgreSQL database on the scratch server (edit the name if you like):",
                "A new database: nothing existing is touched. Enter to start.",
                "",
                "",
                "",
            ]
        } else {
            [
                "Restore into this new SQLite database (edit the path if you like):",
                "A new file: nothing existing is touched. Enter to start.",
                "This file exists. Restoring replaces it.",
                "Type the path again to confirm (Esc: edit the path instead):",
                "Enter to confirm by typing it again, or edit the path.",
            ]
        };
        let mut lines = vec![
            Line::styled(what, t.title),
            Line::from(vec![
                Span::raw("  > "),
                Span::styled(
                    format!("{}{}", self.target, if self.confirming { "" } else { "█" }),
                    t.accent,
                ),
            ]),
            Line::raw(""),
        ];
        if let Some(why) = &self.blocked {
            lines.push(Line::styled(fmt::safe(why), t.bad));
        } else if self.needs_confirm {
            lines.push(Line::styled(exists, t.bad));
            if self.confirming {
                lines.push(Line::styled(again, t.title));
                lines.push(Line::from(vec![
                    Span::raw("  > "),
                    Span::styled(format!("{}█", self.confirm), t.bad),
                ]));
            } else {
                lines.push(Line::styled(edit, t.dim));
            }
        } else {
            lines.push(Line::styled(new_one, t.ok));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }

    fn draw_run(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let task = self.run_task.and_then(|id| data.tasks.get(&id));
        let [info, gauge, rest] = Layout::vertical([
            Constraint::Length(4),
            Constraint::Length(1),
            Constraint::Min(0),
        ])
        .areas(area);
        let phase = task.and_then(|t| t.phase).map_or("starting", |p| p.label());
        let elapsed = task.map(|tk| data.now - tk.started).unwrap_or_default();
        frame.render_widget(
            Paragraph::new(vec![
                Line::styled(
                    match &self.pitr {
                        Some(p) => format!(
                            "restoring {} to {} from base backup {} into a new scratch cluster",
                            fmt::safe(&p.source),
                            ctx.show_time(p.at),
                            fmt::safe(&p.base)
                        ),
                        None => format!(
                            "restoring {} into {}",
                            fmt::safe(self.chosen.as_ref().map_or("", |c| c.id.as_str())),
                            fmt::safe(&self.target)
                        ),
                    },
                    t.title,
                ),
                Line::raw(format!(
                    "phase: {phase}   elapsed {}",
                    fmt::millis(Some(elapsed.num_milliseconds()))
                )),
            ])
            .wrap(Wrap { trim: false }),
            info,
        );
        let (ratio, label) = match task {
            Some(tk) => {
                let (ratio, left) = tk.progress(data.now);
                let eta = left
                    .map(|d| format!(" eta {}", fmt::millis(Some(d.num_milliseconds()))))
                    .unwrap_or_default();
                let of = tk
                    .total
                    .map(|n| format!(" of {}", fmt::size(n)))
                    .unwrap_or_default();
                (ratio, format!("{}{of}{eta}", fmt::size(tk.done)))
            }
            None => (0.0, "waiting".into()),
        };
        frame.render_widget(
            Gauge::default()
                .ratio(ratio)
                .label(label)
                .gauge_style(t.accent),
            gauge,
        );
        frame.render_widget(
            Paragraph::new(Line::styled(
                if self.pitr.is_some() {
                    "c cancels and removes the scratch cluster"
                } else {
                    "c cancels and removes the partial database"
                },
                t.dim,
            )),
            rest,
        );
    }

    fn draw_result(&self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let report = match &self.report {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let lines = vec![
                    Line::styled("RESTORE FAILED", t.bad),
                    Line::raw(fmt::safe(e)),
                    Line::raw(""),
                    Line::styled("Enter to start over", t.dim),
                ];
                frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
                return;
            }
            None => return,
        };
        let findings = report.diff.findings().count();
        let verdict = if !report.diff.has_expected {
            Line::styled(
                format!(
                    "RESTORED: {} rows measured (a foreign dump has no expected counts)",
                    fmt::count(Some(report.diff.total_restored()))
                ),
                t.warn,
            )
        } else if findings == 0 {
            Line::styled(
                format!(
                    "OK: all {} tables match the manifest ({} rows)",
                    report.diff.rows.len(),
                    fmt::count(Some(report.diff.total_restored()))
                ),
                t.ok,
            )
        } else {
            Line::styled(
                format!(
                    "MISMATCH: {findings} of {} tables differ from the manifest",
                    report.diff.rows.len()
                ),
                t.bad,
            )
        };
        let mut head = vec![
            verdict,
            Line::raw(format!(
                "in {}  ·  {}",
                fmt::millis(Some(
                    (report.finished_at - report.started_at).num_milliseconds()
                )),
                fmt::safe(&report.target)
            )),
        ];
        if report.diff.has_expected {
            head.push(Line::styled(
                match report.content_compared {
                    Some(n) => format!("content checksums of {n} tables compared"),
                    None => "no content checksums in the backup: row counts only".into(),
                },
                t.dim,
            ));
        }
        if !report.skipped.is_empty() {
            head.push(Line::styled(
                format!(
                    "skipped: {} (a least-privilege copy, for proof)",
                    fmt::safe(report.skipped.join(", "))
                ),
                t.warn,
            ));
        }
        if let Some(saved) = &self.saved {
            // One line per fact, so none is cut at 80 columns.
            for part in saved.split("; ") {
                head.push(Line::styled(fmt::safe(part), t.accent));
            }
        }
        if let Some((source, _)) = self.promotable() {
            head.push(Line::styled(
                format!(
                    "{} promotes this proven copy in place of {} (type its name to confirm)",
                    ctx.keymap.key(Action::Promote),
                    fmt::safe(&source)
                ),
                t.accent,
            ));
        }
        let head_len = head.len() as u16;
        let [top, table, keys] = Layout::vertical([
            Constraint::Length(head_len),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(head), top);
        let n = |v: Option<u64>| fmt::count(v);
        // Findings first: they are what a person is looking for.
        let mut ordered: Vec<_> = report.diff.rows.iter().collect();
        ordered.sort_by_key(|r| matches!(r.status, RowStatus::Match | RowStatus::Measured));
        let window = self
            .result_cursor
            .window(ordered.len(), table.height.saturating_sub(1) as usize);
        let rows: Vec<Row> = ordered[window]
            .iter()
            .map(|r| {
                let bad = !matches!(r.status, RowStatus::Match | RowStatus::Measured);
                let style = if bad { t.bad } else { Style::new() };
                let live = match r.live_delta() {
                    Some(d) if d != 0 => format!("{} ({d:+})", n(r.live)),
                    _ => n(r.live),
                };
                Row::new(vec![
                    fmt::safe(&r.table),
                    n(r.expected),
                    n(r.restored),
                    live,
                    r.delta().map_or("-".into(), |d| {
                        if d == 0 { "0".into() } else { format!("{d:+}") }
                    }),
                    r.status.label().to_owned(),
                ])
                .style(style)
            })
            .collect();
        // Schema-qualified PostgreSQL names are long; give them room while the numbers fit.
        let name_width = report
            .diff
            .rows
            .iter()
            .map(|r| r.table.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(20, 40) as u16;
        let widths = [
            Constraint::Length(name_width),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Min(8),
        ];
        let header = Row::new([
            "TABLE", "EXPECTED", "RESTORED", "LIVE NOW", "DELTA", "STATUS",
        ])
        .style(t.title);
        frame.render_widget(Table::new(rows, widths).header(header), table);
        frame.render_widget(
            Paragraph::new(Line::styled(
                if self.drill {
                    "Enter to finish".to_owned()
                } else {
                    format!(
                        "Enter keeps {} · {} drops it",
                        fmt::safe(&report.target),
                        ctx.keymap.key(Action::Drop)
                    )
                },
                t.dim,
            )),
            keys,
        );
    }

    fn draw_promote(&self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let t = &ctx.theme;
        let Some((source, copy)) = self.promotable() else {
            return;
        };
        let mut lines = vec![
            Line::styled(
                format!(
                    "Promote {} in place of source {}",
                    fmt::safe(&copy),
                    fmt::safe(&source)
                ),
                t.title,
            ),
            Line::raw(""),
            Line::raw(
                "The copy proved by this restore replaces the source's database; the old one is kept beside it as <name>_before_<time>.",
            ),
            Line::raw(
                "PostgreSQL: the source's sessions are ended, its owner, settings and database grants carry over.",
            ),
            Line::raw(
                "SQLite: the application must be stopped first; the copy gets the old file's owner and mode.",
            ),
            Line::raw(""),
        ];
        match (&self.promoted, self.promote_task) {
            (Some(Ok(p)), _) => {
                lines.push(Line::styled(
                    format!(
                        "PROMOTED: {} is in place of {}",
                        fmt::safe(&p.plan.copy),
                        fmt::safe(&p.plan.replaces)
                    ),
                    t.ok,
                ));
                if let Some(old) = &p.plan.kept_as {
                    lines.push(Line::raw(format!(
                        "the old one is kept as {}: drop it once it is no longer needed",
                        fmt::safe(old)
                    )));
                }
                lines.push(Line::styled("Enter to finish", t.dim));
            }
            (Some(Err(e)), _) => {
                lines.push(Line::styled("NOT PROMOTED", t.bad));
                lines.push(Line::raw(fmt::safe(e)));
                lines.push(Line::styled("Enter to go back to the result", t.dim));
            }
            (None, Some(_)) => {
                lines.push(Line::styled(
                    "promoting… checking the copy again, then putting it in place",
                    t.warn,
                ));
            }
            (None, None) => {
                lines.push(Line::styled(
                    format!(
                        "Type the source's name ({}) to confirm:",
                        fmt::safe(&source)
                    ),
                    t.bad,
                ));
                lines.push(Line::from(vec![
                    Span::raw("  > "),
                    Span::styled(format!("{}█", self.promote_confirm), t.bad),
                ]));
                lines.push(Line::styled("Enter promotes · Esc goes back", t.dim));
            }
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
    }
}

fn safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `path`, or the first `-2`, `-3`… beside it that does not exist: a repeat restore of the
/// same backup proposes a new file, not the last one's.
fn fresh_path(path: &Path) -> String {
    if !path.exists() {
        return path.display().to_string();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..1000)
        .map(|n| path.with_file_name(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The configured PostgreSQL source a catalog line belongs to, if it is one.
fn postgres_source<'a>(
    ctx: &'a Ctx,
    row: &CatalogRow,
) -> Option<&'a lifeboat::config::SourceConfig> {
    row.source
        .as_deref()
        .and_then(|s| ctx.config.source(s))
        .filter(|s| s.engine == lifeboat::manifest::EngineKind::Postgres)
}

/// A time to the second in the console's zone: a point-in-time target is that precise.
fn show_seconds(ctx: &Ctx, t: DateTime<Utc>) -> String {
    let minutes = ctx.show_time(t);
    // `2026-11-25 12:00 +01:00` with the seconds put in before the zone.
    // Zone offsets are whole minutes: the seconds are the same in every zone.
    match minutes.rsplit_once(' ') {
        Some((day_time, zone)) => {
            format!("{day_time}:{:02} {zone}", chrono::Timelike::second(&t))
        }
        None => minutes,
    }
}

/// The clock time alone, for the ends of the time line.
fn clock(ctx: &Ctx, t: DateTime<Utc>) -> String {
    let shown = show_seconds(ctx, t);
    shown.split(' ').nth(1).unwrap_or_default().to_owned()
}

/// `2026-11-23 02:00:13 → 11:44:51 +00:00`, the day twice only when it changes.
fn span(ctx: &Ctx, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (a, b) = (show_seconds(ctx, from), show_seconds(ctx, to));
    match (a.split_once(' '), b.split_once(' ')) {
        (Some((day_a, _)), Some((day_b, rest_b))) if day_a == day_b => {
            let time_a = a.split(' ').nth(1).unwrap_or_default();
            format!("{day_a} {time_a} → {rest_b}")
        }
        _ => format!("{a} → {b}"),
    }
}

/// Rows `lines` take wrapped at `width`, with one to spare per wrapped line: words move
/// whole to the next row, so a row may hold less than `width`.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| match l.width() {
            w if w <= width => 1,
            w => w.div_ceil(width) + 1,
        })
        .sum::<usize>()
        .try_into()
        .unwrap_or(u16::MAX)
}
