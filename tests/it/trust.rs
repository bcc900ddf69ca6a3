//! Encryption, drills and their evidence, through the binary as cron and people run it.

use std::path::Path;

use age::secrecy::ExposeSecret;

use crate::cli::{Out, json, run, with_config};
use crate::common::{self, ACCESS_KEY, S3Server, SECRET_KEY};

/// Words of the sample database that must never be readable in an encrypted object.
const PLAINTEXT: [&str; 5] = [
    "customers",
    "orders_audit",
    "customer 42",
    "it's; fine",
    "tag17",
];

fn write_config(dir: &Path, storage: &str, extra: &str) -> std::path::PathBuf {
    common::make_sample_db(&dir.join("app.db"), 1);
    let text = format!(
        "{storage}\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n{extra}\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\ndrill_interval = \"90d\"\n"
    );
    let path = dir.join("lifeboat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Exit code 1 and the reason on one line: the last line on stderr (debug logs come before
/// it), or the FAILED line of a backup on stdout.
fn fails_with(out: &Out, needle: &str) {
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty());
    let ok = last.is_some_and(|l| l.starts_with("error: ") && l.contains(needle))
        || out
            .stdout
            .lines()
            .any(|l| l.starts_with("FAILED") && l.contains(needle));
    assert!(
        ok,
        "{needle:?} not in the error: {}{}",
        out.stdout, out.stderr
    );
}

fn files_with(dir: &Path, needle: &str) -> Vec<String> {
    common::all_files(dir)
        .into_iter()
        .filter(|(_, b)| common::contains(b, needle))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backups_restore_with_the_key_only_and_drills_leave_evidence() {
    let server = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let identity = age::x25519::Identity::generate();
    let secret_key = identity.to_string().expose_secret().to_owned();
    let recipient = identity.to_public().to_string();
    std::fs::write(home.join("key.txt"), format!("{secret_key}\n")).unwrap();
    let with_key = write_config(
        home,
        &server.config_toml(""),
        &format!("[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"key.txt\""),
    );
    let without_key = home.join("nokey.toml");
    std::fs::write(
        &without_key,
        std::fs::read_to_string(&with_key)
            .unwrap()
            .replace("identity_file = \"key.txt\"", ""),
    )
    .unwrap();
    let mut logs = String::new();
    let mut go = async |config: &Path, args: &[&str]| -> Out {
        let mut c = with_config(home, config, args);
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("LIFEBOAT_LOG", "debug");
        let out = run(c).await;
        logs += &out.stderr;
        out
    };

    let v = json(&go(&with_key, &["backup", "--json"]).await);
    let m = &v[0]["manifest"];
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(m["data"]["key"], "data.sqlite.zst.age");
    assert_eq!(m["encryption"]["scheme"], "age");
    assert_eq!(m["encryption"]["recipients"][0], recipient.as_str());
    let object = server.object_path(&format!("app/{id}/data.sqlite.zst.age"));
    let stored = std::fs::read(&object).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    for word in PLAINTEXT {
        assert!(!common::contains(&stored, word), "{word:?} readable");
    }

    // The checksum is over the stored bytes: verify needs no key.
    let out = go(&without_key, &["verify", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // No key: one clear line, and no target created.
    let target = home.join("restored.db");
    let out = go(
        &without_key,
        &["restore", "latest", "--to", target.to_str().unwrap()],
    )
    .await;
    fails_with(&out, "encryption.identity_file");
    assert!(!target.exists());

    // A wrong key: refused, nothing left behind.
    let other = age::x25519::Identity::generate();
    std::fs::write(
        home.join("other.txt"),
        other.to_string().expose_secret().as_bytes(),
    )
    .unwrap();
    let wrong = home.join("wrong.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&with_key)
            .unwrap()
            .replace("key.txt", "other.txt"),
    )
    .unwrap();
    let out = go(
        &wrong,
        &["restore", "latest", "--to", target.to_str().unwrap()],
    )
    .await;
    fails_with(&out, "none of the configured age identities");
    assert!(!target.exists());
    assert!(
        std::fs::read_dir(home)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains("partial"))
    );

    let out = go(
        &with_key,
        &[
            "restore",
            "latest",
            "--to",
            target.to_str().unwrap(),
            "--json",
        ],
    )
    .await;
    assert_eq!(json(&out)["ok"], true);
    assert_eq!(
        common::content_digest(&target),
        common::content_digest(&home.join("app.db"))
    );

    // By hand, as the restore doc says: age -d | zstd -d.
    let by_hand = home.join("by-hand.db");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i key.txt '{}' | zstd -q -d -o by-hand.db",
            object.display()
        ))
        .current_dir(home)
        .status()
        .expect("sh runs");
    assert!(
        status.success(),
        "age and zstd are installed by scripts/test"
    );
    assert_eq!(common::count(&by_hand, "orders"), 2000);

    // A drill: scratch restore, diff, RTO/RPO, report in the bucket, scratch dropped.
    let out = go(&with_key, &["drill", "--source", "app", "--json"]).await;
    let v = json(&out);
    assert_eq!(v["report"]["result"], "passed");
    assert!(v["report"]["rto_seconds"].as_f64().unwrap() >= 0.0);
    assert!(v["report"]["rpo_seconds"].as_i64().unwrap() >= 0);
    assert!(v["kept"].is_null());
    let scratch = v["report"]["restore"]["target"].as_str().unwrap();
    assert!(
        !Path::new(scratch).exists(),
        "the scratch database is dropped"
    );
    let md_key = v["stored_at"].as_str().unwrap();
    assert!(md_key.starts_with("_lifeboat/drills/"), "{md_key}");
    let md = std::fs::read_to_string(server.object_path(md_key)).unwrap();
    for field in [
        "PASSED",
        "operator",
        "host",
        id.as_str(),
        "RTO",
        "RPO",
        "| orders | 2000 | 2000 | +0 | ok |",
    ] {
        assert!(md.contains(field), "{field:?} missing from {md}");
    }

    // --keep leaves the scratch database; verify --deep restores and diffs, storing nothing.
    let out = go(&with_key, &["drill", "--backup", &id, "--keep"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("PASSED") && out.stdout.contains("kept"),
        "{}",
        out.stdout
    );
    let out = go(&with_key, &["verify", "--deep", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("5 tables match"), "{}", out.stdout);
    let out = go(&without_key, &["verify", "--deep", &id]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("encryption.identity_file"),
        "{}",
        out.stdout
    );

    // A drill that cannot restore fails in one line and is kept as evidence too.
    let out = go(&without_key, &["drill"]).await;
    fails_with(&out, "encryption.identity_file");

    let out = go(&with_key, &["report", "drills", "--json"]).await;
    let drills = json(&out);
    let drills = drills.as_array().unwrap();
    assert_eq!(drills.len(), 3, "{drills:?}");
    let results: Vec<&str> = drills
        .iter()
        .map(|d| d["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["passed", "passed", "failed"]);
    assert_eq!(drills[2]["backup"], id.as_str());
    assert!(drills[2]["rto_seconds"].is_null());
    let out = go(&with_key, &["report", "drills", "--since", "2999-01-01"]).await;
    assert!(out.stdout.contains("0 drill(s)"), "{}", out.stdout);
    let out = go(&with_key, &["report", "drills"]).await;
    assert!(
        out.stdout.contains("3 drill(s), 2 passed"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);

    // The catalog says the backup is proven restorable, by a drill.
    let v = json(&go(&with_key, &["list", "--json"]).await);
    let b = &v["backups"][0];
    assert_eq!(b["manifest"]["encryption"]["scheme"], "age", "{b}");
    assert!(
        b["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "drill" && j["status"] == "succeeded"),
        "{b}"
    );

    assert!(logs.contains("DEBUG") || logs.contains("INFO"));
    for secret in [secret_key.as_str(), SECRET_KEY] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        assert!(files_with(server.dir.path(), secret).is_empty());
        // The key file itself holds the identity; nothing else may.
        let found: Vec<String> = files_with(home, secret)
            .into_iter()
            .filter(|p| !p.ends_with("key.txt"))
            .collect();
        assert!(found.is_empty(), "{found:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_comes_from_the_environment_and_goes_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let passphrase = "correct-Horse-battery-9f2Kq";
    let config = write_config(
        home,
        "[storage]\ntype = \"local\"\npath = \"bucket\"",
        "[encryption]\npassphrase_env = \"LIFEBOAT_TEST_PASSPHRASE\"",
    );
    let mut logs = String::new();
    let mut go = async |pass: Option<&str>, args: &[&str]| -> Out {
        let mut c = with_config(home, &config, args);
        c.env("LIFEBOAT_LOG", "debug");
        if let Some(p) = pass {
            c.env("LIFEBOAT_TEST_PASSPHRASE", p);
        }
        let out = run(c).await;
        logs += &out.stderr;
        out
    };
    let out = go(None, &["backup"]).await;
    fails_with(&out, "LIFEBOAT_TEST_PASSPHRASE");
    let v = json(&go(Some(passphrase), &["backup", "--json"]).await);
    assert_eq!(
        v[0]["manifest"]["encryption"]["recipients"][0],
        "passphrase"
    );

    let target = home.join("r.db");
    let out = go(
        None,
        &["restore", "latest", "--to", target.to_str().unwrap()],
    )
    .await;
    fails_with(&out, "LIFEBOAT_TEST_PASSPHRASE");
    assert!(!target.exists());
    let out = go(
        Some("not-the-passphrase"),
        &["restore", "latest", "--to", target.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(!target.exists());
    let out = go(
        Some(passphrase),
        &["restore", "latest", "--to", target.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(common::count(&target, "orders"), 2000);

    assert!(!logs.contains(passphrase));
    let found = files_with(home, passphrase);
    assert!(found.is_empty(), "{found:?}");
    for (path, bytes) in common::all_files(&home.join("bucket")) {
        if path.to_string_lossy().ends_with(".age") {
            for word in PLAINTEXT {
                assert!(!common::contains(&bytes, word), "{word:?} readable");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_header_says_when_the_next_drill_is_due() {
    let world = common::World::local();
    let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\ndrill_interval = \"90d\"\n";
    let config = lifeboat::config::Config::parse(text, &world.path("lifeboat.toml")).unwrap();
    let (_, r) = world
        .lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            std::sync::Arc::new(lifeboat::progress::NoProgress),
            Default::default(),
        )
        .await;
    r.unwrap();
    let now = world.lb.clock().now();
    let rows = world.lb.catalog().await.unwrap().rows();
    let health = lifeboat::health::assess(&config, &rows, &world.lb.jobs().unwrap(), now);
    assert_eq!(
        health[0].next_drill_due,
        Some(now),
        "never drilled: due now"
    );
    assert!(health[0].drill_note(now).contains("never drilled, due now"));

    let opts = lifeboat::drill::DrillOptions {
        source: Some("app".into()),
        save_report: true,
        ..Default::default()
    };
    let (record, drill) = world
        .lb
        .drill(
            &opts,
            std::sync::Arc::new(lifeboat::progress::NoProgress),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(drill.unwrap().passed());
    let health = lifeboat::health::assess(&config, &rows, &world.lb.jobs().unwrap(), now);
    let done = record.finished_at.unwrap();
    assert_eq!(health[0].last_drill, Some(done));
    assert_eq!(health[0].last_drill_passed, Some(true));
    assert_eq!(
        health[0].next_drill_due,
        Some(done + chrono::Duration::days(90))
    );
    assert!(health[0].drill_note(now).contains("drill ok, next in"));
    // The backup is proven restorable by that drill.
    let id = rows[0].id.clone();
    let v = world.lb.verification(&id).unwrap();
    assert!(v.ok && v.kind == lifeboat::jobs::JobKind::Drill);
}

#[tokio::test(flavor = "multi_thread")]
async fn content_checksums_catch_changed_rows_with_the_right_counts() {
    use lifeboat::diff::RowStatus;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    common::make_sample_db(&dir.path().join("app.db"), 1);
    let text = "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ncontent_checksums = true\n[[source]]\nname = \"app\"\nengine = \"sqlite\"\npath = \"app.db\"\n";
    let config = lifeboat::config::Config::parse(text, &dir.path().join("lifeboat.toml")).unwrap();
    let lb = lifeboat::Lifeboat::open(config).await.unwrap();
    let (_, m) = lb
        .backup(
            "app",
            lifeboat::manifest::Trigger::Manual,
            Arc::new(lifeboat::progress::NoProgress),
            Default::default(),
        )
        .await;
    let m = m.unwrap();
    assert_eq!(m.content_checksums.len(), 5, "{:?}", m.content_checksums);
    let restore = async |name: &str| {
        let catalog = lb.catalog().await.unwrap();
        let from = lb
            .select(&catalog, &lifeboat::Selector::Id(m.id.to_string()))
            .unwrap();
        let opts = lifeboat::pipeline::restore::RestoreOptions {
            target: dir.path().join(name).into(),
            for_source: None,
            force_target: false,
            live: None,
            integrity_check: false,
            drill: false,
            staging: lb.staging(),
            privileged: false,
        };
        lb.restore(
            from,
            opts,
            Arc::new(lifeboat::progress::NoProgress),
            Default::default(),
        )
        .await
    };
    let (job, r) = restore("good.db").await;
    assert!(r.unwrap().ok());
    assert!(
        job.log
            .iter()
            .any(|l| l.message == "content checksums compared for 5 tables")
    );

    // Change one value, keep every count, and re-seal the object and its manifest so that
    // the checksum of the stored bytes matches: only the content checksum can tell.
    let backup_dir = dir.path().join(format!("bucket/app/{}", m.id));
    let object = backup_dir.join(&m.data.key);
    let raw = zstd::decode_all(std::fs::File::open(&object).unwrap()).unwrap();
    let scratch = dir.path().join("edit.db");
    std::fs::write(&scratch, raw).unwrap();
    rusqlite::Connection::open(&scratch)
        .unwrap()
        .execute("UPDATE customers SET name = 'mallory' WHERE id = 7", [])
        .unwrap();
    let sealed = zstd::encode_all(std::fs::File::open(&scratch).unwrap(), 3).unwrap();
    std::fs::write(&object, &sealed).unwrap();
    let manifest_path = backup_dir.join("manifest.json");
    use sha2::Digest;
    crate::common::rewrite_manifest(&manifest_path, |v| {
        v["data"]["sha256"] = format!("{:x}", sha2::Sha256::digest(&sealed)).into();
        v["data"]["stored_bytes"] = sealed.len().into();
    });

    let (_, r) = restore("changed.db").await;
    let Err(lifeboat::Error::RowCountMismatch(report)) = r else {
        panic!("a content change must fail the restore: {r:?}");
    };
    let findings: Vec<_> = report.diff.findings().collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].table, "customers");
    assert_eq!(findings[0].status, RowStatus::ContentMismatch);
    assert_eq!(findings[0].expected, findings[0].restored, "counts match");
}
