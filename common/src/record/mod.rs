//! The NDJSON records the tools exchange, and the reader and writer that frame them.
//!
//! Every stream opens with a `header` record and closes with an `end` record that counts the
//! records between them; a stream without its `end` means the stage before died. The writer
//! always puts `"type"` first, so the reader can dispatch on the tag without parsing the whole
//! line, and payload bytes are written straight into the line as base64 (no JSON escaping is
//! ever needed for base64, so serde's escape scan over megabytes is skipped).
//! The full description for users is the man page `sluice-ndjson(5)`.
//!
//! Each record type is a struct here, bound to its tag once in [`records!`]; the writer takes
//! the struct ([`Writer::write`]), the reader hands out [`Line`]s that know their tag and parse
//! into the struct a tool asks for.

mod payload;
mod reader;
mod writer;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::id::Id;
pub use crate::index::BlobLoc;
use crate::snapshot::Counts;

pub use crate::sys::enlarge_pipe;
pub use payload::{decode_b64, encode_b64};
pub use reader::{Line, Reader, StdinFd};
pub use writer::{FlushBeforeWait, StdoutFd, Writer};

/// An input silent this long has paused: a stage flushes its output then, rather than for
/// every short gap (a write per small record would cost more than it saves).
pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether the input on `fd` has nothing to read for [`PAUSE`]; never for `None`.
fn paused(fd: Option<i32>) -> bool {
    fd.is_some_and(|fd| !crate::sys::input_within(fd, PAUSE))
}

/// The `format` named in every header.
pub const FORMAT: &str = "sluice-ndjson";
/// The major version of the record format; a reader rejects any other major version.
pub const VERSION: u32 = 1;
/// The longest line a reader accepts (a blob of payload plus its envelope, base64-encoded).
pub const MAX_LINE: usize = 1 << 30;

/// A record type: a struct that is written as one line with `"type": TAG` first.
pub trait Record: Serialize {
    const TAG: Tag;
}

/// A record type whose line may end in a `"data"` payload (see [`Writer::write_with_data`]
/// and [`Line::payload`]). The struct itself never holds the payload.
pub trait WithData: Record {}

/// Declares every record type once: its tag, its wire name and its struct, and whether its
/// lines carry a `data` payload. Everything that lists record types is generated from this.
macro_rules! records {
    ($( $(#[$doc:meta])* $tag:ident = $name:literal => $ty:ty $([$data:ident])? ),* $(,)?) => {
        /// The `type` of a record line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Tag {
            $( $(#[$doc])* $tag, )*
        }

        /// The record type names, for messages and documentation checks.
        pub const TYPES: &[&str] = &[$($name),*];

        impl Tag {
            /// Every tag, in the order of [`TYPES`].
            pub const ALL: &'static [Tag] = &[$(Tag::$tag),*];

            /// The name written in the `type` field.
            pub fn name(self) -> &'static str {
                match self {
                    $( Tag::$tag => $name, )*
                }
            }

            /// The tag named `name`, if there is one.
            pub fn from_name(name: &str) -> Option<Tag> {
                match name {
                    $( $name => Some(Tag::$tag), )*
                    _ => None,
                }
            }

            /// Whether lines of this type may end in a `"data"` payload.
            pub fn carries_data(self) -> bool {
                match self {
                    $( Tag::$tag => records!(@data $($data)?), )*
                }
            }
        }

        $(
            impl Record for $ty {
                const TAG: Tag = Tag::$tag;
            }
            $( records!(@with $data $ty); )?
        )*
    };
    (@data data) => { true };
    (@data) => { false };
    (@with data $ty:ty) => { impl WithData for $ty {} };
}

records! {
    /// Opens every stream.
    Header = "header" => Header,
    /// Closes every stream.
    End = "end" => End,
    /// One snapshot, from `snapshots`.
    Snapshot = "snapshot" => SnapshotRecord,
    /// One node of a tree, from `walk`, `fetch-pack` and `chunk`.
    Node = "node" => NodeRecord,
    /// An encrypted blob, from `fetch-pack`.
    Blob = "blob" => BlobRecord [data],
    /// A whole pack's encrypted header, from `fetch-pack --pack` and `pack`.
    PackHeader = "pack_header" => PackHeaderRecord,
    /// A piece of a whole pack, from `fetch-pack --pack` and `pack`.
    PackData = "pack_data" => PackDataRecord [data],
    /// A node restored by `unpack`.
    Restored = "restored" => Restored<'_>,
    /// `verify`'s verdict on one file.
    Verdict = "verdict" => Verdict,
    /// `unpack --list`'s verdict on one blob.
    BlobCheck = "blob_check" => BlobCheck,
    /// What a backup is of, from `chunk`.
    Source = "source" => SourceRecord,
    /// A piece of plaintext, from `chunk`.
    Chunk = "chunk" => ChunkRecord [data],
    /// A repository file other than a pack, from `pack`.
    RepoFile = "repo_file" => RepoFileRecord [data],
    /// A backup's statistics, from `pack`.
    Summary = "summary" => SummaryRecord,
    /// A blob `fetch-pack` could not read.
    BlobFailed = "blob_failed" => BlobFailedRecord,
    /// What a backup relies on being in the repository, from `pack`.
    Requires = "requires" => RequiresRecord,
    /// Something in the restore target that is not in the snapshot, from `walk --delete`.
    Delete = "delete" => DeleteRecord,
    /// What `unpack` did or, with `--dry-run`, would do to one path.
    Action = "action" => ActionRecord,
    /// `check-repo`'s verdict on one repository object.
    Checked = "checked" => Checked,
    /// How much the stream holds, for progress: from `walk` before its nodes, from `chunk`
    /// after its scan.
    Totals = "totals" => TotalsRecord,
    /// How far `pack` got, for `push`'s progress.
    Progress = "progress" => ProgressRecord,
}

/// `check-repo`'s verdict on one object of the repository: an index file, a pack, a
/// snapshot, or (only when something is wrong with it) a tree. Neither `error` nor `warning`
/// means the object is sound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checked {
    /// "index", "pack", "snapshot" or "tree".
    pub object: String,
    pub id: Id,
    /// What is wrong: the repository has an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Something to tidy that loses nothing (a pack no index names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// How much a stream holds, for the stage that draws progress: `walk` writes it before the
/// first node, `chunk` once its scan is done. Optional: a stream without it still works.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TotalsRecord {
    /// Node records of the stream (what a restore counts as its files).
    pub nodes: u64,
    /// Regular files among them.
    pub files: u64,
    /// Bytes of those files, each hard-linked file once.
    pub bytes: u64,
}

/// How far `pack` got, sent now and then for `push`'s progress: files done and their bytes
/// (with the bytes of the file being read so far), and bytes added to the repository.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgressRecord {
    pub files: u64,
    pub bytes: u64,
    pub added: u64,
}

/// Opens every stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The tool that wrote the stream.
    pub producer: String,
    /// The snapshot the stream came from, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Id>,
    /// The repository the stream was made for: the SHA-256 of its `config` file as stored
    /// (it holds the repository id; hashing the stored bytes needs no key). `pack` sets it
    /// and `push` refuses a stream made for another repository; `walk` sets it, and
    /// `fetch-pack` and `unpack` refuse a stream walked in another repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Id>,
    /// The name of the directory the stream's paths are relative to, when `walk` selected
    /// one below the snapshot's root (`walk latest:/etc` → `etc`); `unpack --tar` starts
    /// its entry names with it, as `restic dump` does. `fetch-pack` copies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl Header {
    /// Refuses a stream that names another repository than the one whose [`binding`] is
    /// given, before anything is read or written for it: its packs are not there, or hold
    /// other blobs under another key, and every file would fail on its own with a message
    /// that blames the data. A stream that names none (made by hand) passes.
    ///
    /// [`binding`]: crate::repo::binding
    pub fn check_repository(&self, binding: Id, location: &str) -> Result<()> {
        match self.repository {
            Some(r) if r != binding => Err(Error::Usage(format!(
                "the stream was walked in another repository, not {location} (its config differs): give every stage the same repository"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a stream straight from `walk` where blob data is needed: it carries none, so
    /// a restore stopped at its first file with a message about missing blobs, and
    /// `unpack --list` checked nothing and passed.
    pub fn check_fetched(&self) -> Result<()> {
        if self.producer == "walk" {
            return Err(Error::Usage(
                "the stream comes straight from walk and carries no blob data: put fetch-pack between them (walk … | fetch-pack | unpack …)".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a stream that has been through `fetch-pack` where `fetch-pack` reads: its
    /// blob records would pass through beside the ones fetched again, every file would get
    /// each blob twice, and unpack would stop at the second.
    pub fn check_not_fetched(&self) -> Result<()> {
        if self.producer == "fetch-pack" {
            return Err(Error::Usage(
                "the stream has been through fetch-pack already: give it to unpack".into(),
            ));
        }
        Ok(())
    }
}

/// Closes every stream; `records` counts the records between header and end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    pub records: u64,
}

/// One node of a snapshot tree, with the restic node JSON carried exactly as the tree stored it.
/// A `node` record (walk's output); [`Restored`] writes the same fields as a `restored` record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Path relative to the restore root, '/'-separated; lossy where the bytes are not UTF-8.
    pub path: String,
    /// Base64 of the raw path bytes, present only when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_raw: Option<String>,
    /// The restic node, byte for byte as in its tree blob.
    pub node: Box<RawValue>,
    /// For files: where each content blob lives, in content order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<BlobLoc>,
    /// For a file that is another name of an earlier file of the stream (same inode and
    /// device): that file's path. Its blobs are listed but not fetched again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<String>,
    /// Base64 of the hard link's raw path bytes, when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink_raw: Option<String>,
    /// Restore only, from `walk --target`: the indexes (into `blobs`, ascending) of the blobs
    /// that need not travel. The target's file at `path` holds them at their offsets, or the
    /// restore mode keeps that file as it is. `fetch-pack` sends no blob record for them;
    /// `unpack` takes them from the target's file and hashes them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_target: Vec<u32>,
    /// Backup only: "new", "changed" or "unmodified" against the parent snapshot (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Backup only: the same directory's tree in the parent snapshot, to count it as
    /// changed or unmodified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tree: Option<Id>,
}

/// A node `unpack` restored: written as a `restored` record with the fields of its
/// [`NodeRecord`]; read back with `line.parse::<NodeRecord>()`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(transparent)]
pub struct Restored<'a>(pub &'a NodeRecord);

impl NodeRecord {
    /// The record of `node` at the path `rel` (raw bytes) and nothing more: no blobs, no
    /// link, nothing in the target, no backup status; the callers fill in what they have.
    pub fn new(rel: &[u8], node: Box<RawValue>) -> NodeRecord {
        let (path, path_raw) = text_and_raw(rel);
        NodeRecord {
            path,
            path_raw,
            node,
            blobs: Vec::new(),
            hardlink: None,
            hardlink_raw: None,
            in_target: Vec::new(),
            status: None,
            parent_tree: None,
        }
    }

    /// The raw bytes of `path`.
    pub fn path_bytes(&self) -> Result<Vec<u8>> {
        raw_or_text(&self.path, self.path_raw.as_deref())
    }

    /// Checks a file record's `blobs` against the node it describes: the same ids as the
    /// node's `content`, in order, whose plaintext lengths add up to the node's `size`.
    /// A stream is untrusted input; without this a storage host could drop or swap blobs.
    pub fn check_content(&self, node: &crate::node::Node) -> Result<()> {
        let content = node.content.as_deref().unwrap_or(&[]);
        if content.len() != self.blobs.len() || content.iter().zip(&self.blobs).any(|(id, b)| *id != b.id) {
            return Err(Error::stream(format!(
                "the record lists {} blobs that differ from the node's {} content ids",
                self.blobs.len(),
                content.len()
            )));
        }
        let total: u64 = self.blobs.iter().map(|b| b.plain_len()).sum();
        if total != node.size {
            return Err(Error::stream(format!(
                "its blobs hold {total} bytes but the node's size is {}",
                node.size
            )));
        }
        Ok(())
    }

    /// Checks `in_target` against `blobs`: ascending indexes, each naming one of them. A
    /// stream that fails this is malformed: `fetch-pack` and `unpack` would not agree on
    /// which blob records follow.
    pub fn check_in_target(&self) -> Result<()> {
        let ok = self.in_target.windows(2).all(|w| w[0] < w[1])
            && self.in_target.last().is_none_or(|&i| (i as usize) < self.blobs.len());
        match ok {
            true => Ok(()),
            false => Err(Error::stream(format!(
                "{}: in_target must list ascending indexes below {}",
                self.path,
                self.blobs.len()
            ))),
        }
    }

    /// Whether blob `i` of `blobs` travels in the stream (is not in `in_target`).
    pub fn travels(&self, i: usize) -> bool {
        self.in_target.binary_search(&(i as u32)).is_err()
    }

    /// The raw bytes of `hardlink`, if any.
    pub fn hardlink_bytes(&self) -> Result<Option<Vec<u8>>> {
        match &self.hardlink {
            None => Ok(None),
            Some(h) => raw_or_text(h, self.hardlink_raw.as_deref()).map(Some),
        }
    }
}

/// A path travels as text, with the exact bytes in a `*_raw` base64 field when they are not
/// UTF-8; this picks the exact bytes.
pub fn raw_or_text(text: &str, raw: Option<&str>) -> Result<Vec<u8>> {
    match raw {
        None => Ok(text.as_bytes().to_vec()),
        Some(r) => {
            let mut out = Vec::new();
            decode_b64(r, &mut out)?;
            Ok(out)
        }
    }
}

/// The text and, when not UTF-8, the base64 form of raw path bytes.
pub fn text_and_raw(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(encode_b64(bytes))),
    }
}

/// An encrypted blob as fetched from its pack. Its line carries the encrypted bytes (IV,
/// ciphertext, MAC) as a `data` payload, which is absent when the same blob was already sent
/// earlier in this stream: the receiver has it and copies it from where it put it.
///
/// Transparent rather than `flatten`ed: the wire format is the same (the location's fields
/// at the top level), and a flattened struct is parsed through an intermediate buffer, a
/// cost paid on every blob of a restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct BlobRecord {
    pub loc: BlobLoc,
}

/// The encrypted header of a whole pack streamed by `fetch-pack --pack`; precedes its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackHeaderRecord {
    /// Backup only: which of `pack`'s open packs this closes (see `pack_data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The pack's name when it is an id (always, for packs read from a repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Id>,
    /// The whole pack file's size.
    pub size: u64,
    /// Base64 of the encrypted header (without the trailing 4-byte length).
    pub header: String,
}

/// A piece of a whole pack's blob area, in order, from `fetch-pack --pack`; the bytes are
/// the line's `data` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackDataRecord {
    /// Backup only: which open pack the bytes belong to (`pack` fills data and tree packs
    /// at the same time); absent in `fetch-pack --pack` streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub offset: u64,
}

/// What a backup is of: `chunk`'s first record, which `pack` turns into the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The backup targets as absolute paths.
    pub paths: Vec<String>,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// When the backup started (RFC 3339, as restic writes it).
    pub time: String,
}

/// A piece of file content cut by the chunker, from `chunk` to `pack`; the plaintext is the
/// line's `data` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// SHA-256 of the bytes: the blob id.
    pub id: Id,
}

/// A complete repository file other than a pack (index, snapshot, lock), from `pack` to
/// `push`; the encrypted file is the line's `data` payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoFileRecord {
    /// "index", "snapshot" or "lock".
    pub kind: String,
    /// SHA-256 of the bytes: the file name.
    pub id: Id,
}

/// The backup's statistics, restic's `summary` fields, from `pack` to `push`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// The counters the snapshot's summary holds too.
    #[serde(flatten)]
    pub counts: Counts,
    /// Files whose content was read (the others were unchanged against the parent).
    pub files_read: u64,
    pub bytes_read: u64,
    pub total_duration: f64,
    pub snapshot_id: Id,
    /// When the backup started and ended (RFC 3339), for restic's JSON summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_end: Option<String>,
}

/// One snapshot, as `snapshots` lists it (the fields of `restic snapshots --json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: Id,
    pub short_id: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub tree: Id,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A blob `fetch-pack` could not read (missing pack, short or failed read): passed on in the
/// blob's place so `unpack` fails the files that need it, restores the rest, and exits 3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobFailedRecord {
    #[serde(flatten)]
    pub loc: BlobLoc,
    /// Why it could not be read, one line.
    pub error: String,
}

/// What a backup stream relies on being in the repository already: the packs holding blobs
/// that `pack` deduplicated against, and the index files that named them. `push` stores the
/// snapshot only if all of them are still there (a prune in between would break it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequiresRecord {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<Id>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Id>,
}

/// A name in the restore target that the snapshot selection does not have, found by
/// `walk --target DIR --delete` when it leaves a directory: `unpack --delete` removes it
/// (a directory with everything below it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteRecord {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_raw: Option<String>,
}

impl DeleteRecord {
    /// The raw bytes of `path`.
    pub fn path_bytes(&self) -> Result<Vec<u8>> {
        raw_or_text(&self.path, self.path_raw.as_deref())
    }
}

/// What `unpack` did to a path or, with `--dry-run`, would do: restic's verbose actions
/// "restored" (nothing was there), "updated" (something was, and is replaced),
/// "unchanged" (kept as it is), "deleted".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_raw: Option<String>,
    /// A file's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `verify`'s verdict on one restored file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_raw: Option<String>,
    pub ok: bool,
    pub size: u64,
    /// What differs, and at which offset, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `unpack --list`'s line for one blob of a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Id>,
    pub id: Id,
    /// "data" or "tree".
    pub blob_type: String,
    pub offset: u64,
    pub length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests;
