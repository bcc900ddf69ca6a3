//! `wal get --spool DIR`: segments fetched ahead of recovery, like pgBackRest's archive-get
//! queue. PostgreSQL asks for one segment at a time and replays it before asking for the
//! next, so every fetch (download, two SHA-256 checks, decompression, fsync) would otherwise
//! stall recovery. After serving a segment, `wal get` leaves its name in the spool and starts
//! a background `wal prefetch` (unless one runs), which keeps the next segments there.
//!
//! A file sits in the spool under its own name only once [`archive::get`] has checked both
//! of its hashes against its record, so serving one is a rename. Nothing else is trusted:
//! names are parsed, links are refused, and the spool holds at most [`QUEUE_BYTES`] of
//! segments. The spool belongs to the restore that made it; `wal get` never creates it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::archive;
use super::names::{Segment, WalName, valid_segment_size};
use crate::error::{Error, Result};
use crate::pipeline::crypt::EncryptionConfig;
use crate::storage::ObjectStore;

/// How much WAL the spool holds ahead of recovery (pgBackRest's default queue, 8 segments
/// of 16 MiB).
pub const QUEUE_BYTES: u64 = 128 << 20;
/// The last segment recovery asked for, and the segment size: `NAME SIZE`.
const WANTED: &str = "wanted";
const LOCK: &str = "prefetch.lock";
const PARTIAL_SUFFIX: &str = ".lifeboat-partial";

/// Moves `name` from the spool to `dest` if a prefetch put it there. `Ok(false)` when it is
/// not spooled (the caller fetches it from the store).
pub fn take(spool: &Path, name: &str, dest: &Path) -> Result<bool> {
    if !matches!(WalName::parse(name), Some(WalName::Segment { .. })) {
        return Ok(false);
    }
    let path = spool.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() && valid_segment_size(m.len()) => {}
        _ => return Ok(false),
    }
    match std::fs::rename(&path, dest) {
        Ok(()) => Ok(true),
        // Gone meanwhile (a cleanup), or on another file system: fetch it the usual way.
        Err(_) => Ok(false),
    }
}

/// After `name` was served: records it as where recovery stands, and whether a prefetch
/// should start (none is running and the spool exists).
pub fn note_served(spool: &Path, name: &str, dest: &Path) -> Result<bool> {
    if !matches!(WalName::parse(name), Some(WalName::Segment { .. })) || !spool.is_dir() {
        return Ok(false);
    }
    let size = std::fs::metadata(dest)
        .map_err(Error::io(format!("cannot read {}", dest.display())))?
        .len();
    if !valid_segment_size(size) {
        return Ok(false);
    }
    let tmp = spool.join(format!("{WANTED}.tmp"));
    std::fs::write(&tmp, format!("{name} {size}\n"))
        .and_then(|()| std::fs::rename(&tmp, spool.join(WANTED)))
        .map_err(Error::io(format!("cannot write into {}", spool.display())))?;
    // Written before the lock is looked at: a prefetch that is about to stop reads it again
    // after letting go of the lock (see [`run`]).
    Ok(SpoolLock::try_take(spool)?.is_some())
}

/// Keeps the segments after the one recovery asked for last in the spool, until they are
/// all there or the archive ends. Returns at once if another prefetch runs.
pub async fn run(
    store: &dyn ObjectStore,
    source: &str,
    spool: &Path,
    keys: Option<&EncryptionConfig>,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some(mut lock) = SpoolLock::try_take(spool)? else {
        return Ok(());
    };
    // A prefetch killed mid-download leaves its partial file; only a lock holder writes one.
    for entry in read_spool(spool)? {
        if entry.ends_with(PARTIAL_SUFFIX) {
            let _ = std::fs::remove_file(spool.join(&entry));
        }
    }
    loop {
        let Some((wanted, size)) = read_wanted(spool)? else {
            return Ok(());
        };
        let window = window(wanted, size);
        let names: Vec<String> = window.iter().map(|s| s.name(size)).collect();
        for entry in read_spool(spool)? {
            if WalName::parse(&entry).is_some() && !names.contains(&entry) {
                let _ = std::fs::remove_file(spool.join(&entry));
            }
        }
        let next = names.iter().find(|n| !spool.join(n.as_str()).exists());
        match next {
            Some(name) => {
                if !archive::get(store, source, name, &spool.join(name), keys, cancel).await? {
                    // The end of the archive: recovery will be told so by the store itself.
                    return Ok(());
                }
            }
            None => {
                // Full. Recovery may have moved on while the lock was held: look again
                // without it, so that a `wal get` that saw it held is not left unserved.
                drop(lock);
                if read_wanted(spool)? == Some((wanted, size)) {
                    return Ok(());
                }
                match SpoolLock::try_take(spool)? {
                    Some(l) => lock = l,
                    None => return Ok(()),
                }
            }
        }
    }
}

/// The segments to hold after `wanted`.
fn window(wanted: Segment, size: u64) -> Vec<Segment> {
    let count = (QUEUE_BYTES / size).max(1);
    (1..=count)
        .map(|i| Segment {
            timeline: wanted.timeline,
            number: wanted.number + i,
        })
        .collect()
}

fn read_wanted(spool: &Path) -> Result<Option<(Segment, u64)>> {
    let text = match std::fs::read_to_string(spool.join(WANTED)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot read {}", spool.display()))(e)),
    };
    let parsed = text.trim().split_once(' ').and_then(|(name, size)| {
        let size: u64 = size.parse().ok()?;
        valid_segment_size(size)
            .then(|| Segment::from_name(name, size))
            .flatten()
            .map(|s| (s, size))
    });
    Ok(parsed)
}

fn read_spool(spool: &Path) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(spool).map_err(Error::io(format!("cannot read {}", spool.display())))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// One prefetch per spool: an advisory lock the kernel drops with its holder.
struct SpoolLock {
    _held: File,
}

impl SpoolLock {
    fn try_take(spool: &Path) -> Result<Option<SpoolLock>> {
        let path = spool.join(LOCK);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(format!("cannot open {}", path.display())))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(SpoolLock { _held: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(Error::io(format!("cannot lock {}", path.display()))(err))
        }
    }
}

/// The spool of a scratch cluster, beside its data directory.
pub fn spool_of(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("wal-spool")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    #[test]
    fn the_window_is_the_next_segments_up_to_the_queue() {
        let at = Segment::from_name("0000000200000000000000FE", MB16).unwrap();
        let names: Vec<String> = window(at, MB16).iter().map(|s| s.name(MB16)).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "0000000200000000000000FF");
        // Across a log boundary.
        assert_eq!(names[1], "000000020000000100000000");
        // A 1 GiB segment still leaves one to prefetch.
        assert_eq!(
            window(
                Segment {
                    timeline: 1,
                    number: 3
                },
                1 << 30
            )
            .len(),
            1
        );
    }

    #[test]
    fn only_spooled_segments_are_taken_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        let name = "000000010000000000000004";
        assert!(!take(&spool, name, &dest).unwrap());
        // Not a whole segment, a link, a name PostgreSQL does not use: never served.
        std::fs::write(spool.join(name), b"short").unwrap();
        assert!(!take(&spool, name, &dest).unwrap());
        std::fs::remove_file(spool.join(name)).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, vec![1u8; MB16 as usize]).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.join(name)).unwrap();
        assert!(!take(&spool, name, &dest).unwrap());
        assert!(!take(&spool, "../elsewhere", &dest).unwrap());
        std::fs::remove_file(spool.join(name)).unwrap();
        std::fs::write(spool.join(name), vec![2u8; MB16 as usize]).unwrap();
        assert!(take(&spool, name, &dest).unwrap());
        assert!(!spool.join(name).exists());
        assert_eq!(std::fs::metadata(&dest).unwrap().len(), MB16);

        // Served: where recovery stands is noted, and a prefetch may start unless one runs.
        assert!(note_served(&spool, name, &dest).unwrap());
        assert_eq!(
            read_wanted(&spool).unwrap(),
            Some((Segment::from_name(name, MB16).unwrap(), MB16))
        );
        let held = SpoolLock::try_take(&spool).unwrap().unwrap();
        assert!(SpoolLock::try_take(&spool).unwrap().is_none());
        assert!(!note_served(&spool, name, &dest).unwrap());
        drop(held);
        // No spool (the restore removed it): nothing is created, nothing starts.
        std::fs::remove_dir_all(&spool).unwrap();
        assert!(!note_served(&spool, name, &dest).unwrap());
        assert!(!spool.exists());
    }
}
