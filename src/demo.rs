//! `lifeboat demo`: sample databases and a local bucket with a realistic history, so the
//! console can be tried with no server and no cloud.
//!
//! The history is made by the real backup, verify and restore code; only the clock is moved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use rusqlite::{Connection, params};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::manifest::Trigger;
use crate::pipeline::restore::RestoreOptions;
use crate::progress::NoProgress;
use crate::state::State;
use crate::storage::{LocalStore, ObjectKey, ObjectStoreExt};
use crate::{Lifeboat, Selector};

const MARKER: &str = ".lifeboat-demo";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    /// Replace an earlier demo in the same directory.
    pub force: bool,
    /// Size of the sample data; 1.0 gives tens of thousands of rows.
    pub scale: f64,
    /// Days of history.
    pub days: i64,
}

impl DemoOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DemoOptions {
            dir: dir.into(),
            force: false,
            scale: 1.0,
            days: 120,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub backups: usize,
    pub failed: usize,
    pub jobs: usize,
}

/// A deterministic stream of plausible values.
struct Gen {
    rng: fastrand::Rng,
}

const FIRST: [&str; 16] = [
    "Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Alan", "Edsger",
    "Hedy", "John", "Radia", "Tim", "Sophie", "Niklaus",
];
const LAST: [&str; 16] = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Turing",
    "Dijkstra",
    "Lamarr",
    "Backus",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Wirth",
];
const CITIES: [&str; 10] = [
    "Berlin", "Lisbon", "Oslo", "Dublin", "Austin", "Kyoto", "Nairobi", "Lyon", "Porto", "Toronto",
];
const ADJ: [&str; 10] = [
    "Sturdy", "Compact", "Quiet", "Bright", "Classic", "Foldable", "Smart", "Rugged", "Tiny",
    "Deluxe",
];
const NOUN: [&str; 10] = [
    "Kettle", "Lamp", "Backpack", "Chair", "Keyboard", "Tent", "Mug", "Speaker", "Jacket", "Drone",
];
const STATUS: [&str; 5] = ["pending", "paid", "shipped", "delivered", "refunded"];

impl Gen {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.usize(..items.len())]
    }
    fn name(&mut self) -> String {
        format!("{} {}", self.pick(&FIRST), self.pick(&LAST))
    }
    fn text(&mut self, words: usize) -> String {
        const W: [&str; 12] = [
            "works",
            "great",
            "arrived",
            "late",
            "broke",
            "after",
            "a",
            "week",
            "love",
            "it",
            "would",
            "recommend",
        ];
        (0..words)
            .map(|_| self.pick(&W))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn sql(context: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| Error::Sqlite {
        context: format!("demo database: {context}"),
        source: e,
    }
}

const SHOP_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT NOT NULL, parent_id INTEGER REFERENCES categories(id));
CREATE TABLE products (
    id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories(id), price_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE product_images (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id), mime TEXT NOT NULL, image BLOB NOT NULL);
CREATE TABLE inventory (product_id INTEGER PRIMARY KEY REFERENCES products(id), on_hand INTEGER NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, country TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE addresses (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), line1 TEXT NOT NULL, city TEXT NOT NULL, postcode TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), status TEXT NOT NULL, created_at TEXT NOT NULL, total_cents INTEGER NOT NULL DEFAULT 0);
CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), product_id INTEGER NOT NULL REFERENCES products(id), qty INTEGER NOT NULL, price_cents INTEGER NOT NULL);
CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), method TEXT NOT NULL, amount_cents INTEGER NOT NULL, paid_at TEXT NOT NULL);
CREATE TABLE shipments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id), carrier TEXT NOT NULL, tracking TEXT NOT NULL, shipped_at TEXT NOT NULL);
CREATE TABLE reviews (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id), customer_id INTEGER NOT NULL REFERENCES customers(id), rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5), body TEXT);
CREATE TABLE coupons (code TEXT PRIMARY KEY, percent INTEGER NOT NULL, expires_at TEXT) WITHOUT ROWID;
CREATE TABLE audit_log (id INTEGER PRIMARY KEY, table_name TEXT NOT NULL, row_id INTEGER NOT NULL, action TEXT NOT NULL, at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
-- The index-heavy table: every lookup the analytics team ever asked for.
CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, entity TEXT NOT NULL, entity_id INTEGER NOT NULL, at TEXT NOT NULL, session TEXT, payload TEXT);
CREATE INDEX events_kind ON events(kind);
CREATE INDEX events_entity ON events(entity, entity_id);
CREATE INDEX events_at ON events(at);
CREATE INDEX events_kind_at ON events(kind, at);
CREATE INDEX events_session ON events(session);
CREATE INDEX orders_customer ON orders(customer_id, created_at);
CREATE INDEX order_items_order ON order_items(order_id);
CREATE TRIGGER orders_audit_insert AFTER INSERT ON orders BEGIN
    INSERT INTO audit_log (table_name, row_id, action, at) VALUES ('orders', NEW.id, 'insert', NEW.created_at);
END;
CREATE TRIGGER orders_audit_status AFTER UPDATE OF status ON orders BEGIN
    INSERT INTO audit_log (table_name, row_id, action) VALUES ('orders', NEW.id, 'status:' || NEW.status);
END;
CREATE TRIGGER order_items_stock AFTER INSERT ON order_items BEGIN
    UPDATE inventory SET on_hand = on_hand - NEW.qty WHERE product_id = NEW.product_id;
    UPDATE orders SET total_cents = total_cents + NEW.qty * NEW.price_cents WHERE id = NEW.order_id;
END;
CREATE VIEW order_totals AS
    SELECT o.id, o.customer_id, o.status, sum(i.qty * i.price_cents) AS cents
    FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.id;
CREATE VIEW customer_value AS
    SELECT c.id, c.name, count(o.id) AS orders, coalesce(sum(o.total_cents), 0) AS cents
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id;
CREATE VIEW low_stock AS SELECT p.sku, p.name, i.on_hand FROM products p JOIN inventory i ON i.product_id = p.id WHERE i.on_hand < 20;
";

const AUTH_SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created_at TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE api_tokens (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), name TEXT NOT NULL, token_hash BLOB NOT NULL);
CREATE TABLE login_attempts (id INTEGER PRIMARY KEY, email TEXT NOT NULL, ok INTEGER NOT NULL, at TEXT NOT NULL);
CREATE INDEX login_attempts_email ON login_attempts(email, at);
CREATE VIEW active_sessions AS SELECT * FROM sessions WHERE expires_at > datetime('now');
";

fn scaled(n: f64, scale: f64) -> usize {
    ((n * scale).round() as usize).max(1)
}

fn create_shop(path: &Path, g: &mut Gen, scale: f64, at: DateTime<Utc>) -> Result<()> {
    let mut c = Connection::open(path).map_err(sql("create shop.db"))?;
    c.execute_batch(SHOP_SCHEMA).map_err(sql("shop schema"))?;
    let t = c.transaction().map_err(sql("begin"))?;
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    for i in 1..=40 {
        let parent = if i > 8 { Some(g.rng.i64(1..=8)) } else { None };
        t.execute(
            "INSERT INTO categories VALUES (?1, ?2, ?3)",
            params![i, format!("{} {i}", g.pick(&NOUN)), parent],
        )
        .map_err(sql("categories"))?;
    }
    let products = scaled(800.0, scale);
    for i in 1..=products as i64 {
        let name = format!("{} {}", g.pick(&ADJ), g.pick(&NOUN));
        t.execute(
            "INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                i,
                format!("SKU-{i:06}"),
                name,
                g.rng.i64(1..=40),
                g.rng.i64(199..=49_999),
                ts
            ],
        )
        .map_err(sql("products"))?;
        t.execute(
            "INSERT INTO inventory VALUES (?1, ?2)",
            params![i, g.rng.i64(50..=5000)],
        )
        .map_err(sql("inventory"))?;
    }
    for i in 1..=scaled(120.0, scale) as i64 {
        // Image-like bytes: a repeating header and noise, so they compress like real images do (badly).
        let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
        image.extend((0..g.rng.usize(2_000..8_000)).map(|_| g.rng.u8(..)));
        t.execute(
            "INSERT INTO product_images VALUES (?1, ?2, 'image/png', ?3)",
            params![i, g.rng.i64(1..=products as i64), image],
        )
        .map_err(sql("product_images"))?;
    }
    for code in 0..50 {
        t.execute(
            "INSERT INTO coupons VALUES (?1, ?2, ?3)",
            params![format!("SAVE{code:03}"), g.rng.i64(5..=40), ts],
        )
        .map_err(sql("coupons"))?;
    }
    t.commit().map_err(sql("commit"))?;
    grow_shop(&mut c, g, scale * 1.5, at)
}

/// A day of business: new customers, orders, items, payments, shipments, reviews, events.
fn grow_shop(c: &mut Connection, g: &mut Gen, scale: f64, at: DateTime<Utc>) -> Result<()> {
    let t = c.transaction().map_err(sql("begin"))?;
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let products: i64 = t
        .query_row("SELECT max(id) FROM products", [], |r| r.get(0))
        .map_err(sql("products"))?;
    let first_customer: i64 = t
        .query_row("SELECT coalesce(max(id), 0) + 1 FROM customers", [], |r| {
            r.get(0)
        })
        .map_err(sql("customers"))?;
    let new_customers = scaled(1000.0, scale) as i64;
    for id in first_customer..first_customer + new_customers {
        let name = g.name();
        let email = format!("{}.{id}@example.com", name.to_lowercase().replace(' ', "."));
        t.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                email,
                name,
                g.pick(&["DE", "PT", "NO", "IE", "US", "JP", "KE", "FR", "CA"]),
                ts
            ],
        )
        .map_err(sql("customers"))?;
        t.execute(
            "INSERT INTO addresses (customer_id, line1, city, postcode) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                format!("{} Main St", g.rng.u32(1..999)),
                g.pick(&CITIES),
                format!("{:05}", g.rng.u32(..99_999))
            ],
        )
        .map_err(sql("addresses"))?;
    }
    let customers = first_customer + new_customers - 1;
    for _ in 0..scaled(3000.0, scale) {
        let customer = g.rng.i64(1..=customers);
        t.execute(
            "INSERT INTO orders (customer_id, status, created_at) VALUES (?1, ?2, ?3)",
            params![customer, g.pick(&STATUS), ts],
        )
        .map_err(sql("orders"))?;
        let order = t.last_insert_rowid();
        for _ in 0..g.rng.usize(1..=4) {
            t.execute(
                "INSERT INTO order_items (order_id, product_id, qty, price_cents) VALUES (?1, ?2, ?3, ?4)",
                params![order, g.rng.i64(1..=products), g.rng.i64(1..=3), g.rng.i64(199..=49_999)],
            )
            .map_err(sql("order_items"))?;
        }
        if g.rng.f32() < 0.9 {
            t.execute(
                "INSERT INTO payments (order_id, method, amount_cents, paid_at) SELECT id, ?2, total_cents, ?3 FROM orders WHERE id = ?1",
                params![order, g.pick(&["card", "paypal", "invoice", "sepa"]), ts],
            )
            .map_err(sql("payments"))?;
        }
        if g.rng.f32() < 0.8 {
            t.execute(
                "INSERT INTO shipments (order_id, carrier, tracking, shipped_at) VALUES (?1, ?2, ?3, ?4)",
                params![order, g.pick(&["DHL", "UPS", "PostNL", "FedEx"]), format!("TRK{:012}", g.rng.u64(..1_000_000_000_000)), ts],
            )
            .map_err(sql("shipments"))?;
        }
        if g.rng.f32() < 0.25 {
            let words = g.rng.usize(3..20);
            let body = g.text(words);
            t.execute(
                "INSERT INTO reviews (product_id, customer_id, rating, body) VALUES (?1, ?2, ?3, ?4)",
                params![g.rng.i64(1..=products), customer, g.rng.i64(1..=5), body],
            )
            .map_err(sql("reviews"))?;
        }
        for _ in 0..g.rng.usize(1..=3) {
            let kind = g.pick(&["view", "cart", "checkout", "search", "click"]);
            let payload = format!(
                r#"{{"ua":"Mozilla/5.0","ref":"/p/{}"}}"#,
                g.rng.i64(1..=products)
            );
            t.execute(
                "INSERT INTO events (kind, entity, entity_id, at, session, payload) VALUES (?1, 'order', ?2, ?3, ?4, ?5)",
                params![kind, order, ts, format!("s{:08x}", g.rng.u32(..)), payload],
            )
            .map_err(sql("events"))?;
        }
    }
    // Orders move along; the status trigger writes the audit log.
    t.execute(
        "UPDATE orders SET status = 'delivered' WHERE status = 'shipped' AND id % 7 = ?1",
        [g.rng.i64(0..7)],
    )
    .map_err(sql("order status"))?;
    t.commit().map_err(sql("commit"))
}

fn create_auth(path: &Path, g: &mut Gen, scale: f64, at: DateTime<Utc>) -> Result<()> {
    let mut c = Connection::open(path).map_err(sql("create auth.db"))?;
    c.execute_batch(AUTH_SCHEMA).map_err(sql("auth schema"))?;
    let t = c.transaction().map_err(sql("begin"))?;
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    for id in 1..=scaled(2000.0, scale) as i64 {
        let hash = format!("$argon2id$v=19$m=65536,t=3,p=4${:016x}", g.rng.u64(..));
        t.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, 0)",
            params![id, format!("user{id}@example.com"), hash, ts],
        )
        .map_err(sql("users"))?;
    }
    t.commit().map_err(sql("commit"))?;
    grow_auth(&mut c, g, scale, at)
}

fn grow_auth(c: &mut Connection, g: &mut Gen, scale: f64, at: DateTime<Utc>) -> Result<()> {
    let t = c.transaction().map_err(sql("begin"))?;
    let ts = at.format("%Y-%m-%d %H:%M:%S").to_string();
    let expires = (at + Duration::days(14))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let users: i64 = t
        .query_row("SELECT max(id) FROM users", [], |r| r.get(0))
        .map_err(sql("users"))?;
    t.execute("DELETE FROM sessions WHERE expires_at < ?1", [&ts])
        .map_err(sql("expire sessions"))?;
    for _ in 0..scaled(400.0, scale) {
        t.execute(
            "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4)",
            params![
                format!("{:016x}{:016x}", g.rng.u64(..), g.rng.u64(..)),
                g.rng.i64(1..=users),
                ts,
                expires
            ],
        )
        .map_err(sql("sessions"))?;
    }
    for _ in 0..scaled(600.0, scale) {
        t.execute(
            "INSERT INTO login_attempts (email, ok, at) VALUES (?1, ?2, ?3)",
            params![
                format!("user{}@example.com", g.rng.i64(1..=users)),
                g.rng.f32() < 0.93,
                ts
            ],
        )
        .map_err(sql("login_attempts"))?;
    }
    if g.rng.f32() < 0.3 {
        let token: Vec<u8> = (0..32).map(|_| g.rng.u8(..)).collect();
        t.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash) VALUES (?1, 'ci', ?2)",
            params![g.rng.i64(1..=users), token],
        )
        .map_err(sql("api_tokens"))?;
    }
    t.commit().map_err(sql("commit"))
}

/// A SQL text dump, as a cron script running `sqlite3 app.db .dump | gzip` would have left.
fn sql_dump(path: &Path) -> Result<String> {
    let c = Connection::open(path).map_err(sql("open for dump"))?;
    let mut out = String::from("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    let objects: Vec<(String, String, String)> = c
        .prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'table' DESC, rowid")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(sql("schema"))?;
    for (kind, name, create) in &objects {
        out.push_str(create);
        out.push_str(";\n");
        if kind != "table" {
            continue;
        }
        let cols: Vec<String> = c
            .prepare(&format!(
                "SELECT name FROM pragma_table_info({})",
                crate::engine::quote_ident(name).replace('"', "'")
            ))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql("columns"))?;
        let values = cols
            .iter()
            .map(|col| format!("quote({})", crate::engine::quote_ident(col)))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let q = format!("SELECT {values} FROM {}", crate::engine::quote_ident(name));
        let rows: Vec<String> = c
            .prepare(&q)
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql("rows"))?;
        for row in rows {
            out.push_str(&format!(
                "INSERT INTO {} VALUES({row});\n",
                crate::engine::quote_ident(name)
            ));
        }
    }
    out.push_str("COMMIT;\n");
    Ok(out)
}

fn config_text() -> String {
    r#"# The lifeboat demo: two sample SQLite databases and a directory playing the bucket.
[storage]
type = "local"
path = "bucket"

[state]
path = "state.db"

[backup]
compression_level = 3

[restore]
scratch_dir = "restores"

# What `lifeboat prune` would keep (try the console's Retention tab and its what-if editor).
[retention]
keep_last = 3
keep_daily = 14
keep_weekly = 8
keep_monthly = 6

[[source]]
name = "shop"
engine = "sqlite"
path = "shop.db"
rpo = "26h"
drill_interval = "90d"

# What `lifeboat daemon` would run (see `lifeboat schedule`).
[source.schedule]
backup = "0 2 * * *"
verify = "30 4 * * 0"
drill = "0 3 1 */3 *"

[[source]]
name = "auth"
engine = "sqlite"
path = "auth.db"
rpo = "26h"

[source.schedule]
backup = "15 2 * * *"
"#
    .to_owned()
}

/// Refuses a directory that holds anything but an earlier demo (and that only with `force`).
pub fn check_dir(opts: &DemoOptions) -> Result<()> {
    let dir = &opts.dir;
    let is_demo = dir.join(MARKER).exists();
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io(format!("read {}", dir.display()))(e)),
    };
    if empty || (opts.force && is_demo) {
        return Ok(());
    }
    let hint = if is_demo {
        " or pass --force to rebuild this demo"
    } else {
        ""
    };
    Err(Error::Invalid(format!(
        "{} already exists and is not empty; choose another --dir{hint}",
        dir.display()
    )))
}

/// Builds the demo directory and its history.
pub async fn create(opts: &DemoOptions) -> Result<DemoSummary> {
    check_dir(opts)?;
    let dir = &opts.dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io(format!("remove {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(Error::io(format!("resolve {}", dir.display())))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `lifeboat demo`; safe to delete\n",
    )
    .map_err(Error::io("write demo marker"))?;
    let config_path = dir.join(crate::config::FILE_NAME);
    std::fs::write(&config_path, config_text()).map_err(Error::io("write demo config"))?;
    let config = Config::load(&config_path)?;

    let now = Clock::from_env().map_err(Error::Invalid)?.now();
    let start = (now - Duration::days(opts.days))
        .duration_trunc(Duration::days(1))
        .expect("whole days")
        + Duration::hours(2);
    let clock = Clock::starting_at(start);
    let store = Arc::new(LocalStore::open(dir.join("bucket"))?);
    let state = State::open(&config.state_path())?;
    let lb = Lifeboat::with_parts(config, store.clone(), state, clock.clone());

    let mut g = Gen {
        rng: fastrand::Rng::with_seed(0x11feb0a7),
    };
    let (shop, auth) = (dir.join("shop.db"), dir.join("auth.db"));
    create_shop(&shop, &mut g, opts.scale, start - Duration::days(400))?;
    create_auth(&auth, &mut g, opts.scale, start - Duration::days(400))?;

    let mut summary = DemoSummary {
        dir: dir.clone(),
        config: config_path,
        backups: 0,
        failed: 0,
        jobs: 0,
    };
    let mut shop_conn = Connection::open(&shop).map_err(sql("open shop.db"))?;
    let mut auth_conn = Connection::open(&auth).map_err(sql("open auth.db"))?;
    let failing_day = opts.days * 2 / 3;
    let verify_days = [opts.days / 2, opts.days - 3];
    for day in 0..opts.days {
        let morning = start + Duration::days(day);
        let recent = opts.days - day <= 14;
        grow_shop(
            &mut shop_conn,
            &mut g,
            opts.scale * 0.02,
            morning - Duration::hours(3),
        )?;
        grow_auth(
            &mut auth_conn,
            &mut g,
            opts.scale * 0.05,
            morning - Duration::hours(3),
        )?;
        // Older history was weekly; the last two weeks are daily, as after a policy change.
        if recent || day % 7 == 0 {
            clock.set(morning + Duration::minutes(g.rng.i64(0..4)));
            summary.backups += backup(&lb, "shop", Trigger::Scheduled).await?;
        }
        if recent || day % 7 == 3 {
            clock.set(morning + Duration::minutes(15 + g.rng.i64(0..4)));
            if day == failing_day {
                // The volume holding auth.db was unmounted that night: a real failed job.
                let away = dir.join("auth.db.unmounted");
                std::fs::rename(&auth, &away).map_err(Error::io("demo: move auth.db"))?;
                let ok = backup(&lb, "auth", Trigger::Scheduled).await?;
                std::fs::rename(&away, &auth).map_err(Error::io("demo: restore auth.db"))?;
                summary.failed += 1 - ok;
            } else {
                summary.backups += backup(&lb, "auth", Trigger::Scheduled).await?;
            }
        }
        if verify_days.contains(&day) {
            clock.set(morning + Duration::hours(5));
            let catalog = lb.catalog().await?;
            if let Some(b) = catalog.complete().find(|b| b.source == "shop") {
                let (_, r) = lb
                    .verify(b, Arc::new(NoProgress), CancellationToken::new())
                    .await;
                r?;
            }
        }
        // The quarterly restore drill of shop, its report kept in the bucket.
        if day + 40 == opts.days {
            clock.set(morning + Duration::hours(1));
            let drill = crate::drill::DrillOptions {
                source: Some("shop".into()),
                save_report: true,
                ..Default::default()
            };
            let (_, r) = lb
                .drill(&drill, Arc::new(NoProgress), CancellationToken::new())
                .await?;
            r?;
        }
    }
    // Today: a few manual backups during the day, and a restore check of auth.
    for hours in [8, 13] {
        let t = (now - Duration::hours(24 - hours)).max(clock.now() + Duration::minutes(1));
        if t < now {
            clock.set(t);
            grow_shop(&mut shop_conn, &mut g, opts.scale * 0.005, t)?;
            summary.backups += backup(&lb, "shop", Trigger::Manual).await?;
        }
    }
    clock.set(now - Duration::minutes(50));
    let catalog = lb.catalog().await?;
    let from = lb.select(
        &catalog,
        &Selector::Latest {
            source: Some("auth".into()),
        },
    )?;
    let scratch = tempfile::tempdir_in(&dir).map_err(Error::io("demo scratch dir"))?;
    let restore_opts = RestoreOptions {
        target: scratch.path().join("auth-restore-check.db").into(),
        for_source: None,
        force_target: false,
        live: Some(auth.clone().into()),
        integrity_check: true,
        drill: false,
        staging: lb.staging(),
        privileged: false,
    };
    let (_, r) = lb
        .restore(
            from,
            restore_opts,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    r?;
    drop(scratch);

    // Closing checkpoints the WAL, so the files below are whole databases.
    drop((shop_conn, auth_conn));
    // An old cron script's leftovers, from before lifeboat.
    let legacy_time = start - Duration::days(20);
    let dump = sql_dump(&auth)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, dump.as_bytes()).map_err(Error::io("gzip"))?;
    let gz = gz.finish().map_err(Error::io("gzip"))?;
    let key = ObjectKey::new(format!(
        "legacy/auth-{}.sql.gz",
        legacy_time.format("%Y-%m-%dT%H-%M-%S")
    ))?;
    store.put_bytes(&key, gz.into()).await?;
    let db_copy = std::fs::read(&shop).map_err(Error::io("read shop.db"))?;
    let key = ObjectKey::new(format!(
        "legacy/shop_{}.db",
        (legacy_time - Duration::days(7)).format("%Y%m%d_%H%M%S")
    ))?;
    store.put_bytes(&key, db_copy.into()).await?;

    summary.jobs = lb.jobs()?.len();
    Ok(summary)
}

async fn backup(lb: &Lifeboat, source: &str, trigger: Trigger) -> Result<usize> {
    let (job, result) = lb
        .backup(
            source,
            trigger,
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await;
    match result {
        Ok(_) => Ok(1),
        // The demo's one planned failure is a missing database file; anything else is a bug.
        Err(Error::Io { .. })
            if job
                .error
                .as_deref()
                .is_some_and(|e| e.contains("cannot open")) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}
