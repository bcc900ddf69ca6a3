//! Colours. Built-in defaults, overridable from a TOML file; `NO_COLOR` turns colour off.

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Theme {
    pub ok: Style,
    pub warn: Style,
    pub bad: Style,
    pub dim: Style,
    pub accent: Style,
    pub selected: Style,
    pub title: Style,
}

/// The theme file: each key names a colour (`red`, `light-green`, `#88c0d0`, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeFile {
    ok: Option<String>,
    warn: Option<String>,
    bad: Option<String>,
    dim: Option<String>,
    accent: Option<String>,
}

impl Theme {
    pub fn colored() -> Self {
        Theme {
            ok: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow),
            bad: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            dim: Style::new().fg(Color::DarkGray),
            accent: Style::new().fg(Color::Cyan),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            title: Style::new().add_modifier(Modifier::BOLD),
        }
    }

    /// No colours at all: emphasis by weight and reverse video only.
    pub fn plain() -> Self {
        Theme {
            ok: Style::new(),
            warn: Style::new().add_modifier(Modifier::BOLD),
            bad: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            dim: Style::new(),
            accent: Style::new().add_modifier(Modifier::BOLD),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            title: Style::new().add_modifier(Modifier::BOLD),
        }
    }

    /// The default for this environment, with overrides from `file` when given.
    pub fn load(file: Option<&str>) -> Result<Self, String> {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return Ok(Theme::plain());
        }
        let mut theme = Theme::colored();
        if let Some(text) = file {
            let f: ThemeFile =
                toml::from_str(text).map_err(|e| format!("theme: {}", e.message()))?;
            let set = |style: &mut Style, name: Option<String>| -> Result<(), String> {
                if let Some(name) = name {
                    let color: Color = name
                        .parse()
                        .map_err(|_| format!("theme: unknown colour {name:?}"))?;
                    *style = style.fg(color);
                }
                Ok(())
            };
            set(&mut theme.ok, f.ok)?;
            set(&mut theme.warn, f.warn)?;
            set(&mut theme.bad, f.bad)?;
            set(&mut theme.dim, f.dim)?;
            set(&mut theme.accent, f.accent)?;
        }
        Ok(theme)
    }
}
