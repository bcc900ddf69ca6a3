//! Objects lifeboat did not write: detected by their bytes, restorable all the same.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use lifeboat::Selector;
use lifeboat::catalog::TimeSource;
use lifeboat::diff::RowStatus;
use lifeboat::pipeline::restore::RestoreOptions;
use lifeboat::progress::NoProgress;
use lifeboat::storage::{ObjectKey, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use crate::common::{self, S3Server, World};

/// What `sqlite3 app.db .dump` writes, including the awkward parts: semicolons in strings,
/// a trigger body, a BLOB literal, a view, an explicit transaction.
const DUMP: &str = "PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, data BLOB);
INSERT INTO notes VALUES(1,'semi;colon','');
INSERT INTO notes VALUES(2,'it''s -- not a comment',X'00ff10');
INSERT INTO notes VALUES(3,'multi
line; text',NULL);
CREATE TABLE log (id INTEGER PRIMARY KEY, what TEXT);
CREATE TRIGGER notes_log AFTER INSERT ON notes BEGIN
  INSERT INTO log (what) VALUES ('note ' || NEW.id || ';');
END;
INSERT INTO log VALUES(1,'before trigger');
CREATE VIEW short_notes AS SELECT id FROM notes WHERE length(body) < 12;
COMMIT;
";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn opts(world: &World, target: &str) -> RestoreOptions {
    RestoreOptions {
        target: world.path(target).into(),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: false,
        drill: false,
        staging: world.lb.staging(),
        privileged: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_sql_gz_dump_is_listed_and_restored() {
    let server = S3Server::start().await;
    let world = World::new(server.store("").await);
    let key = "legacy/app-2026-01-02T03-04-05.sql.gz";
    world
        .lb
        .store()
        .put_bytes(
            &ObjectKey::new(key).unwrap(),
            Bytes::from(gzip(DUMP.as_bytes())),
        )
        .await
        .unwrap();

    let catalog = world.lb.catalog().await.unwrap();
    assert!(catalog.backups.is_empty());
    let f = catalog.find_foreign(key).unwrap();
    assert_eq!(f.format.to_string(), "sql.gz");
    assert_eq!(f.time_source, TimeSource::Name);
    assert_eq!(f.time.unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");

    let from = world
        .lb
        .select(&catalog, &Selector::Id(key.into()))
        .unwrap();
    let (job, report) = world
        .lb
        .restore(
            from,
            opts(&world, "legacy.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let report = report.unwrap();
    assert_eq!(job.backup_id.as_deref(), Some(key));
    assert!(!report.checksum_verified && !report.diff.has_expected);
    let rows: Vec<(String, Option<u64>, RowStatus)> = report
        .diff
        .rows
        .iter()
        .map(|r| (r.table.clone(), r.restored, r.status))
        .collect();
    assert_eq!(
        rows,
        [
            ("log".to_owned(), Some(1), RowStatus::Measured),
            ("notes".to_owned(), Some(3), RowStatus::Measured)
        ]
    );
    let c = rusqlite::Connection::open(world.path("legacy.db")).unwrap();
    let body: String = c
        .query_row("SELECT body FROM notes WHERE id = 3", [], |r| r.get(0))
        .unwrap();
    assert_eq!(body, "multi\nline; text");
    // The trigger came back too, and works.
    c.execute("INSERT INTO notes (body) VALUES ('x')", [])
        .unwrap();
    assert_eq!(common::count(&world.path("legacy.db"), "log"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_database_file_is_restored_and_unknown_bytes_are_refused() {
    let world = World::local();
    // Checkpoint first so the file on its own is the whole database, as `cp` would copy it.
    rusqlite::Connection::open(world.path("app.db"))
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let db = std::fs::read(world.path("app.db")).unwrap();
    let store = world.lb.store();
    store
        .put_bytes(&ObjectKey::new("old/app.db").unwrap(), Bytes::from(db))
        .await
        .unwrap();
    store
        .put_bytes(
            &ObjectKey::new("old/notes.txt").unwrap(),
            Bytes::from_static(b"\x00\x01 not a dump"),
        )
        .await
        .unwrap();
    store
        .put_bytes(
            &ObjectKey::new("old/broken.sql.gz").unwrap(),
            Bytes::from(gzip(
                b"CREATE TABLE t(a);\nINSERT INTO t VALUES(1);\nINSERT INTO t VALUES(",
            )),
        )
        .await
        .unwrap();

    let catalog = world.lb.catalog().await.unwrap();
    let f = catalog.find_foreign("old/app.db").unwrap();
    assert_eq!(f.format.to_string(), "sqlite");
    assert_eq!(f.time_source, TimeSource::Modified);
    assert_eq!(
        catalog
            .find_foreign("old/notes.txt")
            .unwrap()
            .format
            .to_string(),
        "unknown"
    );

    let from = world
        .lb
        .select(&catalog, &Selector::Id("old/app.db".into()))
        .unwrap();
    let (_, report) = world
        .lb
        .restore(
            from,
            opts(&world, "copy.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(
        report.unwrap().diff.total_restored(),
        2000 + 20 + 500 + 2000 + 30
    );
    assert_eq!(
        common::content_digest(&world.path("copy.db")),
        common::content_digest(&world.path("app.db"))
    );

    let from = world
        .lb
        .select(&catalog, &Selector::Id("old/notes.txt".into()))
        .unwrap();
    let (_, result) = world
        .lb
        .restore(
            from,
            opts(&world, "nope.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("cannot be restored"), "{err}");

    // A dump cut off mid-statement fails clearly and leaves no half-built database.
    let from = world
        .lb
        .select(&catalog, &Selector::Id("old/broken.sql.gz".into()))
        .unwrap();
    let (_, result) = world
        .lb
        .restore(
            from,
            opts(&world, "broken.db"),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("ends inside a statement"), "{err}");
    assert!(!world.path("broken.db").exists());
    let leftovers: Vec<_> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
