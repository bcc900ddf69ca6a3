//! Object storage: one trait in front of S3 and a local directory.
//!
//! Keys given to a store are relative to its configured prefix and always pass through
//! [`ObjectKey`], which refuses anything that could escape that prefix.

mod key;
mod local;
mod s3;
mod walk;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;

pub use key::{KeyError, ObjectKey};
pub use local::{DEFAULT_MODE, LocalStore};
pub use s3::{S3Options, S3Store, Timeouts};

/// A stream of byte chunks, used both for downloads and for uploads.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

/// One page of a listing; `next` is the opaque token for the following page.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    pub next: Option<String>,
    /// Entity tags by key, from a store that lists them (S3). What a store says an object's
    /// bytes are: a cache of the object is current when its tag is.
    pub etags: HashMap<String, String>,
    /// Unfinished uploads met on this page, from a store whose uploads are files among its
    /// objects (see [`ObjectStore::lists_incomplete`]).
    pub incomplete: Vec<IncompleteUpload>,
}

/// An upload that was started and never finished (an S3 multipart upload or a local temp file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IncompleteUpload {
    pub key: String,
    pub started: Option<DateTime<Utc>>,
    /// What the store needs to clean it up (S3 upload id or temp file name).
    pub handle: String,
    /// Whether a running process is still writing it, where the store can tell (a local
    /// temp file is locked by its writer); `None` when it cannot (S3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_alive: Option<bool>,
}

/// What a finished upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub size: u64,
    /// Number of parts (1 for a single-request upload).
    pub parts: u32,
    /// The entity tag the store gave the object, where it has one.
    pub etag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("no usable credentials for {endpoint}: {detail}")]
    Credentials { endpoint: String, detail: String },
    #[error("access denied by {endpoint}: {detail}")]
    AccessDenied { endpoint: String, detail: String },
    #[error("bucket {0} does not exist")]
    NoSuchBucket(String),
    #[error("{op} {key}: {detail}")]
    Request {
        op: &'static str,
        key: String,
        detail: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("upload of {key} failed while reading its data: {source}")]
    Body { key: String, source: io::Error },
    #[error("{key} holds more than {limit} bytes, the most lifeboat reads of such an object")]
    TooLarge { key: String, limit: u64 },
    /// What the store holds after a write is not what was sent.
    #[error("{key} was not stored whole: {expected} bytes sent, the store holds {actual}")]
    Short {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0} is a symbolic link; the local store never follows links below its root")]
    Symlink(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Where the objects live, for people: `s3://bucket/prefix (endpoint)` or a directory.
    fn location(&self) -> String;

    /// One page of keys under `prefix` (relative to the store's own prefix), in key order.
    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage>;

    /// A listing under `prefix` that starts after the key `after` (which need not exist),
    /// continued with [`ObjectStore::list_page`]: how a reader skips a part of the bucket.
    /// This default pages through from the start; stores override it to seek.
    async fn list_page_after(&self, prefix: &str, after: &str) -> StoreResult<ListPage> {
        let (mut token, mut incomplete) = (None, Vec::new());
        loop {
            let mut page = self.list_page(prefix, token).await?;
            page.objects.retain(|o| o.key.as_str() > after);
            page.etags.retain(|k, _| k.as_str() > after);
            incomplete.extend(page.incomplete.drain(..).filter(|u| u.key.as_str() > after));
            if !page.objects.is_empty() || page.next.is_none() {
                page.incomplete = incomplete;
                return Ok(page);
            }
            token = page.next.take();
        }
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>>;

    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream>;

    /// The first bytes of an object (for format detection); shorter if the object is.
    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes>;

    /// Stores `body` under `key`. The object becomes visible only when the whole body was
    /// written; on any error nothing is left behind (partial uploads are aborted). `Ok` means
    /// the store confirmed it: flushed and synced (local), or read back with the size (and
    /// entity tag) the upload sent (S3).
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> StoreResult<PutOutcome>;

    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()>;

    /// Whether [`ListPage::incomplete`] reports every unfinished upload among the keys a
    /// listing covers, so that a caller reading the whole listing need not call
    /// [`ObjectStore::list_incomplete`] (a second pass over a directory store).
    fn lists_incomplete(&self) -> bool {
        false
    }

    /// Uploads that were started under `prefix` and never completed.
    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>>;

    /// Discards an upload [`ObjectStore::list_incomplete`] reported, and the space it holds.
    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()>;
}

/// Convenience helpers over any store.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> StoreResult<PutOutcome> {
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(bytes)]));
        self.put(key, body).await
    }

    /// Reads a small object (a manifest, a job record, a report) whole, but never more than
    /// `limit` bytes. Callers check the listed size first; the stream is capped as well,
    /// because a listing (or a store) can lie. Stopping early drops the transfer.
    async fn get_bounded(&self, key: &ObjectKey, limit: u64) -> StoreResult<Vec<u8>> {
        use futures_util::TryStreamExt;
        let mut stream = self.get(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.try_next().await.map_err(|e| StoreError::Request {
            op: "get",
            key: key.to_string(),
            detail: e.to_string(),
        })? {
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(StoreError::TooLarge {
                    key: key.to_string(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Every object under `prefix`, page after page.
    async fn list_all(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_page(prefix, token).await?;
            out.extend(page.objects);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}
