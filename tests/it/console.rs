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
        let tmux = Tmux {
            socket: format!("lifeboat-{name}-{}", std::process::id()),
        };
        let started = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "lb", "-x", "100", "-y", "30"])
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
    tmux.wait_for("verified: the stored bytes match", Duration::from_secs(30));
    tmux.keys(&["Enter"]);
    tmux.wait_for("A new file", Duration::from_secs(5));
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
    tmux.wait_for("verified: the stored bytes match", Duration::from_secs(30));
    tmux.keys(&["Enter"]);
    tmux.wait_for("A new file", Duration::from_secs(5));
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
