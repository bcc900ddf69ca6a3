//! S3 and S3-compatible stores through aws-sdk-s3.

mod copy;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
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
    pub timeouts: Timeouts,
    /// Credentials given by an embedding program; `None` uses the standard chain
    /// (environment, profile, SSO, web identity, IMDS).
    pub credentials: Option<Credentials>,
}

/// Every request has a deadline: an endpoint that stops answering fails the request (which is
/// retried), never the whole job silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open a TCP (and TLS) connection.
    pub connect: Duration,
    /// From sending a request to the first byte of its answer. Uploads of data are exempt
    /// (sending the body counts against this limit in the SDK); `stall` and `attempt` bound
    /// them instead.
    pub read: Duration,
    /// A transfer (upload or download body) that moves no byte for this long is stopped.
    pub stall: Duration,
    /// One attempt of one request, whole.
    pub attempt: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(60),
            stall: Duration::from_secs(30),
            attempt: Duration::from_secs(600),
        }
    }
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
            part_size: 8 * 1024 * 1024,
            upload_concurrency: 4,
            max_attempts: 5,
            timeouts: Timeouts::default(),
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
    timeouts: Timeouts,
    max_attempts: u32,
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
        let t = opts.timeouts;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(opts.force_path_style)
            .request_checksum_calculation(req)
            .response_checksum_validation(resp)
            .retry_config(retry)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(t.connect)
                    .read_timeout(t.read)
                    .operation_attempt_timeout(t.attempt)
                    .build(),
            )
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(t.stall)
                    .build(),
            );
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
            timeouts: opts.timeouts,
            max_attempts: opts.max_attempts.max(1),
        }
    }

    /// Uploads of data: sending the body would count against the read timeout, so only the
    /// stall detection and the attempt timeout apply.
    fn upload_config(&self) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default().timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(self.timeouts.connect)
                .disable_read_timeout()
                .operation_attempt_timeout(self.timeouts.attempt)
                .build(),
        )
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// One page of a listing under `prefix`: continued by `token`, or started after the
    /// full key `start_after`.
    async fn list(
        &self,
        prefix: &str,
        token: Option<String>,
        start_after: Option<String>,
    ) -> StoreResult<ListPage> {
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
            .set_start_after(start_after)
            .send()
            .await
            .map_err(|e| self.error("list", prefix, e))?;
        let mut etags = std::collections::HashMap::new();
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = self.strip(o.key()?).to_owned();
                if let Some(tag) = o.e_tag() {
                    etags.insert(key.clone(), tag.to_owned());
                }
                Some(ObjectMeta {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o.last_modified().and_then(to_chrono),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            // A truncated page without a way on would end the listing early, and a half
            // listing taken for the whole bucket hides backups (and lets prune misjudge them).
            Some(
                out.next_continuation_token()
                    .map(str::to_owned)
                    .ok_or_else(|| StoreError::Request {
                        op: "list",
                        key: prefix.to_owned(),
                        detail: "the server said the listing goes on but gave no token to continue"
                            .into(),
                    })?,
            )
        } else {
            None
        };
        Ok(ListPage {
            objects,
            next,
            etags,
            ..ListPage::default()
        })
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
                detail: format!(
                    "no answer within {}s (storage.attempt_timeout), {} attempt(s)",
                    self.timeouts.attempt.as_secs(),
                    self.max_attempts
                ),
            },
            _ => {
                let chain = error_chain(&err);
                tracing::debug!("{op} {key} failed: {}", chain.join(": "));
                if let Some(detail) = self.timeout_detail(&chain) {
                    return StoreError::Unreachable { endpoint, detail };
                }
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

    /// A timeout or a stalled transfer, said in words and with the setting that bounds it.
    fn timeout_detail(&self, chain: &[String]) -> Option<String> {
        let t = &self.timeouts;
        let said = |needle: &str| {
            chain
                .iter()
                .any(|m| m.to_ascii_lowercase().contains(needle))
        };
        let attempts = self.max_attempts;
        if said("throughput") {
            Some(format!(
                "the transfer stalled: no data moved for {}s (storage.stall_timeout), {attempts} attempt(s)",
                t.stall.as_secs()
            ))
        } else if said("connect timeout") || said("timeout occurred after") && said("connect") {
            Some(format!(
                "no connection within {}s (storage.connect_timeout), {attempts} attempt(s)",
                t.connect.as_secs()
            ))
        } else if said("read timeout") {
            Some(format!(
                "no answer within {}s (storage.read_timeout), {attempts} attempt(s)",
                t.read.as_secs()
            ))
        } else if said("timeout") || said("timed out") {
            Some(format!(
                "timed out ({}), {attempts} attempt(s)",
                chain.last().map_or("", String::as_str)
            ))
        } else {
            None
        }
    }

    /// Reads back what an upload committed: the store must hold exactly `size` bytes under
    /// the entity tag the upload was answered with.
    async fn confirm(&self, key: &ObjectKey, size: u64, etag: Option<&str>) -> StoreResult<()> {
        let Some(meta) = self.head_etag(key).await? else {
            return Err(StoreError::Short {
                key: key.to_string(),
                expected: size,
                actual: 0,
            });
        };
        if meta.0 != size {
            return Err(StoreError::Short {
                key: key.to_string(),
                expected: size,
                actual: meta.0,
            });
        }
        // Stores differ in whether they quote an entity tag; the value is what counts.
        let bare = |t: &str| t.trim_start_matches("W/").trim_matches('"').to_owned();
        if let (Some(sent), Some(held)) = (etag, meta.1.as_deref())
            && bare(sent) != bare(held)
        {
            return Err(StoreError::Request {
                op: "read back",
                key: key.to_string(),
                detail: format!(
                    "the store holds entity tag {held}, the upload was answered with {sent}"
                ),
            });
        }
        Ok(())
    }

    /// Size and entity tag of an object, `None` if it does not exist.
    async fn head_etag(&self, key: &ObjectKey) -> StoreResult<Option<(u64, Option<String>)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag().map(str::to_owned),
            ))),
            Err(e) => match self.error("head", key.as_str(), e) {
                StoreError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn put_single(&self, key: &ObjectKey, body: Bytes) -> StoreResult<PutOutcome> {
        let size = body.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key.as_str()))
            .content_length(size as i64)
            // The store refuses a body that arrives different from what was sent.
            .content_md5(content_md5(&body))
            .body(SdkBody::from(body))
            .customize()
            .config_override(self.upload_config())
            .send()
            .await
            .map_err(|e| self.error("put", key.as_str(), e))?;
        let etag = out.e_tag().map(str::to_owned);
        self.confirm(key, size, etag.as_deref()).await?;
        Ok(PutOutcome {
            size,
            parts: 1,
            etag,
        })
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        first: Bytes,
        parts: &mut Parts<'_>,
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
            .upload_parts(key, &full, &upload_id, first, parts)
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
        parts: &mut Parts<'_>,
    ) -> StoreResult<PutOutcome> {
        let mut in_flight: JoinSet<StoreResult<CompletedPart>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut size = 0u64;
        let mut number: i32 = 0;
        let mut pending = Some(first);
        loop {
            let part = match pending.take() {
                Some(p) => p,
                None => {
                    // Parts grow past every thousandth so 10,000 parts reach far beyond a TB.
                    let target = self.part_size << ((number / 1000) as u32).min(8);
                    match parts.next(target).await? {
                        Some(p) => p,
                        None => break,
                    }
                }
            };
            number += 1;
            if number > MAX_PARTS {
                return Err(StoreError::Request {
                    op: "upload",
                    key: key.to_string(),
                    detail: "more than 10,000 parts: raise storage.part_size_mib".into(),
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
                // The store refuses a part that arrives different from what was sent.
                .content_md5(content_md5(&part))
                .body(SdkBody::from(part))
                .customize()
                .config_override(self.upload_config());
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
        let out = self
            .client
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
        let etag = out.e_tag().map(str::to_owned);
        self.confirm(key, size, etag.as_deref()).await?;
        Ok(PutOutcome {
            size,
            parts: number as u32,
            etag,
        })
    }
}

fn body_stream(body: SdkBody) -> ByteStream {
    Box::pin(ReaderStream::with_capacity(
        body.into_async_read(),
        256 * 1024,
    ))
}

/// A download that resumes where a broken connection left it: a range request from the
/// byte reached, for the same version of the object (`If-Match` its entity tag). The reader
/// sees one unbroken stream, so a hash over it is still over the whole object.
struct Download {
    store: S3Store,
    key: ObjectKey,
    etag: Option<String>,
    len: Option<u64>,
    offset: u64,
    body: ByteStream,
    /// Breaks since the last byte that arrived.
    failures: u32,
    resumes: u32,
}

impl Download {
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            let broke = match self.body.try_next().await {
                Ok(Some(chunk)) => {
                    self.offset += chunk.len() as u64;
                    self.failures = 0;
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.len {
                    Some(len) if self.offset < len => std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the answer ended after {} of {len} bytes", self.offset),
                    ),
                    _ => return Ok(None),
                },
                Err(e) => e,
            };
            self.failures += 1;
            if self.failures >= self.store.max_attempts {
                return Err(std::io::Error::new(
                    broke.kind(),
                    format!(
                        "{broke} (at byte {}, after {} resumed attempt(s))",
                        self.offset, self.resumes
                    ),
                ));
            }
            tracing::warn!(
                "download of {} broke at byte {}: {broke}; resuming",
                self.key,
                self.offset
            );
            let backoff = Duration::from_millis(200 << self.failures.min(6));
            tokio::time::sleep(backoff.mul_f64(0.75 + fastrand::f64() / 2.0)).await;
            self.resumes += 1;
            self.body = resume(&self.store, &self.key, self.offset, self.etag.clone())
                .await
                .map_err(std::io::Error::other)?;
        }
    }
}

/// The rest of an object from `offset`, if it is still the version `etag` names.
async fn resume(
    store: &S3Store,
    key: &ObjectKey,
    offset: u64,
    etag: Option<String>,
) -> StoreResult<ByteStream> {
    let out = store
        .client
        .get_object()
        .bucket(&store.bucket)
        .key(store.full(key.as_str()))
        .range(format!("bytes={offset}-"))
        .set_if_match(etag)
        .send()
        .await
        .map_err(
            |e| match store.error("resume download of", key.as_str(), e) {
                StoreError::Request { op, key, detail }
                    if detail.contains("PreconditionFailed") =>
                {
                    StoreError::Request {
                        op,
                        key,
                        detail: "the object changed while it was being downloaded".into(),
                    }
                }
                other => other,
            },
        )?;
    Ok(body_stream(out.body))
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

/// The base64 MD5 of a request body, for the `Content-MD5` header.
fn content_md5(body: &[u8]) -> String {
    use md5::Digest;
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        md5::Md5::digest(body),
    )
}

/// Cuts an upload body into parts of exact sizes. Each part is allocated at its final size
/// (a buffer grown by doubling could hold twice that, for every part in flight); what a
/// chunk holds beyond a part waits for the next one.
struct Parts<'a> {
    body: &'a mut ByteStream,
    key: &'a ObjectKey,
    carry: Bytes,
    ended: bool,
}

impl Parts<'_> {
    /// The next part of up to `target` bytes; `None` once the body is exhausted.
    async fn next(&mut self, target: usize) -> StoreResult<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(target);
        loop {
            let n = (target - buf.len()).min(self.carry.len());
            buf.extend_from_slice(&self.carry.split_to(n));
            if buf.len() == target || !self.pull().await? {
                break;
            }
        }
        Ok((!buf.is_empty()).then(|| buf.freeze()))
    }

    /// Whether the body has no bytes left.
    async fn at_end(&mut self) -> StoreResult<bool> {
        while self.carry.is_empty() {
            if !self.pull().await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads the next chunk into `carry`; false once the body has ended.
    async fn pull(&mut self) -> StoreResult<bool> {
        if self.ended {
            return Ok(false);
        }
        match self.body.try_next().await {
            Ok(Some(chunk)) => {
                self.carry = chunk;
                Ok(true)
            }
            Ok(None) => {
                self.ended = true;
                Ok(false)
            }
            Err(source) => Err(StoreError::Body {
                key: self.key.to_string(),
                source,
            }),
        }
    }
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
        self.list(prefix, token, None).await
    }

    async fn list_page_after(&self, prefix: &str, after: &str) -> StoreResult<ListPage> {
        self.list(prefix, None, Some(self.full(after))).await
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
        let download = Download {
            store: self.clone(),
            key: key.clone(),
            etag: out.e_tag().map(str::to_owned),
            len: out.content_length().map(|n| n.max(0) as u64),
            offset: 0,
            body: body_stream(out.body),
            failures: 0,
            resumes: 0,
        };
        Ok(Box::pin(futures_util::stream::try_unfold(
            download,
            |mut d| async move { Ok(d.next().await?.map(|chunk| (chunk, d))) },
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
        let mut parts = Parts {
            body: &mut body,
            key,
            carry: Bytes::new(),
            ended: false,
        };
        let first = parts.next(self.part_size).await?.unwrap_or_default();
        if parts.at_end().await? {
            self.put_single(key, first).await
        } else {
            self.put_multipart(key, first, &mut parts).await
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
                        writer_alive: None,
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
