//! A directory as a bucket. Same key layout as S3; every write goes to a temp file beside its
//! destination, is fsynced and then renamed, so a reader never sees half an object.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{
    ByteStream, IncompleteUpload, ListPage, ObjectKey, ObjectMeta, ObjectStore, PutOutcome,
    StoreError, StoreResult,
};

const TMP_MARKER: &str = ".lifeboat-tmp-";
const PAGE_SIZE: usize = 1000;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates if needed) the directory that plays the bucket.
    pub fn open(root: impl Into<PathBuf>) -> StoreResult<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| io_err("create directory", &root, e))?;
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Every file below the root as (key, metadata), temp files included, sorted by key.
    fn walk(&self, prefix: &str) -> StoreResult<Vec<(String, fs::Metadata)>> {
        // Descend only into the directory the prefix names, not the whole tree.
        let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err("list", &dir, e))?;
                let meta = entry
                    .metadata()
                    .map_err(|e| io_err("stat", &entry.path(), e))?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    let rel = entry.path().strip_prefix(&self.root).map(Path::to_path_buf);
                    let Ok(rel) = rel else { continue };
                    let Some(key) = rel.to_str().map(str::to_owned) else {
                        continue;
                    };
                    if key.starts_with(prefix) {
                        out.push((key, meta));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// The modification time, if chrono can hold it (chrono's own conversion panics on a time
/// beyond its range, which some file systems can store).
fn modified(meta: &fs::Metadata) -> Option<DateTime<Utc>> {
    let t = meta.modified().ok()?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => DateTime::from_timestamp(i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            DateTime::from_timestamp(-secs, 0)?
                .checked_sub_signed(chrono::Duration::nanoseconds(i64::from(d.subsec_nanos())))
        }
    }
}

fn is_temp(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .is_some_and(|name| name.contains(TMP_MARKER))
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let all = this.walk(&prefix)?;
            let objects: Vec<ObjectMeta> = all
                .into_iter()
                .filter(|(k, _)| !is_temp(k))
                .filter(|(k, _)| token.as_deref().is_none_or(|t| k.as_str() > t))
                .take(PAGE_SIZE + 1)
                .map(|(key, meta)| ObjectMeta {
                    size: meta.len(),
                    last_modified: modified(&meta),
                    key,
                })
                .collect();
            let mut objects = objects;
            let next = if objects.len() > PAGE_SIZE {
                objects.truncate(PAGE_SIZE);
                objects.last().map(|o| o.key.clone())
            } else {
                None
            };
            Ok(ListPage { objects, next })
        })
        .await
        .expect("listing task panicked")
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: meta.len(),
                last_modified: modified(&meta),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &path, e)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        let path = self.path(key);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
                _ => io_err("open", &path, e),
            })?;
        Ok(Box::pin(ReaderStream::with_capacity(file, 256 * 1024)))
    }

    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        let path = self.path(key);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NotFound(key.to_string()),
                _ => io_err("open", &path, e),
            })?;
        let mut buf = Vec::new();
        file.take(len)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| io_err("read", &path, e))?;
        Ok(buf.into())
    }

    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> StoreResult<PutOutcome> {
        let path = self.path(key);
        let parent = path
            .parent()
            .expect("a key always has a parent below the root")
            .to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| io_err("create directory", &parent, e))?;
        let tmp = parent.join(format!(
            ".{}{TMP_MARKER}{:08x}",
            key.name(),
            fastrand::u32(..)
        ));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_err("create", &tmp, e))?;
            let mut size = 0u64;
            while let Some(chunk) = body.try_next().await.map_err(|source| StoreError::Body {
                key: key.to_string(),
                source,
            })? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_err("write", &tmp, e))?;
                size += chunk.len() as u64;
            }
            file.sync_all()
                .await
                .map_err(|e| io_err("fsync", &tmp, e))?;
            drop(file);
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| io_err("rename", &path, e))?;
            // Make the rename itself durable.
            if let Ok(dir) = tokio::fs::File::open(&parent).await {
                let _ = dir.sync_all().await;
            }
            Ok(PutOutcome { size, parts: 1 })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        for key in keys {
            let path = self.path(key);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete", &path, e)),
            }
            // Tidy now-empty directories up to the root, as a bucket has no directories.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == self.root || tokio::fs::remove_dir(d).await.is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
        Ok(())
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
        self.delete_many(&[ObjectKey::new(upload.handle.clone())?])
            .await
    }

    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            Ok(this
                .walk(&prefix)?
                .into_iter()
                .filter(|(k, _)| is_temp(k))
                .map(|(k, meta)| {
                    let (dir, name) = k.rsplit_once('/').unwrap_or(("", &k));
                    let target = name.trim_start_matches('.');
                    let target = target.split(TMP_MARKER).next().unwrap_or(target);
                    let key = if dir.is_empty() {
                        target.to_owned()
                    } else {
                        format!("{dir}/{target}")
                    };
                    IncompleteUpload {
                        key,
                        started: modified(&meta),
                        handle: k.clone(),
                    }
                })
                .collect())
        })
        .await
        .expect("listing task panicked")
    }
}
