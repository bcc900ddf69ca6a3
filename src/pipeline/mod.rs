//! The streaming stages of a backup and a restore.

pub mod backup;
pub mod crypt;
pub mod restore;
mod restore_pg;

use std::path::Path;

use sha2::{Digest, Sha256};

/// Staging files are named `lifeboat-{what}-{pid}-{random}` so that the ones a killed process
/// left behind can be recognised and removed.
pub(crate) fn staging_prefix(what: &str) -> String {
    format!("lifeboat-{what}-{}-", std::process::id())
}

/// Removes staging files and directories whose process no longer runs. A killed backup can
/// leave a full copy of a database here; without this the staging disk fills up, run by run.
pub(crate) fn sweep_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("lifeboat-") else {
            continue;
        };
        let mut parts = rest.splitn(3, '-');
        let (Some(_what), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if removed.is_ok() {
            tracing::info!("removed staging leftover {}", path.display());
        }
    }
}

pub(crate) fn hex(digest: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn sha256_hex(hasher: Sha256) -> String {
    hex(hasher.finalize())
}
