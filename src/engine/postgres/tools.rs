//! Finding `pg_dump` and `pg_restore`: a configured directory, else `PATH` and the Debian
//! layout `/usr/lib/postgresql/*/bin`, taking one whose major version is at least the
//! server's (older tools refuse newer servers; newer tools read older servers and dumps).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    /// As the tool prints it, e.g. `15.14`.
    pub version: String,
    pub major: u32,
}

/// Finds `name` for a server of major version `min_major`: the same major if there is one,
/// else the newest that is newer. `bin_dir`, when configured, is the only place looked in.
pub fn find(name: &str, bin_dir: Option<&Path>, min_major: u32) -> Result<Tool> {
    let dirs: Vec<PathBuf> = match bin_dir {
        Some(d) => vec![d.to_path_buf()],
        None => {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
                let mut versions: Vec<PathBuf> =
                    entries.flatten().map(|e| e.path().join("bin")).collect();
                versions.sort();
                dirs.extend(versions);
            }
            dirs
        }
    };
    let mut found: Vec<Tool> = Vec::new();
    for dir in &dirs {
        let path = dir.join(name);
        if !path.is_file() || found.iter().any(|t| same_file(&t.path, &path)) || is_wrapper(&path) {
            continue;
        }
        if let Some(tool) = probe(&path) {
            found.push(tool);
        }
    }
    let exact = found.iter().find(|t| t.major == min_major);
    let newer = found
        .iter()
        .filter(|t| t.major > min_major)
        .max_by_key(|t| t.major);
    if let Some(t) = exact.or(newer) {
        return Ok(t.clone());
    }
    let looked = match bin_dir {
        Some(d) => d.display().to_string(),
        None => "PATH and /usr/lib/postgresql/*/bin".into(),
    };
    Err(Error::Tool(if found.is_empty() {
        format!(
            "{name} not found in {looked}: install the PostgreSQL {min_major} client tools (e.g. postgresql-client-{min_major}) or set bin_dir"
        )
    } else {
        let have: Vec<String> = found
            .iter()
            .map(|t| format!("{} {}", t.path.display(), t.version))
            .collect();
        format!(
            "the server runs PostgreSQL {min_major} but the newest {name} found is older ({}); install the PostgreSQL {min_major} client tools or point bin_dir at them",
            have.join(", ")
        )
    }))
}

/// Debian's `/usr/bin/pg_dump` is `pg_wrapper`, which picks a version by its own rules; the
/// real binaries under /usr/lib/postgresql are looked at instead.
fn is_wrapper(path: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|p| p.file_name().is_some_and(|n| n == "pg_wrapper"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Runs `tool --version` and reads `pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`.
fn probe(path: &Path) -> Option<Tool> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text)?;
    let major = major_of(&version)?;
    Some(Tool {
        path: path.to_path_buf(),
        version,
        major,
    })
}

fn parse_version(text: &str) -> Option<String> {
    let rest = text.split_once("(PostgreSQL)")?.1;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The major version: `15.14` → 15, `9.6.24` → 9 (close enough: no 9.x server is supported),
/// `17devel` → 17.
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_tool_output() {
        let v = parse_version("pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n").unwrap();
        assert_eq!(v, "15.14");
        assert_eq!(major_of(&v), Some(15));
        assert_eq!(major_of("17devel"), Some(17));
        assert_eq!(parse_version("something else"), None);
    }
}
