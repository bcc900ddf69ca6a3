//! Reading a base backup's tar stream as it passes: the size and SHA-256 of every file, and
//! the two small files that describe the backup (`backup_label`, `backup_manifest`). Then
//! the checks `pg_verifybackup` makes, against the manifest PostgreSQL wrote.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const BLOCK: usize = 512;
/// `backup_label` is a few hundred bytes.
const MAX_LABEL: u64 = 64 * 1024;
/// `backup_manifest` is about 200 bytes per file of the cluster.
pub const MAX_MANIFEST: u64 = 64 << 20;

/// The checksum `backup_manifest` gives each file, as `pg_basebackup --manifest-checksums`
/// names it. Base backups ask for CRC32C (PostgreSQL's default): it catches damage as well
/// for this purpose, and SHA-256 cost the server about 2 s per 1.5 GB on the walsender's
/// one core. The backup as a whole, and `backup_manifest` itself, keep their SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileChecksum {
    /// What base backups taken before CRC32C was used record (hence the default).
    #[default]
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "CRC32C")]
    Crc32c,
}

impl FileChecksum {
    /// The name `backup_manifest` and `pg_basebackup` use.
    pub fn name(self) -> &'static str {
        match self {
            FileChecksum::Sha256 => "SHA256",
            FileChecksum::Crc32c => "CRC32C",
        }
    }

    fn hasher(self) -> FileHasher {
        match self {
            FileChecksum::Sha256 => FileHasher::Sha256(Box::new(Sha256::new())),
            FileChecksum::Crc32c => FileHasher::Crc32c(0),
        }
    }
}

enum FileHasher {
    Sha256(Box<Sha256>),
    Crc32c(u32),
}

impl FileHasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            FileHasher::Sha256(h) => h.update(data),
            FileHasher::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
    }

    /// Hex, as `backup_manifest` writes it: PostgreSQL copies a CRC's four bytes from memory,
    /// least significant first on the machines it runs on here.
    fn finish(self) -> String {
        match self {
            FileHasher::Sha256(h) => crate::pipeline::sha256_hex(*h),
            FileHasher::Crc32c(crc) => crate::pipeline::hex(crc.to_le_bytes()),
        }
    }
}

/// What a tar stream held, file by file.
#[derive(Debug, Default)]
pub struct TarSummary {
    /// Which checksum `files` holds.
    pub checksum: FileChecksum,
    /// Path → (size, checksum hex).
    pub files: BTreeMap<String, (u64, String)>,
    pub label: Option<Vec<u8>>,
    pub manifest: Option<Vec<u8>>,
    /// The stream ended with tar's end-of-archive blocks (it was not cut short).
    pub complete: bool,
    pub error: Option<String>,
}

enum State {
    Header,
    Body {
        name: String,
        regular: bool,
        remaining: u64,
        padding: u64,
        hasher: FileHasher,
        size: u64,
        keep: Option<(Vec<u8>, u64)>,
    },
    /// GNU long name: the body is the next entry's name.
    LongName {
        remaining: u64,
        padding: u64,
        name: Vec<u8>,
    },
    End,
}

/// Parses the tar stream it is fed, in pieces of any size.
pub struct TarParser {
    state: State,
    header: Vec<u8>,
    long_name: Option<String>,
    zero_blocks: u32,
    pub summary: TarSummary,
    /// Where to write the files too (a restore), and the file being written.
    root: Option<std::path::PathBuf>,
    out: Option<OutFile>,
}

impl TarParser {
    pub fn new(checksum: FileChecksum) -> Self {
        TarParser {
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            long_name: None,
            zero_blocks: 0,
            summary: TarSummary {
                checksum,
                ..TarSummary::default()
            },
            root: None,
            out: None,
        }
    }
}

/// A writer that parses the tar stream written to it and creates its files below `root`.
/// Only directories and regular files with relative paths are created; anything else (a
/// link, a device, a `..`) stops the restore: a base backup of a cluster without
/// tablespaces holds nothing else.
pub struct Extract(pub TarParser);

impl Extract {
    pub fn new(root: &std::path::Path, checksum: FileChecksum) -> Extract {
        Extract(TarParser {
            root: Some(root.to_path_buf()),
            ..TarParser::new(checksum)
        })
    }
}

impl io::Write for Extract {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.feed(buf);
        match &self.0.summary.error {
            Some(e) => Err(io::Error::other(e.clone())),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A file being restored. The page cache would otherwise hold the whole cluster until the
/// server's start-up fsync writes it all at once; asking the kernel to write each piece as
/// it comes keeps the disk busy while the rest is still being decompressed.
struct OutFile {
    file: std::fs::File,
    written: u64,
    started: u64,
}

/// How much is written before its write-back is started.
const WRITE_BACK: u64 = 8 << 20;

impl OutFile {
    fn new(file: std::fs::File) -> Self {
        OutFile {
            file,
            written: 0,
            started: 0,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.file, data)?;
        self.written += data.len() as u64;
        if self.written - self.started >= WRITE_BACK {
            self.start_write_back();
        }
        Ok(())
    }

    fn start_write_back(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let len = (self.written - self.started) as libc::off64_t;
            // SAFETY: a plain system call on a descriptor this struct owns. It only starts
            // write-back; a failure costs speed, never data (the server syncs at start-up).
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.started = self.written;
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if self.written > self.started {
            self.start_write_back();
        }
    }
}

/// A path from a tar header as a relative path of normal components, or `None`.
fn safe_relative(name: &str) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let path = std::path::Path::new(name.trim_start_matches("./"));
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl TarParser {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.summary.error.is_none() {
            match &mut self.state {
                State::End => return,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == BLOCK {
                        let header = std::mem::take(&mut self.header);
                        self.header.reserve(BLOCK);
                        if let Err(e) = self.on_header(&header) {
                            self.summary.error = Some(e);
                        }
                    }
                }
                State::Body {
                    name,
                    remaining,
                    padding,
                    hasher,
                    keep,
                    ..
                } => {
                    if *remaining > 0 {
                        let take = (*remaining).min(data.len() as u64) as usize;
                        let piece = &data[..take];
                        hasher.update(piece);
                        if let Some(out) = &mut self.out
                            && let Err(e) = out.write_all(piece)
                        {
                            self.summary.error = Some(format!("cannot write {name}: {e}"));
                            return;
                        }
                        if let Some((buf, limit)) = keep {
                            if buf.len() as u64 + take as u64 > *limit {
                                self.summary.error =
                                    Some(format!("{name} is larger than lifeboat reads"));
                                return;
                            }
                            buf.extend_from_slice(piece);
                        }
                        *remaining -= take as u64;
                        data = &data[take..];
                    } else {
                        let take = (*padding).min(data.len() as u64) as usize;
                        *padding -= take as u64;
                        data = &data[take..];
                    }
                    if *remaining == 0 && *padding == 0 {
                        let State::Body {
                            name,
                            regular,
                            hasher,
                            size,
                            keep,
                            ..
                        } = std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!("matched above")
                        };
                        self.out = None;
                        if regular {
                            let sha = hasher.finish();
                            match (name.as_str(), keep) {
                                ("backup_label", Some((buf, _))) => self.summary.label = Some(buf),
                                ("backup_manifest", Some((buf, _))) => {
                                    self.summary.manifest = Some(buf)
                                }
                                _ => {}
                            }
                            self.summary.files.insert(name, (size, sha));
                        }
                    }
                }
                State::LongName {
                    remaining,
                    padding,
                    name,
                } => {
                    if *remaining > 0 {
                        let take = (*remaining).min(data.len() as u64) as usize;
                        name.extend_from_slice(&data[..take]);
                        *remaining -= take as u64;
                        data = &data[take..];
                    } else {
                        let take = (*padding).min(data.len() as u64) as usize;
                        *padding -= take as u64;
                        data = &data[take..];
                    }
                    if *remaining == 0 && *padding == 0 {
                        let State::LongName { name, .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!("matched above")
                        };
                        let text = String::from_utf8_lossy(&name);
                        self.long_name = Some(text.trim_end_matches('\0').to_owned());
                    }
                }
            }
        }
    }

    fn on_header(&mut self, h: &[u8]) -> std::result::Result<(), String> {
        if h.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks == 2 {
                self.summary.complete = true;
                self.state = State::End;
            }
            return Ok(());
        }
        self.zero_blocks = 0;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if octal(&h[148..156]) != Some(sum) {
            return Err("the base backup is not a valid tar stream (header checksum)".into());
        }
        let size = size_field(&h[124..136]).ok_or("a tar header has no valid size")?;
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let kind = h[156];
        if kind == b'L' {
            if size > 4096 {
                return Err("a tar long name is too long".into());
            }
            self.state = State::LongName {
                remaining: size,
                padding,
                name: Vec::new(),
            };
            return Ok(());
        }
        let name = match self.long_name.take() {
            Some(n) => n,
            None => {
                let field = |r: std::ops::Range<usize>| {
                    let raw = &h[r];
                    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                    String::from_utf8_lossy(&raw[..end]).into_owned()
                };
                let name = field(0..100);
                let prefix = if &h[257..262] == b"ustar" {
                    field(345..500)
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        let regular = kind == b'0' || kind == 0;
        if let Some(root) = &self.root {
            let rel = safe_relative(&name)
                .ok_or_else(|| format!("the base backup holds an unsafe path {name:?}"))?;
            let path = root.join(rel);
            let created = match kind {
                b'5' => std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path),
                _ if regular => {
                    if let Some(parent) = path.parent() {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(parent)
                            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                    }
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map(|f| self.out = Some(OutFile::new(f)))
                }
                _ => {
                    return Err(format!(
                        "the base backup holds {name:?}, which is not a file or a directory (tablespaces are not supported)"
                    ));
                }
            };
            created.map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        }
        let keep = match name.as_str() {
            "backup_label" if regular => Some((Vec::new(), MAX_LABEL)),
            "backup_manifest" if regular => Some((Vec::new(), MAX_MANIFEST)),
            _ => None,
        };
        self.state = State::Body {
            name: name.trim_start_matches("./").to_owned(),
            regular,
            remaining: size,
            padding,
            hasher: self.summary.checksum.hasher(),
            size,
            keep,
        };
        if size == 0 && padding == 0 {
            // Entries without a body end here.
            self.finish_empty();
        }
        Ok(())
    }

    fn finish_empty(&mut self) {
        if let State::Body {
            remaining: 0,
            padding: 0,
            ..
        } = &self.state
        {
            self.out = None;
            let State::Body {
                name,
                regular,
                hasher,
                keep,
                ..
            } = std::mem::replace(&mut self.state, State::Header)
            else {
                unreachable!("matched above")
            };
            if regular {
                if let ("backup_label", Some((buf, _))) = (name.as_str(), &keep) {
                    self.summary.label = Some(buf.clone());
                }
                self.summary.files.insert(name, (0, hasher.finish()));
            }
        }
    }
}

fn octal(field: &[u8]) -> Option<u64> {
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // GNU base-256 for sizes past 8 GiB.
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    octal(field)
}

/// A reader that feeds a [`TarParser`] with what passes through it.
pub struct TarTap<R> {
    inner: R,
    parser: Arc<Mutex<TarParser>>,
}

impl<R> TarTap<R> {
    pub fn new(inner: R, checksum: FileChecksum) -> (Self, Arc<Mutex<TarParser>>) {
        let parser = Arc::new(Mutex::new(TarParser::new(checksum)));
        (
            TarTap {
                inner,
                parser: parser.clone(),
            },
            parser,
        )
    }
}

impl<R: Read> Read for TarTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut p) = self.parser.lock() {
            p.feed(&buf[..n]);
        }
        Ok(n)
    }
}

/// `backup_manifest`, the parts lifeboat checks.
#[derive(Debug, Deserialize)]
pub struct PgManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    pub version: u32,
    #[serde(rename = "System-Identifier")]
    pub system_identifier: Option<u64>,
    #[serde(rename = "Files")]
    pub files: Vec<PgFile>,
    #[serde(rename = "WAL-Ranges")]
    pub wal_ranges: Vec<PgWalRange>,
}

#[derive(Debug, Deserialize)]
pub struct PgFile {
    #[serde(rename = "Path")]
    pub path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    pub encoded_path: Option<String>,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    pub algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    pub checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PgWalRange {
    #[serde(rename = "Timeline")]
    pub timeline: u32,
    #[serde(rename = "Start-LSN")]
    pub start_lsn: String,
    #[serde(rename = "End-LSN")]
    pub end_lsn: String,
}

/// Parses `backup_manifest` and checks its own checksum.
pub fn parse_manifest(bytes: &[u8]) -> Result<PgManifest> {
    let bad = |why: String| Error::Invalid(format!("the base backup's backup_manifest {why}"));
    let marker = b"\"Manifest-Checksum\"";
    let at = bytes
        .windows(marker.len())
        .rposition(|w| w == marker)
        .ok_or_else(|| bad("has no Manifest-Checksum".into()))?;
    #[derive(Deserialize)]
    struct Sum {
        #[serde(rename = "Manifest-Checksum")]
        sum: String,
    }
    let sum: Sum = serde_json::from_slice(bytes).map_err(|e| bad(format!("is not JSON: {e}")))?;
    let actual = crate::pipeline::hex(Sha256::digest(&bytes[..at]));
    if !actual.eq_ignore_ascii_case(&sum.sum) {
        return Err(bad(format!(
            "does not match its own checksum ({} recorded, {actual} computed)",
            sum.sum
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| bad(format!("cannot be read: {e}")))
}

/// The checks of `pg_verifybackup` over what a tar stream held: every file the manifest
/// lists is there with its size and checksum, and nothing else is. Returns the file count.
pub fn verify_files(manifest: &PgManifest, tar: &TarSummary) -> Result<usize> {
    let mut problems = Vec::new();
    let mut listed = std::collections::BTreeSet::new();
    for f in &manifest.files {
        let path = match (&f.path, &f.encoded_path) {
            (Some(p), _) => p.clone(),
            (None, Some(hex)) => decode_hex(hex).unwrap_or_default(),
            (None, None) => {
                problems.push("a file without a path".to_owned());
                continue;
            }
        };
        listed.insert(path.clone());
        match tar.files.get(&path) {
            None => problems.push(format!("{path} is missing")),
            Some((size, _)) if *size != f.size => problems.push(format!(
                "{path} has {size} bytes, the manifest says {}",
                f.size
            )),
            Some((_, sum)) => {
                let alg = tar.checksum.name();
                match (&f.algorithm, &f.checksum) {
                    (Some(a), Some(want)) if a == alg => {
                        if !sum.eq_ignore_ascii_case(want) {
                            problems.push(format!("{path} has a different {alg} than the manifest"))
                        }
                    }
                    // The manifest is the one this backup recorded (its SHA-256 is checked),
                    // so another algorithm, or none, means it is not the backup we took.
                    (a, _) => problems.push(format!(
                        "{path} has checksum algorithm {} in the manifest, not {alg}",
                        a.as_deref().unwrap_or("none")
                    )),
                }
            }
        }
    }
    for path in tar.files.keys() {
        if path != "backup_manifest" && !listed.contains(path) {
            problems.push(format!("{path} is not in the manifest"));
        }
    }
    if problems.is_empty() {
        Ok(listed.len())
    } else {
        let n = problems.len();
        problems.truncate(3);
        Err(Error::Invalid(format!(
            "the base backup does not match its backup_manifest ({n} problem(s)): {}",
            problems.join("; ")
        )))
    }
}

fn decode_hex(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000600");
        let s = format!("{size:011o}");
        h[124..135].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h[257..262].copy_from_slice(b"ustar");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(header("base/", 0, b'5'));
        for (name, data) in files {
            out.extend(header(name, data.len() as u64, b'0'));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        }
        out.extend(vec![0u8; 2 * BLOCK]);
        out
    }

    #[test]
    fn files_are_hashed_in_any_piece_size_and_checked_against_the_manifest() {
        let body = vec![7u8; 1000];
        let files: Vec<(String, String)> =
            [("PG_VERSION", &b"15\n"[..]), ("base/1/1259", &body[..])]
                .iter()
                .map(|(n, d)| (n.to_string(), crate::pipeline::hex(Sha256::digest(d))))
                .collect();
        let mut text = String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
        text += &format!(
            "{{ \"Path\": \"PG_VERSION\", \"Size\": 3, \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{}\" }},\n",
            files[0].1
        );
        text += &format!(
            "{{ \"Path\": \"base/1/1259\", \"Size\": 1000, \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": \"{}\" }}\n],\n",
            files[1].1
        );
        text += "\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
        let sum = crate::pipeline::hex(Sha256::digest(text.as_bytes()));
        text += &format!("\"Manifest-Checksum\": \"{sum}\"}}\n");
        let stream = tar(&[
            ("backup_label", b"START WAL LOCATION: 0/2000028\n"),
            ("PG_VERSION", b"15\n"),
            ("base/1/1259", &body),
            ("backup_manifest", text.as_bytes()),
        ]);
        for piece in [1, 7, 512, 100_000] {
            let mut p = TarParser::new(FileChecksum::Sha256);
            for c in stream.chunks(piece) {
                p.feed(c);
            }
            assert!(p.summary.complete, "piece {piece}");
            assert_eq!(p.summary.error, None);
            let m = parse_manifest(p.summary.manifest.as_ref().unwrap()).unwrap();
            assert_eq!(m.wal_ranges[0].end_lsn, "0/2000100");
            // backup_label is not in this hand-made manifest: reported, as pg_verifybackup would.
            let err = verify_files(&m, &p.summary).unwrap_err().to_string();
            assert!(err.contains("backup_label is not in the manifest"), "{err}");
            p.summary.files.remove("backup_label");
            assert_eq!(verify_files(&m, &p.summary).unwrap(), 2);
            p.summary.files.get_mut("base/1/1259").unwrap().1 = "00".into();
            assert!(verify_files(&m, &p.summary).is_err());
        }
        // A cut stream is not complete; a manifest edited without its checksum is refused.
        let mut p = TarParser::new(FileChecksum::Sha256);
        p.feed(&stream[..stream.len() - 2 * BLOCK]);
        assert!(!p.summary.complete);
        let edited = text.replace("\"Size\": 1000", "\"Size\": 1001");
        assert!(parse_manifest(edited.as_bytes()).is_err());
    }

    #[test]
    fn crc32c_sums_read_as_backup_manifest_writes_them_and_the_algorithm_must_match() {
        // CRC-32C's check value, 0xE3069283, as PostgreSQL hex-encodes its bytes in memory.
        let mut h = FileChecksum::Crc32c.hasher();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.finish(), "839206e3");
        let manifest = |alg: &str, sum: &str| {
            let mut text =
                String::from("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
            text += &format!(
                "{{ \"Path\": \"PG_VERSION\", \"Size\": 9, \"Checksum-Algorithm\": \"{alg}\", \"Checksum\": \"{sum}\" }}\n],\n"
            );
            text += "\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n";
            let check = crate::pipeline::hex(Sha256::digest(text.as_bytes()));
            text += &format!("\"Manifest-Checksum\": \"{check}\"}}\n");
            parse_manifest(text.as_bytes()).unwrap()
        };
        let mut p = TarParser::new(FileChecksum::Crc32c);
        p.feed(&tar(&[("PG_VERSION", b"123456789")]));
        assert!(p.summary.complete);
        assert_eq!(
            verify_files(&manifest("CRC32C", "839206E3"), &p.summary).unwrap(),
            1
        );
        assert!(verify_files(&manifest("CRC32C", "00000000"), &p.summary).is_err());
        // A manifest naming another algorithm, or none, is not the backup lifeboat took.
        for alg in ["SHA256", "NONE"] {
            let err = verify_files(&manifest(alg, "00"), &p.summary).unwrap_err();
            assert!(err.to_string().contains("checksum algorithm"), "{err}");
        }
    }
}
