//! PostgreSQL end to end, against throwaway clusters (initdb + pg_ctl in a temp dir, socket
//! only). As root the server binaries run as the `postgres` user; clients may stay root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::jobs::JobStatus;
use lifeboat::manifest::{EngineKind, Trigger};
use lifeboat::pipeline::restore::{RestoreFrom, RestoreOptions, RestoreTarget};
use lifeboat::progress::{NoProgress, Phase, Progress};
use lifeboat::state::State;
use lifeboat::storage::{LocalStore, ObjectStore};
use lifeboat::{Error, Lifeboat, Selector};
use tokio_util::sync::CancellationToken;

use crate::common::S3Server;

const PORT: u16 = 5432;

/// The newest installed server binaries, or a clear failure: these tests must not skip.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").is_file());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install the `postgresql` package (scripts/test does it as root)"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A running throwaway cluster, stopped and removed on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
    /// With TLS: the CA that signed the server's certificate (for `localhost` only).
    pub cert: Option<PathBuf>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// `tls`: also listen on 127.0.0.1 (a free port), TLS required there, with a self-signed
    /// certificate for `localhost`.
    pub fn start_with(tls: bool) -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-pgtest.")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {} to postgres", dir.display());
        }
        let port = if tls {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            PORT
        };
        let mut cluster = Cluster {
            dir,
            bin,
            port,
            cert: None,
        };
        let data = cluster.dir.join("data");
        cluster.server(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        // One role must type its password; everyone else is trusted on the socket.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all lifeboat_pw scram-sha-256\nlocal all all trust\n\
             hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses='' -c fsync=off -c max_connections=40",
            cluster.dir.display()
        );
        if tls {
            // A CA, and a server certificate for `localhost` signed by it.
            let (crt, key) = (data.join("server.crt"), data.join("server.key"));
            let (ca, ca_key) = (cluster.dir.join("root.crt"), cluster.dir.join("ca.key"));
            let csr = cluster.dir.join("server.csr");
            let ext = cluster.dir.join("server.ext");
            std::fs::write(
                &ext,
                "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            let openssl = |args: &[&std::ffi::OsStr]| {
                let out = Command::new("openssl")
                    .args(args)
                    .output()
                    .expect("the openssl CLI (scripts/test installs it)");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let os = |s: &'static str| std::ffi::OsStr::new(s);
            openssl(&[
                os("req"),
                os("-x509"),
                os("-newkey"),
                os("rsa:2048"),
                os("-nodes"),
                os("-days"),
                os("2"),
                os("-subj"),
                os("/CN=lifeboat test CA"),
                os("-keyout"),
                ca_key.as_os_str(),
                os("-out"),
                ca.as_os_str(),
            ]);
            openssl(&[
                os("req"),
                os("-newkey"),
                os("rsa:2048"),
                os("-nodes"),
                os("-subj"),
                os("/CN=localhost"),
                os("-keyout"),
                key.as_os_str(),
                os("-out"),
                csr.as_os_str(),
            ]);
            openssl(&[
                os("x509"),
                os("-req"),
                os("-in"),
                csr.as_os_str(),
                os("-CA"),
                ca.as_os_str(),
                os("-CAkey"),
                ca_key.as_os_str(),
                os("-CAcreateserial"),
                os("-days"),
                os("2"),
                os("-extfile"),
                ext.as_os_str(),
                os("-out"),
                crt.as_os_str(),
            ]);
            if is_root() {
                Command::new("chown")
                    .arg("postgres:postgres")
                    .args([&crt, &key])
                    .status()
                    .unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
            cluster.cert = Some(ca);
            opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key -c fsync=off -c max_connections=40",
                cluster.dir.display()
            );
        }
        let log = cluster.dir.join("server.log");
        cluster.server(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "-o",
                &opts,
                "start",
            ],
        );
        cluster
    }

    /// Runs a server binary, as `postgres` when we are root.
    fn server(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let out = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs SQL through psql and returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                self.dir.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn databases(&self) -> Vec<String> {
        self.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn client_conn(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// A `[[source]]` table for database `db`; `extra` adds lines.
    pub fn source_toml(&self, name: &str, db: &str, extra: &str) -> String {
        format!(
            "[[source]]\nname = \"{name}\"\nengine = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\ndatabase = \"{db}\"\n{extra}\n",
            self.dir.display(),
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.server_quiet(&[
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    fn server_quiet(&self, args: &[&str]) -> std::io::Result<Output> {
        let path = self.bin.join("pg_ctl");
        if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        }
    }
}

/// A lifeboat whose sources are given as TOML, over `store`.
pub(crate) fn lifeboat(dir: &Path, store: Arc<dyn ObjectStore>, sources: &str) -> Lifeboat {
    let text = format!(
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n{sources}"
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::parse(&text, &path).unwrap();
    let state = State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, Clock::system())
}

/// A schema with more than toy features, and enough rows that a dump takes a while.
pub(crate) const SCHEMA: &str = r#"
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE SCHEMA billing;
CREATE SCHEMA "Odd Schema";
CREATE TYPE billing.status AS ENUM ('new', 'paid', 'void');
CREATE TYPE billing.amount AS (value numeric(12,2), currency char(3));
CREATE SEQUENCE billing.invoice_no START 1000;
CREATE TABLE billing.customers (
  id bigserial PRIMARY KEY, name citext NOT NULL, tags text[], attrs hstore, profile jsonb, avatar bytea);
CREATE TABLE billing.invoices (
  id bigint PRIMARY KEY DEFAULT nextval('billing.invoice_no'),
  customer_id bigint REFERENCES billing.customers(id), status billing.status NOT NULL DEFAULT 'new',
  total billing.amount, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE billing.audit (id bigserial PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION billing.audit_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO billing.audit (what) VALUES ('invoice ' || NEW.id || '; status ' || NEW.status); RETURN NEW; END $$;
CREATE TRIGGER invoices_audit AFTER INSERT ON billing.invoices FOR EACH ROW EXECUTE FUNCTION billing.audit_invoice();
CREATE TABLE billing.events (id bigserial, at date NOT NULL, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE billing.events_2025 PARTITION OF billing.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE billing.events_2026 PARTITION OF billing.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW billing.paid AS SELECT * FROM billing.invoices WHERE status = 'paid';
CREATE MATERIALIZED VIEW billing.per_customer AS SELECT customer_id, count(*) AS n FROM billing.invoices GROUP BY 1;
CREATE TABLE "Odd Schema"."Mixed ""Case""" (k int, "semi;colon" text);
CREATE TABLE public.writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), body text);
INSERT INTO billing.customers (name, tags, attrs, profile, avatar)
  SELECT 'Customer ' || i, ARRAY['t' || (i % 7), 'it''s; fine'], hstore('tier', (i % 3)::text),
         jsonb_build_object('i', i, 'nested', jsonb_build_array(i, 'x')), decode(md5(i::text), 'hex')
  FROM generate_series(1, 5000) i;
INSERT INTO billing.invoices (customer_id, status, total)
  SELECT 1 + i % 5000, (ARRAY['new','paid','void'])[1 + i % 3]::billing.status, ROW(i * 1.25, 'EUR')::billing.amount
  FROM generate_series(1, 40000) i;
INSERT INTO billing.events (at, payload)
  SELECT DATE '2025-06-01' + (i % 400), jsonb_build_object('n', i, 'text', repeat('event ', 10))
  FROM generate_series(1, 60000) i;
INSERT INTO "Odd Schema"."Mixed ""Case""" SELECT i, 'a;b' FROM generate_series(1, 10) i;
INSERT INTO public.writes (body) SELECT repeat('w', 100) FROM generate_series(1, 20000);
REFRESH MATERIALIZED VIEW billing.per_customer;
SELECT lo_from_bytea(0, convert_to('large object ' || i, 'UTF8')) FROM generate_series(1, 5) i;
"#;

fn count_map(tables: &[lifeboat::manifest::TableCount]) -> std::collections::BTreeMap<String, u64> {
    tables.iter().map(|t| (t.name.clone(), t.rows)).collect()
}

async fn latest(lb: &Lifeboat) -> RestoreFrom {
    let catalog = lb.catalog().await.unwrap();
    lb.select(&catalog, &Selector::Latest { source: None })
        .unwrap()
}

pub(crate) fn pg_opts(lb: &Lifeboat, target: RestoreTarget) -> RestoreOptions {
    RestoreOptions {
        target,
        for_source: None,
        force_target: false,
        live: None,
        integrity_check: false,
        drill: false,
        staging: lb.staging(),
        privileged: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_backup_under_writes_restores_with_exact_counts() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE shop");
    cluster.psql("shop", SCHEMA);
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Content checksums on (a `[backup]` key ahead of the source): taken in the dump's
    // snapshot while the writer below goes on, they must match the restore exactly.
    let lb = lifeboat(
        dir.path(),
        s3.store("pg").await,
        &format!(
            "content_checksums = true\n{}",
            cluster.source_toml("shop", "shop", "")
        ),
    );

    // A writer keeps inserting, in many small transactions, for the whole backup.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let conn = cluster.client_conn("shop");
        tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute(
                        "BEGIN; INSERT INTO public.writes (body) VALUES ('during');
                         INSERT INTO billing.invoices (customer_id, status, total) VALUES (1, 'paid', ROW(1, 'EUR')::billing.amount);
                         INSERT INTO billing.events (at, payload) VALUES ('2026-02-01', '{}'); COMMIT;",
                    )
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let writes_before: u64 = cluster
        .psql("shop", "SELECT count(*) FROM writes")
        .parse()
        .unwrap();
    let (job, result) = lb
        .backup(
            "shop",
            Trigger::Manual,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let writes_after: u64 = cluster
        .psql("shop", "SELECT count(*) FROM writes")
        .parse()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let manifest = result.unwrap();
    assert!(
        written > 0 && writes_after > writes_before,
        "the writer wrote during the backup"
    );

    // The manifest: engine facts, schema-qualified tables, leaf partitions, large objects.
    assert_eq!(manifest.source.engine, EngineKind::Postgres);
    assert_eq!(manifest.source.database, "shop");
    assert!(
        manifest.source.server_version.starts_with("15"),
        "{}",
        manifest.source.server_version
    );
    let pg = manifest.postgres.as_ref().expect("postgres details");
    assert!(
        pg.pg_dump_version.starts_with("15"),
        "{}",
        pg.pg_dump_version
    );
    assert!(
        pg.schemas.contains(&"billing".to_owned()) && pg.schemas.contains(&"Odd Schema".to_owned())
    );
    let exts: Vec<&str> = pg.extensions.iter().map(|e| e.name.as_str()).collect();
    assert!(
        exts.contains(&"hstore") && exts.contains(&"citext"),
        "{exts:?}"
    );
    let counts = count_map(&manifest.tables);
    let names: Vec<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            r#""Odd Schema"."Mixed ""Case""""#,
            "billing.audit",
            "billing.customers",
            "billing.events_2025",
            "billing.events_2026",
            "billing.invoices",
            "pg_catalog.pg_largeobject_metadata",
            "public.writes",
        ]
    );
    let summed: Vec<&str> = manifest
        .content_checksums
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(summed, names);
    assert_eq!(counts["billing.customers"], 5000);
    assert_eq!(counts["pg_catalog.pg_largeobject_metadata"], 5);
    assert_eq!(counts[r#""Odd Schema"."Mixed ""Case""""#], 10);
    // Counted in the dump's snapshot, while writes went on: between before and after, and the
    // trigger's audit rows agree with the invoices of the same instant.
    let w = counts["public.writes"];
    assert!(
        writes_before <= w && w < writes_after,
        "rows written after the snapshot are neither counted nor dumped: {writes_before} <= {w} < {writes_after}"
    );
    assert_eq!(counts["billing.audit"], counts["billing.invoices"]);
    assert_eq!(counts["billing.invoices"] - 40000, w - 20000);

    // Restore into a generated scratch database, with the live source as a third column.
    let from = latest(&lb).await;
    let RestoreFrom::Backup(b) = &from else {
        panic!("a backup")
    };
    let target = lb.postgres_target("shop", None, b.id.as_str()).unwrap();
    let RestoreTarget::Postgres { database, .. } = &target else {
        panic!()
    };
    assert!(database.starts_with("lifeboat_restore_"), "{database}");
    let database = database.clone();
    let mut opts = pg_opts(&lb, target.clone());
    opts.live = Some(lb.live_source("shop").unwrap());
    let (job, result) = lb
        .restore(from, opts, Arc::new(NoProgress), CancellationToken::new())
        .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let report = result.unwrap();
    assert!(report.checksum_verified);
    assert!(report.diff.all_match(), "{:#?}", report.diff);
    assert_eq!(report.diff.rows.len(), manifest.tables.len());
    for row in &report.diff.rows {
        assert_eq!(row.restored, Some(counts[&row.table]), "{}", row.table);
        assert!(
            row.live.is_some_and(|l| l >= counts[&row.table]),
            "{}",
            row.table
        );
    }
    // The restored database is a working copy: types, extensions, sequences, views, LOs.
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT status FROM billing.invoices WHERE id = 1000"
        ),
        "paid"
    );
    assert_eq!(
        cluster.psql(&database, "SELECT attrs -> 'tier', profile -> 'nested' ->> 1, tags[2], name = 'CUSTOMER 7' FROM billing.customers WHERE id = 7"),
        "1|x|it's; fine|t"
    );
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT sum(n) = (SELECT count(*) FROM billing.invoices) FROM billing.per_customer"
        ),
        "t"
    );
    assert_eq!(
        cluster.psql(
            &database,
            "SELECT convert_from(lo_get(min(oid)), 'UTF8') FROM pg_largeobject_metadata"
        ),
        "large object 1"
    );
    let next: u64 = cluster
        .psql(&database, "SELECT nextval('billing.invoice_no')")
        .parse()
        .unwrap();
    assert!(next > 1000 + 40000 - 1);
    assert_ne!(
        cluster.psql(&database, "SELECT count(*) FROM billing.paid"),
        "0"
    );

    // A second restore to the same name is refused; the scratch database can be dropped.
    let again = latest(&lb).await;
    let (_, result) = lb
        .restore(
            again,
            pg_opts(&lb, target.clone()),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::DatabaseExists(_))),
        "{result:?}"
    );
    lb.drop_scratch(&target).await.unwrap();
    assert!(!cluster.databases().contains(&database));
    drop(s3);
}

/// Cancels the job as soon as a phase starts.
struct CancelAt(Phase, CancellationToken);

impl Progress for CancelAt {
    fn phase(&self, phase: Phase, _total: Option<u64>) {
        if phase == self.0 {
            self.1.cancel();
        }
    }
    fn advance(&self, _done: u64) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_refuses_what_it_must_and_says_why() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE app");
    cluster.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);
         CREATE ROLE lifeboat_pw LOGIN PASSWORD 'right-password'; GRANT SELECT ON t TO lifeboat_pw;",
    );
    // A pg_dump too old for the server, and one that fails after writing some bytes.
    let old = tempfile::tempdir().unwrap();
    let fake = |dir: &Path, version: &str| {
        let path = dir.join("pg_dump");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) {version}'; exit 0; fi\necho 'PGDMP partial'\necho 'pg_dump: error: query failed: simulated' >&2\nexit 1\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    fake(old.path(), "14.9");
    let broken = tempfile::tempdir().unwrap();
    fake(broken.path(), "15.99");
    // A wrong password from a variable that is always set (setting one would race with the
    // other tests' threads reading the environment).
    let wrong_password = std::env::var("PATH").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let sources = [
        cluster.source_toml("app", "app", ""),
        cluster
            .source_toml("wrongpw", "app", "password_env = \"PATH\"")
            .replace("user = \"postgres\"", "user = \"lifeboat_pw\""),
        cluster.source_toml(
            "old",
            "app",
            &format!("bin_dir = \"{}\"", old.path().display()),
        ),
        cluster.source_toml(
            "broken",
            "app",
            &format!("bin_dir = \"{}\"", broken.path().display()),
        ),
    ]
    .concat();
    let lb = lifeboat(dir.path(), store, &sources);
    let backup = |name: &'static str| {
        let lb = lb.clone();
        async move {
            lb.backup(
                name,
                Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await
        }
    };

    let (job, result) = backup("wrongpw").await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("password authentication failed for user \"lifeboat_pw\""),
        "{err}"
    );
    assert!(!err.contains(&wrong_password), "{err}");
    let record = serde_json::to_string(&job).unwrap();
    assert!(!record.contains(&wrong_password), "{record}");
    assert_eq!(job.status, JobStatus::Failed);

    let err = backup("old").await.1.unwrap_err().to_string();
    assert!(
        err.contains("server runs PostgreSQL 15") && err.contains("14.9"),
        "{err}"
    );

    let (job, result) = backup("broken").await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("pg_dump failed") && err.contains("simulated"),
        "{err}"
    );
    assert_eq!(job.status, JobStatus::Failed);
    let catalog = lb.catalog().await.unwrap();
    assert!(
        catalog.backups.iter().all(|b| b.source != "broken"),
        "a failed dump left no backup"
    );

    // A good backup to restore.
    let (job, result) = backup("app").await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    let id = result.unwrap().id.to_string();

    // Scratch names are validated before anything runs.
    for bad in ["x\"; DROP DATABASE app; --", "App", "a b", "1x"] {
        assert!(
            matches!(
                lb.postgres_target("app", Some(bad), &id),
                Err(Error::Invalid(_))
            ),
            "{bad}"
        );
    }
    // The source itself, and any existing database, need --force-target.
    let from = latest_of(&lb, "app").await;
    let source_db = lb.postgres_target("app", Some("app"), &id).unwrap();
    let (_, result) = lb
        .restore(
            from.clone(),
            pg_opts(&lb, source_db),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::DatabaseIsSource(_))),
        "{result:?}"
    );
    cluster.psql("postgres", "CREATE DATABASE taken");
    let taken = lb.postgres_target("app", Some("taken"), &id).unwrap();
    let (_, result) = lb
        .restore(
            from.clone(),
            pg_opts(&lb, taken.clone()),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(result, Err(Error::DatabaseExists(_))),
        "{result:?}"
    );
    // Forced or not, a restore never loads an existing database (promote replaces one with
    // a proven copy instead).
    let mut forced = pg_opts(&lb, taken);
    forced.force_target = true;
    let (_, result) = lb
        .restore(
            from.clone(),
            forced,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(_)) && err.to_string().contains("lifeboat promote"),
        "{err:?}"
    );
    assert_eq!(
        cluster.psql("taken", "SELECT count(*) FROM pg_class WHERE relname = 't'"),
        "0"
    );

    // Before PostgreSQL 13 there is no DROP DATABASE ... WITH (FORCE): the sessions still in
    // the database are ended first (run here on whatever server the tests have).
    cluster.psql("postgres", "CREATE DATABASE busy");
    let RestoreTarget::Postgres { server, .. } = lb.postgres_target("app", None, &id).unwrap()
    else {
        panic!("a PostgreSQL source restores into PostgreSQL")
    };
    let session = server.with_dbname("busy").connect().await.unwrap();
    session.batch_execute("SELECT 1").await.unwrap();
    let admin = server.with_dbname("postgres").connect().await.unwrap();
    lifeboat::engine::postgres::drop_with(&admin, "busy", false)
        .await
        .unwrap();
    assert!(!cluster.databases().contains(&"busy".to_owned()));

    // Cancelled while loading or counting: the scratch database it created is gone.
    for phase in [Phase::Load, Phase::Count] {
        let cancel = CancellationToken::new();
        let target = lb.postgres_target("app", None, &id).unwrap();
        let (job, result) = lb
            .restore(
                from.clone(),
                pg_opts(&lb, target),
                Arc::new(CancelAt(phase, cancel.clone())),
                cancel,
            )
            .await;
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "{phase:?}: {result:?}"
        );
        assert_ne!(job.status, JobStatus::Succeeded);
        let dbs = cluster.databases();
        assert!(
            dbs.iter().all(|d| !d.starts_with("lifeboat_restore_")),
            "{dbs:?}"
        );
    }
}

async fn latest_of(lb: &Lifeboat, source: &str) -> RestoreFrom {
    let catalog = lb.catalog().await.unwrap();
    lb.select(
        &catalog,
        &Selector::Latest {
            source: Some(source.into()),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cli_restores_backups_and_foreign_dumps() {
    use crate::cli::{lifeboat as binary, run};
    use lifeboat::storage::{ObjectKey, ObjectStoreExt};

    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE app");
    cluster.psql(
        "app",
        "CREATE SCHEMA s; CREATE TABLE s.items (id int PRIMARY KEY, tags text[], doc jsonb);
         INSERT INTO s.items SELECT i, ARRAY['a;b'], '{\"k\": 1}' FROM generate_series(1, 321) i;
         SELECT lo_from_bytea(0, 'blob');",
    );
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n{}",
            cluster.source_toml("app", "app", "")
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = binary(home.path());
        c.arg("--config").arg(&config).arg("--quiet").args(args);
        c
    };

    let out = run(cmd(&["backup", "app", "--json"])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let backups: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = backups.to_string();
    let id = id
        .split('"')
        .find(|s| s.len() == 21 && s.as_bytes()[8] == b'T')
        .expect("a backup id in the JSON")
        .to_owned();
    let out = run(cmd(&["show", &id])).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("engine    postgres 15"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("pg_dump   15"), "{}", out.stdout);
    assert!(out.stdout.contains("extensions plpgsql"), "{}", out.stdout);

    // By hand, as docs/restore-by-hand.md says: zstd -d, pg_restore.
    let data = home.path().join(format!("bucket/app/{id}/data.pgdump.zst"));
    let plain = home.path().join("by-hand.dump");
    let ok = Command::new("zstd")
        .args(["-q", "-d"])
        .arg(&data)
        .arg("-o")
        .arg(&plain)
        .status()
        .expect("the zstd CLI (scripts/test installs it)")
        .success();
    assert!(ok);
    cluster.psql("postgres", "CREATE DATABASE by_hand");
    let out = Command::new(cluster.bin.join("pg_restore"))
        .args([
            "-h",
            cluster.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "-d",
            "by_hand",
        ])
        .args(["--no-owner", "--no-acl", "-j", "2"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.psql("by_hand", "SELECT count(*) FROM s.items"),
        "321"
    );

    let out = run(cmd(&[
        "restore", "latest", "--source", "app", "--json", "--drop",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let text = report.to_string();
    assert!(text.contains("lifeboat_restore_"), "{text}");
    assert!(text.contains("s.items") && text.contains("321"), "{text}");
    assert!(
        cluster
            .databases()
            .iter()
            .all(|d| !d.starts_with("lifeboat_restore_")),
        "--drop dropped the scratch database"
    );

    // Dumps another script wrote: custom format, and plain SQL gzipped.
    let dump = |args: &[&str]| {
        let out = Command::new(cluster.bin.join("pg_dump"))
            .args([
                "-h",
                cluster.dir.to_str().unwrap(),
                "-U",
                "postgres",
                "-d",
                "app",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let custom = dump(&["-Fc"]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &dump(&["-Fp"])).unwrap();
    let plain_gz = gz.finish().unwrap();
    let store = LocalStore::open(home.path().join("bucket")).unwrap();
    for (key, bytes) in [
        ("imports/app-20261120.dump", custom),
        ("imports/app-20261120.sql.gz", plain_gz),
    ] {
        store
            .put_bytes(&ObjectKey::new(key.to_owned()).unwrap(), bytes.into())
            .await
            .unwrap();
    }
    let out = run(cmd(&["restore", "imports/app-20261120.dump", "--to", "x"])).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--source"), "{}", out.stderr);
    for (key, db) in [
        ("imports/app-20261120.dump", "from_custom"),
        ("imports/app-20261120.sql.gz", "from_plain"),
    ] {
        let out = run(cmd(&["restore", key, "--source", "app", "--to", db])).await;
        assert_eq!(out.code, 0, "{key}: {}{}", out.stdout, out.stderr);
        assert_eq!(cluster.psql(db, "SELECT count(*) FROM s.items"), "321");
        assert_eq!(
            cluster.psql(db, "SELECT count(*) FROM pg_largeobject_metadata"),
            "1"
        );
        assert!(out.stdout.contains("s.items"), "{}", out.stdout);
    }
    // --drop drops only what the restore created, never a replaced database like the source.
    let out = run(cmd(&[
        "restore",
        "latest",
        "--source",
        "app",
        "--to",
        "app",
        "--force-target",
        "app",
        "--drop",
    ]))
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--force-target"), "{}", out.stderr);
    assert!(cluster.databases().contains(&"app".to_owned()));

    // A foreign dump named for a source is guarded like its backups: not over the source.
    let out = run(cmd(&[
        "restore",
        "imports/app-20261120.dump",
        "--source",
        "app",
        "--to",
        "app",
    ]))
    .await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("is the source database itself"),
        "{}",
        out.stderr
    );

    // A script that would drop and recreate the source is refused by the server (the restore
    // role owns nothing else); one that would run a shell never runs it (nothing runs psql).
    let mut create = dump(&["-Fp", "--clean", "--create"]);
    create.extend_from_slice(b"\nSELECT 1;\n");
    for (key, bytes, why) in [
        (
            "imports/create.sql",
            create,
            "DROP DATABASE at line 21: DROP DATABASE cannot run inside a transaction block",
        ),
        (
            "imports/shell.sql",
            b"SELECT 1;\n\\! touch /tmp/lifeboat-owned\nCREATE TABLE t (a int);\n".to_vec(),
            "line 2: psql meta-command \\!",
        ),
    ] {
        store
            .put_bytes(&ObjectKey::new(key.to_owned()).unwrap(), bytes.into())
            .await
            .unwrap();
        let out = run(cmd(&["restore", key, "--source", "app", "--to", "evil"])).await;
        assert_ne!(out.code, 0, "{key}: {}", out.stdout);
        assert!(out.stderr.contains(why), "{key}: {}", out.stderr);
        let databases = cluster.databases();
        assert!(databases.contains(&"app".to_owned()), "{databases:?}");
        assert!(!databases.contains(&"evil".to_owned()), "{databases:?}");
        assert_eq!(cluster.psql("app", "SELECT count(*) FROM s.items"), "321");
    }
    assert!(!Path::new("/tmp/lifeboat-owned").exists());

    // Injection in a typed name is refused before anything runs.
    let out = run(cmd(&[
        "restore",
        "latest",
        "--source",
        "app",
        "--to",
        "x; DROP DATABASE app",
    ]))
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not allowed"), "{}", out.stderr);
    assert!(cluster.databases().contains(&"app".to_owned()));
}

#[test]
fn pg_archive_offsets_are_recorded_like_pg_dump_does_for_files() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE o");
    cluster.psql(
        "o",
        "CREATE TABLE a (x int, t text); INSERT INTO a SELECT i, repeat('x', i % 50) FROM generate_series(1, 20000) i;
         CREATE TABLE b (y jsonb); INSERT INTO b SELECT jsonb_build_object('i', i) FROM generate_series(1, 5000) i;
         CREATE TABLE empty (z int); SELECT lo_from_bytea(0, 'lo');",
    );
    let dir = tempfile::tempdir().unwrap();
    let dump = |extra: &[&str]| {
        let out = Command::new(cluster.bin.join("pg_dump"))
            .args([
                "-h",
                cluster.dir.to_str().unwrap(),
                "-U",
                "postgres",
                "-d",
                "o",
            ])
            .args(["-Fc", "-Z0"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    // Written to a pipe (stdout), and to a file, where pg_dump records the offsets itself.
    let piped = dir.path().join("piped.dump");
    std::fs::write(&piped, dump(&[])).unwrap();
    let file = dir.path().join("file.dump");
    dump(&["-f", file.to_str().unwrap()]);
    let before = std::fs::read(&piped).unwrap();
    let n = lifeboat::engine::postgres::toc::add_offsets(&piped).unwrap();
    assert_eq!(n, 4, "a, b, empty and the large objects have data blocks");
    let (patched, reference) = (
        std::fs::read(&piped).unwrap(),
        std::fs::read(&file).unwrap(),
    );
    assert_eq!(patched.len(), reference.len());
    // Identical but for the creation time in the header.
    let differ: Vec<usize> = (0..patched.len())
        .filter(|&i| patched[i] != reference[i])
        .collect();
    assert!(differ.iter().all(|&i| i < 64), "{differ:?}");
    assert_ne!(before, patched);
    // A file that already has them is left alone.
    assert_eq!(
        lifeboat::engine::postgres::toc::add_offsets(&file).unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tls_follows_sslmode_for_lifeboat_and_the_tools() {
    let cluster = Cluster::start_with(true);
    cluster.psql("postgres", "CREATE DATABASE app");
    cluster.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 77);",
    );
    let cert = cluster.cert.clone().unwrap();
    let tcp = |name: &str, host: &str, mode: &str, root: bool| {
        let root = if root {
            format!("&sslrootcert={}", cert.display())
        } else {
            String::new()
        };
        format!(
            "[[source]]\nname = \"{name}\"\nengine = \"postgres\"\nurl = \"postgres://postgres@{host}:{}/app?sslmode={mode}{root}\"\n",
            cluster.port
        )
    };
    let sources = [
        tcp("full", "localhost", "verify-full", true),
        tcp("ca", "127.0.0.1", "verify-ca", true),
        tcp("wrongname", "127.0.0.1", "verify-full", true),
        tcp("require", "localhost", "require", false),
        tcp("plain", "localhost", "disable", false),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
    let lb = lifeboat(dir.path(), store, &sources);
    let backup = |name: &'static str| {
        let lb = lb.clone();
        async move {
            lb.backup(
                name,
                Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await
            .1
        }
    };
    // Encrypted and verified, by lifeboat and by pg_dump alike.
    for name in ["full", "ca", "require"] {
        let m = backup(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(count_map(&m.tables)["public.t"], 77, "{name}");
    }
    let err = backup("wrongname").await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect") && err.to_lowercase().contains("name"),
        "{err}"
    );
    let err = backup("plain").await.unwrap_err().to_string();
    assert!(
        err.contains("no encryption") || err.contains("pg_hba.conf"),
        "{err}"
    );

    // A restore over TLS: the scratch database on the same server.
    let from = latest_of(&lb, "full").await;
    let RestoreFrom::Backup(b) = &from else {
        panic!("a backup")
    };
    let target = lb.postgres_target("full", None, b.id.as_str()).unwrap();
    let (job, result) = lb
        .restore(
            from,
            pg_opts(&lb, target),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
    assert!(result.unwrap().diff.all_match());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_content_checksums_catch_a_changed_value_with_the_right_counts() {
    use crate::cli::{lifeboat as binary, run};
    use lifeboat::diff::RowStatus;
    use sha2::Digest;

    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE sums");
    // Defaults that change how values print. The scratch database has none of them: only
    // text forms pinned on both connections give equal sums.
    cluster.psql(
        "postgres",
        "ALTER DATABASE sums SET TimeZone = 'Pacific/Chatham';
         ALTER DATABASE sums SET DateStyle = 'SQL, DMY';
         ALTER DATABASE sums SET IntervalStyle = 'sql_standard';
         ALTER DATABASE sums SET extra_float_digits = -2;
         ALTER DATABASE sums SET bytea_output = 'escape';",
    );
    cluster.psql(
        "sums",
        r"CREATE SCHEMA s;
         CREATE TABLE s.kinds (id int PRIMARY KEY, at timestamptz, d date, span interval,
           f float8, r real, b bytea, n numeric, note text, tags text[], doc jsonb);
         INSERT INTO s.kinds SELECT i, timestamptz '2026-03-29 01:30:00+00' + i * interval '67 min',
           date '2026-01-01' + i, i * interval '1 day 2 hours 3.5 seconds', i / 3.0::float8,
           i / 7.0::real, decode(md5(i::text), 'hex'), i / 9.0, E'tab\there\nline\\' || i,
           ARRAY['a b', NULL], jsonb_build_object('i', i)
           FROM generate_series(1, 3000) i;
         CREATE TABLE s.items (id int PRIMARY KEY, gone int, name text,
           twice int GENERATED ALWAYS AS (id * 2) STORED);
         ALTER TABLE s.items DROP COLUMN gone;
         INSERT INTO s.items (id, name) SELECT i, 'item ' || i FROM generate_series(1, 500) i;
         -- The dump recreates the child with its parent's columns first: (a, b, z, c).
         CREATE TABLE s.parent (a int, b text);
         CREATE TABLE s.child (c text) INHERITS (s.parent);
         ALTER TABLE s.parent ADD COLUMN z int;
         INSERT INTO s.child (a, b, c, z) SELECT i, 'b', 'c' || i, -i FROM generate_series(1, 50) i;
         INSERT INTO s.parent SELECT i, 'p', i FROM generate_series(1, 5) i;
         SELECT lo_from_bytea(0, convert_to('large object ' || i, 'UTF8')) FROM generate_series(1, 3) i;",
    );
    let home = tempfile::tempdir().unwrap();
    let config_path = home.path().join("lifeboat.toml");
    let text = format!(
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ncontent_checksums = true\n{}",
        cluster.source_toml("sums", "sums", "")
    );
    std::fs::write(&config_path, &text).unwrap();
    let lb = Lifeboat::open(Config::parse(&text, &config_path).unwrap())
        .await
        .unwrap();
    let backup = async || {
        let (job, m) = lb
            .backup(
                "sums",
                Trigger::Manual,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await;
        assert_eq!(job.status, JobStatus::Succeeded, "{:?}", job.error);
        m.unwrap()
    };
    let restore = async |id: &str, database: &str| {
        let catalog = lb.catalog().await.unwrap();
        let from = lb.select(&catalog, &Selector::Id(id.to_owned())).unwrap();
        let target = lb.postgres_target("sums", Some(database), id).unwrap();
        lb.restore(
            from,
            pg_opts(&lb, target),
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await
    };

    // Every counted table has a sum, taken in the dump's snapshot.
    let a = backup().await;
    let mut names: Vec<&String> = a.tables.iter().map(|t| &t.name).collect();
    names.sort();
    let summed: Vec<&String> = a.content_checksums.keys().collect();
    assert_eq!(summed, names);
    assert_eq!(
        names,
        [
            "pg_catalog.pg_largeobject_metadata",
            "s.child",
            "s.items",
            "s.kinds",
            "s.parent"
        ]
    );
    assert!(
        a.content_checksums
            .values()
            .all(|s| s.len() == 16 && s != "0000000000000000"),
        "{:?}",
        a.content_checksums
    );

    // (a) A faithful restore into a database without the source's settings: all match.
    let (job, report) = restore(a.id.as_str(), "sums_good").await;
    let report = report.unwrap();
    assert!(report.diff.all_match(), "{:#?}", report.diff);
    assert!(
        job.log
            .iter()
            .any(|l| l.message == "content checksums compared for 5 tables"),
        "{:?}",
        job.log
    );

    // One value changes on the source, every count stays: only that table's sum moves.
    cluster.psql("sums", "UPDATE s.kinds SET note = 'changed' WHERE id = 7");
    let b = backup().await;
    assert_eq!(count_map(&a.tables), count_map(&b.tables));
    for (table, sum) in &a.content_checksums {
        assert_eq!(
            b.content_checksums[table] != *sum,
            table == "s.kinds",
            "{table}"
        );
    }

    // (b) Backup a's object replaced by backup b's, re-sealed so that the stored bytes
    // verify: counts match, and only the content checksum tells.
    let dir_a = home.path().join(format!("bucket/sums/{}", a.id));
    let data_b = std::fs::read(
        home.path()
            .join(format!("bucket/sums/{}/{}", b.id, b.data.key)),
    )
    .unwrap();
    std::fs::write(dir_a.join(&a.data.key), &data_b).unwrap();
    let manifest_path = dir_a.join("manifest.json");
    crate::common::rewrite_manifest(&manifest_path, |v| {
        v["data"]["sha256"] = format!("{:x}", sha2::Sha256::digest(&data_b)).into();
        v["data"]["stored_bytes"] = data_b.len().into();
    });

    let (_, r) = restore(a.id.as_str(), "sums_changed").await;
    let Err(Error::RowCountMismatch(report)) = r else {
        panic!("a changed value must fail the restore: {r:?}");
    };
    let findings: Vec<_> = report.diff.findings().collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].table, "s.kinds");
    assert_eq!(findings[0].status, RowStatus::ContentMismatch);
    assert_eq!(findings[0].expected, findings[0].restored, "counts match");

    // The command line says so and exits 1.
    let mut cmd = binary(home.path());
    cmd.arg("--config")
        .arg(&config_path)
        .args(["restore", a.id.as_str(), "--to", "sums_cli"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("s.kinds"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("CONTENT DIFFERS"), "{}", out.stdout);
    assert!(
        !out.stdout
            .lines()
            .any(|l| l.contains("CONTENT DIFFERS") && !l.contains("s.kinds")),
        "{}",
        out.stdout
    );
}
