//! The manifest: a versioned JSON document written last, as the commit point of a backup.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The manifest format this build writes and the newest it reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST_NAME: &str = "manifest.json";
/// The most lifeboat reads of a manifest. Its own are a few KiB (a table name and count per
/// table); anything larger is not read at all.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A backup id sorts by time: `20261122T020000Z-7f3a`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

#[derive(Debug, thiserror::Error)]
#[error("invalid backup id {0:?}: expected the form 20261122T020000Z-7f3a")]
pub struct BackupIdError(String);

impl BackupId {
    pub fn generate(at: DateTime<Utc>) -> Self {
        BackupId(format!(
            "{}-{:04x}",
            at.format("%Y%m%dT%H%M%SZ"),
            fastrand::u16(..)
        ))
    }

    pub fn time(&self) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(&self.0[..16], "%Y%m%dT%H%M%SZ")
            .expect("validated on construction")
            .and_utc()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BackupId {
    type Err = BackupIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ASCII first: the byte positions below must be character boundaries.
        let ok = s.len() == 21
            && s.is_ascii()
            && NaiveDateTime::parse_from_str(&s[..16], "%Y%m%dT%H%M%SZ").is_ok()
            && s.as_bytes()[16] == b'-'
            && s[17..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if ok {
            Ok(BackupId(s.to_owned()))
        } else {
            Err(BackupIdError(s.to_owned()))
        }
    }
}

impl TryFrom<String> for BackupId {
    type Error = BackupIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Sqlite,
    Postgres,
}

impl EngineKind {
    /// The extension of the dump inside the data object's name.
    pub fn dump_extension(self) -> &'static str {
        match self {
            EngineKind::Sqlite => "sqlite",
            EngineKind::Postgres => "pgdump",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Sqlite => "sqlite",
            EngineKind::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    #[default]
    Manual,
    Scheduled,
    Drill,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::Drill => "drill",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub name: String,
    pub engine: EngineKind,
    /// The engine's version, e.g. SQLite's library version or PostgreSQL's server version.
    pub server_version: String,
    /// The database: a file path for SQLite, a database name for PostgreSQL. Never a URL with
    /// credentials.
    pub database: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInfo {
    /// Object name relative to the backup's directory, e.g. `data.sqlite.zst`.
    pub key: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub compression: String,
    pub compression_level: i32,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

impl DataInfo {
    /// Why the stored object read back as `key` (`size` bytes hashing to `sha256`) is not the
    /// one this manifest describes, if it is not.
    pub fn mismatch(&self, key: &str, sha256: &str, size: u64) -> Option<crate::Error> {
        if size != self.stored_bytes {
            Some(crate::Error::Size {
                key: key.to_owned(),
                expected: self.stored_bytes,
                actual: size,
            })
        } else if sha256 != self.sha256 {
            Some(crate::Error::Checksum {
                key: key.to_owned(),
                expected: self.sha256.clone(),
                actual: sha256.to_owned(),
            })
        } else {
            None
        }
    }
}

/// Recipients and scheme only; a manifest never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    pub scheme: String,
    #[serde(default)]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// How the table is shown and matched. SQLite: its name. PostgreSQL: `schema.table`, each
    /// part double-quoted when it is not a plain lowercase identifier (`"a.b".c`, `a."b.c"`),
    /// so no two tables share one. Manifests written before lifeboat recorded `schema` joined
    /// the parts unquoted (see [`TableCount::legacy_name`]).
    pub name: String,
    /// PostgreSQL: the schema, apart from the table's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// PostgreSQL: the table's own name, apart from its schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub rows: u64,
}

impl TableCount {
    /// A table without a schema (SQLite).
    pub fn new(name: impl Into<String>, rows: u64) -> Self {
        TableCount {
            name: name.into(),
            schema: None,
            table: None,
            rows,
        }
    }

    /// A table in a schema (PostgreSQL), named by both.
    pub fn in_schema(schema: &str, table: &str, rows: u64) -> Self {
        TableCount {
            name: qualified_name(schema, table),
            schema: Some(schema.to_owned()),
            table: Some(table.to_owned()),
            rows,
        }
    }

    /// The name manifests used before they recorded the schema apart: `schema.table`, unquoted,
    /// which two tables may share.
    pub fn legacy_name(&self) -> String {
        match (&self.schema, &self.table) {
            (Some(s), Some(t)) => format!("{s}.{t}"),
            _ => self.name.clone(),
        }
    }
}

/// `schema.table` with each part quoted only when it needs to be: two different tables never
/// get the same text (`"a.b".c` and `a."b.c"`), and ordinary names read as they always did.
pub fn qualified_name(schema: &str, table: &str) -> String {
    format!("{}.{}", display_ident(schema), display_ident(table))
}

/// An identifier as PostgreSQL would need it quoted: plain lowercase names stay as they are,
/// anything else is double-quoted with inner quotes doubled.
pub fn display_ident(name: &str) -> String {
    let plain = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        name.to_owned()
    } else {
        crate::engine::quote_ident(name)
    }
}

/// What a PostgreSQL backup adds to its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresInfo {
    pub pg_dump_version: String,
    /// `custom` (`pg_dump -Fc -Z0`, compressed by lifeboat).
    pub dump_format: String,
    pub schemas: Vec<String>,
    pub extensions: Vec<Extension>,
    /// The database itself (encoding, locale, owner, settings, comment, grants), which a
    /// dump without `--create` leaves out. Absent from manifests written before lifeboat
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseInfo>,
}

/// What a PostgreSQL database is beside its contents: a scratch copy is created with the same
/// encoding and locale, and a copy meant for promotion gets the rest too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// `UTF8`, `SQL_ASCII`, `LATIN1`, ...
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
    /// `libc` or `icu` (PostgreSQL 15+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_locale: Option<String>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `ALTER DATABASE ... SET` settings for every role, as `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// Database-level privileges; `None` for the defaults (everyone may connect and create
    /// temporary tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<DatabaseGrant>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseGrant {
    /// A role, or `None` for PUBLIC.
    pub grantee: Option<String>,
    /// `CONNECT`, `CREATE` or `TEMPORARY`.
    pub privilege: String,
    #[serde(default)]
    pub grantable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl ToolInfo {
    pub fn this() -> Self {
        ToolInfo {
            name: "lifeboat".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: BackupId,
    pub source: SourceInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub tool: ToolInfo,
    pub host: String,
    pub data: DataInfo,
    pub encryption: Option<EncryptionInfo>,
    pub tables: Vec<TableCount>,
    /// Per-table content checksums (see `content`), when the backup computed them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub content_checksums: std::collections::BTreeMap<String, String>,
    /// PostgreSQL backups only; absent from SQLite manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresInfo>,
    /// The manifest's checksum of itself, and its signature when the writing host signs;
    /// absent from manifests written before lifeboat recorded them ("unchecked").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
}

/// A manifest's own checksum and signature (see [`Manifest::seal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// SHA-256 of the manifest without this field, as canonical JSON (object keys sorted, no
    /// whitespace), lowercase hex. Every other field, known to this version or not, is covered.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
}

/// An Ed25519 signature over [`Integrity::sha256`] (see [`crate::signing`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// The signer's public key, `ed25519:` and 64 hex digits.
    pub key: String,
    /// 128 hex digits.
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {key} is not valid JSON for a lifeboat manifest: {detail}")]
    Invalid { key: String, detail: String },
    #[error(
        "manifest {key} has format {found}; this lifeboat reads up to format {FORMAT}, upgrade it"
    )]
    TooNew { key: String, found: u32 },
    #[error("manifest {key} is inconsistent: {detail}")]
    Inconsistent { key: String, detail: String },
}

impl Manifest {
    pub fn total_rows(&self) -> u64 {
        // Saturating: the counts come from the manifest, which anyone may have written.
        self.tables.iter().fold(0, |n, t| n.saturating_add(t.rows))
    }

    pub fn duration(&self) -> chrono::Duration {
        self.finished_at - self.started_at
    }

    /// Records the manifest's checksum of itself, signed when a signer is given. Call it last:
    /// any later change to any field makes [`Manifest::parse`] refuse the manifest.
    pub fn seal(&mut self, signer: Option<&crate::signing::Signer>) {
        self.integrity = None;
        let value = serde_json::to_value(&*self).expect("a manifest always serializes");
        let sha256 = body_sha256(&value);
        let signature = signer.map(|s| s.sign(&sha256));
        self.integrity = Some(Integrity { sha256, signature });
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// Parses and checks a manifest read from `key` (`{source}/{id}/manifest.json`).
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self, ManifestError> {
        Self::parse_known(key, bytes, false)
    }

    /// Like [`Manifest::parse`]; `checked` says these exact bytes passed it before (this
    /// host keeps the digests of manifests it has checked), so their own checksum, the
    /// costliest part, is not computed again. Every other check is made.
    pub fn parse_known(key: &str, bytes: &[u8], checked: bool) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let invalid = |e: serde_json::Error| ManifestError::Invalid {
            key: key.to_owned(),
            detail: e.to_string(),
        };
        let too_new = |found| ManifestError::TooNew {
            key: key.to_owned(),
            found,
        };
        // One pass over the text: the document's own fields (for the checksum, which must
        // cover fields this version does not know), then this version's view of them.
        let (parsed, body) = if checked {
            (serde_json::from_slice(bytes), None)
        } else {
            let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
            let body = value
                .get("integrity")
                .is_some()
                .then(|| body_sha256(&value));
            (Manifest::deserialize(value), body)
        };
        let m: Manifest = match parsed {
            Ok(m) => m,
            // A newer format need not parse as this one: say so rather than "not valid".
            Err(e) => {
                return Err(match serde_json::from_slice::<Probe>(bytes) {
                    Ok(p) if p.format > FORMAT => too_new(p.format),
                    _ => invalid(e),
                });
            }
        };
        if m.format > FORMAT {
            return Err(too_new(m.format));
        }
        let inconsistent = |detail: String| ManifestError::Inconsistent {
            key: key.to_owned(),
            detail,
        };
        let mut segs = key.rsplit('/');
        let (_, dir_id, dir_source) = (segs.next(), segs.next(), segs.next());
        if dir_id != Some(m.id.as_str()) {
            return Err(inconsistent(format!(
                "it names backup {} but lives elsewhere",
                m.id
            )));
        }
        if dir_source != Some(m.source.name.as_str()) {
            return Err(inconsistent(format!(
                "it names source {} but lives elsewhere",
                m.source.name
            )));
        }
        let name_ok = m.data.key.starts_with("data.")
            && !m.data.key.contains('/')
            && !m.data.key.contains("..");
        if !name_ok {
            return Err(inconsistent(format!(
                "data object name {:?} is not allowed",
                m.data.key
            )));
        }
        if m.data.sha256.len() != 64 || !m.data.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(inconsistent("sha256 is not 64 hex digits".into()));
        }
        if !crate::when::plausible(m.started_at) || !crate::when::plausible(m.finished_at) {
            return Err(inconsistent(
                "its times are not between the years 1970 and 9999".into(),
            ));
        }
        if let Some(integrity) = &m.integrity {
            // The file's own fields, not this version's view of them: an edited field this
            // version does not know is caught as well.
            if !checked && body.as_deref() != Some(integrity.sha256.as_str()) {
                return Err(inconsistent(
                    "its own checksum does not match: it was changed after it was written".into(),
                ));
            }
        }
        Ok(m)
    }
}

/// SHA-256 of a manifest's JSON without its `integrity` field, in canonical form.
fn body_sha256(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    match value {
        serde_json::Value::Object(map) => canonical_map(map, Some("integrity"), &mut out),
        other => canonical(other, &mut out),
    }
    crate::pipeline::hex(sha2::Sha256::digest(&out))
}

/// JSON with object keys in byte order and no whitespace, so the same document always gives
/// the same bytes, however it was formatted.
fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => canonical_map(map, None, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

/// An object's members in byte order of their keys, `skip` left out.
fn canonical_map(
    map: &serde_json::Map<String, serde_json::Value>,
    skip: Option<&str>,
    out: &mut Vec<u8>,
) {
    let mut members: Vec<_> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k).expect("strings serialize");
        out.push(b':');
        canonical(v, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "app/20261122T020000Z-7f3a/manifest.json";

    fn manifest() -> Manifest {
        let at = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
            .unwrap()
            .to_utc();
        Manifest {
            format: FORMAT,
            id: "20261122T020000Z-7f3a".parse().unwrap(),
            source: SourceInfo {
                name: "app".into(),
                engine: EngineKind::Sqlite,
                server_version: "3.45.3".into(),
                database: "/srv/app.db".into(),
            },
            started_at: at,
            finished_at: at,
            trigger: Trigger::Manual,
            tool: ToolInfo::this(),
            host: "db1".into(),
            data: DataInfo {
                key: "data.sqlite.zst".into(),
                raw_bytes: 4096,
                stored_bytes: 900,
                compression: "zstd".into(),
                compression_level: 3,
                sha256: "ab".repeat(32),
            },
            encryption: None,
            tables: vec![TableCount::new("t", 12)],
            content_checksums: Default::default(),
            postgres: None,
            integrity: None,
        }
    }

    #[test]
    fn a_sealed_manifest_parses_and_any_edit_is_caught() {
        let mut m = manifest();
        m.seal(None);
        let json = m.to_json();
        assert_eq!(Manifest::parse(KEY, &json).unwrap(), m);
        // Formatting is not content: compact JSON with keys in another order still matches.
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        Manifest::parse(KEY, &serde_json::to_vec(&v).unwrap()).unwrap();
        let text = String::from_utf8(json).unwrap();
        for (from, to) in [
            ("\"raw_bytes\": 4096", "\"raw_bytes\": 4097"),
            ("\"rows\": 12", "\"rows\": 13"),
            ("\"host\": \"db1\"", "\"host\": \"db2\""),
            ("\"format\": 1,", "\"format\": 1, \"extra\": true,"),
        ] {
            let edited = text.replacen(from, to, 1);
            assert_ne!(edited, text, "{from}");
            let err = Manifest::parse(KEY, edited.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("own checksum"), "{err}");
        }
        // Written before manifests had one: still read, without a check.
        let mut old = manifest();
        old.integrity = None;
        assert!(
            Manifest::parse(KEY, &old.to_json())
                .unwrap()
                .integrity
                .is_none()
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b": [ {"z": 1, "a": "\u00e9"} ], "a": null}"#).unwrap();
        let mut out = Vec::new();
        canonical(&v, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":null,"b":[{"a":"é","z":1}]}"#
        );
    }

    #[test]
    fn backup_ids_round_trip_and_sort_by_time() {
        let t1 = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
            .unwrap()
            .to_utc();
        let t2 = DateTime::parse_from_rfc3339("2026-11-22T02:00:01Z")
            .unwrap()
            .to_utc();
        let a = BackupId::generate(t1);
        let b = BackupId::generate(t2);
        assert!(a < b);
        assert_eq!(a.time(), t1);
        assert_eq!(a.as_str().parse::<BackupId>().unwrap(), a);
        for bad in [
            "",
            "20261122T020000Z",
            "20261122T020000Z-7F3A",
            "20261322T020000Z-7f3a",
            "x0261122T020000Z-7f3a",
            "20261122T020000é-7f3",
            "2026112é2T020000Z-7f",
            "20261122T020000Z-7f3é",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }
}
