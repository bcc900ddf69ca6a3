//! Catalog: every backup and foreign object, sortable and filterable, with a detail pane.

use crossterm::event::{KeyCode, KeyEvent};
use lifeboat::catalog::{CatalogRow, RowKind};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

use super::Cursor;
use crate::tui::app::{Ctx, Data, Effect, Outbox};
use crate::tui::fmt;
use crate::tui::keys::Action;
use crate::tui::msg::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SortKey {
    #[default]
    Time,
    Source,
    Stored,
    Rows,
    State,
}

impl SortKey {
    fn next(self) -> Self {
        match self {
            SortKey::Time => SortKey::Source,
            SortKey::Source => SortKey::Stored,
            SortKey::Stored => SortKey::Rows,
            SortKey::Rows => SortKey::State,
            SortKey::State => SortKey::Time,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Time => "time",
            SortKey::Source => "source",
            SortKey::Stored => "stored",
            SortKey::Rows => "rows",
            SortKey::State => "state",
        }
    }
}

#[derive(Debug, Default)]
pub struct CatalogTab {
    /// Indices into `Data::rows`, filtered and sorted.
    view: Vec<usize>,
    cursor: Cursor,
    sort: SortKey,
    /// Ascending instead of the natural order (newest / largest first).
    reverse: bool,
    filter: String,
    /// Why the filter cannot be applied as typed (a time that does not read).
    filter_error: Option<String>,
    editing: bool,
    detail: bool,
    /// How far the detail pane is scrolled (its table list is long).
    detail_scroll: u16,
    /// Complete, foreign and unusable lines, counted at each rebuild.
    counts: [usize; 3],
    /// The selected line's id, kept across rebuilds.
    selected_id: Option<String>,
}

/// `source:shop state:orphan after:2026-11-01 before:-2h text`
struct Filter {
    source: Option<String>,
    state: Option<String>,
    after: Option<chrono::DateTime<chrono::Utc>>,
    before: Option<chrono::DateTime<chrono::Utc>>,
    words: Vec<String>,
}

impl Filter {
    /// The filter, or why a part of it cannot be read. A time may hold a space
    /// (`before:2026-11-25 12:00`, `after:yesterday 09:40`): the word after it joins it when
    /// it reads as a time only with it.
    fn parse(text: &str, now: chrono::DateTime<chrono::Utc>, ctx: &Ctx) -> Result<Filter, String> {
        let mut f = Filter {
            source: None,
            state: None,
            after: None,
            before: None,
            words: Vec::new(),
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        while i < tokens.len() {
            let token = tokens[i];
            i += 1;
            match token.split_once(':') {
                Some(("source", v)) => f.source = Some(v.to_owned()),
                Some(("state", v)) => f.state = Some(v.to_owned()),
                Some((which @ ("after" | "before"), v)) => {
                    let joined = tokens.get(i).map(|next| format!("{v} {next}"));
                    let t = match joined.as_deref().map(|j| ctx.parse_time(j, now)) {
                        Some(Ok(t)) => {
                            i += 1;
                            t
                        }
                        _ => ctx
                            .parse_time(v, now)
                            .map_err(|e| format!("{which}: {e}"))?,
                    };
                    if which == "after" {
                        f.after = Some(t);
                    } else {
                        f.before = Some(t);
                    }
                }
                _ => f.words.push(token.to_lowercase()),
            }
        }
        Ok(f)
    }

    fn accepts(&self, r: &CatalogRow) -> bool {
        self.source
            .as_ref()
            .is_none_or(|s| r.source.as_deref() == Some(s.as_str()))
            && self.state.as_ref().is_none_or(|s| r.kind.label() == s)
            && self.after.is_none_or(|t| r.time.is_some_and(|rt| rt >= t))
            && self.before.is_none_or(|t| r.time.is_some_and(|rt| rt <= t))
            && self.words.iter().all(|w| {
                r.id.to_lowercase().contains(w)
                    || r.source.as_ref().is_some_and(|s| s.contains(w.as_str()))
                    || r.note
                        .as_ref()
                        .is_some_and(|n| n.to_lowercase().contains(w))
            })
    }
}

impl CatalogTab {
    pub fn typing(&self) -> bool {
        self.editing
    }

    pub fn hints(&self) -> &'static [Action] {
        if self.editing {
            &[Action::Enter, Action::Back]
        } else if self.detail {
            &[
                Action::Back,
                Action::PageDown,
                Action::Restore,
                Action::Drill,
                Action::Verify,
                Action::Copy,
            ]
        } else {
            &[
                Action::Enter,
                Action::Filter,
                Action::Sort,
                Action::Restore,
                Action::Drill,
                Action::Backup,
                Action::Verify,
                Action::Copy,
            ]
        }
    }

    /// Applies a filter typed elsewhere (the `:filter` command).
    pub fn set_filter(&mut self, text: String, data: &Data, ctx: &Ctx) {
        self.filter = text;
        self.editing = false;
        self.rebuild(data, ctx);
    }

    /// Rebuilds the filtered, sorted view after the lines or the filter changed. A filter
    /// that cannot be read filters nothing and says why.
    pub fn rebuild(&mut self, data: &Data, ctx: &Ctx) {
        let filter = match Filter::parse(&self.filter, data.now, ctx) {
            Ok(f) => {
                self.filter_error = None;
                f
            }
            Err(e) => {
                self.filter_error = Some(e);
                Filter::parse("", data.now, ctx).unwrap_or_else(|_| unreachable!())
            }
        };
        let rows = &data.rows;
        let count = |kind| rows.iter().filter(|r| r.kind == kind).count();
        self.counts = [
            count(RowKind::Complete),
            count(RowKind::Foreign),
            count(RowKind::Unusable),
        ];
        self.view = (0..rows.len())
            .filter(|&i| filter.accepts(&rows[i]))
            .collect();
        let key = self.sort;
        self.view.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            let natural = match key {
                SortKey::Time => b.time.cmp(&a.time),
                SortKey::Source => (a.source.is_none(), &a.source)
                    .cmp(&(b.source.is_none(), &b.source))
                    .then(b.time.cmp(&a.time)),
                SortKey::Stored => b.stored_bytes.cmp(&a.stored_bytes),
                SortKey::Rows => b.rows.cmp(&a.rows),
                SortKey::State => a.kind.label().cmp(b.kind.label()).then(b.time.cmp(&a.time)),
            };
            natural.then_with(|| a.id.cmp(&b.id))
        });
        if self.reverse {
            self.view.reverse();
        }
        if let Some(id) = &self.selected_id
            && let Some(pos) = self.view.iter().position(|&i| &rows[i].id == id)
        {
            self.cursor.selected = pos;
        }
        self.cursor.clamp(self.view.len());
    }

    fn selected<'d>(&self, data: &'d Data) -> Option<&'d CatalogRow> {
        self.view
            .get(self.cursor.selected)
            .and_then(|&i| data.rows.get(i))
    }

    pub fn on_key(
        &mut self,
        action: Option<Action>,
        key: KeyEvent,
        data: &Data,
        ctx: &Ctx,
        outbox: &mut Outbox,
    ) -> Vec<Effect> {
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                _ => {
                    super::edit_line(&mut self.filter, &key);
                }
            }
            self.rebuild(data, ctx);
            return Vec::new();
        }
        // In the detail pane the page keys scroll it; the selection still moves.
        if self.detail {
            match action {
                Some(Action::PageDown) => {
                    self.detail_scroll = self.detail_scroll.saturating_add(5);
                    return Vec::new();
                }
                Some(Action::PageUp) => {
                    self.detail_scroll = self.detail_scroll.saturating_sub(5);
                    return Vec::new();
                }
                _ => {}
            }
        }
        if self.cursor.navigate(action, self.view.len()) {
            self.selected_id = self.selected(data).map(|r| r.id.clone());
            self.detail_scroll = 0;
            return Vec::new();
        }
        let row = self.selected(data);
        match action {
            Some(Action::Enter) => {
                self.detail = !self.detail;
                self.detail_scroll = 0;
            }
            // Esc closes the detail pane, then clears an applied filter.
            Some(Action::Back) if self.detail => self.detail = false,
            Some(Action::Back) if !self.filter.is_empty() => {
                self.filter.clear();
                self.rebuild(data, ctx);
            }
            Some(Action::Filter) => self.editing = true,
            Some(Action::Sort) => {
                self.sort = self.sort.next();
                self.rebuild(data, ctx);
            }
            Some(Action::Reverse) => {
                self.reverse = !self.reverse;
                self.rebuild(data, ctx);
            }
            Some(Action::Backup) => return vec![Effect::PickSource],
            Some(Action::Verify) => match row {
                Some(r) if r.kind == RowKind::Complete => {
                    outbox.verify(&r.id, data.now);
                    return vec![Effect::Status(format!("verifying {}", r.id))];
                }
                Some(_) => {
                    return vec![Effect::Error(
                        "only a complete backup can be verified".into(),
                    )];
                }
                None => {}
            },
            Some(a @ (Action::Restore | Action::Drill)) => match row {
                Some(r) if matches!(r.kind, RowKind::Complete | RowKind::Foreign) => {
                    return vec![Effect::Wizard {
                        id: Some(r.id.clone()),
                        drill: a == Action::Drill,
                    }];
                }
                Some(r) => {
                    return vec![Effect::Error(format!(
                        "{} is {}: it cannot be restored",
                        r.id,
                        r.kind.label()
                    ))];
                }
                None => {
                    return vec![Effect::Wizard {
                        id: None,
                        drill: a == Action::Drill,
                    }];
                }
            },
            Some(Action::Copy) => {
                if let Some(r) = row {
                    outbox.requests.push(Request::Copy(r.id.clone()));
                }
            }
            _ => {}
        }
        Vec::new()
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let (table_area, detail_area) = if self.detail {
            // On a short screen the lines give the detail most of the room; the selection
            // stays in view in what is left.
            let table = if area.height < 30 {
                Constraint::Length(7)
            } else {
                Constraint::Percentage(45)
            };
            let [a, b] = Layout::vertical([table, Constraint::Min(4)]).areas(area);
            (a, Some(b))
        } else {
            (area, None)
        };
        self.draw_table(frame, table_area, data, ctx);
        if let Some(area) = detail_area {
            self.draw_detail(frame, area, data, ctx);
        }
    }

    fn draw_table(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        // With several stores a COPIES column joins; CREATED and ROWS wait for the room.
        let copies = ctx.config.stores.len() > 1;
        let mid = area.width >= if copies { 108 } else { 100 };
        let counts = !copies || area.width >= 90;
        let wide = area.width >= 132;
        // Counted when the lines change, not on every frame.
        let [complete, foreign, unusable] = self.counts;
        let mut title = format!(
            " {} backups ({complete} complete), {foreign} foreign{} · {}{} ",
            data.rows.len() - foreign - unusable,
            if unusable > 0 {
                format!(", {unusable} unusable")
            } else {
                String::new()
            },
            self.sort.label(),
            if self.reverse { "↑" } else { "↓" }
        );
        if self.editing || !self.filter.is_empty() {
            title.push_str(&format!(
                "· /{}{} → {} ",
                fmt::safe(&self.filter),
                if self.editing { "█" } else { "" },
                self.view.len()
            ));
        }
        let mut block = Block::default().borders(Borders::ALL).title(title);
        if let Some(e) = &self.filter_error {
            block = block.title_bottom(Line::styled(format!(" {} ", fmt::safe(e)), t.bad));
        } else if !self.editing && !self.filter.is_empty() {
            block = block.title_bottom(Line::styled(" esc clears the filter ", t.dim));
        }
        let inner_height = area.height.saturating_sub(3) as usize;
        let window = self.cursor.window(self.view.len(), inner_height);
        let mut header = vec!["ID / KEY", "SOURCE"];
        if mid {
            header.push("CREATED");
        }
        header.extend(["AGE", "STORED"]);
        if wide {
            header.extend(["RAW", "TIME", "TABLES"]);
        }
        if counts {
            header.push("ROWS");
        }
        header.push("VERIFIED");
        if copies {
            header.push("COPIES");
        }
        header.push("STATE");
        if wide {
            header.push("ENC");
        }
        // The sorted column carries the arrow (time sorts by CREATED when shown, else AGE).
        let sorted = match self.sort {
            SortKey::Time if mid => "CREATED",
            SortKey::Time => "AGE",
            SortKey::Source => "SOURCE",
            SortKey::Stored => "STORED",
            SortKey::Rows => "ROWS",
            SortKey::State => "STATE",
        };
        let arrow = if self.reverse { "↑" } else { "↓" };
        let header: Vec<Cell> = header
            .into_iter()
            .map(|h| {
                if h == sorted {
                    Cell::from(format!("{h}{arrow}"))
                } else {
                    Cell::from(h)
                }
            })
            .collect();
        let rows: Vec<Row> = window
            .clone()
            .map(|pos| {
                let r = &data.rows[self.view[pos]];
                let pinned = || {
                    let (Some(c), Some(s)) = (&data.catalog, &r.source) else {
                        return false;
                    };
                    c.is_pinned(s, &r.id)
                };
                let (state_text, state_style) = match r.kind {
                    RowKind::Complete if pinned() => ("pinned".to_owned(), t.ok),
                    RowKind::Complete => ("complete".to_owned(), t.ok),
                    RowKind::Orphan => ("orphan".to_owned(), t.warn),
                    RowKind::Damaged => ("DAMAGED".to_owned(), t.bad),
                    RowKind::Foreign => (fmt::safe(r.note.as_deref().unwrap_or_default()), t.dim),
                    RowKind::Unusable => ("UNUSABLE".to_owned(), t.bad),
                };
                // A pass from before the damage proves nothing about the backup now.
                let (verified, vstyle) = match data.verified.get(&r.id) {
                    _ if r.kind == RowKind::Damaged => ("damaged".to_owned(), t.bad),
                    _ if r.kind == RowKind::Orphan => ("-".to_owned(), Style::new()),
                    Some((true, at)) => (format!("ok {}", fmt::ago(Some(*at), data.now)), t.ok),
                    Some((false, at)) => {
                        (format!("FAILED {}", fmt::ago(Some(*at), data.now)), t.bad)
                    }
                    None => ("-".to_owned(), Style::new()),
                };
                let mut cells = vec![
                    Cell::from(fit_tail(&fmt::safe(&r.id), 21)),
                    Cell::from(fmt::safe(r.source.as_deref().unwrap_or("-"))),
                ];
                if mid {
                    cells.push(Cell::from(fmt::time(r.time)));
                }
                cells.extend([
                    Cell::from(fmt::ago(r.time, data.now)),
                    Cell::from(fmt::size(r.stored_bytes)),
                ]);
                if wide {
                    cells.extend([
                        Cell::from(fmt::opt_size(r.raw_bytes)),
                        Cell::from(fmt::millis(r.duration_ms)),
                        Cell::from(fmt::count(r.tables)),
                    ]);
                }
                if counts {
                    cells.push(Cell::from(fmt::count(r.rows)));
                }
                cells.push(Cell::from(Span::styled(verified, vstyle)));
                if copies {
                    let (text, style) = match &r.copies {
                        None => ("-".to_owned(), Style::new()),
                        Some(c) if c.verified == 0 => (c.label(), t.bad),
                        Some(c) if !c.complete() => (c.label(), t.warn),
                        Some(c) => (c.label(), t.ok),
                    };
                    cells.push(Cell::from(Span::styled(text, style)));
                }
                cells.push(Cell::from(Span::styled(state_text, state_style)));
                if wide {
                    cells.push(Cell::from(if r.encrypted { "age" } else { "-" }));
                }
                let row = Row::new(cells);
                if pos == self.cursor.selected {
                    row.style(t.selected)
                } else {
                    row
                }
            })
            .collect();
        let mut widths = vec![Constraint::Length(21), Constraint::Length(7)];
        if mid {
            widths.push(Constraint::Length(16));
        }
        // AGE fits "105d 23h".
        widths.extend([Constraint::Length(8), Constraint::Length(10)]);
        if wide {
            widths.extend([
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(6),
            ]);
        }
        if counts {
            widths.push(Constraint::Length(9));
        }
        // At 80 columns a column less for VERIFIED leaves STATE whole.
        widths.push(Constraint::Length(if mid { 10 } else { 9 }));
        if copies {
            widths.push(Constraint::Length(6));
        }
        widths.push(Constraint::Min(8));
        if wide {
            widths.push(Constraint::Length(4));
        }
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(t.title))
            .block(block);
        frame.render_widget(table, area);
        if data.rows.is_empty() {
            let msg = if data.refreshing {
                "reading the bucket…"
            } else {
                "no backups yet: press b to back up now"
            };
            let inner = Rect {
                x: area.x + 2,
                y: area.y + 2,
                width: area.width.saturating_sub(4),
                height: 1,
            };
            frame.render_widget(Paragraph::new(msg).style(t.dim), inner);
        }
    }

    fn draw_detail(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let Some(row) = self.selected(data) else {
            return;
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {} ", fmt::safe(&row.id)))
            .title_bottom(Line::styled(" pgup pgdn scroll · esc closes ", t.dim));
        let mut left: Vec<Line> = Vec::new();
        let mut right: Vec<Line> = Vec::new();
        let entry = data.catalog.as_ref().and_then(|c| c.find(&row.id));
        match (row.kind, entry.and_then(|e| e.manifest.as_ref())) {
            (RowKind::Foreign, _) => {
                left.push(Line::raw(format!(
                    "format    {}",
                    fmt::safe(row.note.as_deref().unwrap_or("?"))
                )));
                left.push(Line::raw(format!(
                    "size      {}",
                    fmt::size(row.stored_bytes)
                )));
                left.push(Line::raw(format!("time      {}", fmt::time(row.time))));
                left.push(Line::styled(
                    "not written by lifeboat: no checksum, counts measured on restore",
                    t.dim,
                ));
            }
            (_, Some(m)) => {
                left.push(Line::raw(format!(
                    "source    {} ({} {})",
                    fmt::safe(&m.source.name),
                    m.source.engine,
                    fmt::safe(&m.source.server_version)
                )));
                left.push(Line::raw(format!(
                    "database  {}",
                    fmt::safe(&m.source.database)
                )));
                left.push(Line::raw(format!(
                    "taken     {} ({})",
                    fmt::time(Some(m.started_at)),
                    fmt::millis(Some(m.duration().num_milliseconds()))
                )));
                left.push(Line::raw(format!(
                    "trigger   {} on {}",
                    m.trigger,
                    fmt::safe(&m.host)
                )));
                left.push(Line::raw(format!(
                    "size      {} raw, {} stored",
                    fmt::size(m.data.raw_bytes),
                    fmt::size(m.data.stored_bytes)
                )));
                left.push(Line::raw(format!(
                    "sha256    {}…",
                    m.data.sha256.get(..16).unwrap_or_default()
                )));
                left.push(Line::raw(format!(
                    "encrypted {}",
                    if m.encryption.is_some() { "yes" } else { "no" }
                )));
                if let Some(c) = entry
                    .and_then(|e| e.copies.as_ref())
                    .filter(|_| ctx.config.stores.len() > 1)
                {
                    right.push(Line::styled(format!("copies {}", c.label()), t.title));
                    for s in &c.stores {
                        let style = match s.state {
                            lifeboat::stores::CopyState::Verified => t.ok,
                            lifeboat::stores::CopyState::Unverified
                            | lifeboat::stores::CopyState::Missing => t.warn,
                            _ => t.bad,
                        };
                        let behind = if s.owed && s.state != lifeboat::stores::CopyState::Verified {
                            "  behind"
                        } else {
                            ""
                        };
                        right.push(Line::styled(
                            format!(
                                "  {:<8} {}{}{behind}",
                                s.store,
                                s.state.label(),
                                s.checked_at
                                    .map(|at| format!(" {}", fmt::ago(Some(at), data.now)))
                                    .unwrap_or_default()
                            ),
                            style,
                        ));
                    }
                }
                right.push(Line::styled(
                    format!(
                        "{} tables, {} rows",
                        m.tables.len(),
                        fmt::count(Some(m.total_rows()))
                    ),
                    t.title,
                ));
                for table in &m.tables {
                    right.push(Line::raw(format!(
                        "{:<18}{:>10}",
                        fmt::safe(&table.name),
                        fmt::count(Some(table.rows))
                    )));
                }
            }
            (kind, None) => {
                if let Some(note) = &row.note {
                    left.push(Line::styled(fmt::safe(note), t.bad));
                }
                left.push(Line::raw(format!(
                    "source    {}",
                    fmt::safe(row.source.as_deref().unwrap_or("-"))
                )));
                left.push(Line::raw(format!("taken     {}", fmt::time(row.time))));
                left.push(Line::raw(format!(
                    "stored    {}",
                    fmt::size(row.stored_bytes)
                )));
                if kind == RowKind::Complete {
                    left.push(Line::raw(format!(
                        "rows      {} in {} tables",
                        fmt::count(row.rows),
                        fmt::count(row.tables)
                    )));
                    let why = if data.refreshing {
                        "loading the manifest…"
                    } else {
                        "manifest not loaded: R to refresh"
                    };
                    left.push(Line::styled(why, t.dim));
                }
            }
        }
        let jobs: Vec<_> = data
            .jobs
            .iter()
            .filter(|j| j.backup_id.as_deref() == Some(row.id.as_str()))
            .take(6)
            .collect();
        if !jobs.is_empty() {
            left.push(Line::styled("jobs", t.title));
            for j in jobs {
                left.push(Line::raw(format!(
                    "  {} {:<8} {}",
                    fmt::time(Some(j.started_at)),
                    j.kind.to_string(),
                    j.status
                )));
            }
        }
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let [l, r] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .areas(inner);
        let longest = left.len().max(right.len());
        let scroll = self
            .detail_scroll
            .min(longest.saturating_sub(inner.height as usize) as u16);
        frame.render_widget(Paragraph::new(left).scroll((scroll, 0)), l);
        frame.render_widget(Paragraph::new(right).scroll((scroll, 0)), r);
    }
}

/// The end of a long key, where its name is: `…2026-07-06T02-00-00.sql.gz`.
fn fit_tail(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        text.to_owned()
    } else {
        let tail: String = text.chars().skip(n - width + 1).collect();
        format!("…{tail}")
    }
}
