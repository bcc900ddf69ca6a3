//! Named stores (3-2-1): a backup is written to its source's first store and copied to the
//! others; each store keeps its own retention. This module knows which stores exist, what each
//! holds, which copies were proven good, and which copies a store still owes.
//!
//! A copy is *verified* when its stored bytes were read back and hashed against the manifest:
//! by a copy (as its source, or after arriving), by `verify`, or (before these records) by a
//! verify or restore job of the default store. A freshly written backup is not verified until
//! something reads it: the copy that follows it, in a store set with more than one store. The
//! proof is a small check record kept in the store that holds the copy, under
//! `_lifeboat/verified/{source}/{id}.json`, so it travels with the store and every host sees
//! it. Like everything in a bucket it is untrusted input: it is parsed with a size limit and
//! only counts when it names the manifest's SHA-256.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::catalog::{BackupEntry, BackupState, Catalog};
use crate::config::{ChecksumMode, Config, StorageConfig};
use crate::error::{Error, Result};
use crate::retention::{self, Candidate, Policy, Settings};
use crate::state::{CacheKind, State};
use crate::storage::{
    ByteStream, IncompleteUpload, ListPage, LocalStore, ObjectKey, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutOutcome, S3Options, S3Store, StoreError, StoreResult,
};

/// The name `[storage]` goes by when it sits beside `[[store]]` tables.
pub const DEFAULT_NAME: &str = "default";
/// Where check records live in each store.
pub const CHECKS_PREFIX: &str = "_lifeboat/verified/";
/// lifeboat's own records that `lifeboat copy` mirrors from the default store.
pub const RECORD_PREFIXES: [&str; 2] = ["_lifeboat/jobs/", "_lifeboat/drills/"];
/// A check record is a few hundred bytes; anything larger is not one.
const CHECK_LIMIT: u64 = 64 * 1024;
const FETCH_CONCURRENCY: usize = 16;

/// One store as configured: `[storage]` or a `[[store]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub name: String,
    pub storage: StorageConfig,
    /// Replaces the retention policy of every source in this store.
    pub retention: Option<Policy>,
    /// age recipients every backup of a source using this store is also encrypted to, so
    /// whoever holds this store's key can read its copies.
    pub recipients: Vec<String>,
    /// Environment variables holding this store's S3 credentials (instead of the AWS chain).
    pub credentials: Option<CredentialsEnv>,
    /// Written as `[storage]`.
    from_storage_table: bool,
}

/// The names of the variables that hold a store's access key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsEnv {
    pub access_key_id_env: String,
    pub secret_access_key_env: String,
    pub session_token_env: Option<String>,
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        StoreConfig::from_table(table).map_err(serde::de::Error::custom)
    }
}

impl StoreConfig {
    /// A `[[store]]` table: its own keys, then the rest read exactly as `[storage]` is.
    fn from_table(mut t: toml::Table) -> std::result::Result<StoreConfig, String> {
        let mut text = |key: &str| -> std::result::Result<Option<String>, String> {
            match t.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("[[store]] `{key}` must be a string")),
            }
        };
        let name = text("name")?.ok_or("a [[store]] table needs `name`")?;
        let access = text("access_key_id_env")?;
        let secret = text("secret_access_key_env")?;
        let token = text("session_token_env")?;
        validate_store_name(&name)?;
        let ctx = |e: String| format!("store {name:?}: {e}");
        let credentials = match (access, secret) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Some(CredentialsEnv {
                access_key_id_env: a,
                secret_access_key_env: s,
                session_token_env: token,
            }),
            (None, None) if token.is_none() => None,
            _ => {
                return Err(ctx(
                    "access_key_id_env and secret_access_key_env go together (session_token_env needs both)".into(),
                ));
            }
        };
        let retention = t
            .remove("retention")
            .map(|v| v.try_into::<Policy>())
            .transpose()
            .map_err(|e| ctx(format!("retention: {}", e.message().trim())))?;
        if let Some(p) = &retention {
            p.validate().map_err(|e| ctx(format!("retention.{e}")))?;
        }
        let recipients = match t.remove("recipients") {
            None => Vec::new(),
            Some(v) => v
                .try_into::<Vec<String>>()
                .map_err(|_| ctx("recipients must be a list of age public keys".into()))?,
        };
        let storage: StorageConfig = toml::Value::Table(t)
            .try_into()
            .map_err(|e: toml::de::Error| ctx(e.message().trim().to_owned()))?;
        if credentials.is_some() && matches!(storage, StorageConfig::Local { .. }) {
            return Err(ctx("a local store takes no credentials".into()));
        }
        Ok(StoreConfig {
            name,
            storage,
            retention,
            recipients,
            credentials,
            from_storage_table: false,
        })
    }

    /// Every store, the default first: `[storage]` (named "default") and then the `[[store]]`
    /// tables, or the `[[store]]` tables alone.
    pub(crate) fn resolve(
        storage: Option<StorageConfig>,
        tables: Vec<StoreConfig>,
    ) -> std::result::Result<Vec<StoreConfig>, String> {
        let mut all: Vec<StoreConfig> = storage
            .map(|storage| StoreConfig {
                name: DEFAULT_NAME.into(),
                storage,
                retention: None,
                recipients: Vec::new(),
                credentials: None,
                from_storage_table: true,
            })
            .into_iter()
            .collect();
        all.extend(tables);
        if all.is_empty() {
            return Err("no store: add a [storage] table (or [[store]] tables)".into());
        }
        Ok(all)
    }

    /// How the config names this store in messages.
    pub fn table_name(&self) -> String {
        if self.from_storage_table {
            "storage".into()
        } else {
            format!("store {:?}", self.name)
        }
    }

    /// The retention policy this store applies to `source`.
    pub fn policy<'a>(&'a self, config: &'a Config, source: &str) -> &'a Policy {
        self.retention
            .as_ref()
            .unwrap_or_else(|| config.policy(source))
    }
}

/// Store names are shown in tables and become metric labels: kept plain.
pub fn validate_store_name(name: &str) -> std::result::Result<(), String> {
    crate::config::validate_source_name(name)
        .map_err(|_| format!("store name {name:?} must be 1-64 letters, digits, '_', '.' or '-', not starting with '_', '.' or '-'"))
}

/// Checks across tables, run with the rest of the config's validation.
pub(crate) fn validate(config: &Config) -> std::result::Result<(), String> {
    let mut names = BTreeSet::new();
    for s in &config.stores {
        if !names.insert(s.name.as_str()) {
            return Err(format!("store {:?} is defined twice", s.name));
        }
        for r in &s.recipients {
            r.parse::<age::x25519::Recipient>().map_err(|_| {
                format!(
                    "store {:?}: recipients: {r:?} is not an age X25519 public key (age1...)",
                    s.name
                )
            })?;
        }
    }
    if config.stores.iter().any(|s| !s.recipients.is_empty()) {
        if config
            .encryption
            .as_ref()
            .is_some_and(|e| e.passphrase_env.is_some())
        {
            return Err("store recipients cannot be combined with encryption.passphrase_env: age cannot mix a passphrase with recipients".into());
        }
        if config.backup.content_checksums {
            return Err("backup.content_checksums cannot be combined with store recipients: the unkeyed row sums in the plaintext manifest would let anyone with bucket access guess small tables".into());
        }
    }
    for source in &config.sources {
        let Some(list) = &source.stores else { continue };
        if list.is_empty() {
            return Err(format!(
                "source {:?}: stores is empty; name at least one store",
                source.name
            ));
        }
        let mut seen = BTreeSet::new();
        for n in list {
            if !names.contains(n.as_str()) {
                return Err(format!(
                    "source {:?}: no store named {n:?} (stores: {})",
                    source.name,
                    names.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
            if !seen.insert(n) {
                return Err(format!(
                    "source {:?}: store {n:?} is listed twice",
                    source.name
                ));
            }
        }
    }
    Ok(())
}

/// An open store and its name.
#[derive(Debug, Clone)]
pub struct NamedStore {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    /// The S3 handle behind `store` and who it talks to, for server-side copies.
    s3: Option<(Arc<S3Store>, String)>,
}

impl NamedStore {
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>) -> Self {
        NamedStore {
            name: name.into(),
            store,
            s3: None,
        }
    }

    /// Both stores are S3 buckets reached through the same endpoint with the same
    /// credentials, so the destination can copy server-side.
    pub(crate) fn server_side_with<'a>(
        &'a self,
        other: &'a NamedStore,
    ) -> Option<(&'a S3Store, &'a S3Store)> {
        match (&self.s3, &other.s3) {
            (Some((a, ida)), Some((b, idb))) if ida == idb => Some((a, b)),
            _ => None,
        }
    }
}

/// The S3 settings a store's config describes.
fn s3_options(config: &StoreConfig) -> Result<Option<S3Options>> {
    let StorageConfig::S3 {
        bucket,
        prefix,
        region,
        endpoint,
        force_path_style,
        profile,
        checksums,
        part_size_mib,
        upload_concurrency,
        max_attempts,
        timeouts,
    } = &config.storage
    else {
        return Ok(None);
    };
    let mut opts = S3Options::new(bucket);
    opts.prefix = prefix.clone();
    opts.region = region.clone();
    opts.endpoint = endpoint.clone();
    opts.force_path_style = *force_path_style;
    opts.profile = profile.clone();
    opts.checksums_always = *checksums == ChecksumMode::Always;
    opts.part_size = part_size_mib * 1024 * 1024;
    opts.upload_concurrency = *upload_concurrency;
    opts.max_attempts = *max_attempts;
    opts.timeouts = *timeouts;
    if let Some(env) = &config.credentials {
        let var = |name: &str, key: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    Error::Store(StoreError::Credentials {
                        endpoint: format!("store {}", config.name),
                        detail: format!("the environment variable {name} ({key}) is not set"),
                    })
                })
        };
        let id = var(&env.access_key_id_env, "access_key_id_env")?;
        let secret = var(&env.secret_access_key_env, "secret_access_key_env")?;
        let token = match &env.session_token_env {
            Some(name) => Some(var(name, "session_token_env")?),
            None => None,
        };
        opts.credentials = Some(aws_sdk_s3::config::Credentials::new(
            id,
            secret,
            token,
            None,
            "lifeboat-store-env",
        ));
    }
    Ok(Some(opts))
}

/// Who an S3 store talks to and as whom: equal for two stores that can copy server-side.
fn account(config: &StoreConfig) -> String {
    match &config.storage {
        StorageConfig::S3 {
            endpoint,
            region,
            profile,
            ..
        } => format!(
            "{endpoint:?}|{region:?}|{profile:?}|{:?}",
            config.credentials.as_ref().map(|c| (
                &c.access_key_id_env,
                &c.secret_access_key_env,
                &c.session_token_env
            ))
        ),
        StorageConfig::Local { .. } => String::new(),
    }
}

/// Opens one store.
pub async fn open(config: &StoreConfig) -> Result<NamedStore> {
    Ok(match s3_options(config)? {
        None => {
            let StorageConfig::Local { path, mode } = &config.storage else {
                unreachable!("only S3 has options")
            };
            NamedStore::new(
                config.name.clone(),
                Arc::new(LocalStore::open_with_mode(path, *mode)?),
            )
        }
        Some(opts) => {
            let s3 = Arc::new(S3Store::connect(opts).await);
            NamedStore {
                name: config.name.clone(),
                store: s3.clone(),
                s3: Some((s3, account(config))),
            }
        }
    })
}

/// Opens every store. The default store must open; another that cannot (missing
/// credentials, an unusable directory) stays in the list and answers every call with why,
/// so the catalog shows it as unreachable and restores go on to the next store.
pub async fn open_all(config: &Config) -> Result<Vec<NamedStore>> {
    let mut out = Vec::with_capacity(config.stores.len());
    for (i, sc) in config.stores.iter().enumerate() {
        match open(sc).await {
            Ok(s) => out.push(s),
            Err(e) if i == 0 => return Err(e),
            Err(e) => out.push(NamedStore::new(
                sc.name.clone(),
                Arc::new(Unavailable {
                    name: sc.name.clone(),
                    location: describe(&sc.storage),
                    why: match e {
                        Error::Store(StoreError::Credentials { detail, .. }) => {
                            Why::Credentials(detail)
                        }
                        e => Why::Other(e.to_string()),
                    },
                }),
            )),
        }
    }
    Ok(out)
}

/// The stand-in for a store a [`crate::Lifeboat`] was built without.
pub(crate) fn unopened(name: &str) -> NamedStore {
    NamedStore::new(
        name,
        Arc::new(Unavailable {
            name: name.to_owned(),
            location: format!("store {name}"),
            why: Why::Other("not opened".into()),
        }),
    )
}

/// Where a store's config points, for people (as its `location()` would say once open).
fn describe(storage: &StorageConfig) -> String {
    match storage {
        StorageConfig::Local { path, .. } => path.display().to_string(),
        StorageConfig::S3 {
            bucket,
            prefix,
            endpoint,
            ..
        } => {
            let path = match prefix.trim_matches('/') {
                "" => format!("s3://{bucket}"),
                p => format!("s3://{bucket}/{p}"),
            };
            match endpoint {
                Some(e) => format!("{path} ({e})"),
                None => path,
            }
        }
    }
}

/// A store that could not be opened.
#[derive(Debug)]
struct Unavailable {
    name: String,
    location: String,
    why: Why,
}

#[derive(Debug)]
enum Why {
    Credentials(String),
    Other(String),
}

impl Unavailable {
    fn err(&self) -> StoreError {
        let endpoint = format!("store {}", self.name);
        match &self.why {
            Why::Credentials(detail) => StoreError::Credentials {
                endpoint,
                detail: detail.clone(),
            },
            Why::Other(detail) => StoreError::Unreachable {
                endpoint,
                detail: detail.clone(),
            },
        }
    }
}

#[async_trait]
impl ObjectStore for Unavailable {
    fn location(&self) -> String {
        self.location.clone()
    }
    async fn list_page(&self, _: &str, _: Option<String>) -> StoreResult<ListPage> {
        Err(self.err())
    }
    async fn head(&self, _: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        Err(self.err())
    }
    async fn get(&self, _: &ObjectKey) -> StoreResult<ByteStream> {
        Err(self.err())
    }
    async fn get_prefix(&self, _: &ObjectKey, _: u64) -> StoreResult<Bytes> {
        Err(self.err())
    }
    async fn put(&self, _: &ObjectKey, _: ByteStream) -> StoreResult<PutOutcome> {
        Err(self.err())
    }
    async fn delete_many(&self, _: &[ObjectKey]) -> StoreResult<()> {
        Err(self.err())
    }
    async fn list_incomplete(&self, _: &str) -> StoreResult<Vec<IncompleteUpload>> {
        Err(self.err())
    }
    async fn abort_incomplete(&self, _: &IncompleteUpload) -> StoreResult<()> {
        Err(self.err())
    }
}

/// How a copy was proven (or found bad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckHow {
    /// Read whole by a copy: as its source, or back from its destination.
    Copy,
    /// Re-read by `verify`.
    Verify,
    /// Read by a restore, which found it bad and went on to another store.
    Restore,
}

/// What a store says about its copy of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub source: String,
    pub backup: String,
    /// The SHA-256 the stored bytes hashed to.
    pub sha256: String,
    pub stored_bytes: u64,
    pub at: DateTime<Utc>,
    /// Whether the bytes matched the manifest.
    pub ok: bool,
    pub how: CheckHow,
    pub host: String,
    #[serde(default)]
    pub detail: Option<String>,
}

impl CheckRecord {
    pub fn key(source: &str, id: &str) -> Result<ObjectKey> {
        Ok(ObjectKey::new(format!(
            "{CHECKS_PREFIX}{source}/{id}.json"
        ))?)
    }
}

/// Writes a check record; a store that refuses it (read-only credentials) costs a warning,
/// not the job.
pub(crate) async fn record_check(store: &NamedStore, record: &CheckRecord) {
    let put = async {
        let key = CheckRecord::key(&record.source, &record.backup)?;
        let body = serde_json::to_vec_pretty(record).expect("check records serialize");
        store.store.put_bytes(&key, body.into()).await?;
        Ok::<_, Error>(())
    };
    if let Err(e) = put.await {
        tracing::warn!(
            "store {}: cannot record the check of {}/{}: {e}",
            store.name,
            record.source,
            record.backup
        );
    }
}

/// Reads at most `limit` bytes of an object; a longer one is refused, not truncated.
pub(crate) async fn get_bounded(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut body = store.get(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(Error::io(format!("read {key}")))?
    {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::Invalid(format!(
                "{key} is larger than {limit} bytes; it is not one of lifeboat's records"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The state of one store's copy of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyState {
    /// Complete, and its bytes were hashed against the manifest.
    Verified,
    /// Complete by its listing (manifest and data of the right size), never hashed.
    Unverified,
    /// Its bytes did not match the manifest when last read.
    Failed,
    /// Data without a manifest: a copy or backup that stopped before its commit point.
    Incomplete,
    /// A manifest that is unreadable, names missing data, or differs from the other copies'.
    Damaged,
    /// Nothing of it in the store.
    Missing,
    /// The store could not be read.
    Unknown,
}

impl CopyState {
    pub fn label(self) -> &'static str {
        match self {
            CopyState::Verified => "verified",
            CopyState::Unverified => "unverified",
            CopyState::Failed => "FAILED",
            CopyState::Incomplete => "incomplete",
            CopyState::Damaged => "damaged",
            CopyState::Missing => "missing",
            CopyState::Unknown => "unknown",
        }
    }

    /// A restore can read it (a verified copy, or one not yet checked).
    pub fn readable(self) -> bool {
        matches!(self, CopyState::Verified | CopyState::Unverified)
    }
}

/// One store's line for a backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreCopy {
    pub store: String,
    pub state: CopyState,
    /// Its retention keeps the backup (it holds it, or should).
    pub owed: bool,
    /// When it was last checked (verified or failed).
    pub checked_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

/// Where a backup's copies are: one line per store that holds it or should, in the source's
/// store order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Copies {
    pub stores: Vec<StoreCopy>,
}

impl Copies {
    pub fn verified(&self) -> usize {
        self.stores
            .iter()
            .filter(|c| c.state == CopyState::Verified)
            .count()
    }

    /// The stores that should hold a copy: those that hold one and those that owe one.
    pub fn expected(&self) -> usize {
        self.stores
            .iter()
            .filter(|c| c.owed || c.state != CopyState::Missing)
            .count()
    }

    /// `2/3`: verified copies of expected ones.
    pub fn label(&self) -> String {
        format!("{}/{}", self.verified(), self.expected())
    }

    /// Stores that owe a verified copy and have none (or could not be read).
    pub fn behind(&self) -> impl Iterator<Item = &StoreCopy> {
        self.stores
            .iter()
            .filter(|c| (c.owed && c.state != CopyState::Verified) || c.state == CopyState::Unknown)
    }

    /// Stores to restore from, in order: verified copies first, then unchecked ones.
    pub fn restore_order(&self) -> Vec<&str> {
        let pick = |s: CopyState| {
            self.stores
                .iter()
                .filter(move |c| c.state == s)
                .map(|c| c.store.as_str())
        };
        pick(CopyState::Verified)
            .chain(pick(CopyState::Unverified))
            .collect()
    }

    pub fn summary(&self) -> CopyCount {
        CopyCount {
            verified: self.verified() as u16,
            expected: self.expected() as u16,
            behind: self.behind().map(|c| c.store.clone()).collect(),
        }
    }
}

/// The flat form a catalog line carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCount {
    pub verified: u16,
    pub expected: u16,
    /// Stores that owe a verified copy and have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<String>,
}

impl CopyCount {
    pub fn label(&self) -> String {
        format!("{}/{}", self.verified, self.expected)
    }

    pub fn complete(&self) -> bool {
        self.behind.is_empty() && self.verified >= self.expected
    }
}

/// One store's view: what it holds and what was proven about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreListing {
    pub store: String,
    pub location: String,
    /// Why the store could not be read; its copies are then unknown.
    pub error: Option<String>,
    /// The backups in this store, as its own listing resolves them.
    #[serde(skip)]
    pub backups: Vec<BackupEntry>,
    /// Check records by backup directory (`source/id`).
    #[serde(skip)]
    pub checks: BTreeMap<String, CheckRecord>,
    #[serde(skip)]
    pub incomplete: Vec<IncompleteUpload>,
    /// Backup directories this store's retention keeps and that it holds no verified copy of.
    pub owed: BTreeSet<String>,
}

impl StoreListing {
    /// Its backups by directory.
    fn index(&self) -> std::collections::HashMap<String, usize> {
        self.backups
            .iter()
            .enumerate()
            .map(|(i, b)| (b.dir(), i))
            .collect()
    }

    /// The state of this store's copy (`mine`) of `rep` (the backup as the catalog shows it).
    fn copy_state(
        &self,
        rep: &BackupEntry,
        mine: Option<&BackupEntry>,
        legacy: Option<(bool, DateTime<Utc>)>,
    ) -> StoreCopy {
        let dir = rep.dir();
        let line = |state, checked_at, detail| StoreCopy {
            store: self.store.clone(),
            state,
            owed: self.owed.contains(&dir),
            checked_at,
            detail,
        };
        if let Some(e) = &self.error {
            return line(CopyState::Unknown, None, Some(e.clone()));
        }
        let Some(mine) = mine else {
            return line(CopyState::Missing, None, None);
        };
        match mine.state {
            BackupState::Orphan => return line(CopyState::Incomplete, None, mine.problem.clone()),
            BackupState::Damaged => return line(CopyState::Damaged, None, mine.problem.clone()),
            BackupState::Complete => {}
        }
        let (Some(m), Some(want)) = (&mine.manifest, &rep.manifest) else {
            return line(CopyState::Damaged, None, None);
        };
        if m.data.sha256 != want.data.sha256 || m.data.stored_bytes != want.data.stored_bytes {
            return line(
                CopyState::Damaged,
                None,
                Some("its manifest differs from the other copies'".into()),
            );
        }
        match self.checks.get(&dir) {
            Some(c) if c.sha256 == m.data.sha256 && c.stored_bytes == m.data.stored_bytes => {
                if c.ok {
                    line(CopyState::Verified, Some(c.at), None)
                } else {
                    line(CopyState::Failed, Some(c.at), c.detail.clone())
                }
            }
            // A record of other bytes: the copy was checked bad (or replaced since).
            Some(c) if !c.ok => line(CopyState::Failed, Some(c.at), c.detail.clone()),
            _ => match legacy {
                Some((true, at)) => line(CopyState::Verified, Some(at), None),
                Some((false, at)) => line(
                    CopyState::Failed,
                    Some(at),
                    Some("the last verify of this backup failed".into()),
                ),
                None => line(CopyState::Unverified, None, None),
            },
        }
    }
}

/// Reads one store: its backups (through the catalog scanner) and its check records.
pub(crate) async fn list_store(
    store: &NamedStore,
    cache: Option<&State>,
    primary: Option<(Vec<BackupEntry>, Vec<IncompleteUpload>)>,
) -> StoreListing {
    let mut listing = StoreListing {
        store: store.name.clone(),
        location: store.store.location(),
        ..StoreListing::default()
    };
    let read = async {
        let (backups, incomplete) = match primary {
            Some(p) => p,
            None => {
                let mut scanner = crate::catalog::Scanner::new(store.store.as_ref(), cache)
                    .with_cache_prefix(format!("{}\u{0}", store.name))
                    .repairing_index();
                let mut backups = Vec::new();
                while let Some(page) = scanner.next_page().await? {
                    backups.extend(page.backups);
                }
                (backups, scanner.incomplete().await?)
            }
        };
        // Without its check records a store's copies only look unverified: a finding for
        // the log, not a store that cannot be read.
        let checks = read_checks(store, cache).await.unwrap_or_else(|e| {
            tracing::warn!("store {}: cannot read its check records: {e}", store.name);
            BTreeMap::new()
        });
        Ok::<_, Error>((backups, incomplete, checks))
    };
    match read.await {
        Ok((backups, incomplete, checks)) => {
            listing.backups = backups;
            listing.incomplete = incomplete;
            listing.checks = checks;
        }
        Err(e) => listing.error = Some(e.to_string()),
    }
    listing
}

async fn read_checks(
    store: &NamedStore,
    cache: Option<&State>,
) -> Result<BTreeMap<String, CheckRecord>> {
    let objects = store.store.list_all(CHECKS_PREFIX).await?;
    let fetches = objects
        .into_iter()
        .filter(|o| o.size <= CHECK_LIMIT && o.key.ends_with(".json"))
        .map(|o| async move {
            let modified = o.last_modified.map(|t| t.to_rfc3339()).unwrap_or_default();
            let cache_key = format!("{}\u{0}{}", store.name, o.key);
            let cached = cache.and_then(|c| {
                c.cache_get(&cache_key, CacheKind::Check, o.size, &modified)
                    .ok()
                    .flatten()
            });
            let bytes = match cached {
                Some(b) => b,
                None => {
                    let key = ObjectKey::new(o.key.clone())?;
                    let bytes = get_bounded(store.store.as_ref(), &key, CHECK_LIMIT).await?;
                    if let Some(c) = cache {
                        let _ =
                            c.cache_put(&cache_key, CacheKind::Check, o.size, &modified, &bytes);
                    }
                    bytes
                }
            };
            Ok::<_, Error>((o.key, bytes))
        });
    let fetched: Vec<(String, Vec<u8>)> = stream::iter(fetches)
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = BTreeMap::new();
    for (key, bytes) in fetched {
        // A record that does not parse, or names another backup than its key, is ignored.
        let Ok(record) = serde_json::from_slice::<CheckRecord>(&bytes) else {
            continue;
        };
        let dir = format!("{}/{}", record.source, record.backup);
        if key == format!("{CHECKS_PREFIX}{dir}.json") {
            out.insert(dir, record);
        }
    }
    Ok(out)
}

/// Decides, per store and source, which backups the store's retention keeps once it is up
/// to date: the retention planner over every complete backup of the source, as if the store
/// held them all. The ones it keeps and holds no verified copy of are owed.
fn compute_owed(
    config: &Config,
    catalog: &Catalog,
    listings: &mut [StoreListing],
    state_of: &dyn Fn(&StoreListing, &BackupEntry) -> CopyState,
    authentic: &dyn Fn(&BackupEntry) -> bool,
    now: DateTime<Utc>,
) {
    for listing in listings.iter_mut() {
        let Some(sc) = config.stores.iter().find(|s| s.name == listing.store) else {
            continue;
        };
        if listing.error.is_some() {
            continue;
        }
        let mut owed = BTreeSet::new();
        for source in &config.sources {
            let source = source.name.as_str();
            if !config
                .source_stores(source)
                .iter()
                .any(|s| s.name == listing.store)
            {
                continue;
            }
            let backups: Vec<&BackupEntry> =
                catalog.complete().filter(|b| b.source == source).collect();
            let states: Vec<CopyState> = backups.iter().map(|b| state_of(listing, b)).collect();
            let candidates: Vec<Candidate> = backups
                .iter()
                .zip(&states)
                .map(|(b, state)| Candidate {
                    id: b.id.to_string(),
                    time: b.time(),
                    state: BackupState::Complete,
                    stored_bytes: b.stored_bytes(),
                    pinned: catalog.pinned(b),
                    verified: *state == CopyState::Verified,
                    authentic: authentic(b),
                })
                .collect();
            let plan = retention::plan(
                source,
                &candidates,
                sc.policy(config, source),
                now,
                Settings {
                    timezone: config.retention.timezone,
                    orphan_grace: config.retention.orphan_grace,
                    newest_failed: false,
                    force: false,
                    unconfigured: false,
                },
            );
            let kept: BTreeSet<&str> = plan
                .decisions
                .iter()
                .filter(|d| d.keep)
                .map(|d| d.backup.id.as_str())
                .collect();
            for (b, state) in backups.iter().zip(&states) {
                if kept.contains(b.id.as_str()) && *state != CopyState::Verified {
                    owed.insert(b.dir());
                }
            }
        }
        listing.owed = owed;
    }
}

/// The newest verify/restore outcome per backup id from the job history: (ok, when).
pub type Evidence = std::collections::HashMap<String, (bool, DateTime<Utc>)>;

/// Merges the stores' listings into the catalog: a backup found only in another store joins
/// the catalog lines, and every backup learns where its copies are.
pub(crate) fn merge(
    config: &Config,
    catalog: &mut Catalog,
    listings: Vec<StoreListing>,
    legacy: &Evidence,
    authentic: &dyn Fn(&BackupEntry) -> bool,
    now: DateTime<Utc>,
) {
    let mut listings = listings;
    // A backup the default store lacks (pruned there, or never written there) is shown from
    // the first store of its source that holds it complete.
    let known: BTreeSet<String> = if listings.len() > 1 {
        catalog
            .backups
            .iter()
            .filter(|b| b.state == BackupState::Complete)
            .map(BackupEntry::dir)
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut added: BTreeMap<String, BackupEntry> = BTreeMap::new();
    for listing in listings.iter().skip(1) {
        for b in listing
            .backups
            .iter()
            .filter(|b| b.state == BackupState::Complete)
        {
            let dir = b.dir();
            if !known.contains(&dir) && !added.contains_key(&dir) {
                added.insert(dir, b.clone());
            }
        }
    }
    if !added.is_empty() {
        catalog.backups.retain(|b| !added.contains_key(&b.dir()));
        catalog.backups.extend(added.into_values());
        catalog.sort();
    }
    // Before check records existed, a verify of the default store was recorded only as a job.
    let default_name = listings.first().map(|l| l.store.clone());
    let legacy_for = |l: &StoreListing, b: &BackupEntry| {
        if Some(&l.store) == default_name.as_ref() {
            legacy.get(b.id.as_str()).copied()
        } else {
            None
        }
    };
    let indexes: BTreeMap<String, std::collections::HashMap<String, usize>> = listings
        .iter()
        .map(|l| (l.store.clone(), l.index()))
        .collect();
    let mine = |l: &StoreListing, dir: &str| -> Option<usize> {
        indexes.get(&l.store).and_then(|i| i.get(dir)).copied()
    };
    let state_of = |l: &StoreListing, b: &BackupEntry| {
        l.copy_state(
            b,
            mine(l, &b.dir()).map(|i| &l.backups[i]),
            legacy_for(l, b),
        )
        .state
    };
    compute_owed(config, catalog, &mut listings, &state_of, authentic, now);
    // Per source, not per backup: its stores in reading order, and the ones it writes to.
    let mut orders: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for b in &mut catalog.backups {
        if b.state != BackupState::Complete {
            continue;
        }
        let (order, wanted) = orders.entry(b.source.clone()).or_insert_with(|| {
            let wanted = config.source_stores(&b.source);
            let wanted = wanted.iter().map(|s| s.name.clone()).collect();
            (store_order(config, &b.source), wanted)
        });
        let dir = b.dir();
        let mut copies = Copies::default();
        for name in order.iter() {
            let Some(l) = listings.iter().find(|l| &l.store == name) else {
                continue;
            };
            let line = l.copy_state(b, mine(l, &dir).map(|i| &l.backups[i]), legacy_for(l, b));
            let wanted_here = wanted.contains(&l.store);
            if line.owed || line.state != CopyState::Missing || (wanted_here && l.error.is_some()) {
                copies.stores.push(line);
            }
        }
        b.copies = Some(copies);
    }
    catalog.stores = listings;
}

/// The stores in the order a source reads them: its own, then the rest.
pub fn store_order(config: &Config, source: &str) -> Vec<String> {
    let mut order: Vec<String> = config
        .source_stores(source)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    for s in &config.stores {
        if !order.contains(&s.name) {
            order.push(s.name.clone());
        }
    }
    order
}

/// One line per store for the console header, `check` and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct StoreHealth {
    pub store: String,
    pub location: String,
    pub level: crate::health::Level,
    /// Why the store could not be read.
    pub error: Option<String>,
    /// Complete copies it holds, and how many of them are verified.
    pub copies: usize,
    pub verified: usize,
    pub stored_bytes: u64,
    /// Backups its retention keeps that it holds no verified copy of ...
    pub behind: usize,
    /// ... and of those, the ones older than `[check] copies_grace`.
    pub overdue: usize,
    /// The newest backup it owes.
    pub newest_behind: Option<String>,
}

impl StoreHealth {
    /// `62 copies (61 verified), 80.3 MiB, 3 behind` for a status line.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("unreachable: {}", e.lines().next().unwrap_or_default());
        }
        let mut s = format!(
            "{} cop{} ({} verified), {}",
            self.copies,
            if self.copies == 1 { "y" } else { "ies" },
            self.verified,
            humansize::format_size(self.stored_bytes, humansize::BINARY)
        );
        if self.behind > 0 {
            s.push_str(&format!(", {} behind", self.behind));
        }
        s
    }
}

/// The stores' health from a catalog read with [`merge`].
pub fn health(config: &Config, catalog: &Catalog, now: DateTime<Utc>) -> Vec<StoreHealth> {
    use crate::health::Level;
    let grace = config.check.copies_grace;
    let times: std::collections::HashMap<String, DateTime<Utc>> = catalog
        .backups
        .iter()
        .map(|b| (b.dir(), b.time()))
        .collect();
    catalog
        .stores
        .iter()
        .map(|l| {
            let mut copies = 0;
            let mut verified = 0;
            for b in &catalog.backups {
                if let Some(c) = b
                    .copies
                    .as_ref()
                    .and_then(|c| c.stores.iter().find(|c| c.store == l.store))
                {
                    if c.state.readable() {
                        copies += 1;
                    }
                    if c.state == CopyState::Verified {
                        verified += 1;
                    }
                }
            }
            let time_of = |dir: &str| times.get(dir).copied();
            let overdue = l
                .owed
                .iter()
                .filter(|d| time_of(d).is_some_and(|t| now - t > grace))
                .count();
            let newest_behind = l
                .owed
                .iter()
                .max_by_key(|d| time_of(d))
                .map(|d| d.rsplit('/').next().unwrap_or(d).to_owned());
            let level = if l.error.is_some() || overdue > 0 {
                Level::Critical
            } else if !l.owed.is_empty() {
                Level::Warning
            } else {
                Level::Ok
            };
            StoreHealth {
                store: l.store.clone(),
                location: l.location.clone(),
                level,
                error: l.error.clone(),
                copies,
                verified,
                stored_bytes: l.backups.iter().map(BackupEntry::stored_bytes).sum(),
                behind: l.owed.len(),
                overdue,
                newest_behind,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> std::result::Result<Config, String> {
        Config::parse(text, Path::new("/srv/lb/lifeboat.toml")).map_err(|e| e.to_string())
    }

    const SOURCE: &str = "[[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"shop.db\"\n";

    #[test]
    fn storage_alone_is_the_default_store() {
        let c = parse(&format!(
            "[storage]\ntype = \"local\"\npath = \"b\"\n{SOURCE}"
        ))
        .unwrap();
        assert_eq!(c.stores.len(), 1);
        assert_eq!(c.stores[0].name, DEFAULT_NAME);
        assert_eq!(c.stores[0].storage, c.storage);
        assert_eq!(c.source_stores("shop").len(), 1);
    }

    #[test]
    fn named_stores_replace_or_follow_storage() {
        let text = format!(
            "[[store]]\nname = \"primary\"\ntype = \"local\"\npath = \"hot\"\n\
             [[store]]\nname = \"offsite\"\ntype = \"s3\"\nbucket = \"b2\"\nendpoint = \"https://s3.example\"\n\
             access_key_id_env = \"OFF_ID\"\nsecret_access_key_env = \"OFF_SECRET\"\n\
             [store.retention]\nkeep_daily = 90\n\
             [[store]]\nname = \"archive\"\ntype = \"local\"\npath = \"/mnt/cold\"\n\
             recipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
             {SOURCE}stores = [\"primary\", \"archive\"]\n"
        );
        let c = parse(&text).unwrap();
        let names: Vec<&str> = c.stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["primary", "offsite", "archive"]);
        assert!(
            matches!(&c.storage, StorageConfig::Local { path, .. } if path == Path::new("/srv/lb/hot"))
        );
        assert_eq!(c.stores[1].retention.as_ref().unwrap().keep_daily, 90);
        assert_eq!(
            c.stores[1].credentials.as_ref().unwrap().access_key_id_env,
            "OFF_ID"
        );
        let shop: Vec<&str> = c
            .source_stores("shop")
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(shop, ["primary", "archive"]);
        assert_eq!(store_order(&c, "shop"), ["primary", "archive", "offsite"]);

        let both = format!(
            "[storage]\ntype = \"local\"\npath = \"b\"\n[[store]]\nname = \"offsite\"\ntype = \"local\"\npath = \"o\"\n{SOURCE}"
        );
        let names: Vec<String> = parse(&both)
            .unwrap()
            .stores
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["default", "offsite"]);
    }

    #[test]
    fn bad_store_configs_say_what_is_wrong() {
        let cases = [
            ("", "no store"),
            (
                "[[store]]\ntype = \"local\"\npath = \"a\"\n",
                "needs `name`",
            ),
            (
                "[[store]]\nname = \"a\"\ntype = \"local\"\npath = \"a\"\n[[store]]\nname = \"a\"\ntype = \"local\"\npath = \"b\"\n",
                "store \"a\" is defined twice",
            ),
            (
                "[[store]]\nname = \"a\"\ntype = \"local\"\npath = \"a\"\nbukket = \"x\"\n",
                "store \"a\": unknown field `bukket`",
            ),
            (
                "[[store]]\nname = \"a\"\ntype = \"s3\"\nbucket = \"x\"\naccess_key_id_env = \"K\"\n",
                "go together",
            ),
            (
                "[[store]]\nname = \"a\"\ntype = \"local\"\npath = \"a\"\nrecipients = [\"age1nope\"]\n",
                "not an age X25519 public key",
            ),
            (
                "[[store]]\nname = \"_a\"\ntype = \"local\"\npath = \"a\"\n",
                "store name \"_a\"",
            ),
            (
                "[[store]]\nname = \"a\"\ntype = \"s3\"\nbucket = \"x\"\npart_size_mib = 1\n",
                "store \"a\".part_size_mib must be at least 5",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&format!("{text}{SOURCE}")).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = parse(&format!(
            "[storage]\ntype = \"local\"\npath = \"b\"\n{SOURCE}stores = [\"offsite\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("source \"shop\": no store named \"offsite\" (stores: default)"),
            "{err}"
        );
    }

    fn copy(store: &str, state: CopyState, owed: bool) -> StoreCopy {
        StoreCopy {
            store: store.into(),
            state,
            owed,
            checked_at: None,
            detail: None,
        }
    }

    #[test]
    fn copies_count_verified_of_expected_and_name_who_is_behind() {
        let c = Copies {
            stores: vec![
                copy("primary", CopyState::Verified, true),
                copy("offsite", CopyState::Unverified, true),
                copy("archive", CopyState::Missing, true),
                copy("old", CopyState::Missing, false),
            ],
        };
        assert_eq!(c.label(), "1/3");
        let behind: Vec<&str> = c.behind().map(|s| s.store.as_str()).collect();
        assert_eq!(behind, ["offsite", "archive"]);
        assert_eq!(c.restore_order(), ["primary", "offsite"]);
        let failed = Copies {
            stores: vec![
                copy("primary", CopyState::Failed, true),
                copy("offsite", CopyState::Verified, false),
            ],
        };
        assert_eq!(failed.label(), "1/2");
        assert_eq!(failed.restore_order(), ["offsite"]);
    }
}
