//! Integration tests: one binary, so the S3 SDK is linked once.

mod backup_restore;
mod cli;
mod common;
mod console;
mod faults;
mod foreign;
mod pg;
mod storage;
