//! The catalog index: every manifest of a source in one compressed object
//! (`_lifeboat/catalog/{source}.json.zst`), so a host with no local cache reads a source's
//! manifests in one GET instead of one per backup.
//!
//! The index is a cache, and as untrusted as anything else in the bucket. Each entry holds a
//! manifest's exact bytes with the key, size and entity tag (S3) or modification time (a
//! directory) the listing gave for it when it was indexed. An entry is used only when these
//! still match what the listing says of that very manifest; anything else is read from the
//! manifest itself. Since a store's entity tag is a digest of the object's bytes, a forged
//! entry can only ever hold what the manifest holds, and the bytes go through the same checks
//! (parse, data object size, signature) as a manifest read from the store. Restores and
//! verifies read the real manifest again in any case.
//!
//! Writers (backup, copy, prune) read the index, change their entries and write it back
//! whole: two hosts writing at once lose one update at worst, which the next listing notices
//! (a manifest missing from the index, or an entry whose manifest is gone) and repairs by
//! writing the index again from the manifests.

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{MANIFEST_NAME, MAX_MANIFEST_BYTES};
use crate::storage::{ObjectKey, ObjectMeta, ObjectStore, ObjectStoreExt, StoreError};

/// Where index objects live, one per source.
pub const INDEX_PREFIX: &str = "_lifeboat/catalog/";
const SUFFIX: &str = ".json.zst";
const FORMAT: u32 = 1;
/// The most of an index object lifeboat reads, compressed and decompressed.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_INDEX_RAW_BYTES: u64 = 512 * 1024 * 1024;

/// One manifest as the listing showed it, and its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<DateTime<Utc>>,
    /// The manifest, byte for byte (manifests are JSON, so UTF-8).
    pub manifest: String,
}

impl Entry {
    pub fn new(listed: &ObjectMeta, etag: Option<&str>, bytes: &[u8]) -> Option<Entry> {
        Some(Entry {
            key: listed.key.clone(),
            size: listed.size,
            etag: etag.map(normalize_etag),
            modified: listed.last_modified,
            manifest: String::from_utf8(bytes.to_vec()).ok()?,
        })
    }

    /// Whether this entry is the manifest the listing shows: same key and size, and the same
    /// entity tag where the store gives one, else the same modification time.
    pub fn matches(&self, listed: &ObjectMeta, etag: Option<&str>) -> bool {
        let same_version = match etag {
            Some(tag) => self.etag.as_deref() == Some(normalize_etag(tag).as_str()),
            None => self.modified.is_some() && self.modified == listed.last_modified,
        };
        self.key == listed.key
            && self.size == listed.size
            && self.manifest.len() as u64 == listed.size
            && same_version
    }
}

/// S3 lists tags quoted; some servers do not.
fn normalize_etag(tag: &str) -> String {
    tag.trim_matches('"').to_owned()
}

#[derive(Debug, Serialize, Deserialize)]
struct Shard {
    format: u32,
    source: String,
    entries: Vec<Entry>,
}

pub fn key_for(source: &str) -> Result<ObjectKey> {
    Ok(ObjectKey::new(format!("{INDEX_PREFIX}{source}{SUFFIX}"))?)
}

/// The source an index object is for, from its key.
fn source_of(key: &str) -> Option<&str> {
    key.strip_prefix(INDEX_PREFIX)?.strip_suffix(SUFFIX)
}

/// Every index object in the store, read: entries by manifest key, per source. An index that
/// cannot be read or is not one is skipped with a warning (its manifests are read instead).
pub async fn read_all(store: &dyn ObjectStore) -> HashMap<String, HashMap<String, Entry>> {
    use futures_util::{StreamExt, stream};
    let listed = match store.list_all(INDEX_PREFIX).await {
        Ok(l) => l,
        // The listing that follows meets the same store and reports its failure.
        Err(e) => {
            tracing::debug!("cannot list the catalog index: {e}");
            return HashMap::new();
        }
    };
    let reads = listed.into_iter().filter_map(|o| {
        let source = source_of(&o.key)
            .filter(|s| crate::config::validate_source_name(s).is_ok())?
            .to_owned();
        Some(async move {
            let read = read_listed(store, &source, &o).await;
            (source, read)
        })
    });
    let read: Vec<_> = stream::iter(reads).buffer_unordered(8).collect().await;
    let mut out = HashMap::new();
    for (source, shard) in read {
        match shard {
            Ok(entries) => {
                out.insert(source, entries);
            }
            Err(e) => tracing::warn!("catalog index of {}: {e}", crate::escape::term(&source)),
        }
    }
    out
}

async fn read_listed(
    store: &dyn ObjectStore,
    source: &str,
    listed: &ObjectMeta,
) -> Result<HashMap<String, Entry>> {
    if listed.size > MAX_INDEX_BYTES {
        return Err(Error::Invalid(format!(
            "{} bytes, more than the {MAX_INDEX_BYTES} lifeboat reads; not used",
            listed.size
        )));
    }
    let by_key = |entries: Vec<Entry>| entries.into_iter().map(|e| (e.key.clone(), e)).collect();
    Ok(read_then(store, source, by_key).await?.unwrap_or_default())
}

/// A source's index entries; `None` when it has no index.
pub async fn read(store: &dyn ObjectStore, source: &str) -> Result<Option<Vec<Entry>>> {
    read_then(store, source, |entries| entries).await
}

/// A source's index entries, decoded and handed to `then` on a blocking thread: at 100,000
/// backups that is a third of a second in which the listing goes on.
async fn read_then<T: Send + 'static>(
    store: &dyn ObjectStore,
    source: &str,
    then: impl FnOnce(Vec<Entry>) -> T + Send + 'static,
) -> Result<Option<T>> {
    let key = key_for(source)?;
    let bytes = match store.get_bounded(&key, MAX_INDEX_BYTES).await {
        Ok(b) => b,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let source = source.to_owned();
    tokio::task::spawn_blocking(move || decode(&source, &bytes, MAX_INDEX_RAW_BYTES).map(then))
        .await
        .map_err(|e| Error::Invalid(format!("decoding the catalog index failed: {e}")))?
        .map(Some)
}

/// Parses an index object, reading at most `raw_limit` bytes once decompressed.
fn decode(source: &str, bytes: &[u8], raw_limit: u64) -> Result<Vec<Entry>> {
    let invalid = |detail: String| Error::Invalid(format!("not a catalog index: {detail}"));
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| invalid(e.to_string()))?;
    // Whole, then parsed: serde_json reads a slice many times faster than a stream.
    let mut raw = Vec::new();
    decoder
        .take(raw_limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| invalid(e.to_string()))?;
    if raw.len() as u64 > raw_limit {
        return Err(invalid(format!("more than {raw_limit} bytes decompressed")));
    }
    let shard: Shard = serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?;
    drop(raw);
    if shard.format != FORMAT {
        return Err(invalid(format!("format {} is not {FORMAT}", shard.format)));
    }
    if shard.source != source {
        return Err(invalid(format!("it names source {:?}", shard.source)));
    }
    // An entry outside the source's own manifests is never used.
    let own = |e: &Entry| {
        e.key
            .strip_prefix(source)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| {
                r.split_once('/')
                    .is_some_and(|(_, name)| name == MANIFEST_NAME)
            })
            && e.size <= MAX_MANIFEST_BYTES
    };
    Ok(shard.entries.into_iter().filter(own).collect())
}

fn encode(source: &str, mut entries: Vec<Entry>) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let shard = Shard {
        format: FORMAT,
        source: source.to_owned(),
        entries,
    };
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)
        .map_err(Error::io("compress the catalog index"))?;
    serde_json::to_writer(&mut encoder, &shard)
        .map_err(|e| Error::Invalid(format!("cannot write the catalog index: {e}")))?;
    let bytes = encoder
        .finish()
        .map_err(Error::io("compress the catalog index"))?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        // Readers would refuse it: better none (they read the manifests).
        return Err(Error::Invalid(format!(
            "the catalog index of {source} would hold {} bytes, more than readers accept",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Writes a source's index whole; with no entries, removes it.
pub async fn write(store: &dyn ObjectStore, source: &str, entries: Vec<Entry>) -> Result<()> {
    let key = key_for(source)?;
    if entries.is_empty() {
        return Ok(store.delete_many(&[key]).await?);
    }
    let bytes = encode(source, entries)?;
    store.put_bytes(&key, bytes.into()).await?;
    Ok(())
}

/// Adds a manifest just written to its source's index. Without an index nothing is written:
/// the next listing builds it whole.
pub async fn note_written(
    store: &dyn ObjectStore,
    source: &str,
    key: &ObjectKey,
    bytes: &[u8],
    etag: Option<&str>,
) -> Result<()> {
    let Some(mut entries) = read(store, source).await? else {
        return Ok(());
    };
    // The object as a listing shows it (a HEAD may give its time less precisely).
    let page = store.list_page(key.as_str(), None).await?;
    let Some(listed) = page.objects.iter().find(|o| o.key == key.as_str()) else {
        return Ok(());
    };
    let etag = page.etags.get(key.as_str()).map(String::as_str).or(etag);
    let Some(entry) = Entry::new(listed, etag, bytes) else {
        return Ok(());
    };
    entries.retain(|e| e.key != entry.key);
    entries.push(entry);
    write(store, source, entries).await
}

/// Drops deleted manifests from their source's index.
pub async fn note_deleted(store: &dyn ObjectStore, source: &str, keys: &[String]) -> Result<()> {
    let Some(mut entries) = read(store, source).await? else {
        return Ok(());
    };
    let gone: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
    let before = entries.len();
    entries.retain(|e| !gone.contains(e.key.as_str()));
    if entries.len() == before {
        return Ok(());
    }
    write(store, source, entries).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, manifest: &str) -> Entry {
        Entry {
            key: key.into(),
            size: manifest.len() as u64,
            etag: None,
            modified: Some(DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            manifest: manifest.into(),
        }
    }

    #[test]
    fn an_index_round_trips_and_keeps_only_its_sources_manifests() {
        let entries = vec![
            entry("shop/20261122T020000Z-7f3a/manifest.json", "{}"),
            entry("auth/20261122T020000Z-7f3a/manifest.json", "{}"),
            entry("shop/20261122T020000Z-7f3a/data.sqlite.zst", "{}"),
            entry("shop/x/y/manifest.json", "{}"),
        ];
        let bytes = encode("shop", entries).unwrap();
        let back = decode("shop", &bytes, MAX_INDEX_RAW_BYTES).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, "shop/20261122T020000Z-7f3a/manifest.json");
        // The same object presented as another source's index is refused.
        assert!(decode("auth", &bytes, MAX_INDEX_RAW_BYTES).is_err());
        assert!(decode("shop", b"not zstd", MAX_INDEX_RAW_BYTES).is_err());
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let huge = Shard {
            format: FORMAT,
            source: "shop".into(),
            entries: vec![entry(
                "shop/20261122T020000Z-7f3a/manifest.json",
                &" ".repeat(1 << 20),
            )],
        };
        let json = serde_json::to_vec(&huge).unwrap();
        let bytes = zstd::encode_all(&json[..], 19).unwrap();
        assert!(bytes.len() < 64 * 1024, "small compressed");
        assert!(decode("shop", &bytes, 2 << 20).is_ok());
        let err = decode("shop", &bytes, 512 * 1024).unwrap_err().to_string();
        assert!(err.contains("more than 524288 bytes decompressed"), "{err}");
    }

    #[test]
    fn an_entry_matches_only_the_version_listed() {
        let e = entry("shop/20261122T020000Z-7f3a/manifest.json", "{\"a\":1}");
        let listed = ObjectMeta {
            key: e.key.clone(),
            size: e.size,
            last_modified: e.modified,
        };
        assert!(e.matches(&listed, None));
        let later = ObjectMeta {
            last_modified: Some(DateTime::from_timestamp(1_700_000_001, 0).unwrap()),
            ..listed.clone()
        };
        assert!(!e.matches(&later, None));
        let bigger = ObjectMeta {
            size: e.size + 1,
            ..listed.clone()
        };
        assert!(!e.matches(&bigger, None));
        // Where the store lists tags, only the tag decides the version, and it must be there.
        assert!(!e.matches(&listed, Some("\"abc\"")));
        let tagged = Entry::new(&listed, Some("\"abc\""), e.manifest.as_bytes()).unwrap();
        assert!(tagged.matches(&listed, Some("\"abc\"")));
        assert!(tagged.matches(&listed, Some("abc")));
        assert!(!tagged.matches(&listed, Some("\"abd\"")));
        // An entry whose bytes are not the listed size is never used.
        let mut lying = tagged.clone();
        lying.manifest.push(' ');
        assert!(!lying.matches(&listed, Some("\"abc\"")));
    }
}
