//! The backup and restore stages over any reader or writer, for objects that are not a
//! logical dump: WAL segments and base backups. Same zstd, age and SHA-256 as a dump, same
//! bounded channel, same confirmed put.

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::backup::{CHANNEL_DEPTH, compress, tokio_stream_from, upload_gone, zstd_workers};
use super::crypt::{Seal, Unseal};
use super::restore::{ChannelReader, RawLimit, decoder};
use super::sha256_hex;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sniff::{Compression, Content, Format};
use crate::storage::{ByteStream, ObjectKey, ObjectStore};

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// SHA-256 of the stored (compressed, perhaps encrypted) bytes.
    pub sha256: String,
    pub stored_bytes: u64,
    pub raw_bytes: u64,
}

/// How an upload compresses and seals: zstd level and workers (0: one per core, at most a
/// few), age recipients.
pub(crate) struct Stages {
    pub level: i32,
    pub threads: u32,
    pub seal: Option<Arc<Seal>>,
}

/// Compresses (and seals) `reader` into `key`. `Ok` only once the store confirmed all of it;
/// on error nothing is left that the store shows as complete (the caller decides whether an
/// object that was stored but is not wanted goes).
pub(crate) async fn upload_reader(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    reader: Box<dyn Read + Send>,
    stages: Stages,
    progress: Arc<dyn Progress>,
    cancel: &CancellationToken,
) -> Result<Uploaded> {
    let Stages {
        level,
        threads,
        seal,
    } = stages;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let cancel2 = cancel.clone();
    let compressor = tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let result = compress(
            &mut reader,
            level,
            zstd_workers(threads),
            seal.as_deref(),
            &tx,
            &*progress,
            &cancel2,
        );
        if let Err(e) = &result {
            // Poison the upload so the store aborts instead of committing a short object.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    let body: ByteStream = Box::pin(tokio_stream_from(rx));
    let put = store.put(key, body).await;
    let compressed = compressor
        .await
        .map_err(|e| Error::Invalid(format!("the compression stopped: {e}")))?;
    match (compressed, put) {
        (Ok((sha256, stored, raw)), Ok(put)) if put.size == stored => Ok(Uploaded {
            sha256,
            stored_bytes: stored,
            raw_bytes: raw,
        }),
        (Ok((_, stored, _)), Ok(put)) => Err(Error::Size {
            key: key.to_string(),
            expected: stored,
            actual: put.size,
        }),
        (Err(c), Err(p)) if upload_gone(&c) => Err(p.into()),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

/// What a download must match: the stored bytes' size and hash, the plaintext's size and
/// hash (when recorded), and how it is sealed.
pub(crate) struct Expect {
    pub stored_bytes: u64,
    pub stored_sha256: String,
    pub raw: Option<(u64, String)>,
    pub unseal: Option<Unseal>,
}

/// Downloads `key`, decrypts and decompresses it into `out` on a blocking thread, never
/// reading more than the expected sizes. Checks both hashes; the caller must discard what
/// `out` received when this fails.
pub(crate) async fn download_into<W: Write + Send + 'static>(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    expect: Expect,
    out: W,
    cancel: &CancellationToken,
) -> Result<W> {
    let Expect {
        stored_bytes,
        stored_sha256,
        raw,
        unseal,
    } = expect;
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let cancel2 = cancel.clone();
    let raw_limit = raw.as_ref().map(|r| r.0);
    let consumer = tokio::task::spawn_blocking(move || -> Result<(W, u64, String)> {
        let reader = ChannelReader {
            rx,
            buf: Bytes::new(),
        };
        let known = Format {
            compression: Some(Compression::Zstd),
            content: Content::Unknown,
        };
        let limit = RawLimit {
            bytes: raw_limit.unwrap_or(u64::MAX),
            why: "the size its record gives",
        };
        let (_, mut reader) = decoder(reader, Some(known), unseal.as_ref(), limit, &cancel2)?;
        let mut out = out;
        // Only a recorded plaintext hash is worth a pass over every byte (a base backup's
        // files are checked one by one against its backup_manifest instead).
        let mut hasher = raw_limit.map(|_| Sha256::new());
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(Error::io("decompress"))?;
            if n == 0 {
                break;
            }
            if let Some(h) = &mut hasher {
                h.update(&buf[..n]);
            }
            size += n as u64;
            out.write_all(&buf[..n]).map_err(Error::io("write"))?;
        }
        Ok((out, size, hasher.map(sha256_hex).unwrap_or_default()))
    });
    let downloaded = async {
        let mut stream = store.get(key).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut sink = Some(tx);
        loop {
            let chunk = tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled),
                chunk = stream.try_next() => chunk.map_err(Error::io(format!("download {key}")))?,
            };
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            if size > stored_bytes {
                return Err(Error::Size {
                    key: key.to_string(),
                    expected: stored_bytes,
                    actual: size,
                });
            }
            hasher.update(&chunk);
            if let Some(tx) = &sink
                && tx.send(chunk).await.is_err()
            {
                sink = None;
            }
        }
        Ok((sha256_hex(hasher), size))
    }
    .await;
    let consumed = consumer
        .await
        .map_err(|e| Error::Invalid(format!("the decompression stopped: {e}")))?;
    let (sha, size) = downloaded?;
    if size != stored_bytes {
        return Err(Error::Size {
            key: key.to_string(),
            expected: stored_bytes,
            actual: size,
        });
    }
    if sha != stored_sha256 {
        return Err(Error::Checksum {
            key: key.to_string(),
            expected: stored_sha256,
            actual: sha,
        });
    }
    let (out, raw_size, raw_sha) = consumed?;
    if let Some((want_size, want_sha)) = raw
        && (raw_size != want_size || raw_sha != want_sha)
    {
        return Err(Error::Invalid(format!(
            "{key} decompresses to {raw_size} bytes with sha256 {raw_sha}; its record says {want_size} bytes with sha256 {want_sha}"
        )));
    }
    Ok(out)
}
