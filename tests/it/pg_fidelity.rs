//! A PostgreSQL restore holds what the source held: every table by its schema and name, and
//! the source's bytes in the source's encoding.

use std::sync::Arc;

use lifeboat::progress::NoProgress;
use lifeboat::storage::{LocalStore, ObjectStore};
use lifeboat::{Lifeboat, Selector};
use tokio_util::sync::CancellationToken;

use crate::pg::{Cluster, pg_opts};

fn world(cluster: &Cluster, dir: &std::path::Path, source: &str, db: &str) -> Lifeboat {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("bucket")).unwrap());
    let text = format!(
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n\
         [backup]\ntemp_dir = \"staging\"\ncontent_checksums = true\n{}",
        cluster.source_toml(source, db, "")
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, &text).unwrap();
    let config = lifeboat::config::Config::parse(&text, &path).unwrap();
    let state = lifeboat::state::State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, lifeboat::clock::Clock::system())
}

async fn backup_and_restore(
    lb: &Lifeboat,
    source: &str,
    to: &str,
) -> (
    lifeboat::manifest::Manifest,
    lifeboat::Result<lifeboat::pipeline::restore::RestoreReport>,
) {
    let (job, m) = lb
        .backup(
            source,
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let m = m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error));
    let catalog = lb.catalog().await.unwrap();
    let from = lb
        .select(&catalog, &Selector::Id(m.id.to_string()))
        .unwrap();
    let target = lb.postgres_target(source, Some(to), m.id.as_str()).unwrap();
    let report = lb
        .restore(
            from,
            pg_opts(lb, target),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await
        .1;
    (m, report)
}

/// `"a.b".c` and `a."b.c"` are two tables: both are counted, hashed and compared, and one
/// missing from a restore is a finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tables_are_told_apart_by_schema_and_name() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE dots");
    cluster.psql(
        "dots",
        r#"CREATE SCHEMA "a.b"; CREATE SCHEMA a;
           CREATE TABLE "a.b".c (v int); CREATE TABLE a."b.c" (v int);
           CREATE TABLE a.plain (v int);
           INSERT INTO "a.b".c SELECT generate_series(1, 3);
           INSERT INTO a."b.c" SELECT generate_series(1, 5);
           INSERT INTO a.plain VALUES (1);"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let lb = world(&cluster, dir.path(), "dots", "dots");
    let (m, report) = backup_and_restore(&lb, "dots", "dots_check").await;
    let names: Vec<&str> = m.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            r#"a."b.c""#,
            "a.plain",
            r#""a.b".c"#,
            "pg_catalog.pg_largeobject_metadata"
        ]
    );
    let parts: Vec<_> = m
        .tables
        .iter()
        .map(|t| (t.schema.as_deref(), t.table.as_deref(), t.rows))
        .collect();
    assert_eq!(parts[0], (Some("a"), Some("b.c"), 5));
    assert_eq!(parts[2], (Some("a.b"), Some("c"), 3));
    assert_eq!(m.content_checksums.len(), 4);
    let report = report.unwrap();
    assert_eq!(report.diff.rows.len(), m.tables.len());
    assert!(report.proved());
    assert_eq!(report.content_compared, Some(4));

    // A restore that lost one of the two is a finding, named by the one it lost.
    cluster.psql("dots_check", r#"DROP TABLE a."b.c""#);
    let counted = lifeboat::engine::postgres::count_database(
        &cluster_conn(&lb, "dots_check"),
        false,
        &CancellationToken::new(),
    )
    .await
    .unwrap()
    .0;
    let diff = lifeboat::diff::RowDiff::new(Some(&m.tables), &counted, None);
    let missing: Vec<&str> = diff.findings().map(|r| r.table.as_str()).collect();
    assert_eq!(missing, [r#"a."b.c""#]);
}

fn cluster_conn(lb: &Lifeboat, db: &str) -> lifeboat::engine::postgres::Conn {
    match lb.postgres_target("dots", Some(db), "x").unwrap() {
        lifeboat::pipeline::restore::RestoreTarget::Postgres { server, database } => {
            server.with_dbname(&database)
        }
        _ => unreachable!(),
    }
}

/// A SQL_ASCII database holding bytes that are not UTF-8: its content checksums are taken
/// over those bytes, and the restore is created in SQL_ASCII so it holds them as they were
/// (a UTF8 copy would hold invalid text and still pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_sql_ascii_database_backs_up_with_checksums_and_restores_in_its_encoding() {
    let cluster = Cluster::start();
    cluster.psql(
        "postgres",
        "CREATE DATABASE legacy TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    cluster.psql(
        "legacy",
        r"CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, E'caf\xe9'), (2, 'plain'), (3, E'\xff\xfe')",
    );
    let dir = tempfile::tempdir().unwrap();
    let lb = world(&cluster, dir.path(), "legacy", "legacy");
    let (m, report) = backup_and_restore(&lb, "legacy", "legacy_check").await;
    let db = m.postgres.as_ref().unwrap().database.as_ref().unwrap();
    assert_eq!(
        (db.encoding.as_str(), db.lc_collate.as_str()),
        ("SQL_ASCII", "C")
    );
    assert_eq!(m.content_checksums.len(), 2);
    let report = report.unwrap();
    assert!(report.proved(), "{report:?}");
    assert_eq!(report.content_compared, Some(2));
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT pg_encoding_to_char(encoding) || ' ' || datcollate FROM pg_database WHERE datname = 'legacy_check'"
        ),
        "SQL_ASCII C"
    );
    let bytes = |db: &str| {
        cluster.psql(
            db,
            "SELECT string_agg(encode(convert_to(v, 'SQL_ASCII'), 'hex'), ',' ORDER BY id) FROM t",
        )
    };
    assert_eq!(bytes("legacy_check"), bytes("legacy"));
    assert_eq!(bytes("legacy"), "636166e9,706c61696e,fffe");
}
