//! S3 and S3-compatible stores through aws-sdk-s3.

mod copy;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use tokio::task::JoinSet;
use tokio_util::io::ReaderStream;

use super::{
    ByteStream, IncompleteUpload, ListPage, ObjectKey, ObjectMeta, ObjectStore, PutOutcome,
    StoreError, StoreResult,
};

/// S3 only accepts parts of at least 5 MiB (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const MAX_PARTS: i32 = 10_000;

#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub profile: Option<String>,
    /// Send and check the SDK's flexible checksums on every request, not only where an
    /// operation requires them. Many S3-compatible stores reject or mangle them.
    pub checksums_always: bool,
    pub part_size: usize,
    pub upload_concurrency: usize,
    pub max_attempts: u32,
    /// Credentials given by an embedding program; `None` uses the standard chain
    /// (environment, profile, SSO, web identity, IMDS).
    pub credentials: Option<Credentials>,
}

impl S3Options {
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            force_path_style: false,
            profile: None,
            checksums_always: false,
            part_size: 16 * 1024 * 1024,
            upload_concurrency: 4,
            max_attempts: 5,
            credentials: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    part_size: usize,
    concurrency: usize,
}

impl S3Store {
    pub async fn connect(opts: S3Options) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &opts.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(creds) = opts.credentials.clone() {
            loader = loader.credentials_provider(creds);
        }
        let configured = opts.region.clone().or_else(|| {
            // S3-compatible stores rarely care about the region; asking the instance metadata
            // service for one would only add seconds of timeouts off AWS.
            let env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find_map(|v| std::env::var(v).ok());
            env.or_else(|| opts.endpoint.as_ref().map(|_| "us-east-1".to_owned()))
        });
        let region =
            aws_config::meta::region::RegionProviderChain::first_try(configured.map(Region::new))
                .or_default_provider()
                .or_else(Region::from_static("us-east-1"));
        let sdk = loader.region(region).load().await;

        let (req, resp) = if opts.checksums_always {
            (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            )
        } else {
            (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            )
        };
        // Standard retry mode backs off exponentially with jitter on throttling, 5xx and
        // transient connection errors.
        let retry = RetryConfig::standard()
            .with_max_attempts(opts.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(200));
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(opts.force_path_style)
            .request_checksum_calculation(req)
            .response_checksum_validation(resp)
            .retry_config(retry);
        if let Some(endpoint) = &opts.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let endpoint = opts.endpoint.clone().unwrap_or_else(|| "AWS S3".to_owned());
        S3Store {
            client: Client::from_conf(builder.build()),
            bucket: opts.bucket,
            prefix: opts.prefix.trim_matches('/').to_owned(),
            endpoint,
            part_size: opts.part_size.max(MIN_PART_SIZE),
            concurrency: opts.upload_concurrency.max(1),
        }
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn strip<'a>(&self, full: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .map_or(full, |k| k.trim_start_matches('/'))
        }
    }

    /// One line a person understands from an SDK error.
    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let endpoint = self.endpoint.clone();
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or_default();
                let message = e.message().unwrap_or(code).to_owned();
                let status = service.raw().status().as_u16();
                match code {
                    "NoSuchBucket" => StoreError::NoSuchBucket(self.bucket.clone()),
                    "NoSuchKey" | "NotFound" => StoreError::NotFound(key.to_owned()),
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "Forbidden" => StoreError::AccessDenied {
                        endpoint,
                        detail: format!("{code}: {message}"),
                    },
                    _ if status == 404 && op == "list" => {
                        StoreError::NoSuchBucket(self.bucket.clone())
                    }
                    _ if status == 404 => StoreError::NotFound(key.to_owned()),
                    _ if status == 403 => StoreError::AccessDenied {
                        endpoint,
                        detail: format!("HTTP 403 {message}"),
                    },
                    _ => StoreError::Request {
                        op,
                        key: key.to_owned(),
                        detail: if code.is_empty() {
                            format!("HTTP {status}")
                        } else {
                            format!("{code}: {message} (HTTP {status})")
                        },
                    },
                }
            }
            SdkError::TimeoutError(_) => StoreError::Unreachable {
                endpoint,
                detail: "request timed out".into(),
            },
            _ => {
                let chain = error_chain(&err);
                if chain
                    .iter()
                    .any(|m| m.contains("credentials") || m.contains("credential provider"))
                {
                    StoreError::Credentials {
                        endpoint,
                        detail: "none found in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the AWS profile files, SSO or an instance role"
                            .into(),
                    }
                } else if matches!(err, SdkError::DispatchFailure(_)) {
                    StoreError::Unreachable {
                        endpoint,
                        detail: chain.last().cloned().unwrap_or_default(),
                    }
                } else {
                    StoreError::Request {
                        op,
                        key: key.to_owned(),
                        detail: chain.join(": "),
                    }
                }
            }
        }
    }

    async fn put_single(&self, key: &ObjectKey, body: Bytes) -> StoreResult<PutOutcome> {
        let size = body.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .content_length(size as i64)
            .body(SdkBody::from(body))
            .send()
            .await
            .map_err(|e| self.error("put", key.as_str(), e))?;
        Ok(PutOutcome { size, parts: 1 })
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        first: Bytes,
        body: &mut ByteStream,
        rest: BytesMut,
    ) -> StoreResult<PutOutcome> {
        let full = self.full(key.as_str());
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error("start upload of", key.as_str(), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(StoreError::Request {
                op: "start upload of",
                key: key.to_string(),
                detail: "the server returned no upload id".into(),
            });
        };
        let result = self
            .upload_parts(key, &full, &upload_id, first, body, rest)
            .await;
        if result.is_err() {
            // Best effort: a failed abort leaves an incomplete upload the catalog reports.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &ObjectKey,
        full: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut ByteStream,
        mut buf: BytesMut,
    ) -> StoreResult<PutOutcome> {
        let mut in_flight: JoinSet<StoreResult<CompletedPart>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut size = 0u64;
        let mut number: i32 = 0;
        let mut pending = Some(first);
        let mut finished = false;
        loop {
            let part = match pending.take() {
                Some(p) => p,
                None if finished => break,
                None => {
                    // Parts grow past every thousandth so 10,000 parts reach far beyond a TB.
                    let target = self.part_size << ((number / 1000) as u32).min(8);
                    finished = fill(body, &mut buf, target, key).await?;
                    if buf.is_empty() {
                        break;
                    }
                    buf.split().freeze()
                }
            };
            number += 1;
            if number > MAX_PARTS {
                return Err(StoreError::Request {
                    op: "upload",
                    key: key.to_string(),
                    detail: "more than 10,000 parts: raise storage.part_size".into(),
                });
            }
            size += part.len() as u64;
            while in_flight.len() >= self.concurrency {
                done.push(join_part(in_flight.join_next().await)?);
            }
            let req = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .body(SdkBody::from(part));
            let this = self.clone();
            let key = key.to_string();
            in_flight.spawn(async move {
                let out = req
                    .send()
                    .await
                    .map_err(|e| this.error("upload part of", &key, e))?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .build())
            });
        }
        while let Some(joined) = in_flight.join_next().await {
            done.push(join_part(Some(joined))?);
        }
        done.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("complete upload of", key.as_str(), e))?;
        Ok(PutOutcome {
            size,
            parts: number as u32,
        })
    }
}

fn join_part(
    joined: Option<Result<StoreResult<CompletedPart>, tokio::task::JoinError>>,
) -> StoreResult<CompletedPart> {
    match joined {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(StoreError::Request {
            op: "upload",
            key: String::new(),
            detail: e.to_string(),
        }),
        None => unreachable!("join_next is only called with parts in flight"),
    }
}

/// Reads from `body` into `buf` until it holds `target` bytes or the body ends.
/// Returns true when the body has ended.
async fn fill(
    body: &mut ByteStream,
    buf: &mut BytesMut,
    target: usize,
    key: &ObjectKey,
) -> StoreResult<bool> {
    while buf.len() < target {
        match body.try_next().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => return Ok(true),
            Err(source) => {
                return Err(StoreError::Body {
                    key: key.to_string(),
                    source,
                });
            }
        }
    }
    Ok(false)
}

/// The distinct messages along an error's source chain, outermost first.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push(text);
        }
        next = e.source();
    }
    out
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> String {
        let path = if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        };
        if self.endpoint == "AWS S3" {
            path
        } else {
            format!("{path} ({})", self.endpoint)
        }
    }

    async fn list_page(&self, prefix: &str, token: Option<String>) -> StoreResult<ListPage> {
        let full_prefix = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, _) => prefix.to_owned(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => self.full(prefix),
        };
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(full_prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| self.error("list", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: self.strip(o.key()?).to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o.last_modified().and_then(to_chrono),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                last_modified: out.last_modified().and_then(to_chrono),
            })),
            Err(e) => match self.error("head", key.as_str(), e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn get(&self, key: &ObjectKey) -> StoreResult<ByteStream> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .send()
            .await
            .map_err(|e| self.error("get", key.as_str(), e))?;
        Ok(Box::pin(ReaderStream::with_capacity(
            out.body.into_async_read(),
            256 * 1024,
        )))
    }

    async fn get_prefix(&self, key: &ObjectKey, len: u64) -> StoreResult<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let res = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .range(format!("bytes=0-{}", len - 1))
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            // An empty object has no byte 0 to range over.
            Err(e) if e.as_service_error().and_then(|s| s.code()) == Some("InvalidRange") => {
                return Ok(Bytes::new());
            }
            Err(e) => return Err(self.error("get", key.as_str(), e)),
        };
        // A server that ignores the range sends the whole object: stop reading at `len`.
        let mut body = out.body;
        let mut buf = BytesMut::new();
        while (buf.len() as u64) < len {
            match body.try_next().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Err(StoreError::Request {
                        op: "get",
                        key: key.to_string(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        buf.truncate(len as usize);
        Ok(buf.freeze())
    }

    async fn put(&self, key: &ObjectKey, mut body: ByteStream) -> StoreResult<PutOutcome> {
        let mut buf = BytesMut::with_capacity(self.part_size);
        let ended = fill(&mut body, &mut buf, self.part_size, key).await?;
        let first = buf.split().freeze();
        if ended {
            self.put_single(key, first).await
        } else {
            self.put_multipart(key, first, &mut body, buf).await
        }
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> StoreResult<()> {
        for batch in keys.chunks(1000) {
            let ids = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(self.full(k.as_str()))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Request {
                    op: "delete",
                    key: String::new(),
                    detail: e.to_string(),
                })?;
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Request {
                    op: "delete",
                    key: String::new(),
                    detail: e.to_string(),
                })?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.error("delete", batch[0].as_str(), e))?;
            if let Some(err) = out.errors().first() {
                return Err(StoreError::Request {
                    op: "delete",
                    key: err.key().unwrap_or_default().to_owned(),
                    detail: err.message().or(err.code()).unwrap_or("refused").to_owned(),
                });
            }
        }
        Ok(())
    }

    async fn abort_incomplete(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        ObjectKey::new(upload.key.clone())?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(&upload.key))
            .upload_id(&upload.handle)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("abort upload of", &upload.key, e))
    }

    async fn list_incomplete(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        let mut out = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await;
            let page = match res {
                Ok(page) => page,
                // Some S3-compatible stores do not implement listing uploads; then there is
                // nothing we can report.
                Err(e)
                    if matches!(
                        e.as_service_error().and_then(|s| s.code()),
                        Some("NotImplemented")
                    ) =>
                {
                    return Ok(out);
                }
                Err(e) => return Err(self.error("list uploads under", prefix, e)),
            };
            for u in page.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(IncompleteUpload {
                        key: self.strip(key).to_owned(),
                        started: u.initiated().and_then(to_chrono),
                        handle: id.to_owned(),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(out);
            }
        }
    }
}
