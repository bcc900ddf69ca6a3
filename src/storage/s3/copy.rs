//! Server-side copies between two buckets (or prefixes) of one S3 endpoint.

use super::{ObjectKey, S3Store, StoreError, StoreResult};

/// CopyObject copies at most 5 GiB in one request.
pub const MAX_SERVER_COPY: u64 = 5 * 1024 * 1024 * 1024;

impl S3Store {
    /// Copies `key` from `source` with CopyObject: the bytes never leave the provider. The
    /// caller streams objects over [`MAX_SERVER_COPY`] and reads the result back to check it.
    pub(crate) async fn copy_object_from(
        &self,
        source: &S3Store,
        key: &ObjectKey,
        size: u64,
    ) -> StoreResult<()> {
        if size > MAX_SERVER_COPY {
            return Err(StoreError::Request {
                op: "copy",
                key: key.to_string(),
                detail: "over 5 GiB: a server-side copy needs a multipart copy".into(),
            });
        }
        let copy_source = format!("{}/{}", source.bucket, encode(&source.full(key.as_str())));
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .copy_source(copy_source)
            .send()
            .await
            .map_err(|e| self.error("copy", key.as_str(), e))?;
        Ok(())
    }
}

/// `x-amz-copy-source` is URL-encoded; '/' separates the key's segments and stays.
fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_sources_are_url_encoded() {
        assert_eq!(
            super::encode("prod/shop/20261122T020000Z-7f3a/data.sqlite.zst"),
            "prod/shop/20261122T020000Z-7f3a/data.sqlite.zst"
        );
        assert_eq!(super::encode("a b/ü+x"), "a%20b/%C3%BC%2Bx");
    }
}
