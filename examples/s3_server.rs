//! An S3 protocol server over a directory (s3s-fs), for benchmarks that need an S3 endpoint
//! outside the measured process: `cargo run --release --example s3_server -- DIR PORT`.
//! Credentials: access key `bench`, secret `bench-secret`; bucket: every directory in DIR.
//!
//! Every operation is s3s-fs's but ListObjectsV2 without a delimiter (how lifeboat lists),
//! which s3s-fs answers by walking, stat'ing and sorting the whole bucket for every page:
//! listing a big bucket page by page took a time quadratic in its size, and a benchmark of it
//! measured the server. Here a listing is a depth-first walk that yields keys in order (each
//! directory's entries sorted with `/` appended to the names of directories, so `a-b` <
//! `a/x` < `a0`); a walk that resumes after a key opens only the directories on that key's
//! path, and the walk a page stopped in is kept for the request that continues it, so a
//! listing page by page reads each directory once. A kept walk is used only if none of its
//! directories has changed since it read them (and they had not changed for a while before):
//! else the page is listed afresh. Each object is listed as s3s-fs lists it: key, size and
//! modification time (s3s-fs lists no ETag), the same keys in the same pages.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: s3_server DIR PORT")?;
    let port: u16 = args.next().ok_or("usage: s3_server DIR PORT")?.parse()?;
    let fs = s3s_fs::FileSystem::new(&dir).map_err(|e| format!("{dir}: {e:?}"))?;
    // The root as s3s-fs resolves it.
    let root = std::env::current_dir()?.join(&dir).canonicalize()?;
    let mut builder = S3ServiceBuilder::new(Server {
        fs,
        root,
        cursors: Mutex::default(),
    });
    builder.set_auth(SimpleAuth::from_single("bench", "bench-secret"));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            let _ = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// s3s-fs, with a listing of its own.
struct Server {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    /// Walks a page stopped in, newest last, for the requests that continue them.
    cursors: Mutex<Vec<Cursor>>,
}

/// Where a listing of `bucket` under `prefix` stopped: its next page comes with `token`.
struct Cursor {
    bucket: String,
    prefix: String,
    token: String,
    walk: Walk,
}

/// How many walks are kept (a listing continued by nobody is dropped in time).
const CURSORS: usize = 16;

/// `impl S3 for Server`: the operations named are s3s-fs's; the rest follow.
macro_rules! forward_to_fs {
    ($($op:ident($input:ty) -> $output:ty;)* { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl S3 for Server {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($own)*
        }
    };
}

forward_to_fs! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    // s3s-fs has none: the trait's NotImplemented, as before.
    list_multipart_uploads(ListMultipartUploadsInput) -> ListMultipartUploadsOutput;
    {
        async fn list_objects_v2(
            &self,
            req: S3Request<ListObjectsV2Input>,
        ) -> S3Result<S3Response<ListObjectsV2Output>> {
            if req.input.delimiter.is_some() {
                return self.fs.list_objects_v2(req).await;
            }
            let dir = self.bucket_dir(&req.input.bucket)?;
            let input = req.input;
            let prefix = input
                .prefix
                .as_deref()
                .unwrap_or("")
                .trim_start_matches('/')
                .to_owned();
            let kept = self.take_cursor(&input, &prefix);
            let (output, walk) =
                tokio::task::spawn_blocking(move || list_page(&dir, &prefix, kept, input))
                    .await
                    .map_err(S3Error::internal_error)??;
            if let (Some(walk), Some(token)) = (walk, &output.next_continuation_token) {
                let cursor = Cursor {
                    bucket: output.name.clone().unwrap_or_default(),
                    prefix: walk.prefix.clone(),
                    token: token.clone(),
                    walk,
                };
                let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
                if cursors.len() == CURSORS {
                    cursors.remove(0);
                }
                cursors.push(cursor);
            }
            Ok(S3Response::new(output))
        }

        /// ListObjects (v1) as s3s-fs answers it, through the listing above.
        async fn list_objects(
            &self,
            req: S3Request<ListObjectsInput>,
        ) -> S3Result<S3Response<ListObjectsOutput>> {
            let v2 = self.list_objects_v2(req.map_input(Into::into)).await?;
            Ok(v2.map_output(|v2| ListObjectsOutput {
                contents: v2.contents,
                common_prefixes: v2.common_prefixes,
                delimiter: v2.delimiter,
                encoding_type: v2.encoding_type,
                name: v2.name,
                prefix: v2.prefix,
                max_keys: v2.max_keys,
                is_truncated: v2.is_truncated,
                next_marker: v2.next_continuation_token,
                ..Default::default()
            }))
        }
    }
}

impl Server {
    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        // One directory in the root (s3s has checked the name; this keeps it one).
        if bucket.is_empty() || bucket.contains('/') || bucket == "." || bucket == ".." {
            return Err(s3_error!(InvalidBucketName));
        }
        let dir = self.root.join(bucket);
        if !dir.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(dir)
    }

    /// The walk the page before this one stopped in, if kept.
    fn take_cursor(&self, input: &ListObjectsV2Input, prefix: &str) -> Option<Walk> {
        let token = input.continuation_token.as_deref()?;
        // A start-after past the token moves where the page begins.
        if input.start_after.as_deref().is_some_and(|sa| sa > token) {
            return None;
        }
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        let at = cursors
            .iter()
            .position(|c| c.bucket == input.bucket && c.prefix == prefix && c.token == token)?;
        Some(cursors.remove(at).walk)
    }
}

/// One page of a listing without a delimiter, with what s3s-fs puts in it, continuing `kept`
/// when it is still current; and the walk to keep if the listing goes on.
fn list_page(
    bucket: &Path,
    prefix: &str,
    kept: Option<Walk>,
    input: ListObjectsV2Input,
) -> S3Result<(ListObjectsV2Output, Option<Walk>)> {
    // As s3s-fs reads them: the later of the token and start-after is where to resume.
    let after = match (
        input.continuation_token.as_deref(),
        input.start_after.as_deref(),
    ) {
        (Some(ct), Some(sa)) => Some(ct.max(sa)),
        (ct, sa) => ct.or(sa),
    };
    let max_keys = input.max_keys.unwrap_or(1000);
    let page_len = usize::try_from(max_keys).unwrap_or(1000);

    let mut walk = match kept.filter(Walk::current) {
        Some(walk) => walk,
        None => Walk::new(bucket, prefix, after).map_err(S3Error::internal_error)?,
    };
    let mut contents = Vec::new();
    while contents.len() < page_len {
        match walk.next_object().map_err(S3Error::internal_error)? {
            Some(object) => contents.push(object),
            None => break,
        }
    }
    // One more object says whether the listing goes on; it is put back for the next page.
    let is_truncated = page_len > 0
        && walk
            .next_object()
            .map_err(S3Error::internal_error)?
            .is_some();
    let next_continuation_token = if is_truncated {
        walk.unread();
        contents.last().and_then(|o: &Object| o.key.clone())
    } else {
        None
    };
    let key_count = i32::try_from(contents.len()).map_err(S3Error::internal_error)?;
    let output = ListObjectsV2Output {
        key_count: Some(key_count),
        max_keys: Some(max_keys),
        is_truncated: Some(is_truncated),
        contents: (!contents.is_empty()).then_some(contents),
        continuation_token: input.continuation_token,
        next_continuation_token,
        delimiter: input.delimiter,
        encoding_type: input.encoding_type,
        name: Some(input.bucket),
        prefix: input.prefix,
        start_after: input.start_after,
        ..Default::default()
    };
    let keep = (is_truncated && walk.settled()).then_some(walk);
    Ok((output, keep))
}

/// A depth-first walk of a bucket directory that yields its files in key order: each open
/// directory's entries wait in a min-heap, a directory's name with `/` appended. Only entries
/// that may hold keys under the prefix and after the resume key are kept, so resuming opens
/// just the directories on the resume key's path (and heapifying a big directory is linear:
/// only the entries a page takes are sorted).
struct Walk {
    prefix: String,
    after: Option<String>,
    levels: Vec<Level>,
    /// The name of the file last yielded, in the deepest level.
    last: Option<String>,
}

struct Level {
    dir: PathBuf,
    /// The directory's key prefix: empty for the bucket, else ending in `/`.
    rel: String,
    entries: BinaryHeap<Reverse<String>>,
    /// The directory's modification time before it was read.
    modified: SystemTime,
    /// Whether it had not changed for a while when read: a change since would show in its
    /// modification time, even one in the same tick of the file system's clock.
    settled: bool,
}

/// How long a directory must have been left alone for a change to it to show as a new
/// modification time (far more than a file system clock's tick).
const SETTLE: Duration = Duration::from_secs(2);

impl Walk {
    fn new(bucket: &Path, prefix: &str, after: Option<&str>) -> io::Result<Walk> {
        let mut walk = Walk {
            prefix: prefix.to_owned(),
            after: after.map(str::to_owned),
            levels: Vec::new(),
            last: None,
        };
        walk.open(bucket.to_owned(), String::new())?;
        Ok(walk)
    }

    /// Whether keys at or below `full` (a file's key, or a directory's ending in `/`) may be
    /// listed.
    fn wanted(&self, full: &str) -> bool {
        let is_dir = full.ends_with('/');
        let under_prefix =
            full.starts_with(&self.prefix) || (is_dir && self.prefix.starts_with(full));
        let past = match &self.after {
            None => true,
            Some(after) => full > after.as_str() || (is_dir && after.starts_with(full)),
        };
        under_prefix && past
    }

    fn open(&mut self, dir: PathBuf, rel: String) -> io::Result<()> {
        let modified = std::fs::metadata(&dir)?.modified()?;
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age > SETTLE);
        let mut entries = Vec::new();
        let mut full = String::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            // s3s-fs lists no key with a name that is not UTF-8 on its path.
            let Ok(mut sort) = entry.file_name().into_string() else {
                continue;
            };
            // Anything but a directory (links are not followed) is an object, as in s3s-fs.
            if entry.file_type()?.is_dir() {
                sort.push('/');
            }
            full.clear();
            full.push_str(&rel);
            full.push_str(&sort);
            if self.wanted(&full) {
                entries.push(Reverse(sort));
            }
        }
        self.levels.push(Level {
            dir,
            rel,
            entries: BinaryHeap::from(entries),
            modified,
            settled,
        });
        Ok(())
    }

    fn next_object(&mut self) -> io::Result<Option<Object>> {
        self.last = None;
        loop {
            let Some(level) = self.levels.last_mut() else {
                return Ok(None);
            };
            let Some(Reverse(sort)) = level.entries.pop() else {
                self.levels.pop();
                continue;
            };
            let full = format!("{}{sort}", level.rel);
            if let Some(name) = sort.strip_suffix('/') {
                let dir = level.dir.join(name);
                match self.open(dir, full) {
                    Ok(()) => {}
                    // Removed (or replaced by a file) since its directory was read.
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let meta = match std::fs::symlink_metadata(level.dir.join(&sort)) {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            self.last = Some(sort);
            return Ok(Some(Object {
                key: Some(full),
                size: Some(i64::try_from(meta.len()).map_err(io::Error::other)?),
                last_modified: Some(Timestamp::from(meta.modified()?)),
                ..Default::default()
            }));
        }
    }

    /// Puts the object last yielded back, to be yielded (stat'ed anew) next.
    fn unread(&mut self) {
        if let (Some(sort), Some(level)) = (self.last.take(), self.levels.last_mut()) {
            level.entries.push(Reverse(sort));
        }
    }

    /// Whether every open directory was read when it had been left alone for a while.
    fn settled(&self) -> bool {
        self.levels.iter().all(|l| l.settled)
    }

    /// Whether no open directory has changed since it was read: the walk still lists what
    /// a fresh one would.
    fn current(&self) -> bool {
        self.levels.iter().all(|l| {
            std::fs::metadata(&l.dir)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t == l.modified)
        })
    }
}

fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
