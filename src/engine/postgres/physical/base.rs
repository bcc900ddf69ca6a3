//! Base backups: `pg_basebackup` over the replication protocol, its tar stream compressed,
//! sealed, hashed and uploaded as it is read, checked file by file against the
//! `backup_manifest` PostgreSQL wrote, then committed by a manifest of lifeboat's own.

use std::process::Stdio;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::tar::{Extract, FileChecksum, TarParser, TarTap, parse_manifest, verify_files};
use crate::config::SourceConfig;
use crate::engine::postgres::{
    ChildGuard, pg_error, server_version, source_conn, tool_failure, tools,
};
use crate::error::{Error, Result};
use crate::manifest::{BackupId, DataInfo, EncryptionInfo};
use crate::pipeline::crypt::{EncryptionConfig, Seal, Unseal};
use crate::pipeline::stream::{Expect, Stages, download_into, upload_reader};
use crate::progress::Progress;
use crate::storage::{ObjectKey, ObjectStore, ObjectStoreExt, StoreError};
use crate::wal::chain::BaseNeeds;
use crate::wal::names::{Lsn, valid_segment_size};

/// Where base backups live, beside the WAL under the prefix the catalog keeps to itself.
pub const BASE_PREFIX: &str = "_lifeboat/base/";
pub const BASE_MANIFEST: &str = "manifest.json";
const MAX_BASE_MANIFEST: u64 = 1024 * 1024;

/// The commit point of a base backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseManifest {
    pub format: u32,
    pub id: BackupId,
    pub source: String,
    pub started_at: DateTime<Utc>,
    /// When `pg_basebackup` had finished: the backup is consistent by then.
    pub finished_at: DateTime<Utc>,
    pub server_version: String,
    pub system_identifier: String,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
    pub wal_segment_size: u64,
    pub pg_basebackup_version: String,
    pub data: DataInfo,
    pub encryption: Option<EncryptionInfo>,
    /// Files listed in PostgreSQL's `backup_manifest` (kept inside the tar, checked on
    /// backup and on `verify`).
    pub files: usize,
    /// SHA-256 of `backup_manifest` as PostgreSQL wrote it.
    pub backup_manifest_sha256: String,
    /// The checksum `backup_manifest` gives each file (SHA-256 in older base backups).
    #[serde(default)]
    pub file_checksums: FileChecksum,
}

impl BaseManifest {
    pub fn needs(&self) -> BaseNeeds {
        BaseNeeds {
            timeline: self.timeline,
            start_lsn: self.start_lsn,
            end_lsn: self.end_lsn,
            consistent_at: self.finished_at,
        }
    }

    pub fn dir(&self) -> String {
        format!("{BASE_PREFIX}{}/{}/", self.source, self.id)
    }

    pub fn data_key(&self) -> Result<ObjectKey> {
        Ok(ObjectKey::new(format!("{}{}", self.dir(), self.data.key))?)
    }

    /// What its stored bytes must be, for a download (a verify or a restore).
    pub(crate) fn expect(&self, keys: Option<&EncryptionConfig>) -> Result<Expect> {
        let unseal = match &self.encryption {
            Some(info) => Some(Unseal::for_backup(self.id.as_str(), info, keys)?),
            None => None,
        };
        Ok(Expect {
            stored_bytes: self.data.stored_bytes,
            stored_sha256: self.data.sha256.clone(),
            raw: None,
            unseal,
        })
    }
}

pub struct BaseOptions {
    pub compression_level: i32,
    pub threads: u32,
    pub seal: Option<Arc<Seal>>,
}

/// Takes a base backup of `source`. WAL is left to the archive (`-X none`): `pg_basebackup`
/// returns once the server has archived the WAL the backup needs.
pub async fn base_backup(
    store: &dyn ObjectStore,
    source: &SourceConfig,
    opts: &BaseOptions,
    clock: &crate::clock::Clock,
    progress: Arc<dyn Progress>,
    log: &(dyn Fn(String) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<BaseManifest> {
    let conn = source_conn(source)?;
    let client = conn.connect().await?;
    let (version, major) = server_version(&client).await?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                    current_setting('archive_mode'), \
                    (SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END \
                       FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(pg_error("read the cluster's identity"))?;
    let system_identifier: String = row.get(0);
    let archive_mode: String = row.get(1);
    let segment_size = row.get::<_, i64>(2) as u64;
    drop(client);
    let streamed = source.pitr.as_ref().is_some_and(|p| p.stream);
    if archive_mode == "off" && !streamed {
        return Err(Error::Invalid(format!(
            "source {}: archive_mode is off, so no WAL reaches the archive and a base backup could never be restored; set archive_mode = on and archive_command, or stream the WAL with `stream = true` under [source.pitr] (docs/postgres.md)",
            source.name
        )));
    }
    if !valid_segment_size(segment_size) {
        return Err(Error::Invalid(format!(
            "source {}: wal_segment_size {segment_size} is not one PostgreSQL uses",
            source.name
        )));
    }
    let tool = tools::find("pg_basebackup", source.bin_dir.as_deref(), major)?;

    let started_at = clock.now();
    let id = BackupId::generate(started_at);
    let dir = format!("{BASE_PREFIX}{}/{id}/", source.name);
    let data_name = if opts.seal.is_some() {
        "base.tar.zst.age"
    } else {
        "base.tar.zst"
    };
    let data_key = ObjectKey::new(format!("{dir}{data_name}"))?;
    log(format!("base backup {id} of {} started", source.name));

    let mut cmd = conn.command(&tool.path);
    cmd.args([
        "-D",
        "-",
        "-F",
        "t",
        "-X",
        "none",
        "-c",
        "fast",
        "--manifest-checksums=CRC32C",
        "--no-password",
    ])
    .arg(format!("--label=lifeboat {id}"))
    .stdout(Stdio::piped());
    let mut child = ChildGuard::spawn(cmd, "pg_basebackup")?;
    let stdout = child
        .stdout()
        .ok_or_else(|| Error::Invalid("pg_basebackup has no stdout".into()))?;
    let (reader, parser) = TarTap::new(stdout, FileChecksum::Crc32c);
    let uploaded = upload_reader(
        store,
        &data_key,
        Box::new(reader),
        Stages {
            level: opts.compression_level,
            threads: opts.threads,
            seal: opts.seal.clone(),
        },
        progress,
        cancel,
    )
    .await;
    let (status, stderr) = child.wait(cancel).await?;
    let checked = (|| {
        // pg_basebackup's own failure is the first cause; a short tar follows from it.
        if !status.success() {
            return Err(tool_failure("pg_basebackup", status, &stderr));
        }
        let uploaded = uploaded?;
        let parser = parser
            .lock()
            .map_err(|_| Error::Invalid("the tar reader failed".into()))?;
        let tar = &parser.summary;
        if let Some(e) = &tar.error {
            return Err(Error::Invalid(e.clone()));
        }
        if !tar.complete {
            return Err(Error::Invalid(
                "pg_basebackup's tar stream ended early".into(),
            ));
        }
        let manifest_bytes = tar.manifest.as_ref().ok_or_else(|| {
            Error::Invalid(
                "the base backup holds no backup_manifest (PostgreSQL 13 or later writes one)"
                    .into(),
            )
        })?;
        let pg = parse_manifest(manifest_bytes)?;
        let files = verify_files(&pg, tar)?;
        let range = match pg.wal_ranges.as_slice() {
            [one] => one,
            _ => {
                return Err(Error::Invalid(
                    "the backup_manifest names more than one WAL range (a backup taken across a timeline switch); take it again".into(),
                ));
            }
        };
        let lsn = |s: &str| {
            Lsn::parse(s).ok_or_else(|| Error::Invalid(format!("backup_manifest: bad LSN {s:?}")))
        };
        Ok((
            uploaded,
            files,
            range.timeline,
            lsn(&range.start_lsn)?,
            lsn(&range.end_lsn)?,
            crate::pipeline::hex(<sha2::Sha256 as sha2::Digest>::digest(manifest_bytes)),
        ))
    })();
    let (uploaded, files, timeline, start_lsn, end_lsn, manifest_sha) = match checked {
        Ok(v) => v,
        Err(e) => {
            discard(store, &data_key, log).await;
            return Err(e);
        }
    };
    log(format!(
        "base backup stream stored: {} bytes ({} raw), {files} files match backup_manifest, WAL {start_lsn}..{end_lsn} on timeline {timeline}",
        uploaded.stored_bytes, uploaded.raw_bytes
    ));
    let manifest = BaseManifest {
        format: 1,
        id,
        source: source.name.clone(),
        started_at,
        finished_at: clock.now().max(started_at),
        server_version: version,
        system_identifier,
        timeline,
        start_lsn,
        end_lsn,
        wal_segment_size: segment_size,
        pg_basebackup_version: tool.version,
        data: DataInfo {
            key: data_name.into(),
            raw_bytes: uploaded.raw_bytes,
            stored_bytes: uploaded.stored_bytes,
            compression: "zstd".into(),
            compression_level: opts.compression_level,
            sha256: uploaded.sha256,
        },
        encryption: opts.seal.as_ref().map(|s| s.info()),
        files,
        backup_manifest_sha256: manifest_sha,
        file_checksums: FileChecksum::Crc32c,
    };
    let key = ObjectKey::new(format!("{dir}{BASE_MANIFEST}"))?;
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    if let Err(e) = store.put_bytes(&key, json.into()).await {
        discard(store, &data_key, log).await;
        return Err(e.into());
    }
    log(format!("manifest written: {key}, confirmed by the store"));
    Ok(manifest)
}

async fn discard(store: &dyn ObjectStore, key: &ObjectKey, log: &(dyn Fn(String) + Send + Sync)) {
    if let Err(e) = store.delete_many(std::slice::from_ref(key)).await {
        log(format!("could not remove {key}: {e}"));
    }
}

/// Every committed base backup of `source`, oldest first. Unreadable manifests are
/// returned as errors beside them, never skipped silently.
pub async fn list_bases(
    store: &dyn ObjectStore,
    source: &str,
) -> Result<(Vec<BaseManifest>, Vec<(String, String)>)> {
    let prefix = format!("{BASE_PREFIX}{source}/");
    let mut bases = Vec::new();
    let mut bad = Vec::new();
    for o in store.list_all(&prefix).await? {
        if !o.key.ends_with(&format!("/{BASE_MANIFEST}")) {
            continue;
        }
        let key = ObjectKey::new(o.key.clone())?;
        match store.get_bounded(&key, MAX_BASE_MANIFEST).await {
            Ok(bytes) => match serde_json::from_slice::<BaseManifest>(&bytes) {
                Ok(m) if m.source == source && o.key == format!("{}{BASE_MANIFEST}", m.dir()) => {
                    bases.push(m)
                }
                Ok(_) => bad.push((o.key, "names another source or id than its place".into())),
                Err(e) => bad.push((o.key, format!("not a base backup manifest: {e}"))),
            },
            Err(StoreError::NotFound(_)) => {}
            Err(e) => bad.push((o.key, e.to_string())),
        }
    }
    bases.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((bases, bad))
}

/// Downloads a base backup without unpacking it: the stored bytes against their SHA-256,
/// then every file in the tar against the `backup_manifest` inside it, as a restore checks
/// them. Returns how many files matched.
pub async fn verify_base(
    store: &dyn ObjectStore,
    base: &BaseManifest,
    keys: Option<&EncryptionConfig>,
    cancel: &CancellationToken,
) -> Result<usize> {
    let parsed = download_into(
        store,
        &base.data_key()?,
        base.expect(keys)?,
        Extract(TarParser::new(base.file_checksums)),
        cancel,
    )
    .await?;
    let tar = &parsed.0.summary;
    if !tar.complete {
        return Err(Error::Invalid(format!(
            "base backup {} ends before its tar does",
            base.id
        )));
    }
    let manifest = tar.manifest.as_deref().ok_or_else(|| {
        Error::Invalid(format!("base backup {} holds no backup_manifest", base.id))
    })?;
    let sha = crate::pipeline::hex(<sha2::Sha256 as sha2::Digest>::digest(manifest));
    if sha != base.backup_manifest_sha256 {
        return Err(Error::Invalid(format!(
            "base backup {}: its backup_manifest is not the one taken (sha256 {sha}, recorded {})",
            base.id, base.backup_manifest_sha256
        )));
    }
    let files = verify_files(&parse_manifest(manifest)?, tar)?;
    if files != base.files {
        return Err(Error::Invalid(format!(
            "base backup {}: {files} files checked, its manifest says {}",
            base.id, base.files
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_manifest_from_before_crc32c_is_checked_with_sha256() {
        let written = serde_json::json!({
            "format": 1, "id": "20261122T020000Z-3a1c", "source": "billing",
            "started_at": "2026-11-22T02:00:00Z", "finished_at": "2026-11-22T02:00:13Z",
            "server_version": "15.8", "system_identifier": "7301",
            "timeline": 1, "start_lsn": "0/2000028", "end_lsn": "0/2000100",
            "wal_segment_size": 16777216, "pg_basebackup_version": "15.8",
            "data": {"key": "base.tar.zst", "raw_bytes": 10, "stored_bytes": 5,
                     "compression": "zstd", "compression_level": 3, "sha256": "ab"},
            "encryption": null, "files": 1, "backup_manifest_sha256": "cd"
        });
        let old: BaseManifest = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(old.file_checksums, FileChecksum::Sha256);
        let mut new = written;
        new["file_checksums"] = "CRC32C".into();
        let new: BaseManifest = serde_json::from_value(new).unwrap();
        assert_eq!(new.file_checksums, FileChecksum::Crc32c);
        assert!(
            serde_json::to_string(&new)
                .unwrap()
                .contains("\"file_checksums\":\"CRC32C\"")
        );
    }
}
