//! The binary, as cron and people run it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{self, ACCESS_KEY, S3Server, SECRET_KEY};

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with a clean environment: no AWS settings but those a test gives.
/// `LIFEBOAT_TEST_BIN` runs the tests against another build (say, of main, to see a new
/// test fail there).
pub fn lifeboat(home: &Path) -> Command {
    let bin = std::env::var_os("LIFEBOAT_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_lifeboat").into());
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("LIFEBOAT_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    // Empty AWS files: no profile to fall back on, as on a fresh machine.
    for f in ["aws-config", "aws-credentials"] {
        std::fs::write(home.join(f), "").unwrap();
    }
    // A panic's backtrace is for a developer who asked; tests read the one error line.
    c.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    c.current_dir(home)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"));
    c
}

pub async fn run(mut cmd: Command) -> Out {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn with_config(home: &Path, config: &Path, args: &[&str]) -> Command {
    let mut c = lifeboat(home);
    c.arg("--config").arg(config).args(args);
    c
}

pub fn json(out: &Out) -> Value {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// One line on stderr, starting with `error:`, and exit code 1.
pub fn assert_one_line_error(out: &Out, needle: &str) {
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line expected: {}", out.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{}",
        lines[0]
    );
}

fn sqlite_world(dir: &Path, storage: &str) -> PathBuf {
    common::make_sample_db(&dir.join("app.db"), 1);
    common::config_for(dir, storage);
    dir.join("lifeboat.toml")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_cycle_through_s3_leaks_no_secret() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_world(dir.path(), &server.config_toml("nightly"));
    let home = dir.path();
    let cmd = |args: &[&str]| {
        let mut c = with_config(home, &config, args);
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("LIFEBOAT_LOG", "debug");
        c
    };
    let mut logs = String::new();

    let out = run(cmd(&["backup", "--json"])).await;
    logs += &out.stderr;
    let v = json(&out);
    let id = v[0]["manifest"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v[0]["job"]["status"], "succeeded");

    let out = run(cmd(&["list", "--json"])).await;
    logs += &out.stderr;
    let v = json(&out);
    assert_eq!(v["backups"][0]["id"], id.as_str());
    assert_eq!(v["backups"][0]["state"], "complete");
    assert_eq!(
        v["backups"][0]["manifest"]["tables"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let out = run(cmd(&["list"])).await;
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("complete"),
        "{}",
        out.stdout
    );
    let out = run(cmd(&["show", &id])).await;
    assert!(
        out.stdout.contains("sha256") && out.stdout.contains("orders"),
        "{}",
        out.stdout
    );

    let target = dir.path().join("restored.db");
    let out = run(cmd(&[
        "restore",
        "latest",
        "--to",
        target.to_str().unwrap(),
        "--compare-live",
        "--json",
    ]))
    .await;
    logs += &out.stderr;
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["diff"]["rows"].as_array().unwrap().len(), 5);

    let out = run(cmd(&["verify", "--all"])).await;
    logs += &out.stderr;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("ok      app  {id}")),
        "{}",
        out.stdout
    );

    let out = run(cmd(&["jobs", "--json"])).await;
    logs += &out.stderr;
    let kinds: Vec<String> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["verify", "restore", "backup"]);

    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "debug logging was on"
    );
    assert!(!logs.contains(SECRET_KEY), "the secret reached the logs");
    for (path, bytes) in common::all_files(server.dir.path())
        .into_iter()
        .chain(common::all_files(dir.path()))
    {
        assert!(
            !common::contains(&bytes, SECRET_KEY),
            "secret found in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let out = run(with_config(home, &home.join("missing.toml"), &["list"])).await;
    assert_one_line_error(&out, "no config at");

    let bad = home.join("bad.toml");
    std::fs::write(
        &bad,
        "[storage]\ntype = \"local\"\npath = \"b\"\n\n[backup]\ncompression_level = \"high\"\n",
    )
    .unwrap();
    let out = run(with_config(home, &bad, &["list"])).await;
    assert_one_line_error(&out, &format!("{}:6:", bad.display()));

    std::fs::write(
        &bad,
        "[storage]\ntype = \"local\"\npath = \"b\"\nbukket = 1\n",
    )
    .unwrap();
    let out = run(with_config(home, &bad, &["list"])).await;
    assert_one_line_error(&out, "bukket");

    let config = sqlite_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let out = run(with_config(home, &config, &["backup", "nope"])).await;
    assert_one_line_error(&out, "unknown source \"nope\" (configured: app)");
    let out = run(with_config(
        home,
        &config,
        &["restore", "latest", "--to", "x.db"],
    ))
    .await;
    assert_one_line_error(&out, "no backup matches");
    let out = run(with_config(
        home,
        &config,
        &["restore", "--before", "last tuesday", "--to", "x.db"],
    ))
    .await;
    assert_one_line_error(&out, "cannot read \"last tuesday\" as a time");
    let out = run(with_config(
        home,
        &config,
        &["show", "20991122T020000Z-7f3a"],
    ))
    .await;
    assert_one_line_error(&out, "no backup matches");

    // S3 without credentials, and S3 that is not there.
    let s3 = home.join("s3.toml");
    std::fs::write(&s3, "[storage]\ntype = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\nforce_path_style = true\nmax_attempts = 1\n").unwrap();
    let out = run(with_config(home, &s3, &["list"])).await;
    assert_one_line_error(&out, "no usable credentials");
    let mut c = with_config(home, &s3, &["list"]);
    c.env("AWS_ACCESS_KEY_ID", "a")
        .env("AWS_SECRET_ACCESS_KEY", "b");
    let out = run(c).await;
    assert_one_line_error(&out, "cannot reach http://127.0.0.1:9");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_reads_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = sqlite_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let go = |args: &[&str]| {
        let mut c = with_config(home, &config, args);
        c.env("LIFEBOAT_NOW", "2026-11-23T12:00:00Z");
        run(c)
    };

    // A usage error is one line, exit 2 (3 for check, which monitoring reads).
    for (args, needle, code) in [
        (&["restore", "--bogus"][..], "--bogus", 2),
        (&["verify", "--all", "x"][..], "cannot be used with", 2),
        (&["pin"][..], "<ID>", 2),
        (&["check", "--bogus"][..], "--bogus", 3),
    ] {
        let out = go(args).await;
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{}",
            lines[0]
        );
    }

    // -q prints no phase lines; the result line stays.
    let out = go(&["-q", "backup"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "", "-q is quiet");
    assert!(out.stdout.contains("app"), "{}", out.stdout);

    // A relative time with a leading minus, written as the README writes it.
    let out = go(&["restore", "--before", "-2h", "--to", "x.db"]).await;
    assert_one_line_error(&out, "no backup matches");
    let mut later = with_config(
        home,
        &config,
        &["restore", "--before", "-1h", "--to", "x.db"],
    );
    later
        .env("LIFEBOAT_NOW", "2026-11-23T14:00:00Z")
        .arg("--json");
    assert_eq!(json(&run(later).await)["ok"], true);
    let out = go(&["report", "drills", "--since", "-30d", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // `verify latest`, as `restore latest`.
    let out = go(&["verify", "latest", "--json"]).await;
    assert_eq!(json(&out)[0]["status"], "succeeded");

    // pin and unpin speak JSON.
    let id = json(&go(&["list", "--json"]).await)["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = json(&go(&["pin", &id, "--json"]).await);
    assert_eq!(
        (v["pinned"].clone(), v["changed"].clone()),
        (true.into(), true.into())
    );
    let v = json(&go(&["unpin", &id, "--json"]).await);
    assert_eq!(
        (v["pinned"].clone(), v["changed"].clone()),
        (false.into(), true.into())
    );
    let v = json(&go(&["unpin", &id, "--json"]).await);
    assert_eq!(v["changed"], false);

    // What a packaged CLI ships: completions and a man page from the same definitions.
    for shell in ["bash", "zsh", "fish"] {
        let out = go(&["completions", shell]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stdout.contains("restore") && out.stdout.contains("--before"));
    }
    let out = go(&["man"]).await;
    assert!(out.stdout.starts_with(".ie") || out.stdout.contains(".TH lifeboat"));
    assert!(
        out.stdout.contains("PostgreSQL"),
        "the description is current"
    );
    let out = go(&["--help"]).await;
    assert!(
        out.stdout.contains("SQLite and PostgreSQL"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_unit_files_in_assets_are_the_ones_the_docs_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    for unit in [
        "lifeboat.service",
        "lifeboat-backup.service",
        "lifeboat-backup.timer",
    ] {
        let text = std::fs::read_to_string(root.join("assets/systemd").join(unit)).unwrap();
        assert!(
            docs.contains(&text),
            "docs/operations.md shows {unit} as it is"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_exit_codes_follow_the_diff_and_targets_are_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = sqlite_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let out = run(with_config(home, &config, &["backup", "--all"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.split_whitespace().nth(2).unwrap().to_owned();

    let out = run(with_config(
        home,
        &config,
        &["restore", &id, "--to", "one.db"],
    ))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("OK: all 5 tables match"),
        "{}",
        out.stdout
    );

    // Into the source itself: refused unless its path is typed again.
    let src = home.join("app.db");
    let out = run(with_config(
        home,
        &config,
        &["restore", &id, "--to", src.to_str().unwrap()],
    ))
    .await;
    assert_one_line_error(&out, "is the source database itself");
    let out = run(with_config(
        home,
        &config,
        &[
            "restore",
            &id,
            "--to",
            src.to_str().unwrap(),
            "--force-target",
            "other.db",
        ],
    ))
    .await;
    assert_one_line_error(&out, "does not repeat --to");

    let manifest = home.join(format!("bucket/app/{id}/manifest.json"));
    crate::common::rewrite_manifest(&manifest, |v| {
        let customers = v["tables"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|t| t["rows"] == 500)
            .unwrap();
        customers["rows"] = 499.into();
    });
    let out = run(with_config(
        home,
        &config,
        &["restore", &id, "--to", "two.db"],
    ))
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("FAILED: 1 of 5 tables differ"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("customers") && l.contains("+1") && l.contains("MISMATCH")),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_writes_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conf/lifeboat.toml");
    let out = run(with_config(dir.path(), &path, &["init"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    lifeboat::config::Config::load(&path).unwrap();
    let out = run(with_config(dir.path(), &path, &["init"])).await;
    assert_one_line_error(&out, "already exists");
    // Without --config, the XDG location.
    let mut c = lifeboat(dir.path());
    c.env("XDG_CONFIG_HOME", dir.path().join("xdg")).arg("init");
    assert_eq!(run(c).await.code, 0);
    assert!(dir.path().join("xdg/lifeboat/lifeboat.toml").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_builds_a_history_that_restores() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let demo = home.join("demo");
    // Every command of this test runs on one simulated clock, so the history's dates are fixed.
    let pinned = |mut c: Command| {
        c.env("LIFEBOAT_NOW", "2026-11-23T12:00:00Z");
        c
    };
    let mut c = pinned(lifeboat(home));
    c.args(["demo", "--scale", "0.1", "--dir"]).arg(&demo);
    let out = run(c).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("next: lifeboat --config"),
        "{}",
        out.stdout
    );
    let config = demo.join("lifeboat.toml");

    let v = json(&run(pinned(with_config(home, &config, &["list", "--json"]))).await);
    let backups = v["backups"].as_array().unwrap();
    assert!(backups.len() >= 40, "{}", backups.len());
    assert!(backups.iter().all(|b| b["state"] == "complete"));
    let oldest = backups.last().unwrap()["time"].as_str().unwrap();
    assert!(
        ("2026-07-20".."2026-08-01").contains(&oldest),
        "history spans 120 days before the pinned now: {oldest}"
    );
    let newest = backups.first().unwrap()["time"].as_str().unwrap();
    assert!(newest.starts_with("2026-11-23"), "{newest}");
    let shop_tables = backups.iter().find(|b| b["source"] == "shop").unwrap()["manifest"]["tables"]
        .as_array()
        .unwrap()
        .len();
    assert!(shop_tables >= 12, "{shop_tables}");
    let formats: Vec<&str> = v["foreign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["format"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(formats.len(), 2, "{formats:?}");

    let jobs = json(
        &run(pinned(with_config(
            home,
            &config,
            &["jobs", "--json", "--limit", "1000"],
        )))
        .await,
    );
    let jobs = jobs.as_array().unwrap();
    assert!(
        jobs.iter()
            .any(|j| j["status"] == "failed" && j["source"] == "auth")
    );
    assert!(jobs.iter().any(|j| j["kind"] == "verify"));
    assert!(jobs.iter().any(|j| j["kind"] == "restore"));

    let out = run(pinned(with_config(
        home,
        &config,
        &[
            "restore",
            "latest",
            "--source",
            "shop",
            "--to",
            "shop-check.db",
            "--compare-live",
        ],
    )))
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // A second demo in the same place needs --force, and only replaces a demo.
    let mut c = lifeboat(home);
    c.args(["demo", "--scale", "0.05", "--dir"]).arg(&demo);
    assert_one_line_error(&run(c).await, "--force");
}

/// Who did it: every job, pin and unpin names its operator (`operator` in the config, else
/// the login name), and an unpin leaves a record in `jobs` like a pin does.
#[tokio::test(flavor = "multi_thread")]
async fn pins_and_unpins_are_jobs_that_say_who() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = sqlite_world(home, "[storage]\ntype = \"local\"\npath = \"bucket\"");
    let as_user = |user: &str, args: &[&str]| {
        let mut c = with_config(home, &config, args);
        c.env("USER", user);
        c
    };
    let out = run(as_user("bob", &["backup", "app"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = json(&run(as_user("bob", &["list", "--json"])).await)["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A restore says that the backup had no content checksums to compare.
    let out = run(as_user("bob", &["restore", &id, "--to", "r.db"])).await;
    assert!(
        out.stdout
            .contains("content    not compared: the backup has no content checksums"),
        "{}",
        out.stdout
    );
    let out = run(as_user("bob", &["restore", &id, "--to", "r2.db", "--json"])).await;
    assert!(json(&out)["report"]["content_compared"].is_null());

    let pinned = json(&run(as_user("bob", &["pin", &id, "--json"])).await);
    assert_eq!(pinned["pinned"], true);
    // The config names the operator for everyone using it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("operator = \"on-call team\"\n{text}")).unwrap();
    let unpinned = json(&run(as_user("bob", &["unpin", &id, "--json"])).await);
    assert_eq!(unpinned["changed"], true);

    let jobs = json(&run(as_user("bob", &["jobs", "--json"])).await);
    let by = |kind: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} job: {jobs}"))
            .clone()
    };
    assert_eq!(by("backup")["operator"], "bob");
    assert_eq!(by("pin")["operator"], "bob");
    assert_eq!(by("pin")["backup_id"], id.as_str());
    let unpin = by("unpin");
    assert_eq!(unpin["operator"], "on-call team");
    assert_eq!(unpin["backup_id"], id.as_str());
    assert_eq!(unpin["status"], "succeeded");
    let out = run(as_user("bob", &["jobs"])).await;
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("unpin"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("on-call team"), "{line}");
}
