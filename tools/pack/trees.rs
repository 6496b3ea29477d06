//! Building tree blobs bottom-up from the depth-first node stream.
//!
//! `chunk` writes a directory's node before its contents, in name order. A directory stays
//! open until a node outside it arrives; then its children's JSON, already in restic's exact
//! bytes, is framed as a tree blob, stored, and the directory's node gets its `subtree`.

use common::error::{Error, Result, ResultExt};
use common::go::GoJsonFlavor;
use common::node::{Node, NodeType};
use common::record::{NodeRecord, SummaryRecord};
use common::snapshot;
use common::tree;
use common::Id;

/// Where finished trees go, and what they may refer to: the packer's blob store. A trait so
/// that building trees needs nothing else from the packer.
pub trait Blobs {
    /// Whether this run or the repository has the blob (content a file refers to).
    fn has(&mut self, id: &Id) -> bool;
    /// Stores a finished tree blob (unless it is known already).
    fn put_tree(&mut self, id: Id, blob: &[u8]) -> Result<()>;
}

/// What the nodes add to the run's summary: restic's file and directory counters, and how
/// many files were read.
#[derive(Default)]
pub struct Counts {
    snapshot: snapshot::Counts,
    files_read: u64,
}

impl Trees {
    /// Files done so far and their bytes, for progress.
    pub fn processed(&self) -> (u64, u64) {
        let s = &self.counts.snapshot;
        (s.total_files_processed, s.total_bytes_processed)
    }
}

impl Counts {
    /// Adds these counts to the run's summary.
    pub fn add_to(&self, s: &mut SummaryRecord) {
        let (from, to) = (&self.snapshot, &mut s.counts);
        to.files_new += from.files_new;
        to.files_changed += from.files_changed;
        to.files_unmodified += from.files_unmodified;
        to.dirs_new += from.dirs_new;
        to.dirs_changed += from.dirs_changed;
        to.dirs_unmodified += from.dirs_unmodified;
        to.total_files_processed += from.total_files_processed;
        to.total_bytes_processed += from.total_bytes_processed;
        s.files_read += self.files_read;
    }
}

struct Dir {
    rel: Vec<u8>,
    node: Option<Node>,
    parent_tree: Option<Id>,
    tree: tree::Builder,
}

impl Dir {
    fn new(rel: Vec<u8>, node: Option<Node>, parent_tree: Option<Id>) -> Dir {
        Dir { rel, node, parent_tree, tree: tree::Builder::default() }
    }
}

/// The open directories, root first.
pub struct Trees {
    stack: Vec<Dir>,
    /// What the nodes so far add to the summary.
    pub counts: Counts,
}

impl Default for Trees {
    fn default() -> Self {
        Trees { stack: vec![Dir::new(Vec::new(), None, None)], counts: Counts::default() }
    }
}

fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Nodes out of order are the input stream's fault.
fn in_stream(e: Error) -> Error {
    Error::stream(e.to_string())
}

impl Trees {
    /// Takes one node record.
    pub fn node(&mut self, rec: NodeRecord, store: &mut impl Blobs) -> Result<()> {
        let rel = rec.path_bytes()?;
        let (parent, name) = split(&rel);
        if name.is_empty() {
            return Err(Error::stream(format!("node path {:?} has an empty name", rec.path)));
        }
        while self.stack.len() > 1 && self.stack.last().expect("non-empty").rel != parent {
            self.close(store)?;
        }
        if self.stack.last().expect("root stays").rel != parent {
            return Err(Error::stream(format!("{}: its directory did not come before it", rec.path)));
        }
        let node = Node::parse(rec.node.get().as_bytes()).context(&rec.path)?;
        if node.name != name {
            return Err(Error::stream(format!("{}: the node's name does not match its path", rec.path)));
        }
        match node.node_type {
            NodeType::Dir => {
                self.stack.push(Dir::new(rel.clone(), Some(node), rec.parent_tree));
                return Ok(());
            }
            NodeType::File => {
                let content = node
                    .content
                    .as_ref()
                    .ok_or_else(|| Error::format(format!("{}: file without content", rec.path)))?;
                for id in content {
                    if !store.has(id) {
                        return Err(Error::format(format!(
                            "{}: content blob {} was neither sent nor in the repository",
                            rec.path,
                            id.short()
                        )));
                    }
                }
                let s = &mut self.counts.snapshot;
                match rec.status.as_deref() {
                    Some("unmodified") => s.files_unmodified += 1,
                    Some("changed") => s.files_changed += 1,
                    _ => s.files_new += 1,
                }
                if rec.status.as_deref() == Some("unmodified") {
                    // Counted as processed, as restic does, but not read.
                } else {
                    self.counts.files_read += 1;
                }
                s.total_files_processed += 1;
                s.total_bytes_processed += node.size;
            }
            _ => {}
        }
        self.stack
            .last_mut()
            .expect("root stays")
            .tree
            .push_json(name, rec.node.get().as_bytes())
            .map_err(in_stream)
    }

    /// Closes the innermost directory: stores its tree, hands its node to its parent.
    fn close(&mut self, store: &mut impl Blobs) -> Result<Id> {
        let dir = self.stack.pop().expect("caller checks");
        let blob = dir.tree.finish();
        let id = Id::hash(&blob);
        store.put_tree(id, &blob)?;
        if let Some(mut node) = dir.node {
            let s = &mut self.counts.snapshot;
            match dir.parent_tree {
                None => s.dirs_new += 1,
                Some(p) if p == id => s.dirs_unmodified += 1,
                Some(_) => s.dirs_changed += 1,
            }
            node.subtree = Some(id);
            let mut json = Vec::new();
            node.write_json(&mut json, GoJsonFlavor::default());
            let (_, name) = split(&dir.rel);
            self.stack.last_mut().expect("root stays").tree.push_json(name, &json).map_err(in_stream)?;
        }
        Ok(id)
    }

    /// Closes every directory; returns the root tree's id.
    pub fn finish(&mut self, store: &mut impl Blobs) -> Result<Id> {
        while self.stack.len() > 1 {
            self.close(store)?;
        }
        self.close(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Blobs kept in memory: what the trees store, and the data blobs said to be present.
    #[derive(Default)]
    struct Kept(HashMap<Id, Vec<u8>>);

    impl Blobs for Kept {
        fn has(&mut self, id: &Id) -> bool {
            self.0.contains_key(id)
        }
        fn put_tree(&mut self, id: Id, blob: &[u8]) -> Result<()> {
            self.0.insert(id, blob.to_vec());
            Ok(())
        }
    }

    fn node(name: &str, node_type: NodeType, content: Option<Vec<Id>>) -> Node {
        Node { name: name.into(), node_type, content, ..Node::default() }
    }

    /// A node record as chunk writes it, the node's JSON inline.
    fn record(path: &str, n: &Node, status: Option<&str>) -> NodeRecord {
        let mut json = Vec::new();
        n.write_json(&mut json, GoJsonFlavor::default());
        let status = status.map(|s| format!(r#","status":"{s}""#)).unwrap_or_default();
        let line = format!(r#"{{"path":"{path}","node":{}{status}}}"#, String::from_utf8(json).unwrap());
        serde_json::from_str(&line).unwrap()
    }

    /// A depth-first stream becomes the trees restic writes for it, bottom-up, and the
    /// counters restic's summary has.
    #[test]
    fn depth_first_nodes_become_restic_trees() {
        let data = Id::hash(b"x");
        let mut kept = Kept::default();
        kept.0.insert(data, Vec::new());
        let dir = node("d", NodeType::Dir, None);
        let f = node("f", NodeType::File, Some(vec![data]));
        let g = node("g", NodeType::File, Some(vec![]));
        let link = node("z", NodeType::Symlink, None);
        let mut trees = Trees::default();
        trees.node(record("d", &dir, None), &mut kept).unwrap();
        trees.node(record("d/f", &f, Some("unmodified")), &mut kept).unwrap();
        trees.node(record("d/g", &g, Some("new")), &mut kept).unwrap();
        trees.node(record("z", &link, None), &mut kept).unwrap();
        let root = trees.finish(&mut kept).unwrap();

        let inner = tree::write_tree(&[f, g], GoJsonFlavor::default()).unwrap();
        let inner_id = Id::hash(&inner);
        let d = Node { subtree: Some(inner_id), ..dir };
        let outer = tree::write_tree(&[d, link], GoJsonFlavor::default()).unwrap();
        assert_eq!(kept.0[&inner_id], inner);
        assert_eq!(root, Id::hash(&outer));
        assert_eq!(kept.0[&root], outer);

        let mut s = SummaryRecord::default();
        trees.counts.add_to(&mut s);
        let c = &s.counts;
        assert_eq!((c.files_new, c.files_unmodified, s.files_read, c.total_files_processed), (1, 1, 1, 2));
        assert_eq!((c.dirs_new, c.dirs_changed, c.dirs_unmodified), (1, 0, 0));
    }

    #[test]
    fn refuses_what_restic_would_not_store() {
        let missing = node("f", NodeType::File, Some(vec![Id::hash(b"not stored")]));
        let err = Trees::default().node(record("f", &missing, None), &mut Kept::default()).unwrap_err();
        assert!(err.to_string().contains("neither sent nor in the repository"), "{err}");

        let mut trees = Trees::default();
        let mut kept = Kept::default();
        trees.node(record("b", &node("b", NodeType::Fifo, None), None), &mut kept).unwrap();
        let err = trees.node(record("a", &node("a", NodeType::Fifo, None), None), &mut kept).unwrap_err();
        assert!(err.to_string().contains("strictly increasing name order"), "{err}");

        let err = Trees::default()
            .node(record("x/a", &node("a", NodeType::Fifo, None), None), &mut kept)
            .unwrap_err();
        assert!(err.to_string().contains("its directory did not come before it"), "{err}");
    }
}
