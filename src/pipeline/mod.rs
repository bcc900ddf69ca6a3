//! The streaming stages of a backup and a restore.

pub mod backup;
pub mod crypt;
pub mod restore;
pub mod stream;

use sha2::{Digest, Sha256};

pub(crate) fn hex(digest: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn sha256_hex(hasher: Sha256) -> String {
    hex(hasher.finalize())
}
