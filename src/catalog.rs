//! The catalog: what the bucket holds, read page by page into backups, orphans, damaged
//! backups and foreign objects.
//!
//! A backup exists only when its manifest exists, parses, and names a data object of the
//! stated size. Everything else is shown for what it is, never as a good backup.
//!
//! The bucket is untrusted: an object whose key lifeboat cannot use (a backslash, a control
//! character, more than 1,024 bytes), a manifest larger than [`MAX_MANIFEST_BYTES`] or one
//! that does not parse is listed as unusable with the reason and skipped; it never stops the
//! listing of everything else. Verdicts on unusable objects are cached in the state database
//! by key, size and modification time, so such an object is read at most once.

pub mod index;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};
use serde::Serialize;

use crate::config::validate_source_name;
use crate::error::Result;
use crate::manifest::{BackupId, MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, ManifestError};
use crate::sniff::{Format, SNIFF_LEN, sniff};
use crate::state::{CacheKind, State};
use crate::storage::{
    IncompleteUpload, ListPage, ObjectKey, ObjectMeta, ObjectStore, ObjectStoreExt, StoreError,
    StoreResult,
};

/// Keys under this prefix are lifeboat's own records, not backups.
pub const INTERNAL_PREFIX: &str = "_lifeboat/";
/// A key after every key under [`INTERNAL_PREFIX`] that lifeboat writes, and before every
/// key outside it.
const PAST_INTERNAL: &str = "_lifeboat/\u{10FFFF}";
const FETCH_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupState {
    /// Manifest present and consistent with its data object.
    Complete,
    /// Data without a manifest: a backup that was killed or failed before its commit point.
    Orphan,
    /// A manifest that cannot be read or names a missing or wrong-sized data object.
    Damaged,
}

impl std::fmt::Display for BackupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupState::Complete => "complete",
            BackupState::Orphan => "orphan",
            BackupState::Damaged => "damaged",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub source: String,
    pub id: BackupId,
    pub state: BackupState,
    /// Shared, not copied, by the stores' listings that hold the same backup (a catalog of
    /// 100,000 backups is read once and merged with each store's view of it).
    #[serde(serialize_with = "shared_manifest")]
    pub manifest: Option<std::sync::Arc<Manifest>>,
    /// Every object in the backup's directory.
    pub objects: Vec<ObjectMeta>,
    /// Why the backup is not complete.
    pub problem: Option<String>,
    /// Which stores hold a copy and in what state (set for complete backups once every
    /// store was read; see [`crate::stores`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<crate::stores::Copies>,
}

fn shared_manifest<S: serde::Serializer>(
    m: &Option<std::sync::Arc<Manifest>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    m.as_deref().serialize(s)
}

impl BackupEntry {
    pub fn dir(&self) -> String {
        format!("{}/{}", self.source, self.id)
    }

    pub fn time(&self) -> DateTime<Utc> {
        self.manifest
            .as_ref()
            .map_or_else(|| self.id.time(), |m| m.started_at)
    }

    pub fn data_key(&self) -> Option<ObjectKey> {
        let m = self.manifest.as_ref()?;
        ObjectKey::new(format!("{}/{}", self.dir(), m.data.key)).ok()
    }

    /// Bytes this backup occupies in the store.
    pub fn stored_bytes(&self) -> u64 {
        // Saturating: sizes come from the listing.
        self.objects.iter().fold(0, |n, o| n.saturating_add(o.size))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSource {
    Name,
    Modified,
}

/// An object lifeboat did not write: an old script's dump, a copied database file.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignObject {
    pub meta: ObjectMeta,
    pub format: Format,
    pub time: Option<DateTime<Utc>>,
    pub time_source: TimeSource,
}

/// An object lifeboat will not touch, and why: its key cannot be used safely, or it could not
/// be identified. Listed so that nothing in the bucket is silently invisible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unusable {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    pub reason: String,
}

/// What a catalog line shows, for backups and foreign objects alike. Small and flat, so a
/// console can cache and draw a hundred thousand of them.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CatalogRow {
    pub kind: RowKind,
    /// The backup id, or the key of a foreign object.
    pub id: String,
    pub source: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub raw_bytes: Option<u64>,
    pub stored_bytes: u64,
    pub duration_ms: Option<i64>,
    pub tables: Option<u64>,
    pub rows: Option<u64>,
    pub encrypted: bool,
    /// Why a backup is not complete, or a foreign object's format.
    pub note: Option<String>,
    /// Verified copies of expected ones, once every store was read.
    #[serde(default)]
    pub copies: Option<crate::stores::CopyCount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    Complete,
    Orphan,
    Damaged,
    Foreign,
    /// An object lifeboat skips (see [`Unusable`]).
    Unusable,
}

impl RowKind {
    pub fn label(self) -> &'static str {
        match self {
            RowKind::Complete => "complete",
            RowKind::Orphan => "orphan",
            RowKind::Damaged => "damaged",
            RowKind::Foreign => "foreign",
            RowKind::Unusable => "unusable",
        }
    }

    pub fn parse(s: &str) -> Option<RowKind> {
        [
            RowKind::Complete,
            RowKind::Orphan,
            RowKind::Damaged,
            RowKind::Foreign,
            RowKind::Unusable,
        ]
        .into_iter()
        .find(|k| k.label() == s)
    }
}

impl From<&BackupEntry> for CatalogRow {
    fn from(b: &BackupEntry) -> Self {
        let m = b.manifest.as_ref();
        CatalogRow {
            kind: match b.state {
                BackupState::Complete => RowKind::Complete,
                BackupState::Orphan => RowKind::Orphan,
                BackupState::Damaged => RowKind::Damaged,
            },
            id: b.id.to_string(),
            source: Some(b.source.clone()),
            time: Some(b.time()),
            raw_bytes: m.map(|m| m.data.raw_bytes),
            stored_bytes: b.stored_bytes(),
            duration_ms: m.map(|m| m.duration().num_milliseconds()),
            tables: m.map(|m| m.tables.len() as u64),
            rows: m.map(|m| m.total_rows()),
            encrypted: m.is_some_and(|m| m.encryption.is_some()),
            note: b.problem.clone(),
            copies: b.copies.as_ref().map(crate::stores::Copies::summary),
        }
    }
}

impl From<&ForeignObject> for CatalogRow {
    fn from(f: &ForeignObject) -> Self {
        CatalogRow {
            kind: RowKind::Foreign,
            id: f.meta.key.clone(),
            source: None,
            time: f.time,
            raw_bytes: None,
            stored_bytes: f.meta.size,
            duration_ms: None,
            tables: None,
            rows: None,
            encrypted: f.format.content == crate::sniff::Content::Age,
            note: Some(f.format.to_string()),
            copies: None,
        }
    }
}

impl From<&Unusable> for CatalogRow {
    fn from(u: &Unusable) -> Self {
        CatalogRow {
            kind: RowKind::Unusable,
            id: u.key.clone(),
            source: None,
            time: u.last_modified,
            raw_bytes: None,
            stored_bytes: u.size,
            duration_ms: None,
            tables: None,
            rows: None,
            encrypted: false,
            note: Some(u.reason.clone()),
            copies: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// Newest first.
    pub backups: Vec<BackupEntry>,
    pub foreign: Vec<ForeignObject>,
    /// Objects skipped, with the reason, in key order.
    pub unusable: Vec<Unusable>,
    pub incomplete: Vec<IncompleteUpload>,
    /// Pinned backups as `source/id` (see [`crate::prune`]).
    pub pins: std::collections::BTreeSet<String>,
    /// What each store holds, the default store first (see [`crate::stores`]).
    #[serde(skip)]
    pub stores: Vec<crate::stores::StoreListing>,
}

impl Catalog {
    pub fn sort(&mut self) {
        self.backups
            .sort_by(|a, b| b.time().cmp(&a.time()).then_with(|| b.id.cmp(&a.id)));
        self.foreign.sort_by(|a, b| {
            b.time
                .cmp(&a.time)
                .then_with(|| a.meta.key.cmp(&b.meta.key))
        });
        self.unusable.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// Every backup and foreign object as a catalog line, newest first.
    pub fn rows(&self) -> Vec<CatalogRow> {
        let mut rows: Vec<CatalogRow> = self
            .backups
            .iter()
            .map(CatalogRow::from)
            .chain(self.foreign.iter().map(CatalogRow::from))
            .chain(self.unusable.iter().map(CatalogRow::from))
            .collect();
        rows.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
        rows
    }

    pub fn complete(&self) -> impl Iterator<Item = &BackupEntry> {
        self.backups
            .iter()
            .filter(|b| b.state == BackupState::Complete)
    }

    pub fn pinned(&self, b: &BackupEntry) -> bool {
        self.is_pinned(&b.source, b.id.as_str())
    }

    pub fn is_pinned(&self, source: &str, id: &str) -> bool {
        self.pins.contains(&format!("{source}/{id}"))
    }

    /// The backup named `id` or `source/id`; none when the id alone names backups of
    /// several sources (see [`Catalog::lookup`]).
    pub fn find(&self, id: &str) -> Option<&BackupEntry> {
        self.lookup(id).ok()
    }

    /// The backup named `id` or `source/id`. Anyone who can write to the bucket can give
    /// a backup of another source the same id, so an id several sources hold names none.
    pub fn lookup(&self, id: &str) -> Result<&BackupEntry> {
        let (source, bare) = match id.rsplit_once('/') {
            Some((s, i)) => (Some(s), i),
            None => (None, id),
        };
        let mut hits = self
            .backups
            .iter()
            .filter(|b| b.id.as_str() == bare && source.is_none_or(|s| b.source == s));
        let Some(first) = hits.next() else {
            return Err(crate::Error::NoBackup(format!("{id:?}")));
        };
        let mut others: Vec<&str> = hits
            .filter(|b| b.source != first.source)
            .map(|b| b.source.as_str())
            .collect();
        if others.is_empty() {
            return Ok(first);
        }
        others.push(&first.source);
        others.sort_unstable();
        others.dedup();
        Err(crate::Error::Invalid(format!(
            "backup id {bare} is held by sources {}: name it as SOURCE/{bare}",
            others.join(", ")
        )))
    }

    pub fn find_foreign(&self, key: &str) -> Option<&ForeignObject> {
        self.foreign.iter().find(|f| f.meta.key == key)
    }
}

/// What one listing page added.
#[derive(Debug, Default)]
pub struct CatalogPage {
    pub backups: Vec<BackupEntry>,
    pub foreign: Vec<ForeignObject>,
    pub unusable: Vec<Unusable>,
    /// Sources whose part of the bucket is fully read as of this page (keys come in order,
    /// `<source>/...`, so a source is read once the listing has moved past its prefix); on
    /// the last page, every source seen.
    pub sources_complete: Vec<String>,
}

impl CatalogPage {
    /// The page's catalog lines.
    pub fn rows(&self) -> Vec<CatalogRow> {
        self.backups
            .iter()
            .map(CatalogRow::from)
            .chain(self.foreign.iter().map(CatalogRow::from))
            .chain(self.unusable.iter().map(CatalogRow::from))
            .collect()
    }
}

/// Reads the bucket one listing page at a time, so a console can show entries as they come.
pub struct Scanner<'a> {
    store: &'a dyn ObjectStore,
    cache: Option<&'a State>,
    /// Set when several stores share the cache, so their objects stay apart.
    cache_prefix: String,
    token: Option<String>,
    done: bool,
    /// The last key listed so far.
    listed_through: String,
    /// Backup directories still collecting objects, keyed by `source/id/`.
    open: BTreeMap<String, (String, BackupId, Vec<ObjectMeta>)>,
    /// Sources seen so far.
    seen: std::collections::BTreeSet<String>,
    /// Entity tags of listed manifests not yet read.
    etags: HashMap<String, String>,
    /// The catalog index by source, read with the first page.
    index: Option<BTreeMap<String, SourceIndex>>,
    /// Whether to write a source's index anew when it is missing or stale.
    repair_index: bool,
    /// Unfinished uploads the listing met (see [`ObjectStore::lists_incomplete`]).
    incomplete: Vec<IncompleteUpload>,
    /// Pages listed and not yet read: the next one, listed while the last one was read,
    /// or the first few, listed while the index was read.
    queue: std::collections::VecDeque<StoreResult<ListPage>>,
    /// Digests of manifests this host has checked (read from the cache at the start), and
    /// those this listing met.
    checked: Option<std::collections::HashSet<[u8; 32]>>,
    checked_met: Vec<[u8; 32]>,
    /// Digests checked during this listing, kept once it is done.
    checked_new: Vec<[u8; 32]>,
}

/// What the listing has shown of one source's index so far.
#[derive(Default)]
struct SourceIndex {
    /// Entries of the index no listed manifest has matched yet.
    unmatched: HashMap<String, index::Entry>,
    /// An entry for each listed manifest whose bytes were had: the index to write if stale.
    entries: Vec<index::Entry>,
    /// A listed manifest had to be read from the store.
    missed: bool,
    /// The listing has moved past the source.
    done: bool,
}

/// A manifest as read for a backup: its bytes (when had) and whether the index gave them.
struct Read {
    bytes: Option<Vec<u8>>,
    from_index: bool,
    /// Bytes fetched from the store, to keep in the local cache.
    fetched: bool,
    /// The digest of bytes whose own checksum passed, and whether it was checked just now
    /// (see [`State::checked_manifests`]).
    checked: Option<([u8; 32], bool)>,
}

#[derive(Debug)]
enum Place {
    Internal,
    Backup {
        source: String,
        id: BackupId,
    },
    Foreign,
    /// A key no object may have (see [`ObjectKey`]): skipped, with the reason.
    Unusable(&'static str),
}

fn place(key: &str) -> Place {
    // lifeboat's own space is not the catalog's (and the listing skips it).
    if key.starts_with(INTERNAL_PREFIX) {
        return Place::Internal;
    }
    if let Err(e) = ObjectKey::new(key) {
        return Place::Unusable(e.reason);
    }
    let segs: Vec<&str> = key.split('/').collect();
    if let [source, id, file] = segs[..] {
        let ours = file == MANIFEST_NAME || file.starts_with("data.");
        if let (true, Ok(()), Ok(id)) = (ours, validate_source_name(source), id.parse::<BackupId>())
        {
            return Place::Backup {
                source: source.to_owned(),
                id,
            };
        }
    }
    Place::Foreign
}

/// The listing of the page after `page`, if there is one. lifeboat's own records (job
/// history, index, pins) are read where they are needed: the listing jumps past them rather
/// than paging through 100,000 job records.
fn following<'s>(
    store: &'s dyn ObjectStore,
    page: &ListPage,
) -> Option<BoxFuture<'s, StoreResult<ListPage>>> {
    let token = page.next.clone()?;
    let internal = page
        .objects
        .last()
        .is_some_and(|o| o.key.starts_with(INTERNAL_PREFIX));
    Some(if internal {
        store.list_page_after("", PAST_INTERNAL)
    } else {
        store.list_page("", Some(token))
    })
}

impl<'a> Scanner<'a> {
    pub fn new(store: &'a dyn ObjectStore, cache: Option<&'a State>) -> Self {
        Scanner {
            store,
            cache,
            cache_prefix: String::new(),
            token: None,
            done: false,
            listed_through: String::new(),
            open: BTreeMap::new(),
            seen: Default::default(),
            etags: HashMap::new(),
            index: None,
            repair_index: false,
            incomplete: Vec::new(),
            queue: Default::default(),
            checked: None,
            checked_met: Vec::new(),
            checked_new: Vec::new(),
        }
    }

    /// Writes the catalog index of each source whose index was missing or did not match
    /// the listing, once the listing has moved past the source (see [`index`]).
    pub fn repairing_index(mut self) -> Self {
        self.repair_index = true;
        self
    }

    /// Keys this scanner's objects by `prefix` in the cache (one prefix per store).
    pub fn with_cache_prefix(mut self, prefix: String) -> Self {
        self.cache_prefix = prefix;
        self
    }

    pub async fn next_page(&mut self) -> Result<Option<CatalogPage>> {
        if self.done {
            return Ok(None);
        }
        let store = self.store;
        if self.index.is_none() {
            self.start().await;
        }
        let page = match self.queue.pop_front() {
            Some(listed) => listed?,
            None => store.list_page("", self.token.take()).await?,
        };
        // The next page is listed (on the store's side, or a blocking thread for a
        // directory) while this one's manifests are read.
        let next = following(store, &page).filter(|_| self.queue.is_empty());
        let ahead = async move {
            match next {
                Some(listing) => Some(listing.await),
                None => None,
            }
        };
        let (ahead, read) = tokio::join!(ahead, self.read_page(page));
        self.queue.extend(ahead);
        read.map(Some)
    }

    /// Reads the catalog index and, until it is read, lists the first pages.
    async fn start(&mut self) {
        /// Pages listed ahead at most (1,000 keys each).
        const QUEUE_PAGES: usize = 64;
        let store = self.store;
        if let Some(cache) = self.cache {
            self.checked = cache
                .checked_manifests()
                .inspect_err(|e| tracing::warn!("cannot read which manifests were checked: {e}"))
                .ok();
        }
        let mut index = std::pin::pin!(index::read_all(store));
        let mut listing = Some(store.list_page("", self.token.take()));
        let index = loop {
            let Some(page) = listing.take() else {
                break index.await;
            };
            tokio::select! {
                // A page under way is dropped: the next read lists it again.
                index = &mut index => break index,
                page = page => {
                    listing = page
                        .as_ref()
                        .ok()
                        .and_then(|p| following(store, p))
                        .filter(|_| self.queue.len() + 1 < QUEUE_PAGES);
                    self.queue.push_back(page);
                }
            }
        };
        self.index = Some(
            index
                .into_iter()
                .map(|(source, unmatched)| {
                    let si = SourceIndex {
                        unmatched,
                        ..SourceIndex::default()
                    };
                    (source, si)
                })
                .collect(),
        );
    }

    /// Sorts a listing page's objects into backups (their manifests read), foreign objects
    /// and unusable keys.
    async fn read_page(&mut self, mut page: ListPage) -> Result<CatalogPage> {
        self.incomplete.append(&mut page.incomplete);
        if let Some(obj) = page.objects.last() {
            self.listed_through.clone_from(&obj.key);
        }
        let mut foreign = Vec::new();
        let mut unusable = Vec::new();
        for obj in page.objects {
            if let Some((source, _)) = obj.key.split_once('/')
                && !obj.key.starts_with(INTERNAL_PREFIX)
                && !self.seen.contains(source)
            {
                self.seen.insert(source.to_owned());
            }
            match place(&obj.key) {
                Place::Internal => {}
                Place::Unusable(why) => unusable.push(Unusable {
                    reason: format!("key {why}: lifeboat does not read or restore it"),
                    key: obj.key,
                    size: obj.size,
                    last_modified: obj.last_modified,
                }),
                Place::Foreign => foreign.push(obj),
                Place::Backup { source, id } => {
                    if obj.key.ends_with(MANIFEST_NAME)
                        && let Some(tag) = page.etags.remove(&obj.key)
                    {
                        self.etags.insert(obj.key.clone(), tag);
                    }
                    let dir = format!("{source}/{id}/");
                    self.open
                        .entry(dir)
                        .or_insert_with(|| (source, id, Vec::new()))
                        .2
                        .push(obj);
                }
            }
        }
        self.token = page.next;
        self.done = self.token.is_none();
        // Keys come sorted, so a directory is finished once the listing has moved past it.
        // (Past the last key listed: the continuation token is opaque, and on some servers
        // it sorts apart from the keys.)
        let last = self.listed_through.clone();
        let finished: Vec<String> = if self.done {
            self.open.keys().cloned().collect()
        } else {
            self.open
                .keys()
                .filter(|dir| last.as_str() > dir.as_str() && !last.starts_with(dir.as_str()))
                .cloned()
                .collect()
        };
        let groups: Vec<_> = finished
            .into_iter()
            .filter_map(|d| self.open.remove(&d))
            .collect();
        let groups: Vec<_> = groups
            .into_iter()
            .map(|(source, id, objs)| {
                let manifest = objs.iter().find(|o| o.key.ends_with(MANIFEST_NAME));
                let etag = manifest.and_then(|m| self.etags.remove(&m.key));
                let indexed = manifest.and_then(|m| {
                    let si = self.index.as_mut()?.get_mut(&source)?;
                    let e = si.unmatched.remove(&m.key)?;
                    e.matches(m, etag.as_deref()).then_some(e)
                });
                (source, id, objs, etag, indexed)
            })
            .collect();
        let this = &*self;
        let resolved: Vec<(BackupEntry, Option<String>, Read)> = stream::iter(
            groups
                .into_iter()
                .map(|(s, id, objs, etag, indexed)| async move {
                    let (entry, read) = this.resolve(s, id, objs, indexed).await;
                    (entry, etag, read)
                }),
        )
        .buffer_unordered(FETCH_CONCURRENCY)
        .collect()
        .await;
        let backups = self.note_reads(resolved);
        self.finish_sources(&last).await;
        let identified: Vec<std::result::Result<ForeignObject, Unusable>> =
            stream::iter(foreign.into_iter().map(|m| self.identify(m)))
                .buffer_unordered(FETCH_CONCURRENCY)
                .collect()
                .await;
        let mut foreign = Vec::new();
        for object in identified {
            match object {
                Ok(f) => foreign.push(f),
                Err(u) => unusable.push(u),
            }
        }
        let sources_complete = self
            .seen
            .iter()
            .filter(|s| {
                let prefix = format!("{s}/");
                self.done
                    || (self.listed_through > prefix && !self.listed_through.starts_with(&prefix))
            })
            .cloned()
            .collect();
        Ok(CatalogPage {
            backups,
            foreign,
            unusable,
            sources_complete,
        })
    }

    /// Every unfinished upload in the store outside lifeboat's own records, once the
    /// listing is done: from the listing where the store reports them there, else asked for
    /// apart. (Those under [`INTERNAL_PREFIX`], which the listing skips, are
    /// `list_incomplete(INTERNAL_PREFIX)`'s.)
    pub async fn incomplete(&mut self) -> Result<Vec<IncompleteUpload>> {
        let mut all = if self.store.lists_incomplete() {
            std::mem::take(&mut self.incomplete)
        } else {
            self.store.list_incomplete("").await?
        };
        all.retain(|u| !u.key.starts_with(INTERNAL_PREFIX));
        // A walk resumed after its parked state was dropped can meet a temp file twice.
        all.sort_by(|a, b| a.handle.cmp(&b.handle));
        all.dedup_by(|a, b| a.handle == b.handle);
        Ok(all)
    }

    async fn resolve(
        &self,
        source: String,
        id: BackupId,
        objects: Vec<ObjectMeta>,
        indexed: Option<index::Entry>,
    ) -> (BackupEntry, Read) {
        let mut read = Read {
            bytes: None,
            from_index: false,
            fetched: false,
            checked: None,
        };
        let mut entry = BackupEntry {
            source,
            id,
            state: BackupState::Orphan,
            manifest: None,
            objects,
            problem: None,
            copies: None,
        };
        let Some(meta) = entry
            .objects
            .iter()
            .find(|o| o.key.ends_with(MANIFEST_NAME))
            .cloned()
        else {
            entry.problem = Some("no manifest: the backup never reached its commit point".into());
            return (entry, read);
        };
        entry.state = BackupState::Damaged;
        let manifest = match indexed {
            // Bytes the listing vouches for (see [`index::Entry::matches`]), checked like
            // any manifest's; no verdict on them is cached.
            Some(e) => {
                read.from_index = true;
                let bytes = e.manifest.into_bytes();
                let parsed = self
                    .parse(&meta.key, &bytes, &mut read)
                    .map_err(|e| e.to_string());
                read.bytes = Some(bytes);
                parsed
            }
            None => self.manifest(&meta, &mut read).await,
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(problem) => {
                entry.problem = Some(problem);
                return (entry, read);
            }
        };
        let data_key = format!("{}/{}", entry.dir(), manifest.data.key);
        match entry.objects.iter().find(|o| o.key == data_key) {
            None => entry.problem = Some(format!("data object {data_key} is missing")),
            Some(o) if o.size != manifest.data.stored_bytes => {
                entry.problem = Some(format!(
                    "data object {data_key} holds {} bytes, the manifest says {}",
                    o.size, manifest.data.stored_bytes
                ))
            }
            Some(_) => entry.state = BackupState::Complete,
        }
        entry.manifest = Some(std::sync::Arc::new(manifest));
        (entry, read)
    }

    /// Keeps what the page's manifests were read from: in the local cache (one transaction
    /// for the page), and for each source's index.
    fn note_reads(
        &mut self,
        resolved: Vec<(BackupEntry, Option<String>, Read)>,
    ) -> Vec<BackupEntry> {
        let mut cache_puts = Vec::new();
        let mut checked_now = Vec::new();
        let mut backups = Vec::with_capacity(resolved.len());
        for (entry, etag, read) in resolved {
            if let Some((digest, new)) = read.checked {
                self.checked_met.push(digest);
                if new {
                    checked_now.push(digest);
                }
            }
            let meta = entry
                .objects
                .iter()
                .find(|o| o.key.ends_with(MANIFEST_NAME));
            if let (Some(meta), Some(bytes)) = (meta, read.bytes) {
                if read.fetched {
                    cache_puts.push(crate::state::CachePut {
                        key: format!("{}{}", self.cache_prefix, meta.key),
                        kind: CacheKind::Manifest,
                        size: meta.size,
                        modified: modified_text(meta),
                        body: bytes.clone(),
                    });
                }
                let si = self
                    .index
                    .get_or_insert_with(BTreeMap::new)
                    .entry(entry.source.clone())
                    .or_default();
                si.missed |= !read.from_index;
                if self.repair_index
                    && let Some(e) = index::Entry::new(meta, etag.as_deref(), &bytes)
                {
                    si.entries.push(e);
                }
            }
            backups.push(entry);
        }
        if let Some(c) = self.cache
            && !cache_puts.is_empty()
            && let Err(e) = c.cache_put_many(&cache_puts)
        {
            tracing::warn!("cannot cache manifests: {e}");
        }
        self.keep_checked(checked_now);
        backups
    }

    /// Notes the digests of manifests checked on this page, and keeps them all in the cache
    /// once the listing is done (one transaction: a commit per page would cost more than
    /// the checks). Digests of manifests the default store no longer lists are dropped when
    /// they are most of what is kept.
    fn keep_checked(&mut self, now: Vec<[u8; 32]>) {
        let (Some(cache), Some(checked)) = (self.cache, self.checked.as_mut()) else {
            return;
        };
        checked.extend(now.iter().copied());
        self.checked_new.extend(now);
        if !self.done {
            return;
        }
        let met = self.checked_met.len();
        let replace =
            self.cache_prefix.is_empty() && checked.len().saturating_sub(met) > met.max(10_000);
        let kept = if replace {
            cache.add_checked_manifests(&self.checked_met, true)
        } else if !self.checked_new.is_empty() {
            cache.add_checked_manifests(&self.checked_new, false)
        } else {
            Ok(())
        };
        self.checked_new.clear();
        if let Err(e) = kept {
            tracing::warn!("cannot note which manifests were checked: {e}");
        }
    }

    /// Sources the listing has moved past (all of them once it is done): their index is
    /// written anew if a listed manifest was not in it or it names one no longer listed.
    async fn finish_sources(&mut self, last: &str) {
        let done = self.done;
        let Some(index) = self.index.as_mut() else {
            return;
        };
        let finished: Vec<String> = index
            .iter()
            .filter(|(source, si)| {
                let dir = format!("{source}/");
                !si.done && (done || (last > dir.as_str() && !last.starts_with(&dir)))
            })
            .map(|(source, _)| source.clone())
            .collect();
        for source in finished {
            let Some(si) = index.get_mut(&source) else {
                continue;
            };
            si.done = true;
            let stale = si.missed || !si.unmatched.is_empty();
            let entries = std::mem::take(&mut si.entries);
            si.unmatched = HashMap::new();
            if stale && self.repair_index {
                match index::write(self.store, &source, entries).await {
                    Ok(()) => tracing::info!("catalog index of {source} written"),
                    Err(e) => tracing::warn!("cannot write the catalog index of {source}: {e}"),
                }
            }
        }
    }

    /// Parses a manifest, without computing its own checksum again when this host checked
    /// these very bytes before; notes the digest of bytes that passed.
    fn parse(
        &self,
        key: &str,
        bytes: &[u8],
        read: &mut Read,
    ) -> std::result::Result<Manifest, ManifestError> {
        let Some(checked) = &self.checked else {
            return Manifest::parse(key, bytes);
        };
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(bytes).into();
        let known = checked.contains(&digest);
        let parsed = Manifest::parse_known(key, bytes, known);
        if parsed.as_ref().is_ok_and(|m| m.integrity.is_some()) {
            read.checked = Some((digest, !known));
        }
        parsed
    }

    /// The parsed manifest, or why it cannot be had. Manifests never change once written, so
    /// a cached copy of the same size and time is as good as the object; so is a cached
    /// verdict that it is unusable (too large, or not a manifest), which is therefore read at
    /// most once.
    async fn manifest(
        &self,
        meta: &ObjectMeta,
        read: &mut Read,
    ) -> std::result::Result<Manifest, String> {
        let modified = modified_text(meta);
        let cache_key = format!("{}{}", self.cache_prefix, meta.key);
        let cached = |kind| {
            self.cache
                .and_then(|c| c.cache_get(&cache_key, kind, meta.size, &modified).ok())
                .flatten()
        };
        if let Some(reason) = cached(CacheKind::Unusable) {
            return Err(String::from_utf8_lossy(&reason).into_owned());
        }
        let unusable = |reason: String| {
            tracing::warn!("{}: {reason}", crate::escape::term(&meta.key));
            if let Some(c) = self.cache {
                let _ = c.cache_put(
                    &cache_key,
                    CacheKind::Unusable,
                    meta.size,
                    &modified,
                    reason.as_bytes(),
                );
            }
            reason
        };
        if let Some(bytes) = cached(CacheKind::Manifest) {
            let parsed = self
                .parse(&meta.key, &bytes, read)
                .map_err(|e| e.to_string());
            read.bytes = Some(bytes);
            return parsed;
        }
        if meta.size > MAX_MANIFEST_BYTES {
            return Err(unusable(too_large(
                "manifest",
                meta.size,
                MAX_MANIFEST_BYTES,
            )));
        }
        let key = ObjectKey::new(meta.key.clone()).map_err(|e| e.to_string())?;
        let bytes = match self.store.get_bounded(&key, MAX_MANIFEST_BYTES).await {
            Ok(bytes) => bytes,
            Err(StoreError::TooLarge { .. }) => {
                return Err(unusable(format!(
                    "manifest holds more than {MAX_MANIFEST_BYTES} bytes (the listing said {}), the most lifeboat reads",
                    meta.size
                )));
            }
            // Perhaps passing: read it again next time.
            Err(e) => return Err(format!("cannot read manifest: {e}")),
        };
        let parsed = self.parse(&meta.key, &bytes, read);
        read.fetched = parsed.is_ok();
        read.bytes = Some(bytes);
        match parsed {
            Ok(manifest) => Ok(manifest),
            // A newer lifeboat reads it: not a verdict to keep.
            Err(e @ ManifestError::TooNew { .. }) => Err(e.to_string()),
            Err(e) => Err(unusable(e.to_string())),
        }
    }

    /// Detects a foreign object's format from its first bytes. An object that cannot be read
    /// is listed as unusable rather than failing the listing.
    async fn identify(&self, meta: ObjectMeta) -> std::result::Result<ForeignObject, Unusable> {
        let modified = modified_text(&meta);
        let cache_key = format!("{}{}", self.cache_prefix, meta.key);
        let cached = self
            .cache
            .and_then(|c| {
                c.cache_get(&cache_key, CacheKind::Format, meta.size, &modified)
                    .ok()
                    .flatten()
            })
            .and_then(|b| serde_json::from_slice::<Format>(&b).ok());
        let format = match cached {
            Some(f) => f,
            None => {
                let read = match ObjectKey::new(meta.key.clone()) {
                    Ok(key) => self.store.get_prefix(&key, SNIFF_LEN).await,
                    Err(e) => Err(StoreError::from(e)),
                };
                let head = match read {
                    Ok(head) => head,
                    Err(e) => {
                        return Err(Unusable {
                            reason: format!("cannot read its first bytes: {e}"),
                            key: meta.key,
                            size: meta.size,
                            last_modified: meta.last_modified,
                        });
                    }
                };
                let format = sniff(&head);
                if let Some(c) = self.cache {
                    let body = serde_json::to_vec(&format).expect("formats serialize");
                    let _ = c.cache_put(&cache_key, CacheKind::Format, meta.size, &modified, &body);
                }
                format
            }
        };
        let name = meta.key.rsplit('/').next().unwrap_or(&meta.key);
        let (time, time_source) = match time_in_name(name) {
            Some(t) => (Some(t), TimeSource::Name),
            None => (meta.last_modified, TimeSource::Modified),
        };
        Ok(ForeignObject {
            meta,
            format,
            time,
            time_source,
        })
    }
}

/// How the local cache records an object's modification time.
fn modified_text(meta: &ObjectMeta) -> String {
    meta.last_modified
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

fn too_large(what: &str, size: u64, limit: u64) -> String {
    format!("{what} is {size} bytes, more than the {limit} lifeboat reads; it is not loaded")
}

/// A timestamp embedded in a file name, as backup scripts write them:
/// `shop-2026-07-01T02-00-00.sql.gz`, `db_20260701_020000.db`, `dump-2026-07-01.sql`.
pub fn time_in_name(name: &str) -> Option<DateTime<Utc>> {
    const WITH_TIME: [&str; 8] = [
        "%Y%m%dT%H%M%SZ",
        "%Y%m%dT%H%M%S",
        "%Y-%m-%dT%H-%M-%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d_%H-%M-%S",
        "%Y-%m-%d_%H%M%S",
        "%Y%m%d_%H%M%S",
        "%Y%m%d-%H%M%S",
    ];
    let bytes = name.as_bytes();
    for (i, _) in name.char_indices() {
        let starts_number = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if !starts_number {
            continue;
        }
        let rest = &name[i..];
        for fmt in WITH_TIME {
            if let Ok((t, _)) = NaiveDateTime::parse_and_remainder(rest, fmt) {
                return Some(t.and_utc());
            }
        }
        for fmt in ["%Y-%m-%d", "%Y%m%d"] {
            if let Ok((d, rem)) = NaiveDate::parse_and_remainder(rest, fmt) {
                // `%Y%m%d` would also read the start of a longer number.
                if !rem.starts_with(|c: char| c.is_ascii_digit())
                    && (2000..2200).contains(&d.year_ce().1)
                {
                    return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_times() {
        let t = |n| time_in_name(n).map(|t| t.to_rfc3339());
        assert_eq!(
            t("shop-2026-07-01T02-00-00.sql.gz").as_deref(),
            Some("2026-07-01T02:00:00+00:00")
        );
        assert_eq!(
            t("db_20260701_020000.db").as_deref(),
            Some("2026-07-01T02:00:00+00:00")
        );
        assert_eq!(
            t("dump-2026-07-01.sql").as_deref(),
            Some("2026-07-01T00:00:00+00:00")
        );
        assert_eq!(t("backup.sql"), None);
        assert_eq!(t("v2-123456789.sql"), None);
    }

    #[test]
    fn keys_are_placed() {
        assert!(matches!(
            place("shop/20261122T020000Z-7f3a/manifest.json"),
            Place::Backup { .. }
        ));
        assert!(matches!(
            place("shop/20261122T020000Z-7f3a/data.sqlite.zst"),
            Place::Backup { .. }
        ));
        assert!(matches!(
            place("_lifeboat/jobs/2026/11/x.json"),
            Place::Internal
        ));
        assert!(matches!(
            place("shop/20261122T020000Z-7f3a/notes.txt"),
            Place::Foreign
        ));
        assert!(matches!(place("legacy/shop.sql.gz"), Place::Foreign));
    }
}
