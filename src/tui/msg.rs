//! Requests from the console to the core, and the messages that come back. Every request that
//! can be superseded carries a generation number, so a late answer to an old request is dropped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use lifeboat::catalog::{Catalog, CatalogRow};
use lifeboat::jobs::{JobKind, JobRecord};
use lifeboat::manifest::Manifest;
use lifeboat::pipeline::restore::{RestoreReport, RestoreTarget};
use lifeboat::pitr::{PitrReport, PitrStatus};
use lifeboat::progress::Phase;
use lifeboat::prune::PlanInputs;

/// A running job started from the console.
pub type TaskId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// List the bucket again (generation `generation`).
    RefreshCatalog {
        generation: u64,
    },
    LoadJobs,
    Backup {
        task: TaskId,
        source: String,
    },
    /// Re-download and re-hash every store's copy.
    Verify {
        task: TaskId,
        id: String,
    },
    /// The wizard's pre-flight: what the restore will read is there, of the manifest's size,
    /// from a trusted manifest; the checksum is then checked by the restore's own download.
    Preflight {
        id: String,
    },
    Restore(RestoreRequest),
    Cancel {
        task: TaskId,
    },
    /// Prune one source by its configured policy, deleting no more than was confirmed.
    Prune {
        task: TaskId,
        source: String,
        /// The backup ids and upload keys the confirmation showed.
        only: BTreeSet<String>,
    },
    /// Delete a scratch database the wizard created.
    DropScratch {
        target: RestoreTarget,
        /// False when the restore replaced an existing target, which is then refused.
        created: bool,
    },
    /// Put text on the clipboard (OSC 52).
    Copy(String),
    /// Read a point-in-time source's base backups and WAL chain.
    LoadPitr {
        source: String,
    },
    /// Restore a point-in-time source to a time into a new scratch cluster and prove it;
    /// a drill drops the cluster once proved.
    PitrRestore {
        task: TaskId,
        source: String,
        at: chrono::DateTime<chrono::Utc>,
        base: String,
        drill: bool,
    },
    /// Stop and remove a scratch cluster a point-in-time restore left running.
    DropPitrScratch {
        source: String,
        dir: PathBuf,
    },
    /// Promote a proven copy in place of its source (the source's name typed as `confirm`).
    Promote {
        task: TaskId,
        copy: String,
        source: String,
        confirm: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRequest {
    pub task: TaskId,
    pub id: String,
    /// A SQLite file, or a database name for a PostgreSQL source.
    pub target: PathBuf,
    pub force_target: bool,
    pub compare_live: bool,
    /// Save the report under `_lifeboat/drills/`.
    pub drill: bool,
}

#[derive(Debug)]
pub enum Msg {
    /// The whole cached catalog, read after the first frame.
    CachedRows(Result<Vec<CatalogRow>, String>),
    /// Lines from one listing page of refresh `generation`, and the sources whose part of
    /// the bucket is fully read as of that page.
    CatalogPage {
        generation: u64,
        rows: Vec<CatalogRow>,
        sources_complete: Vec<String>,
    },
    /// The whole listing of refresh `generation`, or why it failed.
    CatalogDone {
        generation: u64,
        result: Result<Arc<Catalog>, String>,
    },
    Jobs(Result<Arc<Vec<JobRecord>>, String>),
    /// What the retention planner needs, read after each catalog refresh.
    PlanInputs(Result<Arc<PlanInputs>, String>),
    Progress {
        task: TaskId,
        phase: Phase,
        total: Option<u64>,
        done: u64,
    },
    Finished {
        task: TaskId,
        kind: JobKind,
        record: Box<JobRecord>,
        outcome: Outcome,
    },
    /// The pre-flight check of backup `id`: what it found, or why it cannot be restored.
    Preflight {
        id: String,
        result: Result<String, String>,
    },
    /// A background action that is not a job failed or finished (copy, drop scratch).
    Notice(Result<String, String>),
    /// A point-in-time source's base backups and windows, or why they could not be read.
    Pitr {
        source: String,
        result: Result<Arc<PitrStatus>, String>,
    },
}

#[derive(Debug)]
pub enum Outcome {
    Backup(Result<Box<Manifest>, String>),
    Verify(Result<(), String>),
    Restore {
        report: Result<Box<RestoreReport>, String>,
        saved: Option<String>,
    },
    /// Backups deleted and bytes freed.
    Prune(Result<(usize, u64), String>),
    Promote(Result<Box<lifeboat::promote::Promoted>, String>),
    Pitr(Result<Box<PitrReport>, String>),
}
