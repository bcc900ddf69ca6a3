//! `lifeboat promote` on SQLite, through the binary: only a proven, unchanged copy, only with
//! the source's name typed, the old file kept beside the new one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::cli::{Out, assert_one_line_error, json, run, with_config};
use crate::common;

const NOW: &str = "2026-11-23T08:00:00Z";

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    common::make_sample_db(&dir.path().join("app.db"), 1);
    let config = dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        "operator = \"alice\"\n[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n\
         [backup]\ntemp_dir = \"staging\"\ncontent_checksums = true\n\
         [[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n",
    )
    .unwrap();
    (dir, config)
}

async fn lb(dir: &Path, config: &Path, args: &[&str]) -> Out {
    let mut cmd = with_config(dir, config, args);
    cmd.env("LIFEBOAT_NOW", NOW);
    run(cmd).await
}

fn count(path: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proven_sqlite_copy_replaces_its_source_and_the_old_file_is_kept() {
    let (dir, config) = setup();
    let home = dir.path();
    let source = home.join("app.db");
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = lb(home, &config, &["backup", "app"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The incident: rows lost after the backup.
    rusqlite::Connection::open(&source)
        .unwrap()
        .execute_batch("DELETE FROM orders WHERE id > 100")
        .unwrap();
    let damaged = count(&source, "orders");

    // Restored into a scratch directory (another directory than the source's).
    std::fs::create_dir(home.join("scratch")).unwrap();
    let out = lb(
        home,
        &config,
        &["restore", "latest", "--to", "scratch/check.db", "--json"],
    )
    .await;
    let restored = json(&out);
    assert_eq!(restored["report"]["content_compared"], 5, "{restored}");
    let copy = home.join("scratch/check.db").canonicalize().unwrap();
    let copy_s = copy.to_str().unwrap();

    // Without the source's name typed (and no terminal to ask in): nothing happens.
    let out = lb(home, &config, &["promote", copy_s]).await;
    assert_one_line_error(&out, "--confirm");
    let out = lb(home, &config, &["promote", copy_s, "--confirm", "ap"]).await;
    assert_one_line_error(&out, "is not the source's name app");
    // Over the source with restore --force-target: refused, pointing here.
    let out = lb(
        home,
        &config,
        &[
            "restore",
            "latest",
            "--to",
            "app.db",
            "--force-target",
            "app.db",
        ],
    )
    .await;
    assert_one_line_error(&out, "lifeboat promote");
    assert_eq!(count(&source, "orders"), damaged);

    // While another process holds the source open: refused, the application must stop.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 3<app.db; exec sleep 30")
        .current_dir(home)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = lb(home, &config, &["promote", copy_s, "--confirm", "app"]).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_one_line_error(&out, "stop the application first");
    assert!(out.stderr.contains("pid "), "{}", out.stderr);
    assert_eq!(count(&source, "orders"), damaged);
    assert!(files_named(home, "app_before_").is_empty());
    assert!(copy.exists());

    let out = lb(
        home,
        &config,
        &["promote", copy_s, "--confirm", "app", "--json"],
    )
    .await;
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let p = &v["promoted"];
    assert_eq!(p["source"], "app");
    assert_eq!(p["copy"], copy_s);
    let kept = p["kept_as"].as_str().unwrap();
    assert!(kept.contains("app_before_20261123T08"), "{kept}");

    // The source is the backup again; the damaged file is kept beside it, whole.
    assert_eq!(count(&source, "orders"), 2000);
    assert_eq!(count(Path::new(kept), "orders"), damaged);
    assert!(!copy.exists(), "the copy moved into place");
    assert_eq!(
        std::fs::metadata(&source).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let mode: String = rusqlite::Connection::open(&source)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // Nothing half-done beside it: no staged copy, no WAL of the old file under the new name.
    let beside = files_named(home, ".app.db");
    assert!(beside.is_empty(), "{beside:?}");
    let wal = home.join("app.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);

    // The history says who did it; the copy cannot be promoted twice.
    let jobs = json(&lb(home, &config, &["jobs", "--json"]).await);
    let promote = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "promote" && j["status"] == "succeeded")
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(promote["operator"], "alice");
    assert_eq!(promote["source"], "app");
    let refused = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "promote" && j["status"] == "refused")
        .count();
    assert_eq!(refused, 2, "{jobs}");
    let out = lb(home, &config, &["promote", copy_s, "--confirm", "app"]).await;
    assert_one_line_error(&out, "no longer exists");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_copy_whose_diff_passed_and_that_did_not_change_is_promoted() {
    let (dir, config) = setup();
    let home = dir.path();
    let out = lb(home, &config, &["backup", "app"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Proved, then changed: refused.
    let out = lb(home, &config, &["restore", "latest", "--to", "changed.db"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("content    checksums of 5 tables compared with the manifest"),
        "{}",
        out.stdout
    );
    rusqlite::Connection::open(home.join("changed.db"))
        .unwrap()
        .execute_batch("UPDATE customers SET name = 'x' WHERE id = 1")
        .unwrap();
    let out = lb(
        home,
        &config,
        &["promote", "changed.db", "--confirm", "app"],
    )
    .await;
    assert_one_line_error(&out, "has changed since it was proved");

    // A file lifeboat never restored: refused.
    std::fs::copy(home.join("app.db"), home.join("stray.db")).unwrap();
    let out = lb(home, &config, &["promote", "stray.db", "--confirm", "app"]).await;
    assert_one_line_error(&out, "no restore into");

    // Nor one a record in the bucket says was restored and proved on this host: anyone with
    // a key can write such a record, naming any host.
    let jobs = home.join("bucket/_lifeboat/jobs");
    let proof = common::all_files(&jobs)
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice::<Value>(&bytes).unwrap())
        .find(|j| {
            j["restored"]["copy"]
                .as_str()
                .is_some_and(|c| c.ends_with("changed.db"))
        })
        .expect("the restore's record was pushed to the bucket");
    let mut forged = proof.clone();
    let id = "20991231T000000Z-restore-0f0f";
    forged["id"] = id.into();
    forged["started_at"] = "2099-12-31T00:00:00Z".into();
    forged["finished_at"] = "2099-12-31T00:01:00Z".into();
    forged["restored"]["copy"] = home
        .join("stray.db")
        .canonicalize()
        .unwrap()
        .to_str()
        .unwrap()
        .into();
    std::fs::create_dir_all(jobs.join("2099/12")).unwrap();
    std::fs::write(
        jobs.join(format!("2099/12/{id}.json")),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let out = lb(home, &config, &["jobs", "--json"]).await;
    assert!(
        out.stdout.contains(id),
        "the forged record is in the history"
    );
    let out = lb(home, &config, &["promote", "stray.db", "--confirm", "app"]).await;
    assert_one_line_error(&out, "no restore into");

    // A restore whose counts did not match the manifest: refused.
    let id = json(&lb(home, &config, &["list", "--json"]).await)["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::rewrite_manifest(
        &home.join(format!("bucket/app/{id}/manifest.json")),
        |v: &mut Value| {
            let t = v["tables"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|t| t["name"] == "orders")
                .unwrap();
            t["rows"] = 1999.into();
        },
    );
    let out = lb(home, &config, &["restore", "latest", "--to", "short.db"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let out = lb(home, &config, &["promote", "short.db", "--confirm", "app"]).await;
    assert_one_line_error(&out, "did not pass its diff");
    assert_eq!(count(&home.join("app.db"), "orders"), 2000);
    assert!(files_named(home, "app_before_").is_empty());
}
