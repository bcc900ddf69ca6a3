//! The console's tabs. Each owns its view state and its keys, reads shared [`Data`] to draw,
//! and asks for work through the [`Outbox`].
//!
//! [`Data`]: super::app::Data
//! [`Outbox`]: super::app::Outbox

mod catalog;
mod jobs;
mod restore;
mod retention;

use std::cell::Cell;

pub use catalog::CatalogTab;
pub use jobs::JobsTab;
pub use restore::RestoreWizard;
pub use retention::RetentionTab;

use super::keys::Action;

/// A selection in a list longer than the screen: only the visible window is ever built.
#[derive(Debug, Default)]
pub struct Cursor {
    pub selected: usize,
    /// First visible line and window height, as last drawn.
    offset: Cell<usize>,
    height: Cell<usize>,
}

impl Cursor {
    /// Moves for a navigation action; returns whether it was one.
    pub fn navigate(&mut self, action: Option<Action>, len: usize) -> bool {
        let page = self.height.get().max(1);
        let last = len.saturating_sub(1);
        self.selected = match action {
            Some(Action::Up) => self.selected.saturating_sub(1),
            Some(Action::Down) => (self.selected + 1).min(last),
            Some(Action::PageUp) => self.selected.saturating_sub(page),
            Some(Action::PageDown) => (self.selected + page).min(last),
            Some(Action::Top) => 0,
            Some(Action::Bottom) => last,
            _ => return false,
        };
        true
    }

    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }

    /// The range of lines to draw in `height` rows, keeping the selection in view.
    pub fn window(&self, len: usize, height: usize) -> std::ops::Range<usize> {
        self.height.set(height);
        let mut offset = self.offset.get().min(len.saturating_sub(height));
        if self.selected < offset {
            offset = self.selected;
        } else if height > 0 && self.selected >= offset + height {
            offset = self.selected + 1 - height;
        }
        self.offset.set(offset);
        offset..(offset + height).min(len)
    }
}

/// Edits a line of typed text: characters, Backspace, Ctrl-U (clear), Ctrl-W (last word).
/// Returns whether the key was an edit; other control keys are never typed as text.
pub fn edit_line(text: &mut String, key: &crossterm::event::KeyEvent) -> bool {
    use crossterm::event::{KeyCode, KeyModifiers};
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Backspace => {
            text.pop();
        }
        KeyCode::Char('u') if ctrl => text.clear(),
        KeyCode::Char('w') if ctrl => {
            let kept = text.trim_end().rfind(' ').map_or(0, |i| i + 1);
            text.truncate(kept);
        }
        KeyCode::Char(_) if ctrl || key.modifiers.contains(KeyModifiers::ALT) => return false,
        KeyCode::Char(c) => text.push(c),
        _ => return false,
    }
    true
}
