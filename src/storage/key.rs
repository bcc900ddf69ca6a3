use std::fmt;

/// A validated object key: relative, `/`-separated, no empty, `.` or `..` segments, no NUL,
/// backslash, control or bidirectional formatting character, at most 1,024 bytes. A key that
/// passes can be joined to a directory or a bucket prefix safely, and shows on a terminal as
/// what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

impl ObjectKey {
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let reason = if key.is_empty() {
            Some("empty")
        } else if key.len() > 1024 {
            Some("longer than 1024 bytes")
        } else if key.starts_with('/') {
            Some("absolute path")
        } else if key.contains('\0') {
            Some("contains NUL")
        } else if key.contains('\\') {
            Some("contains a backslash")
        } else if key.chars().any(char::is_control) {
            Some("contains a control character")
        } else if key.chars().any(crate::escape::is_unsafe) {
            Some("contains a bidirectional formatting character")
        } else {
            key.split('/').find_map(|seg| match seg {
                "" => Some("empty path segment"),
                "." | ".." => Some("contains a '.' or '..' segment"),
                _ => None,
            })
        };
        match reason {
            Some(reason) => Err(KeyError { key, reason }),
            None => Ok(ObjectKey(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`, validated.
    pub fn join(&self, child: &str) -> Result<Self, KeyError> {
        ObjectKey::new(format!("{}/{}", self.0, child))
    }

    /// The file name: the last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_layout_keys() {
        for k in [
            "shop/20261122T020000Z-7f3a/manifest.json",
            "a",
            "_lifeboat/jobs/2026/11/x.json",
            "legacy/dump..sql",
            "店舗/バックアップ-2026-07-01.sql",
            "legacy/🚀.db",
            "hebrew/שלום.sql",
            &format!("{}.sql", "a".repeat(1020)),
        ] {
            assert!(ObjectKey::new(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn refuses_escapes() {
        for k in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a//b",
            "a/",
            "a\0b",
            "a\\..\\b",
            "a\nb",
            "legacy/win\\dump.sql",
            "x\u{1b}[2J.sql",
            "x\u{9b}31m.sql",
            "evil\u{202e}lqs.exe",
            "a\u{2066}b",
            &"a/".repeat(513),
        ] {
            assert!(ObjectKey::new(k).is_err(), "{k:?} should be refused");
        }
    }
}
