//! Text read from a bucket, made safe to show.
//!
//! Object keys, manifest fields, job records and reports are written by whoever can write to
//! the bucket, so they may carry terminal escape sequences (OSC 52 writes the clipboard,
//! `ESC[2J` clears the screen), a lone C1 CSI (U+009B), or bidirectional overrides that make
//! text read differently from what it is. [`term`] shows each such character as a visible
//! escape (`\x1b`, `\u{9b}`, `\u{202e}`) instead of passing it on or silently dropping it, so
//! an on-call engineer sees that something odd is there. The CLI, the console and the
//! Markdown reports all go through it.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must not reach a terminal as itself: C0 controls, DEL and C1 controls, the
/// bidirectional embeddings, overrides, isolates and marks, and the Unicode line and
/// paragraph separators (which some terminals treat as line breaks).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every unsafe character written as a visible escape; borrowed when there is none.
pub fn term(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`term`] as a `Display` adapter, for `format!` arguments: `format!("{}", Term(&key))`.
#[derive(Debug, Clone, Copy)]
pub struct Term<'a>(pub &'a str);

impl fmt::Display for Term<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&term(self.0))
    }
}

fn push(out: &mut String, c: char) {
    if !is_unsafe(c) {
        out.push(c);
        return;
    }
    let _ = match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    };
}

/// JSON text (as serde_json writes it) with every unsafe character it left as itself (DEL,
/// C1 controls, bidirectional formatting) written as a `\uXXXX` escape: the same JSON value,
/// safe to print. serde_json already escapes C0 controls inside strings, so the ones left
/// are the layout's own line breaks, which stay.
pub fn json(text: &str) -> Cow<'_, str> {
    let left = |c: char| is_unsafe(c) && c as u32 >= 0x7f;
    if !text.chars().any(left) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if left(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one escape each.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Plain text for Markdown (a table cell or a sentence): escaped for the terminal first,
/// then every character Markdown or GitHub's tables give a meaning to is backslash-escaped,
/// so a value can neither end a cell, start a new row, open a code span or link, nor smuggle
/// HTML. Line breaks are already visible escapes by then, so a value stays on its line.
pub fn md_text(s: &str) -> String {
    let safe = term(s);
    let mut out = String::with_capacity(safe.len() + 4);
    for c in safe.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A code span for a Markdown table cell: escaped for the terminal, `|` escaped (GitHub
/// splits cells before it reads code spans), and fenced with more backticks than the value
/// holds in a row, so no value can close the span early.
pub fn md_code(s: &str) -> String {
    let safe = term(s).replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in safe.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // A span that starts or ends with a backtick (or is empty) needs a space inside the fence.
    let pad = if safe.is_empty() || safe.starts_with('`') || safe.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{safe}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_not_passed_or_dropped() {
        assert_eq!(term("plain"), Cow::Borrowed("plain"));
        assert_eq!(term("a\x1b]52;c;aGk=\x07b"), "a\\x1b]52;c;aGk=\\x07b");
        assert_eq!(term("x\x1b[2Jy"), "x\\x1b[2Jy");
        assert_eq!(term("del\x7f"), "del\\x7f");
        assert_eq!(term("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(term("line\nnext\r\tz"), "line\\nnext\\r\\tz");
        assert_eq!(term("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(term("\u{2066}iso\u{2069}"), "\\u{2066}iso\\u{2069}");
        assert_eq!(term("sep\u{2028}x"), "sep\\u{2028}x");
        // Wide and right-to-left text is not a control.
        assert_eq!(term("店舗 🚀 שלום"), "店舗 🚀 שלום");
        assert_eq!(format!("[{}]", Term("a\x00b")), "[a\\x00b]");
    }

    #[test]
    fn nothing_unsafe_survives_escaping() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!term(&all).chars().any(is_unsafe));
        assert!(!md_text(&all).chars().any(is_unsafe));
        assert!(!md_code(&all).chars().any(is_unsafe));
    }

    #[test]
    fn json_keeps_its_value_and_loses_its_controls() {
        let value = serde_json::json!({"error": "a\u{9b}2J\x7f\u{202e}\x1b]0;x\x07", "n": 1});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = json(&text);
        assert!(!safe.chars().any(|c| c != '\n' && is_unsafe(c)), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn markdown_values_stay_in_their_cell() {
        assert_eq!(md_text("a|b"), "a\\|b");
        assert_eq!(
            md_text("x |\n| forged | row |"),
            "x \\|\\\\n\\| forged \\| row \\|"
        );
        assert_eq!(
            md_text("<img src=x onerror=alert(1)>"),
            "\\<img src=x onerror=alert(1)\\>"
        );
        assert_eq!(
            md_text("`code` *b* [l](u)"),
            "\\`code\\` \\*b\\* \\[l\\](u)"
        );
        assert!(!md_text("a\nb").contains('\n'));
    }

    #[test]
    fn code_spans_cannot_be_closed_early() {
        assert_eq!(md_code("data.sqlite.zst"), "`data.sqlite.zst`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("``x"), "``` ``x ```");
        assert_eq!(md_code(""), "`  `");
        assert_eq!(md_code("a|b"), "`a\\|b`");
        assert_eq!(md_code("a\nb"), "`a\\nb`");
    }
}
