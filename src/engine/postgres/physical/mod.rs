//! The physical PostgreSQL engine: base backups over the replication protocol and
//! point-in-time restores into scratch clusters, with the WAL archive of [`crate::wal`].

pub mod base;
pub mod scratch;
pub mod tar;
