//! The keymap: actions, their default keys, overrides from a TOML file, and the help text,
//! all from one table.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    Command,
    NextTab,
    PrevTab,
    Tab1,
    Tab2,
    Tab3,
    Tab4,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Enter,
    Back,
    Filter,
    Sort,
    Reverse,
    Refresh,
    Backup,
    Verify,
    Restore,
    Drill,
    Copy,
    Cancel,
    Drop,
    Promote,
    Target,
    NextSource,
    WhatIf,
    More,
    Less,
    Prune,
}

/// (action, config name, default keys, help text)
const TABLE: &[(Action, &str, &[&str], &str)] = &[
    (Action::Quit, "quit", &["q", "ctrl-c"], "quit"),
    (Action::Help, "help", &["?"], "help"),
    (
        Action::Command,
        "command",
        &[":"],
        "command line (:restore shop before 09:40)",
    ),
    (Action::NextTab, "next_tab", &["tab"], "next tab"),
    (Action::PrevTab, "prev_tab", &["backtab"], "previous tab"),
    (Action::Tab1, "catalog", &["1"], "catalog"),
    (Action::Tab2, "jobs", &["2"], "jobs"),
    (Action::Tab3, "retention", &["3"], "retention"),
    (Action::Tab4, "restore", &["4"], "restore wizard"),
    (Action::Up, "up", &["up", "k"], "up"),
    (Action::Down, "down", &["down", "j"], "down"),
    (Action::PageUp, "page_up", &["pageup", "ctrl-u"], "page up"),
    (
        Action::PageDown,
        "page_down",
        &["pagedown", "ctrl-d"],
        "page down",
    ),
    (Action::Top, "top", &["home", "g"], "first"),
    (Action::Bottom, "bottom", &["end", "G"], "last"),
    (Action::Enter, "enter", &["enter"], "open / next"),
    (Action::Back, "back", &["esc"], "back / close"),
    (Action::Filter, "filter", &["/"], "filter"),
    (Action::Sort, "sort", &["s"], "sort column"),
    (Action::Reverse, "reverse", &["S"], "reverse sort"),
    (Action::Refresh, "refresh", &["R", "f5"], "refresh"),
    (Action::Backup, "backup", &["b"], "back up now"),
    (Action::Verify, "verify", &["v"], "verify"),
    (Action::Restore, "restore", &["r"], "restore"),
    (Action::Drill, "drill", &["d"], "restore drill"),
    (Action::Copy, "copy", &["y"], "copy id"),
    (Action::Cancel, "cancel", &["c"], "cancel job"),
    (Action::Drop, "drop", &["x"], "drop scratch db"),
    (
        Action::Promote,
        "promote",
        &["P"],
        "promote the proven copy",
    ),
    (
        Action::Target,
        "target",
        &["t"],
        "restore into another target",
    ),
    (Action::NextSource, "next_source", &["n"], "next source"),
    (Action::WhatIf, "what_if", &["e"], "what-if editor"),
    (Action::More, "more", &["+", "="], "keep more"),
    (Action::Less, "less", &["-"], "keep less"),
    (Action::Prune, "prune", &["p"], "prune"),
];

#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: HashMap<(KeyCode, KeyModifiers), Action>,
    keys: HashMap<Action, Vec<String>>,
}

impl Keymap {
    /// The built-in keys, with the actions named in `overrides` (a TOML table of
    /// `action = ["key", ...]`) rebound.
    pub fn load(overrides: Option<&str>) -> Result<Self, String> {
        let mut keys: HashMap<Action, Vec<String>> = TABLE
            .iter()
            .map(|(a, _, k, _)| (*a, k.iter().map(|s| s.to_string()).collect()))
            .collect();
        let mut overridden = Vec::new();
        if let Some(text) = overrides {
            let table: HashMap<String, Vec<String>> =
                toml::from_str(text).map_err(|e| format!("keymap: {}", e.message()))?;
            for (name, list) in table {
                let action = TABLE
                    .iter()
                    .find(|(_, n, _, _)| *n == name)
                    .map(|(a, ..)| *a)
                    .ok_or_else(|| format!("keymap: unknown action {name:?}"))?;
                keys.insert(action, list);
                overridden.push(action);
            }
        }
        // Defaults first, then the user's keys, so a key the user rebinds wins.
        let mut bindings = HashMap::new();
        let order = TABLE
            .iter()
            .map(|(a, ..)| *a)
            .filter(|a| !overridden.contains(a))
            .chain(overridden.iter().copied());
        for action in order {
            for k in &keys[&action] {
                bindings.insert(
                    parse_key(k).ok_or_else(|| format!("keymap: cannot read key {k:?}"))?,
                    action,
                );
            }
        }
        Ok(Keymap { bindings, keys })
    }

    pub fn action(&self, key: &KeyEvent) -> Option<Action> {
        // Shift is part of the character for letters ("G"), not a separate modifier.
        let mods = match key.code {
            KeyCode::Char(_) => key.modifiers - KeyModifiers::SHIFT,
            _ => key.modifiers,
        };
        self.bindings.get(&(key.code, mods)).copied()
    }

    /// The first key bound to `action`, as shown in the footer.
    pub fn key(&self, action: Action) -> &str {
        self.keys
            .get(&action)
            .and_then(|k| k.first())
            .map_or("?", String::as_str)
    }

    /// `key word` pairs for the footer: the first key, shortened, and one word.
    pub fn hints(&self, actions: &[Action]) -> Vec<(String, &'static str)> {
        actions
            .iter()
            .map(|a| (short_key(self.key(*a)), short_label(*a)))
            .collect()
    }

    /// An action with all its keys and its help text, for the help screen.
    pub fn describe(&self, action: Action) -> (String, &'static str) {
        let help = TABLE
            .iter()
            .find(|(a, ..)| *a == action)
            .map_or("", |(.., help)| *help);
        (self.keys[&action].join(" "), help)
    }
}

/// A key as the footer shows it: `enter` is `↵`, `pagedown` `pgdn`.
fn short_key(key: &str) -> String {
    match key {
        "enter" => "↵".into(),
        "up" => "↑".into(),
        "down" => "↓".into(),
        "pageup" => "pgup".into(),
        "pagedown" => "pgdn".into(),
        "backtab" => "⇤".into(),
        "tab" => "⇥".into(),
        k => k.into(),
    }
}

/// One word per action, so a tab's footer fits 80 columns.
fn short_label(action: Action) -> &'static str {
    match action {
        Action::Quit => "quit",
        Action::Help => "help",
        Action::Command => "cmd",
        Action::NextTab | Action::PrevTab => "tab",
        Action::Tab1 => "catalog",
        Action::Tab2 => "jobs",
        Action::Tab3 => "retention",
        Action::Tab4 => "restore",
        Action::Up | Action::Down => "scroll",
        Action::PageUp | Action::PageDown => "scroll",
        Action::Top => "first",
        Action::Bottom => "last",
        Action::Enter => "open",
        Action::Back => "back",
        Action::Filter => "filter",
        Action::Sort => "sort",
        Action::Reverse => "reverse",
        Action::Refresh => "refresh",
        Action::Backup => "backup",
        Action::Verify => "verify",
        Action::Restore => "restore",
        Action::Drill => "drill",
        Action::Copy => "copy",
        Action::Cancel => "cancel",
        Action::Drop => "drop",
        Action::Promote => "promote",
        Action::Target => "target",
        Action::NextSource => "source",
        Action::WhatIf => "what-if",
        Action::More => "more",
        Action::Less => "less",
        Action::Prune => "prune",
    }
}

fn parse_key(s: &str) -> Option<(KeyCode, KeyModifiers)> {
    let (mods, name) = match s.strip_prefix("ctrl-") {
        Some(rest) => (KeyModifiers::CONTROL, rest),
        None => (KeyModifiers::NONE, s),
    };
    let code = match name {
        "enter" => KeyCode::Enter,
        "esc" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "space" => KeyCode::Char(' '),
        f if f.len() > 1 && f.starts_with('f') => KeyCode::F(f[1..].parse().ok()?),
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
        _ => return None,
    };
    Some((code, mods))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let km = Keymap::load(None).unwrap();
        let key = |c, m| KeyEvent::new(c, m);
        assert_eq!(
            km.action(&key(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&key(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Some(Action::Bottom)
        );
        let km = Keymap::load(Some("quit = [\"x\"]\nverify = [\"ctrl-v\", \"f2\"]")).unwrap();
        assert_eq!(
            km.action(&key(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&key(KeyCode::Char('q'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            km.action(&key(KeyCode::F(2), KeyModifiers::NONE)),
            Some(Action::Verify)
        );
        assert_eq!(km.key(Action::Verify), "ctrl-v");
        assert!(
            Keymap::load(Some("frobnicate = [\"z\"]"))
                .unwrap_err()
                .contains("unknown action")
        );
    }
}
