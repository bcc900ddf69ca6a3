//! The catalog index in the bucket: written by backups, prunes and listings, used by a host
//! with no cache instead of one GET per manifest, and never trusted beyond the manifests.

use std::sync::Arc;

use lifeboat::Lifeboat;
use lifeboat::catalog::BackupState;
use lifeboat::catalog::index::{self, Entry};
use lifeboat::manifest::Trigger;
use lifeboat::progress::NoProgress;
use lifeboat::prune::PruneOptions;
use lifeboat::storage::{LocalStore, ObjectKey, ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::common::{self, S3Server, World};

fn is_manifest(key: &str) -> bool {
    key.ends_with("/manifest.json")
}

fn is_index(key: &str) -> bool {
    key.contains("_lifeboat/catalog/")
}

async fn backup(lb: &Lifeboat) -> String {
    let (_, m) = lb
        .backup(
            "app",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    m.unwrap().id.to_string()
}

/// Another host: same bucket, its own (empty) state.
fn host(store: Arc<dyn ObjectStore>) -> (tempfile::TempDir, Lifeboat) {
    let dir = tempfile::tempdir().unwrap();
    let lb = common::lifeboat_for(dir.path(), store);
    (dir, lb)
}

async fn indexed_keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = index::read(store, "app")
        .await
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.key)
        .collect();
    keys.sort();
    keys
}

async fn manifest_keys(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list_all("app/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| is_manifest(k))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_cold_start_reads_the_index_not_each_manifest() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let w = World::new(store.clone());
    for _ in 0..3 {
        backup(&w.lb).await;
    }
    // No index yet (backups only update one that exists): the first listing reads every
    // manifest and writes the index.
    let (_d1, first) = host(store.clone());
    server.clear_requests();
    let catalog = first.catalog().await.unwrap();
    assert_eq!(catalog.complete().count(), 3);
    assert_eq!(server.requests("GetObject", is_manifest), 3);
    assert_eq!(server.requests("PutObject", is_index), 1);
    assert_eq!(
        indexed_keys(store.as_ref()).await,
        manifest_keys(store.as_ref()).await
    );

    // A new host with no cache: one GET for the index, none per manifest, nothing written.
    let (_d2, cold) = host(store.clone());
    server.clear_requests();
    let again = cold.catalog().await.unwrap();
    assert_eq!(server.requests("GetObject", is_manifest), 0);
    assert_eq!(server.requests("GetObject", is_index), 1);
    assert_eq!(server.requests("PutObject", is_index), 0);
    let ids = |c: &lifeboat::catalog::Catalog| {
        c.backups
            .iter()
            .map(|b| (b.id.to_string(), b.state, b.manifest.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&catalog));
}

#[tokio::test]
async fn backups_and_prunes_keep_the_index_current() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let dir = tempfile::tempdir().unwrap();
    common::make_sample_db(&dir.path().join("app.db"), 1);
    let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n[retention]\nkeep_last = 1\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n";
    let path = dir.path().join("lifeboat.toml");
    std::fs::write(&path, text).unwrap();
    let config = lifeboat::config::Config::parse(text, &path).unwrap();
    let state = lifeboat::state::State::open(&config.state_path()).unwrap();
    let lb = Lifeboat::with_parts(
        config,
        store.clone(),
        state,
        lifeboat::clock::Clock::system(),
    );
    backup(&lb).await;
    lb.catalog().await.unwrap();
    assert_eq!(indexed_keys(store.as_ref()).await.len(), 1);

    // A backup adds its manifest to the index...
    backup(&lb).await;
    backup(&lb).await;
    assert_eq!(
        indexed_keys(store.as_ref()).await,
        manifest_keys(store.as_ref()).await
    );
    assert_eq!(indexed_keys(store.as_ref()).await.len(), 3);
    let (_d, cold) = host(store.clone());
    server.clear_requests();
    assert_eq!(cold.catalog().await.unwrap().complete().count(), 3);
    assert_eq!(server.requests("GetObject", is_manifest), 0);

    // ...and a prune removes the deleted ones.
    let (_, report) = lb
        .prune(&PruneOptions::default(), CancellationToken::new())
        .await;
    assert_eq!(report.unwrap().deleted, 2);
    assert_eq!(
        indexed_keys(store.as_ref()).await,
        manifest_keys(store.as_ref()).await
    );
    assert_eq!(indexed_keys(store.as_ref()).await.len(), 1);
    let (_d, cold) = host(store.clone());
    server.clear_requests();
    assert_eq!(cold.catalog().await.unwrap().complete().count(), 1);
    assert_eq!(server.requests("GetObject", is_manifest), 0);
    assert_eq!(
        server.requests("PutObject", is_index),
        0,
        "nothing to repair"
    );
}

/// Writes `app`'s index with `entries`, as a forger with write access to the bucket could.
async fn forge(store: &dyn ObjectStore, entries: Vec<Entry>) {
    index::write(store, "app", entries).await.unwrap();
}

#[tokio::test]
async fn a_stale_missing_or_garbled_index_is_repaired_from_the_manifests() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let w = World::new(store.clone());
    let first = backup(&w.lb).await;
    backup(&w.lb).await;
    let (_d, lb) = host(store.clone());
    lb.catalog().await.unwrap();
    let good = index::read(store.as_ref(), "app").await.unwrap().unwrap();
    assert_eq!(good.len(), 2);

    // Stale: an entry for a manifest that is gone, and one missing (a lost update).
    let gone = format!("app/{first}/manifest.json");
    store
        .delete_many(&[ObjectKey::new(gone.clone()).unwrap()])
        .await
        .unwrap();
    let third = backup(&w.lb).await;
    forge(store.as_ref(), good.clone()).await;
    let (_d, lb) = host(store.clone());
    server.clear_requests();
    let catalog = lb.catalog().await.unwrap();
    assert_eq!(
        server.requests("GetObject", is_manifest),
        1,
        "only the new one"
    );
    assert!(
        catalog
            .find(&third)
            .is_some_and(|b| b.state == BackupState::Complete)
    );
    assert!(
        catalog
            .find(&first)
            .is_some_and(|b| b.state == BackupState::Orphan)
    );
    assert_eq!(
        indexed_keys(store.as_ref()).await,
        manifest_keys(store.as_ref()).await
    );

    // Garbled, then far too large: ignored, every manifest read, written anew.
    let key = index::key_for("app").unwrap();
    for bytes in [
        b"not an index".to_vec(),
        vec![0u8; index::MAX_INDEX_BYTES as usize + 1],
    ] {
        store.put_bytes(&key, bytes.into()).await.unwrap();
        let (_d, lb) = host(store.clone());
        server.clear_requests();
        let catalog = lb.catalog().await.unwrap();
        assert_eq!(catalog.complete().count(), 2);
        assert_eq!(server.requests("GetObject", is_manifest), 2);
        assert_eq!(
            indexed_keys(store.as_ref()).await,
            manifest_keys(store.as_ref()).await
        );
    }

    // Missing: the same.
    store.delete_many(&[key]).await.unwrap();
    let (_d, lb) = host(store.clone());
    server.clear_requests();
    assert_eq!(lb.catalog().await.unwrap().complete().count(), 2);
    assert_eq!(server.requests("GetObject", is_manifest), 2);
    assert_eq!(indexed_keys(store.as_ref()).await.len(), 2);
}

#[tokio::test]
async fn a_forged_entry_that_does_not_match_the_listing_is_not_used() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let w = World::new(store.clone());
    let id = backup(&w.lb).await;
    let (_d, lb) = host(store.clone());
    let real = lb.catalog().await.unwrap();
    let mut entries = index::read(store.as_ref(), "app").await.unwrap().unwrap();
    // Claims a different checksum, in bytes of another size (or another time).
    let sha = &real
        .find(&id)
        .unwrap()
        .manifest
        .as_ref()
        .unwrap()
        .data
        .sha256;
    entries[0].manifest = entries[0]
        .manifest
        .replace(sha, &format!("{}0", "f".repeat(64)));
    forge(store.as_ref(), entries.clone()).await;
    let (_d, lb) = host(store.clone());
    server.clear_requests();
    let catalog = lb.catalog().await.unwrap();
    assert_eq!(server.requests("GetObject", is_manifest), 1);
    assert_eq!(
        catalog
            .find(&id)
            .unwrap()
            .manifest
            .as_ref()
            .unwrap()
            .data
            .sha256,
        *sha
    );
    // Written anew from the manifest.
    let repaired = index::read(store.as_ref(), "app").await.unwrap().unwrap();
    assert!(repaired[0].manifest.contains(sha.as_str()));
}

/// The strongest forgery a store without entity tags allows: manifest bytes of the same size
/// and the listed time, naming tampered data. The listing may show them; verify and restore
/// read the manifest itself and refuse.
#[tokio::test]
async fn verify_and_restore_read_the_real_manifest() {
    let w = World::local();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(w.path("bucket")).unwrap());
    let id = backup(&w.lb).await;
    let entry = w.lb.catalog().await.unwrap().find(&id).unwrap().clone();
    let m = entry.manifest.clone().unwrap();
    // Tampered data of the same size, and an index entry vouching for its checksum.
    let data_key = entry.data_key().unwrap();
    let evil = vec![0x42u8; m.data.stored_bytes as usize];
    std::fs::write(w.path("bucket").join(data_key.as_str()), &evil).unwrap();
    let evil_sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&evil)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // Resealed: a manifest's own checksum proves integrity, not who wrote it.
    let mut forged = (*m).clone();
    forged.data.sha256 = evil_sha.clone();
    forged.seal(None);
    let mut entries = index::read(store.as_ref(), "app").await.unwrap().unwrap();
    entries[0].manifest = String::from_utf8(forged.to_json()).unwrap();
    assert_eq!(entries[0].manifest.len() as u64, entries[0].size);
    forge(store.as_ref(), entries).await;

    let (_d, lb) = host(store.clone());
    let catalog = lb.catalog().await.unwrap();
    let shown = catalog.find(&id).unwrap();
    assert_eq!(shown.manifest.as_ref().unwrap().data.sha256, evil_sha);

    let (_, verified) = lb
        .verify(shown, Arc::new(NoProgress), CancellationToken::new())
        .await;
    let err = verified.unwrap_err().to_string();
    assert!(
        err.contains("manifest changed since the catalog was read"),
        "{err}"
    );
    let target = w.path("restored.db");
    let (_, restored) = lb
        .restore(
            lifeboat::pipeline::restore::RestoreFrom::Backup(Box::new(shown.clone())),
            lifeboat::pipeline::restore::RestoreOptions {
                target: target.clone().into(),
                for_source: None,
                force_target: false,
                live: None,
                integrity_check: false,
                drill: false,
                staging: w.lb.staging(),
                privileged: false,
            },
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(restored.is_err());
    assert!(!target.exists(), "nothing was restored");
}

#[tokio::test]
async fn two_writers_lose_at_most_an_entry_and_readers_repair_it() {
    let server = S3Server::start().await;
    let store = server.store("p").await;
    let a = World::new(store.clone());
    let b = World::new(store.clone());
    backup(&a.lb).await;
    a.lb.catalog().await.unwrap();
    // Both hosts back up at once, each rewriting the index whole.
    let (x, y) = tokio::join!(backup(&a.lb), backup(&b.lb));
    // A lost update, for certain: host A writes what it read before B's backup landed.
    let before = index::read(store.as_ref(), "app").await.unwrap().unwrap();
    let z = backup(&b.lb).await;
    forge(store.as_ref(), before).await;

    let (_d, lb) = host(store.clone());
    server.clear_requests();
    let catalog = lb.catalog().await.unwrap();
    for id in [&x, &y, &z] {
        assert!(
            catalog
                .find(id)
                .is_some_and(|b| b.state == BackupState::Complete),
            "{id}"
        );
    }
    assert_eq!(catalog.complete().count(), 4);
    assert!(server.requests("GetObject", is_manifest) >= 1);
    assert_eq!(
        indexed_keys(store.as_ref()).await,
        manifest_keys(store.as_ref()).await
    );
    let (_d, lb) = host(store.clone());
    server.clear_requests();
    assert_eq!(lb.catalog().await.unwrap().complete().count(), 4);
    assert_eq!(server.requests("GetObject", is_manifest), 0);
}
