//! `lifeboat.toml`: where backups go, which databases to back up, and how.
//!
//! Relative paths in the file are resolved against the file's own directory, so a config and
//! its databases can move together. Unknown keys are errors: a typo must not silently turn a
//! setting off.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::EngineKind;

pub const FILE_NAME: &str = "lifeboat.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who runs lifeboat here, as job records and pins name them (default: the login name).
    pub operator: Option<String>,
    /// `[storage]` as written; optional once `[[store]]` tables name the stores.
    #[serde(default, rename = "storage")]
    storage_table: Option<StorageConfig>,
    /// The default store: `[storage]`, else the first `[[store]]` (set after parsing). Job
    /// records, pins and drill reports live here; the catalog is read from it first.
    #[serde(skip, default = "StorageConfig::unset")]
    pub storage: StorageConfig,
    #[serde(default, rename = "store")]
    store_tables: Vec<crate::stores::StoreConfig>,
    /// Every store, the default first (set after parsing; see [`crate::stores`]).
    #[serde(skip)]
    pub stores: Vec<crate::stores::StoreConfig>,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub backup: BackupConfig,
    #[serde(default)]
    pub restore: RestoreConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
    #[serde(default)]
    pub schedule: crate::schedule::ScheduleConfig,
    #[serde(default)]
    pub check: crate::health::CheckConfig,
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<crate::alert::WebhookConfig>,
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    pub encryption: Option<crate::pipeline::crypt::EncryptionConfig>,
    /// Signing new manifests and the keys that authenticate backups.
    pub signing: Option<crate::signing::SigningConfig>,
    /// The file this was read from (set after parsing).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawStorage")]
pub enum StorageConfig {
    Local {
        path: PathBuf,
        /// Permission bits of new objects (directories add search where reading is allowed).
        mode: u32,
    },
    S3 {
        bucket: String,
        prefix: String,
        region: Option<String>,
        endpoint: Option<String>,
        force_path_style: bool,
        profile: Option<String>,
        checksums: ChecksumMode,
        part_size_mib: usize,
        upload_concurrency: usize,
        max_attempts: u32,
        timeouts: crate::storage::Timeouts,
    },
}

impl StorageConfig {
    fn unset() -> Self {
        StorageConfig::Local {
            path: PathBuf::new(),
            mode: crate::storage::DEFAULT_MODE,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StorageKind {
    Local,
    S3,
}

/// The `[storage]` table as written. A flat struct (not a tagged enum) so that type errors
/// point at the offending line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(rename = "type")]
    kind: StorageKind,
    path: Option<PathBuf>,
    bucket: Option<String>,
    #[serde(default)]
    prefix: String,
    region: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    force_path_style: bool,
    profile: Option<String>,
    #[serde(default)]
    checksums: ChecksumMode,
    #[serde(default = "default_part_size_mib")]
    part_size_mib: usize,
    #[serde(default = "default_upload_concurrency")]
    upload_concurrency: usize,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default, deserialize_with = "de_mode")]
    mode: Option<u32>,
    #[serde(default, deserialize_with = "de_duration")]
    connect_timeout: Option<chrono::Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    read_timeout: Option<chrono::Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    stall_timeout: Option<chrono::Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    attempt_timeout: Option<chrono::Duration>,
}

impl TryFrom<RawStorage> for StorageConfig {
    type Error = String;

    fn try_from(r: RawStorage) -> Result<Self, String> {
        match r.kind {
            StorageKind::Local => {
                let timeouts = [
                    &r.connect_timeout,
                    &r.read_timeout,
                    &r.stall_timeout,
                    &r.attempt_timeout,
                ];
                if r.bucket.is_some()
                    || r.endpoint.is_some()
                    || r.region.is_some()
                    || timeouts.iter().any(|t| t.is_some())
                {
                    return Err("storage type \"local\" takes `path`, not S3 settings".into());
                }
                let path = r.path.ok_or("storage type \"local\" needs `path`")?;
                Ok(StorageConfig::Local {
                    path,
                    mode: r.mode.unwrap_or(crate::storage::DEFAULT_MODE),
                })
            }
            StorageKind::S3 => {
                if r.path.is_some() {
                    return Err("storage type \"s3\" takes `bucket`, not `path`".into());
                }
                if r.mode.is_some() {
                    return Err(
                        "storage.mode is for a local store; an S3 bucket has policies instead"
                            .into(),
                    );
                }
                let std = |d: Option<chrono::Duration>, default: std::time::Duration| {
                    d.and_then(|d| d.to_std().ok()).unwrap_or(default)
                };
                let d = crate::storage::Timeouts::default();
                let timeouts = crate::storage::Timeouts {
                    connect: std(r.connect_timeout, d.connect),
                    read: std(r.read_timeout, d.read),
                    stall: std(r.stall_timeout, d.stall),
                    attempt: std(r.attempt_timeout, d.attempt),
                };
                Ok(StorageConfig::S3 {
                    bucket: r.bucket.ok_or("storage type \"s3\" needs `bucket`")?,
                    prefix: r.prefix,
                    region: r.region,
                    endpoint: r.endpoint,
                    force_path_style: r.force_path_style,
                    profile: r.profile,
                    checksums: r.checksums,
                    part_size_mib: r.part_size_mib,
                    upload_concurrency: r.upload_concurrency,
                    max_attempts: r.max_attempts,
                    timeouts,
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// Only where an operation requires one (safe with most S3-compatible stores).
    #[default]
    WhenRequired,
    /// On every request that supports them (AWS S3).
    Always,
}

fn default_part_size_mib() -> usize {
    8
}
fn default_upload_concurrency() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    5
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The local state database (job history, catalog cache). Default: the XDG data dir.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// Where the console's restore wizard creates scratch databases. Default: the XDG data
    /// dir's `lifeboat/restores`.
    pub scratch_dir: Option<PathBuf>,
    /// Permission bits of restored SQLite files (the plaintext of encrypted backups too).
    #[serde(default = "default_restore_mode", deserialize_with = "de_restore_mode")]
    pub mode: u32,
}

impl Default for RestoreConfig {
    fn default() -> Self {
        RestoreConfig {
            scratch_dir: None,
            mode: default_restore_mode(),
        }
    }
}

fn default_restore_mode() -> u32 {
    0o600
}

fn de_restore_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(de_mode(d)?.unwrap_or_else(default_restore_mode))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// zstd worker threads; 0 means one per core, at most 4.
    #[serde(default)]
    pub threads: u32,
    /// Where snapshots and downloads are staged. Default: the system temp dir.
    pub temp_dir: Option<PathBuf>,
    /// Also record a per-table content checksum (reads every row once more; see
    /// docs/reliability.md for the cost).
    #[serde(default)]
    pub content_checksums: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            compression_level: default_level(),
            threads: 0,
            temp_dir: None,
            content_checksums: false,
        }
    }
}

fn default_level() -> i32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub engine: EngineKind,
    /// SQLite: the database file.
    pub path: Option<PathBuf>,
    /// PostgreSQL (see docs/postgres.md): a URL or conninfo without password, and/or libpq
    /// fields; the password comes from `password_env`, PGPASSWORD or ~/.pgpass.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub sslmode: Option<String>,
    pub password_env: Option<String>,
    /// Where pg_dump/pg_restore live (default: PATH, then /usr/lib/postgresql/*/bin).
    pub bin_dir: Option<PathBuf>,
    /// The server scratch databases are restored on (default: the source's server).
    pub scratch_url: Option<String>,
    /// The variable holding the `scratch_url` server's password (never the source's).
    pub scratch_password_env: Option<String>,
    /// Recovery point objective: the newest good backup should never be older than this
    /// (`26h`, `90m`, `1d12h`). Default: 26h, a daily backup with slack.
    #[serde(default, deserialize_with = "de_duration")]
    pub rpo: Option<chrono::Duration>,
    /// Replaces the `[retention]` default policy as a whole for this source.
    pub retention: Option<crate::retention::Policy>,
    /// The stores that hold this source's backups, by name: the first is written by the
    /// backup, the others receive copies. Default: every store, in config order.
    pub stores: Option<Vec<String>>,
    /// Past this age `check` is CRITICAL rather than WARNING. Default: twice the RPO.
    #[serde(default, deserialize_with = "de_duration")]
    pub rpo_critical: Option<chrono::Duration>,
    /// Recovery time objective: how long a restore of this source may take (`30m`). `check`
    /// compares it with the restore time the newest passed drill measured.
    #[serde(default, deserialize_with = "de_duration")]
    pub rto: Option<chrono::Duration>,
    /// How often a restore drill should prove this source's backups (`90d`).
    #[serde(default, deserialize_with = "de_duration")]
    pub drill_interval: Option<chrono::Duration>,
    /// Storage this source may use in the bucket (`50GiB`, `500MB`).
    #[serde(default, deserialize_with = "crate::health::de_size")]
    pub quota: Option<u64>,
    #[serde(default)]
    pub schedule: crate::schedule::SourceSchedule,
    /// Point-in-time recovery (PostgreSQL): WAL archiving and base backups (docs/postgres.md).
    pub pitr: Option<PitrConfig>,
}

/// `[source.pitr]`: this source's WAL is archived and base backups are taken of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrConfig {
    /// `check` warns when the newest archived WAL is older than this (default 15m; a quiet
    /// server should set `archive_timeout` below it).
    #[serde(default, deserialize_with = "de_duration")]
    pub max_archive_lag: Option<chrono::Duration>,
    /// Where point-in-time restores create scratch clusters (default: beside the source's
    /// data directory when known, else the system temp dir).
    pub scratch_dir: Option<PathBuf>,
    /// The source's data directory, when lifeboat runs on its host (scratch clusters are
    /// created beside it unless `scratch_dir` says otherwise).
    pub data_dir: Option<PathBuf>,
    /// How many base backups `prune` keeps (the newest; default 2). WAL older than the
    /// oldest kept one goes with them.
    pub keep_base: Option<usize>,
    /// `lifeboat daemon` also streams the source's WAL with `pg_receivewal` and pushes each
    /// completed segment, so the archive is not a segment behind the server.
    #[serde(default)]
    pub stream: bool,
    /// The replication slot streaming reads from (keeps the server from recycling WAL not
    /// yet streamed). Default with `create_slot`: `lifeboat_<source>`.
    pub slot: Option<String>,
    /// Create the slot (if it does not exist) before streaming.
    #[serde(default)]
    pub create_slot: bool,
}

impl PitrConfig {
    pub fn keep_base(&self) -> usize {
        self.keep_base.unwrap_or(2).max(1)
    }

    /// The slot streaming uses, if any.
    pub fn stream_slot(&self, source: &str) -> Option<String> {
        self.slot.clone().or_else(|| {
            self.create_slot.then(|| {
                let name: String = source
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                // PostgreSQL's limit on a slot name (NAMEDATALEN - 1).
                format!("lifeboat_{name}").chars().take(63).collect()
            })
        })
    }

    pub fn max_archive_lag(&self) -> chrono::Duration {
        self.max_archive_lag
            .unwrap_or_else(|| chrono::Duration::minutes(15))
    }
}

impl SourceConfig {
    pub fn rpo(&self) -> chrono::Duration {
        self.rpo.unwrap_or_else(|| chrono::Duration::hours(26))
    }
}

/// An octal permission mode, `"0600"` or `"640"`. The owner must keep read and write.
fn de_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = String::deserialize(d)?;
    let digits = text.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => Ok(Some(mode)),
        _ => Err(serde::de::Error::custom(format!(
            "{text:?} is not a file mode like \"0600\" or \"0640\" (octal; the owner needs read and write)"
        ))),
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    match crate::when::parse_duration(&text) {
        Ok(d) if d > chrono::Duration::zero() => Ok(Some(d)),
        Ok(_) => Err(serde::de::Error::custom(format!(
            "{text:?} is not a duration like \"26h\" or \"1d12h\""
        ))),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no config at {path}: run `lifeboat init` to write one, or `lifeboat demo` to try lifeboat"
    )]
    Missing { path: String },
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// The config file used when none is given: `$XDG_CONFIG_HOME/lifeboat/lifeboat.toml`.
    pub fn default_path() -> PathBuf {
        xdg_dir("XDG_CONFIG_HOME", ".config")
            .join("lifeboat")
            .join(FILE_NAME)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ConfigError::Missing {
                path: path.display().to_string(),
            },
            _ => ConfigError::Read {
                path: path.display().to_string(),
                source,
            },
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (used to resolve relative paths and in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: shown.clone(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        config.path = path.to_path_buf();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        config.stores = crate::stores::StoreConfig::resolve(
            config.storage_table.take(),
            std::mem::take(&mut config.store_tables),
        )
        .map_err(invalid)?;
        for store in &mut config.stores {
            if let StorageConfig::Local { path, .. } = &mut store.storage {
                resolve(path);
            }
        }
        config.storage = config.stores[0].storage.clone();
        if let Some(p) = &mut config.state.path {
            resolve(p);
        }
        if let Some(p) = &mut config.backup.temp_dir {
            resolve(p);
        }
        if let Some(p) = &mut config.restore.scratch_dir {
            resolve(p);
        }
        if let Some(p) = &mut config.metrics.textfile {
            resolve(p);
        }
        if let Some(p) = config
            .encryption
            .as_mut()
            .and_then(|e| e.identity_file.as_mut())
        {
            resolve(p);
        }
        if let Some(p) = config.signing.as_mut().and_then(|s| s.key_file.as_mut()) {
            resolve(p);
        }
        for s in &mut config.sources {
            for p in s.path.iter_mut().chain(s.bin_dir.iter_mut()) {
                resolve(p);
            }
            if let Some(pitr) = &mut s.pitr {
                for p in pitr.scratch_dir.iter_mut().chain(pitr.data_dir.iter_mut()) {
                    resolve(p);
                }
            }
        }
        config.validate().map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut seen = HashSet::new();
        for s in &self.sources {
            validate_source_name(&s.name)?;
            if !seen.insert(s.name.as_str()) {
                return Err(format!("source {:?} is defined twice", s.name));
            }
            crate::engine::for_source(s)
                .check_config(s)
                .map_err(|e| format!("source {:?}: {e}", s.name))?;
            if let Some(slot) = s.pitr.as_ref().and_then(|p| p.slot.as_ref()) {
                let ok = !slot.is_empty()
                    && slot.len() < 64
                    && slot
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(format!(
                        "source {:?}: pitr.slot {slot:?} is not a replication slot name (lower-case letters, digits and _, at most 63)",
                        s.name
                    ));
                }
            }
            if let Some(p) = &s.retention {
                p.validate()
                    .map_err(|e| format!("source {:?}: retention.{e}", s.name))?;
            }
        }
        crate::schedule::Schedules::from_config(self)?;
        for hook in &self.webhooks {
            hook.validate()?;
        }
        if let Some(e) = &self.encryption {
            e.validate()?;
            // Unkeyed sums of row text sit in the plaintext manifest: small tables could be
            // guessed from them offline, which is what encryption is meant to prevent.
            if self.backup.content_checksums {
                return Err("backup.content_checksums cannot be combined with [encryption]: the unkeyed row sums in the plaintext manifest would let anyone with bucket access guess small tables".into());
            }
        }
        if let Some(s) = &self.signing {
            s.validate()?;
        }
        if !(1..=22).contains(&self.backup.compression_level) {
            return Err("backup.compression_level must be between 1 and 22".into());
        }
        for store in &self.stores {
            if let StorageConfig::S3 {
                bucket,
                part_size_mib,
                upload_concurrency,
                ..
            } = &store.storage
            {
                let table = store.table_name();
                if bucket.is_empty() {
                    return Err(format!("{table}.bucket is empty"));
                }
                if *part_size_mib < 5 {
                    return Err(format!(
                        "{table}.part_size_mib must be at least 5 (an S3 limit)"
                    ));
                }
                if *upload_concurrency == 0 {
                    return Err(format!("{table}.upload_concurrency must be at least 1"));
                }
            }
        }
        crate::stores::validate(self)?;
        Ok(())
    }

    /// The stores of a source, in its order (the first is written by the backup). A source
    /// not configured here is held to every store.
    pub fn source_stores(&self, source: &str) -> Vec<&crate::stores::StoreConfig> {
        match self.source(source).and_then(|s| s.stores.as_ref()) {
            Some(names) => names
                .iter()
                .filter_map(|n| self.stores.iter().find(|s| &s.name == n))
                .collect(),
            None => self.stores.iter().collect(),
        }
    }

    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The retention policy of a source: its own, or the default.
    pub fn policy(&self, source: &str) -> &crate::retention::Policy {
        self.source(source)
            .and_then(|s| s.retention.as_ref())
            .unwrap_or(&self.retention.policy)
    }

    pub fn scratch_dir(&self) -> PathBuf {
        self.restore.scratch_dir.clone().unwrap_or_else(|| {
            xdg_dir("XDG_DATA_HOME", ".local/share")
                .join("lifeboat")
                .join("restores")
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.state.path.clone().unwrap_or_else(|| {
            xdg_dir("XDG_DATA_HOME", ".local/share")
                .join("lifeboat")
                .join("state.db")
        })
    }
}

/// Source names become a path segment in the bucket, so they are kept plain.
pub fn validate_source_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['_', '.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "source name {name:?} must be 1-64 letters, digits, '_', '.' or '-', not starting with '_', '.' or '-'"
        ))
    }
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(fallback),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The commented config `lifeboat init` writes.
pub fn template() -> &'static str {
    include_str!("../assets/lifeboat.example.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_source_gets_a_valid_slot_name_and_a_bad_one_is_refused() {
        let config = |pitr: &str| {
            Config::parse(
                &format!(
                    "[storage]\ntype = \"local\"\npath = \"/b\"\n[[source]]\nname = \"Shop-EU.1\"\nengine = \"postgres\"\nhost = \"/run\"\ndatabase = \"shop\"\n[source.pitr]\nstream = true\n{pitr}"
                ),
                Path::new("/etc/lb.toml"),
            )
        };
        let slot = |c: Config| c.sources[0].pitr.as_ref().unwrap().stream_slot("Shop-EU.1");
        assert_eq!(slot(config("").unwrap()), None);
        assert_eq!(
            slot(config("create_slot = true\n").unwrap()).as_deref(),
            Some("lifeboat_shop_eu_1")
        );
        assert_eq!(
            slot(config("slot = \"mine\"\n").unwrap()).as_deref(),
            Some("mine")
        );
        let err = config("slot = \"x; DROP\"\n").unwrap_err().to_string();
        assert!(err.contains("not a replication slot name"), "{err}");
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let text = "[storage]\ntype = \"local\"\npath = 3\n";
        let err = Config::parse(text, Path::new("/etc/lb.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/lb.toml:3:"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = "[storage]\ntype = \"local\"\npath = \"b\"\ncompresion = 3\n";
        let err = Config::parse(text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("compresion"), "{err}");
        let text = "[storage]\ntype = \"local\"\npath = \"b\"\n[backup]\nlevel = 3\n";
        assert!(Config::parse(text, Path::new("c.toml")).is_err());
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[[source]]\nname = \"shop\"\nengine = \"sqlite\"\npath = \"app.db\"\n";
        let c = Config::parse(text, Path::new("/srv/lb/lifeboat.toml")).unwrap();
        assert!(
            matches!(&c.storage, StorageConfig::Local { path, .. } if path == Path::new("/srv/lb/bucket"))
        );
        assert_eq!(
            c.sources[0].path.as_deref(),
            Some(Path::new("/srv/lb/app.db"))
        );
    }

    #[test]
    fn bad_source_names_are_refused() {
        for name in ["", "_lifeboat", "../x", "a/b", "a b"] {
            assert!(validate_source_name(name).is_err(), "{name:?}");
        }
        assert!(validate_source_name("billing-db.eu_1").is_ok());
    }

    #[test]
    fn content_checksums_are_refused_with_encryption() {
        let text = |checksums: bool| {
            format!(
                "[storage]\ntype = \"local\"\npath = \"/b\"\n[backup]\ncontent_checksums = {checksums}\n[encryption]\npassphrase_env = \"LB_PASS\"\n"
            )
        };
        let err = Config::parse(&text(true), Path::new("/x/lifeboat.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("backup.content_checksums cannot be combined with [encryption]"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        Config::parse(&text(false), Path::new("/x/lifeboat.toml")).unwrap();
    }

    #[test]
    fn the_template_parses() {
        Config::parse(template(), Path::new("/x/lifeboat.toml")).unwrap();
    }
}
