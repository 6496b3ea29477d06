//! The depth-first walk over a snapshot's trees.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use common::backend::FileType;
use common::error::{Error, Result, ResultExt};
use common::filter::{read_pattern_file, Selection};
use common::index::{IdMap, Index};
use common::node::{Node, NodeType};
use common::overwrite::{self, Mode};
use common::record::{text_and_raw, BlobLoc, DeleteRecord, NodeRecord, TotalsRecord, Writer};
use common::target::{Dir, PART};
use common::tree::{parse_tree, TreeEntry};
use common::Id;

use crate::trees::Trees;
use crate::Args;

struct Walker<'a, W: std::io::Write> {
    trees: Trees<'a>,
    index: &'a Index,
    out: Writer<W>,
    select: Selection,
    /// `--target`: the restore target as it is now.
    target: Option<Target>,
    /// (inode, device id) of files with several links → the path of the first one emitted.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Directories walked into but not selected themselves, outermost first: written only once
    /// something below them is, so that (as `restic restore --include` does) the parents of
    /// a selected node get their own metadata, and directories without one are left out.
    pending: Vec<(Box<serde_json::value::RawValue>, Vec<u8>)>,
    /// The first pass: count what the walk would write instead of writing it.
    counting: Option<TotalsRecord>,
    /// Trees the first pass parsed, kept for the second as far as [`PARSED`] allows: parsing
    /// a tree's JSON is most of what a pass costs.
    parsed: IdMap<Vec<TreeEntry>>,
    parsed_bytes: usize,
}

/// Bytes of parsed trees kept from the first pass for the second, about (their nodes' JSON
/// text and parsed form). Beyond it a tree is parsed again from the tree cache or read
/// again; kept, its plaintext leaves the tree cache.
const PARSED: usize = 16 << 20;

pub fn run(args: &Args) -> Result<()> {
    let with_files = |given: &[String], files: &[PathBuf]| -> Result<Vec<String>> {
        let mut all = given.to_vec();
        for f in files {
            all.extend(read_pattern_file(f)?);
        }
        Ok(all)
    };
    let select = Selection::new(
        &with_files(&args.include, &args.include_file)?,
        &with_files(&args.iinclude, &args.iinclude_file)?,
        &with_files(&args.exclude, &args.exclude_file)?,
        &with_files(&args.iexclude, &args.iexclude_file)?,
    )?;
    let target = match &args.target {
        Some(dir) => Target::open(dir, args.overwrite, args.delete, &select)?,
        None => None,
    };
    let (spec, sub) = match args.snapshot.split_once(':') {
        Some((s, p)) => (s, p),
        None => (args.snapshot.as_str(), ""),
    };
    // Snapshots before the index (listed in this order while the key is derived, too): a
    // snapshot written meanwhile must find its blobs indexed.
    let repo = args.repo.open_early(&[FileType::Snapshot, FileType::Index])?;
    let all = repo.snapshots()?;
    args.filter.warn_if_ignored("walk", &[spec]);
    let (snap_id, snap) = args.filter.pick(&repo, spec, &all)?;
    let index = repo.load_index()?;
    let mut trees = Trees::new(&repo, &index)?;

    // Down to the selected directory, or to the single node the path ends in.
    let mut tree = snap.tree;
    let mut walked = String::new();
    let mut root = None;
    let mut single = None;
    // Cleaned first, as restic cleans a subfolder: `latest:./home/../srv` is /srv.
    let cleaned = common::filter::clean(&format!("/{sub}"));
    let comps: Vec<&str> = cleaned.split('/').filter(|c| !c.is_empty()).collect();
    for (i, comp) in comps.iter().enumerate() {
        walked.push('/');
        walked.push_str(comp);
        let entries = load_tree(&mut trees, &tree)?;
        let found = entries.into_iter().find(|e| e.node.name == comp.as_bytes());
        tree = match found {
            Some(e) if e.node.node_type == NodeType::Dir => {
                root = Some(comp.to_string());
                e.node
                    .subtree
                    .ok_or_else(|| Error::format(format!("{walked}: directory without a subtree")))?
            }
            Some(e) if i + 1 == comps.len() => {
                single = Some(e);
                break;
            }
            Some(_) => {
                return Err(Error::Usage(format!(
                    "{walked} is not a directory in snapshot {}",
                    snap_id.short()
                )))
            }
            None => return Err(Error::Usage(format!("{walked} not found in snapshot {}", snap_id.short()))),
        };
    }

    let mut w = Walker {
        trees,
        index: &index,
        out: Writer::stdout(),
        select,
        target,
        links: HashMap::new(),
        pending: Vec::new(),
        counting: None,
        parsed: IdMap::default(),
        parsed_bytes: 0,
    };
    // A path to a non-directory selects that one node: the header names no directory then.
    let root = if single.is_some() { None } else { root };
    w.out.header_with_root("walk", Some(*snap_id), root, Some(repo.binding))?;
    if !args.no_totals {
        // A first pass over the same trees (most come from the tree cache the second time):
        // the stage that draws progress needs the totals before the first node.
        w.counting = Some(TotalsRecord::default());
        w.trees.keep_for_again(true);
        w.select_all(&tree, single.as_ref())?;
        w.trees.keep_for_again(false);
        let totals = w.counting.take().unwrap_or_default();
        w.links.clear();
        w.out.write(&totals)?;
        w.out.flush()?;
    }
    w.select_all(&tree, single.as_ref())?;
    w.out.finish()?;
    Ok(())
}

/// About what a parsed tree holds in memory: each node's JSON text and parsed form.
fn parsed_size(entries: &[TreeEntry]) -> usize {
    entries
        .iter()
        .map(|e| {
            let n = &e.node;
            let ids = n.content.as_ref().map_or(0, Vec::len) * std::mem::size_of::<Id>();
            std::mem::size_of::<TreeEntry>() + 2 * e.raw.get().len() + ids
        })
        .sum()
}

fn load_tree(trees: &mut Trees, id: &Id) -> Result<Vec<TreeEntry>> {
    let bytes = trees.load(id).context(format!("tree {}", id.short()))?;
    parse_tree(&bytes).context(format!("tree {}", id.short()))
}

impl<W: std::io::Write> Walker<'_, W> {
    /// One pass: the selected directory's tree, or the single node a path to a file selects
    /// (under its own name; --include and --exclude still decide, matching `/NAME` as paths
    /// relative to the selection are matched).
    fn select_all(&mut self, tree: &Id, single: Option<&common::tree::TreeEntry>) -> Result<()> {
        match single {
            Some(e) => {
                let name = e.node.name.clone();
                if self.select.check(&format!("/{}", String::from_utf8_lossy(&name)), false).0 {
                    self.emit(&e.raw, &e.node, &name)?;
                }
                Ok(())
            }
            None => self.walk(tree, &mut Vec::new()),
        }
    }

    /// The entries of `tree`: kept by the first pass, or loaded and parsed.
    fn entries(&mut self, tree: &Id) -> Result<Vec<TreeEntry>> {
        match self.parsed.remove(tree) {
            Some(entries) => {
                self.parsed_bytes -= parsed_size(&entries);
                Ok(entries)
            }
            None => load_tree(&mut self.trees, tree),
        }
    }

    /// The first pass keeps a tree's entries for the second, if there is room.
    fn keep_parsed(&mut self, tree: Id, entries: Vec<TreeEntry>) {
        let size = parsed_size(&entries);
        if self.parsed_bytes + size <= PARSED {
            self.parsed_bytes += size;
            self.trees.forget(&tree);
            self.parsed.insert(tree, entries);
        }
    }

    fn walk(&mut self, tree: &Id, prefix: &mut Vec<u8>) -> Result<()> {
        let entries = self.entries(tree)?;
        let names: HashSet<Vec<u8>> = match self.target.as_ref().is_some_and(|t| t.delete) {
            true => entries.iter().map(|e| e.node.name.clone()).collect(),
            false => HashSet::new(),
        };
        for e in &entries {
            let node = &e.node;
            if !node.name_is_clean() {
                return Err(Error::format(format!(
                    "tree {}: invalid child node name {:?}",
                    tree.short(),
                    String::from_utf8_lossy(&node.name)
                )));
            }
            let len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(&node.name);
            let item = format!("/{}", String::from_utf8_lossy(prefix));
            let is_dir = node.node_type == NodeType::Dir;
            let (selected, descend) = self.select.check(&item, is_dir);
            let sub = node.subtree;
            if selected {
                self.emit(&e.raw, node, prefix)?;
            } else if descend {
                self.pending.push((e.raw.clone(), prefix.clone()));
            }
            if descend {
                let sub =
                    sub.ok_or_else(|| Error::format(format!("{}: directory without a subtree", &item[1..])))?;
                self.walk(&sub, prefix)?;
                // Still pending: nothing below was selected, so the directory is not restored.
                if self.pending.last().is_some_and(|(_, p)| p == prefix) {
                    self.pending.pop();
                }
            }
            prefix.truncate(len);
        }
        if self.counting.is_some() {
            self.keep_parsed(*tree, entries);
        }
        // (Not in the counting pass: the target is looked at once, as the records go out.)
        if let Some(t) = self.target.as_mut().filter(|t| t.delete && self.counting.is_none()) {
            for rec in t.unexpected(prefix, &names, &self.select) {
                self.out.write(&rec)?;
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        raw: &serde_json::value::RawValue,
        node: &common::node::Node,
        path: &[u8],
    ) -> Result<()> {
        for (raw, dir) in std::mem::take(&mut self.pending) {
            self.put(|| NodeRecord::new(&dir, raw), 0)?;
        }
        let text = || String::from_utf8_lossy(path);
        let mut blobs = Vec::new();
        let mut hardlink = None;
        if node.node_type == NodeType::File {
            let content = node
                .content
                .as_ref()
                .ok_or_else(|| Error::format(format!("{}: file node without content", text())))?;
            blobs.reserve(content.len());
            for id in content {
                let loc = self
                    .index
                    .get(id)
                    .ok_or_else(|| Error::format(format!("{}: blob {id} is not in the index", text())))?;
                blobs.push(loc);
            }
            if node.links > 1 {
                match self.links.get(&(node.inode, node.device_id)) {
                    Some(first) => hardlink = Some(first.clone()),
                    None => {
                        self.links.insert((node.inode, node.device_id), path.to_vec());
                    }
                }
            }
        }
        let in_target = match (&mut self.target, &hardlink) {
            (Some(t), None) if node.node_type == NodeType::File && self.counting.is_none() => {
                t.in_target(path, node, &blobs)
            }
            _ => Vec::new(),
        };
        let bytes = match (node.node_type == NodeType::File, &hardlink) {
            (true, None) => Some(node.size),
            (true, Some(_)) => Some(0),
            _ => None,
        };
        let rec = || {
            let (hardlink, hardlink_raw) = match hardlink {
                Some(h) => {
                    let (t, r) = text_and_raw(&h);
                    (Some(t), r)
                }
                None => (None, None),
            };
            NodeRecord { blobs, hardlink, hardlink_raw, in_target, ..NodeRecord::new(path, raw.to_owned()) }
        };
        self.put(rec, bytes.unwrap_or(0))?;
        if let (Some(t), Some(_)) = (&mut self.counting, bytes) {
            t.files += 1;
        }
        Ok(())
    }

    /// Writes a node record, or counts it in the first pass (`bytes`: a file's, hard links
    /// once), which makes no record.
    fn put(&mut self, rec: impl FnOnce() -> NodeRecord, bytes: u64) -> Result<()> {
        match &mut self.counting {
            Some(t) => {
                t.nodes += 1;
                t.bytes += bytes;
                Ok(())
            }
            None => self.out.write(&rec()),
        }
    }
}

/// `--target`: the directory the stream will be restored into, looked at (never changed)
/// to spare `fetch-pack` the blobs that need not travel and to list what `--delete` removes.
struct Target {
    root: Dir,
    mode: Mode,
    delete: bool,
    /// The directory of the last file looked at: consecutive files mostly share one.
    parent: Option<(Vec<u8>, Option<Dir>)>,
}

impl Target {
    /// `None` when the target does not exist yet: nothing there to spare or delete.
    fn open(dir: &Path, mode: Mode, delete: bool, select: &Selection) -> Result<Option<Target>> {
        if delete && select.is_empty() && dir.canonicalize().is_ok_and(|p| p == Path::new("/")) {
            return Err(Error::Usage(
                "--delete with the target / needs an --include or --exclude pattern".into(),
            ));
        }
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("target {}", dir.display()), e)),
            Ok(m) if !m.is_dir() => {
                return Err(Error::Usage(format!("target {} is not a directory", dir.display())))
            }
            Ok(_) => {}
        }
        let root = Dir::open_target(dir).map_err(|e| Error::io(format!("target {}", dir.display()), e))?;
        Ok(Some(Target { root, mode, delete, parent: None }))
    }

    /// The directory `rel` in the target, if it is one there (no link followed).
    fn dir(&mut self, rel: &[u8]) -> Option<&Dir> {
        if self.parent.as_ref().is_none_or(|(r, _)| r != rel) {
            let d = match rel {
                [] => self.root.try_clone().ok(),
                r => self.root.open_dir_beneath(r).ok(),
            };
            self.parent = Some((rel.to_vec(), d));
        }
        self.parent.as_ref().and_then(|(_, d)| d.as_ref())
    }

    /// The blobs of the file at `path` that need not travel (see `overwrite::in_target`).
    fn in_target(&mut self, path: &[u8], node: &Node, blobs: &[BlobLoc]) -> Vec<u32> {
        let (parent, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&[][..], path),
        };
        let mode = self.mode;
        match self.dir(parent) {
            Some(d) => overwrite::in_target(d, name, node, blobs, mode),
            None => Vec::new(),
        }
    }

    /// `--delete`: what the target directory `rel` holds that the snapshot's directory
    /// (`names`) does not, and the selection covers (restic asks the filter about each
    /// such name as it would about a file). Partial files of a restore are left to
    /// `unpack --resume`.
    fn unexpected(&mut self, rel: &[u8], names: &HashSet<Vec<u8>>, select: &Selection) -> Vec<DeleteRecord> {
        let Some(d) = self.dir(rel) else { return Vec::new() };
        let mut found = d.names().unwrap_or_default();
        found.sort();
        let mut out = Vec::new();
        for (name, _) in found {
            if names.contains(&name) || name.ends_with(PART.as_bytes()) {
                continue;
            }
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            if select.check(&format!("/{}", String::from_utf8_lossy(&path)), false).0 {
                let (path, path_raw) = text_and_raw(&path);
                out.push(DeleteRecord { path, path_raw });
            }
        }
        out
    }
}
