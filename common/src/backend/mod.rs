//! Where repository files live. Every backend stores the same restic layout (`config`,
//! `keys/`, `snapshots/`, `index/`, `locks/`, `data/xx/`) behind one trait.

use std::path::PathBuf;

use crate::error::{Error, Result};

pub mod aws_files;
pub mod http;
pub mod local;
pub mod rest;
pub mod retry;
pub mod s3;
pub mod sigv4;

/// How to reach a remote repository: restic's TLS flags and `-o key=value` options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PEM files of the CAs to trust instead of the built-in roots (`--cacert`).
    pub cacert: Vec<PathBuf>,
    /// Skip certificate verification (`--insecure-tls`), only when asked.
    pub insecure_tls: bool,
    /// `-o key=value` pairs, in order; each backend takes those of its prefix (`rest.`).
    pub extended: Vec<(String, String)>,
}

/// The kinds of repository file; each has its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Snapshot,
    Index,
    Lock,
    Pack,
}

impl FileType {
    /// The directory (or, for `Config`, the file) name in the repository.
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "keys",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Lock => "locks",
            FileType::Pack => "data",
        }
    }

    /// The path of a file of this type inside the repository, '/'-separated.
    pub fn path(self, name: &str) -> String {
        match self {
            FileType::Config => "config".into(),
            FileType::Pack if name.len() >= 2 => format!("data/{}/{}", &name[..2], name),
            other => format!("{}/{}", other.dir(), name),
        }
    }
}

/// One stored file as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

/// A place that holds a repository.
pub trait Backend: Send + Sync {
    /// The repository location, for messages: never with a password in it.
    fn location(&self) -> &str;
    /// Whether the file exists.
    fn exists(&self, t: FileType, name: &str) -> Result<bool>;
    /// Files of one type whose names are 64-digit ids (others are ignored, as restic does).
    fn list(&self, t: FileType) -> Result<Vec<Entry>>;
    /// A whole file (used for small files: config, keys, snapshots, index).
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>>;
    /// Exactly `len` bytes at `offset`, into `buf` (cleared first, capacity reused).
    fn read_range(&self, t: FileType, name: &str, offset: u64, len: u64, buf: &mut Vec<u8>) -> Result<()>;
    /// The size of a file.
    fn size(&self, t: FileType, name: &str) -> Result<u64>;
    /// Stores a file atomically: it appears under its name only once complete. A slice, so a
    /// remote backend can send it again after a failure.
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()>;
    /// Removes a file.
    fn remove(&self, t: FileType, name: &str) -> Result<()>;
    /// Starts a new file of type `t` whose name is known only at the end (a pack, named by
    /// the hash of its bytes). It stays invisible until `Upload::commit`.
    fn upload(&self, t: FileType) -> Result<Box<dyn Upload>>;
    /// Creates the layout of a new repository; fails if one is there already.
    fn create(&self) -> Result<()>;
    /// Removes temporary uploads whose writer died (`kill -9`, a crash, a power loss);
    /// returns how many. Uploads of live processes are left alone.
    fn remove_stale_uploads(&self) -> Result<usize> {
        Ok(0)
    }
}

/// A file being written; `commit` names it and makes it visible, dropping it without
/// `commit` removes it.
pub trait Upload: std::io::Write {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Makes the file durable and visible under `name`.
    fn commit(self: Box<Self>, name: &str) -> Result<()>;
}

/// Opens the backend a repository string names: `/path`, `local:/path`,
/// `rest:http(s)://[user:password@]host[:port]/path/`, `s3:http(s)://host[:port]/bucket[/prefix]`,
/// `s3:s3.amazonaws.com/bucket[/prefix]`.
pub fn open(repo: &str, opts: &Options) -> Result<Box<dyn Backend>> {
    if let Some(path) = repo.strip_prefix("local:") {
        return Ok(Box::new(local::Local::new(path)));
    }
    if let Some(url) = repo.strip_prefix("rest:") {
        let policy = retry::Policy::from_env()?;
        return Ok(Box::new(retry::Retrying::new(rest::Rest::new(url, opts)?, policy)));
    }
    if let Some(rest) = repo.strip_prefix("s3:") {
        let policy = retry::Policy::from_env()?;
        return Ok(Box::new(retry::Retrying::new(s3::S3::new(rest, opts)?, policy)));
    }
    for scheme in ["sftp:", "b2:", "azure:", "gs:", "swift:", "rclone:"] {
        if repo.starts_with(scheme) {
            return Err(Error::Usage(format!(
                "repository {}: the {} backend is not supported yet",
                http::redact(repo),
                scheme.trim_end_matches(':')
            )));
        }
    }
    if repo.is_empty() {
        return Err(Error::Usage("no repository given: use -r/--repo or set RESTIC_REPOSITORY".into()));
    }
    Ok(Box::new(local::Local::new(repo)))
}

/// True when `name` is 64 lower-case hex digits.
pub fn is_id_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
