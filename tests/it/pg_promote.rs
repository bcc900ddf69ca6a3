//! Promotion on a throwaway PostgreSQL cluster: an application role that is no superuser owns
//! a partitioned, inherited, row-security-protected schema with grants to a reader; a proven
//! copy takes the database's place and both roles go on working.

use std::process::{Command, Stdio};
use std::sync::Arc;

use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::pipeline::restore::{RestoreOptions, RestoreReport};
use lifeboat::progress::NoProgress;
use lifeboat::signing::Signer;
use lifeboat::state::State;
use lifeboat::storage::{LocalStore, ObjectStore};
use lifeboat::{Error, Lifeboat, Selector};
use tokio_util::sync::CancellationToken;

use crate::pg::{Cluster, pg_opts};

const APP: &str = r#"
CREATE SCHEMA billing AUTHORIZATION app;
SET ROLE app;
CREATE TABLE billing.events (id bigint, at date NOT NULL, tenant text NOT NULL, payload text,
  PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE billing.events_2025 PARTITION OF billing.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE billing.events_2026 PARTITION OF billing.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE billing.parent (id int PRIMARY KEY, note text);
CREATE TABLE billing.child (extra text) INHERITS (billing.parent);
ALTER TABLE billing.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON billing.events FOR SELECT TO app_reader USING (tenant = 'a');
GRANT USAGE ON SCHEMA billing TO app_reader;
GRANT SELECT ON billing.events TO app_reader;
INSERT INTO billing.events SELECT i, DATE '2025-06-01' + (i % 400), CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'p' || i
  FROM generate_series(1, 1000) i;
INSERT INTO billing.parent VALUES (1, 'p');
INSERT INTO billing.child VALUES (2, 'c', 'x');
SELECT lo_from_bytea(0, 'a large object');
RESET ROLE;
"#;

/// psql as `user`: its output, or its error.
fn psql_as(cluster: &Cluster, user: &str, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(cluster.bin.join("psql"))
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            cluster.dir.to_str().unwrap(),
            "-p",
            &cluster.port.to_string(),
        ])
        .args(["-U", user, "-d", db, "-c", sql])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn world(cluster: &Cluster, dir: &std::path::Path) -> Lifeboat {
    let (_, secret) = Signer::generate().unwrap();
    std::fs::write(dir.join("signing.key"), &secret).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("bucket")).unwrap());
    let text = format!(
        "operator = \"oncall\"\n[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n\
         [backup]\ntemp_dir = \"staging\"\ncontent_checksums = true\n[signing]\nkey_file = \"signing.key\"\n{}{}",
        cluster.source_toml("app", "app", ""),
        cluster.source_toml("simple", "simple", "")
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::parse(&text, &path).unwrap();
    let state = State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, Clock::system())
}

async fn backup(lb: &Lifeboat, source: &str) {
    let (job, m) = lb
        .backup(
            source,
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error));
}

async fn restore(
    lb: &Lifeboat,
    source: &str,
    to: &str,
    edit: impl FnOnce(&mut RestoreOptions),
) -> lifeboat::Result<RestoreReport> {
    let catalog = lb.catalog().await.unwrap();
    let from = lb
        .select(
            &catalog,
            &Selector::Latest {
                source: Some(source.into()),
            },
        )
        .unwrap();
    let id = from.label();
    let mut opts = pg_opts(lb, lb.postgres_target(source, Some(to), &id).unwrap());
    edit(&mut opts);
    lb.restore(from, opts, Arc::new(NoProgress), CancellationToken::new())
        .await
        .1
}

async fn promote(
    lb: &Lifeboat,
    copy: &str,
    confirm: &str,
) -> lifeboat::Result<lifeboat::promote::Promoted> {
    lb.promote(copy, None, confirm, CancellationToken::new())
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_proven_copy_replaces_the_source_and_the_application_keeps_working() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE ROLE app LOGIN NOSUPERUSER");
    cluster.psql("postgres", "CREATE ROLE app_reader LOGIN NOSUPERUSER");
    cluster.psql("postgres", "CREATE DATABASE app OWNER app");
    cluster.psql("app", APP);
    cluster.psql(
        "postgres",
        "ALTER DATABASE app SET search_path = billing, public",
    );
    cluster.psql("postgres", "COMMENT ON DATABASE app IS 'the application'");
    cluster.psql("postgres", "REVOKE CONNECT ON DATABASE app FROM PUBLIC");
    cluster.psql(
        "postgres",
        "GRANT CONNECT ON DATABASE app TO app, app_reader",
    );
    let dir = tempfile::tempdir().unwrap();
    let lb = world(&cluster, dir.path());
    backup(&lb, "app").await;

    // Over the source, forced or not, a restore is refused and points at promote.
    let err = restore(&lb, "app", "app", |_| {}).await.unwrap_err();
    assert!(matches!(err, Error::DatabaseIsSource(_)), "{err}");
    assert!(err.to_string().contains("lifeboat promote"), "{err}");
    let err = restore(&lb, "app", "app", |o| o.force_target = true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lifeboat promote"), "{err}");

    // A least-privilege copy proves the data, and says what it left out; it cannot replace
    // a source whose reader holds GRANTs the copy lacks.
    let report = restore(&lb, "app", "app_lp", |_| {}).await.unwrap();
    assert!(report.proved());
    assert_eq!(report.content_compared, Some(5), "{report:?}");
    for skipped in ["owners", "GRANTs", "database settings"] {
        assert!(
            report.skipped.iter().any(|s| s == skipped),
            "{:?}",
            report.skipped
        );
    }
    let err = promote(&lb, "app_lp", "app").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("app_reader (table grants)")
            && text.contains("app_reader (schema grants)")
            && text.contains("--privileged"),
        "{text}"
    );
    assert!(cluster.databases().contains(&"app".to_owned()));

    // The copy meant for promotion: an authenticated backup, restored --privileged, keeps
    // owners, grants, the database's settings, comment and grants.
    let report = restore(&lb, "app", "app_check", |o| o.privileged = true)
        .await
        .unwrap();
    assert!(report.proved() && report.skipped.is_empty(), "{report:?}");
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT s.setconfig::text FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'app_check'"
        ),
        "{\"search_path=billing, public\"}"
    );
    assert_eq!(
        cluster.psql(
            "app_check",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'events_2025'"
        ),
        "app"
    );

    // A copy changed after it was proved is refused.
    restore(&lb, "app", "app_changed", |o| o.privileged = true)
        .await
        .unwrap();
    cluster.psql("app_changed", "DELETE FROM billing.parent WHERE id = 1");
    let err = promote(&lb, "app_changed", "app").await.unwrap_err();
    assert!(err.to_string().contains("changed since"), "{err}");
    cluster.psql("app_changed", "INSERT INTO billing.parent VALUES (1, 'p')");
    cluster.psql(
        "app_changed",
        "ALTER TABLE billing.events DISABLE ROW LEVEL SECURITY",
    );
    let err = promote(&lb, "app_changed", "app").await.unwrap_err();
    assert!(err.to_string().contains("changed since"), "{err}");

    // The incident: a bad deploy deletes rows; the application is connected.
    cluster.psql("app", "DELETE FROM billing.events WHERE id > 10");
    let mut session = Command::new(cluster.bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-h",
            cluster.dir.to_str().unwrap(),
            "-p",
            &cluster.port.to_string(),
        ])
        .args(["-U", "app", "-d", "app", "-c", "SELECT pg_sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        let n = cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' AND usename = 'app'",
        );
        if n != "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let err = promote(&lb, "app_check", "App").await.unwrap_err();
    assert!(err.to_string().contains("not the source's name"), "{err}");
    let promoted = promote(&lb, "app_check", "app").await.unwrap();
    assert!(promoted.sessions_ended >= 1, "{promoted:?}");
    assert_eq!(promoted.plan.owner.as_deref(), Some("app"));
    let kept = promoted.plan.kept_as.clone().unwrap();
    assert!(kept.starts_with("app_before_"), "{kept}");
    let status = session.wait().unwrap();
    assert!(!status.success(), "the application's session was ended");

    let dbs = cluster.databases();
    assert!(
        dbs.contains(&"app".to_owned()) && dbs.contains(&kept),
        "{dbs:?}"
    );
    assert!(!dbs.contains(&"app_check".to_owned()), "{dbs:?}");
    // The old database is kept as it was: the damage is there to look at.
    assert_eq!(
        cluster.psql(&kept, "SELECT count(*) FROM billing.events"),
        "10"
    );
    // The promoted one: the backup's rows, the database's owner, settings, comment, grants.
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) || ' ' || shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'app'"
        ),
        "app the application"
    );
    // The application role reads and writes, with its search_path, through the partitioned
    // table and the inheritance parent.
    assert_eq!(
        psql_as(&cluster, "app", "app", "SHOW search_path").unwrap(),
        "billing, public"
    );
    psql_as(
        &cluster,
        "app",
        "app",
        "INSERT INTO events VALUES (5001, '2026-02-01', 'a', 'after'); INSERT INTO parent VALUES (3, 'q')",
    )
    .unwrap();
    assert_eq!(
        psql_as(&cluster, "app", "app", "SELECT count(*) FROM events").unwrap(),
        "1001"
    );
    assert_eq!(
        psql_as(&cluster, "app", "app", "SELECT count(*) FROM parent").unwrap(),
        "3"
    );
    assert_eq!(
        psql_as(
            &cluster,
            "app",
            "app",
            "SELECT count(*) FROM pg_largeobject_metadata"
        )
        .unwrap(),
        "1"
    );
    // The reader still sees what its policy lets it see, and may not write.
    assert_eq!(
        psql_as(
            &cluster,
            "app_reader",
            "app",
            "SELECT count(*) FROM billing.events"
        )
        .unwrap(),
        "501"
    );
    let denied = psql_as(
        &cluster,
        "app_reader",
        "app",
        "INSERT INTO billing.events VALUES (5002, '2026-02-01', 'a', 'no')",
    )
    .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    let record = lb
        .jobs()
        .unwrap()
        .into_iter()
        .find(|j| {
            j.kind == lifeboat::jobs::JobKind::Promote
                && j.status == lifeboat::jobs::JobStatus::Succeeded
        })
        .unwrap();
    assert_eq!(record.operator.as_deref(), Some("oncall"));
    assert_eq!(record.source.as_deref(), Some("app"));

    // A least-privilege copy of a database whose rights are all its owner's: its restore
    // role's objects go to the owner, the role goes.
    cluster.psql("postgres", "CREATE DATABASE simple OWNER app");
    cluster.psql(
        "simple",
        "SET ROLE app; CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' FROM generate_series(1, 50) i",
    );
    backup(&lb, "simple").await;
    let report = restore(&lb, "simple", "simple_check", |_| {})
        .await
        .unwrap();
    assert!(report.proved());
    promote(&lb, "simple_check", "simple").await.unwrap();
    assert_eq!(
        cluster.psql(
            "simple",
            "SELECT tableowner FROM pg_tables WHERE tablename = 't'"
        ),
        "app"
    );
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'lifeboat_owner_simple_check%'"
        ),
        "0"
    );
    psql_as(
        &cluster,
        "app",
        "simple",
        "INSERT INTO t VALUES (51, 'new')",
    )
    .unwrap();
}
