//! Grows a local-directory store for the listing benchmark (`scripts/bench-list`): the newest
//! backup of SOURCE is cloned COUNT times, an hour apart going back, each with its own id, a
//! resealed manifest and a job record, written straight to the directory.
//!
//! `cargo run --release --example clone_catalog -- STORE_DIR SOURCE COUNT`

use std::path::Path;

use chrono::Duration;
use lifeboat::jobs::{JobKind, JobRecord, JobStatus};
use lifeboat::manifest::{BackupId, MANIFEST_NAME, Manifest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: clone_catalog STORE_DIR SOURCE COUNT";
    let root = args.next().ok_or(usage)?;
    let source = args.next().ok_or(usage)?;
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let root = Path::new(&root);
    let newest = std::fs::read_dir(root.join(&source))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<BackupId>().is_ok())
        .max()
        .ok_or("no backup of that source to clone")?;
    let dir = root.join(&source).join(&newest);
    let key = format!("{source}/{newest}/{MANIFEST_NAME}");
    let original = Manifest::parse(&key, &std::fs::read(dir.join(MANIFEST_NAME))?)?;
    let data = std::fs::read(dir.join(&original.data.key))?;
    for i in 1..=count {
        let back = Duration::hours(i as i64);
        let mut m = original.clone();
        m.id = BackupId::generate(original.started_at - back);
        m.started_at = original.started_at - back;
        m.finished_at = original.finished_at - back;
        m.seal(None);
        let out = root.join(&source).join(m.id.as_str());
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join(&m.data.key), &data)?;
        std::fs::write(out.join(MANIFEST_NAME), m.to_json())?;
        let job = JobRecord {
            id: format!(
                "{}-backup-{:04x}",
                m.started_at.format("%Y%m%dT%H%M%SZ"),
                fastrand::u16(..)
            ),
            kind: JobKind::Backup,
            source: Some(source.clone()),
            backup_id: Some(m.id.to_string()),
            trigger: m.trigger,
            host: m.host.clone(),
            pid: 1,
            started_at: m.started_at,
            finished_at: Some(m.finished_at),
            status: JobStatus::Succeeded,
            bytes: m.data.stored_bytes,
            error: None,
            log: Vec::new(),
            operator: None,
            restored: None,
        };
        let job_path = root.join(job.object_key()?.as_str());
        std::fs::create_dir_all(job_path.parent().ok_or("a job key has a directory")?)?;
        std::fs::write(job_path, serde_json::to_vec(&job)?)?;
    }
    println!(
        "{count} clones of {source}/{newest} written under {}",
        root.display()
    );
    Ok(())
}
