//! PostgreSQL under SIGKILL: a killed lifeboat leaves no pg_dump or pg_restore running, and
//! the scratch database a killed restore created is dropped by the next run (so a retry
//! under the same name works) or by `lifeboat clean`.

use std::path::Path;
use std::time::Duration;

use crate::cli::{json, lifeboat, run};
use crate::faults::{signal, start_until, wait};
use crate::pg::Cluster;

/// The PostgreSQL client tools running against the cluster whose sockets are in `dir`
/// (zombies, which run nothing, are not counted).
fn tools_running(dir: &Path) -> Vec<String> {
    let host = format!("PGHOST={}", dir.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = entry.path();
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let name = String::from_utf8_lossy(argv0)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !matches!(name.as_str(), "pg_dump" | "pg_restore" | "psql") {
            continue;
        }
        let environ = std::fs::read(p.join("environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|v| v == host.as_bytes()) {
            out.push(format!(
                "{name} (pid {})",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    out
}

async fn none_left(dir: &Path) -> Vec<String> {
    // The kernel's SIGTERM and the tools' own cleanup take a moment; a tool that merely
    // finished its work would take longer than this (see the timing printed below).
    for _ in 0..20 {
        if tools_running(dir).is_empty() {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tools_running(dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lifeboat_leaves_no_pg_tool_running_and_no_scratch_database() {
    let cluster = Cluster::start();
    cluster.psql("postgres", "CREATE DATABASE big");
    // Large enough that pg_dump and pg_restore are caught mid-way.
    cluster.psql(
        "big",
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a,
           repeat(md5(g::text), 3) AS b FROM generate_series(1, 600000) g;
         CREATE INDEX t_a ON t (a); CREATE INDEX t_b ON t (b);",
    );
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let config = home.join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ntype = \"local\"\npath = \"bucket\"\n[state]\npath = \"state.db\"\n[backup]\ntemp_dir = \"staging\"\n{}",
            cluster.source_toml("big", "big", "")
        ),
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = lifeboat(home);
        c.arg("--config").arg(&config).arg("--quiet").args(args);
        c
    };
    let sockets = cluster.dir.clone();
    let running = |tool: &'static str| {
        let found = tools_running(&sockets).iter().any(|t| t.starts_with(tool));
        async move { found }
    };

    // A backup killed while pg_dump streams.
    let child = start_until(cmd(&["backup", "big"]), || running("pg_dump")).await;
    signal(&child, libc::SIGKILL);
    let _ = wait(child).await;
    assert_eq!(
        none_left(&sockets).await,
        Vec::<String>::new(),
        "after a killed backup"
    );

    let out = run(cmd(&["backup", "big"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A restore killed while pg_restore loads its scratch database.
    let restore = [
        "restore",
        "latest",
        "--source",
        "big",
        "--to",
        "scratch_big",
    ];
    let mut killed = 0;
    for round in 0..2 {
        let child = start_until(cmd(&restore), || running("pg_restore")).await;
        signal(&child, libc::SIGKILL);
        let _ = wait(child).await;
        killed += 1;
        assert_eq!(
            none_left(&sockets).await,
            Vec::<String>::new(),
            "after a killed restore"
        );
        assert!(cluster.databases().contains(&"scratch_big".to_owned()));
        if round == 0 {
            // The retry under the same name: the leftover goes first, then it works.
            let started = std::time::Instant::now();
            let out = run(cmd(&restore)).await;
            eprintln!("a whole restore took {:?}", started.elapsed());
            assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
            let jobs = json(&run(cmd(&["jobs", "--json"])).await);
            let log = jobs[0]["log"].to_string();
            assert!(
                log.contains("removed scratch database scratch_big"),
                "{log}"
            );
            let out = run(cmd(&[
                "restore",
                "latest",
                "--source",
                "big",
                "--to",
                "scratch_big",
            ]))
            .await;
            assert_eq!(out.code, 1, "a kept restore is no leftover: {}", out.stderr);
            cluster.psql("postgres", "DROP DATABASE scratch_big");
        } else {
            let out = run(cmd(&["clean"])).await;
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert!(
                out.stdout
                    .contains("removed scratch database scratch_big (source big)"),
                "{}",
                out.stdout
            );
            assert!(!cluster.databases().contains(&"scratch_big".to_owned()));
        }
        assert!(
            std::fs::read_dir(home.join("staging"))
                .map(|d| d.count() == 0)
                .unwrap_or(true),
            "the staged dump was swept"
        );
    }
    eprintln!(
        "PostgreSQL: 1 killed backup, {killed} killed restores: no tool left running, scratch databases dropped"
    );
}
