//! The depth-first walk over a snapshot's trees.

use std::collections::HashMap;

use common::error::{Error, Result, ResultExt};
use common::filter;
use common::index::Index;
use common::node::NodeType;
use common::record::{text_and_raw, NodeRecord, TotalsRecord, Writer};
use common::tree::parse_tree;
use common::Id;

use crate::trees::Trees;
use crate::Args;

/// Decides which nodes are selected, as `restic restore` does with `--include`/`--exclude`.
struct Selection {
    include: filter::List,
    exclude: filter::List,
}

impl Selection {
    /// (selected, descend) for a node at `item` (absolute, '/'-separated).
    fn check(&self, item: &str, is_dir: bool) -> (bool, bool) {
        if !self.include.is_empty() {
            let m = self.include.matches(item);
            (m, is_dir && self.include.child_may_match(item))
        } else if !self.exclude.is_empty() {
            let selected = !self.exclude.matches(item);
            (selected, selected && is_dir)
        } else {
            (true, is_dir)
        }
    }
}

struct Walker<'a, W: std::io::Write> {
    trees: Trees<'a>,
    index: &'a Index,
    out: Writer<W>,
    select: Selection,
    /// (inode, device id) of files with several links → the path of the first one emitted.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// Directories walked into but not selected themselves, outermost first: written only once
    /// something below them is, so that (as `restic restore --include` does) the parents of
    /// a selected node get their own metadata, and directories without one are left out.
    pending: Vec<(Box<serde_json::value::RawValue>, Vec<u8>)>,
    /// The first pass: count what the walk would write instead of writing it.
    counting: Option<TotalsRecord>,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.include.is_empty() && !args.exclude.is_empty() {
        return Err(Error::Usage("--include and --exclude cannot be combined".into()));
    }
    let select = Selection {
        include: filter::List::parse(&args.include)?,
        exclude: filter::List::parse(&args.exclude)?,
    };
    let (spec, sub) = match args.snapshot.split_once(':') {
        Some((s, p)) => (s, p),
        None => (args.snapshot.as_str(), ""),
    };
    let repo = args.repo.open()?;
    // Snapshots before the index: a snapshot written meanwhile must find its blobs indexed.
    let all = repo.snapshots()?;
    let total = all.len();
    let snaps: Vec<_> = all.into_iter().filter(|(_, s)| args.filter.keep(s)).collect();
    if snaps.is_empty() {
        return Err(args.filter.none_left(total));
    }
    let (snap_id, snap) = repo.resolve_snapshot(spec, &snaps)?;
    let index = repo.load_index()?;
    let mut trees = Trees::new(&repo, &index);

    // Down to the selected directory, or to the single node the path ends in.
    let mut tree = snap.tree;
    let mut walked = String::new();
    let mut root = None;
    let mut single = None;
    let comps: Vec<&str> = sub.split('/').filter(|c| !c.is_empty()).collect();
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
        links: HashMap::new(),
        pending: Vec::new(),
        counting: None,
    };
    // A path to a non-directory selects that one node: the header names no directory then.
    let root = if single.is_some() { None } else { root };
    w.out.header_with_root("walk", Some(*snap_id), root)?;
    if !args.no_totals {
        // A first pass over the same trees (most come from the tree cache the second time):
        // the stage that draws progress needs the totals before the first node.
        w.counting = Some(TotalsRecord::default());
        w.select_all(&tree, single.as_ref())?;
        let totals = w.counting.take().unwrap_or_default();
        w.links.clear();
        w.out.write(&totals)?;
        w.out.flush()?;
    }
    w.select_all(&tree, single.as_ref())?;
    w.out.finish()?;
    Ok(())
}

fn load_tree(trees: &mut Trees, id: &Id) -> Result<Vec<common::tree::TreeEntry>> {
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
                    self.emit(e.raw.clone(), &e.node, &name)?;
                }
                Ok(())
            }
            None => self.walk(tree, &mut Vec::new()),
        }
    }

    fn walk(&mut self, tree: &Id, prefix: &mut Vec<u8>) -> Result<()> {
        let entries = load_tree(&mut self.trees, tree)?;
        for e in entries {
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
                self.emit(e.raw, node, prefix)?;
            } else if descend {
                self.pending.push((e.raw, prefix.clone()));
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
        Ok(())
    }

    fn emit(
        &mut self,
        raw: Box<serde_json::value::RawValue>,
        node: &common::node::Node,
        path: &[u8],
    ) -> Result<()> {
        for (raw, dir) in std::mem::take(&mut self.pending) {
            let (text, path_raw) = text_and_raw(&dir);
            let rec = NodeRecord {
                path: text,
                path_raw,
                node: raw,
                blobs: Vec::new(),
                hardlink: None,
                hardlink_raw: None,
                status: None,
                parent_tree: None,
            };
            self.put(&rec, 0)?;
        }
        let (text, path_raw) = text_and_raw(path);
        let mut blobs = Vec::new();
        let mut hardlink = None;
        if node.node_type == NodeType::File {
            let content = node
                .content
                .as_ref()
                .ok_or_else(|| Error::format(format!("{text}: file node without content")))?;
            blobs.reserve(content.len());
            for id in content {
                let loc = self
                    .index
                    .get(id)
                    .ok_or_else(|| Error::format(format!("{text}: blob {id} is not in the index")))?;
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
        let (hardlink, hardlink_raw) = match hardlink {
            Some(h) => {
                let (t, r) = text_and_raw(&h);
                (Some(t), r)
            }
            None => (None, None),
        };
        let rec = NodeRecord {
            path: text,
            path_raw,
            node: raw,
            blobs,
            hardlink,
            hardlink_raw,
            status: None,
            parent_tree: None,
        };
        let bytes = match (node.node_type == NodeType::File, &rec.hardlink) {
            (true, None) => Some(node.size),
            (true, Some(_)) => Some(0),
            _ => None,
        };
        self.put(&rec, bytes.unwrap_or(0))?;
        if let (Some(t), Some(_)) = (&mut self.counting, bytes) {
            t.files += 1;
        }
        Ok(())
    }

    /// Writes a node record, or counts it in the first pass (`bytes`: a file's, hard links once).
    fn put(&mut self, rec: &NodeRecord, bytes: u64) -> Result<()> {
        match &mut self.counting {
            Some(t) => {
                t.nodes += 1;
                t.bytes += bytes;
                Ok(())
            }
            None => self.out.write(rec),
        }
    }
}
