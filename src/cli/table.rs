//! Plain aligned tables for terminal output.

use std::fmt::Write;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<Cell>>,
}

pub struct Cell {
    text: String,
    /// ANSI colour code applied when colour is on.
    color: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell {
            text: text.to_owned(),
            color: None,
        }
    }
}

pub const RED: &str = "31";
pub const GREEN: &str = "32";
pub const YELLOW: &str = "33";

pub fn colored(text: impl Into<String>, color: &'static str) -> Cell {
    Cell {
        text: text.into(),
        color: Some(color),
    }
}

impl Table {
    pub fn new(headers: &[(&'static str, Align)]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, color: bool) -> String {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: Vec<(&str, Option<&str>)>| {
            let mut parts = Vec::new();
            for (i, (text, code)) in cells.into_iter().enumerate() {
                let pad = widths[i].saturating_sub(text.chars().count());
                let last = i + 1 == widths.len();
                let padded = match self.headers[i].1 {
                    Align::Left if last => text.to_owned(),
                    Align::Left => format!("{text}{}", " ".repeat(pad)),
                    Align::Right => format!("{}{text}", " ".repeat(pad)),
                };
                parts.push(match (color, code) {
                    (true, Some(code)) => format!("\x1b[{code}m{padded}\x1b[0m"),
                    _ => padded,
                });
            }
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(
            &mut out,
            self.headers.iter().map(|(h, _)| (*h, None)).collect(),
        );
        for row in &self.rows {
            line(
                &mut out,
                row.iter().map(|c| (c.text.as_str(), c.color)).collect(),
            );
        }
        out
    }
}
