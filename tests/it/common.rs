//! Real parts for the tests: an S3 protocol server in-process, SQLite databases on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::config::Credentials;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use lifeboat::Lifeboat;
use lifeboat::clock::Clock;
use lifeboat::config::Config;
use lifeboat::state::State;
use lifeboat::storage::{LocalStore, ObjectStore, S3Options, S3Store};
use rusqlite::Connection;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "lifeboat-test-key";
/// A recognisable secret: tests grep every artefact for it.
pub const SECRET_KEY: &str = "s3cr3t-Zq9vXw7LmN4pR2tY8uK6";
pub const BUCKET: &str = "backups";

/// An S3 server over a temp directory, listening on 127.0.0.1.
pub struct S3Server {
    pub endpoint: String,
    pub dir: TempDir,
    task: tokio::task::JoinHandle<()>,
    /// Every request the server answered, as (operation, key), oldest first.
    requests: Requests,
}

type Requests = Arc<std::sync::Mutex<Vec<(String, String)>>>;

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a real S3 endpoint checks and s3s-fs leaves out: the bucket must exist (s3s-fs would
/// create it on the first upload). With `deny_writes`, also a bucket policy that denies
/// uploads under a key prefix. Requests without valid credentials are refused, as by default.
struct Policy {
    root: PathBuf,
    deny_writes: Option<String>,
    requests: Requests,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Policy {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        use s3s::path::S3Path;
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        let bucket = match cx.s3_path() {
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket),
            S3Path::Root => None,
        };
        let key = match cx.s3_path() {
            S3Path::Object { key, .. } => key.to_string(),
            _ => String::new(),
        };
        self.requests
            .lock()
            .unwrap()
            .push((cx.s3_op().name().to_owned(), key));
        if let Some(bucket) = bucket
            && !self.root.join(&**bucket).is_dir()
        {
            return Err(s3s::s3_error!(NoSuchBucket));
        }
        let writes = matches!(
            cx.s3_op().name(),
            "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload"
        );
        match (cx.s3_path(), &self.deny_writes) {
            (S3Path::Object { key, .. }, Some(prefix))
                if writes && key.starts_with(prefix.as_str()) =>
            {
                Err(s3s::s3_error!(
                    AccessDenied,
                    "writes under this prefix are denied by policy"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl S3Server {
    pub async fn start() -> S3Server {
        Self::start_with(None).await
    }

    /// A server whose policy denies writes to keys starting with `prefix`.
    pub async fn start_denying_writes(prefix: &str) -> S3Server {
        Self::start_with(Some(prefix.to_owned())).await
    }

    async fn start_with(deny_writes: Option<String>) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let requests = Requests::default();
        builder.set_access(Policy {
            root: dir.path().to_path_buf(),
            deny_writes,
            requests: requests.clone(),
        });
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server {
            endpoint,
            dir,
            task,
            requests,
        }
    }

    /// How many `op` requests (`GetObject`, `ListObjectsV2`...) were for keys that
    /// `matches` accepts, since the last [`S3Server::clear_requests`].
    pub fn requests(&self, op: &str, matches: impl Fn(&str) -> bool) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, k)| o == op && matches(k))
            .count()
    }

    pub fn clear_requests(&self) {
        self.requests.lock().unwrap().clear();
    }

    pub fn options(&self, prefix: &str) -> S3Options {
        let mut o = S3Options::new(BUCKET);
        o.prefix = prefix.to_owned();
        o.endpoint = Some(self.endpoint.clone());
        o.region = Some("us-east-1".into());
        o.force_path_style = true;
        o.part_size = 5 * 1024 * 1024;
        o.max_attempts = 2;
        o.credentials = Some(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"));
        o
    }

    pub async fn store(&self, prefix: &str) -> Arc<dyn ObjectStore> {
        Arc::new(S3Store::connect(self.options(prefix)).await)
    }

    /// Where the server keeps an object's bytes.
    pub fn object_path(&self, full_key: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(full_key)
    }

    /// A config file for the binary pointing at this server.
    pub fn config_toml(&self, prefix: &str) -> String {
        format!(
            "[storage]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\nforce_path_style = true\nregion = \"us-east-1\"\npart_size_mib = 5\nmax_attempts = 2\n",
            self.endpoint
        )
    }
}

/// A throwaway world: a directory with a database, a state DB and a config.
pub struct World {
    pub dir: TempDir,
    pub lb: Lifeboat,
}

impl World {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A world whose source `app` is a sample database and whose store is given.
    pub fn new(store: Arc<dyn ObjectStore>) -> World {
        let dir = tempfile::tempdir().unwrap();
        make_sample_db(&dir.path().join("app.db"), 1);
        let lb = lifeboat_for(dir.path(), store);
        World { dir, lb }
    }

    pub fn local() -> World {
        let dir = tempfile::tempdir().unwrap();
        make_sample_db(&dir.path().join("app.db"), 1);
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalStore::open(dir.path().join("bucket")).unwrap());
        let lb = lifeboat_for(dir.path(), store);
        World { dir, lb }
    }
}

pub fn config_for(dir: &Path, storage: &str) -> Config {
    let text = format!(
        "{storage}\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n"
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, &text).unwrap();
    Config::parse(&text, &path).unwrap()
}

pub fn lifeboat_for(dir: &Path, store: Arc<dyn ObjectStore>) -> Lifeboat {
    let config = config_for(dir, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let state = State::open(&config.state_path()).unwrap();
    Lifeboat::with_parts(config, store, state, Clock::system())
}

/// A database with more than toy features: foreign keys, a trigger, a view, an index, BLOBs,
/// text with quotes and semicolons, a WITHOUT ROWID table. `scale` multiplies row counts.
pub fn make_sample_db(path: &Path, scale: usize) {
    let mut c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), cents INTEGER, at TEXT);
         CREATE INDEX orders_customer ON orders(customer_id);
         CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
         CREATE TABLE tags (tag TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
         CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit (what) VALUES ('order ' || NEW.id); END;
         CREATE VIEW big_orders AS SELECT * FROM orders WHERE cents > 5000;",
    )
    .unwrap();
    let t = c.transaction().unwrap();
    for i in 0..(500 * scale) as i64 {
        t.execute(
            "INSERT INTO customers (name, note) VALUES (?1, ?2)",
            rusqlite::params![format!("customer {i}"), "it's; fine"],
        )
        .unwrap();
    }
    for i in 0..(2000 * scale) as i64 {
        t.execute(
            "INSERT INTO orders (customer_id, cents, at) VALUES (?1, ?2, '2026-11-01')",
            rusqlite::params![i % 500 + 1, i * 7 % 10_000],
        )
        .unwrap();
    }
    for i in 0..20 {
        let data: Vec<u8> = (0..4096).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        t.execute("INSERT INTO blobs (data) VALUES (?1)", [data])
            .unwrap();
    }
    for i in 0..30 {
        t.execute(
            "INSERT INTO tags VALUES (?1, ?2)",
            rusqlite::params![format!("tag{i}"), i],
        )
        .unwrap();
    }
    t.commit().unwrap();
}

/// Adds incompressible data so a backup spans several multipart parts.
pub fn add_random_blobs(path: &Path, mib: usize) {
    let c = Connection::open(path).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..mib * 4 {
        let data: Vec<u8> = (0..256 * 1024).map(|_| rng.u8(..)).collect();
        c.execute("INSERT INTO blobs (data) VALUES (?1)", [data])
            .unwrap();
    }
}

/// An order-independent digest of every table's content, to compare two databases.
pub fn content_digest(path: &Path) -> Vec<(String, String)> {
    let c = Connection::open(path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.sort();
            (
                t,
                format!("{}:{}", rows.len(), rows.join("\n").len()) + &sha(&rows.join("\n")),
            )
        })
        .collect()
}

fn sha(s: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(s.as_bytes()))
}

pub fn count(path: &Path, table: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap()
}

/// Rewrites a manifest file as a writer that recorded these values would have (its checksum
/// of itself recomputed, unsigned): the test is then about what the manifest says, which only
/// the data can contradict, not about an edit, which the checksum catches.
pub fn rewrite_manifest(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    let mut m: lifeboat::manifest::Manifest = serde_json::from_value(v).unwrap();
    m.seal(None);
    std::fs::write(path, m.to_json()).unwrap();
}

/// Every file under `dir`, read whole.
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
