//! The console's state and its update functions. Shared data (catalog lines, jobs, running
//! tasks) lives in [`Data`]; each tab owns its own view state and keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{Result, eyre};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use lifeboat::Lifeboat;
use lifeboat::catalog::{Catalog, CatalogRow};
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::health::{self, Level, SourceHealth};
use lifeboat::jobs::{JobKind, JobRecord, JobStatus};
use lifeboat::progress::Phase;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Tabs, Wrap};

use super::fmt;
use super::keys::{Action, Keymap};
use super::msg::{Msg, Outcome, Request, TaskId};
use super::tabs::{CatalogTab, JobsTab, RestoreWizard, RetentionTab};
use super::theme::Theme;

/// What every part of the console reads: configuration, where the bucket is, keys, colours,
/// the clock.
pub struct Ctx {
    pub config: Arc<Config>,
    pub location: String,
    pub clock: Clock,
    pub keymap: Keymap,
    pub theme: Theme,
}

impl Ctx {
    /// Keymap and theme overrides come from `keymap.toml` and `theme.toml` beside the config.
    pub fn load(lb: &Lifeboat) -> Result<Ctx> {
        let dir = lb
            .config()
            .path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let keymap = Keymap::load(read("keymap.toml").as_deref())
            .map_err(|e| eyre!("{}: {e}", dir.display()))?;
        let theme = Theme::load(read("theme.toml").as_deref())
            .map_err(|e| eyre!("{}: {e}", dir.display()))?;
        Ok(Ctx {
            config: Arc::new(lb.config().clone()),
            location: lb.store().location(),
            clock: lb.clock().clone(),
            keymap,
            theme,
        })
    }
}

/// A job started from this console, as its gauge shows it.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub label: String,
    pub phase: Option<Phase>,
    pub total: Option<u64>,
    pub done: u64,
    pub started: DateTime<Utc>,
}

impl TaskView {
    /// The share done (0 when unknown) and the time left, judged from the pace so far.
    pub fn progress(&self, now: DateTime<Utc>) -> (f64, Option<chrono::Duration>) {
        match self.total {
            Some(total) if total > 0 && self.done > 0 => {
                let ratio = (self.done as f64 / total as f64).min(1.0);
                let elapsed = (now - self.started).num_milliseconds().max(0) as f64;
                (
                    ratio,
                    Some(chrono::Duration::milliseconds(
                        (elapsed * (1.0 - ratio) / ratio) as i64,
                    )),
                )
            }
            _ => (0.0, None),
        }
    }
}

/// Data shared by the tabs.
#[derive(Default)]
pub struct Data {
    pub rows: Vec<CatalogRow>,
    /// Bumped whenever `rows` changes, so tabs know to rebuild their views.
    pub rows_version: u64,
    pub catalog: Option<Arc<Catalog>>,
    pub jobs: Arc<Vec<JobRecord>>,
    /// Newest verify/restore evidence per backup id: (ok, when).
    pub verified: HashMap<String, (bool, DateTime<Utc>)>,
    pub refreshing: bool,
    pub tasks: BTreeMap<TaskId, TaskView>,
    pub health: Vec<SourceHealth>,
    /// One line per store, once a catalog read has reached every store.
    pub stores: Vec<lifeboat::stores::StoreHealth>,
    pub now: DateTime<Utc>,
}

impl Data {
    pub fn row(&self, id: &str) -> Option<&CatalogRow> {
        self.rows.iter().find(|r| r.id == id)
    }
}

/// Requests the tabs make, collected for the event loop.
#[derive(Default)]
pub struct Outbox {
    pub requests: Vec<Request>,
    pub new_tasks: Vec<(TaskId, TaskView)>,
    next_task: TaskId,
}

impl Outbox {
    pub fn task(&mut self, label: String, now: DateTime<Utc>) -> TaskId {
        self.next_task += 1;
        let id = self.next_task;
        self.new_tasks.push((
            id,
            TaskView {
                label,
                phase: None,
                total: None,
                done: 0,
                started: now,
            },
        ));
        id
    }

    pub fn backup(&mut self, source: &str, now: DateTime<Utc>) {
        let task = self.task(format!("backup {source}"), now);
        self.requests.push(Request::Backup {
            task,
            source: source.to_owned(),
        });
    }

    pub fn verify(&mut self, id: &str, now: DateTime<Utc>) -> TaskId {
        let task = self.task(format!("verify {id}"), now);
        self.requests.push(Request::Verify {
            task,
            id: id.to_owned(),
            every_copy: true,
        });
        task
    }

    /// The wizard's check: one good copy, the one a restore would read, is enough.
    pub fn preflight(&mut self, id: &str, now: DateTime<Utc>) -> TaskId {
        let task = self.task(format!("verify {id}"), now);
        self.requests.push(Request::Verify {
            task,
            id: id.to_owned(),
            every_copy: false,
        });
        task
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TabId {
    Catalog,
    Jobs,
    Retention,
    Restore,
}

const TABS: [(TabId, &str); 4] = [
    (TabId::Catalog, "1 Catalog"),
    (TabId::Jobs, "2 Jobs"),
    (TabId::Retention, "3 Retention"),
    (TabId::Restore, "4 Restore"),
];

/// What a tab asks of the app after a key.
pub enum Effect {
    /// Open the restore wizard on a catalog line (or fresh), as a drill or not.
    Wizard {
        id: Option<String>,
        drill: bool,
    },
    PickSource,
    Error(String),
    Status(String),
}

enum Popup {
    Error(String),
    Help,
    PickSource { selected: usize },
}

pub struct App {
    pub ctx: Ctx,
    pub data: Data,
    tab: TabId,
    catalog: CatalogTab,
    jobs: JobsTab,
    retention: RetentionTab,
    restore: RestoreWizard,
    popup: Option<Popup>,
    status: Option<String>,
    outbox: Outbox,
    catalog_gen: u64,
    dirty: bool,
    quit: bool,
    /// Where the tab bar was drawn, for mouse clicks.
    tab_bar: std::cell::Cell<Rect>,
}

impl App {
    pub fn new(ctx: Ctx) -> Self {
        let now = ctx.clock.now();
        App {
            data: Data {
                now,
                ..Data::default()
            },
            ctx,
            tab: TabId::Catalog,
            catalog: CatalogTab::default(),
            jobs: JobsTab::default(),
            retention: RetentionTab::default(),
            restore: RestoreWizard::default(),
            popup: None,
            status: None,
            outbox: Outbox::default(),
            catalog_gen: 0,
            dirty: true,
            quit: false,
            tab_bar: std::cell::Cell::new(Rect::default()),
        }
    }

    /// Asks for the bucket's catalog and the job history.
    pub fn start(&mut self) {
        self.refresh();
        self.outbox.requests.push(Request::LoadJobs);
    }

    fn refresh(&mut self) {
        self.catalog_gen += 1;
        self.data.refreshing = true;
        self.outbox.requests.push(Request::RefreshCatalog {
            generation: self.catalog_gen,
        });
        self.dirty = true;
    }

    pub fn set_cached_rows(&mut self, rows: Vec<CatalogRow>) {
        self.data.rows = rows;
        self.rows_changed();
    }

    fn rows_changed(&mut self) {
        self.data.rows_version += 1;
        self.data.health = health::assess(
            &self.ctx.config,
            &self.data.rows,
            &self.data.jobs,
            self.data.now,
        );
        self.catalog.rebuild(&self.data);
        self.dirty = true;
    }

    pub fn show_error(&mut self, message: String) {
        // Errors quote keys and manifest fields.
        self.popup = Some(Popup::Error(fmt::safe(message)));
        self.dirty = true;
    }

    pub fn take_requests(&mut self) -> Vec<Request> {
        for (id, view) in self.outbox.new_tasks.drain(..) {
            self.data.tasks.insert(id, view);
        }
        std::mem::take(&mut self.outbox.requests)
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn on_tick(&mut self) {
        self.data.now = self.ctx.clock.now();
        if !self.data.tasks.is_empty() || self.data.refreshing {
            self.dirty = true;
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        self.dirty = true;
        let action = self.ctx.keymap.action(&key);
        if let Some(popup) = &mut self.popup {
            match popup {
                Popup::PickSource { selected } => {
                    let n = self.ctx.config.sources.len();
                    match action {
                        Some(Action::Up) => *selected = selected.saturating_sub(1),
                        Some(Action::Down) => *selected = (*selected + 1).min(n.saturating_sub(1)),
                        Some(Action::Enter) => {
                            if let Some(s) = self.ctx.config.sources.get(*selected) {
                                self.outbox.backup(&s.name, self.data.now);
                                self.status = Some(format!("backing up {}", s.name));
                            }
                            self.popup = None;
                        }
                        Some(Action::Back | Action::Quit) => self.popup = None,
                        _ => {}
                    }
                }
                _ => {
                    if matches!(
                        action,
                        Some(Action::Back | Action::Enter | Action::Quit | Action::Help)
                    ) {
                        self.popup = None;
                    }
                }
            }
            return;
        }
        // A tab that is taking text gets every key but Ctrl-C.
        let typing = match self.tab {
            TabId::Catalog => self.catalog.typing(),
            TabId::Restore => self.restore.typing(),
            _ => false,
        };
        let ctrl_c = key.code == KeyCode::Char('c')
            && key
                .modifiers
                .contains(crossterm::event::KeyModifiers::CONTROL);
        if !typing || ctrl_c {
            match action {
                Some(Action::Quit) => {
                    self.quit = true;
                    return;
                }
                Some(Action::Help) => {
                    self.popup = Some(Popup::Help);
                    return;
                }
                Some(Action::NextTab) => return self.switch(self.tab_index().map(|i| (i + 1) % 4)),
                Some(Action::PrevTab) => return self.switch(self.tab_index().map(|i| (i + 3) % 4)),
                Some(Action::Tab1) => return self.switch(Some(0)),
                Some(Action::Tab2) => return self.switch(Some(1)),
                Some(Action::Tab3) => return self.switch(Some(2)),
                Some(Action::Tab4) => return self.switch(Some(3)),
                Some(Action::Refresh) => {
                    self.refresh();
                    self.outbox.requests.push(Request::LoadJobs);
                    return;
                }
                _ => {}
            }
        }
        let effects = match self.tab {
            TabId::Catalog => self
                .catalog
                .on_key(action, key, &self.data, &mut self.outbox),
            TabId::Jobs => self.jobs.on_key(action, &self.data, &mut self.outbox),
            TabId::Retention => self.retention.on_key(action, &self.data, &mut self.outbox),
            TabId::Restore => {
                self.restore
                    .on_key(action, key, &self.data, &self.ctx, &mut self.outbox)
            }
        };
        self.apply(effects);
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Wizard { id, drill } => {
                    self.restore
                        .open(id, drill, &self.data, &self.ctx, &mut self.outbox);
                    self.tab = TabId::Restore;
                }
                Effect::PickSource => {
                    if self.ctx.config.sources.is_empty() {
                        self.show_error("no sources are configured".into());
                    } else {
                        self.popup = Some(Popup::PickSource { selected: 0 });
                    }
                }
                Effect::Error(e) => self.show_error(e),
                Effect::Status(s) => self.status = Some(s),
            }
        }
    }

    fn tab_index(&self) -> Option<usize> {
        TABS.iter().position(|(t, _)| *t == self.tab)
    }

    fn switch(&mut self, index: Option<usize>) {
        if let Some((tab, _)) = index.and_then(|i| TABS.get(i)) {
            self.tab = *tab;
        }
    }

    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                let bar = self.tab_bar.get();
                if mouse.row == bar.y && mouse.column >= bar.x {
                    // Titles are drawn as " 1 Catalog " separated by "│".
                    let mut x = bar.x;
                    for (i, (_, title)) in TABS.iter().enumerate() {
                        let w = title.len() as u16 + 3;
                        if mouse.column < x + w {
                            self.switch(Some(i));
                            break;
                        }
                        x += w;
                    }
                    self.dirty = true;
                }
            }
            MouseEventKind::ScrollDown => self.on_key(KeyEvent::from(KeyCode::Down)),
            MouseEventKind::ScrollUp => self.on_key(KeyEvent::from(KeyCode::Up)),
            _ => {}
        }
    }

    pub fn on_msg(&mut self, msg: Msg) {
        self.dirty = true;
        match msg {
            // The bucket's answer, if it came first, is newer than the cache.
            Msg::CachedRows(Ok(rows)) if self.data.catalog.is_none() => self.set_cached_rows(rows),
            Msg::CachedRows(Ok(_)) => {}
            Msg::CachedRows(Err(e)) => self.show_error(format!("catalog cache: {e}")),
            Msg::CatalogPage { generation, rows } if generation == self.catalog_gen => {
                // Stream pages over the cached list: replace lines we know, add new ones.
                let index: HashMap<String, usize> = self
                    .data
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id.clone(), i))
                    .collect();
                for row in rows {
                    match index.get(&row.id) {
                        Some(&i) => self.data.rows[i] = row,
                        None => self.data.rows.push(row),
                    }
                }
                self.rows_changed();
            }
            Msg::CatalogDone { generation, result } if generation == self.catalog_gen => {
                self.data.refreshing = false;
                match result {
                    Ok(catalog) => {
                        self.data.rows = catalog.rows();
                        self.data.stores =
                            lifeboat::stores::health(&self.ctx.config, &catalog, self.data.now);
                        self.data.catalog = Some(catalog);
                        self.rows_changed();
                    }
                    Err(e) => self.show_error(format!("cannot read the catalog: {e}")),
                }
            }
            // A stale refresh: a newer one is under way.
            Msg::CatalogPage { .. } | Msg::CatalogDone { .. } => {}
            Msg::Jobs(Ok(jobs)) => {
                self.data.verified = verified_map(&jobs);
                self.data.jobs = jobs;
                self.rows_changed();
            }
            Msg::Jobs(Err(e)) => self.show_error(format!("job history: {e}")),
            Msg::PlanInputs(Ok(inputs)) => self.retention.set_inputs(inputs),
            Msg::PlanInputs(Err(e)) => self.show_error(format!("retention plan: {e}")),
            Msg::Progress {
                task,
                phase,
                total,
                done,
            } => {
                if let Some(t) = self.data.tasks.get_mut(&task) {
                    t.phase = Some(phase);
                    t.total = total;
                    t.done = done;
                }
            }
            Msg::Finished {
                task,
                kind,
                record,
                outcome,
            } => {
                self.data.tasks.remove(&task);
                let handled = self.restore.on_finished(task, &record, &outcome);
                if !handled {
                    match (&outcome, kind) {
                        (Outcome::Backup(Ok(m)), _) => {
                            self.status = Some(format!("backup {} of {} done", m.id, m.source.name))
                        }
                        (Outcome::Verify(Ok(())), _) => {
                            self.status = Some(format!(
                                "verified {}",
                                record.backup_id.as_deref().unwrap_or("?")
                            ))
                        }
                        _ if record.status == JobStatus::Cancelled => {
                            self.status = Some(format!("{kind} cancelled"))
                        }
                        (Outcome::Prune(Ok((n, bytes))), _) => {
                            self.status = Some(format!(
                                "pruned {n} backup{}, freed {}",
                                if *n == 1 { "" } else { "s" },
                                fmt::size(*bytes)
                            ))
                        }
                        (
                            Outcome::Backup(Err(e))
                            | Outcome::Verify(Err(e))
                            | Outcome::Prune(Err(e)),
                            _,
                        ) => self.show_error(format!("{kind} failed: {e}")),
                        _ => {}
                    }
                }
                self.outbox.requests.push(Request::LoadJobs);
                if matches!(kind, JobKind::Backup | JobKind::Prune) {
                    self.refresh();
                }
            }
            Msg::Notice(Ok(text)) => self.status = Some(text),
            Msg::Notice(Err(e)) => self.show_error(e),
        }
    }

    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        let header_height =
            1 + self.data.health.len().min(4) as u16 + self.store_lines().len() as u16;
        let [header, tabs, body, footer] = Layout::vertical([
            Constraint::Length(header_height),
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(1),
        ])
        .areas(area);
        self.draw_header(frame, header);
        self.draw_tabs(frame, tabs);
        match self.tab {
            TabId::Catalog => self.catalog.draw(frame, body, &self.data, &self.ctx),
            TabId::Jobs => self.jobs.draw(frame, body, &self.data, &self.ctx),
            TabId::Retention => self.retention.draw(frame, body, &self.data, &self.ctx),
            TabId::Restore => self.restore.draw(frame, body, &self.data, &self.ctx),
        }
        self.draw_footer(frame, footer);
        match &self.popup {
            None => {}
            Some(Popup::Error(e)) => self.draw_popup(
                frame,
                " error ",
                vec![
                    Line::raw(e.clone()),
                    Line::raw(""),
                    Line::styled("esc to close", self.ctx.theme.dim),
                ],
                self.ctx.theme.bad,
            ),
            Some(Popup::Help) => self.draw_help(frame),
            Some(Popup::PickSource { selected }) => {
                let lines = self
                    .ctx
                    .config
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let style = if i == *selected {
                            self.ctx.theme.selected
                        } else {
                            Style::new()
                        };
                        Line::styled(format!(" {} ({}) ", s.name, s.engine), style)
                    })
                    .collect();
                self.draw_popup(
                    frame,
                    " back up which source? ",
                    lines,
                    self.ctx.theme.accent,
                );
            }
        }
    }

    fn draw_header(&self, frame: &mut Frame, area: Rect) {
        let t = &self.ctx.theme;
        let mut lines = vec![Line::from(vec![
            Span::styled("lifeboat ", t.title),
            Span::styled(self.ctx.location.clone(), t.dim),
            if self.data.refreshing {
                Span::styled("  refreshing…", t.warn)
            } else {
                Span::raw("")
            },
        ])];
        for h in self.data.health.iter().take(4) {
            let (mark, style) = match h.level {
                Level::Ok => ("● ok  ", t.ok),
                Level::Warning => ("▲ warn", t.warn),
                Level::Critical => ("✖ crit", t.bad),
            };
            let newest = match h.age {
                Some(age) => format!(
                    "newest {} (RPO {})",
                    lifeboat::when::short_age(age),
                    lifeboat::when::short_age(h.rpo)
                ),
                None => "no good backup".to_owned(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{mark} "), style),
                Span::styled(format!("{:<8} ", h.source), t.title),
                Span::styled(newest, style),
                Span::raw(format!(
                    "  tested {}{}",
                    fmt::ago(h.last_restore_test, self.data.now),
                    h.drill_note(self.data.now)
                )),
                Span::styled(
                    format!(
                        "  {}, {} backup{}",
                        fmt::size(h.stored_bytes),
                        h.backups,
                        if h.backups == 1 { "" } else { "s" }
                    ),
                    t.dim,
                ),
                Span::styled(
                    if h.last_job_failed {
                        "  last backup FAILED"
                    } else {
                        ""
                    },
                    t.bad,
                ),
            ]));
        }
        lines.extend(self.store_lines());
        frame.render_widget(Paragraph::new(lines), area);
    }

    /// With more than one store, a line for each (at most three): reachable or not, copies
    /// held, and how many backups it still owes.
    fn store_lines(&self) -> Vec<Line<'static>> {
        let t = &self.ctx.theme;
        let configured = &self.ctx.config.stores;
        if configured.len() < 2 {
            return Vec::new();
        }
        configured
            .iter()
            .take(3)
            .map(|sc| {
                let h = self.data.stores.iter().find(|h| h.store == sc.name);
                let (mark, style) = match h.map(|h| h.level) {
                    None => ("○     ", t.dim),
                    Some(Level::Ok) => ("● ok  ", t.ok),
                    Some(Level::Warning) => ("▲ warn", t.warn),
                    Some(Level::Critical) => ("✖ crit", t.bad),
                };
                let text = match h {
                    None => "reading…".to_owned(),
                    Some(h) => h.summary(),
                };
                Line::from(vec![
                    Span::styled(format!("{mark} "), style),
                    Span::styled(format!("store {:<9} ", sc.name), t.title),
                    Span::styled(text, style),
                ])
            })
            .collect()
    }

    fn draw_tabs(&self, frame: &mut Frame, area: Rect) {
        self.tab_bar.set(area);
        let titles: Vec<String> = TABS
            .iter()
            .map(|(id, title)| {
                let busy = match id {
                    TabId::Jobs if !self.data.tasks.is_empty() => {
                        format!(" ({} running)", self.data.tasks.len())
                    }
                    _ => String::new(),
                };
                format!("{title}{busy}")
            })
            .collect();
        let tabs = Tabs::new(titles)
            .select(self.tab_index())
            .highlight_style(self.ctx.theme.selected)
            .divider("│");
        frame.render_widget(tabs, area);
    }

    fn draw_footer(&self, frame: &mut Frame, area: Rect) {
        let t = &self.ctx.theme;
        let actions: &[Action] = match self.tab {
            TabId::Catalog => self.catalog.hints(),
            TabId::Jobs => JobsTab::hints(),
            TabId::Retention => self.retention.hints(),
            TabId::Restore => self.restore.hints(),
        };
        let mut spans = Vec::new();
        if let Some(s) = &self.status {
            spans.push(Span::styled(format!("{}  ", fmt::safe(s)), t.accent));
        }
        // Help and quit first: on a narrow terminal the tail is what gets cut.
        for (key, label) in self
            .ctx
            .keymap
            .hints(&[Action::Help, Action::Quit])
            .into_iter()
            .chain(self.ctx.keymap.hints(actions))
        {
            spans.push(Span::styled(key, t.title));
            spans.push(Span::styled(format!(" {label}  "), t.dim));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn draw_popup(&self, frame: &mut Frame, title: &str, lines: Vec<Line<'static>>, style: Style) {
        let area = frame.area();
        // Saturating: an error may quote a manifest field of any length.
        let cols = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let width = cols(lines.iter().map(Line::width).max().unwrap_or(20))
            .saturating_add(4)
            .clamp(30, area.width.saturating_sub(4).max(10));
        let wrapped = lines
            .iter()
            .fold(0u16, |n, l| n.saturating_add(cols(l.width()) / width));
        let height = cols(lines.len())
            .saturating_add(2)
            .saturating_add(wrapped)
            .min(area.height.saturating_sub(2));
        let popup = centered(area, width, height);
        frame.render_widget(Clear, popup);
        let block = Block::default()
            .borders(Borders::ALL)
            .title(title.to_owned())
            .border_style(style);
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(block),
            popup,
        );
    }

    fn draw_help(&self, frame: &mut Frame) {
        let rows: Vec<Row> = self
            .ctx
            .keymap
            .help()
            .into_iter()
            .map(|(keys, label)| Row::new(vec![keys, label.to_owned()]))
            .collect();
        let height = (rows.len() as u16 + 2).min(frame.area().height.saturating_sub(2));
        let popup = centered(frame.area(), 46, height);
        frame.render_widget(Clear, popup);
        let table = Table::new(rows, [Constraint::Length(18), Constraint::Min(10)]).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (esc to close) "),
        );
        frame.render_widget(table, popup);
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn verified_map(jobs: &[JobRecord]) -> HashMap<String, (bool, DateTime<Utc>)> {
    let mut map: HashMap<String, (bool, DateTime<Utc>)> = HashMap::new();
    for j in jobs {
        let relevant = matches!(j.kind, JobKind::Verify | JobKind::Restore | JobKind::Drill)
            && matches!(j.status, JobStatus::Succeeded | JobStatus::Failed);
        if let (true, Some(id), Some(at)) = (relevant, &j.backup_id, j.finished_at) {
            let entry = map
                .entry(id.clone())
                .or_insert((j.status == JobStatus::Succeeded, at));
            if at > entry.1 {
                *entry = (j.status == JobStatus::Succeeded, at);
            }
        }
    }
    map
}
