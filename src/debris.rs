//! What a killed run can leave behind, and its sweeping.
//!
//! Before a job creates anything that only it would remove (a staging directory, a restore's
//! partial file, a scratch database, an upload to the store), it records it in the state
//! database; once it has removed it (or handed it over: a kept restore, a committed backup)
//! it clears the record. A record whose job no longer holds its lock ([`crate::lock`]) was
//! left by a process that died: the next run, or `lifeboat clean`, removes what it names.
//! Nothing is swept on a guess: a job whose lock is held is alive, whatever its age.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::State;

/// One thing a job may leave behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Debris {
    /// A job's staging directory (snapshot copies, downloaded dumps).
    Staging { path: PathBuf },
    /// A SQLite restore's partial file (with its `-journal`, `-wal`, `-shm`), or a drill's
    /// scratch file.
    Partial { path: PathBuf },
    /// A database a PostgreSQL restore created on the scratch server of `source`.
    ScratchDatabase { source: String, database: String },
    /// An upload to the store: an unfinished multipart upload or temp file for `key`, and the
    /// object itself when the backup it belongs to never got its manifest.
    Upload { key: String },
}

impl Debris {
    /// What it is, for people.
    pub fn describe(&self) -> String {
        match self {
            Debris::Staging { path } => format!("staging {}", path.display()),
            Debris::Partial { path } => format!("partial file {}", path.display()),
            Debris::ScratchDatabase { source, database } => {
                format!("scratch database {database} (source {source})")
            }
            Debris::Upload { key } => format!("upload of {key}"),
        }
    }
}

/// A recorded piece of debris.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub job_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub debris: Debris,
}

/// Records a running job's debris.
#[derive(Debug, Clone)]
pub struct Recorder {
    state: State,
    job_id: String,
    at: DateTime<Utc>,
    /// Why this job cannot record anything: without its lock, its records would look like a
    /// dead job's and be swept while it runs.
    refusal: Option<String>,
}

/// A record to clear once the thing it names is gone or handed over.
#[derive(Debug)]
#[must_use = "clear the record once the debris is gone"]
pub struct Recorded {
    state: State,
    id: i64,
}

impl Recorder {
    /// A recorder for `job`, which must hold its lock.
    pub fn for_job(state: State, job: &crate::jobs::Job) -> Self {
        let record = job.snapshot();
        Recorder {
            state,
            job_id: record.id,
            at: record.started_at,
            refusal: (!job.holds_lock()).then(|| {
                "the job holds no lock in the state directory, so what it creates could not be told from a dead job's leftovers".to_owned()
            }),
        }
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Records `debris` before it is created. A job that cannot record it must not create it.
    pub fn record(&self, debris: &Debris) -> Result<Recorded> {
        if let Some(why) = &self.refusal {
            return Err(Error::Invalid(format!(
                "cannot create {}: {why}",
                debris.describe()
            )));
        }
        let id = self.state.put_debris(&self.job_id, debris, self.at)?;
        Ok(Recorded {
            state: self.state.clone(),
            id,
        })
    }

    /// A staging directory of this job's own below `staging`, recorded and created
    /// (private). Remove it with [`Recorded::remove_dir`].
    pub fn staging_dir(&self, staging: &Path) -> Result<(PathBuf, Recorded)> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(staging).map_err(Error::io(format!(
            "staging directory {}",
            staging.display()
        )))?;
        let path = staging.join(format!("lifeboat-{}", self.job_id));
        let recorded = self.record(&Debris::Staging { path: path.clone() })?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(Error::io(format!("create {}", path.display())))?;
        Ok((path, recorded))
    }
}

impl Recorded {
    /// The debris is gone (or now belongs to someone else): forget it.
    pub fn clear(self) {
        if let Err(e) = self.state.delete_debris(self.id) {
            tracing::warn!("cannot clear a debris record: {e}");
        }
    }

    /// Leaves the record in place: for a later sweep once the job has ended, or for whoever
    /// clears the job's records (a drill, once its scratch database is dropped).
    pub fn keep(self) {}

    /// Removes a staging directory and clears its record; a failure leaves the record for
    /// the next sweep.
    pub fn remove_dir(self, path: &Path) {
        match std::fs::remove_dir_all(path) {
            Ok(()) => self.clear(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.clear(),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
}

/// What a sweep did with one piece of debris.
#[derive(Debug, Clone, Serialize)]
pub struct Swept {
    pub what: String,
    pub job_id: Option<String>,
    /// `None` when removed (or, in a dry run, when it would be); else why it was kept.
    pub error: Option<String>,
}

/// The records whose job is dead, oldest first.
pub fn dead(state: &State) -> Result<Vec<Entry>> {
    let locks = state.job_lock_dir();
    Ok(state
        .debris()?
        .into_iter()
        .filter(|e| !crate::lock::job_alive(&locks, &e.job_id))
        .collect())
}

/// Removes a file and the files SQLite keeps beside it.
pub(crate) fn remove_with_sidecars(path: &Path) -> std::io::Result<()> {
    for ext in ["-journal", "-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(ext);
        match std::fs::remove_file(PathBuf::from(side)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long one removal may take before the sweep moves on (a scratch server that does not
/// answer must not hold up a backup).
const REMOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl crate::Lifeboat {
    /// Removes what dead jobs left behind and was recorded. With `dry_run`, only says what it
    /// would remove.
    pub async fn sweep_debris(&self, dry_run: bool) -> Result<Vec<Swept>> {
        let mut out = Vec::new();
        for entry in dead(self.state())? {
            let what = entry.debris.describe();
            let removed = if dry_run {
                Ok(())
            } else {
                match tokio::time::timeout(REMOVE_TIMEOUT, self.remove_debris(&entry.debris)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(Error::Invalid(format!(
                        "no answer within {}s",
                        REMOVE_TIMEOUT.as_secs()
                    ))),
                }
            };
            let error = match removed {
                Ok(()) => {
                    if !dry_run {
                        self.state().delete_debris(entry.id)?;
                        tracing::info!("removed {what}, left by job {}", entry.job_id);
                    }
                    None
                }
                Err(e) => {
                    tracing::warn!("cannot remove {what}, left by job {}: {e}", entry.job_id);
                    Some(e.to_string())
                }
            };
            out.push(Swept {
                what,
                job_id: Some(entry.job_id),
                error,
            });
        }
        Ok(out)
    }

    /// [`Lifeboat::sweep_debris`], and temp files in the store whose writer died (a job
    /// record or an object cut short by a kill).
    pub async fn clean(&self, dry_run: bool) -> Result<Vec<Swept>> {
        let mut out = self.sweep_debris(dry_run).await?;
        for upload in self.store().list_incomplete("").await? {
            if upload.writer_alive != Some(false) {
                continue;
            }
            let what = format!(
                "temp file {} (an unfinished write of {})",
                upload.handle, upload.key
            );
            let error = if dry_run {
                None
            } else {
                self.store()
                    .abort_incomplete(&upload)
                    .await
                    .err()
                    .map(|e| e.to_string())
            };
            out.push(Swept {
                what,
                job_id: None,
                error,
            });
        }
        Ok(out)
    }

    async fn remove_debris(&self, debris: &Debris) -> Result<()> {
        use crate::storage::ObjectKey;
        match debris {
            Debris::Staging { path } => match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
                Ok(_) => std::fs::remove_file(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
            .map_err(Error::io(format!("remove {}", path.display()))),
            Debris::Partial { path } => {
                remove_with_sidecars(path).map_err(Error::io(format!("remove {}", path.display())))
            }
            Debris::ScratchDatabase { source, database } => {
                use crate::engine::{Engine, Postgres};
                let target = Postgres.target(self.source(source), database)?;
                Postgres.drop_scratch(&target).await
            }
            Debris::Upload { key } => {
                let key = ObjectKey::new(key.clone())?;
                let dir = key.as_str().rsplit_once('/').map_or("", |(d, _)| d);
                let under = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                for upload in self.store().list_incomplete(&under).await? {
                    if upload.key == key.as_str() {
                        self.store().abort_incomplete(&upload).await?;
                    }
                }
                // The object itself, when the backup it was for never got its manifest:
                // nothing will ever commit it now.
                let manifest =
                    ObjectKey::new(format!("{under}{}", crate::manifest::MANIFEST_NAME))?;
                if key != manifest && self.store().head(&manifest).await?.is_none() {
                    self.store().delete_many(std::slice::from_ref(&key)).await?;
                }
                Ok(())
            }
        }
    }
}
