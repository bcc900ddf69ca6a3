//! Hostile input: what someone who can write one object into the bucket would try, against
//! real SQLite files and throwaway PostgreSQL clusters. Every attack must fail with one line,
//! and nothing outside the restore's own target may change: other database files byte for
//! byte, the source database, the cluster's roles and `postgresql.auto.conf`, no command run
//! on either host. The tests print how many attacks of each class they tried.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat::pipeline::restore::{RestoreOptions, RestoreTarget};
use lifeboat::progress::NoProgress;
use lifeboat::signing::{Authenticity, Signer};
use lifeboat::storage::{ObjectKey, ObjectStoreExt};
use lifeboat::{Error, Lifeboat, Selector};
use tokio_util::sync::CancellationToken;

use crate::cli::{assert_one_line_error, run, with_config};
use crate::common::{self, World};
use crate::pg::{Cluster, pg_opts};

/// Tallies attacks per class, and prints them at the end.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, (usize, usize)>);

impl Tally {
    fn tried(&mut self, class: &'static str, refused: bool) {
        let e = self.0.entry(class).or_default();
        e.0 += 1;
        e.1 += usize::from(refused);
    }

    fn print(&self, title: &str) {
        println!("{title}: attacks tried / refused per class");
        for (class, (tried, refused)) in &self.0 {
            println!("  {class:<40} {tried:>3} / {refused:>3}");
        }
        let (t, r) = self
            .0
            .values()
            .fold((0, 0), |(t, r), (a, b)| (t + a, r + b));
        println!("  {:<40} {t:>3} / {r:>3}", "total");
    }
}

fn sqlite_opts(lb: &Lifeboat, target: &Path) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf().into(),
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: true,
        drill: false,
        staging: lb.staging(),
        privileged: false,
    }
}

/// Exit 1 and one `error:` line, the last one (progress lines, when stderr is not a
/// terminal, come before it).
fn assert_error_line(out: &crate::cli::Out, needle: &str) {
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    let last = out.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("error: ") && last.contains(needle),
        "{}",
        out.stderr
    );
}

async fn put(lb: &Lifeboat, key: &str, body: impl Into<Vec<u8>>) {
    lb.store()
        .put_bytes(&ObjectKey::new(key.to_owned()).unwrap(), body.into().into())
        .await
        .unwrap();
}

async fn restore_key(
    lb: &Lifeboat,
    key: &str,
    opts: RestoreOptions,
) -> lifeboat::Result<lifeboat::pipeline::restore::RestoreReport> {
    let catalog = lb.catalog().await.unwrap();
    let from = lb
        .select(&catalog, &Selector::Id(key.to_owned()))
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    lb.restore(from, opts, Arc::new(NoProgress), CancellationToken::new())
        .await
        .1
}

/// Every file under `dir`, by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    common::all_files(dir).into_iter().collect()
}

/// Dumps that try to reach outside their target, by class. `{live}` is a database outside
/// the target, `{outside}` a directory beside it.
const SQLITE_ATTACKS: &[(&str, &str)] = &[
    (
        "ATTACH another database",
        "ATTACH DATABASE '{live}' AS l;\nDELETE FROM l.users;\n",
    ),
    (
        "ATTACH another database",
        "BEGIN;\nattach '{live}' as l;\ninsert into l.users values (99, 'mallory');\nCOMMIT;\n",
    ),
    (
        "ATTACH another database",
        "/* x */ ATTACH/**/DATABASE 'file:{live}?mode=rw' AS l; DROP TABLE l.users;\n",
    ),
    (
        "ATTACH another database",
        "ATTACH '{outside}/new.db' AS n;\nCREATE TABLE n.t (a);\n",
    ),
    (
        "VACUUM INTO a file",
        "CREATE TABLE t (a);\nVACUUM INTO '{outside}/copy.db';\n",
    ),
    (
        "VACUUM INTO a file",
        "CREATE TABLE t (a);\nvacuum main into '{outside}/copy.db';\n",
    ),
    (
        "VACUUM INTO a file",
        "CREATE TABLE t (a); /**/VACUUM/**/INTO '{outside}/copy.db';\n",
    ),
    (
        "writable_schema / sqlite_schema writes",
        "CREATE TABLE t (a);\nPRAGMA writable_schema=ON;\nUPDATE sqlite_schema SET sql = 'CREATE TABLE t (a, b)' WHERE name = 't';\n",
    ),
    (
        "writable_schema / sqlite_schema writes",
        "PRAGMA writable_schema=1;\n",
    ),
    (
        "writable_schema / sqlite_schema writes",
        "CREATE TABLE t (a);\nPRAGMA main.writable_schema = ON;\nDELETE FROM sqlite_master;\n",
    ),
    (
        "writable_schema / sqlite_schema writes",
        "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','t2','t2',0,'CREATE TABLE t2 (a)');\n",
    ),
    (
        "writable_schema / sqlite_schema writes",
        "PRAGMA writable_schema=ON;\nINSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table','x','x',0,'CREATE VIRTUAL TABLE x USING dbstat');\nPRAGMA writable_schema=OFF;\n",
    ),
    (
        "code loading and file functions",
        "SELECT load_extension('{outside}/evil.so');\n",
    ),
    (
        "code loading and file functions",
        "CREATE TABLE t (a);\nCREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT load_extension('{outside}/evil'); END;\nINSERT INTO t VALUES (1);\n",
    ),
    (
        "code loading and file functions",
        "CREATE VIEW v AS SELECT load_extension('{outside}/evil') AS x;\nSELECT * FROM v;\n",
    ),
    (
        "code loading and file functions",
        "SELECT fts3_tokenizer('simple', x'0000000000000000');\n",
    ),
    (
        "code loading and file functions",
        "SELECT writefile('{outside}/marker', 'x');\n",
    ),
    (
        "PRAGMAs that touch files",
        "PRAGMA journal_mode=WAL;\nCREATE TABLE t (a);\n",
    ),
    (
        "PRAGMAs that touch files",
        "PRAGMA temp_store_directory = '{outside}';\n",
    ),
    (
        "PRAGMAs that touch files",
        "CREATE TABLE t (a);\nPRAGMA main.locking_mode = EXCLUSIVE;\n",
    ),
    (
        "virtual tables that reach outside",
        "CREATE VIRTUAL TABLE s USING dbstat;\n",
    ),
    (
        "virtual tables that reach outside",
        "CREATE VIRTUAL TABLE c USING csv(filename='{live}');\n",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_dumps_cannot_reach_outside_their_target() {
    let world = World::local();
    let outside = world.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let live = outside.join("live.db");
    {
        let c = rusqlite::Connection::open(&live).unwrap();
        c.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('alice'), ('bob');",
        )
        .unwrap();
    }
    // Attackers start with a comment, so the object is taken for SQL.
    let fill = |dump: &str| {
        format!("-- a dump\n{dump}")
            .replace("{live}", live.to_str().unwrap())
            .replace("{outside}", outside.to_str().unwrap())
    };

    // The attack is real: the first dump, run as the old loader did (a plain connection),
    // empties the live database (on a copy here).
    let copy = world.path("live-copy.db");
    std::fs::copy(&live, &copy).unwrap();
    rusqlite::Connection::open_in_memory()
        .unwrap()
        .execute_batch(
            &SQLITE_ATTACKS[0]
                .1
                .replace("{live}", copy.to_str().unwrap()),
        )
        .unwrap();
    assert_eq!(common::count(&copy, "users"), 0);

    let before = files(&outside);
    let targets = world.path("restores");
    std::fs::create_dir(&targets).unwrap();
    let mut tally = Tally::default();
    for (i, (class, dump)) in SQLITE_ATTACKS.iter().enumerate() {
        let key = format!("attacks/sqlite-{i}.sql");
        put(&world.lb, &key, fill(dump)).await;
        let target = targets.join(format!("{i}.db"));
        let result = restore_key(&world.lb, &key, sqlite_opts(&world.lb, &target)).await;
        let err = result.expect_err(&format!("{class}: {dump}"));
        let text = err.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        // Named: what was refused, or SQLite's own word for what does not exist.
        let named = matches!(err, Error::Forbidden(_))
            || text.contains("no such function")
            || text.contains("no such module");
        assert!(named, "{class}: {dump}: {text}");
        assert_eq!(files(&outside), before, "{class}: {dump}: {text}");
        assert_eq!(
            std::fs::read_dir(&targets).unwrap().count(),
            0,
            "no target or partial file is left: {dump}"
        );
        tally.tried(class, true);
    }

    // A trigger that would call a forbidden function later, on some future insert, is part
    // of the target's content; counting and checking the restored file never fires it.
    let key = "attacks/sqlite-later.sql";
    put(
        &world.lb,
        key,
        "-- a dump\nCREATE TABLE t (a);\nINSERT INTO t VALUES (1);\nCREATE TRIGGER later AFTER INSERT ON t BEGIN SELECT load_extension('/nonexistent'); END;\n",
    )
    .await;
    let target = targets.join("later.db");
    let report = restore_key(&world.lb, key, sqlite_opts(&world.lb, &target))
        .await
        .unwrap();
    assert_eq!(report.diff.total_restored(), 1);
    assert_eq!(files(&outside), before);
    tally.tried("triggers that fire later (contained)", true);

    // Through the command line too, as a restore and as a drill: one line, exit 1.
    let home = world.dir.path();
    let config = home.join("lifeboat.toml");
    let out = run(with_config(
        home,
        &config,
        &["restore", "attacks/sqlite-0.sql", "--to", "cli.db"],
    ))
    .await;
    assert_error_line(&out, "ATTACH DATABASE");
    let out = run(with_config(
        home,
        &config,
        &["drill", "--backup", "attacks/sqlite-4.sql"],
    ))
    .await;
    assert_error_line(&out, "VACUUM");
    assert_eq!(files(&outside), before);
    assert!(!home.join("cli.db").exists());
    tally.print("SQLite restores of SQL text");
}

/// What `sqlite3 .dump` writes for a database with the awkward parts: virtual tables (FTS5,
/// R-tree) written through `writable_schema`, AUTOINCREMENT, statistics, triggers, views,
/// WITHOUT ROWID, foreign keys.
#[tokio::test(flavor = "multi_thread")]
async fn real_sqlite3_dumps_still_restore_with_virtual_tables() {
    let world = World::local();
    let db = world.path("rich.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT);
             CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id), note TEXT);
             CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
             CREATE INDEX b_a ON b(a_id);
             CREATE TRIGGER a_log AFTER INSERT ON a BEGIN INSERT INTO b (a_id, note) VALUES (NEW.id, 'made; ' || NEW.name); END;
             CREATE VIEW named AS SELECT a.name, b.note FROM a JOIN b ON b.a_id = a.id;
             CREATE VIRTUAL TABLE docs USING fts5(body);
             CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1);
             INSERT INTO a (name) VALUES ('it''s'), ('semi;colon');
             INSERT INTO kv VALUES ('k', x'00ff');
             INSERT INTO docs VALUES ('hello lifeboat'), ('another document');
             INSERT INTO boxes VALUES (1, 0, 5), (2, 10, 20);
             ANALYZE;",
        )
        .output()
        .expect("the sqlite3 CLI (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(".dump")
        .output()
        .unwrap();
    let text = String::from_utf8(dump.stdout).unwrap();
    assert!(
        text.contains("PRAGMA writable_schema=ON") && text.contains("sqlite_stat1"),
        "{text}"
    );
    put(&world.lb, "legacy/rich.sql", text).await;
    let target = world.path("rich-restored.db");
    let report = restore_key(
        &world.lb,
        "legacy/rich.sql",
        sqlite_opts(&world.lb, &target),
    )
    .await
    .unwrap();
    assert_eq!(
        report
            .diff
            .rows
            .iter()
            .find(|r| r.table == "a")
            .unwrap()
            .restored,
        Some(2)
    );
    let c = rusqlite::Connection::open(&target).unwrap();
    let hit: String = c
        .query_row(
            "SELECT body FROM docs WHERE docs MATCH 'lifeboat'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hit, "hello lifeboat");
    let inside: i64 = c
        .query_row(
            "SELECT count(*) FROM boxes WHERE x0 >= 0 AND x1 <= 6",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inside, 1);
    c.execute("INSERT INTO a (name) VALUES ('new')", [])
        .unwrap();
    let seq: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 3, "AUTOINCREMENT state came back");
    let notes: i64 = c
        .query_row("SELECT count(*) FROM named", [], |r| r.get(0))
        .unwrap();
    assert_eq!(notes, 3, "the trigger and the view came back and work");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

/// A world whose config signs backups with a fresh key; returns the key's secret text.
fn signing_world() -> (World, String) {
    let world = World::local();
    let (_, secret) = Signer::generate().unwrap();
    std::fs::write(world.path("signing.key"), &secret).unwrap();
    let text = std::fs::read_to_string(world.path("lifeboat.toml")).unwrap()
        + "[signing]\nkey_file = \"signing.key\"\n";
    std::fs::write(world.path("lifeboat.toml"), &text).unwrap();
    (world, secret)
}

fn lifeboat_with(world: &World, text: &str) -> Lifeboat {
    let path = world.path("lifeboat.toml");
    let config = lifeboat::config::Config::parse(text, &path).unwrap();
    let state = lifeboat::state::State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(
        config,
        world.lb.store().clone(),
        state,
        lifeboat::clock::Clock::system(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_carry_their_own_checksum_and_a_signature() {
    let (world, secret) = signing_world();
    let home = world.dir.path().to_path_buf();
    let config = home.join("lifeboat.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let signer_lb = lifeboat_with(&world, &text);
    let public = Signer::parse(&secret).unwrap().public().to_string();

    let (job, m) = signer_lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let m = m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error));
    let sig = m.integrity.as_ref().unwrap().signature.as_ref().unwrap();
    assert_eq!(sig.key, public);
    assert_eq!(
        signer_lb.authenticity(&m),
        Authenticity::Authenticated {
            key: public.clone()
        }
    );
    let id = m.id.to_string();

    // A restore host needs only the public key; without it the backup is not authenticated.
    let base = text.replace("[signing]\nkey_file = \"signing.key\"\n", "");
    let verifier = lifeboat_with(
        &world,
        &format!("{base}[signing]\ntrusted_keys = [\"{public}\"]\n"),
    );
    let stranger = lifeboat_with(&world, &base);
    let entry = |lb: &Lifeboat| {
        let lb = lb.clone();
        let id = id.clone();
        async move { lb.catalog().await.unwrap().find(&id).unwrap().clone() }
    };
    let e = entry(&verifier).await;
    assert!(
        verifier
            .authenticity(e.manifest.as_ref().unwrap())
            .is_authenticated()
    );
    let e = entry(&stranger).await;
    assert!(matches!(
        stranger.authenticity(e.manifest.as_ref().unwrap()),
        Authenticity::UntrustedKey { .. }
    ));

    // The command line says so: verify, show, list --json, restore.
    let out = run(with_config(&home, &config, &["verify", &id])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("manifest authenticated"),
        "{}",
        out.stdout
    );
    let out = run(with_config(&home, &config, &["show", &id])).await;
    assert!(
        out.stdout
            .contains("manifest  authenticated (signed by ed25519:"),
        "{}",
        out.stdout
    );
    let out = run(with_config(&home, &config, &["list", "--json"])).await;
    let v = crate::cli::json(&out);
    assert_eq!(v["backups"][0]["authenticity"]["status"], "authenticated");
    let out = run(with_config(
        &home,
        &config,
        &["restore", &id, "--to", "signed.db"],
    ))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("manifest   authenticated"),
        "{}",
        out.stdout
    );

    // Any edit of any field is caught before anything is loaded, and `verify` fails.
    let manifest_path = world.path(&format!("bucket/app/{id}/manifest.json"));
    let original = std::fs::read(&manifest_path).unwrap();
    let mut edits = 0;
    for edit in [
        |v: &mut serde_json::Value| v["data"]["raw_bytes"] = 1.into(),
        |v: &mut serde_json::Value| v["data"]["compression"] = "none".into(),
        |v: &mut serde_json::Value| v["tables"][0]["rows"] = 7.into(),
        |v: &mut serde_json::Value| v["host"] = "elsewhere".into(),
        |v: &mut serde_json::Value| v["note"] = "a field this version does not know".into(),
        |v: &mut serde_json::Value| v["integrity"]["sha256"] = "0".repeat(64).into(),
    ] {
        let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
        edit(&mut v);
        std::fs::write(&manifest_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let e = entry(&verifier).await;
        assert_eq!(e.state, lifeboat::catalog::BackupState::Damaged);
        assert!(
            e.problem
                .as_deref()
                .unwrap()
                .contains("own checksum does not match"),
            "{:?}",
            e.problem
        );
        let out = run(with_config(&home, &config, &["verify", &id])).await;
        assert_eq!(out.code, 1, "{}", out.stdout);
        let out = run(with_config(
            &home,
            &config,
            &["restore", &id, "--to", "edited.db"],
        ))
        .await;
        assert_ne!(out.code, 0);
        assert!(!home.join("edited.db").exists());
        edits += 1;
    }
    // An attacker who recomputes the checksum cannot recompute the signature.
    common::rewrite_manifest(&manifest_path, |v| v["tables"][0]["rows"] = 7.into());
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    v["integrity"]["signature"] =
        serde_json::from_slice::<serde_json::Value>(&original).unwrap()["integrity"]["signature"]
            .clone();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let e = entry(&verifier).await;
    assert!(matches!(
        verifier.authenticity(e.manifest.as_ref().unwrap()),
        Authenticity::Bad { .. }
    ));
    let out = run(with_config(&home, &config, &["verify", &id])).await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("does not verify"), "{}", out.stdout);
    let out = run(with_config(
        &home,
        &config,
        &["restore", &id, "--to", "forged.db"],
    ))
    .await;
    assert_one_line_error(&out, "does not verify");
    assert!(!home.join("forged.db").exists());

    // Without its signature (re-checksummed) it is unsigned: restorable, never --privileged.
    std::fs::write(&manifest_path, &original).unwrap();
    common::rewrite_manifest(&manifest_path, |v| v["integrity"] = serde_json::Value::Null);
    let e = entry(&verifier).await;
    assert_eq!(
        verifier.authenticity(e.manifest.as_ref().unwrap()),
        Authenticity::Unsigned
    );

    // A manifest written before manifests carried a checksum still loads, as unchecked.
    let mut v: serde_json::Value = serde_json::from_slice(&original).unwrap();
    v.as_object_mut().unwrap().remove("integrity");
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let out = run(with_config(&home, &config, &["verify", &id])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("manifest unchecked"), "{}", out.stdout);
    let out = run(with_config(
        &home,
        &config,
        &["restore", &id, "--to", "old.db"],
    ))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    println!("manifest edits tried: {edits}, caught: {edits}; forged signature caught: 1");

    // The secret key is in its file and nowhere else.
    let secret_hex = secret
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("ed25519-secret:");
    for (path, bytes) in common::all_files(world.dir.path()) {
        if path.ends_with("signing.key") {
            continue;
        }
        assert!(!common::contains(&bytes, secret_hex), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn privileged_restores_are_refused_for_what_is_not_authenticated() {
    let world = World::local();
    let (_, m) = world
        .lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let id = m.unwrap().id.to_string();
    put(
        &world.lb,
        "legacy/old.sql",
        "-- a dump\nCREATE TABLE t (a);\n",
    )
    .await;
    let home = world.dir.path();
    let config = home.join("lifeboat.toml");
    for (what, needle) in [
        (id.as_str(), "is a backup that is unsigned"),
        ("legacy/old.sql", "a foreign object, which nobody signed"),
    ] {
        let out = run(with_config(
            home,
            &config,
            &["restore", what, "--to", "p.db", "--privileged"],
        ))
        .await;
        assert_one_line_error(&out, needle);
        assert!(!home.join("p.db").exists());
    }
}

/// A PostgreSQL cluster whose pg_hba.conf makes every role but `postgres` log in with a
/// password, so the restore role's own password is what gets it in.
fn password_cluster() -> Cluster {
    let cluster = Cluster::start();
    std::fs::write(
        cluster.dir.join("data/pg_hba.conf"),
        "local all postgres trust\nlocal all all scram-sha-256\n",
    )
    .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()");
    cluster
}

/// What a restore must never change outside its scratch database.
#[derive(Debug, PartialEq, Eq)]
struct Untouched {
    roles: String,
    databases: String,
    auto_conf: Vec<u8>,
    source_rows: String,
}

fn untouched(c: &Cluster) -> Untouched {
    Untouched {
        roles: c.psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || rolsuper || rolcreaterole || rolcanlogin, ',' ORDER BY rolname) FROM pg_roles",
        ),
        databases: c.databases().join(","),
        auto_conf: std::fs::read(c.dir.join("data/postgresql.auto.conf")).unwrap(),
        source_rows: c.psql("app", "SELECT count(*) FROM t"),
    }
}

/// A marker file that a command run on either host would create.
fn marker() -> PathBuf {
    PathBuf::from(format!(
        "/tmp/lifeboat-attack-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ))
}

/// Plain SQL dumps that try to get out of their scratch database, by class, each with what
/// its one-line error must name. `{marker}` is a file nobody may create.
const PLAIN_ATTACKS: &[(&str, &str, &str)] = &[
    (
        "COPY ... TO PROGRAM",
        "COPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
        "COPY",
    ),
    (
        "COPY ... TO PROGRAM",
        "COPY/**/(SELECT 1)/**/TO/**/PROGRAM 'touch {marker}';\n",
        "COPY",
    ),
    (
        "COPY ... TO PROGRAM",
        "DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}'''; END $$;\n",
        "DO",
    ),
    (
        "ALTER SYSTEM",
        "ALTER SYSTEM SET work_mem = '1GB';\n",
        "ALTER SYSTEM",
    ),
    (
        "ALTER SYSTEM",
        "COMMIT;\nALTER SYSTEM SET work_mem = '1GB';\n",
        "ALTER SYSTEM",
    ),
    (
        "ALTER SYSTEM",
        "ALTER/**/SYSTEM SET shared_preload_libraries = 'evil';\n",
        "ALTER SYSTEM",
    ),
    (
        "new roles and groups",
        "CREATE ROLE pwned SUPERUSER LOGIN;\n",
        "CREATE ROLE",
    ),
    (
        "new roles and groups",
        "CREATE/**/ROLE pwned2 SUPERUSER;\n",
        "CREATE ROLE",
    ),
    (
        "new roles and groups",
        "CREATE GROUP pwned_group;\n",
        "CREATE GROUP",
    ),
    (
        "new roles and groups",
        "CREATE USER pwned_user;\n",
        "CREATE USER",
    ),
    (
        "new roles and groups",
        "DO $$ BEGIN EXECUTE 'CREATE ROLE pwned_do SUPERUSER'; END $$;\n",
        "DO",
    ),
    (
        "DROP DATABASE <source>",
        "DROP DATABASE app;\n",
        "DROP DATABASE",
    ),
    (
        "DROP DATABASE <source>",
        "COMMIT;\nDROP DATABASE app;\n",
        "DROP DATABASE",
    ),
    (
        "DROP DATABASE <source>",
        "DROP/**/DATABASE app;\n",
        "DROP DATABASE",
    ),
    (
        "DROP DATABASE <source>",
        "COMMIT;\nCREATE DATABASE evil;\n",
        "CREATE DATABASE",
    ),
    (
        "psql meta-commands",
        "CREATE TABLE t (a int);\nCOPY t (a) FROM stdin;\n1\n\\.\n\\! touch {marker}\n",
        "psql meta-command \\!",
    ),
    (
        "psql meta-commands",
        "\\connect app\nDROP TABLE t;\n",
        "psql meta-command \\connect",
    ),
    (
        "psql meta-commands",
        "SET standard_conforming_strings = off;\nSELECT '\\'';\n\\! touch {marker}\n",
        "psql meta-command \\!",
    ),
    (
        "psql meta-commands",
        "SELECT E'\\'';\n\\! touch {marker}\n",
        "psql meta-command \\!",
    ),
    (
        "$ in identifiers",
        "CREATE TABLE a$b$ (x int);\n\\! touch {marker}\n-- $b$\n",
        "psql meta-command \\!",
    ),
    (
        "$ in identifiers",
        "SELECT 1 AS x$;\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
        "COPY",
    ),
    (
        "server files",
        "SELECT pg_read_file('/etc/hostname');\n",
        "pg_read_file",
    ),
    (
        "server files",
        "SELECT lo_import('/etc/hostname');\n",
        "lo_import",
    ),
    (
        "server files",
        "CREATE TABLE f (a text);\nCOPY f FROM '/etc/hostname';\n",
        "COPY",
    ),
    (
        "taking other roles' rights",
        "SET ROLE postgres;\n",
        "SET ROLE",
    ),
    (
        "taking other roles' rights",
        "SET SESSION AUTHORIZATION postgres;\n",
        "SET SESSION",
    ),
    (
        "taking other roles' rights",
        "RESET ROLE;\nCREATE ROLE pwned_reset SUPERUSER;\n",
        "CREATE ROLE",
    ),
    (
        "taking other roles' rights",
        "GRANT pg_execute_server_program TO CURRENT_USER;\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
        "COPY",
    ),
    (
        "taking other roles' rights",
        "DO $$ BEGIN EXECUTE 'GRANT pg_execute_server_program TO ' || current_user; END $$;\n",
        "DO",
    ),
    (
        "taking other roles' rights",
        "ALTER ROLE CURRENT_USER SUPERUSER;\n",
        "ALTER ROLE",
    ),
    (
        "taking other roles' rights",
        "ALTER ROLE postgres PASSWORD 'owned';\n",
        "ALTER ROLE",
    ),
    (
        "untrusted code",
        "CREATE EXTENSION file_fdw;\n",
        "extension file_fdw",
    ),
    (
        "untrusted code",
        "CREATE FUNCTION evil() RETURNS int LANGUAGE c AS '/tmp/evil.so', 'evil';\n",
        "CREATE FUNCTION",
    ),
    ("untrusted code", "LOAD '/tmp/evil.so';\n", "LOAD"),
    (
        "untrusted code",
        "CREATE SUBSCRIPTION s CONNECTION 'dbname=app' PUBLICATION p WITH (connect = false);\n",
        "CREATE SUBSCRIPTION",
    ),
];

async fn restore_foreign_pg(
    lb: &Lifeboat,
    key: &str,
    database: &str,
) -> lifeboat::Result<lifeboat::pipeline::restore::RestoreReport> {
    let target = lb.postgres_target("app", Some(database), "x").unwrap();
    let mut opts = pg_opts(lb, target);
    opts.for_source = Some("app".into());
    restore_key(lb, key, opts).await
}

/// A cluster with a source database `app`, and a lifeboat whose source `app` is it.
fn pg_world() -> (Cluster, tempfile::TempDir, Lifeboat) {
    let cluster = password_cluster();
    cluster.psql("postgres", "CREATE DATABASE app");
    cluster.psql(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 1000) i;",
    );
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn lifeboat::storage::ObjectStore> =
        Arc::new(lifeboat::storage::LocalStore::open(dir.path().join("bucket")).unwrap());
    let lb = crate::pg::lifeboat(dir.path(), store, &cluster.source_toml("app", "app", ""));
    (cluster, dir, lb)
}

fn assert_refused(err: &Error, needle: &str, what: &str) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{what}: one line: {text}");
    assert!(text.contains(needle), "{what}: {needle:?} not in: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_plain_dumps_run_with_no_rights_beyond_their_scratch_database() {
    let (cluster, _dir, lb) = pg_world();
    let marker = marker();
    let before = untouched(&cluster);
    let mut tally = Tally::default();
    for (i, (class, sql, needle)) in PLAIN_ATTACKS.iter().enumerate() {
        let key = format!("attacks/plain-{i}.sql");
        let text = format!("-- a dump\n{sql}").replace("{marker}", marker.to_str().unwrap());
        put(&lb, &key, text).await;
        let db = format!("atk_plain_{i}");
        let err = restore_foreign_pg(&lb, &key, &db)
            .await
            .expect_err(&format!("{class}: {sql}"));
        assert_refused(&err, needle, sql);
        assert!(!marker.exists(), "{class}: {sql}: a command ran");
        assert_eq!(untouched(&cluster), before, "{class}: {sql}: {err}");
        tally.tried(class, true);
    }

    // A dump may set traps for whoever connects next: a search_path on the database that
    // puts its own functions ahead of the system's. lifeboat counts as the restore role, and
    // resets what the dump set on the database once it is loaded.
    let key = "attacks/plain-trap.sql";
    let trap = "-- a dump\nCREATE TABLE kept (a int);\nINSERT INTO kept VALUES (1);\n\
        CREATE FUNCTION public.trap() RETURNS int LANGUAGE plpgsql AS $$ BEGIN COPY (SELECT 1) TO PROGRAM 'touch {marker}'; RETURN 1; END $$;\n\
        DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = public, pg_catalog', current_database()); END $$;\n\
        CREATE FUNCTION public.hijack(oid, regclass) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN COPY (SELECT 1) TO PROGRAM 'touch {marker}'; RETURN $1 = $2::oid; END $$;\n\
        CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.hijack);\n\
        CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS $$ BEGIN COPY (SELECT 1) TO PROGRAM 'touch {marker}'; RETURN 'x'; END $$;\n"
        .replace("{marker}", marker.to_str().unwrap());
    put(&lb, key, trap).await;
    let report = restore_foreign_pg(&lb, key, "atk_trap").await.unwrap();
    assert_eq!(report.diff.total_restored(), 1);
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'atk_trap'"
        ),
        "0",
        "the dump's settings for later sessions were reset"
    );
    let role = lifeboat::engine::postgres::role::scratch_role_for("atk_trap");
    assert_eq!(
        cluster.psql(
            "postgres",
            &format!(
                "SELECT rolcanlogin::text || rolsuper::text FROM pg_roles WHERE rolname = '{role}'"
            )
        ),
        "falsefalse",
        "the restore role owns the kept database and can no longer log in"
    );
    assert_eq!(
        cluster.psql(
            "atk_trap",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'kept'"
        ),
        role
    );
    assert!(!marker.exists());
    // lifeboat reads the copy again with the server's own login (counts, content checksums,
    // promote's checks): the operator and function the dump planted in `public`, a better
    // match for lifeboat's queries than the built-in ones, must not be what runs.
    let RestoreTarget::Postgres { server, database } = &report.target else {
        unreachable!()
    };
    lifeboat::engine::postgres::fingerprint_database(
        &server.with_dbname(database),
        true,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(!marker.exists(), "a planted operator ran as the admin");
    tally.tried("traps for later sessions (contained)", true);
    // Dropping the scratch database drops its role.
    lb.drop_scratch(&report.target).await.unwrap();
    assert_eq!(untouched(&cluster), before);
    tally.print("PostgreSQL plain SQL restores");
}

/// Replaces the SQL of the first table-of-contents entry of kind `desc` in a custom-format
/// archive that pg_dump wrote to a pipe (no data offsets, so what follows the table of
/// contents is copied as it is): an archive "rewritten" as issue 11 describes.
fn rewrite_toc_entry(archive: &[u8], desc: &str, sql: &str) -> Vec<u8> {
    struct Cursor<'a> {
        b: &'a [u8],
        pos: usize,
        int_size: usize,
    }
    impl Cursor<'_> {
        fn byte(&mut self) -> u8 {
            self.pos += 1;
            self.b[self.pos - 1]
        }
        fn int(&mut self) -> i64 {
            let sign = self.byte();
            let v = (0..self.int_size).fold(0i64, |v, i| v | (i64::from(self.byte()) << (8 * i)));
            if sign != 0 { -v } else { v }
        }
        fn string(&mut self) -> Option<Vec<u8>> {
            let n = self.int();
            if n < 0 {
                return None;
            }
            self.pos += n as usize;
            Some(self.b[self.pos - n as usize..self.pos].to_vec())
        }
    }
    assert_eq!(&archive[..5], b"PGDMP");
    let mut c = Cursor {
        b: archive,
        pos: 5,
        int_size: 4,
    };
    let (_, minor, _) = (c.byte(), c.byte(), c.byte());
    c.int_size = c.byte() as usize;
    let off_size = c.byte() as usize;
    assert_eq!(c.byte(), 1, "custom format");
    if minor >= 15 {
        c.byte();
    } else {
        c.int();
    }
    for _ in 0..7 {
        c.int();
    }
    for _ in 0..3 {
        c.string();
    }
    let entries = c.int();
    let mut out = Vec::new();
    let mut copied = 0;
    let mut done = false;
    for _ in 0..entries {
        c.int();
        c.int();
        for _ in 0..3 {
            c.string();
        }
        let this = c.string().unwrap_or_default();
        c.int();
        let defn_at = c.pos;
        c.string();
        if !done && this == desc.as_bytes() {
            out.extend_from_slice(&archive[copied..defn_at]);
            out.push(0);
            out.extend((0..c.int_size).map(|i| ((sql.len() >> (8 * i)) & 0xff) as u8));
            out.extend_from_slice(sql.as_bytes());
            copied = c.pos;
            done = true;
        }
        for _ in 0..(5 + usize::from(minor >= 14)) {
            c.string();
        }
        while c.string().is_some() {}
        // 1: data not yet located, 3: no data; 2 (located) only in an archive written to a file.
        assert_ne!(c.byte(), 2, "the archive went through a pipe");
        c.pos += off_size;
    }
    assert!(done, "no {desc} entry");
    out.extend_from_slice(&archive[copied..]);
    out
}

fn pg_dump(cluster: &Cluster, db: &str) -> Vec<u8> {
    let out = std::process::Command::new(cluster.bin.join("pg_dump"))
        .args([
            "-h",
            cluster.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "-d",
            db,
            "-Fc",
            "-Z0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_custom_archives_run_with_no_rights_beyond_their_scratch_database() {
    let (cluster, dir, lb) = pg_world();
    let marker = marker();
    let m = marker.to_str().unwrap();
    // Real pg_dump archives whose restore runs code: a materialized view refreshed with a
    // function, an index built on one, an event trigger, an untrusted extension. The
    // functions behave in their own database and attack anywhere else.
    let payload = |tag: &str| {
        format!(
            "IF current_database() NOT LIKE 'src_%' THEN EXECUTE 'CREATE ROLE pwned_{tag} SUPERUSER'; COPY (SELECT 1) TO PROGRAM 'touch {m}'; END IF;"
        )
    };
    for db in ["src_mv", "src_idx", "src_evt", "src_ext", "src_toc"] {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    cluster.psql(
        "src_mv",
        &format!(
            "CREATE FUNCTION evil() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN {} RETURN 1; END $f$;
             CREATE MATERIALIZED VIEW mv AS SELECT evil() AS x;",
            payload("mv")
        ),
    );
    // An index function must be immutable, so it may only read: a server file, then.
    cluster.psql(
        "src_idx",
        "CREATE FUNCTION evil(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN
           IF current_database() NOT LIKE 'src_%' THEN PERFORM pg_read_file('/etc/hostname'); END IF;
           RETURN $1; END $f$;
         CREATE TABLE t (a int); INSERT INTO t VALUES (1); CREATE INDEX ON t (evil(a));",
    );
    cluster.psql(
        "src_evt",
        "CREATE FUNCTION evt() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN RAISE NOTICE 'ddl'; END $f$;
         CREATE EVENT TRIGGER watch ON ddl_command_start EXECUTE FUNCTION evt();",
    );
    cluster.psql(
        "src_ext",
        "CREATE EXTENSION file_fdw; CREATE TABLE t (a int);",
    );
    cluster.psql(
        "src_toc",
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1); COMMENT ON TABLE t IS 'a note';",
    );
    let toc = pg_dump(&cluster, "src_toc");
    let role_toc = rewrite_toc_entry(&toc, "COMMENT", "CREATE ROLE pwned_toc SUPERUSER LOGIN;\n");
    let shell_toc = rewrite_toc_entry(
        &toc,
        "COMMENT",
        &format!("COPY (SELECT 1) TO PROGRAM 'touch {m}';\n"),
    );
    // The rewritten archive is real: pg_restore with the rights lifeboat used to restore
    // with creates the superuser.
    let proof = dir.path().join("proof.dump");
    std::fs::write(&proof, &role_toc).unwrap();
    cluster.psql("postgres", "CREATE DATABASE proof");
    let out = std::process::Command::new(cluster.bin.join("pg_restore"))
        .args([
            "-h",
            cluster.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "-d",
            "proof",
        ])
        .args(["--no-owner", "--no-acl"])
        .arg(&proof)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.psql(
            "postgres",
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'pwned_toc'"
        ),
        "t"
    );
    cluster.psql("postgres", "DROP DATABASE proof");
    cluster.psql("postgres", "DROP ROLE pwned_toc");

    let archives: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "function run by a refresh",
            pg_dump(&cluster, "src_mv"),
            "must be superuser to create superusers",
        ),
        (
            "function run by an index build",
            pg_dump(&cluster, "src_idx"),
            "pg_read_file",
        ),
        (
            "event trigger",
            pg_dump(&cluster, "src_evt"),
            "event trigger",
        ),
        (
            "untrusted extension",
            pg_dump(&cluster, "src_ext"),
            "extension file_fdw",
        ),
        ("rewritten TOC entry", role_toc, "CREATE ROLE"),
        ("rewritten TOC entry", shell_toc, "COPY"),
    ];
    let before = untouched(&cluster);
    let mut tally = Tally::default();
    for (i, (class, bytes, needle)) in archives.into_iter().enumerate() {
        let key = format!("attacks/custom-{i}.dump");
        put(&lb, &key, bytes).await;
        let err = restore_foreign_pg(&lb, &key, &format!("atk_custom_{i}"))
            .await
            .expect_err(class);
        assert_refused(&err, needle, class);
        assert!(
            err.to_string().contains("--privileged"),
            "{class}: names what would allow it: {err}"
        );
        assert!(!marker.exists(), "{class}: a command ran");
        assert_eq!(untouched(&cluster), before, "{class}: {err}");
        tally.tried(class, true);
    }

    // lifeboat's own backups take the same path: a backup of src_mv, restored.
    let lb2 = crate::pg::lifeboat(
        dir.path(),
        lb.store().clone(),
        &cluster.source_toml("mv", "src_mv", ""),
    );
    let (job, m) = lb2
        .backup(
            "mv",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let m = m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error));
    let target = lb2.postgres_target("mv", None, m.id.as_str()).unwrap();
    let err = restore_key(&lb2, m.id.as_str(), pg_opts(&lb2, target))
        .await
        .unwrap_err();
    assert_refused(
        &err,
        "must be superuser to create superusers",
        "lifeboat backup with a refresh trap",
    );
    assert!(!marker.exists());
    assert_eq!(untouched(&cluster), before);
    tally.tried("function run by a refresh", true);
    tally.print("PostgreSQL custom archives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_privileged_restores_are_for_authenticated_backups_only() {
    let cluster = password_cluster();
    cluster.psql("postgres", "CREATE ROLE app_owner");
    cluster.psql("postgres", "CREATE DATABASE ext");
    cluster.psql(
        "ext",
        "CREATE EXTENSION file_fdw; CREATE TABLE t (a int); INSERT INTO t SELECT generate_series(1, 50);
         ALTER TABLE t OWNER TO app_owner;",
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, secret) = Signer::generate().unwrap();
    std::fs::write(dir.path().join("signing.key"), &secret).unwrap();
    let store: Arc<dyn lifeboat::storage::ObjectStore> =
        Arc::new(lifeboat::storage::LocalStore::open(dir.path().join("bucket")).unwrap());
    let lb = crate::pg::lifeboat(
        dir.path(),
        store,
        &format!(
            "[signing]\nkey_file = \"signing.key\"\n{}",
            cluster.source_toml("ext", "ext", "")
        ),
    );
    let (job, m) = lb
        .backup(
            "ext",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let m = m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error));
    assert!(lb.authenticity(&m).is_authenticated());
    let id = m.id.to_string();
    let restore = |database: &str, privileged: bool, force: bool| {
        let lb = lb.clone();
        let id = id.clone();
        let database = database.to_owned();
        async move {
            let target = lb.postgres_target("ext", Some(&database), &id).unwrap();
            let mut opts = pg_opts(&lb, target);
            opts.privileged = privileged;
            opts.force_target = force;
            restore_key(&lb, &id, opts).await
        }
    };

    // Least privilege: the untrusted extension is refused, with what would allow it.
    let err = restore("ext_plain", false, false).await.unwrap_err();
    assert_refused(&err, "extension file_fdw", "least privilege");
    assert!(err.to_string().contains("--privileged"), "{err}");
    assert!(!cluster.databases().contains(&"ext_plain".to_owned()));

    // Authenticated and asked for: the scratch server user's rights, owners kept.
    let report = restore("ext_priv", true, false).await.unwrap();
    assert!(report.diff.all_match());
    assert!(report.authenticity.as_ref().unwrap().is_authenticated());
    assert_eq!(
        cluster.psql(
            "ext_priv",
            "SELECT tableowner FROM pg_tables WHERE tablename = 't'"
        ),
        "app_owner"
    );
    // Not into an existing database, privileged or not: a proven copy replaces one through
    // promote, and the existing one is left as it was.
    cluster.psql("postgres", "CREATE DATABASE taken");
    let err = restore("taken", true, true).await.unwrap_err();
    assert_refused(
        &err,
        "lifeboat promote",
        "privileged over an existing database",
    );
    assert_eq!(
        cluster.psql("taken", "SELECT count(*) FROM pg_class WHERE relname = 't'"),
        "0"
    );

    // The same backup with its signature stripped (and its checksum recomputed): unsigned,
    // so --privileged is refused before anything is downloaded.
    let manifest = dir.path().join(format!("bucket/ext/{id}/manifest.json"));
    common::rewrite_manifest(&manifest, |v| v["integrity"] = serde_json::Value::Null);
    let err = restore("ext_stripped", true, false).await.unwrap_err();
    assert_refused(&err, "only for authenticated backups", "stripped signature");
    assert!(!cluster.databases().contains(&"ext_stripped".to_owned()));
}

/// The scratch server's user need not be a superuser: CREATEDB and CREATEROLE are enough to
/// create the restore role and a database it owns, and to drop both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_scratch_user_without_superuser_rights_restores_and_drops() {
    let cluster = Cluster::start();
    std::fs::write(
        cluster.dir.join("data/pg_hba.conf"),
        "local all postgres,restorer trust\nlocal all all scram-sha-256\n",
    )
    .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()");
    cluster.psql("postgres", "CREATE ROLE restorer LOGIN CREATEDB CREATEROLE");
    cluster.psql("postgres", "CREATE DATABASE app OWNER restorer");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn lifeboat::storage::ObjectStore> =
        Arc::new(lifeboat::storage::LocalStore::open(dir.path().join("bucket")).unwrap());
    let lb = crate::pg::lifeboat(
        dir.path(),
        store,
        &cluster
            .source_toml("app", "app", "")
            .replace("user = \"postgres\"", "user = \"restorer\""),
    );
    put(
        &lb,
        "legacy/app.sql",
        "-- a dump\nSET standard_conforming_strings = on;\nCREATE TABLE items (id int, note text);\nCOPY items (id, note) FROM stdin;\n1\tone\n2\ttwo; with \\\\ a backslash\n\\.\nALTER TABLE items OWNER TO postgres;\nGRANT ALL ON items TO PUBLIC;\n",
    )
    .await;
    let report = restore_foreign_pg(&lb, "legacy/app.sql", "from_plain")
        .await
        .unwrap();
    assert_eq!(report.diff.total_restored(), 2);
    assert_eq!(
        cluster.psql("from_plain", "SELECT note FROM items WHERE id = 2"),
        "two; with \\ a backslash"
    );
    let role = lifeboat::engine::postgres::role::scratch_role_for("from_plain");
    assert_eq!(
        cluster.psql(
            "from_plain",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"
        ),
        role,
        "owners in the dump are left out"
    );
    // The superuser sessions above must be gone: a user that is not a superuser cannot end
    // them, and says so.
    for _ in 0..100 {
        let sessions = cluster.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'from_plain'",
        );
        if sessions == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lb.drop_scratch(&report.target).await.unwrap();
    assert!(!cluster.databases().contains(&"from_plain".to_owned()));
    assert_eq!(
        cluster.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        ),
        "0"
    );
}

/// With keys trusted, backups none of them signed (anyone with a write key can upload
/// some) take no retention slot: a planted newer backup does not push a real one out of
/// `keep_last`. It is kept and labelled for a person to judge.
#[tokio::test(flavor = "multi_thread")]
async fn unsigned_backups_take_no_retention_slot_where_keys_are_trusted() {
    let (world, _) = signing_world();
    let text = std::fs::read_to_string(world.path("lifeboat.toml")).unwrap()
        + "[retention]\nkeep_last = 2\n";
    let lb = lifeboat_with(&world, &text);
    let mut real = Vec::new();
    for _ in 0..2 {
        let (job, m) = lb
            .backup(
                "app",
                lifeboat::manifest::Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await;
        real.push(
            m.unwrap_or_else(|e| panic!("{e}: {:?}", job.error))
                .id
                .to_string(),
        );
    }
    // A planted copy of the newest, dated an hour later, resealed without a signature.
    let newest = &real[1];
    let planted = format!("{}-beef", {
        let t = chrono::NaiveDateTime::parse_from_str(&newest[..16], "%Y%m%dT%H%M%SZ").unwrap();
        (t + chrono::Duration::hours(1)).format("%Y%m%dT%H%M%SZ")
    });
    let from = world.path(&format!("bucket/app/{newest}"));
    let to = world.path(&format!("bucket/app/{planted}"));
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
    common::rewrite_manifest(&to.join("manifest.json"), |v| {
        v["id"] = planted.clone().into();
    });
    let plan = lb
        .prune_plan(&lifeboat::prune::PruneOptions {
            source: Some("app".into()),
            force: false,
            trigger: None,
            only: None,
        })
        .await
        .unwrap();
    let decisions = &plan.sources[0].decisions;
    let kept_real: Vec<&str> = decisions
        .iter()
        .filter(|d| d.keep && d.backup.authentic)
        .map(|d| d.backup.id.as_str())
        .collect();
    assert_eq!(kept_real.len(), 2, "{decisions:#?}");
    let fake = decisions
        .iter()
        .find(|d| d.backup.id == planted)
        .unwrap_or_else(|| panic!("{decisions:#?}"));
    assert!(fake.keep);
    assert_eq!(fake.reasons, [lifeboat::retention::Reason::Unauthenticated]);
}
