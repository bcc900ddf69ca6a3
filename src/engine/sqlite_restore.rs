//! Restoring into SQLite: download (hashing) → verify → decompress → load → count → diff.
//!
//! Nothing reaches the target before the stored bytes hash to the manifest's SHA-256. The
//! database is built in a partial file beside the target and renamed into place only once it
//! is complete and passes SQLite's integrity check.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::Sqlite;
use super::sqlite;
use crate::debris::{Debris, Recorded, Recorder};
use crate::error::{Error, Result};
use crate::pipeline::restore::{Object, RestoreFrom, RestoreReport, RestoreRun, RestoreTarget};
use crate::progress::Phase;
use crate::sniff::Content;

/// Restores into the new SQLite file `path`.
pub(super) async fn restore(
    run: &RestoreRun<'_>,
    path: &Path,
    started_at: DateTime<Utc>,
) -> Result<(RestoreReport, DateTime<Utc>)> {
    // Before the target is touched: a missing key must leave nothing behind.
    let Object {
        key,
        expected,
        unseal,
    } = run.object(&Sqlite)?;
    let target = check_target(run, path)?;
    let created = !target.exists();
    let partial = PartialFile::beside(&target, run.file_mode, run.debris)?;
    // One pass: the download is hashed as it streams into the decoder, and the database
    // grows in a hidden partial file. It is opened, checked and renamed into the target
    // only after the hash has matched.
    let partial_path = partial.path.clone();
    let into = partial_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let (sha256, stored_bytes, format, raw_bytes) = run
        .fetch(
            &key,
            &into,
            &expected,
            Content::Sqlite,
            unseal,
            move |format, reader| match format.content {
                Content::Sqlite => sqlite::write_image(reader, &partial_path),
                Content::Sql => {
                    sqlite::load_sql(BufReader::with_capacity(1 << 20, reader), &partial_path)
                }
                _ => Err(Error::Invalid(format!(
                    "a {format} object cannot be restored into SQLite"
                ))),
            },
        )
        .await?;

    run.progress.phase(Phase::Count, None);
    let tables = {
        let path = partial.path.clone();
        let check = run.opts.integrity_check;
        tokio::task::spawn_blocking(move || sqlite::check_and_count(&path, check))
            .await
            .expect("count thread panicked")?
    };
    if run.opts.integrity_check {
        (run.log)("integrity check passed".into());
    }
    let want_content = run.want_content();
    let content = if want_content.is_empty() {
        None
    } else {
        let path = partial.path.clone();
        Some(
            tokio::task::spawn_blocking(move || crate::content::sqlite_file(&path))
                .await
                .expect("checksum thread panicked")?,
        )
    };
    partial.commit(&target, run.opts.force_target, run.opts.drill, run.debris)?;
    (run.log)(format!(
        "restored into {} ({raw_bytes} bytes)",
        target.display()
    ));
    let proved = async {
        let path = target.clone();
        let fingerprint =
            tokio::task::spawn_blocking(move || super::sqlite_promote::file_fingerprint(&path))
                .await
                .expect("hashing thread panicked")?;
        Ok::<_, Error>((fingerprint, run.diff(&tables, content.as_ref()).await?))
    }
    .await;
    let (fingerprint, (diff, content_compared)) = match proved {
        Ok(proved) => proved,
        Err(e) => {
            // A drill's copy is its own to drop; anyone else's stays theirs.
            if run.opts.drill {
                let _ = crate::debris::remove_with_sidecars(&target);
            }
            return Err(e);
        }
    };
    let finished_at = Utc::now();
    let report = RestoreReport {
        restored: run.from.label(),
        source: match run.from {
            RestoreFrom::Backup(b) => Some(b.source.clone()),
            RestoreFrom::Foreign(_) => None,
        },
        format: format.to_string(),
        target: RestoreTarget::Sqlite(target),
        created,
        sha256,
        checksum_verified: expected.is_some(),
        authenticity: None,
        stored_bytes,
        raw_bytes,
        started_at,
        finished_at,
        diff,
        content_compared,
        privileged: false,
        skipped: Vec::new(),
        fingerprint,
    };
    Ok((report, finished_at))
}

fn check_target(run: &RestoreRun<'_>, target: &Path) -> Result<PathBuf> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Directories lifeboat makes for a restore are as private as the file it puts there.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(parent)
        .map_err(Error::io(format!("create {}", parent.display())))?;
    let name = target
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("target {} names no file", target.display())))?;
    let target = parent
        .canonicalize()
        .map_err(Error::io(format!("resolve {}", parent.display())))?
        .join(name);
    let is_source = run
        .source
        .and_then(|s| s.path.as_ref())
        .and_then(|s| s.canonicalize().ok())
        .is_some_and(|s| s == target);
    // Never over the live database, forced or not: `promote` replaces it with a proven
    // copy and keeps the old file.
    if is_source {
        return Err(Error::TargetIsSource(target));
    }
    if target.exists() && !run.opts.force_target {
        return Err(Error::TargetExists(target));
    }
    Ok(target)
}

/// The database under construction, beside its final path; removed unless committed.
/// Created private (the plaintext of an encrypted backup lands here) and recorded first, so
/// that one a kill leaves behind is swept by a later run.
struct PartialFile {
    path: PathBuf,
    recorded: Option<Recorded>,
    committed: bool,
}

impl PartialFile {
    fn beside(target: &Path, mode: u32, debris: &Recorder) -> Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = target.with_file_name(format!(
            ".{name}.lifeboat-partial-{:08x}",
            fastrand::u32(..)
        ));
        let recorded = debris.record(&Debris::Partial { path: path.clone() })?;
        let partial = PartialFile {
            path,
            recorded: Some(recorded),
            committed: false,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&partial.path)
            .map_err(Error::io(format!("create {}", partial.path.display())))?;
        // Exactly the configured mode, whatever the umask took away.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(Error::io(format!("chmod {}", partial.path.display())))?;
        Ok(partial)
    }

    /// Renames the finished database into place. A drill's result stays recorded as its
    /// own (the drill drops it); any other restore's result belongs to whoever asked for it.
    fn commit(
        mut self,
        target: &Path,
        replacing: bool,
        drill: bool,
        debris: &Recorder,
    ) -> Result<()> {
        let scratch = if drill {
            Some(debris.record(&Debris::Partial {
                path: target.to_path_buf(),
            })?)
        } else {
            None
        };
        std::fs::rename(&self.path, target)
            .map_err(Error::io(format!("move into {}", target.display())))?;
        self.committed = true;
        if let Some(r) = self.recorded.take() {
            r.clear();
        }
        // The drill drops its scratch file, then clears this.
        if let Some(r) = scratch {
            r.keep();
        }
        // Every connection to it is closed: what a WAL-mode reader left beside the partial
        // name is empty and stale.
        for ext in ["-wal", "-shm"] {
            let mut side = self.path.as_os_str().to_owned();
            side.push(ext);
            let _ = std::fs::remove_file(PathBuf::from(side));
        }
        if replacing {
            // A stale WAL beside the replaced database would be replayed into the restored one.
            for ext in ["-wal", "-shm", "-journal"] {
                let mut side = target.as_os_str().to_owned();
                side.push(ext);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed
            && crate::debris::remove_with_sidecars(&self.path).is_ok()
            && let Some(r) = self.recorded.take()
        {
            r.clear();
        }
    }
}
