//! Restoring from a node/blob stream.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use common::cli::warn;
use common::crypto::Key;
use common::error::{Error, IoContext, Result, ResultExt};
use common::index::IdMap;
use common::node::{Node, NodeType};
use common::pack::open_blob;
use common::record::{decode_b64, split_payload, tag_of, BlobRecord, NodeRecord, Reader, Writer};
use common::Id;

use crate::meta;
use crate::Args;

/// The suffix that marks a file still being written.
const PART: &str = ".sluice-part";

struct Current {
    rec: NodeRecord,
    node: Node,
    final_path: PathBuf,
    tmp: PathBuf,
    file: File,
    next: usize,
    offset: u64,
    idx: u32,
    /// Already restored and kept as it is (`--resume`): its blobs are only counted.
    kept: bool,
}

struct OpenDir {
    rel: Vec<u8>,
    path: PathBuf,
    node: Node,
    rec: NodeRecord,
}

struct Unpacker<W: io::Write> {
    target: PathBuf,
    sparse: bool,
    root: bool,
    out: Writer<W>,
    dirs: Vec<OpenDir>,
    cur: Option<Current>,
    /// Where the data of each file went (its partial name until it is complete).
    files: Vec<PathBuf>,
    /// Where the plaintext of each blob seen so far can be copied from: (file, offset).
    seen: IdMap<(u32, u64)>,
    plain: Vec<u8>,
    failed: u64,
}

/// What the decoder thread hands the writer, in stream order.
enum Item {
    /// A node record, and for a file whether it is already restored (`--resume`) and kept.
    Node(u64, NodeRecord, bool),
    /// A blob record; its plaintext (checked against the id) when the record carried data.
    Blob(u64, BlobRecord, Option<Plain>),
}

/// A checked plaintext inside a pooled buffer.
struct Plain {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

/// Blobs decoded ahead of the writer.
const AHEAD: usize = 1;
/// Blob buffers in existence at most: one per blob waiting or being written, and two for the
/// blob being decoded (ciphertext, and plaintext when compressed). Memory is bounded by
/// this many blobs, whatever the pack size.
const BUFFERS: usize = AHEAD + 1 + 2;

pub fn run(args: &Args) -> Result<()> {
    let target = args.target.clone().expect("clap requires --target");
    let repo = args.repo.open()?;
    let mut input = Reader::stdin();
    let header = input.read_header()?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&target).ctx_path(&target)?;
    let mut u = Unpacker {
        target,
        sparse: args.sparse,
        root: meta::is_root(),
        out: Writer::stdout(),
        dirs: Vec::new(),
        cur: None,
        files: Vec::new(),
        seen: IdMap::default(),
        plain: Vec::new(),
        failed: 0,
    };
    u.out.header("unpack", header.snapshot)?;

    // Decrypting and checking runs on its own thread so that it overlaps the file system
    // work; buffers travel back through `pool` so pages are touched once, not per blob.
    let (items_tx, items) = std::sync::mpsc::sync_channel::<Result<Item>>(AHEAD);
    let (pool, pool_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let key = repo.key.clone();
    let resume = args.resume.then(|| u.target.clone());
    let decoder = std::thread::spawn(move || {
        let result = decode(&mut input, &key, resume.as_deref(), &items_tx, &pool_rx);
        if let Err(e) = result {
            let _ = items_tx.send(Err(e));
        }
    });
    let result = (|| -> Result<()> {
        for item in items.iter() {
            match item {
                Ok(Item::Node(no, rec, keep)) => u.node(rec, keep).context(format!("line {no}"))?,
                Ok(Item::Blob(no, rec, plain)) => {
                    let r = u.blob(rec, plain.as_ref().map(|p| &p.buf[p.range.clone()]));
                    if let Some(p) = plain {
                        let _ = pool.send(p.buf);
                    }
                    r.context(format!("line {no}"))?;
                }
                Err(e) => {
                    return Err(match &u.cur {
                        Some(c) => e.context(&c.rec.path),
                        None => e,
                    })
                }
            }
        }
        Ok(())
    })();
    drop(items);
    let _ = decoder.join();
    result?;
    if let Some(c) = &u.cur {
        return Err(Error::format(format!(
            "stream ended before {} got all its blobs ({} of {})",
            c.rec.path,
            c.next,
            c.rec.blobs.len()
        )));
    }
    while let Some(d) = u.dirs.pop() {
        u.leave(d)?;
    }
    let failed = u.failed;
    u.out.finish()?;
    if failed > 0 {
        return Err(Error::SomeFailed(format!("{failed} items were not restored completely")));
    }
    Ok(())
}

/// The decoder thread: reads the stream, decrypts and checks every blob that carries data.
fn decode(
    input: &mut Reader<io::BufReader<io::Stdin>>,
    key: &Key,
    resume: Option<&Path>,
    items: &std::sync::mpsc::SyncSender<Result<Item>>,
    pool: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut made = 0usize;
    // A recycled buffer if there is one; a new one while fewer than BUFFERS exist; else wait
    // for the writer to give one back.
    let mut take = |spare: &mut Vec<Vec<u8>>| -> Result<Vec<u8>> {
        if let Some(b) = spare.pop().or_else(|| pool.try_recv().ok()) {
            return Ok(b);
        }
        if made < BUFFERS {
            made += 1;
            return Ok(Vec::new());
        }
        pool.recv().map_err(|_| Error::format("the writer stopped"))
    };
    // Whether the blobs that follow belong to a file kept as it is (not decrypted then).
    let mut keeping = false;
    let mut check_buf = Vec::new();
    while let Some(line) = input.next_line()? {
        let no = line.no;
        let rerr = |msg: String| Error::Record { line: no, msg };
        let tag = tag_of(line.text).map_err(rerr)?;
        let item = match tag.as_str() {
            "node" => {
                let rec: NodeRecord = serde_json::from_str(line.text)
                    .map_err(|e| rerr(format!("malformed node record: {e}")))?;
                keeping = match resume {
                    Some(target) => already_restored(target, &rec, &mut check_buf),
                    None => false,
                };
                Item::Node(no, rec, keeping)
            }
            "blob" if keeping => {
                let rec: BlobRecord = match split_payload(line.text) {
                    Some((head, _)) => serde_json::from_str(&head),
                    None => serde_json::from_str(line.text),
                }
                .map_err(|e| rerr(format!("malformed blob record: {e}")))?;
                Item::Blob(no, BlobRecord { data: None, ..rec }, None)
            }
            "blob" => {
                let (mut rec, data): (BlobRecord, Option<&str>) = match split_payload(line.text) {
                    Some((head, data)) => (
                        serde_json::from_str(&head)
                            .map_err(|e| rerr(format!("malformed blob record: {e}")))?,
                        Some(data),
                    ),
                    None => {
                        let r: BlobRecord = serde_json::from_str(line.text)
                            .map_err(|e| rerr(format!("malformed blob record: {e}")))?;
                        (r, None)
                    }
                };
                let owned = rec.data.take();
                let data = data.or(owned.as_deref());
                let plain = match data {
                    None => None,
                    Some(b64) => {
                        let what =
                            || format!("line {no}: blob {} in pack {}", rec.id.short(), rec.pack.short());
                        let mut sealed = take(&mut spare)?;
                        decode_b64(b64, &mut sealed)
                            .map_err(|e| Error::format(format!("{}: {e}", what())))?;
                        if sealed.len() != rec.length as usize {
                            return Err(Error::format(format!(
                                "{}: {} bytes of data, the record says {}",
                                what(),
                                sealed.len(),
                                rec.length
                            )));
                        }
                        let mut out = take(&mut spare)?;
                        let len = open_blob(key, &rec.id, &mut sealed, rec.uncompressed_length, &mut out)
                            .context(what())?
                            .len();
                        Some(if rec.uncompressed_length.is_some() {
                            spare.push(sealed);
                            Plain { buf: out, range: 0..len }
                        } else {
                            spare.push(out);
                            Plain { buf: sealed, range: common::crypto::IV_LEN..common::crypto::IV_LEN + len }
                        })
                    }
                };
                Item::Blob(no, rec, plain)
            }
            "restored" | "verdict" | "snapshot" | "pack_header" | "pack_data" | "blob_check" | "source"
            | "chunk" | "repo_file" | "summary" => {
                return Err(rerr(format!("a {tag} record does not belong in unpack's input")));
            }
            other => return Err(rerr(format!("unknown record type {other:?}"))),
        };
        if items.send(Ok(item)).is_err() {
            // The writer stopped; it reports why.
            return Ok(());
        }
    }
    Ok(())
}

/// `--resume`: whether a file node's final name already holds exactly its content (right
/// size, every blob-sized range hashing to its blob id). Such a file was completed by an
/// earlier run: files appear under their final names only when whole.
fn already_restored(target: &Path, rec: &NodeRecord, buf: &mut Vec<u8>) -> bool {
    use std::io::Read;
    if rec.hardlink.is_some() {
        return false;
    }
    let is_file = Node::parse(rec.node.get().as_bytes()).is_ok_and(|n| n.node_type == NodeType::File);
    let Ok(rel) = rec.path_bytes() else { return false };
    if !is_file || safe_rel(&rel).is_err() {
        return false;
    }
    let path = target.join(OsStr::from_bytes(&rel));
    let want: u64 = rec.blobs.iter().map(|b| b.plain_len()).sum();
    match fs::symlink_metadata(&path) {
        Ok(md) if md.is_file() && md.len() == want => {}
        _ => return false,
    }
    let Ok(f) = File::open(&path) else { return false };
    let mut f = io::BufReader::with_capacity(1 << 20, f);
    rec.blobs.iter().all(|b| {
        buf.resize(b.plain_len() as usize, 0);
        f.read_exact(buf).is_ok() && Id::hash(buf) == b.id
    })
}

/// Checks that a record's path stays inside the target: relative, no `.`/`..`, no empty parts.
fn safe_rel(path: &[u8]) -> Result<()> {
    if path.is_empty() || path.split(|b| *b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") {
        return Err(Error::format(format!(
            "path {:?} is not a clean relative path",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(())
}

fn part_name(final_path: &Path, n: usize) -> PathBuf {
    let name = final_path.file_name().unwrap_or_default().as_bytes();
    let mut tmp = Vec::with_capacity(name.len() + PART.len() + 1);
    // A leading dot, the name and the suffix must fit NAME_MAX (255).
    if name.len() + PART.len() < 255 {
        tmp.push(b'.');
        tmp.extend_from_slice(name);
        tmp.extend_from_slice(PART.as_bytes());
    } else {
        tmp.extend_from_slice(format!(".{n}{PART}").as_bytes());
    }
    final_path.with_file_name(OsStr::from_bytes(&tmp))
}

/// Removes whatever is at `p` (not a directory), so a new node can take its place.
fn clear(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(Error::format(format!("{}: a directory is in the way", p.display()))),
        Ok(_) => fs::remove_file(p).ctx_path(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p.display().to_string(), e)),
    }
}

impl<W: io::Write> Unpacker<W> {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        self.target.join(OsStr::from_bytes(rel))
    }

    fn ensure_parent(&self, p: &Path) -> Result<()> {
        if let Some(parent) = p.parent() {
            if !parent.is_dir() {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).ctx_path(parent)?;
            }
        }
        Ok(())
    }

    fn node(&mut self, rec: NodeRecord, keep: bool) -> Result<()> {
        if let Some(c) = &self.cur {
            return Err(Error::format(format!(
                "node {} arrived before {} got all its blobs ({} of {})",
                rec.path,
                c.rec.path,
                c.next,
                c.rec.blobs.len()
            )));
        }
        let rel = rec.path_bytes().map_err(Error::Format)?;
        safe_rel(&rel)?;
        let node = Node::parse(rec.node.get().as_bytes()).context(&rec.path)?;
        // Leave the directories this node is not inside of.
        while let Some(d) = self.dirs.last() {
            let inside = rel.len() > d.rel.len() && rel.starts_with(&d.rel) && rel[d.rel.len()] == b'/';
            if inside {
                break;
            }
            let d = self.dirs.pop().expect("non-empty");
            self.leave(d)?;
        }
        let path = self.abs(&rel);
        self.ensure_parent(&path)?;
        match node.node_type {
            NodeType::Dir => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        clear(&path)?;
                        fs::DirBuilder::new().mode(0o700).create(&path).ctx_path(&path)?;
                    }
                    Err(_) => fs::DirBuilder::new().mode(0o700).create(&path).ctx_path(&path)?,
                }
                self.dirs.push(OpenDir { rel, path, node, rec });
            }
            NodeType::File => {
                if let Some(first) = rec.hardlink_bytes().map_err(Error::Format)? {
                    safe_rel(&first)?;
                    let first = self.abs(&first);
                    clear(&path)?;
                    fs::hard_link(&first, &path).map_err(|e| {
                        Error::io(format!("{} (link to {})", path.display(), first.display()), e)
                    })?;
                    self.out.write("restored", &rec)?;
                    return Ok(());
                }
                let tmp = part_name(&path, self.files.len());
                let _ = fs::remove_file(&tmp);
                if keep {
                    let file = File::open(&path).ctx_path(&path)?;
                    let idx = self.files.len() as u32;
                    self.files.push(path.clone());
                    let cur = Current {
                        rec,
                        node,
                        final_path: path.clone(),
                        tmp: path,
                        file,
                        next: 0,
                        offset: 0,
                        idx,
                        kept: true,
                    };
                    if cur.rec.blobs.is_empty() {
                        self.finish_file(cur)?;
                    } else {
                        self.cur = Some(cur);
                    }
                    return Ok(());
                }
                let file = OpenOptions::new()
                    .write(true)
                    .read(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .ctx_path(&tmp)?;
                let idx = self.files.len() as u32;
                self.files.push(tmp.clone());
                let cur =
                    Current { rec, node, final_path: path, tmp, file, next: 0, offset: 0, idx, kept: false };
                if cur.rec.blobs.is_empty() {
                    self.finish_file(cur)?;
                } else {
                    self.cur = Some(cur);
                }
            }
            NodeType::Symlink => {
                clear(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.linktarget), &path).ctx_path(&path)?;
                self.meta(&path, &node)?;
                self.out.write("restored", &rec)?;
            }
            NodeType::Fifo | NodeType::Dev | NodeType::Chardev => {
                clear(&path)?;
                match meta::mknod(&path, &node) {
                    Ok(()) => {
                        self.meta(&path, &node)?;
                        self.out.write("restored", &rec)?;
                    }
                    Err(e) if !self.root && e.raw_os_error() == Some(libc::EPERM) => {
                        warn("unpack", format!("{}: cannot create device node: {e}", path.display()));
                        self.failed += 1;
                    }
                    Err(e) => return Err(Error::io(path.display().to_string(), e)),
                }
            }
            // restic skips sockets and irregular files on restore, and so do we.
            _ => {}
        }
        Ok(())
    }

    fn meta(&mut self, path: &Path, node: &Node) -> Result<()> {
        let warnings = meta::apply(path, node, self.root).ctx_path(path)?;
        for w in warnings {
            warn("unpack", format!("{}: {w}", path.display()));
        }
        Ok(())
    }

    fn leave(&mut self, d: OpenDir) -> Result<()> {
        self.meta(&d.path, &d.node)?;
        self.out.write("restored", &d.rec)
    }

    fn blob(&mut self, rec: BlobRecord, data: Option<&[u8]>) -> Result<()> {
        let Some(mut cur) = self.cur.take() else {
            return Err(Error::format(format!("blob {} does not follow a file node", rec.id.short())));
        };
        let want = &cur.rec.blobs[cur.next];
        if want.id != rec.id {
            return Err(Error::format(format!(
                "{}: expected blob {} next, got {}",
                cur.rec.path,
                want.id.short(),
                rec.id.short()
            )));
        }
        if cur.kept {
            self.seen.entry(rec.id).or_insert((cur.idx, cur.offset));
            cur.offset += want.plain_len();
            cur.next += 1;
            return if cur.next == cur.rec.blobs.len() {
                self.finish_file(cur)
            } else {
                self.cur = Some(cur);
                Ok(())
            };
        }
        let what = || format!("{}: blob {} in pack {}", cur.rec.path, rec.id.short(), rec.pack.short());
        let plain: &[u8] = match data {
            Some(p) => p,
            None => {
                let Some(&(idx, off)) = self.seen.get(&rec.id) else {
                    return Err(Error::format(format!(
                        "{}: the record has no data and the blob was not sent before",
                        what()
                    )));
                };
                let len = want.plain_len() as usize;
                let src = &self.files[idx as usize];
                self.plain.resize(len, 0);
                let f = if idx == cur.idx { None } else { Some(File::open(src).ctx_path(src)?) };
                f.as_ref().unwrap_or(&cur.file).read_exact_at(&mut self.plain, off).ctx_path(src)?;
                if Id::hash(&self.plain) != rec.id {
                    return Err(Error::integrity(format!(
                        "{}: the copy at {} offset {off} was changed",
                        what(),
                        src.display()
                    )));
                }
                &self.plain
            }
        };
        let len = plain.len() as u64;
        if !(self.sparse && plain.iter().all(|b| *b == 0)) {
            cur.file.write_all_at(plain, cur.offset).ctx_path(&cur.tmp)?;
        } else {
            // The hole must exist now: a later use of this blob in the same file copies
            // from here, and a read past the end would come up short.
            cur.file.set_len(cur.offset + len).ctx_path(&cur.tmp)?;
        }
        self.seen.entry(rec.id).or_insert((cur.idx, cur.offset));
        cur.offset += len;
        cur.next += 1;
        if cur.next == cur.rec.blobs.len() {
            self.finish_file(cur)
        } else {
            self.cur = Some(cur);
            Ok(())
        }
    }

    fn finish_file(&mut self, cur: Current) -> Result<()> {
        if cur.kept {
            self.meta(&cur.final_path, &cur.node)?;
            return self.out.write("restored", &cur.rec);
        }
        // Holes at the end of a sparse file need the length set explicitly.
        cur.file.set_len(cur.offset).ctx_path(&cur.tmp)?;
        drop(cur.file);
        self.meta(&cur.tmp, &cur.node)?;
        clear(&cur.final_path)?;
        fs::rename(&cur.tmp, &cur.final_path).ctx_path(&cur.final_path)?;
        self.files[cur.idx as usize] = cur.final_path;
        self.out.write("restored", &cur.rec)
    }
}
