//! Walking the sources and turning them into node and chunk records.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use common::chunker::{Chunker, Polynomial, Tables};
use common::cli::warn;
use common::error::{Error, IoContext, Result};
use common::filter;
use common::go::{GoJsonFlavor, GoTime};
use common::index::Index;
use common::node::{Node, NodeType};
use common::record::{ChunkRecord, FlushBeforeWait, NodeRecord, SourceRecord, TotalsRecord, Writer};
use common::{stat, sys, Id};
use serde_json::value::RawValue;

use crate::parent::{find, latest_matching, Parent};
use crate::Args;

/// One backup target: where it is on disk and the path components it gets in the tree.
struct Target {
    fs: PathBuf,
    /// Where the directories leading to the target are read: `/`, the current directory
    /// (empty) or as many `..` as the cleaned relative path starts with.
    root: PathBuf,
    comps: Vec<Vec<u8>>,
}

/// A directory level of the output tree, with the same directory's nodes in the parent.
struct Level {
    rel: Vec<u8>,
    prev: Option<Vec<Node>>,
}

struct Scanner<'a, W: io::Write> {
    args: &'a Args,
    out: Writer<W>,
    tables: Arc<Tables>,
    parent: Option<Parent<'a>>,
    index: &'a Index,
    names: sys::Names,
    stack: Vec<Level>,
    buf: Vec<u8>,
    json: Vec<u8>,
    failed: Failed,
    excludes: filter::Selection,
    /// `--exclude-if-present` and `--exclude-caches`.
    tags: Vec<filter::TagFile>,
    larger_than: Option<u64>,
    /// What the stream holds, sent once the scan is done (for push's progress).
    totals: TotalsRecord,
}

pub fn run(args: &Args) -> Result<()> {
    let repo = args.repo.open()?;
    let tables = Arc::new(Tables::new(Polynomial(repo.config.chunker_polynomial))?);
    let host = args.host.clone().unwrap_or_else(sys::hostname);
    let patterns = with_files(&args.exclude, &args.exclude_file)?;
    let excludes =
        filter::Selection::new(&[], &[], &patterns, &with_files(&args.iexclude, &args.iexclude_file)?)?;
    let larger_than = args.exclude_larger_than.map(|s| s.0);
    let mut tags =
        args.exclude_if_present.iter().map(|t| filter::TagFile::parse(t)).collect::<Result<Vec<_>>>()?;
    if args.exclude_caches {
        tags.push(filter::TagFile::cachedir());
    }
    let start = GoTime::now_local();
    let cwd = std::env::current_dir().ctx("current directory")?;

    if args.stdin
        && (args.stdin_filename.contains('/') || matches!(args.stdin_filename.as_str(), "" | "." | ".."))
    {
        return Err(Error::Usage(format!(
            "--stdin-filename {:?} must be a plain file name",
            args.stdin_filename
        )));
    }
    let targets = if args.stdin { Vec::new() } else { prepare_targets(&args.paths, &cwd)? };
    // restic 0.14 records `/NAME` for data read from stdin, wherever it runs, and puts the
    // file at the root of the tree.
    let mut abs_paths: Vec<String> = if args.stdin {
        vec![format!("/{}", args.stdin_filename)]
    } else {
        targets.iter().map(|t| absolute(&t.fs, &cwd).to_string_lossy().into_owned()).collect()
    };
    abs_paths.sort();
    abs_paths.dedup();

    // restic 0.14 gives a backup of stdin no parent: there is nothing it could skip reading.
    let snaps = if args.stdin { Vec::new() } else { repo.snapshots()? };
    let parent = if args.force || args.stdin {
        None
    } else if let Some(spec) = &args.parent {
        if snaps.is_empty() {
            return Err(Error::Usage(format!("--parent {spec}: the repository has no snapshots")));
        }
        Some(repo.resolve_snapshot(spec, &snaps)?.clone())
    } else {
        latest_matching(&snaps, &host, &abs_paths).cloned()
    };
    let index = if parent.is_some() { repo.load_index()? } else { Index::new() };

    let mut s = Scanner {
        args,
        out: Writer::stdout(),
        tables,
        parent: parent.as_ref().map(|_| Parent { repo: &repo, index: &index }),
        index: &index,
        names: sys::Names::default(),
        stack: Vec::new(),
        buf: Vec::new(),
        json: Vec::new(),
        failed: Failed::default(),
        excludes,
        tags,
        larger_than,
        totals: TotalsRecord::default(),
    };
    s.out.header("chunk", None)?;
    let source = SourceRecord {
        paths: abs_paths,
        hostname: host,
        excludes: patterns,
        parent: parent.as_ref().map(|p| p.0),
        time: start.to_string(),
    };
    s.out.write(&source)?;
    // Now, not when a megabyte of output has piled up: pack waits for these before it starts
    // its own stream and lock, and a slow source (stdin, a network file system) could hold
    // them back for minutes.
    s.out.flush()?;
    let root_prev = match (&s.parent, &parent) {
        (Some(p), Some((_, snap))) => Some(p.tree(&snap.tree)?),
        _ => None,
    };
    s.stack.push(Level { rel: Vec::new(), prev: root_prev });
    if args.stdin {
        s.stdin(start)?;
    } else {
        s.targets(&targets, &cwd)?;
        // restic refuses to save an empty snapshot; without this, a backup whose every PATH
        // was excluded (or unreadable, or a socket) would end in one, and exit 0. The
        // stream stops without its end record, so pack and push save nothing.
        if s.totals.nodes == 0 {
            return Err(Error::Refused(
                "nothing to back up: the snapshot would be empty (every PATH excluded, unreadable or a socket, \
                 or an empty directory given as .), which restic refuses too; no snapshot saved"
                    .into(),
            ));
        }
    }
    let failed = s.failed;
    let totals = s.totals;
    s.out.write(&totals)?;
    s.out.finish()?;
    failed.result()
}

/// The patterns given as options, then those read from each of `files`.
fn with_files(patterns: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = patterns.to_vec();
    for f in files {
        out.extend(common::filter::read_pattern_file(f)?);
    }
    Ok(out)
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The tree path of each target, as restic builds it: the components of the path cleaned
/// lexically as if it were rooted (so `../x/y` is `x/y` in the tree, `a/../b` is `b`), read
/// from the path as given. Directories leading to the target are read below the `..` prefix.
fn prepare_targets(paths: &[PathBuf], _cwd: &Path) -> Result<Vec<Target>> {
    let mut out: Vec<Target> = Vec::new();
    for p in paths {
        fs::symlink_metadata(p).ctx_path(p)?;
        // Go's path.Clean on the path, and on the path rooted at `/`.
        let mut rel: Vec<&OsStr> = Vec::new();
        let mut comps: Vec<Vec<u8>> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => {
                    rel.push(n);
                    comps.push(n.as_bytes().to_vec());
                }
                Component::ParentDir => {
                    if rel.last().is_some_and(|l| *l != OsStr::new("..")) {
                        rel.pop();
                    } else if !p.is_absolute() {
                        rel.push(OsStr::new(".."));
                    }
                    comps.pop();
                }
                _ => {}
            }
        }
        let root = if p.is_absolute() {
            PathBuf::from("/")
        } else {
            rel.iter().take_while(|c| **c == OsStr::new("..")).collect()
        };
        out.push(Target { fs: p.clone(), root, comps });
    }
    out.sort_by(|a, b| a.comps.cmp(&b.comps));
    // A target inside another one is already covered by it.
    let mut kept: Vec<Target> = Vec::new();
    for t in out {
        if kept.iter().any(|k| t.comps.starts_with(&k.comps)) {
            continue;
        }
        kept.push(t);
    }
    Ok(kept)
}

/// What went wrong with how many items. Each kind makes chunk exit 3 after a complete stream,
/// and the summary line says truly what the backup holds of them.
#[derive(Default)]
struct Failed {
    /// Could not be read at all: not in the backup.
    skipped: u64,
    /// Changed while read: in the backup as read, which may not be any state the file had.
    changed: u64,
    /// In the backup without the extended attributes that could not be read.
    xattrs: u64,
}

#[derive(Clone, Copy)]
enum Failure {
    Skipped,
    Changed,
    Xattrs,
}

impl Failed {
    fn count(&mut self, f: Failure) {
        match f {
            Failure::Skipped => self.skipped += 1,
            Failure::Changed => self.changed += 1,
            Failure::Xattrs => self.xattrs += 1,
        }
    }

    fn result(&self) -> Result<()> {
        let n = |k: u64, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.skipped > 0 {
            parts.push(n(
                self.skipped,
                "item could not be read and is not in the backup",
                "items could not be read and are not in the backup",
            ));
        }
        if self.changed > 0 {
            parts.push(n(
                self.changed,
                "file changed while read and is in the backup as read",
                "files changed while read and are in the backup as read",
            ));
        }
        if self.xattrs > 0 {
            parts.push(n(
                self.xattrs,
                "item is in the backup without extended attributes that could not be read",
                "items are in the backup without extended attributes that could not be read",
            ));
        }
        if parts.is_empty() {
            return Ok(());
        }
        Err(Error::SomeFailed(parts.join("; ")))
    }
}

impl<W: io::Write> Scanner<'_, W> {
    fn fail(&mut self, kind: Failure, what: impl std::fmt::Display) {
        warn("chunk", what);
        self.failed.count(kind);
    }

    /// Builds the restic node for a file system entry (content and subtree left empty);
    /// `None` for what restic skips, or cannot read.
    fn node(&mut self, path: &Path, name: &[u8], md: &Metadata) -> Option<Node> {
        let mut node = match stat::node(path, name, md, &mut self.names, self.args.with_atime) {
            Ok(n) => n?,
            Err(e) => {
                self.fail(Failure::Skipped, format!("{}: {e}", path.display()));
                return None;
            }
        };
        if let Err(e) = stat::xattrs(path, &mut node) {
            self.fail(
                Failure::Xattrs,
                format!("{}: cannot read extended attributes, backed up without them: {e}", path.display()),
            );
        }
        Some(node)
    }

    /// Writes a node record for `node` at tree path `rel`.
    fn emit(&mut self, rel: &[u8], node: &Node, status: Option<&str>, parent_tree: Option<Id>) -> Result<()> {
        self.json.clear();
        // restic 0.14's bytes, except that a symlink target which is not UTF-8 also goes into
        // `linktarget_raw` (restic >= 0.16) so that it is not lost; restic 0.14 ignores it.
        node.write_json(&mut self.json, GoJsonFlavor::RESTIC_0_16);
        let text = String::from_utf8(std::mem::take(&mut self.json))
            .map_err(|_| Error::format("node JSON is not UTF-8"))?;
        let raw = RawValue::from_string(text).map_err(|e| Error::format(format!("node JSON: {e}")))?;
        let rec = NodeRecord { status: status.map(str::to_string), parent_tree, ..NodeRecord::new(rel, raw) };
        self.totals.nodes += 1;
        if node.node_type == common::node::NodeType::File {
            self.totals.files += 1;
            self.totals.bytes += node.size;
        }
        self.out.write(&rec)
    }

    /// Handles one entry whose containing directory is `self.stack[depth]`. True when it is
    /// a directory whose contents come next (the walk must not descend otherwise: they
    /// would have no level to go to).
    fn entry(&mut self, depth: usize, fs_path: &Path, name: &[u8], md: &Metadata) -> Result<bool> {
        self.stack.truncate(depth + 1);
        let mut rel = self.stack[depth].rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name);
        let Some(mut node) = self.node(fs_path, name, md) else { return Ok(false) };
        let prev = self.stack[depth].prev.as_deref().and_then(|p| find(p, name)).cloned();
        match node.node_type {
            NodeType::Dir => {
                let prev_tree =
                    prev.as_ref().filter(|p| p.node_type == NodeType::Dir).and_then(|p| p.subtree);
                self.emit(&rel, &node, None, prev_tree)?;
                let prev_nodes = match (&self.parent, prev_tree) {
                    (Some(p), Some(t)) => Some(p.tree(&t)?),
                    _ => None,
                };
                self.stack.push(Level { rel, prev: prev_nodes });
                return Ok(true);
            }
            NodeType::File => {
                let status = match &prev {
                    None => "new",
                    Some(p) if self.unchanged(&node, p) => "unmodified",
                    Some(_) => "changed",
                };
                if status == "unmodified" {
                    node.content = prev.and_then(|p| p.content);
                } else {
                    match self.read_file(fs_path, md)? {
                        Some((content, size)) => {
                            node.content = Some(content);
                            node.size = size;
                        }
                        None => return Ok(false),
                    }
                }
                self.emit(&rel, &node, Some(status), None)?;
            }
            _ => self.emit(&rel, &node, None, None)?,
        }
        Ok(false)
    }

    /// restic's test: same type, mtime, ctime, inode and size, and every blob still indexed.
    fn unchanged(&self, now: &Node, prev: &Node) -> bool {
        prev.node_type == NodeType::File
            && prev.mtime.secs == now.mtime.secs
            && prev.mtime.nanos == now.mtime.nanos
            && prev.ctime.secs == now.ctime.secs
            && prev.ctime.nanos == now.ctime.nanos
            && prev.inode == now.inode
            && prev.size == now.size
            && prev.content.as_ref().is_some_and(|c| c.iter().all(|id| self.index.contains(id)))
    }

    /// Reads and chunks one file. `None` when it could not be read (reported, counted).
    fn read_file(&mut self, path: &Path, before: &Metadata) -> Result<Option<(Vec<Id>, u64)>> {
        let file = match open_noatime(path) {
            Ok(f) => f,
            Err(e) => {
                self.fail(Failure::Skipped, format!("{}: {e}", path.display()));
                return Ok(None);
            }
        };
        match self.chunk_stream(file, None) {
            Ok(r) => {
                if let Ok(after) = fs::symlink_metadata(path) {
                    // Against the metadata from before, not the bytes read: a pseudo-file
                    // (procfs says size 0, sysfs 4096) reads other than its size says
                    // without changing; a file that did change has a new size or mtime.
                    if after.len() != before.len()
                        || after.mtime() != before.mtime()
                        || after.mtime_nsec() != before.mtime_nsec()
                    {
                        self.fail(
                            Failure::Changed,
                            format!(
                                "{}: file changed while it was read (the backup holds the {} bytes read)",
                                path.display(),
                                r.1
                            ),
                        );
                    }
                }
                Ok(Some(r))
            }
            Err(Error::Io { source, .. }) if source.kind() != io::ErrorKind::BrokenPipe => {
                self.fail(Failure::Skipped, format!("{}: read error: {source}", path.display()));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Cuts a stream into chunks and writes a chunk record for each. `fd`: the stream's
    /// descriptor when it may be slow (stdin), so that the records written are flushed
    /// whenever it makes chunk wait; pack then stores what is finished meanwhile.
    fn chunk_stream(&mut self, r: impl Read, fd: Option<i32>) -> Result<(Vec<Id>, u64)> {
        let Scanner { out, buf, tables, .. } = self;
        let mut ch = Chunker::with_tables(FlushBeforeWait::new(r, out, fd), tables.clone());
        let mut ids = Vec::new();
        let mut size = 0u64;
        loop {
            let more = ch.next_chunk(buf).map_err(|e| Error::io("read", e))?;
            if !more {
                break;
            }
            let id = Id::hash(buf);
            ch.get_mut().out.write_with_data(&ChunkRecord { id }, buf)?;
            ids.push(id);
            size += buf.len() as u64;
        }
        Ok((ids, size))
    }

    fn stdin(&mut self, now: GoTime) -> Result<()> {
        // Read as the descriptor itself: what std's stdin buffered would be invisible to the
        // check for a pause, which asks the descriptor.
        let (content, size) = self.chunk_stream(common::record::StdinFd::new(), Some(0))?;
        let (uid, gid) = sys::ids();
        let node = Node {
            name: self.args.stdin_filename.as_bytes().to_vec(),
            node_type: NodeType::File,
            mode: 0o644,
            mtime: now,
            atime: now,
            ctime: now,
            // restic 0.14 records the ids but no names for stdin.
            uid,
            gid,
            size,
            content: Some(content),
            ..Node::default()
        };
        let name = node.name.clone();
        self.emit(&name, &node, Some("new"), None)
    }

    fn targets(&mut self, targets: &[Target], cwd: &Path) -> Result<()> {
        for t in targets {
            // The directories leading to the target, with the metadata of the real ones.
            let n = t.comps.len();
            for i in 0..n.saturating_sub(1) {
                let depth = i;
                let rel: Vec<u8> = t.comps[..=i].join(&b'/');
                if self.stack.len() > depth + 1 && self.stack[depth + 1].rel == rel {
                    continue;
                }
                let mut p = t.root.clone();
                for c in &t.comps[..=i] {
                    p.push(OsStr::from_bytes(c));
                }
                let md = fs::metadata(&p).ctx_path(&p)?;
                self.entry(depth, &p, &t.comps[i], &md)?;
            }
            let base = n.saturating_sub(1);
            self.walk(&t.fs, base, t.comps.last().map(Vec::as_slice), cwd)?;
        }
        Ok(())
    }

    /// Walks one target; its entries land at tree depth `base` (its contents at `base`
    /// when it has no `root_name` in the tree, for a target such as `.`).
    fn walk(&mut self, root: &Path, base: usize, root_name: Option<&[u8]>, cwd: &Path) -> Result<()> {
        let contents_only = root_name.is_none();
        // The directories a tag file was found in, with the names of their tag files.
        let tagged: RefCell<HashMap<PathBuf, Vec<usize>>> = RefCell::new(HashMap::new());
        // Moved out for the walk: the filter closure borrows it while the loop borrows self.
        let excludes = std::mem::take(&mut self.excludes);
        let larger = self.larger_than;
        let tags = std::mem::take(&mut self.tags);
        let walker = walkdir::WalkDir::new(root)
            .follow_links(false)
            // A PATH that is a symlink is backed up as the link, as restic does.
            .follow_root_links(false)
            .same_file_system(self.args.one_file_system)
            .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
            .min_depth(usize::from(contents_only))
            .into_iter()
            .filter_entry(|e| {
                let excludes = &excludes;
                // restic matches exclude patterns against absolute paths.
                // Cleaned, as restic's filepath.Abs does: `chunk .` walks `./x`, which must
                // match `/cwd/x`.
                if !excludes.is_empty()
                    && !excludes.check(&absolute(e.path(), cwd).to_string_lossy(), false).0
                {
                    return false;
                }
                if let Some(limit) = larger {
                    if e.file_type().is_file() && e.metadata().map(|m| m.len() > limit).unwrap_or(false) {
                        return false;
                    }
                }
                // As restic: each tag leaves out everything in its directory but itself, so
                // of two tags in one directory, each leaves out the other.
                if e.depth() > 0 && !tags.is_empty() {
                    let tagged = tagged.borrow();
                    if let Some(found) = e.path().parent().and_then(|p| tagged.get(p)) {
                        if found.iter().any(|&i| e.file_name() != OsStr::new(tags[i].name())) {
                            return false;
                        }
                    }
                }
                true
            });
        let mut walker = walker;
        while let Some(item) = walker.next() {
            let e = match item {
                Ok(e) => e,
                Err(err) => {
                    let p = err.path().map(|p| p.display().to_string()).unwrap_or_default();
                    self.fail(
                        Failure::Skipped,
                        format!("{p}: {}", err.io_error().map(|e| e.to_string()).unwrap_or(err.to_string())),
                    );
                    continue;
                }
            };
            let md = match e.metadata() {
                Ok(m) => m,
                Err(err) => {
                    // walkdir's own message names the path again.
                    let why = err.io_error().map_or_else(|| err.to_string(), ToString::to_string);
                    self.fail(Failure::Skipped, format!("{}: {why}", e.path().display()));
                    // What is below an entry left out is neither read nor reported again.
                    if e.file_type().is_dir() {
                        walker.skip_current_dir();
                    }
                    continue;
                }
            };
            if md.is_dir() && !tags.is_empty() {
                let found: Vec<usize> = (0..tags.len()).filter(|&i| tags[i].tags(e.path())).collect();
                if !found.is_empty() {
                    tagged.borrow_mut().insert(e.path().to_path_buf(), found);
                }
            }
            let depth = base + e.depth() - usize::from(contents_only);
            let name: Vec<u8> = if e.depth() == 0 {
                match root_name {
                    Some(n) => n.to_vec(),
                    None => continue,
                }
            } else {
                e.file_name().as_bytes().to_vec()
            };
            if !self.entry(depth, e.path(), &name, &md)? && e.file_type().is_dir() {
                walker.skip_current_dir();
            }
        }
        self.excludes = excludes;
        self.tags = tags;
        Ok(())
    }
}

/// Opens without following a final symlink and, where allowed, without touching atime.
fn open_noatime(p: &Path) -> io::Result<File> {
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(p);
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        r => r,
    }
}
