//! One job per source at a time on a machine: an advisory `flock` on a file per source in the
//! state directory, held by the daemon and by CLI backups alike. The kernel drops the lock
//! when its holder dies, so a crash never leaves a source locked.

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
}
