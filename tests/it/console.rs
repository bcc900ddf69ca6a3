//! The console driven as a person would: in a real terminal (tmux), keys in, screen out.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached 100×30 terminal running `script`, on a tmux server of its own (`name`).
    pub fn start(name: &str, script: &str) -> Tmux {
        Self::start_sized(name, script, 100, 30)
    }

    /// A detached `width`×`height` terminal running `script`.
    pub fn start_sized(name: &str, script: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("lifeboat-{name}-{}", std::process::id()),
        };
        let started = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "lb", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(script)
            .status()
            .expect("tmux is installed (scripts/test installs it)");
        assert!(started.success());
        tmux
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "lb"])
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(
                self.cmd()
                    .args(["send-keys", "-t", "lb", k])
                    .status()
                    .unwrap()
                    .success()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {text:?}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[test]
fn demo_then_the_wizard_to_a_finished_restore() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let script = format!(
        "cd {dir} && HOME={dir} {bin} demo --scale 0.05 --dir {demo}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        demo = demo.display()
    );
    let tmux = Tmux::start("test", &script);

    // `lifeboat demo` in a terminal ends in the console.
    tmux.wait_for("1 Catalog", Duration::from_secs(180));
    tmux.wait_for("complete", Duration::from_secs(30));

    // Back up shop from the catalog: the new backup shows up at the top.
    tmux.keys(&["b", "Enter"]);
    tmux.wait_for(" of shop done", Duration::from_secs(60));

    tmux.keys(&["4"]);
    tmux.wait_for("Which database?", Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    tmux.wait_for("at or before", Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    tmux.wait_for("check      ✔", Duration::from_secs(30));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("OK: all 14 tables match", Duration::from_secs(60));
    for table in ["orders", "order_items", "customers"] {
        let line = screen
            .lines()
            .find(|l| l.contains(&format!("│{table} ")))
            .unwrap_or_else(|| panic!("{table} row missing:\n{screen}"));
        assert!(line.contains(" ok"), "{line}");
    }
    // Keep the scratch database, then quit: the shell gets its terminal back.
    tmux.keys(&["Enter", "q"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(10));

    let restored: Vec<_> = std::fs::read_dir(demo.join("restores"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert!(
        restored[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("shop-")
    );
    assert_restorable(&restored[0]);
}

fn assert_restorable(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0);
}

/// Two stores: the catalog's COPIES column and a header line per store, in a real terminal.
#[test]
fn the_console_shows_copies_and_each_store() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::make_sample_db(&dir.path().join("app.db"), 1);
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        "[[store]]\nname = \"primary\"\ntype = \"local\"\npath = \"hot\"\n\
         [[store]]\nname = \"offsite\"\ntype = \"local\"\npath = \"offsite\"\n\
         [state]\npath = \"state.db\"\n\
         [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("lifeboat-copies-{}", std::process::id()),
    };
    let script = format!(
        "cd {dir} && export HOME={dir} LIFEBOAT_NOW=2026-11-23T02:00:00Z; {bin} --config {config} backup app \
         && LIFEBOAT_NOW=2026-11-23T03:00:00Z {bin} --config {config}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = config.display()
    );
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "lb", "-x", "100", "-y", "30"])
        .arg(script)
        .status()
        .expect("tmux is installed (scripts/test installs it)");
    assert!(started.success());
    let screen = tmux.wait_for("COPIES", Duration::from_secs(60));
    let screen = if screen.contains("2/2") {
        screen
    } else {
        tmux.wait_for("2/2", Duration::from_secs(30))
    };
    for store in ["store primary", "store offsite"] {
        let line = screen
            .lines()
            .find(|l| l.contains(store))
            .unwrap_or_else(|| panic!("no line for {store}:\n{screen}"));
        assert!(
            line.contains("● ok") && line.contains("1 copy (1 verified)"),
            "{line}"
        );
    }
    let row = screen
        .lines()
        .find(|l| l.contains("│2026112"))
        .unwrap_or_else(|| panic!("{screen}"));
    assert!(row.contains(" 2/2 "), "{row}");
    // The detail pane names each store's copy.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("copies 2/2", Duration::from_secs(10));
    assert!(
        screen.contains("primary  verified") && screen.contains("offsite  verified"),
        "{screen}"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(10));
}

/// The wizard's last step: a proven copy put in place of its source, after typing the
/// source's name; the old file stays beside it.
#[test]
fn the_wizard_promotes_a_proven_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    crate::common::make_sample_db(&db, 1);
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n\
         [restore]\nscratch_dir = \"restores\"\n\
         [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("lifeboat-promote-{}", std::process::id()),
    };
    // Backed up, then damaged: 1,900 of the 2,000 orders lost.
    let backup = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(&config)
        .args(["backup", "app"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("LIFEBOAT_NOW", "2026-11-23T02:00:00Z")
        .output()
        .unwrap();
    assert!(backup.status.success(), "{backup:?}");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DELETE FROM orders WHERE id > 100")
        .unwrap();
    let script = format!(
        "cd {dir} && export HOME={dir} LIFEBOAT_NOW=2026-11-23T03:00:00Z; {bin} --config {config}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = config.display()
    );
    let started = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "lb", "-x", "100", "-y", "30"])
        .arg(script)
        .status()
        .expect("tmux is installed (scripts/test installs it)");
    assert!(started.success());
    tmux.wait_for("1 Catalog", Duration::from_secs(60));
    tmux.keys(&["4"]);
    tmux.wait_for("Which database?", Duration::from_secs(5));
    tmux.keys(&["Enter", "Enter"]);
    tmux.wait_for("check      ✔", Duration::from_secs(30));
    tmux.keys(&["Enter"]);
    tmux.wait_for("OK: all 5 tables match", Duration::from_secs(60));
    tmux.wait_for(
        "P promotes this proven copy in place of app",
        Duration::from_secs(5),
    );
    tmux.keys(&["P"]);
    tmux.wait_for("Type the source's name (app)", Duration::from_secs(5));
    // A wrong name does nothing.
    tmux.keys(&["a", "p", "Enter"]);
    tmux.wait_for("type the source's name, app", Duration::from_secs(5));
    assert_eq!(sqlite_count(&db, "orders"), 100);
    tmux.keys(&["p", "Enter"]);
    let screen = tmux.wait_for("PROMOTED", Duration::from_secs(30));
    assert!(screen.contains("kept as"), "{screen}");
    tmux.keys(&["Enter", "q"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(10));

    assert_eq!(sqlite_count(&db, "orders"), 2000);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("app_before_20261123T03")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(sqlite_count(&kept[0], "orders"), 100);
    // The scratch copy moved into place.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("restores"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn sqlite_count(path: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// One backup of `app` at `at` (LIFEBOAT_NOW) through the binary.
fn backup_at(dir: &Path, config: &Path, source: &str, at: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(config)
        .args(["backup", source])
        .current_dir(dir)
        .env("HOME", dir)
        .env("LIFEBOAT_NOW", at)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// 3 a.m.: "restore what we had before 09:40". The time is typed as the engineer says it, in
/// the local zone (Europe/Berlin, UTC+1 in November), in an 80x24 terminal, and the newest
/// good backup before it is restored and proven in at most 10 keys.
#[test]
fn the_incident_path_with_a_typed_local_time() {
    incident_path(
        ["2026-11-23T06:00:00Z", "2026-11-23T08:00:00Z"],
        &["0", "9", ":", "4", "0"],
        "= 2026-11-23 09:40 +01:00",
    );
}

/// The same a week earlier, as a full date: PgUp moves the date a week back (↑ a day), the
/// time of day is typed, and it still takes at most 10 keys.
#[test]
fn the_incident_path_with_a_full_date_from_the_day_picker() {
    incident_path(
        ["2026-11-16T06:00:00Z", "2026-11-16T08:00:00Z"],
        &["PageUp", "0", "9", "4", "0"],
        "= 2026-11-16 09:40 +01:00",
    );
}

/// Backups at 07:00 and 09:00 Berlin on one day (`times`), then one at 11:00 on 2026-11-23,
/// the console's today; `typed` names 09:40 on the first day, which the wizard shows as
/// `understood`, and the restored copy must be the 09:00 backup's.
fn incident_path(times: [&str; 2], typed: &[&str], understood: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    crate::common::make_sample_db(&db, 1);
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n\
         [restore]\nscratch_dir = \"restores\"\n\
         [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
    )
    .unwrap();
    // The orders table shrinks between backups, so the restored copy says which backup it
    // came from.
    let mut orders = Vec::new();
    for (at, keep) in [
        (times[0], 1500),
        (times[1], 1000),
        ("2026-11-23T10:00:00Z", 0),
    ] {
        backup_at(dir.path(), &config, "app", at);
        orders.push(sqlite_count(&db, "orders"));
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(&format!("DELETE FROM orders WHERE id > {keep}"), [])
            .unwrap();
    }
    let script = format!(
        "cd {dir} && export HOME={dir} TZ=Europe/Berlin LIFEBOAT_NOW=2026-11-23T10:30:00Z; {bin} --config {config}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = config.display()
    );
    let tmux = Tmux::start_sized("incident", &script, 80, 24);
    tmux.wait_for("1 Catalog", Duration::from_secs(60));
    let mut keys = 0;
    let mut press = |k: &[&str]| {
        keys += k.len();
        tmux.keys(k);
    };
    // The restore tab, the only source, then the time.
    press(&["4"]);
    tmux.wait_for("Which database?", Duration::from_secs(5));
    press(&["Enter"]);
    press(typed);
    tmux.wait_for(understood, Duration::from_secs(5));
    press(&["Enter"]);
    let screen = tmux.wait_for("check      ✔", Duration::from_secs(30));
    let id = times[1].replace(['-', ':'], "");
    assert!(
        screen.contains(&id),
        "the 09:00 (Berlin) backup is the newest before 09:40 Berlin:\n{screen}"
    );
    assert!(!screen.contains("PROVISIONAL"), "{screen}");
    // The proposed target is a new file: Enter restores into it.
    press(&["Enter"]);
    tmux.wait_for("OK: all 5 tables match", Duration::from_secs(60));
    assert!(
        keys <= 10,
        "{keys} keys from the first frame to a proven restore"
    );
    tmux.keys(&["Enter", "q"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(10));
    let restored: Vec<_> = std::fs::read_dir(dir.path().join("restores"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(sqlite_count(&restored[0], "orders"), orders[1]);
    assert_ne!(orders[1], orders[0]);
}

/// Six sources in an 80x24 terminal: the last one configured is critical (its newest backup
/// is five days old), and it is the first source line of the header; the rest that do not
/// fit are summed up on one line.
#[test]
fn a_header_with_six_sources_shows_the_critical_one_first() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let mut text =
        "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n".to_owned();
    for n in names {
        crate::common::make_sample_db(&dir.path().join(format!("{n}.db")), 1);
        text.push_str(&format!(
            "[[source]]\nname = \"{n}\"\nengine = \"sqlite\"\npath = \"{n}.db\"\nrpo = \"1d\"\n"
        ));
    }
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(&config, text).unwrap();
    for n in names {
        let at = if n == "foxtrot" {
            "2026-11-18T02:00:00Z"
        } else {
            "2026-11-23T02:00:00Z"
        };
        backup_at(dir.path(), &config, n, at);
    }
    let script = format!(
        "cd {dir} && export HOME={dir} LIFEBOAT_NOW=2026-11-23T03:00:00Z; {bin} --config {config}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = config.display()
    );
    let tmux = Tmux::start_sized("six", &script, 80, 24);
    tmux.wait_for("1 Catalog", Duration::from_secs(60));
    // Once the listing is done, no source is a guess any more.
    let screen = tmux.wait_for("+2 more: 2 ok", Duration::from_secs(30));
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[1].contains("✖ crit") && lines[1].contains("foxtrot"),
        "the critical source comes first:\n{screen}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("● ok")).count(),
        3,
        "{screen}"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(10));
}

/// `q` while a backup uploads (to S3, slowly): the console asks; `n` keeps it running; `y`
/// cancels it, waits for it to remove what it uploaded, then quits. Nothing is left in the
/// bucket: no object, no unfinished multipart upload.
#[tokio::test(flavor = "multi_thread")]
async fn q_while_a_backup_runs_asks_and_cleans_up() {
    use crate::common::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
    use crate::proxy::{Fault, FaultProxy};
    let server = S3Server::start().await;
    let proxy = FaultProxy::start(&server.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    crate::common::make_sample_db(&db, 1);
    crate::common::add_random_blobs(&db, 8);
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nforce_path_style = true\nregion = \"us-east-1\"\npart_size_mib = 5\nmax_attempts = 2\n\
             [state]\npath = \"state.db\"\n\
             [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
            proxy.endpoint
        ),
    )
    .unwrap();
    // 8 MiB of random bytes at 256 KiB/s: the upload takes half a minute.
    proxy.set(
        Fault::Throttle {
            per_second: 256 << 10,
        },
        0,
    );
    let script = format!(
        "cd {dir} && export HOME={dir} AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY}; {bin} --config {config}; echo EXIT=$?; sleep 60",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_lifeboat"),
        config = config.display()
    );
    let tmux = Tmux::start_sized("quit", &script, 100, 30);
    tmux.wait_for("1 Catalog", Duration::from_secs(60));
    tmux.keys(&["b", "Enter"]);
    tmux.wait_for("(1 running)", Duration::from_secs(10));
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("job(s) still running", Duration::from_secs(5));
    assert!(screen.contains("backup app"), "{screen}");
    tmux.keys(&["n"]);
    let screen = tmux.wait_for("(1 running)", Duration::from_secs(5));
    assert!(!screen.contains("still running"), "{screen}");
    assert!(!screen.contains("EXIT="), "{screen}");
    tmux.keys(&["q", "y"]);
    tmux.wait_for("EXIT=0", Duration::from_secs(30));

    let store = server.store("").await;
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_page("", token).await.unwrap();
        keys.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert!(
        keys.iter().all(|k| k.starts_with("_lifeboat/")),
        "only lifeboat's own records remain: {keys:?}"
    );
    assert!(store.list_incomplete("").await.unwrap().is_empty());
    let state = lifeboat::state::State::open(&dir.path().join("state.db")).unwrap();
    let jobs = state.jobs().unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.kind == lifeboat::jobs::JobKind::Backup
                && j.status == lifeboat::jobs::JobStatus::Cancelled),
        "{jobs:?}"
    );
}
