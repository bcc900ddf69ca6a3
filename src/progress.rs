//! Progress reporting: the core calls a sink; the CLI draws bars, the console forwards to a
//! channel, tests ignore it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Snapshot,
    Upload,
    Commit,
    Download,
    /// pg_restore or psql loading a PostgreSQL database.
    Load,
    Count,
    CountLive,
    Diff,
    /// Copying backups and records from store to store.
    Copy,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Snapshot => "snapshot",
            Phase::Upload => "compress + upload",
            Phase::Commit => "write manifest",
            Phase::Download => "download, verify, decompress",
            Phase::Load => "load (pg_restore)",
            Phase::Count => "count rows",
            Phase::CountLive => "count live rows",
            Phase::Diff => "diff",
            Phase::Copy => "copy + verify",
        }
    }
}

/// Receives progress from a running job. Calls may come from any thread and often; an
/// implementation keeps the newest value and must not block.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is its size in bytes when known.
    fn phase(&self, _phase: Phase, _total: Option<u64>) {}
    /// Bytes done so far in the current phase (absolute, not a delta).
    fn advance(&self, _done: u64) {}
    /// One line worth telling the person watching (a restore falling back to another
    /// store, a copy that failed).
    fn note(&self, _line: &str) {}
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
