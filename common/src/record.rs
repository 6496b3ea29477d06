//! The NDJSON records the tools exchange, and the reader and writer that frame them.
//!
//! Every stream opens with a `header` record and closes with an `end` record that counts the
//! records between them; a stream without its `end` means the stage before died. The writer
//! always puts `"type"` first, so the reader can dispatch on the tag without parsing the whole
//! line, and payload bytes are written straight into the line as base64 (no JSON escaping is
//! ever needed for base64, so serde's escape scan over megabytes is skipped).
//! The full description for users is the man page `sluice-ndjson(5)`.

use std::io::{self, BufRead, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::id::Id;

/// The `format` named in every header.
pub const FORMAT: &str = "sluice-ndjson";
/// The major version of the record format; a reader rejects any other major version.
pub const VERSION: u32 = 1;
/// The longest line a reader accepts (a blob of payload plus its envelope, base64-encoded).
pub const MAX_LINE: usize = 1 << 30;

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
}

/// Closes every stream; `records` counts the records between header and end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct End {
    pub records: u64,
}

/// Where one blob lives: a pack, an offset and the encrypted length there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobLoc {
    pub id: Id,
    pub pack: Id,
    pub offset: u64,
    /// Encrypted length in the pack (plaintext or zstd frame, plus 32 bytes of IV and MAC).
    pub length: u32,
    /// Present only for compressed blobs: the plaintext length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl BlobLoc {
    /// The plaintext length of the blob (what its id hashes).
    pub fn plain_len(&self) -> u64 {
        match self.uncompressed_length {
            Some(n) => n as u64,
            None => (self.length as u64).saturating_sub(32),
        }
    }
}

/// One node of a snapshot tree, with the restic node JSON carried exactly as the tree stored it.
/// Used for `node` (walk's output) and `restored` (unpack's output) records.
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
    /// Backup only: "new", "changed" or "unmodified" against the parent snapshot (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Backup only: the same directory's tree in the parent snapshot, to count it as
    /// changed or unmodified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tree: Option<Id>,
}

impl NodeRecord {
    /// The raw bytes of `path`.
    pub fn path_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        raw_or_text(&self.path, self.path_raw.as_deref())
    }

    /// Checks a file record's `blobs` against the node it describes: the same ids as the
    /// node's `content`, in order, whose plaintext lengths add up to the node's `size`.
    /// A stream is untrusted input; without this a storage host could drop or swap blobs.
    pub fn check_content(&self, node: &crate::node::Node) -> std::result::Result<(), String> {
        let content = node.content.as_deref().unwrap_or(&[]);
        if content.len() != self.blobs.len()
            || content.iter().zip(&self.blobs).any(|(id, b)| *id != b.id)
        {
            return Err(format!(
                "the record lists {} blobs that differ from the node's {} content ids",
                self.blobs.len(),
                content.len()
            ));
        }
        let total: u64 = self.blobs.iter().map(|b| b.plain_len()).sum();
        if total != node.size {
            return Err(format!("its blobs hold {total} bytes but the node's size is {}", node.size));
        }
        Ok(())
    }

    /// The raw bytes of `hardlink`, if any.
    pub fn hardlink_bytes(&self) -> std::result::Result<Option<Vec<u8>>, String> {
        match &self.hardlink {
            None => Ok(None),
            Some(h) => raw_or_text(h, self.hardlink_raw.as_deref()).map(Some),
        }
    }
}

/// A path travels as text, with the exact bytes in a `*_raw` base64 field when they are not
/// UTF-8; this picks the exact bytes.
pub fn raw_or_text(text: &str, raw: Option<&str>) -> std::result::Result<Vec<u8>, String> {
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

/// An encrypted blob as fetched from its pack. `data` is absent when the same blob was already
/// sent earlier in this stream: the receiver has it and copies it from where it put it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRecord {
    pub id: Id,
    pub pack: Id,
    pub offset: u64,
    pub length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
    /// Base64 of the encrypted bytes (IV, ciphertext, MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl BlobRecord {
    pub fn loc(&self) -> BlobLoc {
        BlobLoc {
            id: self.id,
            pack: self.pack,
            offset: self.offset,
            length: self.length,
            uncompressed_length: self.uncompressed_length,
        }
    }
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

/// A piece of a whole pack's blob area, in order, from `fetch-pack --pack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackDataRecord {
    /// Backup only: which open pack the bytes belong to (`pack` fills data and tree packs
    /// at the same time); absent in `fetch-pack --pack` streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub offset: u64,
    /// Base64 of the bytes (left empty when building a record for `write_with_data`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
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

/// A piece of file content cut by the chunker, in plaintext, from `chunk` to `pack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// SHA-256 of the bytes: the blob id.
    pub id: Id,
    /// Base64 of the bytes (left empty when built for `write_with_data`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
}

/// A complete repository file other than a pack (index, snapshot, lock), encrypted, from
/// `pack` to `push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoFileRecord {
    /// "index", "snapshot" or "lock".
    pub kind: String,
    /// SHA-256 of the bytes: the file name.
    pub id: Id,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
}

/// The backup's statistics, restic's `summary` fields, from `pack` to `push`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SummaryRecord {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Files whose content was read (the others were unchanged against the parent).
    pub files_read: u64,
    pub bytes_read: u64,
    pub total_duration: f64,
    pub snapshot_id: Id,
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
    pub id: Id,
    pub pack: Id,
    pub offset: u64,
    pub length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
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

/// Every record type. The tag is the `type` field of the JSON line.
#[derive(Debug, Clone)]
pub enum Record {
    Header(Header),
    End(End),
    Snapshot(SnapshotRecord),
    Node(NodeRecord),
    Blob(BlobRecord),
    PackHeader(PackHeaderRecord),
    PackData(PackDataRecord),
    Restored(NodeRecord),
    Verdict(Verdict),
    BlobCheck(BlobCheck),
    Source(SourceRecord),
    Chunk(ChunkRecord),
    RepoFile(RepoFileRecord),
    Summary(SummaryRecord),
    BlobFailed(BlobFailedRecord),
    Requires(RequiresRecord),
}

/// The record type names, for messages.
pub const TYPES: &[&str] = &[
    "header",
    "end",
    "snapshot",
    "node",
    "blob",
    "pack_header",
    "pack_data",
    "restored",
    "verdict",
    "blob_check",
    "source",
    "chunk",
    "repo_file",
    "summary",
    "blob_failed",
    "requires",
];

impl Record {
    /// The `type` tag of this record.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::End(_) => "end",
            Record::Snapshot(_) => "snapshot",
            Record::Node(_) => "node",
            Record::Blob(_) => "blob",
            Record::PackHeader(_) => "pack_header",
            Record::PackData(_) => "pack_data",
            Record::Restored(_) => "restored",
            Record::Verdict(_) => "verdict",
            Record::BlobCheck(_) => "blob_check",
            Record::Source(_) => "source",
            Record::Chunk(_) => "chunk",
            Record::RepoFile(_) => "repo_file",
            Record::Summary(_) => "summary",
            Record::BlobFailed(_) => "blob_failed",
            Record::Requires(_) => "requires",
        }
    }

    /// Parses one line. The error is a bare message; the reader adds the line number.
    pub fn parse(line: &str) -> std::result::Result<Record, String> {
        let tag = tag_of(line)?;
        fn de<T: DeserializeOwned>(line: &str, tag: &str) -> std::result::Result<T, String> {
            serde_json::from_str(line).map_err(|e| format!("malformed {tag} record: {e}"))
        }
        Ok(match tag.as_str() {
            "header" => Record::Header(de(line, &tag)?),
            "end" => Record::End(de(line, &tag)?),
            "snapshot" => Record::Snapshot(de(line, &tag)?),
            "node" => Record::Node(de(line, &tag)?),
            "blob" => Record::Blob(de(line, &tag)?),
            "pack_header" => Record::PackHeader(de(line, &tag)?),
            "pack_data" => Record::PackData(de(line, &tag)?),
            "restored" => Record::Restored(de(line, &tag)?),
            "verdict" => Record::Verdict(de(line, &tag)?),
            "blob_check" => Record::BlobCheck(de(line, &tag)?),
            "source" => Record::Source(de(line, &tag)?),
            "chunk" => Record::Chunk(de(line, &tag)?),
            "repo_file" => Record::RepoFile(de(line, &tag)?),
            "summary" => Record::Summary(de(line, &tag)?),
            "blob_failed" => Record::BlobFailed(de(line, &tag)?),
            "requires" => Record::Requires(de(line, &tag)?),
            other => return Err(format!("unknown record type {other:?}")),
        })
    }
}

/// The `type` of a line: read straight off the front when our writer wrote it, else by parsing.
pub fn tag_of(line: &str) -> std::result::Result<String, String> {
    const PREFIX: &str = "{\"type\":\"";
    if let Some(rest) = line.strip_prefix(PREFIX) {
        if let Some(end) = rest.find('"') {
            if !rest[..end].contains('\\') {
                return Ok(rest[..end].to_string());
            }
        }
    }
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    match serde_json::from_str::<Tag>(line) {
        Ok(Tag { ty: Some(t) }) => Ok(t),
        Ok(Tag { ty: None }) => Err("record has no \"type\" field".into()),
        Err(e) => Err(format!("not a JSON object: {e}")),
    }
}

/// Makes a pipe buffer bigger; pipes default to 64 KiB, which halves throughput at our sizes.
pub fn enlarge_pipe(fd: i32) {
    // F_SETPIPE_SZ fails harmlessly on anything that is not a pipe.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Reads a framed record stream, one line at a time, with line numbers for errors.
pub struct Reader<R> {
    input: R,
    line: Vec<u8>,
    line_no: u64,
    count: u64,
    ended: bool,
    source: String,
    header: Option<Header>,
}

impl Reader<io::BufReader<io::Stdin>> {
    /// A reader over stdin with a large buffer.
    pub fn stdin() -> Self {
        enlarge_pipe(0);
        Reader::new(io::BufReader::with_capacity(1 << 20, io::stdin()), "stdin")
    }
}

/// A line as read: its number and its text (without the newline).
pub struct Line<'a> {
    pub no: u64,
    pub text: &'a str,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, source: &str) -> Self {
        Reader {
            input,
            line: Vec::new(),
            line_no: 0,
            count: 0,
            ended: false,
            source: source.to_string(),
            header: None,
        }
    }

    /// The header, once `read_header` has run.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Line number of the last line read.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// An error about the current line.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Record { line: self.line_no, msg: format!("{}: {msg}", self.source) }
    }

    fn read_line(&mut self) -> Result<bool> {
        self.line.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| Error::io(self.source.clone(), e))?;
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        } else if self.line.len() > MAX_LINE {
            return Err(self.err(format!("line longer than {MAX_LINE} bytes")));
        } else {
            return Err(self.err(
                "stream cut off in the middle of a line, before its end record (did the previous stage fail?)",
            ));
        }
        Ok(true)
    }

    /// Reads and checks the header record. Call once, first.
    pub fn read_header(&mut self) -> Result<Header> {
        if !self.read_line()? {
            return Err(self.err("empty stream: no header record (did the previous stage fail?)"));
        }
        let text = std::str::from_utf8(&self.line).map_err(|_| self.err("line is not UTF-8"))?;
        let h = match Record::parse(text) {
            Ok(Record::Header(h)) => h,
            Ok(other) => return Err(self.err(format!("expected a header record, got {}", other.type_name()))),
            Err(e) => return Err(self.err(e)),
        };
        if h.format != FORMAT {
            return Err(self.err(format!("not a {FORMAT} stream (format {:?})", h.format)));
        }
        if h.version != VERSION {
            return Err(self.err(format!(
                "{FORMAT} version {} is not supported (this tool reads version {VERSION})",
                h.version
            )));
        }
        self.header = Some(h.clone());
        Ok(h)
    }

    /// The next line between header and end, raw. `None` after a correct end record; an error
    /// if the stream stops without one or the end's count disagrees.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        if self.ended {
            return Ok(None);
        }
        if !self.read_line()? {
            return Err(self.err("stream ended without its end record (did the previous stage fail?)"));
        }
        let text = std::str::from_utf8(&self.line).map_err(|_| self.err("line is not UTF-8"))?;
        if text.starts_with("{\"type\":\"end\"") || tag_of(text).as_deref() == Ok("end") {
            let end: End = match Record::parse(text) {
                Ok(Record::End(e)) => e,
                Ok(_) => unreachable!("tag said end"),
                Err(e) => return Err(self.err(e)),
            };
            if end.records != self.count {
                let msg = format!("end record counts {} records but {} arrived", end.records, self.count);
                return Err(self.err(msg));
            }
            self.ended = true;
            // Anything after the end record is a second stream glued on by mistake.
            self.line.clear();
            let mut probe = [0u8; 1];
            if self.input.read(&mut probe).map_err(|e| Error::io(self.source.clone(), e))? > 0 {
                self.line_no += 1;
                return Err(self.err("data after the end record"));
            }
            return Ok(None);
        }
        self.count += 1;
        let text = std::str::from_utf8(&self.line).expect("checked above");
        Ok(Some(Line { no: self.line_no, text }))
    }

    /// The next record, parsed. `None` after the end record.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let parsed = match self.next_line()? {
            None => return Ok(None),
            Some(line) => Record::parse(line.text),
        };
        match parsed {
            Ok(Record::Header(_)) => Err(self.err("a second header record inside the stream")),
            Ok(r) => Ok(Some(r)),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// Payload bytes base64-encoded per step (a multiple of 3, so pieces join seamlessly).
const B64_PIECE: usize = 3 * 64 * 1024;

/// Writes a framed record stream. EPIPE turns into `Error::BrokenPipe` (exit 141, no message).
pub struct Writer<W: Write> {
    out: W,
    count: u64,
    scratch: Vec<u8>,
    b64: Vec<u8>,
}

/// Standard output as a plain file descriptor. `std::io::Stdout` is line-buffered: it
/// would scan every megabyte we hand it for newlines and copy the tail once more.
pub struct StdoutFd(std::mem::ManuallyDrop<std::fs::File>);

impl StdoutFd {
    fn new() -> StdoutFd {
        use std::os::fd::FromRawFd;
        // fd 1 stays open for the life of the process; ManuallyDrop keeps us from closing it.
        StdoutFd(std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) }))
    }
}

impl io::Write for StdoutFd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Writer<io::BufWriter<StdoutFd>> {
    /// A writer on stdout with a large buffer.
    pub fn stdout() -> Self {
        enlarge_pipe(1);
        Writer::new(io::BufWriter::with_capacity(1 << 20, StdoutFd::new()))
    }
}

fn out_err(e: io::Error) -> Error {
    Error::io("stdout", e)
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out, count: 0, scratch: Vec::with_capacity(4096), b64: Vec::new() }
    }

    /// Writes the header. Call once, first.
    pub fn header(&mut self, producer: &str, snapshot: Option<Id>) -> Result<()> {
        let h = Header { format: FORMAT.into(), version: VERSION, producer: producer.into(), snapshot };
        self.put("header", &h, None)?;
        self.count = 0;
        Ok(())
    }

    /// Writes one record of type `tag`.
    pub fn write<T: Serialize>(&mut self, tag: &str, rec: &T) -> Result<()> {
        self.put(tag, rec, None)
    }

    /// Writes one record with `"data"` appended as base64 of `payload`, without escaping it.
    pub fn write_with_data<T: Serialize>(&mut self, tag: &str, rec: &T, payload: &[u8]) -> Result<()> {
        self.put(tag, rec, Some(payload))
    }

    /// Writes any `Record`.
    pub fn record(&mut self, r: &Record) -> Result<()> {
        let tag = r.type_name();
        match r {
            Record::Header(x) => self.put(tag, x, None),
            Record::End(x) => self.put(tag, x, None),
            Record::Snapshot(x) => self.put(tag, x, None),
            Record::Node(x) | Record::Restored(x) => self.put(tag, x, None),
            Record::Blob(x) => self.put(tag, x, None),
            Record::PackHeader(x) => self.put(tag, x, None),
            Record::PackData(x) => self.put(tag, x, None),
            Record::Verdict(x) => self.put(tag, x, None),
            Record::BlobCheck(x) => self.put(tag, x, None),
            Record::Source(x) => self.put(tag, x, None),
            Record::Chunk(x) => self.put(tag, x, None),
            Record::RepoFile(x) => self.put(tag, x, None),
            Record::Summary(x) => self.put(tag, x, None),
            Record::BlobFailed(x) => self.put(tag, x, None),
            Record::Requires(x) => self.put(tag, x, None),
        }
    }

    /// Forwards a line read from upstream unchanged (a pass-through stage).
    pub fn raw_line(&mut self, line: &str) -> Result<()> {
        self.out.write_all(line.as_bytes()).map_err(out_err)?;
        self.out.write_all(b"\n").map_err(out_err)?;
        self.count += 1;
        Ok(())
    }

    fn put<T: Serialize>(&mut self, tag: &str, rec: &T, payload: Option<&[u8]>) -> Result<()> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, rec)
            .map_err(|e| Error::format(format!("cannot encode {tag} record: {e}")))?;
        debug_assert!(self.scratch.first() == Some(&b'{') && self.scratch.last() == Some(&b'}'));
        let body = &self.scratch[1..self.scratch.len() - 1];
        let o = &mut self.out;
        o.write_all(b"{\"type\":\"").map_err(out_err)?;
        o.write_all(tag.as_bytes()).map_err(out_err)?;
        o.write_all(b"\"").map_err(out_err)?;
        if !body.is_empty() {
            o.write_all(b",").map_err(out_err)?;
            o.write_all(body).map_err(out_err)?;
        }
        if let Some(p) = payload {
            o.write_all(b",\"data\":\"").map_err(out_err)?;
            // In pieces of whole 3-byte groups, so no buffer as large as the payload is
            // needed and the output stays one valid base64 string.
            self.b64.resize(base64_simd::STANDARD.encoded_length(B64_PIECE), 0);
            for piece in p.chunks(B64_PIECE) {
                let n = base64_simd::STANDARD.encoded_length(piece.len());
                let _ = base64_simd::STANDARD.encode(piece, base64_simd::Out::from_slice(&mut self.b64[..n]));
                o.write_all(&self.b64[..n]).map_err(out_err)?;
            }
            o.write_all(b"\"").map_err(out_err)?;
        }
        o.write_all(b"}\n").map_err(out_err)?;
        self.count += 1;
        Ok(())
    }

    /// Records written since the header.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes buffered records now (before a long pause, so the next stage can work).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(out_err)
    }

    /// Writes the end record and flushes. A stream without this looks cut off, as it should.
    pub fn finish(mut self) -> Result<W> {
        let end = End { records: self.count };
        self.put("end", &end, None)?;
        self.out.flush().map_err(out_err)?;
        Ok(self.out)
    }
}

/// Splits a line our writer made with `write_with_data` into the record without its
/// payload (as JSON) and the payload's base64 text, so megabytes of base64 are neither
/// copied into a `String` nor scanned for escapes by the JSON parser. `None` when the line
/// does not have that shape (then parse it whole).
pub fn split_payload(line: &str) -> Option<(String, &str)> {
    const KEY: &str = ",\"data\":\"";
    let body = line.strip_suffix("\"}")?;
    // Searched from the front: the payload is last, and an unescaped `,"data":"` cannot
    // occur inside an earlier JSON string, so the first one is the key.
    let at = body.find(KEY)?;
    let data = &body[at + KEY.len()..];
    if memchr::memchr2(b'"', b'\\', data.as_bytes()).is_some() {
        return None;
    }
    let mut head = String::with_capacity(at + 1);
    head.push_str(&line[..at]);
    head.push('}');
    Some((head, data))
}

/// Decodes standard base64 into `out` (reused between calls).
pub fn decode_b64(s: &str, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    // No clear(): resizing a reused buffer then zero-fills only what it grows by.
    let n = base64_simd::STANDARD.decoded_length(s.as_bytes()).map_err(|e| format!("bad base64: {e}"))?;
    out.resize(n, 0);
    let got = base64_simd::STANDARD
        .decode(s.as_bytes(), base64_simd::Out::from_slice(out))
        .map_err(|e| format!("bad base64: {e}"))?
        .len();
    out.truncate(got);
    Ok(())
}

/// Encodes bytes as standard base64 (for the `*_raw` fields).
pub fn encode_b64(b: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(lines: &[&str]) -> Reader<io::Cursor<Vec<u8>>> {
        let mut s = lines.join("\n");
        s.push('\n');
        Reader::new(io::Cursor::new(s.into_bytes()), "test")
    }

    const H: &str = r#"{"type":"header","format":"sluice-ndjson","version":1,"producer":"t"}"#;

    #[test]
    fn round_trip_with_payload() {
        let mut w = Writer::new(Vec::new());
        w.header("t", None).unwrap();
        let b = BlobRecord {
            id: Id::hash(b"a"),
            pack: Id::hash(b"p"),
            offset: 7,
            length: 40,
            uncompressed_length: None,
            data: None,
        };
        w.write_with_data("blob", &b, b"\x00\x01binary").unwrap();
        let out = w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().nth(1).unwrap().starts_with("{\"type\":\"blob\",\"id\":"));
        let mut r = Reader::new(io::Cursor::new(text.into_bytes()), "t");
        r.read_header().unwrap();
        match r.next_record().unwrap().unwrap() {
            Record::Blob(b2) => {
                let mut buf = Vec::new();
                decode_b64(b2.data.as_deref().unwrap(), &mut buf).unwrap();
                assert_eq!(buf, b"\x00\x01binary");
                assert_eq!(b2.offset, 7);
            }
            other => panic!("{other:?}"),
        }
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn payload_split() {
        let mut w = Writer::new(Vec::new());
        w.write_with_data("chunk", &ChunkRecord { id: Id::hash(b"x"), data: String::new() }, b"xyz").unwrap();
        let text = String::from_utf8(w.out.clone()).unwrap();
        let (head, data) = split_payload(text.trim_end()).unwrap();
        assert_eq!(data, "eHl6");
        let c: ChunkRecord = serde_json::from_str(&head).unwrap();
        assert_eq!(c.id, Id::hash(b"x"));
        assert!(split_payload(r#"{"type":"end","records":1}"#).is_none());
        assert!(split_payload(r#"{"type":"x","data":"a\"b"}"#).is_none());
    }

    #[test]
    fn missing_end_is_an_error() {
        let mut r = stream(&[H, r#"{"type":"end","records":5}"#]);
        r.read_header().unwrap();
        let e = r.next_record().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("counts 5"), "{e}");

        let mut r = stream(&[H]);
        r.read_header().unwrap();
        let e = r.next_record().unwrap_err().to_string();
        assert!(e.contains("without its end record"), "{e}");
    }

    #[test]
    fn unknown_type_and_malformed_lines() {
        let mut r = stream(&[H, r#"{"type":"bogus"}"#]);
        r.read_header().unwrap();
        let e = r.next_record().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unknown record type"), "{e}");

        let mut r = stream(&[H, "{not json"]);
        r.read_header().unwrap();
        assert!(r.next_record().unwrap_err().to_string().contains("line 2"));

        let mut r = stream(&[r#"{"type":"node"}"#]);
        assert!(r.read_header().is_err());
    }

    #[test]
    fn unknown_fields_are_ignored_and_type_may_come_later() {
        let mut r = stream(&[H, r#"{"records":0,"x":1,"type":"end"}"#]);
        r.read_header().unwrap();
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn node_keeps_raw_json() {
        let line = r#"{"type":"node","path":"a","node":{"name":"a","type":"file","content":[]}}"#;
        match Record::parse(line).unwrap() {
            Record::Node(n) => {
                assert_eq!(n.node.get(), r#"{"name":"a","type":"file","content":[]}"#)
            }
            _ => panic!(),
        }
    }
}
