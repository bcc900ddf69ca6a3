//! Promoting a SQLite copy: staged in the source's directory (copied and fsynced when it
//! lives elsewhere), given the old file's owner and mode; the source's WAL checkpointed and the
//! file refused while another process has it open; then the old file linked aside and the
//! copy renamed over the source, and the directory fsynced (see [`crate::promote`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::Lifeboat;
use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::jobs::RestoredCopy;
use crate::promote::{PromotePlan, refused};

impl Lifeboat {
    pub(super) async fn plan_sqlite(
        &self,
        config: &SourceConfig,
        restored: &RestoredCopy,
        plan: &mut PromotePlan,
    ) -> Result<()> {
        let copy = PathBuf::from(&restored.copy);
        let source = config
            .path
            .clone()
            .ok_or_else(|| Error::Invalid(format!("source {} has no path", config.name)))?;
        if !copy.is_file() {
            return Err(refused(format!(
                "{} no longer exists (promoted or dropped since it was proved)",
                copy.display()
            )));
        }
        if std::fs::canonicalize(&source).is_ok_and(|s| s == copy) {
            return Err(refused(format!("{} is the source itself", copy.display())));
        }
        if std::fs::metadata(with_suffix(&copy, "-wal")).is_ok_and(|m| m.len() > 0) {
            return Err(refused(format!(
                "{} has changed since it was proved (its WAL holds writes): restore it again",
                copy.display()
            )));
        }
        let path = copy.clone();
        let now = tokio::task::spawn_blocking(move || file_fingerprint(&path))
            .await
            .map_err(|e| Error::Invalid(format!("hashing stopped: {e}")))??;
        if now != restored.fingerprint {
            return Err(refused(format!(
                "{} has changed since it was proved at {}: restore it again",
                copy.display(),
                plan.proved_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        plan.replaces = source.display().to_string();
        plan.source_exists = source.exists();
        if plan.source_exists {
            let kept = before_path(&source, self.clock.now());
            if kept.exists() {
                return Err(refused(format!("{} already exists", kept.display())));
            }
            plan.kept_as = Some(kept.display().to_string());
        }
        Ok(())
    }
}

/// `sha256:` and the SHA-256 of a file: a SQLite copy's fingerprint.
pub(crate) fn file_fingerprint(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(Error::io(format!("read {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!(
        "sha256:{}",
        crate::pipeline::hex(hasher.finalize())
    ))
}

/// `<stem>_before_<yyyymmddThhmmss><.ext>` beside `path`.
fn before_path(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}_before_{}{ext}", at.format("%Y%m%dT%H%M%S")))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The SQLite half of a promotion: stage, quiesce, link the old file aside, rename.
pub(super) fn promote_file(plan: &PromotePlan, source: &Path, log: &dyn Fn(String)) -> Result<()> {
    let copy = PathBuf::from(&plan.copy);
    let dir = source
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = source
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} names no file", source.display())))?;
    let same_dir = copy
        .parent()
        .map(std::fs::canonicalize)
        .transpose()
        .ok()
        .flatten()
        == std::fs::canonicalize(dir).ok();
    let staged = if same_dir {
        Staged::Itself(copy.clone())
    } else {
        let tmp = dir.join(format!(
            ".{}.lifeboat-promote-{:08x}",
            name.to_string_lossy(),
            fastrand::u32(..)
        ));
        let staged = Staged::Copied(tmp.clone());
        std::fs::copy(&copy, &tmp).map_err(Error::io(format!(
            "copy {} to {}",
            copy.display(),
            tmp.display()
        )))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(Error::io(format!("fsync {}", tmp.display())))?;
        if file_fingerprint(&tmp)? != plan.fingerprint {
            return Err(Error::Invalid(format!(
                "the copy staged at {} does not hash as the proved one; nothing was changed",
                tmp.display()
            )));
        }
        log(format!(
            "staged the copy beside the source as {}",
            tmp.display()
        ));
        staged
    };
    let staged_path = staged.path().to_path_buf();
    if let Ok(meta) = std::fs::metadata(source) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mine = std::fs::metadata(&staged_path)
            .map_err(Error::io(format!("stat {}", staged_path.display())))?;
        if (mine.uid(), mine.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::chown(&staged_path, Some(meta.uid()), Some(meta.gid())).map_err(
                Error::io(format!(
                    "give {} the owner of {} (uid {}, gid {}): run promote as root or as that user",
                    staged_path.display(),
                    source.display(),
                    meta.uid(),
                    meta.gid()
                )),
            )?;
        }
        std::fs::set_permissions(
            &staged_path,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(Error::io(format!("chmod {}", staged_path.display())))?;
        quiesce(source)?;
        let kept = PathBuf::from(
            plan.kept_as
                .as_deref()
                .ok_or_else(|| Error::Invalid("no name for the old file".into()))?,
        );
        std::fs::hard_link(source, &kept).map_err(Error::io(format!(
            "keep {} as {}",
            source.display(),
            kept.display()
        )))?;
        // Sidecars of the old file (empty after the checkpoint) follow it: a WAL left under
        // the source's name would be read as the new file's.
        for ext in ["-wal", "-shm"] {
            let side = with_suffix(source, ext);
            if side.exists() {
                std::fs::rename(&side, with_suffix(&kept, ext)).map_err(Error::io(format!(
                    "move {} beside {}",
                    side.display(),
                    kept.display()
                )))?;
            }
        }
        log(format!("kept {} as {}", source.display(), kept.display()));
    }
    std::fs::rename(&staged_path, source).map_err(Error::io(format!(
        "rename {} over {}",
        staged_path.display(),
        source.display()
    )))?;
    staged.done();
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("fsync {}", dir.display())))?;
    if !same_dir {
        // The copy now lives as the source; the scratch file goes, as a renamed one would.
        let _ = std::fs::remove_file(&copy);
    }
    log(format!("renamed the copy over {}", source.display()));
    Ok(())
}

/// The source file must be idle: its WAL checkpointed into it and no other process holding
/// it (or its WAL) open.
fn quiesce(source: &Path) -> Result<()> {
    let ctx = format!("checkpoint {}", source.display());
    {
        let conn = rusqlite::Connection::open_with_flags(
            source,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(Error::sqlite(ctx.clone()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(Error::sqlite(ctx.clone()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(Error::sqlite(ctx.clone()))?;
        if mode.eq_ignore_ascii_case("wal") {
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(Error::sqlite(ctx.clone()))?;
            if busy != 0 {
                return Err(refused(format!(
                    "{} is in use (its WAL cannot be checkpointed): stop the application first; nothing was changed",
                    source.display()
                )));
            }
        }
        conn.close()
            .map_err(|(_, e)| Error::sqlite(ctx.clone())(e))?;
    }
    let holders = open_elsewhere(&[
        source.to_path_buf(),
        with_suffix(source, "-wal"),
        with_suffix(source, "-journal"),
    ]);
    if !holders.is_empty() {
        return Err(refused(format!(
            "{} is open in {}: stop the application first (it would go on writing to the old file); nothing was changed",
            source.display(),
            holders.join(", ")
        )));
    }
    for ext in ["-wal", "-journal"] {
        if std::fs::metadata(with_suffix(source, ext)).is_ok_and(|m| m.len() > 0) {
            return Err(refused(format!(
                "{} has unfinished writes in its {ext} file: stop the application first; nothing was changed",
                source.display()
            )));
        }
    }
    Ok(())
}

/// Processes (`pid (name)`) with one of `paths` open, as far as /proc lets this user see.
fn open_elsewhere(paths: &[PathBuf]) -> Vec<String> {
    let wanted: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| wanted.contains(&target));
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", comm.trim()));
        }
    }
    found
}

/// The file renamed over the source: the copy itself (same directory) or a staged copy of it,
/// removed unless the promotion went through.
enum Staged {
    Itself(PathBuf),
    Copied(PathBuf),
}

impl Staged {
    fn path(&self) -> &Path {
        match self {
            Staged::Itself(p) | Staged::Copied(p) => p,
        }
    }

    fn done(mut self) {
        if let Staged::Copied(p) = &mut self {
            *p = PathBuf::new();
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Staged::Copied(p) = self
            && !p.as_os_str().is_empty()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_carry_the_time() {
        let at = DateTime::parse_from_rfc3339("2026-11-23T08:15:52Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            before_path(Path::new("/srv/shop.db"), at),
            PathBuf::from("/srv/shop_before_20261123T081552.db")
        );
        assert_eq!(
            before_path(Path::new("/srv/shop"), at),
            PathBuf::from("/srv/shop_before_20261123T081552")
        );
    }
}
