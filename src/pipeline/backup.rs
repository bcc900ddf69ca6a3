//! snapshot → zstd (multi-threaded) → SHA-256 → upload, then the manifest as commit point.
//!
//! The dump never sits in memory whole: a blocking thread compresses and hashes into a small
//! bounded channel that the upload drains, so memory stays a few chunks plus the store's part
//! buffers, whatever the database size.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::crypt::{Seal, Sealed};
use super::sha256_hex;
use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::debris::{Debris, Recorded, Recorder};
use crate::engine::{self, Snapshot, SnapshotJob};
use crate::error::{Error, Result};
use crate::jobs::{Job, hostname};
use crate::manifest::{BackupId, DataInfo, MANIFEST_NAME, Manifest, ToolInfo, Trigger};
use crate::progress::{Phase, Progress};
use crate::storage::{ByteStream, ObjectKey, ObjectStore, ObjectStoreExt, StoreError};

const CHUNK: usize = 1 << 20;
pub(crate) const CHANNEL_DEPTH: usize = 4;
const ZSTD_JOB_SIZE: u32 = 1 << 20;
/// zstd workers when the config says "one per core": more rarely pays (level 3 outruns most
/// uploads with a few) and each costs memory.
const DEFAULT_MAX_THREADS: u32 = 4;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub trigger: Trigger,
    pub compression_level: i32,
    /// zstd workers; 0 = one per core.
    pub threads: u32,
    pub staging: PathBuf,
    /// Hash every row of the snapshot into per-table content checksums.
    pub content_checksums: bool,
    /// Encrypt the compressed stream with age.
    pub seal: Option<Arc<Seal>>,
    /// Sign the manifest (see [`crate::signing`]).
    pub signer: Option<Arc<crate::signing::Signer>>,
}

pub(crate) struct BackupRun<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub source: &'a SourceConfig,
    pub opts: &'a BackupOptions,
    pub clock: &'a Clock,
    pub progress: Arc<dyn Progress>,
    pub cancel: CancellationToken,
    pub job: &'a Job,
    pub debris: &'a Recorder,
}

impl BackupRun<'_> {
    pub async fn run(self) -> Result<Manifest> {
        let mut staging = None;
        let result = self.run_staged(&mut staging).await;
        // The snapshot copy is gone with the run; its directory goes now, whatever happened.
        if let Some((path, recorded)) = staging {
            recorded.remove_dir(&path);
        }
        result
    }

    async fn run_staged(&self, staging: &mut Option<(PathBuf, Recorded)>) -> Result<Manifest> {
        let started_at = self.clock.now();
        let id = BackupId::generate(started_at);
        self.job.set_backup(id.as_str());
        let dir = ObjectKey::new(format!("{}/{id}", self.source.name))?;
        let mut data_name = format!("data.{}.zst", self.source.engine.dump_extension());
        if self.opts.seal.is_some() {
            data_name.push_str(".age");
        }
        let data_key = dir.join(&data_name)?;
        self.job
            .log(format!("backup {id} of {} started", self.source.name));

        let mut snapshot = self.snapshot(staging).await?;
        let finish = snapshot.finish.take();
        if finish.is_none() {
            log_counts(self.job, &snapshot.tables);
        }
        let mut content = snapshot.content.take();
        if let Some(sums) = &content {
            log_content(self.job, sums);
        }
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let source_info = snapshot.source.clone();
        let mut tables = snapshot.tables.clone();
        let postgres = snapshot.postgres.clone();

        self.progress.phase(Phase::Upload, snapshot.raw_size);
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
        let level = self.opts.compression_level;
        let threads = zstd_workers(self.opts.threads);
        // Recorded before the first byte goes up: a kill from here on leaves an upload (or an
        // object without a manifest) that the next run removes.
        let upload = self.debris.record(&Debris::Upload {
            key: data_key.to_string(),
        })?;
        let progress = self.progress.clone();
        let cancel = self.cancel.clone();
        let seal = self.opts.seal.clone();
        let compressor = tokio::task::spawn_blocking(move || {
            // The snapshot (and the staging files it keeps) lives until the dump is read.
            let mut snapshot = snapshot;
            let result = compress(
                &mut snapshot.reader,
                level,
                threads,
                seal.as_deref(),
                &tx,
                &*progress,
                &cancel,
            );
            if let Err(e) = &result {
                // Poison the upload so the store aborts instead of committing a short object.
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
            result
        });
        let body: ByteStream = Box::pin(tokio_stream_from(rx));
        let put = self.store.put(&data_key, body).await;
        let compressed = compressor.await.expect("compression thread panicked");
        let (sha256, stored_bytes, raw_bytes) = match (compressed, put) {
            (Ok(c), Ok(put)) if put.size == c.1 => {
                self.job.log(format!(
                    "uploaded {data_key}: {} bytes in {} part(s), confirmed by the store",
                    put.size, put.parts
                ));
                c
            }
            (Ok(c), Ok(put)) => {
                self.discard(&data_key, upload).await;
                return Err(Error::Size {
                    key: data_key.to_string(),
                    expected: c.1,
                    actual: put.size,
                });
            }
            // The compressor only saw the upload go away: the store's error is the cause.
            (Err(c), Err(p)) if upload_gone(&c) => {
                self.discard_after(&p, &data_key, upload).await;
                return Err(p.into());
            }
            (Err(e), Err(p)) => {
                self.discard_after(&p, &data_key, upload).await;
                return Err(e);
            }
            (Err(e), Ok(_)) => {
                self.discard(&data_key, upload).await;
                return Err(e);
            }
            (Ok(_), Err(e)) => {
                self.discard_after(&e, &data_key, upload).await;
                return Err(e.into());
            }
        };
        self.job.add_bytes(stored_bytes);
        if let Some(finish) = finish {
            match finish.await {
                Ok(done) => {
                    tables = done.tables;
                    log_counts(self.job, &tables);
                    if let Some(sums) = done.content {
                        log_content(self.job, &sums);
                        content = Some(sums);
                    }
                }
                Err(e) => {
                    self.discard(&data_key, upload).await;
                    return Err(e);
                }
            }
        }

        if self.cancel.is_cancelled() {
            self.discard(&data_key, upload).await;
            return Err(Error::Cancelled);
        }
        self.progress.phase(Phase::Commit, None);
        let mut manifest = Manifest {
            format: crate::manifest::FORMAT,
            id,
            source: source_info,
            started_at,
            finished_at: self.clock.now().max(started_at),
            trigger: self.opts.trigger,
            tool: ToolInfo::this(),
            host: hostname(),
            data: DataInfo {
                key: data_name,
                raw_bytes,
                stored_bytes,
                compression: "zstd".into(),
                compression_level: level,
                sha256,
            },
            encryption: self.opts.seal.as_ref().map(|s| s.info()),
            tables,
            content_checksums: content.unwrap_or_default(),
            postgres,
            integrity: None,
        };
        manifest.seal(self.opts.signer.as_deref());
        let manifest_key = dir.join(MANIFEST_NAME)?;
        // Written only now that the store has confirmed the data object, and confirmed in
        // turn: the backup exists once this returns.
        let bytes = manifest.to_json();
        let written = match self
            .store
            .put_bytes(&manifest_key, bytes.clone().into())
            .await
        {
            Ok(w) => w,
            Err(e) => {
                self.discard(&data_key, upload).await;
                return Err(e.into());
            }
        };
        upload.clear();
        self.job.log(format!(
            "manifest written: {manifest_key}, confirmed by the store"
        ));
        // The backup exists whatever happens to the index: a stale one is repaired by the
        // next listing.
        if let Err(e) = crate::catalog::index::note_written(
            self.store.as_ref(),
            &self.source.name,
            &manifest_key,
            &bytes,
            written.etag.as_deref(),
        )
        .await
        {
            self.job.log(format!(
                "catalog index not updated (the next listing will): {e}"
            ));
        }
        Ok(manifest)
    }

    /// After a failed upload: the store removed what it could; an object can only be left when
    /// it was stored but not confirmed. A store that cannot be reached is not asked again now
    /// (each request would wait out its timeouts): the record stays for the next run's sweep.
    async fn discard_after(&self, e: &StoreError, data_key: &ObjectKey, upload: Recorded) {
        if matches!(e, StoreError::Unreachable { .. }) {
            upload.keep();
        } else {
            self.discard(data_key, upload).await;
        }
    }

    /// Removes the data object of a backup that will not be committed; if that fails, the
    /// record stays for the next sweep.
    async fn discard(&self, data_key: &ObjectKey, upload: Recorded) {
        match self.store.delete_many(std::slice::from_ref(data_key)).await {
            Ok(()) => upload.clear(),
            Err(e) => self.job.log(format!(
                "could not remove {data_key} (the next run will): {e}"
            )),
        }
    }

    async fn snapshot(&self, staged: &mut Option<(PathBuf, Recorded)>) -> Result<Snapshot> {
        // Recorded, so that a kill does not leave a staged copy to fill the disk run after run.
        let made = std::sync::Mutex::new(None);
        let staging = || -> Result<PathBuf> {
            let (path, recorded) = self.debris.staging_dir(&self.opts.staging)?;
            *made.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), recorded));
            Ok(path)
        };
        let job = SnapshotJob {
            progress: self.progress.clone(),
            cancel: &self.cancel,
            content_checksums: self.opts.content_checksums,
            staging: &staging,
        };
        let snapshot = engine::for_source(self.source)
            .snapshot(self.source, job)
            .await;
        *staged = made.into_inner().unwrap_or_else(|e| e.into_inner());
        snapshot
    }
}

fn log_counts(job: &Job, tables: &[crate::manifest::TableCount]) {
    job.log(format!(
        "snapshot taken: {} tables, {} rows",
        tables.len(),
        tables.iter().map(|t| t.rows).sum::<u64>()
    ));
}

fn log_content(job: &Job, sums: &crate::content::ContentChecksums) {
    job.log(format!(
        "content checksums computed for {} tables",
        sums.len()
    ));
}

/// zstd workers for a configured count, where 0 means one per core (at most a few).
pub(crate) fn zstd_workers(configured: u32) -> u32 {
    match configured {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get() as u32)
            .min(DEFAULT_MAX_THREADS),
        n => n,
    }
}

pub(crate) fn tokio_stream_from(
    mut rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Compresses (and seals) what `reader` gives into the channel: a snapshot, a WAL segment, a
/// base backup's tar stream. Returns (sha256 of the stored bytes, stored bytes, raw bytes).
pub(crate) fn compress(
    reader: &mut dyn Read,
    level: i32,
    threads: u32,
    seal: Option<&Seal>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<(String, u64, u64)> {
    let sink = ChunkSender {
        tx,
        buf: Vec::with_capacity(CHUNK),
        hasher: Sha256::new(),
        stored: 0,
    };
    // The hash is over the stored (encrypted) bytes, so `verify` works without the key.
    let sink = Sealed::new(sink, seal)?;
    let mut enc = zstd::stream::write::Encoder::new(sink, level).map_err(Error::io("zstd"))?;
    if threads > 1 {
        enc.multithread(threads)
            .map_err(Error::io("zstd workers"))?;
        // zstd's default job is 4 windows (8 MiB at level 3), and each worker holds a few jobs
        // of input and output: 66 MiB for two workers. 1 MiB jobs take 7 MiB, compress as
        // well and as fast (docs/performance.md).
        enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
            .map_err(Error::io("zstd job size"))?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut raw = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let n = reader
            .read(&mut buf)
            .map_err(Error::io("read the snapshot"))?;
        if n == 0 {
            break;
        }
        enc.write_all(&buf[..n]).map_err(upload_gone_io)?;
        raw += n as u64;
        progress.advance(raw);
    }
    let mut sink = enc
        .finish()
        .and_then(Sealed::finish)
        .map_err(upload_gone_io)?;
    sink.flush_chunk().map_err(upload_gone_io)?;
    Ok((sha256_hex(sink.hasher), sink.stored, raw))
}

fn upload_gone_io(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::Io {
            context: "upload stopped".into(),
            source: e,
        }
    } else {
        Error::io("compress")(e)
    }
}

/// Whether the compressor stopped only because the upload stopped reading (its own cause
/// is the store's error, not this one).
pub(crate) fn upload_gone(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

/// A blocking writer that hashes what passes and hands it to the upload in 1 MiB chunks.
struct ChunkSender<'a> {
    tx: &'a mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    hasher: Sha256,
    stored: u64,
}

impl ChunkSender<'_> {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChunkSender<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.stored += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
