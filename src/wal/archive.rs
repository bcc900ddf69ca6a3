//! `wal push` and `wal get`: one archived file is a data object and, written after the store
//! confirmed it, a small record that is its commit point. Without its record a data object
//! is debris of a killed push, never an archived file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::names::{WalName, valid_segment_size};
use crate::error::{Error, Result};
use crate::manifest::EncryptionInfo;
use crate::pipeline::crypt::{EncryptionConfig, Seal, Unseal};
use crate::pipeline::stream::{Expect, Stages, download_into, upload_reader};
use crate::progress::NoProgress;
use crate::storage::{ObjectKey, ObjectStore, ObjectStoreExt, StoreError};

/// Where a source's archived WAL lives: under the prefix the catalog keeps to itself.
pub const WAL_PREFIX: &str = "_lifeboat/wal/";
pub const RECORD_SUFFIX: &str = ".json";
/// A record is a few hundred bytes; anything much larger is not one.
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// The largest file PostgreSQL archives (a 1 GiB segment), plus room for a history file.
const MAX_RAW_BYTES: u64 = 1 << 30;

/// The record written after a file's data: what was archived, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalRecord {
    pub format: u32,
    pub source: String,
    pub name: String,
    /// The data object's name beside the record.
    pub data: String,
    pub raw_bytes: u64,
    /// SHA-256 of the file as PostgreSQL wrote it: what makes a second push of the same
    /// file a no-op and of a different one a refusal.
    pub raw_sha256: String,
    pub stored_bytes: u64,
    pub stored_sha256: String,
    pub compression: String,
    pub encryption: Option<EncryptionInfo>,
    pub pushed_at: DateTime<Utc>,
    pub host: String,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// The same file (same SHA-256) was already archived.
    AlreadyStored,
}

pub fn source_prefix(source: &str) -> String {
    format!("{WAL_PREFIX}{source}/")
}

pub fn record_key(source: &str, name: &str) -> Result<ObjectKey> {
    Ok(ObjectKey::new(format!(
        "{}{name}{RECORD_SUFFIX}",
        source_prefix(source)
    ))?)
}

fn data_name(name: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{name}.zst.age")
    } else {
        format!("{name}.zst")
    }
}

/// Reads and checks a file's record; `None` when the file is not archived.
pub async fn read_record(
    store: &dyn ObjectStore,
    source: &str,
    name: &str,
) -> Result<Option<WalRecord>> {
    let key = record_key(source, name)?;
    let bytes = match store.get_bounded(&key, MAX_RECORD_BYTES).await {
        Ok(b) => b,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let record: WalRecord = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("{key} is not a WAL record: {e}")))?;
    let encrypted = record.encryption.is_some();
    if record.name != name
        || record.source != source
        || record.data != data_name(name, encrypted)
        || record.raw_bytes > MAX_RAW_BYTES
        || record.compression != "zstd"
    {
        return Err(Error::Invalid(format!(
            "{key} does not describe {name} of source {source}: the archive record was altered"
        )));
    }
    Ok(Some(record))
}

/// How a push compresses and seals.
pub struct PushOptions {
    pub compression_level: i32,
    pub seal: Option<Arc<Seal>>,
    pub now: DateTime<Utc>,
}

/// Archives the file at `path` for `source`. Returns once the data and its record are both
/// confirmed by the store, so `archive_command` may report success.
pub async fn push(
    store: &dyn ObjectStore,
    source: &str,
    path: &Path,
    opts: &PushOptions,
    cancel: &CancellationToken,
) -> Result<Pushed> {
    let name = file_name(path)?;
    let meta =
        std::fs::metadata(path).map_err(Error::io(format!("cannot read {}", path.display())))?;
    let size = meta.len();
    match WalName::parse(&name) {
        Some(WalName::Segment { .. } | WalName::Partial) if !valid_segment_size(size) => {
            return Err(Error::Invalid(format!(
                "{} holds {size} bytes, not a whole WAL segment; nothing was archived",
                path.display()
            )));
        }
        Some(_) if size > MAX_RAW_BYTES => {
            return Err(Error::Invalid(format!(
                "{} is larger than any file PostgreSQL archives",
                path.display()
            )));
        }
        Some(_) => {}
        None => {
            return Err(Error::Invalid(format!(
                "{name:?} is not the name of a WAL segment, history or backup label file; lifeboat archives only those"
            )));
        }
    }
    if let Some(existing) = read_record(store, source, &name).await? {
        let sha = hash_file(path)?;
        if existing.raw_sha256 == sha && existing.raw_bytes == size {
            return Ok(Pushed::AlreadyStored);
        }
        return Err(Error::Invalid(format!(
            "{name} is already archived for source {source} with different contents (sha256 {} there, {sha} here): refusing to replace it; is another server archiving as {source}?",
            existing.raw_sha256
        )));
    }
    let data = data_name(&name, opts.seal.is_some());
    let data_key = ObjectKey::new(format!("{}{data}", source_prefix(source)))?;
    let file =
        std::fs::File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
    let (reader, raw_hash) = HashingReader::new(file);
    let uploaded = upload_reader(
        store,
        &data_key,
        Box::new(reader),
        Stages {
            level: opts.compression_level,
            threads: 1,
            seal: opts.seal.clone(),
        },
        Arc::new(NoProgress),
        cancel,
    )
    .await?;
    let raw_sha256 = raw_hash.lock().map(|h| h.clone()).unwrap_or_default();
    if uploaded.raw_bytes != size || raw_sha256.is_empty() {
        // The file changed under us: PostgreSQL never does that to a finished segment.
        return Err(Error::Invalid(format!(
            "{} changed while it was read ({size} bytes before, {} read); nothing was archived",
            path.display(),
            uploaded.raw_bytes
        )));
    }
    let record = WalRecord {
        format: 1,
        source: source.to_owned(),
        name: name.clone(),
        data,
        raw_bytes: uploaded.raw_bytes,
        raw_sha256,
        stored_bytes: uploaded.stored_bytes,
        stored_sha256: uploaded.sha256,
        compression: "zstd".into(),
        encryption: opts.seal.as_ref().map(|s| s.info()),
        pushed_at: opts.now,
        host: crate::jobs::hostname(),
    };
    // Proves from the outside (tests/it/pitr.rs) that a push killed between its two writes
    // leaves nothing that looks archived. Debug builds only.
    if cfg!(debug_assertions)
        && let Some(flag) = std::env::var_os("LIFEBOAT_DEBUG_WAL_PUSH_PAUSE")
    {
        let _ = std::fs::write(&flag, b"data stored, record not written\n");
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
    // The commit point: confirmed by the store, or the push failed.
    store
        .put_bytes(&record_key(source, &name)?, json.into())
        .await?;
    Ok(Pushed::Stored)
}

/// How many files one `archive_command` call pushes at once: its own and, ahead of
/// PostgreSQL asking, the next ones it has marked ready.
pub const PARALLEL_PUSHES: usize = 4;
/// How many ready files a call looks at for ones not yet pushed.
const LOOK_AHEAD: usize = 16;

/// Pushes `path` and, at the same time, up to [`PARALLEL_PUSHES`]` - 1` other files
/// PostgreSQL has marked ready beside it and not yet archived, so the calls for those find them stored and
/// return at once. Only `path`'s outcome is returned: a file pushed ahead is committed by
/// its own record like any other, and one that failed is pushed again when PostgreSQL asks
/// for it. The `.ready` markers are PostgreSQL's: it turns them into `.done` itself.
pub async fn push_with_ready(
    store: &dyn ObjectStore,
    source: &str,
    path: &Path,
    opts: &PushOptions,
    cancel: &CancellationToken,
) -> Result<Pushed> {
    use futures_util::stream::{self, StreamExt};
    // Those an earlier call pushed ahead are still marked ready until PostgreSQL asks for
    // them: skipped here, so each call gets further ahead.
    let unarchived: Vec<Option<PathBuf>> = stream::iter(ready_besides(path, LOOK_AHEAD))
        .map(|p| async move {
            let name = p.file_name()?.to_str()?.to_owned();
            match read_record(store, source, &name).await {
                Ok(None) => Some(p),
                _ => None,
            }
        })
        .buffered(PARALLEL_PUSHES)
        .collect()
        .await;
    let files: Vec<PathBuf> = std::iter::once(path.to_path_buf())
        .chain(unarchived.into_iter().flatten().take(PARALLEL_PUSHES - 1))
        .collect();
    let mut results: Vec<(usize, Result<Pushed>)> = stream::iter(files.iter().enumerate())
        .map(|(i, p)| async move { (i, push(store, source, p, opts, cancel).await) })
        .buffer_unordered(PARALLEL_PUSHES)
        .collect()
        .await;
    for (i, r) in &results {
        if *i > 0
            && let Err(e) = r
        {
            tracing::debug!("{} not pushed ahead: {e}", files[*i].display());
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.swap_remove(0).1
}

/// The files other than `path` PostgreSQL has marked ready to archive
/// (`archive_status/<name>.ready` beside it), oldest first, at most `max`.
fn ready_besides(path: &Path, max: usize) -> Vec<PathBuf> {
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let own = path.file_name();
    let Ok(entries) = std::fs::read_dir(dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".ready")?.to_owned();
            (WalName::parse(&name).is_some() && own != Some(std::ffi::OsStr::new(&name)))
                .then_some(name)
        })
        .collect();
    names.sort();
    names.truncate(max);
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Fetches an archived file into `dest` (checked, then renamed into place). `Ok(false)` when
/// it is not archived: `restore_command` must then fail so recovery knows the WAL ended.
pub async fn get(
    store: &dyn ObjectStore,
    source: &str,
    name: &str,
    dest: &Path,
    keys: Option<&EncryptionConfig>,
    cancel: &CancellationToken,
) -> Result<bool> {
    if WalName::parse(name).is_none() {
        return Err(Error::Invalid(format!(
            "{name:?} is not the name of a WAL segment, history or backup label file"
        )));
    }
    let Some(record) = read_record(store, source, name).await? else {
        return Ok(false);
    };
    let unseal = match &record.encryption {
        Some(info) => Some(Unseal::for_backup(name, info, keys)?),
        None => None,
    };
    let data_key = ObjectKey::new(format!("{}{}", source_prefix(source), record.data))?;
    let partial = partial_path(dest);
    let file = std::fs::File::create(&partial)
        .map_err(Error::io(format!("cannot create {}", partial.display())))?;
    let result = download_into(
        store,
        &data_key,
        Expect {
            stored_bytes: record.stored_bytes,
            stored_sha256: record.stored_sha256.clone(),
            raw: Some((record.raw_bytes, record.raw_sha256.clone())),
            unseal,
        },
        file,
        cancel,
    )
    .await
    .and_then(|file| file.sync_all().map_err(Error::io("sync")))
    .and_then(|()| {
        std::fs::rename(&partial, dest)
            .map_err(Error::io(format!("cannot move into {}", dest.display())))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(match e {
            Error::Checksum { .. } | Error::Size { .. } | Error::Invalid(_) => Error::Invalid(
                format!("archived {name} of source {source} is damaged: {e}"),
            ),
            e => e,
        });
    }
    Ok(true)
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".lifeboat-partial");
    dest.with_file_name(name)
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Invalid(format!("{} names no file", path.display())))
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    Ok(crate::pipeline::sha256_hex(hasher))
}

/// Hashes what passes through and leaves the hex digest behind once the reader hits its end.
struct HashingReader<R> {
    inner: R,
    hasher: Option<Sha256>,
    out: Arc<std::sync::Mutex<String>>,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> (Self, Arc<std::sync::Mutex<String>>) {
        let out = Arc::new(std::sync::Mutex::new(String::new()));
        (
            HashingReader {
                inner,
                hasher: Some(Sha256::new()),
                out: out.clone(),
            },
            out,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (n, self.hasher.as_mut()) {
            (0, Some(_)) => {
                let h = self.hasher.take().expect("checked");
                if let Ok(mut out) = self.out.lock() {
                    *out = crate::pipeline::sha256_hex(h);
                }
            }
            (n, Some(h)) => h.update(&buf[..n]),
            (_, None) => {}
        }
        Ok(n)
    }
}
