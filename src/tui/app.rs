//! The console's state and its update functions. Shared data (catalog lines, jobs, running
//! tasks) lives in [`Data`]; each tab owns its own view state and keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Tabs, Wrap};
use std::cell::Cell;

use super::command::{self, Command};
use super::fmt;
use super::keys::{Action, Keymap};
use super::msg::{Msg, Outcome, Request, TaskId};
use super::tabs;
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
    /// The zone typed times are read in and times are shown in: the machine's own (`None`),
    /// or a fixed offset (tests).
    pub zone: Option<chrono::FixedOffset>,
}

impl Ctx {
    /// A time as typed (`09:40`, `yesterday 09:40`, `-2h`, `2026-11-25 12:00`, RFC 3339),
    /// read in the console's zone.
    pub fn parse_time(&self, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        match self.zone {
            Some(z) => lifeboat::when::parse_point_in(text, now, &z),
            None => lifeboat::when::parse_point_in(text, now, &chrono::Local),
        }
        .map_err(|e| e.to_string())
    }

    /// A typed time moved by whole days in the console's zone (the wizard's day picker).
    pub fn shift_day(&self, text: &str, days: i64, now: DateTime<Utc>) -> String {
        match self.zone {
            Some(z) => lifeboat::when::shift_day(text, days, now, &z),
            None => lifeboat::when::shift_day(text, days, now, &chrono::Local),
        }
    }

    /// A time in the console's zone, with the zone: `2026-11-25 12:00 +01:00`.
    pub fn show_time(&self, t: DateTime<Utc>) -> String {
        const FORMAT: &str = "%Y-%m-%d %H:%M %:z";
        match self.zone {
            Some(z) => t.with_timezone(&z).format(FORMAT).to_string(),
            None => t.with_timezone(&chrono::Local).format(FORMAT).to_string(),
        }
    }
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
            zone: None,
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
    /// Sources whose part of the bucket has been read by this console (a listing reached
    /// past them); until then their lines may be missing and their health is a guess.
    pub known: BTreeSet<String>,
    /// A whole listing finished since the console opened: every source is known.
    pub listing_done: bool,
    /// Lines received by the listing under way.
    pub listed: usize,
    pub tasks: BTreeMap<TaskId, TaskView>,
    pub health: Vec<SourceHealth>,
    /// One line per store, once a catalog read has reached every store.
    pub stores: Vec<lifeboat::stores::StoreHealth>,
    /// Per point-in-time source: its base backups and windows, or why they could not be
    /// read; absent until the worker answers.
    pub pitr: HashMap<String, Result<Arc<lifeboat::pitr::PitrStatus>, String>>,
    pub now: DateTime<Utc>,
}

impl Data {
    pub fn row(&self, id: &str) -> Option<&CatalogRow> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// Whether `source`'s backups have all been read from the bucket by this console.
    pub fn source_known(&self, source: &str) -> bool {
        self.listing_done || self.known.contains(source)
    }

    /// The listing's progress, for people: `reading the bucket… 12,000 lines`.
    pub fn listing_progress(&self) -> String {
        format!(
            "reading the bucket… {} lines",
            fmt::count(Some(self.listed as u64))
        )
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
    /// The keys of the tab it was opened on, then everyone's; scrolled to `scroll`.
    Help {
        tab: TabId,
        scroll: Cell<usize>,
    },
    PickSource {
        selected: usize,
    },
    /// Quit with jobs running: they are cancelled (and clean up) only if the user says so.
    Quit,
}

/// How many ticks (250 ms) a status message stays.
const STATUS_TICKS: u8 = 24;

pub struct App {
    pub ctx: Ctx,
    pub data: Data,
    tab: TabId,
    catalog: CatalogTab,
    jobs: JobsTab,
    retention: RetentionTab,
    restore: RestoreWizard,
    popup: Option<Popup>,
    /// A passing message and the ticks it has left.
    status: Option<(String, u8)>,
    /// The `:` command line being typed, and why the last one could not run.
    command: Option<String>,
    command_error: Option<String>,
    outbox: Outbox,
    catalog_gen: u64,
    /// Where each line of `data.rows` is, by id, while listing pages arrive (built on the
    /// first page; dropped when the lines are replaced).
    row_index: Option<HashMap<String, usize>>,
    /// Pages arrived since the views were last rebuilt, and the listing they came from.
    pages_unshown: usize,
    pages_gen: Option<u64>,
    dirty: bool,
    quit: bool,
    /// Quitting once the cancelled jobs have cleaned up.
    quitting: bool,
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
            command: None,
            command_error: None,
            outbox: Outbox::default(),
            catalog_gen: 0,
            row_index: None,
            pages_unshown: 0,
            pages_gen: None,
            dirty: true,
            quit: false,
            quitting: false,
            tab_bar: std::cell::Cell::new(Rect::default()),
        }
    }

    /// Asks for the bucket's catalog and the job history.
    pub fn start(&mut self) {
        self.refresh();
        self.outbox.requests.push(Request::LoadJobs);
    }

    /// Lists the bucket again. A listing under way is replaced, not doubled: the worker stops
    /// it, and its late answers carry an old generation and are dropped.
    fn refresh(&mut self) {
        self.catalog_gen += 1;
        self.data.refreshing = true;
        self.data.listed = 0;
        self.outbox.requests.push(Request::RefreshCatalog {
            generation: self.catalog_gen,
        });
        // Only point-in-time sources pay for a listing of their WAL.
        for s in self.ctx.config.sources.iter().filter(|s| s.pitr.is_some()) {
            self.outbox.requests.push(Request::LoadPitr {
                source: s.name.clone(),
            });
        }
        self.dirty = true;
    }

    pub fn set_cached_rows(&mut self, rows: Vec<CatalogRow>) {
        self.data.rows = rows;
        self.row_index = None;
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
        self.catalog.rebuild(&self.data, &self.ctx);
        self.dirty = true;
    }

    fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some((text.into(), STATUS_TICKS));
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

    /// Whether to leave: asked to, or asked to once the cancelled jobs have cleaned up.
    pub fn should_quit(&self) -> bool {
        self.quit || (self.quitting && self.data.tasks.is_empty())
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn on_tick(&mut self) {
        self.data.now = self.ctx.clock.now();
        if let Some((_, ticks)) = &mut self.status {
            *ticks = ticks.saturating_sub(1);
            if *ticks == 0 {
                self.status = None;
                self.dirty = true;
            }
        }
        if !self.data.tasks.is_empty() || self.data.refreshing {
            self.dirty = true;
        }
    }

    fn source_names(&self) -> Vec<String> {
        self.ctx
            .config
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        self.dirty = true;
        let action = self.ctx.keymap.action(&key);
        let ctrl_c = key.code == KeyCode::Char('c')
            && key
                .modifiers
                .contains(crossterm::event::KeyModifiers::CONTROL);
        if self.quitting {
            // The jobs were told to stop and are cleaning up; Ctrl-C leaves without waiting
            // (what they leave is swept by a later run).
            if ctrl_c {
                self.quit = true;
            }
            return;
        }
        if self.command.is_some() {
            return self.on_command_key(key);
        }
        if let Some(popup) = &mut self.popup {
            match popup {
                Popup::PickSource { selected } => {
                    let n = self.ctx.config.sources.len();
                    match action {
                        Some(Action::Up) => *selected = selected.saturating_sub(1),
                        Some(Action::Down) => *selected = (*selected + 1).min(n.saturating_sub(1)),
                        Some(Action::Enter) => {
                            let chosen = self
                                .ctx
                                .config
                                .sources
                                .get(*selected)
                                .map(|s| s.name.clone());
                            self.popup = None;
                            if let Some(name) = chosen {
                                self.back_up(&name);
                            }
                        }
                        Some(Action::Back | Action::Quit) => self.popup = None,
                        _ => {}
                    }
                }
                Popup::Quit => match key.code {
                    KeyCode::Char('y') => {
                        self.popup = None;
                        self.quit_cancelling();
                    }
                    _ if ctrl_c => {
                        self.popup = None;
                        self.quit_cancelling();
                    }
                    KeyCode::Char('n') | KeyCode::Esc => self.popup = None,
                    _ => {}
                },
                Popup::Help { scroll, .. } => {
                    let at = scroll.get();
                    match action {
                        Some(Action::Down) => scroll.set(at + 1),
                        Some(Action::Up) => scroll.set(at.saturating_sub(1)),
                        Some(Action::PageDown) => scroll.set(at + 10),
                        Some(Action::PageUp) => scroll.set(at.saturating_sub(10)),
                        Some(Action::Top) => scroll.set(0),
                        Some(Action::Bottom) => scroll.set(usize::MAX),
                        Some(Action::Back | Action::Enter | Action::Quit | Action::Help) => {
                            self.popup = None
                        }
                        _ => {}
                    }
                }
                Popup::Error(_) => {
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
        if !typing || ctrl_c {
            match action {
                Some(Action::Quit) => return self.ask_quit(),
                Some(Action::Help) => {
                    self.popup = Some(Popup::Help {
                        tab: self.tab,
                        scroll: Cell::new(0),
                    });
                    return;
                }
                Some(Action::Command) => {
                    self.command = Some(String::new());
                    self.command_error = None;
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
            TabId::Catalog => {
                self.catalog
                    .on_key(action, key, &self.data, &self.ctx, &mut self.outbox)
            }
            TabId::Jobs => self.jobs.on_key(action, &self.data, &mut self.outbox),
            TabId::Retention => self.retention.on_key(action, &self.data, &mut self.outbox),
            TabId::Restore => {
                self.restore
                    .on_key(action, key, &self.data, &self.ctx, &mut self.outbox)
            }
        };
        self.apply(effects);
    }

    /// `q`: at once when nothing runs; otherwise the user is asked, so a backup or restore
    /// is never interrupted without saying so.
    fn ask_quit(&mut self) {
        if self.data.tasks.is_empty() {
            self.quit = true;
        } else {
            self.popup = Some(Popup::Quit);
        }
    }

    /// Cancels every running job and quits once each has cleaned up after itself (a backup
    /// removes what it uploaded, a restore its partial database), as the CLI's cancel does.
    fn quit_cancelling(&mut self) {
        for &task in self.data.tasks.keys() {
            self.outbox.requests.push(Request::Cancel { task });
        }
        self.quitting = true;
        self.set_status(format!(
            "cancelling {} job(s); quitting once they have cleaned up (Ctrl-C: quit now)",
            self.data.tasks.len()
        ));
    }

    fn back_up(&mut self, source: &str) {
        self.outbox.backup(source, self.data.now);
        self.set_status(format!("backing up {source}"));
    }

    fn on_command_key(&mut self, key: KeyEvent) {
        let Some(line) = self.command.as_mut() else {
            return;
        };
        let sources = self.ctx.config.sources.iter().map(|s| s.name.clone());
        match key.code {
            KeyCode::Esc => self.command = None,
            KeyCode::Tab => {
                *line = command::complete(line, &sources.collect::<Vec<_>>());
                self.command_error = None;
            }
            KeyCode::Enter => match command::parse(line, &sources.collect::<Vec<_>>()) {
                Ok(c) => {
                    self.command = None;
                    self.command_error = None;
                    self.run_command(c);
                }
                // The line stays, to be fixed.
                Err(e) => self.command_error = Some(e),
            },
            _ => {
                if tabs::edit_line(line, &key) {
                    self.command_error = None;
                }
            }
        }
    }

    fn run_command(&mut self, c: Command) {
        match c {
            Command::Restore { source, before } => {
                self.tab = TabId::Restore;
                self.restore.open_source(
                    &source,
                    before.as_deref(),
                    false,
                    &self.data,
                    &self.ctx,
                    &mut self.outbox,
                );
            }
            Command::Drill { source } => {
                self.tab = TabId::Restore;
                self.restore.open_source(
                    &source,
                    None,
                    true,
                    &self.data,
                    &self.ctx,
                    &mut self.outbox,
                );
            }
            Command::Backup { source } => self.back_up(&source),
            Command::Filter(text) => {
                self.tab = TabId::Catalog;
                self.catalog.set_filter(text, &self.data, &self.ctx);
            }
            Command::Tab(i) => self.switch(Some(i)),
            Command::Refresh => {
                self.refresh();
                self.outbox.requests.push(Request::LoadJobs);
            }
            Command::Help => {
                self.popup = Some(Popup::Help {
                    tab: self.tab,
                    scroll: Cell::new(0),
                })
            }
            Command::Quit => self.ask_quit(),
        }
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
                Effect::Status(s) => self.set_status(s),
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
            Msg::CatalogPage {
                generation,
                rows,
                sources_complete,
            } if generation == self.catalog_gen => {
                self.data.listed += rows.len();
                let completes = !sources_complete.is_empty();
                self.data.known.extend(sources_complete);
                // Stream pages over the cached list: replace lines we know, add new ones.
                let first = self.pages_gen.replace(generation) != Some(generation);
                let all = &self.data.rows;
                let index = self.row_index.get_or_insert_with(|| {
                    all.iter()
                        .enumerate()
                        .map(|(i, r)| (r.id.clone(), i))
                        .collect()
                });
                for row in rows {
                    match index.get(&row.id) {
                        Some(&i) => self.data.rows[i] = row,
                        None => {
                            index.insert(row.id.clone(), self.data.rows.len());
                            self.data.rows.push(row);
                        }
                    }
                }
                // Sorting and judging 100,000 lines for each page of 1,000 made a listing
                // quadratic: the views follow the first page, then every 16, and at once
                // when a source's part of the bucket is complete (its health stops being a
                // guess).
                self.pages_unshown += 1;
                if first || completes || self.pages_unshown >= 16 {
                    self.pages_unshown = 0;
                    self.rows_changed();
                }
                self.dirty = true;
                self.restore
                    .on_listing(&self.data, &self.ctx, &mut self.outbox);
            }
            Msg::CatalogDone { generation, result } if generation == self.catalog_gen => {
                self.data.refreshing = false;
                match result {
                    Ok(catalog) => {
                        self.data.listing_done = true;
                        self.data.rows = catalog.rows();
                        self.row_index = None;
                        self.pages_unshown = 0;
                        self.data.stores =
                            lifeboat::stores::health(&self.ctx.config, &catalog, self.data.now);
                        self.data.catalog = Some(catalog);
                        self.rows_changed();
                        self.restore
                            .on_listing(&self.data, &self.ctx, &mut self.outbox);
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
            Msg::Preflight { id, result } => self.restore.on_preflight(&id, result),
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
            } => self.on_finished(task, kind, &record, outcome),
            Msg::Pitr { source, result } => {
                self.data.pitr.insert(source, result);
            }
            Msg::Notice(Ok(text)) => self.set_status(text),
            Msg::Notice(Err(e)) => self.show_error(e),
        }
    }

    fn on_finished(&mut self, task: TaskId, kind: JobKind, record: &JobRecord, outcome: Outcome) {
        self.data.tasks.remove(&task);
        self.outbox.requests.push(Request::LoadJobs);
        if self.quitting {
            return;
        }
        if self.restore.on_finished(task, record, &outcome) {
            return;
        }
        match (&outcome, kind) {
            (Outcome::Backup(Ok(m)), _) => {
                self.set_status(format!("backup {} of {} done", m.id, m.source.name));
                self.add_backup(m);
            }
            (Outcome::Verify(Ok(())), _) => self.set_status(format!(
                "verified {}",
                record.backup_id.as_deref().unwrap_or("?")
            )),
            _ if record.status == JobStatus::Cancelled => {
                self.set_status(format!("{kind} cancelled"))
            }
            (Outcome::Prune(Ok((n, bytes))), _) => {
                self.set_status(format!(
                    "pruned {n} backup{}, freed {}",
                    if *n == 1 { "" } else { "s" },
                    fmt::size(*bytes)
                ));
                // The plan and the timeline are recomputed from the listing.
                self.refresh();
            }
            (Outcome::Backup(Err(e)) | Outcome::Verify(Err(e)) | Outcome::Prune(Err(e)), _) => {
                self.show_error(format!("{kind} failed: {e}"))
            }
            _ => {}
        }
    }

    /// A backup this console made is one new line: no listing of the whole bucket. With
    /// several stores its copies are to be read, so they are listed again.
    fn add_backup(&mut self, m: &lifeboat::manifest::Manifest) {
        if self.ctx.config.stores.len() > 1 {
            return self.refresh();
        }
        let row = CatalogRow {
            kind: lifeboat::catalog::RowKind::Complete,
            id: m.id.to_string(),
            source: Some(m.source.name.clone()),
            time: Some(m.started_at),
            raw_bytes: Some(m.data.raw_bytes),
            stored_bytes: m.data.stored_bytes,
            duration_ms: Some(m.duration().num_milliseconds()),
            tables: Some(m.tables.len() as u64),
            rows: Some(m.total_rows()),
            encrypted: m.encryption.is_some(),
            note: None,
            copies: None,
        };
        self.data.rows.retain(|r| r.id != row.id);
        self.data.rows.insert(0, row);
        self.row_index = None;
        self.rows_changed();
    }

    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        let header_lines = self.header_lines(area.height);
        let [header, tabs, body, footer] = Layout::vertical([
            Constraint::Length(header_lines.len() as u16),
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(header_lines), header);
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
            Some(Popup::Help { tab, scroll }) => self.draw_help(frame, *tab, scroll),
            Some(Popup::Quit) => {
                let running: Vec<Line> = self
                    .data
                    .tasks
                    .values()
                    .map(|t| Line::raw(format!("  {}", fmt::safe(&t.label))))
                    .collect();
                let mut lines = vec![Line::styled(
                    format!("{} job(s) still running:", running.len()),
                    self.ctx.theme.title,
                )];
                lines.extend(running);
                lines.extend([
                    Line::raw(""),
                    Line::raw("y  cancel them and quit once they have cleaned up"),
                    Line::raw("n  keep working (esc)"),
                ]);
                self.draw_popup(frame, " quit? ", lines, self.ctx.theme.warn);
            }
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

    /// The first line (bucket, listing progress, the passing message), the sources worst
    /// first as many as the height allows with a summary line for the rest, then the stores.
    fn header_lines(&self, height: u16) -> Vec<Line<'static>> {
        let t = &self.ctx.theme;
        let mut first = vec![
            Span::styled("lifeboat ", t.title),
            Span::styled(fmt::safe(&self.ctx.location), t.dim),
        ];
        if self.data.refreshing {
            first.push(Span::styled(
                format!("  {}", self.data.listing_progress()),
                t.warn,
            ));
        }
        if let Some((status, _)) = &self.status {
            first.push(Span::styled(format!("  {}", fmt::safe(status)), t.accent));
        }
        let mut lines = vec![Line::from(first)];
        let known = |h: &SourceHealth| self.data.source_known(&h.source);
        // Worst first; a source not read yet sits between the warnings and the good ones.
        let rank = |h: &SourceHealth| match (known(h), h.level) {
            (true, Level::Critical) => 0,
            (true, Level::Warning) => 1,
            (false, _) => 2,
            (true, Level::Ok) => 3,
        };
        let mut order: Vec<&SourceHealth> = self.data.health.iter().collect();
        order.sort_by_key(|h| rank(h));
        let budget = ((height as usize).saturating_sub(14) / 2).clamp(1, 8);
        let shown = if order.len() > budget {
            budget - 1
        } else {
            order.len()
        };
        for h in &order[..shown] {
            lines.push(self.source_line(h, known(h)));
        }
        if shown < order.len() {
            let rest = &order[shown..];
            let mut parts = Vec::new();
            for (r, word) in [
                (0, "critical"),
                (1, "warning"),
                (2, "not read yet"),
                (3, "ok"),
            ] {
                let n = rest.iter().filter(|h| rank(h) == r).count();
                if n > 0 {
                    parts.push(format!("{n} {word}"));
                }
            }
            let style = match rank(rest[0]) {
                0 => t.bad,
                1 => t.warn,
                _ => t.dim,
            };
            lines.push(Line::styled(
                format!("  +{} more: {}", rest.len(), parts.join(", ")),
                style,
            ));
        }
        lines.extend(self.store_lines());
        lines
    }

    fn source_line(&self, h: &SourceHealth, known: bool) -> Line<'static> {
        let t = &self.ctx.theme;
        let name = Span::styled(format!("{:<8} ", fmt::safe(&h.source)), t.title);
        if !known {
            // Not read yet: what the cache said is a guess, and is shown as one.
            let cached = match h.age {
                Some(age) => format!("  (cached: newest {})", lifeboat::when::short_age(age)),
                None => String::new(),
            };
            return Line::from(vec![
                Span::styled("○ ?    ", t.dim),
                name,
                Span::styled(
                    format!("not read yet: {}{cached}", self.data.listing_progress()),
                    t.dim,
                ),
            ]);
        }
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
        Line::from(vec![
            Span::styled(format!("{mark} "), style),
            name,
            Span::styled(newest, style),
            // Before the rest: on a narrow terminal the tail is what gets cut.
            Span::styled(
                if h.last_job_failed {
                    "  last backup FAILED"
                } else {
                    ""
                },
                t.bad,
            ),
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
        ])
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

    /// The `:` command line while one is typed; otherwise the keys that matter here, as
    /// many as fit, help first.
    fn draw_footer(&self, frame: &mut Frame, area: Rect) {
        let t = &self.ctx.theme;
        if let Some(line) = &self.command {
            let mut spans = vec![
                Span::styled(":", t.title),
                Span::styled(format!("{line}█"), t.accent),
            ];
            match &self.command_error {
                Some(e) => spans.push(Span::styled(format!("  {}", fmt::safe(e)), t.bad)),
                None => {
                    let sources: Vec<String> = self.source_names();
                    let options = command::candidates(line, &sources);
                    if !options.is_empty() {
                        spans.push(Span::styled(format!("  ⇥ {}", options.join(" ")), t.dim));
                    }
                }
            }
            frame.render_widget(Paragraph::new(Line::from(spans)), area);
            return;
        }
        let actions: &[Action] = match self.tab {
            TabId::Catalog => self.catalog.hints(),
            TabId::Jobs => JobsTab::hints(),
            TabId::Retention => self.retention.hints(),
            TabId::Restore => self.restore.hints(),
        };
        let mut spans = Vec::new();
        let mut width = 0;
        for (key, label) in self
            .ctx
            .keymap
            .hints(&[Action::Help, Action::Quit, Action::Command])
            .into_iter()
            .chain(self.ctx.keymap.hints(actions))
        {
            let w = key.chars().count() + label.len() + 3;
            if width + w > area.width as usize + 1 {
                break;
            }
            width += w;
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

    /// The keys of `tab` first, then those that work everywhere, the commands and the line
    /// editing keys; as tall as the screen allows and scrolled with the usual keys.
    fn draw_help(&self, frame: &mut Frame, tab: TabId, scroll: &Cell<usize>) {
        let t = &self.ctx.theme;
        let (name, here): (&str, &[Action]) = match tab {
            TabId::Catalog => (
                "catalog",
                &[
                    Action::Enter,
                    Action::Back,
                    Action::Filter,
                    Action::Sort,
                    Action::Reverse,
                    Action::Backup,
                    Action::Verify,
                    Action::Restore,
                    Action::Drill,
                    Action::Copy,
                    Action::Up,
                    Action::Down,
                    Action::PageUp,
                    Action::PageDown,
                    Action::Top,
                    Action::Bottom,
                ],
            ),
            TabId::Jobs => (
                "jobs",
                &[
                    Action::Cancel,
                    Action::Up,
                    Action::Down,
                    Action::PageUp,
                    Action::PageDown,
                ],
            ),
            TabId::Retention => (
                "retention",
                &[
                    Action::NextSource,
                    Action::WhatIf,
                    Action::Up,
                    Action::Down,
                    Action::More,
                    Action::Less,
                    Action::Prune,
                    Action::Enter,
                    Action::Back,
                ],
            ),
            TabId::Restore => (
                "restore",
                &[
                    Action::Up,
                    Action::Down,
                    Action::Enter,
                    Action::Back,
                    Action::Drill,
                    Action::Target,
                    Action::Cancel,
                    Action::Drop,
                    Action::Promote,
                ],
            ),
        };
        let everywhere = [
            Action::Help,
            Action::Quit,
            Action::Command,
            Action::NextTab,
            Action::PrevTab,
            Action::Tab1,
            Action::Tab2,
            Action::Tab3,
            Action::Tab4,
            Action::Refresh,
        ];
        let row = |(keys, label): (String, &str)| Line::raw(format!(" {keys:<16} {label}"));
        let mut lines = vec![Line::styled(format!(" {name}"), t.title)];
        lines.extend(here.iter().map(|a| row(self.ctx.keymap.describe(*a))));
        lines.push(Line::styled(" everywhere", t.title));
        lines.extend(everywhere.iter().map(|a| row(self.ctx.keymap.describe(*a))));
        lines.push(Line::styled(" commands (: then Tab completes)", t.title));
        lines.extend(command::usage().map(|u| Line::raw(format!(" :{u}"))));
        lines.push(Line::styled(" typing", t.title));
        lines.push(row(("ctrl-u".into(), "clear the line")));
        lines.push(row(("ctrl-w".into(), "delete the last word")));
        lines.push(row((
            "times".into(),
            "09:40  yesterday 09:40  -2h  2026-11-25 12:00 (local)",
        )));
        let area = frame.area();
        let width = 72.min(area.width.saturating_sub(2));
        let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
        let inner = height.saturating_sub(2) as usize;
        let max = lines.len().saturating_sub(inner);
        let at = scroll.get().min(max);
        scroll.set(at);
        let popup = centered(area, width, height);
        frame.render_widget(Clear, popup);
        let title = if max > 0 {
            format!(
                " keys: {name} · {}-{} of {} · ↑↓ pgup pgdn scroll · esc closes ",
                at + 1,
                (at + inner).min(lines.len()),
                lines.len()
            )
        } else {
            format!(" keys: {name} · esc closes ")
        };
        frame.render_widget(
            Paragraph::new(lines)
                .scroll((at as u16, 0))
                .block(Block::default().borders(Borders::ALL).title(title)),
            popup,
        );
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
