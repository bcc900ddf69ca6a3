//! A directory tree read as a bucket listing: every regular file below a directory, in the
//! lexicographic order of its key, resumable after any key.
//!
//! Sorting each directory by its entries' names, with `/` appended to the names of
//! directories, puts keys in the order a bucket lists them (`a-b` before `a/x`), so a
//! depth-first walk yields them already sorted. Only the directories on the current path are
//! held, and resuming after a key opens only the directories on that key's path: reading a
//! whole tree page by page costs one pass over it, not one per page.
//!
//! Symbolic links are never followed (directories are opened with `O_NOFOLLOW`, files are
//! stat'ed without following); names that are not UTF-8 are skipped.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::local::io_err;
use super::{ObjectMeta, StoreResult};

pub(super) struct Walk {
    root: PathBuf,
    prefix: String,
    /// Only keys after this one are wanted.
    after: Option<String>,
    levels: Vec<Level>,
    /// An object read ahead to learn whether a page is the last.
    peeked: Option<ObjectMeta>,
    /// Where directory entries are read into.
    buf: Vec<std::mem::MaybeUninit<u8>>,
}

/// Bytes of directory entries read at a time.
const DIR_BUF: usize = 32 * 1024;

struct Level {
    fd: OwnedFd,
    /// The directory's key prefix: empty at the root, else ending in `/`.
    rel: String,
    /// Names in key order; a directory's ends in `/`.
    entries: Vec<String>,
    next: usize,
}

impl Walk {
    /// A walk of the keys under `prefix` after `after`, starting in `dir` (the directory
    /// the prefix names, whose key prefix is `rel`).
    pub(super) fn new(
        root: &Path,
        dir: OwnedFd,
        rel: &str,
        prefix: &str,
        after: Option<&str>,
    ) -> StoreResult<Walk> {
        let mut walk = Walk {
            root: root.to_path_buf(),
            prefix: prefix.to_owned(),
            after: after.map(str::to_owned),
            levels: Vec::new(),
            peeked: None,
            buf: Vec::new(),
        };
        let rel = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        walk.descend(dir, rel)?;
        Ok(walk)
    }

    /// An empty walk (the prefix names no directory).
    pub(super) fn empty(root: &Path) -> Walk {
        Walk {
            root: root.to_path_buf(),
            prefix: String::new(),
            after: None,
            levels: Vec::new(),
            peeked: None,
            buf: Vec::new(),
        }
    }

    /// Whether keys below `full` (a file's key, or a directory's ending in `/`) may be wanted.
    fn wanted(&self, full: &str) -> bool {
        let under_prefix = if full.ends_with('/') {
            full.starts_with(&self.prefix) || self.prefix.starts_with(full)
        } else {
            full.starts_with(&self.prefix)
        };
        // A directory sorting before `after` still holds wanted keys if `after` is inside it.
        let past = match &self.after {
            None => true,
            Some(after) => {
                full > after.as_str() || (full.ends_with('/') && after.starts_with(full))
            }
        };
        under_prefix && past
    }

    fn descend(&mut self, fd: OwnedFd, rel: String) -> StoreResult<()> {
        let here = || self.root.join(&rel);
        // Entries straight from the descriptor into one reused buffer: `Dir` would reopen
        // the directory and allocate, for each of the bucket's 100,000 directories.
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(DIR_BUF, std::mem::MaybeUninit::uninit());
        let mut dir = rustix::fs::RawDir::new(&fd, &mut buf);
        let mut entries = Vec::new();
        while let Some(entry) = dir.next() {
            let entry = entry.map_err(|e| io_err("list", &here(), e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                {
                    Ok(st) => FileType::from_raw_mode(st.st_mode as _),
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(io_err("stat", &here().join(name), e.into())),
                },
                kind => kind,
            };
            let sort = match kind {
                FileType::Directory => format!("{name}/"),
                FileType::RegularFile => name.to_owned(),
                _ => continue,
            };
            if self.wanted(&format!("{rel}{sort}")) {
                entries.push(sort);
            }
        }
        self.buf = buf;
        entries.sort_unstable();
        self.levels.push(Level {
            fd,
            rel,
            entries,
            next: 0,
        });
        Ok(())
    }

    /// The next object in key order, temp files included.
    pub(super) fn next_object(&mut self) -> StoreResult<Option<ObjectMeta>> {
        if let Some(o) = self.peeked.take() {
            return Ok(Some(o));
        }
        loop {
            let Some(level) = self.levels.last_mut() else {
                return Ok(None);
            };
            let Some(sort) = level.entries.get(level.next) else {
                self.levels.pop();
                continue;
            };
            level.next += 1;
            let full = format!("{}{sort}", level.rel);
            if let Some(name) = sort.strip_suffix('/') {
                let opened = rustix::fs::openat(
                    &level.fd,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                match opened {
                    Ok(sub) => self.descend(sub, full)?,
                    // Removed, or replaced by a file or a link, since it was read.
                    Err(
                        rustix::io::Errno::NOENT
                        | rustix::io::Errno::NOTDIR
                        | rustix::io::Errno::LOOP,
                    ) => {}
                    Err(e) => return Err(io_err("list", &self.root.join(&full), e.into())),
                }
                continue;
            }
            let st = match rustix::fs::statat(&level.fd, sort.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(io_err("stat", &self.root.join(&full), e.into())),
            };
            if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
                continue;
            }
            return Ok(Some(ObjectMeta {
                key: full,
                size: st.st_size as u64,
                last_modified: DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32),
            }));
        }
    }

    /// Puts an object back, to be returned by the next [`Walk::next_object`].
    pub(super) fn unread(&mut self, o: ObjectMeta) {
        self.peeked = Some(o);
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }
}
