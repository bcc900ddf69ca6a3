//! Advisory `flock`s in the state directory. The kernel drops a lock when its holder dies,
//! so a crash never leaves anything locked, and a lock that can be taken proves its holder
//! is gone (a process id could have been reused by then; a lock cannot).
//!
//! - One job per source at a time on a machine: a file per source, held by the daemon and by
//!   CLI backups alike ([`SourceLock`]).
//! - Every running job holds a file named after it ([`JobLock`]): how a later run tells a
//!   job that died from one still running, and so what it left behind may be swept.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held while a job runs; dropping it releases the lock.
#[derive(Debug)]
pub struct SourceLock {
    file: File,
    path: PathBuf,
}

impl SourceLock {
    /// Takes the lock for `source` in `dir`, or says who holds it.
    pub fn acquire(dir: &Path, source: &str) -> Result<SourceLock> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("lock dir {}", dir.display())))?;
        let path = dir.join(format!("{source}.lock"));
        let ctx = format!("lock file {}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(ctx.clone()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(ctx)(err));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked {
                name: source.to_owned(),
                pid: if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder.to_owned()
                },
            });
        }
        // The pid is for the message above only; the flock is the lock.
        let write = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        write.map_err(Error::io(ctx))?;
        Ok(SourceLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SourceLock {
    fn drop(&mut self) {
        // Emptied so a stale pid is never reported; the lock itself goes with the descriptor.
        let _ = self.file.set_len(0);
    }
}

/// Where job locks live, beside the state database.
pub fn job_lock_dir(state_path: &Path) -> PathBuf {
    state_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("locks")
        .join("jobs")
}

/// Held for as long as a job runs.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

impl JobLock {
    pub fn acquire(dir: &Path, job_id: &str) -> Result<JobLock> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("lock dir {}", dir.display())))?;
        let path = dir.join(format!("{job_id}.lock"));
        let ctx = format!("lock file {}", path.display());
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(ctx.clone()))?;
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                Error::Invalid(format!("job {job_id} is already running"))
            }
            std::fs::TryLockError::Error(e) => Error::io(ctx)(e),
        })?;
        Ok(JobLock { _file: file, path })
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Removed while still held; a checker that opened it just before sees the job ended.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the job `job_id` still runs: some process holds its lock. A job without a lock
/// file is not running.
pub fn job_alive(dir: &Path, job_id: &str) -> bool {
    let Ok(file) = File::open(dir.join(format!("{job_id}.lock"))) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Cannot tell: treat it as alive, never sweep on a guess.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = SourceLock::acquire(dir.path(), "shop").unwrap();
        let err = SourceLock::acquire(dir.path(), "shop")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "another lifeboat job holds the lock for source shop (pid {})",
                std::process::id()
            )
        );
        // Other sources are independent.
        let _other = SourceLock::acquire(dir.path(), "billing").unwrap();
        drop(first);
        SourceLock::acquire(dir.path(), "shop").unwrap();
    }

    #[test]
    fn a_job_is_alive_while_its_lock_is_held_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!job_alive(dir.path(), "j1"), "no lock file: not running");
        let lock = JobLock::acquire(dir.path(), "j1").unwrap();
        // Checked through another descriptor, as another process would.
        assert!(job_alive(dir.path(), "j1"));
        assert!(!job_alive(dir.path(), "j2"));
        drop(lock);
        assert!(!job_alive(dir.path(), "j1"));
        // A lock file left by a killed process (nobody holds it) is not a live job.
        std::fs::write(dir.path().join("j3.lock"), "").unwrap();
        assert!(!job_alive(dir.path(), "j3"));
    }
}
