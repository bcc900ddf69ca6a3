//! A directory as a bucket. Same key layout as S3.
//!
//! Every write goes to a temp file beside its destination, is flushed, fsynced and its size
//! checked, then renamed and its directory fsynced: a reader never sees half an object, and a
//! write that failed (a full disk) never reports success. The writer holds a `flock` on its
//! temp file, so a later run can tell a dead writer's temp file from a live one.
//!
//! Paths below the root are walked one directory at a time with `O_NOFOLLOW`: a symbolic link
//! planted inside the store (say `_lifeboat/jobs` pointing elsewhere) is refused, never
//! followed. Objects are created with the store's mode (default 0600, directories 0700).

use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::DateTime;
use futures_util::TryStreamExt;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::walk::Walk;
use super::{
    ByteStream, IncompleteUpload, ListPage, ObjectKey, ObjectMeta, ObjectStore, PutOutcome,
    StoreError, StoreResult,
};

const TMP_MARKER: &str = ".lifeboat-tmp-";
const PAGE_SIZE: usize = 1000;
/// Listings kept open between pages; an older one resumes by a fresh walk after its token.
const PARKED_WALKS: usize = 4;
/// Objects are private to the account lifeboat runs as unless configured otherwise.
pub const DEFAULT_MODE: u32 = 0o600;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    mode: u32,
    /// Listings in progress, so the next page continues where the last one stopped.
    cursors: Arc<Cursors>,
}

/// Walks stopped at the end of a page, by the page's last key.
#[derive(Default)]
struct Cursors(Mutex<Vec<(String, Walk)>>);

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors")
    }
}

/// An object's directory, opened, and the descriptors of every directory above it up to the
/// root (for removing emptied directories).
struct Chain {
    fds: Vec<OwnedFd>,
    segments: Vec<String>,
}

impl Chain {
    fn dir(&self) -> &OwnedFd {
        self.fds.last().expect("a chain starts at the root")
    }
}

impl LocalStore {
    /// Opens (and creates if needed) the directory that plays the bucket.
    pub fn open(root: impl Into<PathBuf>) -> StoreResult<Self> {
        Self::open_with_mode(root, DEFAULT_MODE)
    }

    /// Like [`LocalStore::open`], with the permission bits of new objects (directories get
    /// the same plus search permission where reading is allowed).
    pub fn open_with_mode(root: impl Into<PathBuf>, mode: u32) -> StoreResult<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let root = root.into();
        let store = LocalStore {
            root,
            mode: mode & 0o777,
            cursors: Arc::default(),
        };
        if !store.root.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(store.dir_mode())
                .create(&store.root)
                .map_err(|e| io_err("create directory", &store.root, e))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The permission bits of new objects.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    fn dir_mode(&self) -> u32 {
        self.mode | ((self.mode & 0o444) >> 2)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn open_root(&self) -> StoreResult<OwnedFd> {
        rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", &self.root, e.into()))
    }

    /// Opens the directories of `dir_segments` below the root one by one, never following a
    /// symbolic link. `None` when one does not exist and `create` is false.
    fn walk_dirs(&self, dir_segments: &[&str], create: bool) -> StoreResult<Option<Chain>> {
        let mut chain = Chain {
            fds: vec![self.open_root()?],
            segments: Vec::new(),
        };
        let mut rel = String::new();
        for seg in dir_segments {
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(seg);
            let here = self.path(&rel);
            let open = |parent: &OwnedFd| {
                rustix::fs::openat(
                    parent,
                    *seg,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let fd = match open(chain.dir()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(chain.dir(), *seg, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create directory", &here, e.into())),
                    }
                    let fd = open(chain.dir()).map_err(|e| open_err(chain.dir(), seg, &here, e))?;
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(self.dir_mode()))
                        .map_err(|e| io_err("chmod", &here, e.into()))?;
                    // The new directory's entry must be durable before anything in it is.
                    rustix::fs::fsync(chain.dir())
                        .map_err(|e| io_err("fsync", here.parent().unwrap_or(&here), e.into()))?;
                    fd
                }
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(e) => return Err(open_err(chain.dir(), seg, &here, e)),
            };
            chain.fds.push(fd);
            chain.segments.push((*seg).to_owned());
        }
        Ok(Some(chain))
    }

    /// The directory chain of a key and the key's last segment.
    fn locate<'k>(&self, key: &'k str, create: bool) -> StoreResult<Option<(Chain, &'k str)>> {
        let (dirs, name) = match key.rsplit_once('/') {
            Some((d, n)) => (d.split('/').collect::<Vec<_>>(), n),
            None => (Vec::new(), key),
        };
        Ok(self.walk_dirs(&dirs, create)?.map(|c| (c, name)))
    }

    /// Opens an existing object for reading, refusing a symbolic link.
    fn open_object(&self, key: &ObjectKey) -> StoreResult<File> {
        let not_found = || StoreError::NotFound(key.to_string());
        let (chain, name) = self.locate(key.as_str(), false)?.ok_or_else(not_found)?;
        let path = self.path(key.as_str());
        let fd = rustix::fs::openat(
            chain.dir(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => not_found(),
            e => open_err(chain.dir(), name, &path, e),
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| io_err("stat", &path, e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok(file)
    }

    /// A walk of the keys under `prefix` after `after`, temp files included (see [`Walk`]).
    fn walk(&self, prefix: &str, after: Option<&str>) -> StoreResult<Walk> {
        // Descend only into the directory the prefix names, not the whole tree.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let segments: Vec<&str> = dir_part.split('/').filter(|s| !s.is_empty()).collect();
        let chain = match self.walk_dirs(&segments, false) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(Walk::empty(&self.root)),
            // A prefix that runs into a file or a link holds no objects.
            Err(StoreError::Symlink(_)) => return Ok(Walk::empty(&self.root)),
            Err(e) => return Err(e),
        };
        let start = chain
            .fds
            .into_iter()
            .next_back()
            .expect("a chain has a root");
        Walk::new(&self.root, start, dir_part, prefix, after)
    }

    /// The walk that stopped at `token` under `prefix`, if it is still parked, or a new one
    /// resuming after `token`.
    fn resume(&self, prefix: &str, token: Option<&str>) -> StoreResult<Walk> {
        if let Some(token) = token {
            let mut parked = self.cursors.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = parked
                .iter()
                .position(|(last, w)| last == token && w.prefix() == prefix)
            {
                return Ok(parked.swap_remove(i).1);
            }
        }
        self.walk(prefix, token)
    }

    /// The next page of `walk`, which is parked for the page after it.
    fn read_page(&self, mut walk: Walk) -> StoreResult<ListPage> {
        let mut page = ListPage::default();
        // Temp files are not objects: they are reported as unfinished uploads.
        let mut next_object = |page: &mut ListPage| loop {
            match walk.next_object()? {
                Some(o) if is_temp(&o.key) => page.incomplete.push(self.incomplete(o)),
                found => return Ok::<_, StoreError>(found),
            }
        };
        while page.objects.len() < PAGE_SIZE {
            match next_object(&mut page)? {
                Some(o) => page.objects.push(o),
                None => return Ok(page),
            }
        }
        let Some(ahead) = next_object(&mut page)? else {
            return Ok(page);
        };
        walk.unread(ahead);
        page.next = page.objects.last().map(|o| o.key.clone());
        if let Some(last) = &page.next {
            self.park(last.clone(), walk);
        }
        Ok(page)
    }

    fn park(&self, last: String, walk: Walk) {
        let mut parked = self.cursors.0.lock().unwrap_or_else(|e| e.into_inner());
        if parked.len() >= PARKED_WALKS {
            parked.remove(0);
        }
        parked.push((last, walk));
    }

    /// Creates a temp file for `name` in `dir`, private and locked by this process.
    fn create_temp(&self, chain: &Chain, name: &str, path: &Path) -> StoreResult<(String, File)> {
        loop {
            let tmp = format!(".{name}{TMP_MARKER}{:08x}", fastrand::u32(..));
            let fd = match rustix::fs::openat(
                chain.dir(),
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(self.mode),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(io_err("create", path, e.into())),
            };
            // The umask may have taken bits the configured mode asks for.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(self.mode))
                .map_err(|e| io_err("chmod", path, e.into()))?;
            let file = File::from(fd);
            // Held until the descriptor closes: the sign that a writer is alive.
            file.lock().map_err(|e| io_err("lock", path, e))?;
            // A sweeper that took the lock first has removed the name: start again.
            let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
            if meta.nlink() == 0 {
                continue;
            }
            return Ok((tmp, file));
        }
    }

    /// Removes a temp file if no live writer holds it. Returns false when one does.
    fn remove_dead_temp(&self, key: &str) -> StoreResult<bool> {
        let Some((chain, name)) = self.locate(key, false)? else {
            return Ok(true);
        };
        let path = self.path(key);
        let file = match rustix::fs::openat(
            chain.dir(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => return Ok(true),
            Err(e) => return Err(open_err(chain.dir(), name, &path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &path, e)),
        }
        // Unlinked while the lock is held, so a writer racing for it sees the name gone.
        match rustix::fs::unlinkat(chain.dir(), name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_err("delete", &path, e.into())),
        }
        drop(file);
        tidy(&chain);
        Ok(true)
    }

    /// A temp file as the upload it was part of.
    fn incomplete(&self, temp: ObjectMeta) -> IncompleteUpload {
        IncompleteUpload {
            key: temp_target(&temp.key),
            started: temp.last_modified,
            writer_alive: self.temp_is_live(&temp.key),
            handle: temp.key,
        }
    }

    /// Whether a live process holds the temp file `key` (see [`LocalStore::create_temp`]).
    fn temp_is_live(&self, key: &str) -> Option<bool> {
        let (chain, name) = self.locate(key, false).ok()??;
        let fd = rustix::fs::openat(
            chain.dir(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let file = File::from(fd);
        match file.try_lock() {
            Ok(()) => Some(false),
            Err(TryLockError::WouldBlock) => Some(true),
            Err(TryLockError::Error(_)) => None,
        }
    }

    fn delete_blocking(&self, key: &ObjectKey) -> StoreResult<()> {
        let Some((chain, name)) = self.locate(key.as_str(), false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(chain.dir(), name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_err("delete", &self.path(key.as_str()), e.into())),
        }
        tidy(&chain);
        Ok(())
    }
}

/// Removes now-empty directories up to the root, as a bucket has no directories.
fn tidy(chain: &Chain) {
    for i in (0..chain.segments.len()).rev() {
        if rustix::fs::unlinkat(
            &chain.fds[i],
            chain.segments[i].as_str(),
            AtFlags::REMOVEDIR,
        )
        .is_err()
        {
            break;
        }
    }
}

pub(super) fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// An error opening `name` in `parent` (at `path`): a symbolic link is named as such, since
/// `O_NOFOLLOW` reports one only as "too many levels of symbolic links" or "not a directory".
fn open_err(parent: &OwnedFd, name: &str, path: &Path, e: rustix::io::Errno) -> StoreError {
    let link = matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)
        && rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink);
    if link {
        StoreError::Symlink(path.display().to_string())
    } else {
        io_err("open", path, e.into())
    }
}

fn is_temp(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|name| name.contains(TMP_MARKER))
}

/// The object a temp file was going to become.
fn temp_target(tmp: &str) -> String {
    let (dir, name) = tmp.rsplit_once('/').unwrap_or(("", tmp));
    let target = name.trim_start_matches('.');
    let target = target.split(TMP_MARKER).next().unwrap_or(target);
    if dir.is_empty() {
        target.to_owned()
    } else {
        format!("{dir}/{target}")
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Request {
            op: "local store",
            key: String::new(),
            detail: e.to_string(),
        })?
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || this.read_page(this.resume(&prefix, token.as_deref())?)).await
    }

    async fn list_page_after(&self, prefix: &str, after: &str) -> StoreResult<ListPage> {
        let this = self.clone();
        let (prefix, after) = (prefix.to_owned(), after.to_owned());
        blocking(move || this.read_page(this.walk(&prefix, Some(&after))?)).await
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            let Some((chain, name)) = this.locate(key.as_str(), false)? else {
                return Ok(None);
            };
            match rustix::fs::statat(chain.dir(), name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile => {
                    Ok(Some(ObjectMeta {
                        key: key.to_string(),
                        size: st.st_size as u64,
                        last_modified: DateTime::from_timestamp(
                            st.st_mtime,
                            st.st_mtime_nsec as u32,
                        ),
                    }))
                }
                Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(None),
                Err(e) => Err(io_err("stat", &this.path(key.as_str()), e.into())),
            }
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        let this = self.clone();
        let key = key.clone();
        let file = blocking(move || this.open_object(&key)).await?;
        Ok(Box::pin(ReaderStream::with_capacity(
            tokio::fs::File::from_std(file),
            256 * 1024,
        )))
    }

    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        let this = self.clone();
        let owned = key.clone();
        let file = blocking(move || this.open_object(&owned)).await?;
        let mut buf = Vec::new();
        tokio::fs::File::from_std(file)
            .take(len)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| io_err("read", &self.path(key.as_str()), e))?;
        Ok(buf.into())
    }

    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> StoreResult<PutOutcome> {
        let path = self.path(key.as_str());
        let (chain, tmp, file) = {
            let this = self.clone();
            let key = key.clone();
            let path = path.clone();
            blocking(move || {
                let (chain, name) = this
                    .locate(key.as_str(), true)?
                    .expect("directories are created");
                let (tmp, file) = this.create_temp(&chain, name, &path)?;
                Ok((chain, tmp, file))
            })
            .await?
        };
        let mut file = tokio::fs::File::from_std(file);
        let written = async {
            let mut size = 0u64;
            while let Some(chunk) = body.try_next().await.map_err(|source| StoreError::Body {
                key: key.to_string(),
                source,
            })? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_err("write", &path, e))?;
                size += chunk.len() as u64;
            }
            // tokio hands writes to a blocking thread and reports their failure only on the
            // next operation: flush before the fsync, or the last write's error is lost.
            file.flush().await.map_err(|e| io_err("write", &path, e))?;
            file.sync_all()
                .await
                .map_err(|e| io_err("fsync", &path, e))?;
            let on_disk = file
                .metadata()
                .await
                .map_err(|e| io_err("stat", &path, e))?
                .len();
            if on_disk != size {
                return Err(StoreError::Short {
                    key: key.to_string(),
                    expected: size,
                    actual: on_disk,
                });
            }
            Ok(size)
        }
        .await;
        let name = key.name().to_owned();
        let committed = blocking(move || {
            let result = written.and_then(|size| {
                rustix::fs::renameat(chain.dir(), tmp.as_str(), chain.dir(), name.as_str())
                    .map_err(|e| io_err("rename", &path, e.into()))?;
                // Make the rename itself durable.
                rustix::fs::fsync(chain.dir())
                    .map_err(|e| io_err("fsync", path.parent().unwrap_or(&path), e.into()))?;
                Ok(size)
            });
            if result.is_err() {
                let _ = rustix::fs::unlinkat(chain.dir(), tmp.as_str(), AtFlags::empty());
            }
            result
        });
        let size = committed.await?;
        drop(file);
        Ok(PutOutcome {
            size,
            parts: 1,
            etag: None,
        })
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        let this = self.clone();
        let keys = keys.to_vec();
        blocking(move || keys.iter().try_for_each(|k| this.delete_blocking(k))).await
    }

    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        // The handle is the temp file's own key; only temp files may go this way.
        if !is_temp(&upload.handle) {
            return Err(StoreError::Request {
                op: "abort upload of",
                key: upload.key.clone(),
                detail: format!("{} is not an upload in progress", upload.handle),
            });
        }
        let handle = ObjectKey::new(upload.handle.clone())?;
        let this = self.clone();
        let removed = blocking(move || this.remove_dead_temp(handle.as_str())).await?;
        if removed {
            Ok(())
        } else {
            Err(StoreError::Request {
                op: "abort upload of",
                key: upload.key.clone(),
                detail: "a running process is still writing it".into(),
            })
        }
    }

    fn lists_incomplete(&self) -> bool {
        true
    }

    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut walk = this.walk(&prefix, None)?;
            let mut out = Vec::new();
            while let Some(o) = walk.next_object()? {
                if is_temp(&o.key) {
                    out.push(this.incomplete(o));
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_map_back_to_their_object() {
        assert_eq!(
            temp_target("app/x/.data.sqlite.zst.lifeboat-tmp-0a1b2c3d"),
            "app/x/data.sqlite.zst"
        );
        assert_eq!(temp_target(".pins.json.lifeboat-tmp-00000000"), "pins.json");
        assert!(is_temp("a/.b.lifeboat-tmp-1"));
        assert!(!is_temp("a/b"));
    }

    fn touch(root: &Path, key: &str) {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, key.as_bytes()).unwrap();
    }

    async fn pages(store: &LocalStore, prefix: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = store.list_page(prefix, token).await.unwrap();
            out.push(page.objects.into_iter().map(|o| o.key).collect());
            match page.next {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    #[tokio::test]
    async fn listing_pages_are_in_key_order_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut keys = Vec::new();
        // Names that sort differently as keys than as directory entries: `a-b` < `a/x` <
        // `a0`, since `-` < `/` < `0`.
        for key in [
            "a-b",
            "a/x",
            "a/x-y/z",
            "a/x0/y",
            "a0",
            "a.b/c",
            "_lifeboat/jobs/j.json",
        ] {
            keys.push(key.to_owned());
        }
        for i in 0..2500 {
            keys.push(format!("shop/{:05}/manifest.json", i * 7 % 2500));
            keys.push(format!("shop/{:05}/data.sqlite.zst", i * 7 % 2500));
        }
        keys.push("shop/00001/.data.sqlite.zst.lifeboat-tmp-0a1b2c3d".into());
        for k in &keys {
            touch(root, k);
        }
        // A link to a directory outside is neither followed nor listed.
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret");
        std::os::unix::fs::symlink(outside.path(), root.join("shop/link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("a/file-link"))
            .unwrap();

        let store = LocalStore::open(root).unwrap();
        let got = pages(&store, "").await;
        assert!(got.len() >= 5, "several pages");
        assert!(got.iter().all(|p| p.len() <= PAGE_SIZE));
        let flat: Vec<String> = got.concat();
        let mut want: Vec<String> = keys.into_iter().filter(|k| !is_temp(k)).collect();
        want.sort();
        assert_eq!(flat, want);

        // A listing resumed after any key by a store with no open walk (another process)
        // gives the same pages.
        let mut token = None;
        let mut resumed = Vec::new();
        loop {
            let fresh = LocalStore::open(root).unwrap();
            let page = fresh.list_page("", token).await.unwrap();
            resumed.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(resumed, want);

        // Under a prefix, and one that stops inside a name.
        let shop = pages(&store, "shop/").await.concat();
        assert_eq!(shop.len(), 5000);
        assert_eq!(
            pages(&store, "a").await.concat(),
            ["a-b", "a.b/c", "a/x", "a/x-y/z", "a/x0/y", "a0"]
        );
        assert_eq!(
            pages(&store, "a/x").await.concat(),
            ["a/x", "a/x-y/z", "a/x0/y"]
        );
        assert!(pages(&store, "nothing/").await.concat().is_empty());

        // Temp files are uploads in progress, listed as such only.
        let incomplete = store.list_incomplete("").await.unwrap();
        assert_eq!(incomplete.len(), 1);
        assert_eq!(incomplete[0].key, "shop/00001/data.sqlite.zst");
    }

    #[tokio::test]
    async fn a_listing_survives_objects_coming_and_going_between_pages() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1500 {
            touch(dir.path(), &format!("s/{i:04}/manifest.json"));
        }
        let store = LocalStore::open(dir.path()).unwrap();
        let first = store.list_page("", None).await.unwrap();
        assert_eq!(first.objects.len(), PAGE_SIZE);
        // Removed after the first page was read, and added behind and ahead of it.
        std::fs::remove_dir_all(dir.path().join("s/1200")).unwrap();
        touch(dir.path(), "s/0000/late.json");
        let second = store.list_page("", first.next).await.unwrap();
        assert!(second.next.is_none());
        let keys: Vec<&str> = second.objects.iter().map(|o| o.key.as_str()).collect();
        assert!(!keys.iter().any(|k| k.starts_with("s/1200/")));
        assert!(!keys.contains(&"s/0000/late.json"), "behind the cursor");
        assert_eq!(keys.len(), 499);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn directories_get_search_permission_where_reading_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let s = |m| {
            LocalStore::open_with_mode(dir.path(), m)
                .unwrap()
                .dir_mode()
        };
        assert_eq!(s(0o600), 0o700);
        assert_eq!(s(0o640), 0o750);
        assert_eq!(s(0o644), 0o755);
    }
}
