//! Retention: what each source keeps and how it is spread over time. Policies and pruning
//! are not part of this version, so nothing here deletes anything.

use chrono::Duration;
use lifeboat::catalog::RowKind;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table, Wrap};

use crate::tui::app::{Ctx, Data};
use crate::tui::fmt;

#[derive(Debug, Default)]
pub struct RetentionTab;

impl RetentionTab {
    pub fn draw(&self, frame: &mut Frame, area: Rect, data: &Data, ctx: &Ctx) {
        let t = &ctx.theme;
        let sources: Vec<String> = data.health.iter().map(|h| h.source.clone()).collect();
        let [note, table, timeline] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(sources.len() as u16 + 3),
            Constraint::Min(3),
        ])
        .areas(area);
        let text = vec![
            Line::styled(
                "This version has no retention policy: every backup is kept.",
                t.warn,
            ),
            Line::styled(
                "Orphans and damaged backups show in the catalog's state column.",
                t.dim,
            ),
        ];
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(Block::default().borders(Borders::BOTTOM)),
            note,
        );

        let rows: Vec<Row> = sources
            .iter()
            .map(|s| {
                let mine: Vec<_> = data
                    .rows
                    .iter()
                    .filter(|r| r.source.as_deref() == Some(s.as_str()))
                    .collect();
                let complete: Vec<_> = mine
                    .iter()
                    .filter(|r| r.kind == RowKind::Complete)
                    .collect();
                let other = mine.len() - complete.len();
                Row::new(vec![
                    s.clone(),
                    complete.len().to_string(),
                    other.to_string(),
                    fmt::time(complete.iter().filter_map(|r| r.time).min()),
                    fmt::time(complete.iter().filter_map(|r| r.time).max()),
                    fmt::size(mine.iter().map(|r| r.stored_bytes).sum()),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(14),
            Constraint::Length(17),
            Constraint::Length(17),
            Constraint::Min(10),
        ];
        let header = Row::new([
            "SOURCE",
            "KEPT",
            "ORPHAN/DAMAGED",
            "OLDEST",
            "NEWEST",
            "STORED",
        ])
        .style(t.title);
        frame.render_widget(
            Table::new(rows, widths).header(header).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" backups kept "),
            ),
            table,
        );

        let per = timeline.height.saturating_sub(0) / (sources.len().max(1) as u16);
        for (i, s) in sources.iter().enumerate() {
            let area = Rect {
                y: timeline.y + i as u16 * per,
                height: per.min(timeline.height),
                ..timeline
            };
            if area.height < 3 {
                break;
            }
            // From the oldest backup on, at most as many weeks as there are columns.
            let oldest = data
                .rows
                .iter()
                .filter(|r| r.kind == RowKind::Complete)
                .filter_map(|r| r.time)
                .min();
            let span = oldest.map_or(1, |t| (data.now - t).num_weeks() + 1);
            let weeks = i64::from(area.width.saturating_sub(2)).min(span).max(1);
            let counts: Vec<u64> = (0..weeks)
                .rev()
                .map(|w| {
                    let (from, to) = (
                        data.now - Duration::weeks(w + 1),
                        data.now - Duration::weeks(w),
                    );
                    data.rows
                        .iter()
                        .filter(|r| {
                            r.kind == RowKind::Complete && r.source.as_deref() == Some(s.as_str())
                        })
                        .filter(|r| r.time.is_some_and(|t| t > from && t <= to))
                        .count() as u64
                })
                .collect();
            let plural = if weeks == 1 { "" } else { "s" };
            let title =
                format!(" {s}: backups per week, last {weeks} week{plural} (newest right) ");
            let spark = Sparkline::default()
                .data(&counts)
                .style(t.accent)
                .block(Block::default().borders(Borders::ALL).title(title));
            frame.render_widget(spark, area);
        }
    }
}
