//! Integration tests: one binary, so the S3 SDK is linked once.

mod attacks;
mod backup_restore;
mod catalog_index;
mod cli;
mod common;
mod console;
mod copies;
mod faults;
mod faults_pg;
mod faults_s3;
mod foreign;
mod fuzz;
mod ops;
mod pg;
mod pg_fidelity;
mod pg_promote;
mod pitr;
mod pitr_stream;
mod promote;
mod proxy;
mod prune;
mod storage;
mod trust;
mod untrusted;
