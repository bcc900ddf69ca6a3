//! Jobs: running tasks with live gauges, the history with each job's log, and per-source
//! size and duration history.

use chrono::Duration;
use lifeboat::catalog::RowKind;
use lifeboat::jobs::{JobKind, JobStatus};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Borders, Gauge, Paragraph, Row, Sparkline, Table, Wrap,
};

use super::Cursor;
use crate::tui::app::{Ctx, Data, Effect, Outbox};
use crate::tui::fmt;
use crate::tui::keys::Action;
use crate::tui::msg::Request;

#[derive(Debug, Default)]
pub struct JobsTab {
    cursor: Cursor,
}

impl JobsTab {
    pub fn hints() -> &'static [Action] {
        &[Action::Up, Action::Down, Action::Cancel, Action::Refresh]
    }

    pub fn on_key(
        &mut self,
        action: Option<Action>,
        data: &Data,
        outbox: &mut Outbox,
    ) -> Vec<Effect> {
        if self.cursor.navigate(action, data.jobs.len()) {
            return Vec::new();
        }
        if action == Some(Action::Cancel) {
            // The newest running task: the one a person most likely means.
            return match data.tasks.keys().next_back() {
                Some(&task) => {
                    outbox.requests.push(Request::Cancel { task });
                    vec![Effect::Status(format!(
                        "cancelling {}",
                        data.tasks[&task].label
                    ))]
                }
                None => vec![Effect::Status("nothing is running".into())],
            };
        }
        Vec::new()
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let running = data.tasks.len() as u16;
        let [tasks, main, charts] = Layout::vertical([
            Constraint::Length(if running > 0 { running + 2 } else { 0 }),
            Constraint::Min(6),
            Constraint::Length(if area.height >= 20 { 8 } else { 0 }),
        ])
        .areas(area);
        if running > 0 {
            self.draw_tasks(frame, tasks, data, ctx);
        }
        let [list, log] = if main.width >= 110 {
            Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(main)
        } else {
            Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(main)
        };
        self.draw_list(frame, list, data, ctx);
        self.draw_log(frame, log, data, ctx);
        if charts.height > 0 {
            self.draw_charts(frame, charts, data, ctx);
        }
    }

    fn draw_tasks(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let block = Block::default().borders(Borders::ALL).title(" running ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        for (i, task) in data.tasks.values().enumerate() {
            let line = Rect {
                y: inner.y + i as u16,
                height: 1,
                ..inner
            };
            let (ratio, left) = task.progress(data.now);
            let eta = left
                .map(|d| format!(" eta {}", fmt::millis(Some(d.num_milliseconds()))))
                .unwrap_or_default();
            let phase = task.phase.map_or("starting", |p| p.label());
            let label = format!(
                "{}: {phase} {}{eta}",
                fmt::safe(&task.label),
                fmt::size(task.done)
            );
            frame.render_widget(
                Gauge::default()
                    .ratio(ratio)
                    .label(label)
                    .gauge_style(ctx.theme.accent),
                line,
            );
        }
    }

    fn draw_list(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let failed = data
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Failed)
            .count();
        let title = format!(" {} jobs, {failed} failed ", data.jobs.len());
        let window = self
            .cursor
            .window(data.jobs.len(), area.height.saturating_sub(3) as usize);
        let wide = area.width >= 100;
        let rows: Vec<Row> = window
            .clone()
            .map(|i| {
                let j = &data.jobs[i];
                let status_style = match j.status {
                    JobStatus::Succeeded => t.ok,
                    JobStatus::Running | JobStatus::Refused => t.warn,
                    _ => t.bad,
                };
                let started = if wide {
                    fmt::time(Some(j.started_at))
                } else {
                    j.started_at.format("%m-%d %H:%M").to_string()
                };
                let mut cells = vec![
                    Span::raw(j.kind.to_string()),
                    Span::raw(fmt::safe(j.source.as_deref().unwrap_or("-"))),
                    Span::raw(started),
                    Span::raw(fmt::millis(j.duration().map(|d| d.num_milliseconds()))),
                    Span::styled(j.status.to_string(), status_style),
                    Span::raw(if j.bytes > 0 {
                        fmt::size(j.bytes)
                    } else {
                        "-".into()
                    }),
                ];
                if wide {
                    cells.push(Span::raw(
                        j.throughput()
                            .map_or("-".into(), |r| format!("{}/s", fmt::size(r as u64))),
                    ));
                }
                cells.push(Span::styled(
                    fmt::safe(j.error.as_deref().unwrap_or_default()),
                    t.bad,
                ));
                let row = Row::new(cells);
                if i == self.cursor.selected {
                    row.style(t.selected)
                } else {
                    row
                }
            })
            .collect();
        let mut widths = vec![
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(if wide { 16 } else { 11 }),
            Constraint::Length(6),
            Constraint::Length(11),
            Constraint::Length(10),
        ];
        let mut header = vec!["KIND", "SOURCE", "STARTED", "TIME", "STATUS", "BYTES"];
        if wide {
            widths.push(Constraint::Length(12));
            header.push("RATE");
        }
        widths.push(Constraint::Min(10));
        header.push("ERROR");
        let header = Row::new(header).style(t.title);
        let table = Table::new(rows, widths)
            .header(header)
            .block(Block::default().borders(Borders::ALL).title(title));
        frame.render_widget(table, area);
    }

    fn draw_log(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let Some(job) = data.jobs.get(self.cursor.selected) else {
            frame.render_widget(Block::default().borders(Borders::ALL).title(" log "), area);
            return;
        };
        let lines: Vec<Line> = job
            .log
            .iter()
            .map(|l| {
                Line::from(vec![
                    Span::styled(l.at.format("%H:%M:%S ").to_string(), ctx.theme.dim),
                    Span::raw(fmt::safe(&l.message)),
                ])
            })
            .collect();
        // Show the end of a long log: that is where a failure is.
        let skip = lines
            .len()
            .saturating_sub(area.height.saturating_sub(2) as usize);
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" log {} ", fmt::safe(&job.id)));
        frame.render_widget(
            Paragraph::new(lines[skip..].to_vec())
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
    }

    fn draw_charts(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let source = data
            .jobs
            .get(self.cursor.selected)
            .and_then(|j| j.source.clone())
            .or_else(|| ctx.config.sources.first().map(|s| s.name.clone()));
        let Some(source) = source else { return };
        let [sizes, durations, rate] = Layout::horizontal([
            Constraint::Percentage(40),
            Constraint::Percentage(40),
            Constraint::Percentage(20),
        ])
        .areas(area);
        let mut backups: Vec<_> = data
            .rows
            .iter()
            .filter(|r| r.kind == RowKind::Complete && r.source.as_deref() == Some(source.as_str()))
            .collect();
        backups.sort_by_key(|r| r.time);
        let n = sizes.width.saturating_sub(2) as usize;
        let recent = &backups[backups.len().saturating_sub(n)..];
        let size_data: Vec<u64> = recent.iter().map(|r| r.stored_bytes).collect();
        let newest = recent.last().map_or(0, |r| r.stored_bytes);
        let spark = Sparkline::default().data(&size_data).style(t.accent).block(
            Block::default().borders(Borders::ALL).title(format!(
                " {} stored size, now {} ",
                fmt::safe(&source),
                fmt::size(newest)
            )),
        );
        frame.render_widget(spark, sizes);

        let bars_n = (durations.width.saturating_sub(2) / 2) as usize;
        let recent = &backups[backups.len().saturating_sub(bars_n)..];
        let bars: Vec<Bar> = recent
            .iter()
            .map(|r| {
                Bar::default()
                    .value(r.duration_ms.unwrap_or(0).max(0) as u64)
                    .text_value(String::new())
            })
            .collect();
        let longest = recent
            .iter()
            .filter_map(|r| r.duration_ms)
            .max()
            .unwrap_or(0);
        let chart = BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(1)
            .bar_gap(1)
            .bar_style(t.accent)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" duration, max {} ", fmt::millis(Some(longest)))),
            );
        frame.render_widget(chart, durations);

        let window = Duration::days(30);
        let recent_jobs: Vec<_> = data
            .jobs
            .iter()
            .filter(|j| {
                j.kind == JobKind::Backup
                    && j.source.as_deref() == Some(source.as_str())
                    && data.now - j.started_at <= window
            })
            .collect();
        let failed = recent_jobs
            .iter()
            .filter(|j| j.status == JobStatus::Failed)
            .count();
        let pct = if recent_jobs.is_empty() {
            0.0
        } else {
            failed as f64 * 100.0 / recent_jobs.len() as f64
        };
        let style = if failed > 0 { t.bad } else { Style::new() };
        let text = vec![
            Line::styled(format!("{pct:.1}%"), style),
            Line::raw(format!("{failed} of {} backups", recent_jobs.len())),
            Line::styled("failed, last 30 days", t.dim),
        ];
        frame.render_widget(
            Paragraph::new(text).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" failure rate "),
            ),
            rate,
        );
    }
}
