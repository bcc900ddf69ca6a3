//! download (hashing) → verify → decompress → load → count → diff, the stages every
//! engine's restore shares; what it loads into is the target's engine's
//! ([`crate::engine::Engine::restore`]).
//!
//! Nothing reaches the target before the stored bytes hash to the manifest's SHA-256.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::crypt::{EncryptionConfig, Unseal};
use super::sha256_hex;
use crate::catalog::{BackupEntry, ForeignObject};
use crate::config::SourceConfig;
use crate::debris::Recorder;
use crate::diff::RowDiff;
use crate::engine::Engine;
pub use crate::engine::{LiveSource, RestoreTarget};
use crate::error::{Error, Result};
use crate::manifest::TableCount;
use crate::progress::{Phase, Progress};
use crate::sniff::{Compression, Content, Format, SNIFF_LEN, sniff};

const CHANNEL_DEPTH: usize = 8;
use crate::storage::{ObjectKey, ObjectStore};

/// What to restore: a lifeboat backup or a foreign object.
#[derive(Debug, Clone)]
pub enum RestoreFrom {
    Backup(Box<BackupEntry>),
    Foreign(Box<ForeignObject>),
}

impl RestoreFrom {
    pub fn label(&self) -> String {
        match self {
            RestoreFrom::Backup(b) => b.id.to_string(),
            RestoreFrom::Foreign(f) => f.meta.key.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub target: RestoreTarget,
    /// The configured source a foreign dump is restored for: its `bin_dir` and the guard
    /// for its own database apply as for its backups.
    pub for_source: Option<String>,
    /// Replace an existing SQLite file (never the source: `promote` does that). Front ends
    /// set this only when the person typed the target's name again. A PostgreSQL restore
    /// refuses it: it only ever creates a database.
    pub force_target: bool,
    /// The live source database to count as a third column.
    pub live: Option<LiveSource>,
    /// Also run SQLite's `PRAGMA quick_check` on the result (a full read of the database).
    pub integrity_check: bool,
    /// Record the job as a drill (a rehearsal whose report is kept as evidence).
    pub drill: bool,
    pub staging: PathBuf,
    /// Restore with the scratch server user's rights, keeping owners and grants (PostgreSQL).
    /// Only an authenticated backup may be; [`crate::Lifeboat::restore`] refuses the rest.
    pub privileged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub restored: String,
    pub source: Option<String>,
    pub format: String,
    pub target: RestoreTarget,
    /// Whether this restore created the target; one it replaced (--force-target) is never
    /// dropped by lifeboat.
    pub created: bool,
    /// SHA-256 of the stored bytes as downloaded.
    pub sha256: String,
    /// Whether the hash was checked against a manifest (foreign objects have none).
    pub checksum_verified: bool,
    /// Whether the manifest is signed by a trusted key (foreign objects have none).
    pub authenticity: Option<crate::signing::Authenticity>,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub diff: RowDiff,
    /// For how many tables the content checksums in the manifest were compared with the
    /// restored rows; `None` when the manifest has none (row counts only).
    pub content_compared: Option<usize>,
    /// Restored with the scratch server user's rights, owners and grants kept (PostgreSQL).
    pub privileged: bool,
    /// What the restore did not carry over from the source: `owners`, `GRANTs`,
    /// `subscriptions`, `database settings` (a least-privilege PostgreSQL copy), `locale`
    /// (not available on the scratch server).
    pub skipped: Vec<String>,
    /// What the copy looked like when it was counted (see [`crate::promote`]).
    #[serde(skip)]
    pub fingerprint: String,
}

impl RestoreReport {
    pub fn ok(&self) -> bool {
        self.diff.all_match()
    }

    /// Whether the copy was proved: its counts (and checksums) matched a manifest.
    pub fn proved(&self) -> bool {
        self.diff.has_expected && self.ok()
    }
}

/// The object a restore reads, what its manifest promises, and how to decrypt it.
pub(crate) struct Object {
    pub key: ObjectKey,
    /// SHA-256 and size from the manifest; a foreign object has none.
    pub expected: Option<(String, u64)>,
    pub unseal: Option<Unseal>,
}

/// One restore under way; what [`crate::engine::Engine::restore`] is given.
pub struct RestoreRun<'a> {
    pub(crate) store: &'a Arc<dyn ObjectStore>,
    pub(crate) from: &'a RestoreFrom,
    pub(crate) opts: &'a RestoreOptions,
    /// The configured source restored for: its own database is never restored over, and
    /// its settings (where the PostgreSQL tools are) apply.
    pub(crate) source: Option<&'a SourceConfig>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) cancel: CancellationToken,
    pub(crate) log: &'a (dyn Fn(String) + Send + Sync),
    /// Where the keys for encrypted backups are found.
    pub(crate) keys: Option<&'a EncryptionConfig>,
    /// Records what the restore creates (partial files, staging, scratch databases) before it
    /// does, so that a killed restore's leftovers are swept by a later run.
    pub(crate) debris: &'a Recorder,
    /// Permission bits of a restored SQLite file.
    pub(crate) file_mode: u32,
}

impl RestoreRun<'_> {
    pub async fn run(self, started_at: DateTime<Utc>) -> Result<(RestoreReport, DateTime<Utc>)> {
        self.opts.target.engine().restore(&self, started_at).await
    }

    /// The content checksums the backup's manifest recorded (none for foreign dumps).
    pub(crate) fn want_content(&self) -> crate::content::ContentChecksums {
        match self.from {
            RestoreFrom::Backup(b) => b
                .manifest
                .as_ref()
                .map(|m| m.content_checksums.clone())
                .unwrap_or_default(),
            RestoreFrom::Foreign(_) => Default::default(),
        }
    }

    /// Counts the live source when asked, diffs manifest / restored / live, and compares the
    /// restored content checksums with the manifest's (returning for how many tables).
    pub(crate) async fn diff(
        &self,
        restored: &[TableCount],
        content: Option<&crate::content::ContentChecksums>,
    ) -> Result<(RowDiff, Option<usize>)> {
        let live = match &self.opts.live {
            Some(live) => {
                self.progress.phase(Phase::CountLive, None);
                Some(live.engine().count(live, &self.cancel).await?)
            }
            None => None,
        };
        self.progress.phase(Phase::Diff, None);
        let expected_tables = match self.from {
            RestoreFrom::Backup(b) => b.manifest.as_ref().map(|m| m.tables.as_slice()),
            RestoreFrom::Foreign(_) => None,
        };
        let mut diff = RowDiff::new(expected_tables, restored, live.as_deref());
        let compared = content.map(|content| {
            let n = diff.check_content(&self.want_content(), content);
            (self.log)(format!("content checksums compared for {n} tables"));
            n
        });
        Ok((diff, compared))
    }

    /// Streams the object, hashing it, into `consume`, which reads the decrypted and
    /// decompressed bytes on a blocking thread. Its result counts only once the stored bytes
    /// match the manifest. Returns the SHA-256, the stored size, the format and what `consume`
    /// returned (the decompressed size).
    pub(crate) async fn fetch(
        &self,
        key: &ObjectKey,
        into: &Path,
        expected: &Option<(String, u64)>,
        content: Content,
        unseal: Option<Unseal>,
        consume: impl FnOnce(Format, Cancellable<Box<dyn Read + Send>>) -> Result<u64> + Send + 'static,
    ) -> Result<(String, u64, Format, u64)> {
        self.progress
            .phase(Phase::Download, expected.as_ref().map(|e| e.1));
        // A lifeboat backup's format is known; a foreign object's is judged from its bytes.
        let known = match self.from {
            RestoreFrom::Backup(_) => Some(Format {
                compression: Some(Compression::Zstd),
                content,
            }),
            RestoreFrom::Foreign(_) => None,
        };
        let limit = self.raw_limit(into)?;
        let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let cancel = self.cancel.clone();
        let consumer = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                buf: Bytes::new(),
            };
            let (format, reader) = decoder(reader, known, unseal.as_ref(), limit, &cancel)?;
            Ok((format, consume(format, reader)?))
        });
        let downloaded = download(
            self.store.as_ref(),
            key,
            Some(tx),
            &*self.progress,
            &self.cancel,
        )
        .await;
        // Wait for the consumer even when the download failed: it must be done with its
        // files before they are removed.
        let consumed: Result<(Format, u64)> = consumer
            .await
            .map_err(|e| Error::Invalid(format!("the decompression stopped: {e}")))?;
        let (sha256, stored_bytes) = downloaded?;
        self.check_download(key, expected, &sha256, stored_bytes)?;
        let (format, raw_bytes) = consumed.map_err(|e| {
            if self.cancel.is_cancelled() {
                Error::Cancelled
            } else {
                e
            }
        })?;
        Ok((sha256, stored_bytes, format, raw_bytes))
    }

    /// The most bytes the object may decompress to before the restore stops: a few megabytes
    /// of compressed zeros expand to terabytes, and would fill the disk long before the
    /// checksum is compared at the end.
    /// The disk under `into` must hold what a backup's manifest says it expands to; an object
    /// nobody described may take at most what is free there.
    fn raw_limit(&self, into: &Path) -> Result<RawLimit> {
        let free = rustix::fs::statvfs(into)
            .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
            .map_err(|e| {
                Error::io(format!("read the free space of {}", into.display()))(e.into())
            })?;
        match self.from {
            RestoreFrom::Backup(b) => {
                let bytes = b.manifest.as_ref().map_or(0, |m| m.data.raw_bytes);
                if bytes > free {
                    return Err(Error::Invalid(format!(
                        "{} holds {} bytes once decompressed (its manifest says), and {} has {free} free; nothing was written",
                        b.id,
                        bytes,
                        into.display()
                    )));
                }
                Ok(RawLimit {
                    bytes,
                    why: "the size its manifest records",
                })
            }
            RestoreFrom::Foreign(f) => {
                let cap = f.meta.size.saturating_mul(FOREIGN_RATIO).max(1 << 30);
                Ok(if cap <= free {
                    RawLimit {
                        bytes: cap,
                        why: "1,000 times its stored size, the most lifeboat expands an object nobody described",
                    }
                } else {
                    RawLimit {
                        bytes: free,
                        why: "the free space where it is restored",
                    }
                })
            }
        }
    }

    /// Compares what was downloaded with what the manifest promised.
    pub(crate) fn check_download(
        &self,
        key: &ObjectKey,
        expected: &Option<(String, u64)>,
        sha256: &str,
        stored_bytes: u64,
    ) -> Result<()> {
        if let Some((want_sha, want_size)) = expected {
            // A damaged object usually also fails to decompress; the checksum names the cause.
            if stored_bytes != *want_size {
                return Err(Error::Size {
                    key: key.to_string(),
                    expected: *want_size,
                    actual: stored_bytes,
                });
            }
            if sha256 != want_sha {
                return Err(Error::Checksum {
                    key: key.to_string(),
                    expected: want_sha.clone(),
                    actual: sha256.to_owned(),
                });
            }
            (self.log)(format!("checksum verified: sha256 {sha256}"));
        } else {
            (self.log)(format!(
                "downloaded {key} ({stored_bytes} bytes, sha256 {sha256}); no manifest to verify against"
            ));
        }
        Ok(())
    }

    /// The object to download and, for a backup, its manifest's SHA-256 and size.
    /// The decryption stage is resolved here so that a missing key fails before anything else.
    pub(crate) fn object(&self, engine: &dyn Engine) -> Result<Object> {
        let kind = engine.kind();
        match self.from {
            RestoreFrom::Backup(b) => {
                let m = b
                    .manifest
                    .as_ref()
                    .filter(|_| b.problem.is_none())
                    .ok_or_else(|| Error::NotRestorable {
                        id: b.id.to_string(),
                        reason: b.problem.clone().unwrap_or_else(|| "no manifest".into()),
                    })?;
                if m.source.engine != kind {
                    return Err(Error::Invalid(format!(
                        "backup {} is a {} backup and cannot be restored into {kind}",
                        b.id, m.source.engine
                    )));
                }
                let unseal = m
                    .encryption
                    .as_ref()
                    .map(|info| Unseal::for_backup(b.id.as_str(), info, self.keys))
                    .transpose()
                    .map_err(|e| Error::Refused(Box::new(e)))?;
                let key = b.data_key().ok_or_else(|| Error::NotRestorable {
                    id: b.id.to_string(),
                    reason: "the manifest names no data object".into(),
                })?;
                Ok(Object {
                    key,
                    expected: Some((m.data.sha256.clone(), m.data.stored_bytes)),
                    unseal,
                })
            }
            RestoreFrom::Foreign(f) => {
                if !engine.loads(f.format) {
                    return Err(Error::Invalid(format!(
                        "{} holds {}, which cannot be restored into {kind}",
                        f.meta.key, f.format
                    )));
                }
                Ok(Object {
                    key: ObjectKey::new(f.meta.key.clone())?,
                    expected: None,
                    unseal: None,
                })
            }
        }
    }
}

/// Streams an object, hashing it and (optionally) handing each chunk to `sink`. Returns the
/// SHA-256 and the size. A sink that stops listening does not stop the download: the hash of
/// the whole object is still wanted, to say whether the data was damaged.
pub(crate) async fn download(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    mut sink: Option<mpsc::Sender<Bytes>>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(String, u64)> {
    let mut stream = store.get(key).await?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled),
            chunk = stream.try_next() => chunk.map_err(Error::io(format!("download {key}")))?,
        };
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        size += chunk.len() as u64;
        progress.advance(size);
        if let Some(tx) = &sink
            && tx.send(chunk).await.is_err()
        {
            sink = None;
        }
    }
    Ok((sha256_hex(hasher), size))
}

/// The decompressed download, its format judged from the first bytes unless known.
pub(crate) fn decoder(
    reader: ChannelReader,
    known: Option<Format>,
    unseal: Option<&Unseal>,
    limit: RawLimit,
    cancel: &CancellationToken,
) -> Result<(Format, Cancellable<Box<dyn Read + Send>>)> {
    let mut reader = BufReader::with_capacity(SNIFF_LEN as usize, reader);
    let format = match known {
        Some(f) => f,
        None => sniff(reader.fill_buf().map_err(Error::io("read the download"))?),
    };
    let reader: Box<dyn BufRead + Send> = match unseal {
        Some(u) => Box::new(BufReader::with_capacity(1 << 16, u.open(reader)?)),
        None => Box::new(reader),
    };
    let reader: Box<dyn Read + Send> = match format.compression {
        None => Box::new(reader),
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Some(Compression::Zstd) => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(Error::io("zstd"))?)
        }
    };
    let reader = Box::new(Bounded {
        inner: reader,
        left: limit.bytes,
        limit,
    });
    Ok((
        format,
        Cancellable {
            inner: reader,
            cancel: cancel.clone(),
        },
    ))
}

/// How far a download may expand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLimit {
    pub bytes: u64,
    pub why: &'static str,
}

/// Objects nobody described may expand this many times their stored size.
const FOREIGN_RATIO: u64 = 1000;

/// Fails a read that would take the decompressed bytes past their limit.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: RawLimit,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is asked for, so that reaching it exactly is no error.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::other(format!(
                "it decompresses to more than {} bytes ({}); stopped there",
                self.limit.bytes, self.limit.why
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The blocking end of the download channel.
pub(crate) struct ChannelReader {
    pub rx: mpsc::Receiver<Bytes>,
    pub buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// A reader that stops with an error once the job is cancelled.
pub(crate) struct Cancellable<R> {
    pub inner: R,
    pub cancel: CancellationToken,
}

impl<R: Read> Read for Cancellable<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}
