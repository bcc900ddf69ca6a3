//! Plain aligned tables for terminal output. Every cell is escaped (its text may come from the
//! bucket) and measured in terminal columns, so wide characters keep the columns aligned.

use std::fmt::Write;

use lifeboat::escape;
use unicode_width::UnicodeWidthStr;

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
        Cell {
            text: safe(text),
            color: None,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell {
            text: escape::term(text).into_owned(),
            color: None,
        }
    }
}

fn safe(text: String) -> String {
    match escape::term(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// Columns a cell takes on a terminal (CJK and most emoji take two).
fn width(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.width()
    }
}

pub const RED: &str = "31";
pub const GREEN: &str = "32";
pub const YELLOW: &str = "33";

pub fn colored(text: impl Into<String>, color: &'static str) -> Cell {
    Cell {
        text: safe(text.into()),
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
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(&c.text));
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = (&str, Option<&str>)>| {
            let start = out.len();
            for (i, (text, code)) in cells.enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                let code = code.filter(|_| color);
                if let Some(code) = code {
                    let _ = write!(out, "\x1b[{code}m");
                }
                let pad = widths[i].saturating_sub(width(text));
                let last = i + 1 == widths.len();
                match self.headers[i].1 {
                    Align::Left => {
                        out.push_str(text);
                        if !last {
                            out.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                    Align::Right => {
                        out.extend(std::iter::repeat_n(' ', pad));
                        out.push_str(text);
                    }
                }
                if code.is_some() {
                    out.push_str("\x1b[0m");
                }
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
            out.push('\n');
        };
        line(&mut out, &mut self.headers.iter().map(|(h, _)| (*h, None)));
        for row in &self.rows {
            line(
                &mut out,
                &mut row.iter().map(|c| (c.text.as_str(), c.color)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_wide_text_stays_aligned() {
        let mut t = Table::new(&[("KEY", Align::Left), ("SIZE", Align::Right)]);
        t.row(vec!["店舗/バックアップ.sql".into(), "1 B".into()]);
        t.row(vec!["🚀🚀.db".into(), "22 B".into()]);
        t.row(vec![
            "evil\x1b]0;pwned\x07\u{202e}.sql".into(),
            "333 B".into(),
        ]);
        let out = t.render(false);
        assert!(
            !out.chars().any(|c| c != '\n' && escape::is_unsafe(c)),
            "{out:?}"
        );
        assert!(out.contains("evil\\x1b]0;pwned\\x07\\u{202e}.sql"), "{out}");
        // Every line ends at the same terminal column: the right-aligned sizes line up.
        let widths: Vec<usize> = out.lines().map(UnicodeWidthStr::width).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}\n{out}");
    }
}
